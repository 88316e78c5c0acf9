"""Conditions and rules from their JSON form, strictly (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import is_valid_id
from ..values import JSONValue, json_kind, show
from .conditions import (
    CONDITION_CLASSES,
    And,
    Between,
    Condition,
    FieldContains,
    FieldEquals,
    FieldExists,
    FieldGreaterThan,
    FieldLessThan,
    In,
    Matches,
    Not,
    Or,
    RuleResult,
    evaluate,
)
from .errors import RuleError

MAX_CONDITION_DEPTH = 32
MAX_CONDITION_NODES = 500

# The JSON form: the keys each type takes (all required).
CONDITION_KEYS: Mapping[str, tuple[str, ...]] = {
    "FieldExists": ("field",),
    "FieldEquals": ("field", "value"),
    "FieldGreaterThan": ("field", "value"),
    "FieldLessThan": ("field", "value"),
    "FieldContains": ("field", "value"),
    "In": ("field", "values"),
    "Between": ("field", "low", "high"),
    "Matches": ("field", "pattern"),
    "And": ("conditions",),
    "Or": ("conditions",),
    "Not": ("condition",),
}
KNOWN_CONDITION_TYPES = tuple(sorted(CONDITION_KEYS))


def parse_condition(data: object) -> Condition:
    """A condition from its JSON form, e.g. ``{"type": "FieldGreaterThan", "field":
    "data.order.total", "value": 100}``.

    Raises :class:`RuleError` naming the place in the tree (``condition.conditions[2]``) for
    an unknown ``type`` (listing the known ones), unknown or missing keys, bad values, paths
    outside the view, patterns that do not compile, and trees deeper than
    :data:`MAX_CONDITION_DEPTH` or larger than :data:`MAX_CONDITION_NODES`.
    """
    return _parse(data, "condition", 0, [0])


def _parse(data: object, where: str, depth: int, nodes: list[int]) -> Condition:
    if depth >= MAX_CONDITION_DEPTH:
        raise RuleError(f"{where}: conditions are nested deeper than {MAX_CONDITION_DEPTH}")
    nodes[0] += 1
    if nodes[0] > MAX_CONDITION_NODES:
        raise RuleError(f"{where}: more than {MAX_CONDITION_NODES} conditions in one tree")
    if not isinstance(data, Mapping):
        raise RuleError(f"{where}: a condition is a JSON object, got {json_kind(data)}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CONDITION_KEYS:
        got = "no 'type'" if "type" not in data else f"unknown condition type {show(kind)}"
        raise RuleError(f"{where}: {got}; known types: {', '.join(KNOWN_CONDITION_TYPES)}")
    expected = CONDITION_KEYS[kind]
    extra = sorted(str(k) for k in data if k != "type" and k not in expected)
    if extra:
        raise RuleError(
            f"{where} ({kind}): unknown key{'s' if len(extra) > 1 else ''} "
            f"{', '.join(map(repr, extra))}; {kind} takes {', '.join(expected)}"
        )
    missing = [k for k in expected if k not in data]
    if missing:
        raise RuleError(f"{where} ({kind}): missing {', '.join(map(repr, missing))}")

    if kind in ("And", "Or"):
        children = data["conditions"]
        if not isinstance(children, list) or not children:
            raise RuleError(f"{where} ({kind}): conditions must be a non-empty array")
        parsed = tuple(
            _parse(child, f"{where}.conditions[{i}]", depth + 1, nodes)
            for i, child in enumerate(children)
        )
        return And(parsed) if kind == "And" else Or(parsed)
    if kind == "Not":
        return Not(_parse(data["condition"], f"{where}.condition", depth + 1, nodes))
    try:
        if kind == "In":
            values = data["values"]
            if not isinstance(values, list):
                raise RuleError(f"values must be an array, got {json_kind(values)}")
            return In(data["field"], tuple(values))
        leaf: Condition = _LEAF_CLASSES[kind](**{key: data[key] for key in expected})
        return leaf
    except RuleError as exc:
        raise RuleError(f"{where} ({kind}): {exc}") from None


_LEAF_CLASSES: Mapping[str, Any] = {
    "FieldExists": FieldExists,
    "FieldEquals": FieldEquals,
    "FieldGreaterThan": FieldGreaterThan,
    "FieldLessThan": FieldLessThan,
    "FieldContains": FieldContains,
    "Between": Between,
    "Matches": Matches,
}


def condition_to_json(condition: Condition) -> dict[str, JSONValue]:
    """The JSON form :func:`parse_condition` reads back to an equal condition."""
    return condition.to_json()


# ---- stored rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A named, versioned condition that transitions refer to by ``id``."""

    id: str
    name: str
    condition: Condition
    version: int = 1
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_valid_id(self.id):
            raise RuleError(
                f"rule id {self.id!r} is not valid: use 1 to 100 ASCII letters, digits, "
                "'_', '-' or '.'"
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise RuleError(f"rule {self.id!r} needs a non-empty name")
        if not isinstance(self.condition, CONDITION_CLASSES):
            raise RuleError(f"rule {self.id!r}: {self.condition!r} is not a condition")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise RuleError(f"rule {self.id!r}: version must be a whole number ≥ 1")
        if isinstance(self.tags, str) or not isinstance(self.tags, Sequence):
            raise RuleError(f"rule {self.id!r}: tags must be an array of strings")
        if not all(isinstance(tag, str) and tag for tag in self.tags):
            raise RuleError(f"rule {self.id!r}: tags must be non-empty strings")
        object.__setattr__(self, "tags", tuple(self.tags))

    def evaluate(self, view: Mapping[str, Any]) -> RuleResult:
        return evaluate(self.condition, view)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "id": self.id,
            "name": self.name,
            "condition": self.condition.to_json(),
            "version": self.version,
            "tags": list(self.tags),
        }


def parse_rule(data: object) -> Rule:
    """A rule from ``{"id", "name", "condition", "version"?, "tags"?}``; strict like
    :func:`parse_condition`."""
    if not isinstance(data, Mapping):
        raise RuleError(f"a rule is a JSON object, got {json_kind(data)}")
    allowed = ("id", "name", "condition", "version", "tags")
    extra = sorted(str(k) for k in data if k not in allowed)
    if extra:
        raise RuleError(
            f"rule: unknown keys {', '.join(map(repr, extra))}; a rule takes {', '.join(allowed)}"
        )
    missing = [k for k in ("id", "name", "condition") if k not in data]
    if missing:
        raise RuleError(f"rule: missing {', '.join(map(repr, missing))}")
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise RuleError("rule: tags must be an array of strings")
    return Rule(
        id=data["id"],
        name=data["name"],
        condition=parse_condition(data["condition"]),
        version=data.get("version", 1),
        tags=tuple(tags),
    )
