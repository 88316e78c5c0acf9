"""JSON values as rules and merge patches see them.

Python's own comparisons are wrong for JSON in two ways that matter to a rule: ``True == 1``
and ``1 < True`` hold, although a boolean is not a number in JSON; and a tuple and a list are
different things to ``==`` but the same JSON array. The helpers here compare as JSON does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

# Rules and patches come from tenants; deeper than this is an attack or a bug, and Python's
# recursion limit must never be the one to say so.
MAX_JSON_DEPTH = 64


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_kind(value: object) -> str:
    """The JSON name of a value's type, for explanations ("number", "string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "array"
    return type(value).__name__


def json_equal(a: object, b: object) -> bool:
    """Equality as JSON means it: booleans equal only booleans, 1 equals 1.0, arrays and
    objects compare member by member."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, Sequence) and isinstance(b, Sequence):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None


def json_problem(value: object, depth: int = 0) -> str | None:
    """Why ``value`` is not a plain JSON value (None when it is): non-string keys, NaN or
    infinity, objects of other types, or nesting deeper than :data:`MAX_JSON_DEPTH`."""
    if depth > MAX_JSON_DEPTH:
        return f"it is nested deeper than {MAX_JSON_DEPTH} levels"
    if value is None or isinstance(value, bool | str | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a JSON number"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"object key {key!r} is not a string"
            problem = json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for item in value:
            problem = json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"a {type(value).__name__} is not a JSON value"


def show(value: object, limit: int = 60) -> str:
    """A short JSON rendering of ``value`` for explanations (long values are cut with …)."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]  # no need to encode megabytes to show sixty characters
    elif isinstance(value, Mapping | list | tuple) and len(value) > limit:
        return f"(an {json_kind(value)} of {len(value)} items)"
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
