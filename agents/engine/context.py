"""Dot-path access to the generic execution context (seed §4.2.1).

The context is plain JSON: ``{"tenant_id", "execution_id", "user_context": {...},
"workflow_context": {...}, "custom_context": {...}}``. Paths are dot-separated keys; a segment
made of digits indexes a list (``"items.0.name"``). Only dicts and lists are traversed, never
object attributes, so a path can not reach into Python internals.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def split_path(path: str) -> list[str]:
    """Split a dot path into segments; an empty path or an empty segment is an error."""
    if not isinstance(path, str) or not path:
        raise ValueError("a context path must be a non-empty string")
    parts = path.split(".")
    if any(part == "" for part in parts):
        raise ValueError(f"malformed context path {path!r}")
    return parts


def lookup(data: Any, path: str) -> tuple[bool, Any]:
    """Return ``(found, value)`` for ``path`` inside ``data``; ``found`` tells null from absent."""
    current = data
    for part in split_path(path):
        if isinstance(current, Mapping):
            if part not in current:
                return False, None
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


def get_path(ctx: Any, path: str) -> Any:
    """Value at ``path`` (e.g. ``"user_context.user_id"`` or ``"items.0.name"``); missing → None."""
    return lookup(ctx, path)[1]


def set_path(ctx: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a deep copy of ``ctx`` with ``value`` stored at ``path``.

    Intermediate dicts are created as needed; a non-container on the way is replaced by a dict.
    A digit segment addresses an existing list element (or appends when it equals the length).
    The caller's object is never mutated.
    """
    result: dict[str, Any] = copy.deepcopy(dict(ctx))
    parts = split_path(path)
    current: Any = result
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(current, list) and part.isdigit() and int(part) <= len(current):
            index = int(part)
            if index == len(current):
                current.append(None)
            if last:
                current[index] = copy.deepcopy(value)
                return result
            if not isinstance(current[index], dict | list):
                current[index] = {}
            current = current[index]
            continue
        if not isinstance(current, dict):
            # Only reachable through a list index out of range: refuse rather than guess.
            raise ValueError(f"can not set {path!r}: segment {part!r} does not address a list item")
        if last:
            current[part] = copy.deepcopy(value)
            return result
        if not isinstance(current.get(part), dict | list):
            current[part] = {}
        current = current[part]
    return result
