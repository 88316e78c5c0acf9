"""Input mapping, JSON Schema validation and output mapping.

Input mapping ``{agent_input_key: "dot.path"}`` reads from the context; output mapping
``{"dest.path": "output_key"}`` writes the agent's output back into a copy of the context.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from agents.engine.context import get_path, lookup, set_path, split_path
from agents.engine.errors import InvalidInput, InvalidSchema, MappingError, UncheckableOutput
from agents.engine.schemas import PatternTimeout, SchemaProblem, check_schema, first_error
from agents.engine.types import ExecutionInput

# Context keys that identify the execution; an output mapping must never let model output
# rewrite them (the caller keys tenancy and storage off these values).
PROTECTED_CONTEXT_KEYS = frozenset({"tenant_id", "execution_id"})

# Output keys that mean "the whole output" rather than a field of a JSON output.
_WHOLE_OUTPUT_KEYS = frozenset({"", "output"})


def map_input(
    context: Mapping[str, Any], mapping: Mapping[str, str], execution_input: ExecutionInput
) -> dict[str, Any]:
    """Build the agent's input dict.

    Mapped context values come first (a missing path gives ``None``), explicit
    ``execution_input.parameters`` override them, and ``message`` (when given) is stored under
    ``"message"`` last, so a caller's explicit values always win over configured mappings.
    """
    mapped: dict[str, Any] = {}
    for key, path in mapping.items():
        try:
            mapped[key] = get_path(context, path)
        except ValueError as exc:
            raise MappingError(f"input mapping for {key!r}: {exc}") from exc
    mapped.update(execution_input.parameters)
    if execution_input.message is not None:
        mapped["message"] = execution_input.message
    return mapped


def _describe(error: jsonschema.ValidationError) -> str:
    location = ".".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{location}: {error.message}"


def validate_schema(instance: Any, schema: Mapping[str, Any], *, what: str) -> str | None:
    """Validate ``instance``; return None when valid, else a message naming the failing field.

    Raises :class:`InvalidSchema` when ``schema`` itself is unusable (invalid, a remote
    ``$ref``, a pattern that does not compile) and
    :class:`~agents.engine.schemas.PatternTimeout` when its regular expressions run past their
    time budget (see :mod:`agents.engine.schemas`: nothing is fetched, nothing hangs).
    """
    try:
        check_schema(schema)
        error = first_error(instance, schema)
    except SchemaProblem as exc:
        raise InvalidSchema(f"the {what} schema {exc}") from None
    if error is None:
        return None
    return _describe(error)


def validate_input(mapped: Mapping[str, Any], schema: Mapping[str, Any] | None) -> None:
    """Raise :class:`InvalidInput` when the mapped input does not match ``schema``."""
    if schema is None:
        return
    try:
        problem = validate_schema(dict(mapped), schema, what="input")
    except PatternTimeout as exc:
        raise InvalidInput(
            f"the input could not be checked against the input schema: {exc}"
        ) from None
    if problem is not None:
        raise InvalidInput(f"input does not match the agent's input schema: {problem}")


def parse_structured_output(text: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Parse a JSON reply and validate it; return ``(value, None)`` or ``(None, problem)``.

    Raises :class:`UncheckableOutput` when the schema's patterns time out on the reply.
    """
    candidate = text.strip()
    # Some models wrap JSON in a Markdown fence even in JSON mode; accept exactly that shape.
    if candidate.startswith("```") and candidate.endswith("```"):
        candidate = candidate.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, f"the reply is not valid JSON ({exc.msg} at position {exc.pos})"
    try:
        problem = validate_schema(value, schema, what="output")
    except PatternTimeout as exc:
        # Not a reply problem another attempt could fix: the schema's own pattern is too slow.
        raise UncheckableOutput(
            f"the reply could not be checked against the output schema: {exc}"
        ) from None
    if problem is not None:
        return None, f"the reply does not match the output schema: {problem}"
    return value, None


def check_output_mapping(mapping: Mapping[str, str]) -> None:
    """Raise :class:`MappingError` for malformed or protected destination paths."""
    for dest in mapping:
        try:
            parts = split_path(dest)
        except ValueError as exc:
            raise MappingError(f"output mapping: {exc}") from exc
        if parts[0] in PROTECTED_CONTEXT_KEYS:
            raise MappingError(f"output mapping may not write the protected key {parts[0]!r}")


def apply_output_mapping(
    context: Mapping[str, Any], mapping: Mapping[str, str], output: Any
) -> dict[str, Any]:
    """Return a copy of ``context`` with output values written to the mapped paths.

    ``output_key`` ``""`` or ``"output"`` means the whole output; any other key is a dot path
    into a JSON output (an optional ``"output."`` prefix is accepted). A key that is missing, or
    any key on a plain-text output, writes ``None``, mirroring input mapping's missing → null.
    """
    check_output_mapping(mapping)
    result: dict[str, Any] = copy.deepcopy(dict(context))
    for dest, key in mapping.items():
        if key in _WHOLE_OUTPUT_KEYS:
            value = output
        else:
            path = key.removeprefix("output.")
            try:
                value = lookup(output, path)[1] if isinstance(output, dict | list) else None
            except ValueError as exc:
                raise MappingError(f"output mapping for {dest!r}: {exc}") from exc
        result = set_path(result, dest, value)
    return result
