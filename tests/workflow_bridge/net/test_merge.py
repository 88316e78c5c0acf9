"""JSON merge patch: the examples of RFC 7386, and purity."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from workflow_bridge.net import merge_patch

# RFC 7386, Appendix A, in order.
APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), APPENDIX_A)
def test_rfc_7386_appendix_a(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_rfc_7386_section_3_example() -> None:
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_data_is_merged_not_replaced() -> None:
    data = {"order": {"total": 120, "currency": "EUR"}, "summary": "draft"}
    assert merge_patch(data, {"summary": "Approved by the agent"}) == {
        "order": {"total": 120, "currency": "EUR"},
        "summary": "Approved by the agent",
    }


def test_neither_input_changes_and_the_result_shares_nothing_with_them() -> None:
    target = {"keep": {"deep": [1, 2]}, "change": {"x": 1}}
    patch = {"change": {"y": [3]}, "new": {"z": [4]}}
    before = (copy.deepcopy(target), copy.deepcopy(patch))
    result = merge_patch(target, patch)
    assert (target, patch) == before
    assert isinstance(result, dict)
    result["keep"]["deep"].append(99)  # type: ignore[index, union-attr]
    result["new"]["z"].append(99)  # type: ignore[index, union-attr]
    result["change"]["y"].append(99)  # type: ignore[index, union-attr]
    assert (target, patch) == before


def test_target_keys_keep_their_order() -> None:
    result = merge_patch({"a": 1, "b": 2, "c": 3}, {"d": 4, "b": 20})
    assert isinstance(result, dict)
    assert list(result) == ["a", "b", "c", "d"]
