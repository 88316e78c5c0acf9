"""Analysis on nets whose answers are known."""

from __future__ import annotations

import json
import math
import time

import pytest

from tests.workflow_bridge.net.nets import (
    doubling_cycle,
    mutual_wait,
    ring,
    sound_workflow,
    t,
    toggles,
)
from workflow_bridge.net import Marking, Net, NetError, analyze


def test_two_branches_waiting_on_each_other_deadlock() -> None:
    analysis = analyze(mutual_wait())
    assert analysis.bounded is True
    assert analysis.reachable_markings == 2
    assert [(d.marking, d.path) for d in analysis.deadlocks] == [
        (Marking.of({"a_wait": 1, "b_wait": 1}), ("split",))
    ]
    assert analysis.dead_transitions == ("ta", "tb")
    assert analysis.unreachable_places == ("signal_a", "signal_b", "a_done", "b_done")
    assert (
        "Deadlock: after firing split, the marking {'a_wait': 1, 'b_wait': 1} enables no "
        "transition." in analysis.explanations()
    )


def test_a_cycle_that_produces_more_than_it_consumes_is_unbounded() -> None:
    analysis = analyze(doubling_cycle())
    assert analysis.bounded is False
    assert analysis.unbounded_places == ("a", "b")
    assert analysis.coverability_complete
    assert analysis.reachable_markings is None
    assert analysis.truncated  # infinitely many markings: the reachability walk stops
    assert analysis.dead_transitions == ()
    assert analysis.explanations()[0].startswith("Unbounded: 'a', 'b' can hold any number")


def test_only_the_places_that_grow_are_named_unbounded() -> None:
    # "tick" keeps its one token in "clock" and adds one to "count" each time.
    net = Net.build(
        "counter",
        ["clock", "count", "never"],
        [t("tick", {"clock": 1}, {"clock": 1, "count": 1}), t("spend", {"never": 1}, {"count": 1})],
        {"clock": 1},
    )
    analysis = analyze(net)
    assert analysis.bounded is False
    assert analysis.unbounded_places == ("count",)
    # Exact even though the net is unbounded: the coverability walk finished.
    assert analysis.dead_transitions == ("spend",)
    assert analysis.unreachable_places == ("never",)
    assert analysis.can_be_marked("count") is True
    assert analysis.can_be_marked("never") is False


def test_a_weight_that_is_never_accumulated_is_dead_in_an_unbounded_net() -> None:
    # "pump" grows "fuel" without limit, and "burn" fires as often as there are 3 fuel; but
    # "ready" and "stage" share one token, so "launch" (2 in "stage") can never fire. The
    # structural check would miss that; the coverability walk does not.
    net = Net.build(
        "rocket",
        ["tank", "fuel", "ready", "stage", "orbit"],
        [
            t("pump", {"tank": 1}, {"tank": 1, "fuel": 1}),
            t("burn", {"fuel": 3, "ready": 1}, {"stage": 1}),
            t("cool", {"stage": 1}, {"ready": 1}),
            t("launch", {"stage": 2}, {"orbit": 1}),
        ],
        {"tank": 1, "ready": 1},
    )
    analysis = analyze(net)
    assert analysis.bounded is False
    assert analysis.unbounded_places == ("fuel",)
    assert analysis.coverability_complete
    assert analysis.dead_transitions == ("launch",)
    assert analysis.unreachable_places == ("orbit",)


def test_a_sound_workflow_has_no_deadlock_except_its_end() -> None:
    analysis = analyze(sound_workflow(), final_places=frozenset({"end"}))
    assert analysis.bounded is True
    assert analysis.reachable_markings == 6
    assert analysis.deadlocks == ()
    assert [(d.marking, d.path) for d in analysis.proper_ends] == [
        (Marking.of({"end": 1}), ("fork", "a", "b", "join"))
    ]
    assert analysis.dead_transitions == ()
    assert analysis.unreachable_places == ()
    assert not analysis.truncated


def test_without_final_places_the_end_is_reported_as_a_deadlock() -> None:
    analysis = analyze(sound_workflow())
    assert [d.marking for d in analysis.deadlocks] == [Marking.of({"end": 1})]
    assert analysis.proper_ends == ()


def test_a_dead_marking_with_tokens_outside_the_final_places_is_a_deadlock() -> None:
    net = Net.build(
        "leaky",
        ["start", "end", "stray"],
        [t("finish", {"start": 1}, {"end": 1}), t("leak", {"start": 1}, {"end": 1, "stray": 1})],
        {"start": 1},
    )
    analysis = analyze(net, final_places=frozenset({"end"}))
    assert [d.marking for d in analysis.proper_ends] == [Marking.of({"end": 1})]
    assert [(d.marking, d.path) for d in analysis.deadlocks] == [
        (Marking.of({"end": 1, "stray": 1}), ("leak",))
    ]


def test_a_marking_with_no_tokens_at_all_is_not_a_proper_end() -> None:
    net = Net.build("drain", ["start", "end"], [t("drop", {"start": 1}, {})], {"start": 1})
    analysis = analyze(net, final_places=frozenset({"end"}))
    assert [d.marking for d in analysis.deadlocks] == [Marking.of({})]


def chain_beside_toggles(length: int) -> Net:
    """Twelve toggles (4096 markings) beside a chain c0 → … → c<length>: breadth first, the
    end of the chain is met only after thousands of markings."""
    base = toggles(12)
    chain = [f"c{i}" for i in range(length + 1)]
    return Net.build(
        "toggles_and_chain",
        [*base.places, *chain, "orphan", "out"],
        [
            *base.transitions,
            *(t(f"step{i}", {chain[i]: 1}, {chain[i + 1]: 1}) for i in range(length)),
            t("stuck", {"orphan": 1, "on0": 1}, {"out": 1}),
        ],
        {**base.initial_marking, "c0": 1},
    )


def test_the_limit_stops_the_walk_and_leaves_what_it_did_not_settle_undecided() -> None:
    net = chain_beside_toggles(20)
    analysis = analyze(net, max_markings=100)
    assert analysis.truncated
    assert not analysis.coverability_complete
    assert analysis.bounded is None
    assert analysis.reachable_markings is None
    assert analysis.explored_markings == 100
    assert analysis.can_be_marked("c1") is True
    assert analysis.can_be_marked("c20") is None
    assert analysis.can_fire_ever("up0") is True
    assert analysis.can_fire_ever("step19") is None
    assert (
        analysis.is_reachable(Marking.of({**{f"off{i}": 1 for i in range(12)}, "c20": 1})) is None
    )
    assert "Boundedness undecided" in analysis.explanations()[0]
    # What is certain is still reported: "orphan" is never marked, so "stuck" never fires.
    assert analysis.dead_transitions == ("stuck",)
    assert analysis.unreachable_places == ("orphan", "out")


def test_with_enough_room_the_same_net_is_settled() -> None:
    analysis = analyze(chain_beside_toggles(3), max_markings=20_000)
    assert analysis.bounded is True
    assert analysis.reachable_markings == 4096 * 4
    assert analysis.can_be_marked("c3") is True


def test_an_unbounded_net_reports_the_deadlocks_it_meets() -> None:
    # Either keep producing, or stop: stopping is a dead end.
    net = Net.build(
        "maybe",
        ["run", "out", "stopped"],
        [t("produce", {"run": 1}, {"run": 1, "out": 1}), t("stop", {"run": 1}, {"stopped": 1})],
        {"run": 1},
    )
    analysis = analyze(net, max_markings=200, final_places=frozenset({"stopped", "out"}))
    assert analysis.bounded is False
    assert analysis.unbounded_places == ("out",)
    assert analysis.truncated
    assert analysis.proper_ends[0].marking == Marking.of({"stopped": 1})
    assert analysis.proper_ends[1].path == ("produce", "stop")
    assert analysis.deadlocks == ()


def test_reachable_markings_of_a_ring_are_counted_exactly_and_quickly() -> None:
    # 30 places, 3 tokens: C(32, 3) = 4960 markings, 30 transitions.
    net = ring(30, 3)
    started = time.monotonic()
    analysis = analyze(net)
    elapsed = time.monotonic() - started
    assert analysis.bounded is True
    assert analysis.reachable_markings == math.comb(32, 3)
    assert analysis.deadlocks == ()
    # Well under a second on a laptop; generous for a loaded CI machine.
    assert elapsed < 5


def test_as_dict_is_json_with_readable_explanations() -> None:
    data = analyze(mutual_wait()).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["bounded"] is True
    assert data["deadlocks"] == [{"marking": {"a_wait": 1, "b_wait": 1}, "path": ["split"]}]
    assert data["deadlock_count"] == 1
    assert "Transition 'ta' can never fire." in data["explanations"]
    assert "Place 'a_done' never receives a token." in data["explanations"]


def test_reachability_helpers() -> None:
    analysis = analyze(sound_workflow())
    assert analysis.is_reachable(Marking.of({"q1": 1, "p2": 1})) is True
    assert analysis.is_reachable(Marking.of({"q1": 1, "p1": 1})) is False
    assert analysis.can_be_marked("end") is True
    with pytest.raises(NetError, match="no place 'nope'"):
        analysis.can_be_marked("nope")
    with pytest.raises(NetError, match="no transition 'nope'"):
        analysis.can_fire_ever("nope")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(NetError, match="final place 'finish' is not a place"):
        analyze(sound_workflow(), final_places=frozenset({"finish"}))
    with pytest.raises(ValueError, match="max_markings must be between"):
        analyze(sound_workflow(), max_markings=0)
    with pytest.raises(ValueError, match="max_markings must be a whole number"):
        analyze(sound_workflow(), max_markings=True)
