"""Dot paths into the view a condition reads: ``data.order.total``, ``metadata.priority``,
``data.items.0.sku`` (a number indexes an array). A key that contains a dot can not be
addressed; nor can anything outside the view's roots."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..values import json_kind, show
from .errors import RuleError

# The roots of the view a condition reads; a path must start with one of them.
VIEW_ROOTS = ("data", "metadata")
MAX_PATH_LENGTH = 500
MAX_PATH_SEGMENTS = 32

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def check_path(path: object) -> str:
    """``path`` when it is a valid dot path into the view; :class:`RuleError` saying why not."""
    if not isinstance(path, str) or not path:
        raise RuleError(f"field must be a non-empty dot path, got {path!r}")
    if len(path) > MAX_PATH_LENGTH:
        raise RuleError(f"field {show(path)} is longer than {MAX_PATH_LENGTH} characters")
    segments = path.split(".")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise RuleError(f"field {path!r} has more than {MAX_PATH_SEGMENTS} parts")
    if any(not segment for segment in segments):
        raise RuleError(f"field {path!r} has an empty part (two dots, or a leading/trailing dot)")
    if segments[0] not in VIEW_ROOTS:
        roots = " or ".join(f"'{root}.'" for root in VIEW_ROOTS)
        raise RuleError(f"field {path!r} must start with {roots} (e.g. 'data.order.total')")
    return path


@dataclass(frozen=True)
class Lookup:
    """What a path found: the value, or why it is absent."""

    present: bool
    value: Any = None
    why_absent: str = ""


def lookup(view: Mapping[str, Any], path: str) -> Lookup:
    """Follow ``path`` through ``view``; never raises for the data's shape."""
    current: Any = view
    walked: list[str] = []
    for segment in path.split("."):
        where = ".".join(walked) or "the view"
        if isinstance(current, Mapping):
            if segment not in current:
                return Lookup(False, why_absent=f"{where} has no key {segment!r}")
            current = current[segment]
        elif isinstance(current, list | tuple):
            if not _ARRAY_INDEX.fullmatch(segment):
                return Lookup(
                    False, why_absent=f"{where} is an array and {segment!r} is not an index"
                )
            if int(segment) >= len(current):
                return Lookup(
                    False, why_absent=f"{where} has {len(current)} items, no index {segment}"
                )
            current = current[int(segment)]
        else:
            return Lookup(False, why_absent=f"{where} is a {json_kind(current)}, not an object")
        walked.append(segment)
    return Lookup(True, current)
