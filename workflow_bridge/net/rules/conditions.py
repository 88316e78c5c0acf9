"""The conditions, how each one evaluates, and why it passed or failed.

See the package docstring for the policy: absent fields and incomparable values fail with
an explanation, runaway patterns raise :class:`PatternTimeout`, every child is evaluated.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import regex

from ..values import JSONValue, is_number, json_equal, json_kind, json_problem, show
from .errors import PatternTimeout, RuleError
from .paths import Lookup, check_path, lookup

# Wall-clock seconds all the regular expressions of one evaluation may take together. Real
# patterns on real values take microseconds; the budget only has to stop runaway ones.
REGEX_BUDGET_SECONDS = 0.25
MAX_PATTERN_LENGTH = 1_000


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one condition, why, and the outcomes of its children."""

    passed: bool
    explanation: str
    children: tuple[RuleResult, ...] = ()


def _absent(path: str, found: Lookup, consequence: str) -> RuleResult:
    return RuleResult(False, f"{path} is absent ({found.why_absent}), so {consequence}")


# ---- time budget ------------------------------------------------------------------------------


class Budget:
    """The regular-expression time left to one :func:`evaluate` call."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def search(self, compiled: regex.Pattern[str], pattern: str, string: str) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise PatternTimeout(pattern, self.seconds)
        try:
            return compiled.search(string, timeout=remaining) is not None
        except TimeoutError:
            raise PatternTimeout(pattern, self.seconds) from None


# ---- conditions -------------------------------------------------------------------------------


def _check_value(value: object, what: str) -> JSONValue:
    problem = json_problem(value)
    if problem:
        raise RuleError(f"{what} is not a JSON value: {problem}")
    # A private copy: the caller's dict or list changing later must not change the rule.
    return cast(JSONValue, copy.deepcopy(value))


def _check_ordered(value: object, what: str) -> None:
    if not (is_number(value) or isinstance(value, str)):
        raise RuleError(f"{what} must be a number or a string, got {json_kind(value)}")
    problem = json_problem(value)
    if problem:
        raise RuleError(f"{what}: {problem}")


def _order_problem(actual: object, expected: object) -> str | None:
    """Why ``actual`` can not be ordered against ``expected`` (None when it can)."""
    if is_number(actual) and is_number(expected):
        return None
    if isinstance(actual, str) and isinstance(expected, str):
        return None
    return f"a {json_kind(actual)} can not be compared with a {json_kind(expected)}"


@dataclass(frozen=True)
class FieldExists:
    """Passes when the field is present (a JSON ``null`` is present)."""

    field: str

    def __post_init__(self) -> None:
        check_path(self.field)

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "FieldExists", "field": self.field}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        found = lookup(view, self.field)
        if found.present:
            return RuleResult(True, f"{self.field} is present ({show(found.value)})")
        return RuleResult(False, f"{self.field} is absent ({found.why_absent})")


@dataclass(frozen=True)
class FieldEquals:
    """Passes when the field equals ``value`` as JSON (``true`` is not ``1``)."""

    field: str
    value: JSONValue

    def __post_init__(self) -> None:
        check_path(self.field)
        object.__setattr__(self, "value", _check_value(self.value, "value"))

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "FieldEquals", "field": self.field, "value": copy.deepcopy(self.value)}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        found = lookup(view, self.field)
        if not found.present:
            return _absent(self.field, found, f"it does not equal {show(self.value)}")
        if json_equal(found.value, self.value):
            return RuleResult(True, f"{self.field} is {show(found.value)}, as required")
        return RuleResult(False, f"{self.field} is {show(found.value)}, not {show(self.value)}")


@dataclass(frozen=True)
class _Ordered:
    field: str
    value: int | float | str

    def __post_init__(self) -> None:
        check_path(self.field)
        _check_ordered(self.value, "value")


@dataclass(frozen=True)
class FieldGreaterThan(_Ordered):
    """Passes when the field is a number greater than a number ``value``, or a string after a
    string ``value`` (code-point order)."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "FieldGreaterThan", "field": self.field, "value": self.value}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        return _compare(self.field, self.value, view, "greater than", lambda a, b: a > b)


@dataclass(frozen=True)
class FieldLessThan(_Ordered):
    """Passes when the field is less than ``value`` (numbers with numbers, strings with
    strings)."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "FieldLessThan", "field": self.field, "value": self.value}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        return _compare(self.field, self.value, view, "less than", lambda a, b: a < b)


def _compare(
    path: str,
    expected: int | float | str,
    view: Mapping[str, Any],
    relation: str,
    holds: Any,
) -> RuleResult:
    found = lookup(view, path)
    if not found.present:
        return _absent(path, found, f"it is not {relation} {show(expected)}")
    problem = _order_problem(found.value, expected)
    if problem:
        return RuleResult(
            False,
            f"{path} is {show(found.value)}: {problem}, so it is not {relation} {show(expected)}",
        )
    if holds(found.value, expected):
        return RuleResult(True, f"{path} is {show(found.value)}, {relation} {show(expected)}")
    return RuleResult(False, f"{path} is {show(found.value)}, not {relation} {show(expected)}")


@dataclass(frozen=True)
class FieldContains:
    """Passes when the field is a string containing the string ``value``, or an array with an
    element equal to ``value``."""

    field: str
    value: JSONValue

    def __post_init__(self) -> None:
        check_path(self.field)
        object.__setattr__(self, "value", _check_value(self.value, "value"))

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "FieldContains", "field": self.field, "value": copy.deepcopy(self.value)}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        found = lookup(view, self.field)
        wanted = show(self.value)
        if not found.present:
            return _absent(self.field, found, f"it does not contain {wanted}")
        actual = found.value
        if isinstance(actual, str):
            if not isinstance(self.value, str):
                return RuleResult(
                    False,
                    f"{self.field} is a string and {wanted} is a {json_kind(self.value)}, "
                    "so it is not a substring",
                )
            if self.value in actual:
                return RuleResult(True, f"{self.field} ({show(actual)}) contains {wanted}")
            return RuleResult(False, f"{self.field} ({show(actual)}) does not contain {wanted}")
        if isinstance(actual, list | tuple):
            if any(json_equal(item, self.value) for item in actual):
                return RuleResult(True, f"{self.field} has an element equal to {wanted}")
            return RuleResult(
                False, f"{self.field} ({len(actual)} elements) has no element equal to {wanted}"
            )
        return RuleResult(
            False,
            f"{self.field} is a {json_kind(actual)}, not a string or an array, "
            f"so it does not contain {wanted}",
        )


@dataclass(frozen=True)
class In:
    """Passes when the field equals (as JSON) one of ``values``."""

    field: str
    values: tuple[JSONValue, ...]

    def __post_init__(self) -> None:
        check_path(self.field)
        if isinstance(self.values, str | Mapping) or not isinstance(self.values, Sequence):
            raise RuleError(f"values must be an array, got {json_kind(self.values)}")
        if not self.values:
            raise RuleError("values is empty; In with no values never passes")
        object.__setattr__(
            self,
            "values",
            tuple(_check_value(v, f"values[{i}]") for i, v in enumerate(self.values)),
        )

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "In", "field": self.field, "values": copy.deepcopy(list(self.values))}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        found = lookup(view, self.field)
        choices = show(list(self.values))
        if not found.present:
            return _absent(self.field, found, f"it is not one of {choices}")
        if any(json_equal(found.value, v) for v in self.values):
            return RuleResult(True, f"{self.field} is {show(found.value)}, one of {choices}")
        return RuleResult(False, f"{self.field} is {show(found.value)}, not one of {choices}")


@dataclass(frozen=True)
class Between:
    """Passes when ``low <= field <= high`` (both bounds included; numbers or strings)."""

    field: str
    low: int | float | str
    high: int | float | str

    def __post_init__(self) -> None:
        check_path(self.field)
        _check_ordered(self.low, "low")
        _check_ordered(self.high, "high")
        if _order_problem(self.low, self.high):
            raise RuleError(
                f"low ({json_kind(self.low)}) and high ({json_kind(self.high)}) must both be "
                "numbers or both strings"
            )
        if self.low > self.high:  # type: ignore[operator]  # same kind, checked just above
            raise RuleError(
                f"low {show(self.low)} is greater than high {show(self.high)}; "
                "the condition could never pass"
            )

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "Between", "field": self.field, "low": self.low, "high": self.high}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        found = lookup(view, self.field)
        span = f"between {show(self.low)} and {show(self.high)}"
        if not found.present:
            return _absent(self.field, found, f"it is not {span}")
        problem = _order_problem(found.value, self.low)
        if problem:
            return RuleResult(
                False, f"{self.field} is {show(found.value)}: {problem}, so it is not {span}"
            )
        if self.low <= found.value <= self.high:
            return RuleResult(True, f"{self.field} is {show(found.value)}, {span}")
        return RuleResult(False, f"{self.field} is {show(found.value)}, not {span}")


@dataclass(frozen=True)
class Matches:
    """Passes when the regular expression finds a match anywhere in the string field (anchor
    it with ``^…$`` for a whole match). Time-bounded; see the module docstring."""

    field: str
    pattern: str
    _compiled: regex.Pattern[str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_path(self.field)
        if not isinstance(self.pattern, str):
            raise RuleError(f"pattern must be a string, got {json_kind(self.pattern)}")
        if len(self.pattern) > MAX_PATTERN_LENGTH:
            raise RuleError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
        try:
            compiled = regex.compile(self.pattern)
        except (regex.error, ValueError, OverflowError) as exc:
            raise RuleError(f"pattern {self.pattern!r} does not compile: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "Matches", "field": self.field, "pattern": self.pattern}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        found = lookup(view, self.field)
        if not found.present:
            return _absent(self.field, found, f"it does not match {self.pattern!r}")
        if not isinstance(found.value, str):
            return RuleResult(
                False,
                f"{self.field} is a {json_kind(found.value)}, not a string, "
                f"so it does not match {self.pattern!r}",
            )
        if budget.search(self._compiled, self.pattern, found.value):
            return RuleResult(True, f"{self.field} ({show(found.value)}) matches {self.pattern!r}")
        return RuleResult(
            False, f"{self.field} ({show(found.value)}) does not match {self.pattern!r}"
        )


def _check_children(conditions: object, kind: str) -> tuple[Condition, ...]:
    if not isinstance(conditions, tuple | list) or not conditions:
        raise RuleError(f"{kind} needs a non-empty array of conditions")
    for child in conditions:
        if not isinstance(child, CONDITION_CLASSES):
            raise RuleError(f"{kind}: {child!r} is not a condition")
    return tuple(conditions)


@dataclass(frozen=True)
class And:
    """Passes when every condition passes."""

    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", _check_children(self.conditions, "And"))

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "And", "conditions": [c.to_json() for c in self.conditions]}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        children = tuple(c._evaluate(view, budget) for c in self.conditions)
        failed = sum(1 for c in children if not c.passed)
        if failed:
            return RuleResult(False, f"{failed} of {len(children)} conditions fail (And)", children)
        return RuleResult(True, f"all {len(children)} conditions hold (And)", children)


@dataclass(frozen=True)
class Or:
    """Passes when at least one condition passes."""

    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", _check_children(self.conditions, "Or"))

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "Or", "conditions": [c.to_json() for c in self.conditions]}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        children = tuple(c._evaluate(view, budget) for c in self.conditions)
        held = sum(1 for c in children if c.passed)
        if held:
            return RuleResult(True, f"{held} of {len(children)} conditions hold (Or)", children)
        return RuleResult(False, f"none of {len(children)} conditions holds (Or)", children)


@dataclass(frozen=True)
class Not:
    """Passes when its condition fails."""

    condition: Condition

    def __post_init__(self) -> None:
        if not isinstance(self.condition, CONDITION_CLASSES):
            raise RuleError(f"Not: {self.condition!r} is not a condition")

    def to_json(self) -> dict[str, JSONValue]:
        return {"type": "Not", "condition": self.condition.to_json()}

    def _evaluate(self, view: Mapping[str, Any], budget: Budget) -> RuleResult:
        inner = self.condition._evaluate(view, budget)
        if inner.passed:
            return RuleResult(False, "the inner condition holds, so Not fails", (inner,))
        return RuleResult(True, "the inner condition fails, so Not passes", (inner,))


Condition: TypeAlias = (
    FieldExists
    | FieldEquals
    | FieldGreaterThan
    | FieldLessThan
    | FieldContains
    | In
    | Between
    | Matches
    | And
    | Or
    | Not
)
CONDITION_CLASSES = (
    FieldExists,
    FieldEquals,
    FieldGreaterThan,
    FieldLessThan,
    FieldContains,
    In,
    Between,
    Matches,
    And,
    Or,
    Not,
)

# ---- evaluation -------------------------------------------------------------------------------


def evaluate(condition: Condition, view: Mapping[str, Any]) -> RuleResult:
    """Evaluate ``condition`` against ``view`` (``{"data": …, "metadata": …}``).

    Never raises for the data (absent fields and incomparable values fail the condition with
    an explanation); raises :class:`PatternTimeout` when ``Matches`` patterns together run
    past :data:`REGEX_BUDGET_SECONDS`.
    """
    return condition._evaluate(view, Budget(REGEX_BUDGET_SECONDS))


def explain(result: RuleResult) -> str:
    """The result as indented lines, one per condition, ``PASS``/``FAIL`` first."""
    lines: list[str] = []

    def walk(node: RuleResult, depth: int) -> None:
        lines.append(f"{'  ' * depth}{'PASS' if node.passed else 'FAIL'}: {node.explanation}")
        for child in node.children:
            walk(child, depth + 1)

    walk(result, 0)
    return "\n".join(lines)
