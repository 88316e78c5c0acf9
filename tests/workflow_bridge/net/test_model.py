"""Nets validate themselves when built; markings are immutable values."""

from __future__ import annotations

import pytest

from tests.workflow_bridge.net.nets import sound_workflow, t
from workflow_bridge.net import Arc, Marking, Net, NetError, Transition, is_valid_id

# ---- markings ---------------------------------------------------------------------------------


def test_a_marking_stores_positive_counts_only() -> None:
    marking = Marking.of({"a": 2, "b": 0})
    assert dict(marking) == {"a": 2}
    assert marking == Marking.of({"a": 2})
    assert marking.tokens("b") == 0
    assert marking.tokens("not-a-place") == 0
    assert marking.total == 2
    assert len(marking) == 1
    with pytest.raises(KeyError):
        marking["b"]


def test_equal_markings_hash_alike_so_they_can_be_graph_nodes() -> None:
    first = Marking.of({"a": 1, "b": 2})
    second = Marking([("b", 2), ("a", 1), ("c", 0)])
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert first == {"a": 1, "b": 2, "z": 0}
    assert first != Marking.of({"a": 1})


def test_a_marking_can_not_be_changed() -> None:
    marking = Marking.of({"a": 1})
    with pytest.raises(AttributeError, match="immutable"):
        marking.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        marking["a"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"a": -1}, "place 'a' is -1"),
        ({"a": True}, "place 'a' is True"),
        ({"a": 1.5}, "place 'a' is 1.5"),
        ({3: 1}, "place 3"),
    ],
)
def test_bad_counts_are_refused_with_the_place_named(counts: dict, message: str) -> None:
    with pytest.raises(NetError, match=message):
        Marking(counts)


# ---- nets -------------------------------------------------------------------------------------


def test_a_valid_net_builds_from_lists_and_is_hashable() -> None:
    net = Net.build(
        "n",
        ["a", "b"],
        [Transition("go", "Go", [Arc("a")], [Arc("b", 2)])],  # type: ignore[arg-type]
        {"a": 1},
    )
    assert net.transition("go").inputs == (Arc("a"),)
    assert net.initial_marking == Marking.of({"a": 1})
    assert hash(net) == hash(Net.build("n", ["a", "b"], net.transitions, {"a": 1}))
    assert net.place_index("b") == 1


def _net(places: list[str], transitions: list[Transition], marking: dict, net_id: str = "n") -> Net:
    return Net.build(net_id, places, transitions, marking)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: _net(["a"], [t("x", {"nowhere": 1}, {})], {}),
            "input arc names unknown place 'nowhere'",
        ),
        (
            lambda: _net(["a"], [t("x", {"a": 1}, {"gone": 1})], {}),
            "output arc names unknown place 'gone'",
        ),
        (lambda: _net(["a"], [], {"zzz": 1}), "unknown place 'zzz'"),
        (lambda: _net(["a", "a"], [], {}), "place 'a' is declared twice"),
        (
            lambda: _net(["a"], [t("x", {"a": 1}, {}), t("x", {"a": 1}, {})], {}),
            "transition 'x' is declared twice",
        ),
        (lambda: _net(["a"], [t("a", {"a": 1}, {})], {}), "'a' is both a place and a transition"),
        (lambda: _net(["a"], [t("x", {"a": 0}, {})], {}), "weight of input arc 'a' is 0"),
        (
            lambda: _net(["a", "b"], [t("x", {"a": 1}, {"b": -2})], {}),
            "weight of output arc 'b' is -2",
        ),
        (
            lambda: _net(["a"], [Transition("x", "X", (Arc("a", True),), ())], {}),
            "weight of input arc 'a' is True",
        ),
        (lambda: _net(["a"], [t("x", {}, {"a": 1})], {}), "transition 'x' has no input arcs"),
        (lambda: _net(["a b"], [], {}), "place id 'a b' is not a valid id"),
        (lambda: _net([""], [], {}), "place id '' is not a valid id"),
        (lambda: _net(["x" * 101], [], {}), "is not a valid id"),
        (lambda: _net(["<script>"], [], {}), "place id '<script>' is not a valid id"),
        (
            lambda: _net(["a"], [t("go/now", {"a": 1}, {})], {}),
            "transition id 'go/now' is not valid",
        ),
        (lambda: _net(["a"], [t("a@b@c", {"a": 1}, {})], {}), "transition id 'a@b@c' is not valid"),
        (lambda: _net(["a"], [], {}, net_id="my net"), "net id 'my net' is not a valid id"),
        (lambda: _net([], [], {}), "has no places"),
        (
            lambda: _net(["a"], [t("x", {"a": 1}, {}, name=" ")], {}),
            "transition 'x' needs a non-empty name",
        ),
        (
            lambda: _net(["a"], [t("x", {"a": 1}, {}, name="bad\x00name")], {}),
            "transition 'x': name contains control",
        ),
        (
            lambda: _net(["a"], [t("x", {"a": 1}, {}, name="n" * 201)], {}),
            "transition 'x': name is longer",
        ),
        (
            lambda: _net(["a"], [t("x", {"a": 1}, {})], {"a": 2_000_000}),
            "initial token count of place 'a'",
        ),
        (
            lambda: _net(["a"], [Transition("x", "X", (Arc("a"), Arc("a")), ())], {}),
            "two input arcs for place 'a'",
        ),
        (
            lambda: _net(["a"], [Transition("x", "X", (Arc("a"),), (), rules=("",))], {}),
            "rule ids must be non-empty",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_nets_are_refused_naming_the_offending_element(build, message: str) -> None:
    with pytest.raises(NetError, match=message.replace("(", r"\(")):
        build()


def test_a_transition_may_use_the_same_place_as_input_and_output() -> None:
    net = _net(["a"], [t("spin", {"a": 1}, {"a": 1})], {"a": 1})
    assert net.transition("spin").outputs == (Arc("a"),)


def test_unknown_transition_is_a_net_error_naming_it() -> None:
    with pytest.raises(NetError, match="net 'order' has no transition 'ship'"):
        sound_workflow().transition("ship")


def test_ids_allow_letters_digits_and_three_marks_only() -> None:
    assert is_valid_id("Order_v2.final-1")
    assert is_valid_id("x" * 100)
    assert not is_valid_id("x" * 101)
    assert not is_valid_id("ünïcode")
    assert not is_valid_id("a@b")
    assert not is_valid_id(7)
