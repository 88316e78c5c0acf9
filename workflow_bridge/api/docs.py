"""OpenAPI schemas derived from the wire formats' ``TypedDict``\\ s (``inputs``, ``outputs``), so
that the document cannot drift from what the endpoints accept and answer."""

from __future__ import annotations

from typing import Any

from drf_spectacular.plumbing import resolve_type_hint


def openapi(shape: Any) -> dict[str, Any]:
    """The schema of a response (a ``TypedDict``)."""
    schema: dict[str, Any] = resolve_type_hint(shape)
    return schema


def openapi_body(shape: Any) -> dict[str, Any]:
    """A request body of ``shape``: drf-spectacular reads a dict given as ``request`` as media
    type → schema."""
    return {"application/json": openapi(shape)}
