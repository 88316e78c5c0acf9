"""What the workflow endpoints accept: one ``TypedDict`` per body (its keys are the only ones
accepted, and the OpenAPI schema is derived from it), and the parsing that refuses anything
else with a 400 naming the field.

Bodies the services check in full (a workflow definition, a rule, an agent binding) are only
checked here for being a JSON object; the services refuse unknown keys and wrong values
themselves, the same for every interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from django.http import QueryDict

from config.errors import ValidationFailed

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


# ---- bodies ----


class WorkflowDefinitionBody(TypedDict, total=False):
    """The workflow file's content (``format: circuit-breaker/workflow@1``): a state machine
    (``states``, ``initial_state``, ``activities``) or a Petri net (``places``,
    ``transitions``, ``initial_marking``); ``slug`` is required. ``rules`` are stored with it
    (a changed rule becomes its next version)."""

    format: str
    slug: str
    name: str
    description: str
    states: list[str]
    initial_state: str
    activities: list[dict[str, Any]]
    places: list[str]
    transitions: list[dict[str, Any]]
    initial_marking: dict[str, int]
    final_places: list[str]
    rules: list[dict[str, Any]]


# Required keys in a base class, optional ones in a ``total=False`` subclass: with postponed
# annotations, Python 3.11 cannot see ``NotRequired[...]`` and would require every key.


class _RuleRequired(TypedDict):
    id: str
    condition: dict[str, Any]


class RuleBody(_RuleRequired, total=False):
    """A rule of the workflow; a change to an existing ``id`` is stored as its next version.
    ``condition``: ``{"type": "FieldExists" | "FieldEquals" | ..., ...}``."""

    name: str
    description: str
    tags: list[str]


class EvaluateBody(TypedDict, total=False):
    """Evaluate against ``{data, metadata}`` as given, or against a resource's (``resource_id``
    alone)."""

    data: dict[str, Any]
    metadata: dict[str, Any]
    resource_id: str


class _ConditionRequired(TypedDict):
    condition: dict[str, Any]


class ConditionEvaluateBody(_ConditionRequired, total=False):
    """An ad-hoc condition, evaluated like a stored rule's (nothing is stored), against
    ``{data, metadata}`` as given or a resource's (``resource_id`` alone)."""

    data: dict[str, Any]
    metadata: dict[str, Any]
    resource_id: str


class ResourceCreateBody(TypedDict, total=False):
    """A new resource in the workflow's initial marking (``data``, ``metadata``: default
    ``{}``)."""

    data: dict[str, Any]
    metadata: dict[str, Any]


class FireBody(TypedDict, total=False):
    """Data merged into the resource's data (JSON merge patch: ``null`` deletes a key); the
    activity's rules are checked against the data as it would be."""

    data: dict[str, Any]


class TriggerBody(TypedDict, total=False):
    """No fields: an empty object, or no body."""


class StateAgentBody(TypedDict, total=False):
    """Bind an agent (``agent``: its id or slug) to a place; on PATCH, the fields to change.
    Mappings: agent input field ← context dot path (``{"text": "data.document"}``); resource
    path ← output path (``{"data.summary": "output.summary"}``)."""

    place: str
    agent: str
    trigger_rules: list[str]
    input_mapping: dict[str, str]
    output_mapping: dict[str, str]
    parameters: dict[str, Any]
    auto_activity: str
    on_failure_activity: str
    initial_delay_seconds: float
    interval_seconds: float
    max_executions: int
    retry: dict[str, Any]
    merge_policy: str
    enabled: bool


class ActivityAgentBody(TypedDict, total=False):
    """Run an agent (``agent``: its id or slug) as part of an activity; on PATCH, the fields to
    change."""

    activity: str
    agent: str
    input_mapping: dict[str, str]
    output_mapping: dict[str, str]
    parameters: dict[str, Any]
    required: bool
    enabled: bool


def body_of(data: Any, shape: Any) -> dict[str, Any]:
    """``data`` as a JSON object with only ``shape``'s keys and all its required ones."""
    if not isinstance(data, Mapping):
        raise _fail("body", "must be a JSON object")
    required: frozenset[str] = shape.__required_keys__
    allowed = required | shape.__optional_keys__
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed(
            f"{unknown[0]}: unknown field", details={name: ["unknown field"] for name in unknown}
        )
    missing = sorted(required - set(data))
    if missing:
        raise _fail(missing[0], "required")
    return dict(data)


def any_object(data: Any) -> dict[str, Any]:
    """A body the services check key by key: here only a JSON object."""
    if not isinstance(data, Mapping):
        raise _fail("body", "must be a JSON object")
    return dict(data)


def object_field(body: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    value = body.get(field)
    if value is not None and not isinstance(value, dict):
        raise _fail(field, "must be a JSON object")
    return value


def string_field(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail(field, "must be a non-empty string")
    return value


@dataclass(frozen=True)
class EvaluationInput:
    """What to evaluate against: a resource, or the given data and metadata."""

    resource_id: str | None
    data: dict[str, Any]
    metadata: dict[str, Any]


def evaluation_input(body: Mapping[str, Any]) -> EvaluationInput:
    resource_id = string_field(body, "resource_id")
    data = object_field(body, "data")
    metadata = object_field(body, "metadata")
    if resource_id is not None and (data is not None or metadata is not None):
        raise _fail("resource_id", "give either resource_id or data/metadata, not both")
    return EvaluationInput(resource_id, data or {}, metadata or {})


# ---- queries ----


@dataclass(frozen=True)
class ResourceQuery:
    place: str | None
    state: str | None
    limit: int
    offset: int

    def page(self) -> int:
        return self.offset // self.limit + 1


def _int_param(params: QueryDict, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, "must be an integer") from None
    if not low <= value <= high:
        raise _fail(name, f"must be between {low} and {high}")
    return value


def resource_query(params: QueryDict) -> ResourceQuery:
    """``place`` (holds tokens there), ``state`` (a one-token resource there),
    ``limit`` (1..100, default 20), ``offset`` or ``page``; any other parameter is refused."""
    unknown = sorted(set(params) - {"place", "state", "limit", "offset", "page"})
    if unknown:
        raise _fail(unknown[0], "unknown query parameter")
    limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_param(params, "offset", 0, 0, 10_000_000)
    if "page" in params and "offset" not in params:
        offset = (_int_param(params, "page", 1, 1, 1_000_000) - 1) * limit
    return ResourceQuery(
        place=params.get("place") or None,
        state=params.get("state") or None,
        limit=limit,
        offset=offset,
    )


def binding_id_of(raw: str) -> int | None:
    """A binding id from the URL; ``None`` (then 404) for anything but a positive integer."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)
