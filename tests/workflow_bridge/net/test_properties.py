"""Properties that hold for every net: random small nets, random firing sequences.

Examples are few and deadlines off so the module stays fast and steady on a loaded CI
machine; ``database=None``: no example database is kept between runs (a failure prints the
seed that reproduces it).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workflow_bridge.net.nets import t
from workflow_bridge.net import (
    Marking,
    Net,
    analyze,
    can_fire,
    condition_to_json,
    enabled,
    evaluate,
    explain,
    fire,
    merge_patch,
    parse_condition,
)

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LIMIT = 1_500


@st.composite
def nets(draw: st.DrawFn) -> Net:
    places = [f"p{i}" for i in range(draw(st.integers(1, 4)))]
    place = st.sampled_from(places)
    weight = st.integers(1, 2)
    transitions = [
        t(
            f"t{i}",
            draw(st.dictionaries(place, weight, min_size=1, max_size=2)),
            draw(st.dictionaries(place, weight, max_size=3)),
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    marking = draw(st.dictionaries(place, st.integers(0, 2)))
    return Net.build("random", places, transitions, marking)


def run(net: Net, choices: list[int]) -> list[tuple[Marking, str, Marking]]:
    """Fire along ``choices`` (each picks among the enabled transitions) until none is."""
    steps = []
    marking = net.initial_marking
    for choice in choices:
        fireable = enabled(net, marking)
        if not fireable:
            break
        transition = fireable[choice % len(fireable)]
        after = fire(net, marking, transition)
        steps.append((marking, transition, after))
        marking = after
    return steps


def plain_reachable(net: Net, limit: int) -> set[Marking] | None:
    """Every reachable marking by a naive walk over the public API; None past ``limit``."""
    seen = {net.initial_marking}
    queue = deque([net.initial_marking])
    while queue:
        marking = queue.popleft()
        for transition in enabled(net, marking):
            after = fire(net, marking, transition)
            if after not in seen:
                if len(seen) >= limit:
                    return None
                seen.add(after)
                queue.append(after)
    return seen


@PROPERTY
@given(net=nets(), choices=st.lists(st.integers(0, 10), max_size=15))
def test_firing_moves_exactly_the_arc_weights(net: Net, choices: list[int]) -> None:
    for before, transition_id, after in run(net, choices):
        transition = net.transition(transition_id)
        taken = {a.place: a.weight for a in transition.inputs}
        given_ = {a.place: a.weight for a in transition.outputs}
        for place in net.places:
            expected = before.tokens(place) - taken.get(place, 0) + given_.get(place, 0)
            assert after.tokens(place) == expected
            assert after.tokens(place) >= 0
        assert after.total == before.total - sum(taken.values()) + sum(given_.values())


@PROPERTY
@given(net=nets(), choices=st.lists(st.integers(0, 10), max_size=10))
def test_enabled_agrees_with_can_fire(net: Net, choices: list[int]) -> None:
    markings = [net.initial_marking] + [after for _, _, after in run(net, choices)]
    for marking in markings:
        fireable = enabled(net, marking)
        for transition in net.transitions:
            verdict = can_fire(net, marking, transition.id)
            assert bool(verdict) == (transition.id in fireable)
            # A refusal names exactly the input places that are short.
            short = {a.place for a in transition.inputs if marking.tokens(a.place) < a.weight}
            assert {s.place for s in verdict.shortfalls} == short


@PROPERTY
@given(net=nets(), choices=st.lists(st.integers(0, 10), max_size=15))
def test_what_firing_reaches_agrees_with_the_analysis(net: Net, choices: list[int]) -> None:
    analysis = analyze(net, max_markings=LIMIT)
    for _, transition, after in run(net, choices):
        assert transition not in analysis.dead_transitions
        for place in after:
            assert place not in analysis.unreachable_places
        if analysis.bounded:
            assert analysis.is_reachable(after) is True
            assert all(place not in analysis.unbounded_places for place in after)


@PROPERTY
@given(net=nets())
def test_the_analysis_agrees_with_a_naive_walk(net: Net) -> None:
    analysis = analyze(net, max_markings=LIMIT)
    naive = plain_reachable(net, LIMIT)
    if analysis.bounded is True:
        # Bounded: the walk finishes and finds the very same markings.
        assert naive == set(analysis.reachable)
        assert analysis.reachable_markings == len(naive)
        dead = {d.marking for d in analysis.deadlocks + analysis.proper_ends}
        assert dead == {m for m in naive if not enabled(net, m)}
    if analysis.bounded is False:
        # Unbounded means infinitely many markings: no finite walk can finish.
        assert naive is None
    if naive is not None:
        # A finished naive walk proves boundedness; the analysis must not say otherwise.
        assert analysis.bounded is True
        if analysis.coverability_complete:
            reached = {p for m in naive for p in m}
            assert set(analysis.unreachable_places) == set(net.places) - reached
            fired = {tid for m in naive for tid in enabled(net, m)}
            assert set(analysis.dead_transitions) == {tr.id for tr in net.transitions} - fired


# ---- rules and merge patches ------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.sampled_from(["data.a", "data.a.b", "metadata.x", "data.list.0"])


def leaves() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda f: {"type": "FieldExists", "field": f}, FIELDS),
        st.builds(
            lambda f, v: {"type": "FieldEquals", "field": f, "value": v}, FIELDS, JSON_VALUES
        ),
        st.builds(
            lambda f, v: {"type": "FieldGreaterThan", "field": f, "value": v}, FIELDS, st.integers()
        ),
        st.builds(
            lambda f, v: {"type": "FieldContains", "field": f, "value": v}, FIELDS, JSON_SCALARS
        ),
        st.builds(
            lambda f, vs: {"type": "In", "field": f, "values": vs},
            FIELDS,
            st.lists(JSON_VALUES, min_size=1, max_size=3),
        ),
        st.builds(
            lambda f, a, b: {"type": "Between", "field": f, "low": min(a, b), "high": max(a, b)},
            FIELDS,
            st.integers(),
            st.integers(),
        ),
    )


CONDITIONS = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(
            lambda cs: {"type": "And", "conditions": cs}, st.lists(inner, min_size=1, max_size=3)
        ),
        st.builds(
            lambda cs: {"type": "Or", "conditions": cs}, st.lists(inner, min_size=1, max_size=3)
        ),
        st.builds(lambda c: {"type": "Not", "condition": c}, inner),
    ),
    max_leaves=6,
)
VIEWS = st.fixed_dictionaries(
    {
        "data": st.dictionaries(st.sampled_from(["a", "list"]), JSON_VALUES, max_size=2),
        "metadata": st.dictionaries(st.just("x"), JSON_VALUES, max_size=1),
    }
)


@PROPERTY
@given(tree=CONDITIONS, view=VIEWS)
def test_conditions_round_trip_and_evaluate_without_raising(
    tree: dict[str, Any], view: dict[str, Any]
) -> None:
    condition = parse_condition(tree)
    assert type(condition).__name__ == tree["type"]
    assert condition_to_json(condition) == tree
    result = evaluate(condition, view)  # absent fields and odd types never raise
    assert explain(result).startswith("PASS" if result.passed else "FAIL")
    negated = evaluate(parse_condition({"type": "Not", "condition": tree}), view)
    assert negated.passed != result.passed


@PROPERTY
@given(target=JSON_VALUES, patch=JSON_VALUES)
def test_a_merge_patch_applied_twice_changes_nothing_more(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once
