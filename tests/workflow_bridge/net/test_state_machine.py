"""The original system's state-machine workflows are nets with one token."""

from __future__ import annotations

import pytest

from workflow_bridge.net import (
    Activity,
    Marking,
    Net,
    NetError,
    NotEnabled,
    activity_of,
    analyze,
    enabled,
    fire,
    state_machine,
    transition_for,
)

STATES = ["draft", "review", "approved", "rejected", "archived"]
ACTIVITIES = [
    ("submit", "Submit for review", ("draft",), "review", ()),
    # From any of two states, as the original's from_states allowed.
    ("approve", "Approve", ("review", "draft"), "approved", ("amount-under-limit",)),
    ("reject", "Reject", ("review",), "rejected", ()),
    ("reopen", "Reopen", ("rejected",), "draft", ()),
]


def workflow() -> Net:
    return state_machine(STATES, ACTIVITIES, "draft", net_id="expense")


def test_states_are_places_and_the_initial_state_holds_the_token() -> None:
    net = workflow()
    assert net.places == tuple(STATES)
    assert net.initial_marking == Marking.of({"draft": 1})


def test_an_activity_becomes_one_transition_per_from_state() -> None:
    net = workflow()
    assert [tr.id for tr in net.transitions] == [
        "submit@draft",
        "approve@review",
        "approve@draft",
        "reject@review",
        "reopen@rejected",
    ]
    approve = net.transition(transition_for("approve", "draft"))
    assert approve.name == "Approve"
    assert [a.place for a in approve.inputs] == ["draft"]
    assert [a.place for a in approve.outputs] == ["approved"]
    assert approve.rules == ("amount-under-limit",)
    assert {activity_of(tr.id) for tr in net.transitions} == {
        "submit",
        "approve",
        "reject",
        "reopen",
    }


def test_enabled_transitions_are_the_activities_allowed_from_the_current_state() -> None:
    net = workflow()
    assert {activity_of(tid) for tid in enabled(net, net.initial_marking)} == {"submit", "approve"}
    in_review = fire(net, net.initial_marking, transition_for("submit", "draft"))
    assert {activity_of(tid) for tid in enabled(net, in_review)} == {"approve", "reject"}


def test_firing_an_activity_moves_the_one_token() -> None:
    net = workflow()
    marking = net.initial_marking
    for activity, state in [("submit", "draft"), ("reject", "review"), ("reopen", "rejected")]:
        marking = fire(net, marking, transition_for(activity, state))
        assert marking.total == 1
    assert marking == Marking.of({"draft": 1})


def test_an_activity_from_the_wrong_state_is_refused_naming_the_state() -> None:
    net = workflow()
    with pytest.raises(NotEnabled, match="place 'review' holds 0 of the 1 token"):
        fire(net, net.initial_marking, transition_for("reject", "review"))


def test_analysis_finds_the_unreachable_state_and_the_end_states() -> None:
    analysis = analyze(workflow(), final_places=frozenset({"approved"}))
    assert analysis.bounded is True
    assert analysis.reachable_markings == 4
    assert all(marking.total == 1 for marking in analysis.reachable)
    assert analysis.unreachable_places == ("archived",)
    assert analysis.dead_transitions == ()
    assert [d.marking for d in analysis.proper_ends] == [Marking.of({"approved": 1})]
    assert analysis.deadlocks == ()


def test_activity_objects_and_tuples_are_the_same() -> None:
    from_objects = state_machine(
        STATES,
        [Activity(a, n, f, to, r) for a, n, f, to, r in ACTIVITIES],
        "draft",
        net_id="expense",
    )
    assert from_objects == workflow()


@pytest.mark.parametrize(
    ("activities", "initial", "message"),
    [
        (
            [("go", "Go", ("draft",), "nowhere", ())],
            "draft",
            "activity 'go' names unknown state 'nowhere'",
        ),
        ([("go", "Go", ("limbo",), "review", ())], "draft", "unknown state 'limbo'"),
        ([("go", "Go", (), "review", ())], "draft", "activity 'go' has no from-states"),
        ([("go", "Go", ("draft", "draft"), "review", ())], "draft", "lists a from-state twice"),
        ([("go", "Go", ("draft",), "review", ())] * 2, "draft", "activity 'go' is declared twice"),
        (
            [("go@x", "Go", ("draft",), "review", ())],
            "draft",
            "activity id 'go@x' is not a valid id",
        ),
        ([("go", "Go", "draft", "review", ())], "draft", "from_states and rules must be sequences"),
        ([], "limbo", "initial state 'limbo' is not one of the states"),
    ],
)
def test_bad_state_machines_are_refused(activities, initial: str, message: str) -> None:
    with pytest.raises(NetError, match=message):
        state_machine(STATES, activities, initial)
