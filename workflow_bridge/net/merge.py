"""JSON merge patch (RFC 7386): how an activity's data changes a resource's data.

The original system replaced a resource's data wholesale with whatever an activity sent, so
an agent that returned one field erased all the others. Here the data is *merged*: an object
in the patch is applied key by key, ``null`` deletes a key, and anything else (a string, a
number, an array) replaces the value at that key. Arrays are replaced whole, as the RFC says;
a patch that must change one element sends the whole array.
"""

from __future__ import annotations

from collections.abc import Mapping

from .values import JSONValue


def merge_patch(target: JSONValue, patch: JSONValue) -> JSONValue:
    """The result of applying ``patch`` to ``target`` (RFC 7386, section 2).

    Pure: neither argument is changed, and the result shares no list or dict with them, so
    later changes to it can not reach the stored original.
    """
    if not isinstance(patch, Mapping):
        return _copy(patch)
    # A target that is not an object is replaced by one (the RFC's "Target = {}").
    source: Mapping[str, JSONValue] = target if isinstance(target, Mapping) else {}
    result: dict[str, JSONValue] = {}
    # Target keys keep their order; keys the patch adds come after them.
    for key, value in source.items():
        if key not in patch:
            result[key] = _copy(value)
        elif patch[key] is not None:
            result[key] = merge_patch(value, patch[key])
    for key, value in patch.items():
        if key not in source and value is not None:
            result[key] = merge_patch(None, value)
    return result


def _copy(value: JSONValue) -> JSONValue:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value
