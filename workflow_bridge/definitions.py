"""Workflow definitions (the workflow file's content) compiled into nets, and the questions the
services ask of them: which activities may fire now and why not, what firing does.

A definition is either the original's state machine::

    {"format": "circuit-breaker/workflow@1", "slug": "orders", "name": "Orders",
     "states": ["draft", "review", "done"], "initial_state": "draft",
     "activities": [{"id": "submit", "from_states": ["draft"], "to_state": "review",
                     "rules": ["has-total"]}],
     "rules": [{"id": "has-total", "condition": {"type": "FieldExists", "field": "data.total"}}]}

or a Petri net (forks, joins, weights)::

    {..., "places": ["start", "a", "b", "end"], "initial_marking": {"start": 1},
     "transitions": [{"id": "split", "inputs": ["start"], "outputs": ["a", "b"]},
                     {"id": "join", "inputs": ["a", {"place": "b", "weight": 1}],
                      "outputs": ["end"], "rules": []}],
     "final_places": ["end"]}

In a state machine an activity allowed from several states is one transition per state
(``submit@draft``); in a net every transition is its own activity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.errors import Conflict, ValidationFailed
from workflow_bridge.net import (
    Arc,
    Condition,
    Marking,
    Net,
    NetError,
    NotEnabled,
    Transition,
    activity_of,
    can_fire,
    fire,
    state_machine,
)
from workflow_bridge.rules import evaluate_safely

FORMAT = "circuit-breaker/workflow@1"
# /workflows/import is an endpoint: a workflow with that slug could not be read by it.
RESERVED_SLUGS = frozenset({"import"})
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,98}[a-z0-9]$|^[a-z0-9]$")
_KNOWN = frozenset(
    {
        "format",
        "slug",
        "name",
        "description",
        "states",
        "initial_state",
        "activities",
        "places",
        "transitions",
        "initial_marking",
        "final_places",
        "rules",
    }
)


@dataclass(frozen=True)
class ActivityInfo:
    id: str
    name: str
    transitions: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Compiled:
    net: Net
    activities: dict[str, ActivityInfo]
    final_places: frozenset[str]
    state_machine: bool

    @property
    def initial_marking(self) -> dict[str, int]:
        return dict(self.net.initial_marking)


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(field, "must be a list of non-empty strings")
    return tuple(value)


def _arcs(value: Any, field: str) -> tuple[Arc, ...]:
    if not isinstance(value, list):
        raise _fail(field, "must be a list of places or {place, weight}")
    arcs = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            arcs.append(Arc(item))
        elif isinstance(item, Mapping) and set(item) <= {"place", "weight"} and "place" in item:
            weight = item.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int):
                raise _fail(f"{field}[{index}].weight", "must be an integer")
            arcs.append(Arc(str(item["place"]), weight))
        else:
            raise _fail(f"{field}[{index}]", "must be a place or {place, weight}")
    return tuple(arcs)


def compile_definition(definition: Any) -> Compiled:
    """Check a definition and build its net; ``ValidationFailed`` names the wrong field."""
    if not isinstance(definition, Mapping):
        raise _fail("definition", "must be a JSON object")
    unknown = sorted(set(definition) - _KNOWN)
    if unknown:
        raise _fail(unknown[0], "unknown field")
    if definition.get("format", FORMAT) != FORMAT:
        raise _fail("format", f"must be {FORMAT!r}")
    slug = definition.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise _fail("slug", "lowercase letters, digits and hyphens (1-100)")
    if slug in RESERVED_SLUGS:
        raise _fail("slug", f"{slug!r} is reserved (it names an endpoint: /workflows/{slug})")
    name = definition.get("name")
    if name is not None and (
        not isinstance(name, str) or len(name) > 200 or not name.isprintable()
    ):
        raise _fail("name", "must be a string of at most 200 characters, no control characters")
    description = definition.get("description")
    if description is not None and not isinstance(description, str):
        raise _fail("description", "must be a string")
    rules = definition.get("rules") or []
    if not isinstance(rules, list):
        raise _fail("rules", "must be a list of rules")
    try:
        if "states" in definition or "activities" in definition:
            return _state_machine(definition, slug)
        return _net(definition, slug)
    except NetError as exc:
        raise _fail("definition", str(exc)) from None


def _state_machine(definition: Mapping[str, Any], slug: str) -> Compiled:
    states = _strings(definition.get("states"), "states")
    initial = definition.get("initial_state")
    if not isinstance(initial, str):
        raise _fail("initial_state", "must name one of the states")
    raw = definition.get("activities") or []
    if not isinstance(raw, list):
        raise _fail("activities", "must be a list")
    activities: list[tuple[str, str, tuple[str, ...], str, tuple[str, ...]]] = []
    for index, item in enumerate(raw):
        where = f"activities[{index}]"
        if not isinstance(item, Mapping):
            raise _fail(where, "must be an object")
        extra = sorted(set(item) - {"id", "name", "from_states", "to_state", "rules"})
        if extra:
            raise _fail(f"{where}.{extra[0]}", "unknown field")
        activity_id = item.get("id")
        if not isinstance(activity_id, str):
            raise _fail(f"{where}.id", "required")
        to_state = item.get("to_state")
        if not isinstance(to_state, str):
            raise _fail(f"{where}.to_state", "must name a state")
        activities.append(
            (
                activity_id,
                str(item.get("name") or activity_id),
                _strings(item.get("from_states"), f"{where}.from_states"),
                to_state,
                _strings(item.get("rules") or [], f"{where}.rules"),
            )
        )
    net = state_machine(states, activities, initial, net_id=slug)
    infos: dict[str, ActivityInfo] = {}
    for activity_id, name, _, _, rules in activities:
        infos[activity_id] = ActivityInfo(
            activity_id,
            name,
            tuple(t.id for t in net.transitions if activity_of(t.id) == activity_id),
            rules,
        )
    finals = frozenset(_strings(definition.get("final_places") or [], "final_places"))
    return Compiled(net, infos, finals, True)


def _net(definition: Mapping[str, Any], slug: str) -> Compiled:
    places = _strings(definition.get("places"), "places")
    raw = definition.get("transitions") or []
    if not isinstance(raw, list):
        raise _fail("transitions", "must be a list")
    transitions = []
    for index, item in enumerate(raw):
        where = f"transitions[{index}]"
        if not isinstance(item, Mapping):
            raise _fail(where, "must be an object")
        extra = sorted(set(item) - {"id", "name", "inputs", "outputs", "rules"})
        if extra:
            raise _fail(f"{where}.{extra[0]}", "unknown field")
        transition_id = item.get("id")
        if not isinstance(transition_id, str):
            raise _fail(f"{where}.id", "required")
        transitions.append(
            Transition(
                id=transition_id,
                name=str(item.get("name") or transition_id),
                inputs=_arcs(item.get("inputs"), f"{where}.inputs"),
                outputs=_arcs(item.get("outputs") or [], f"{where}.outputs"),
                rules=_strings(item.get("rules") or [], f"{where}.rules"),
            )
        )
    marking = definition.get("initial_marking")
    if not isinstance(marking, Mapping) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in marking.values()
    ):
        raise _fail("initial_marking", "must map places to token counts")
    net = Net.build(slug, places, transitions, {str(k): int(v) for k, v in marking.items() if v})
    infos = {t.id: ActivityInfo(t.id, t.name, (t.id,), t.rules) for t in net.transitions}
    finals = frozenset(_strings(definition.get("final_places") or [], "final_places"))
    unknown_final = sorted(finals - set(places))
    if unknown_final:
        raise _fail("final_places", f"{unknown_final[0]!r} is not a place")
    return Compiled(net, infos, finals, False)


def marked_places(marking: Mapping[str, int]) -> list[str]:
    return sorted(place for place, count in marking.items() if count > 0)


@dataclass(frozen=True)
class ActivityVerdict:
    """Whether an activity may fire now: the transition that would, and why (not)."""

    activity: str
    name: str
    allowed: bool
    transition: str | None
    explanation: str
    rules: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "activity": self.activity,
            "name": self.name,
            "allowed": self.allowed,
            "explanation": self.explanation,
            "rules": list(self.rules),
        }


def activity_verdicts(
    compiled: Compiled,
    marking: Mapping[str, int],
    view: Mapping[str, Any],
    rules: Mapping[str, Condition],
    *,
    only: str | None = None,
) -> list[ActivityVerdict]:
    """Each activity (or ``only`` that one): enabled by the marking **and** passing its rules?
    Rules are evaluated against ``view`` (``{"data", "metadata"}``); an unknown rule id makes
    the activity not allowed, never passes."""
    if only is not None and only not in compiled.activities:
        raise Conflict(f"activity {only!r} is not an activity of this workflow")
    current = Marking.of(marking)
    verdicts = []
    for info in compiled.activities.values():
        if only is not None and info.id != only:
            continue
        checks = [can_fire(compiled.net, current, t) for t in info.transitions]
        transition = next((t for t, v in zip(info.transitions, checks, strict=True) if v), None)
        if transition is None:
            why = "; ".join(v.reason for v in checks) or "it has no transition"
            verdicts.append(ActivityVerdict(info.id, info.name, False, None, why))
            continue
        results = []
        failed: list[str] = []
        for rule_id in info.rules:
            condition = rules.get(rule_id)
            if condition is None:
                failed.append(f"rule {rule_id!r} does not exist")
                results.append({"rule": rule_id, "passed": False, "explanation": "unknown rule"})
                continue
            passed, explanation = evaluate_safely(condition, view)
            results.append({"rule": rule_id, "passed": passed, "explanation": explanation})
            if not passed:
                failed.append(f"rule {rule_id!r}: {explanation}")
        allowed = not failed
        verdicts.append(
            ActivityVerdict(
                info.id,
                info.name,
                allowed,
                transition,
                "enabled, and every rule passes" if allowed else "; ".join(failed),
                tuple(results),
            )
        )
    return verdicts


def fire_transition(
    compiled: Compiled, marking: Mapping[str, int], transition_id: str
) -> dict[str, int]:
    """The marking after firing ``transition_id``; ``Conflict`` when it is not enabled."""
    try:
        return dict(fire(compiled.net, Marking.of(marking), transition_id))
    except (NotEnabled, NetError) as exc:
        raise Conflict(str(exc)) from None
