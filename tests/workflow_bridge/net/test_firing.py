"""Firing: forks, joins, weights, and refusals that say what is missing."""

from __future__ import annotations

import pytest

from tests.workflow_bridge.net.nets import sound_workflow, t
from workflow_bridge.net import Marking, Net, NetError, NotEnabled, can_fire, enabled, fire


def test_a_fork_puts_a_token_in_each_branch_and_a_join_waits_for_both() -> None:
    net = sound_workflow()
    after_fork = fire(net, net.initial_marking, "fork")
    assert after_fork == Marking.of({"p1": 1, "p2": 1})
    assert enabled(net, after_fork) == ("a", "b")

    half = fire(net, after_fork, "a")
    assert enabled(net, half) == ("b",)
    assert not can_fire(net, half, "join")

    both = fire(net, half, "b")
    assert enabled(net, both) == ("join",)
    assert fire(net, both, "join") == Marking.of({"end": 1})


def test_weights_take_and_give_that_many_tokens() -> None:
    net = Net.build("w", ["a", "b"], [t("batch", {"a": 3}, {"b": 2})], {"a": 7})
    once = fire(net, net.initial_marking, "batch")
    assert once == Marking.of({"a": 4, "b": 2})
    twice = fire(net, once, "batch")
    assert twice == Marking.of({"a": 1, "b": 4})
    assert enabled(net, twice) == ()


def test_a_place_that_is_input_and_output_keeps_count_minus_in_plus_out() -> None:
    net = Net.build("loop", ["a", "b"], [t("grow", {"a": 1}, {"a": 2, "b": 1})], {"a": 1})
    assert fire(net, net.initial_marking, "grow") == Marking.of({"a": 2, "b": 1})


def test_firing_does_not_change_the_marking_it_was_given() -> None:
    net = sound_workflow()
    start = net.initial_marking
    fire(net, start, "fork")
    assert start == Marking.of({"start": 1})


def test_not_enabled_says_which_places_lack_how_many_tokens() -> None:
    net = Net.build("j", ["a", "b", "c"], [t("join", {"a": 2, "b": 1}, {"c": 1})], {"a": 1, "b": 1})
    verdict = can_fire(net, net.initial_marking, "join")
    assert not verdict
    assert [(s.place, s.needed, s.present, s.missing) for s in verdict.shortfalls] == [
        ("a", 2, 1, 1)
    ]
    with pytest.raises(NotEnabled) as refused:
        fire(net, net.initial_marking, "join")
    assert str(refused.value) == (
        "transition 'join' is not enabled: place 'a' holds 1 of the 2 tokens it needs (1 missing)"
    )
    assert refused.value.verdict == verdict


def test_an_enabled_verdict_is_truthy_and_says_so() -> None:
    net = sound_workflow()
    verdict = can_fire(net, net.initial_marking, "fork")
    assert verdict
    assert verdict.reason == "transition 'fork' is enabled"


def test_an_unknown_transition_is_a_net_error_not_a_refusal() -> None:
    net = sound_workflow()
    with pytest.raises(NetError, match="has no transition 'ship'"):
        fire(net, net.initial_marking, "ship")
    with pytest.raises(NetError, match="has no transition 'ship'"):
        can_fire(net, net.initial_marking, "ship")


def test_a_marking_from_another_net_is_refused() -> None:
    net = sound_workflow()
    with pytest.raises(NetError, match="'elsewhere', not a place of 'order'"):
        enabled(net, Marking.of({"elsewhere": 1}))
    with pytest.raises(NetError, match="'elsewhere'"):
        fire(net, Marking.of({"start": 1, "elsewhere": 1}), "fork")
