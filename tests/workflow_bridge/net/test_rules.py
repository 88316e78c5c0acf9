"""Conditions: strict parsing, dot paths, absent fields, explanations."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from workflow_bridge.net import (
    KNOWN_CONDITION_TYPES,
    And,
    Between,
    FieldEquals,
    FieldGreaterThan,
    In,
    Matches,
    Not,
    Rule,
    RuleError,
    condition_to_json,
    evaluate,
    explain,
    parse_condition,
    parse_rule,
)
from workflow_bridge.net.rules import REGEX_BUDGET_SECONDS

ROOT = Path(__file__).resolve().parents[3]

VIEW: dict[str, Any] = {
    "data": {
        "order": {"total": 120, "currency": "EUR", "note": "rush delivery please"},
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        "tags": ["vip", "eu"],
        "approved": True,
        "empty": None,
    },
    "metadata": {"priority": "high", "attempt": 1},
}


def run(condition: dict[str, Any], view: dict[str, Any] = VIEW) -> tuple[bool, str]:
    result = evaluate(parse_condition(condition), view)
    return result.passed, result.explanation


# ---- parsing ----------------------------------------------------------------------------------


def test_an_unknown_type_is_refused_and_the_known_ones_listed() -> None:
    with pytest.raises(RuleError) as refused:
        parse_condition({"type": "Expression", "expression": "1 == 1"})
    message = str(refused.value)
    assert 'unknown condition type "Expression"' in message
    for known in KNOWN_CONDITION_TYPES:
        assert known in message


def test_an_unknown_type_deep_in_the_tree_is_refused_with_its_location() -> None:
    tree = {
        "type": "And",
        "conditions": [
            {"type": "FieldExists", "field": "data.order"},
            {"type": "Not", "condition": {"type": "IsVIP", "field": "data.tags"}},
        ],
    }
    with pytest.raises(
        RuleError, match=r"condition\.conditions\[1\]\.condition: unknown condition type \"IsVIP\""
    ):
        parse_condition(tree)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("FieldExists", "a condition is a JSON object, got string"),
        ({"field": "data.x"}, "no 'type'; known types"),
        ({"type": "FieldEquals", "field": "data.x"}, r"\(FieldEquals\): missing 'value'"),
        (
            {"type": "FieldEquals", "field": "data.x", "value": 1, "vaule": 2},
            "unknown key 'vaule'; FieldEquals takes field, value",
        ),
        ({"type": "FieldExists", "field": "order.total"}, "must start with 'data.' or 'metadata.'"),
        ({"type": "FieldExists", "field": "data..total"}, "has an empty part"),
        ({"type": "FieldExists", "field": ""}, "non-empty dot path"),
        ({"type": "FieldExists", "field": 3}, "non-empty dot path"),
        (
            {"type": "FieldGreaterThan", "field": "data.x", "value": [1]},
            "value must be a number or a string, got array",
        ),
        (
            {"type": "FieldLessThan", "field": "data.x", "value": True},
            "value must be a number or a string, got boolean",
        ),
        (
            {"type": "FieldGreaterThan", "field": "data.x", "value": float("nan")},
            "not a JSON number",
        ),
        (
            {"type": "Between", "field": "data.x", "low": 5, "high": 1},
            "low 5 is greater than high 1",
        ),
        (
            {"type": "Between", "field": "data.x", "low": 1, "high": "z"},
            "both be numbers or both strings",
        ),
        ({"type": "In", "field": "data.x", "values": []}, "In with no values never passes"),
        ({"type": "In", "field": "data.x", "values": "abc"}, "values must be an array, got string"),
        ({"type": "Matches", "field": "data.x", "pattern": "("}, "does not compile"),
        ({"type": "Matches", "field": "data.x", "pattern": 5}, "pattern must be a string"),
        ({"type": "Matches", "field": "data.x", "pattern": "a" * 1001}, "longer than 1000"),
        ({"type": "And", "conditions": []}, r"\(And\): conditions must be a non-empty array"),
        ({"type": "Or", "conditions": {"type": "FieldExists"}}, "non-empty array"),
        (
            {"type": "FieldEquals", "field": "data.x", "value": {1: "a"}},
            "object key 1 is not a string",
        ),
        ({"type": "FieldEquals", "field": "data.x", "value": {1, 2}}, "a set is not a JSON value"),
    ],
)
def test_malformed_conditions_are_refused_with_a_reason(data: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_condition(data)


def test_deep_or_huge_trees_are_refused_before_recursion_does() -> None:
    deep: dict[str, Any] = {"type": "FieldExists", "field": "data.x"}
    for _ in range(40):
        deep = {"type": "Not", "condition": deep}
    with pytest.raises(RuleError, match="nested deeper than 32"):
        parse_condition(deep)
    wide = {"type": "Or", "conditions": [{"type": "FieldExists", "field": "data.x"}] * 600}
    with pytest.raises(RuleError, match="more than 500 conditions"):
        parse_condition(wide)


def test_json_round_trip() -> None:
    tree = {
        "type": "Or",
        "conditions": [
            {"type": "Between", "field": "data.order.total", "low": 10, "high": 200.5},
            {"type": "In", "field": "metadata.priority", "values": ["high", {"x": [1, None]}]},
            {
                "type": "Not",
                "condition": {"type": "Matches", "field": "data.note", "pattern": "^a"},
            },
            {"type": "FieldContains", "field": "data.tags", "value": "vip"},
            {"type": "FieldLessThan", "field": "data.x", "value": "m"},
        ],
    }
    condition = parse_condition(tree)
    assert condition_to_json(condition) == tree
    assert parse_condition(json.loads(json.dumps(condition_to_json(condition)))) == condition


def test_a_parsed_condition_does_not_follow_later_changes_to_its_json() -> None:
    data: dict[str, Any] = {"type": "FieldEquals", "field": "data.tags", "value": ["vip", "eu"]}
    condition = parse_condition(data)
    data["value"].append("us")
    assert evaluate(condition, VIEW).passed


# ---- evaluation -------------------------------------------------------------------------------


def test_dot_paths_reach_into_objects_and_arrays() -> None:
    assert run({"type": "FieldEquals", "field": "data.order.currency", "value": "EUR"})[0]
    assert run({"type": "FieldEquals", "field": "data.items.1.sku", "value": "B-7"})[0]
    assert run({"type": "FieldEquals", "field": "metadata.priority", "value": "high"})[0]
    assert run({"type": "FieldExists", "field": "data.empty"})[0]  # null is present


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ("data.order.discount", "data.order has no key 'discount'"),
        ("data.customer.tier", "data has no key 'customer'"),
        ("data.items.5.sku", "data.items has 2 items, no index 5"),
        ("data.items.first", "data.items is an array and 'first' is not an index"),
        ("data.order.total.cents", "data.order.total is a number, not an object"),
        ("metadata.owner", "metadata has no key 'owner'"),
    ],
)
def test_an_absent_field_makes_comparisons_false_and_says_where(field: str, why: str) -> None:
    for condition in (
        {"type": "FieldEquals", "field": field, "value": 1},
        {"type": "FieldGreaterThan", "field": field, "value": 1},
        {"type": "FieldLessThan", "field": field, "value": 1},
        {"type": "FieldContains", "field": field, "value": 1},
        {"type": "In", "field": field, "values": [1]},
        {"type": "Between", "field": field, "low": 0, "high": 2},
        {"type": "Matches", "field": field, "pattern": "."},
        {"type": "FieldExists", "field": field},
    ):
        passed, explanation = run(condition)
        assert not passed
        assert f"{field} is absent ({why})" in explanation


def test_metadata_absent_from_the_view_entirely_is_absent_too() -> None:
    passed, explanation = run({"type": "FieldExists", "field": "metadata.x"}, {"data": {}})
    assert not passed
    assert "the view has no key 'metadata'" in explanation


def test_comparisons() -> None:
    assert run({"type": "FieldGreaterThan", "field": "data.order.total", "value": 100}) == (
        True,
        "data.order.total is 120, greater than 100",
    )
    assert run({"type": "FieldLessThan", "field": "data.order.total", "value": 100}) == (
        False,
        "data.order.total is 120, not less than 100",
    )
    assert run({"type": "FieldGreaterThan", "field": "metadata.priority", "value": "a"})[0]
    assert run({"type": "FieldLessThan", "field": "data.order.total", "value": 120.5})[0]


def test_incomparable_types_are_false_with_an_explanation() -> None:
    assert run({"type": "FieldGreaterThan", "field": "metadata.priority", "value": 3}) == (
        False,
        'metadata.priority is "high": a string can not be compared with a number, '
        "so it is not greater than 3",
    )
    # A boolean is not a number, although Python says True > 0.
    passed, explanation = run({"type": "FieldGreaterThan", "field": "data.approved", "value": 0})
    assert not passed
    assert "a boolean can not be compared with a number" in explanation


def test_equality_is_json_equality() -> None:
    assert not run({"type": "FieldEquals", "field": "data.approved", "value": 1})[0]
    assert run({"type": "FieldEquals", "field": "data.approved", "value": True})[0]
    assert run({"type": "FieldEquals", "field": "data.order.total", "value": 120.0})[0]
    assert run({"type": "FieldEquals", "field": "data.empty", "value": None})[0]
    assert run({"type": "FieldEquals", "field": "data.items.0", "value": {"qty": 2, "sku": "A-1"}})[
        0
    ]
    assert not run({"type": "FieldEquals", "field": "metadata.attempt", "value": True})[0]


def test_contains_is_substring_for_strings_and_membership_for_arrays() -> None:
    assert run({"type": "FieldContains", "field": "data.order.note", "value": "rush"})[0]
    assert not run({"type": "FieldContains", "field": "data.order.note", "value": "slow"})[0]
    assert run({"type": "FieldContains", "field": "data.tags", "value": "vip"})[0]
    assert not run({"type": "FieldContains", "field": "data.tags", "value": "v"})[0]
    assert run({"type": "FieldContains", "field": "data.items", "value": {"sku": "B-7", "qty": 1}})[
        0
    ]
    passed, explanation = run({"type": "FieldContains", "field": "data.order.total", "value": 1})
    assert not passed
    assert "is a number, not a string or an array" in explanation
    passed, explanation = run({"type": "FieldContains", "field": "data.order.note", "value": 1})
    assert not passed
    assert "is a string and 1 is a number" in explanation


def test_in() -> None:
    assert run({"type": "In", "field": "metadata.priority", "values": ["high", "urgent"]}) == (
        True,
        'metadata.priority is "high", one of ["high", "urgent"]',
    )
    assert not run({"type": "In", "field": "metadata.attempt", "values": [True, "1"]})[0]


def test_between_includes_both_bounds() -> None:
    assert run({"type": "Between", "field": "data.order.total", "low": 120, "high": 130})[0]
    assert run({"type": "Between", "field": "data.order.total", "low": 100, "high": 120})[0]
    assert not run({"type": "Between", "field": "data.order.total", "low": 121, "high": 130})[0]
    assert run({"type": "Between", "field": "metadata.priority", "low": "a", "high": "m"})[0]
    passed, explanation = run(
        {"type": "Between", "field": "metadata.priority", "low": 1, "high": 2}
    )
    assert not passed
    assert "a string can not be compared with a number" in explanation


def test_matches_searches_strings_with_the_regex_syntax() -> None:
    assert run({"type": "Matches", "field": "data.items.0.sku", "pattern": r"^[A-Z]-\d+$"})[0]
    assert run({"type": "Matches", "field": "data.order.note", "pattern": r"(?<=rush )delivery"})[0]
    assert not run({"type": "Matches", "field": "data.order.note", "pattern": "^delivery"})[0]
    passed, explanation = run({"type": "Matches", "field": "data.order.total", "pattern": "1"})
    assert not passed
    assert "is a number, not a string" in explanation


def test_and_or_not_evaluate_every_child_and_explain_nested() -> None:
    tree = {
        "type": "And",
        "conditions": [
            {"type": "FieldGreaterThan", "field": "data.order.total", "value": 100},
            {
                "type": "Or",
                "conditions": [
                    {"type": "FieldEquals", "field": "metadata.priority", "value": "low"},
                    {"type": "FieldExists", "field": "data.customer.tier"},
                ],
            },
            {
                "type": "Not",
                "condition": {"type": "FieldContains", "field": "data.tags", "value": "blocked"},
            },
        ],
    }
    result = evaluate(parse_condition(tree), VIEW)
    assert not result.passed
    assert [child.passed for child in result.children] == [True, False, True]
    assert explain(result) == textwrap.dedent(
        """\
        FAIL: 1 of 3 conditions fail (And)
          PASS: data.order.total is 120, greater than 100
          FAIL: none of 2 conditions holds (Or)
            FAIL: metadata.priority is "high", not "low"
            FAIL: data.customer.tier is absent (data has no key 'customer')
          PASS: the inner condition fails, so Not passes
            FAIL: data.tags (2 elements) has no element equal to "blocked\""""
    )


def test_conditions_can_be_built_directly_and_are_checked_the_same_way() -> None:
    condition = And(
        (FieldGreaterThan("data.order.total", 100), Not(In("metadata.priority", ("low",))))
    )
    assert evaluate(condition, VIEW).passed
    with pytest.raises(RuleError, match="must start with"):
        FieldEquals("order.total", 1)
    with pytest.raises(RuleError, match="greater than high"):
        Between("data.x", 3, 2)
    with pytest.raises(RuleError, match="does not compile"):
        Matches("data.x", "[")


def test_long_values_are_shortened_in_explanations() -> None:
    view = {"data": {"blob": "x" * 10_000}, "metadata": {}}
    _, explanation = run({"type": "FieldEquals", "field": "data.blob", "value": "y"}, view)
    assert len(explanation) < 200
    assert "…" in explanation


# ---- rules ------------------------------------------------------------------------------------


def test_a_rule_round_trips_and_evaluates() -> None:
    data = {
        "id": "big-order",
        "name": "Big order",
        "condition": {"type": "FieldGreaterThan", "field": "data.order.total", "value": 100},
        "version": 3,
        "tags": ["finance"],
    }
    rule = parse_rule(data)
    assert rule == Rule(
        "big-order", "Big order", FieldGreaterThan("data.order.total", 100), 3, ("finance",)
    )
    assert rule.to_json() == data
    assert rule.evaluate(VIEW).passed
    assert parse_rule({k: data[k] for k in ("id", "name", "condition")}).version == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "r", "name": "R"}, "missing 'condition'"),
        ({"id": "r", "name": "R", "condition": {"type": "Nope"}}, "unknown condition type"),
        (
            {"id": "r r", "name": "R", "condition": {"type": "FieldExists", "field": "data.x"}},
            "rule id 'r r'",
        ),
        (
            {
                "id": "r",
                "name": "R",
                "condition": {"type": "FieldExists", "field": "data.x"},
                "version": 0,
            },
            "version",
        ),
        (
            {
                "id": "r",
                "name": "R",
                "condition": {"type": "FieldExists", "field": "data.x"},
                "owner": 1,
            },
            "unknown keys 'owner'",
        ),
        (
            {
                "id": "r",
                "name": "R",
                "condition": {"type": "FieldExists", "field": "data.x"},
                "tags": "a",
            },
            "tags",
        ),
    ],
)
def test_bad_rules_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(data)


# ---- runaway regular expressions --------------------------------------------------------------

EVIL = "a" * 40 + "!"
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from workflow_bridge.net import PatternTimeout, evaluate, parse_condition

    evil = sys.argv[1]
    cases = {
        "alone": {"type": "Matches", "field": "data.s", "pattern": "^(a|aa)+$"},
        # Not around it must not turn the runaway pattern into a pass.
        "negated": {"type": "Not", "condition": {"type": "Matches", "field": "data.s", "pattern": "^(a|aa)+$"}},
        # Every child is evaluated: a passing sibling does not hide the broken pattern.
        "beside_a_pass": {"type": "Or", "conditions": [
            {"type": "FieldExists", "field": "data.s"},
            {"type": "Matches", "field": "data.s", "pattern": "^(a|aa)+$"},
        ]},
    }
    results = {}
    for name, tree in cases.items():
        started = time.monotonic()
        try:
            outcome = "passed" if evaluate(parse_condition(tree), {"data": {"s": evil}}).passed else "failed"
        except PatternTimeout as exc:
            outcome = "timeout: " + str(exc)
        results[name] = {"outcome": outcome, "seconds": time.monotonic() - started}
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def runaway_results() -> dict[str, dict[str, Any]]:
    # In a child process, so that a regression fails this test instead of hanging the suite.
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, EVIL],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a rule with a pathological pattern did not finish in 60 s")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["alone", "negated", "beside_a_pass"])
def test_a_runaway_pattern_fails_the_evaluation_within_the_budget(
    case: str, runaway_results
) -> None:
    result = runaway_results[case]
    assert result["outcome"].startswith("timeout: the pattern '^(a")
    assert "did not finish within 0.25 s" in result["outcome"]
    # The budget plus scheduling slack on a loaded machine; unbounded would be hours.
    assert result["seconds"] < REGEX_BUDGET_SECONDS + 2.0


def test_ordinary_patterns_are_far_inside_the_budget() -> None:
    condition = parse_condition(
        {"type": "Matches", "field": "data.s", "pattern": r"^[a-z]+@[a-z]+\.[a-z]{2,}$"}
    )
    started = time.monotonic()
    for _ in range(200):
        assert evaluate(condition, {"data": {"s": "someone@example.org"}}).passed
    assert time.monotonic() - started < REGEX_BUDGET_SECONDS * 4
