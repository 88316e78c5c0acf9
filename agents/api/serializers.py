"""Wire formats shared by the agent and execution endpoints (REST and SSE).

Input is parsed strictly: unknown keys are refused (mass assignment), numbers must be JSON
numbers and text must be JSON strings, and every error names the field that was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, QueryDict
from rest_framework import serializers

from agents.engine import ExecutionInput, InvalidInput, MappingError, map_input, validate_input
from agents.models import Agent, Execution, ExecutionStatus
from agents.services.executions import ExecutionRequest
from agents.services.tool_secrets import mask_tool_secrets
from agents.validation import DOT_PATH_RE, RETRYABLE_ERRORS
from config.errors import ValidationFailed
from config.middleware import request_id_for
from tenants.principals import Principal

# Keys that would let a caller point the provider call somewhere else or inject credentials
# (LiteLLM CVE-2024-6587): refused anywhere in an execution body, whatever the nesting.
FORBIDDEN_EXECUTION_KEYS = frozenset(
    {
        "base_url",
        "api_base",
        "api_key",
        "headers",
        "provider",
        "endpoint",
        "llm_provider",
        "provider_override",
    }
)
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


# ---- strict fields: DRF's defaults coerce "1" to 1 and 5 to "5"; a JSON API should not ----


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not declare, naming each of them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


# ---- execute ----


class ParametersSerializer(StrictSerializer):
    temperature = StrictFloatField(required=False, min_value=0, max_value=2)
    max_tokens = StrictIntegerField(required=False, min_value=1)
    top_p = StrictFloatField(required=False, min_value=0, max_value=1)
    frequency_penalty = StrictFloatField(required=False, min_value=-2, max_value=2)
    presence_penalty = StrictFloatField(required=False, min_value=-2, max_value=2)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # Read at request time: the bound is a setting (and tests change it).
        fields["max_tokens"] = StrictIntegerField(
            required=False, min_value=1, max_value=settings.AGENT_MAX_TOKENS_LIMIT
        )
        return fields


class InputSerializer(StrictSerializer):
    message = StrictCharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    parameters = ParametersSerializer(required=False)


class RetryConfigSerializer(StrictSerializer):
    max_attempts = StrictIntegerField(required=False, min_value=1, max_value=10)
    backoff_seconds = StrictFloatField(required=False, min_value=0, max_value=300)
    retry_on_errors = serializers.ListField(
        child=serializers.ChoiceField(choices=RETRYABLE_ERRORS), required=False, max_length=10
    )


class ExecutionConfigSerializer(StrictSerializer):
    timeout_seconds = StrictFloatField(required=False, min_value=1)
    retry_config = RetryConfigSerializer(required=False)
    stream = StrictBooleanField(required=False)
    # Accepted for clients of the original system; the transport is chosen by the endpoint.
    stream_format = StrictCharField(required=False, max_length=32)
    mode = serializers.ChoiceField(choices=["blocking", "background"], required=False)
    on_disconnect = serializers.ChoiceField(choices=["cancel", "continue"], required=False)
    input_mapping = serializers.DictField(child=StrictCharField(), required=False)
    output_mapping = serializers.DictField(child=StrictCharField(), required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["timeout_seconds"] = StrictFloatField(
            required=False, min_value=1, max_value=settings.AGENT_MAX_TIMEOUT_SECONDS
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("input_mapping", "output_mapping"):
            for key, path in (attrs.get(name) or {}).items():
                target = key if name == "output_mapping" else path
                if not DOT_PATH_RE.match(target):
                    raise serializers.ValidationError({name: {key: ["Must be a dot path."]}})
        return attrs


class ExecuteSerializer(StrictSerializer):
    """``{context, input: {message, parameters}, execution_config: {...}}``."""

    context = serializers.DictField(required=False)
    input = InputSerializer(required=False)
    execution_config = ExecutionConfigSerializer(required=False)


@dataclass(frozen=True)
class ExecuteCall:
    request: ExecutionRequest
    mode: Literal["blocking", "background"]
    stream: bool
    on_disconnect: Literal["cancel", "continue"] | None


def _forbidden_paths(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in FORBIDDEN_EXECUTION_KEYS:
                found.append(where)
            found.extend(_forbidden_paths(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_forbidden_paths(item, f"{path}[{index}]"))
    return found


def parse_execute(
    body: Any, *, agent_ref: str, principal: Principal, request: HttpRequest
) -> ExecuteCall:
    """Validate an execute body and turn it into an ``ExecutionRequest``."""
    forbidden = _forbidden_paths(body)
    if forbidden:
        raise ValidationFailed(
            f"{forbidden[0]}: provider settings cannot be given per execution",
            details={where: ["not allowed in an execution request"] for where in forbidden},
        )
    serializer = ExecuteSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    given = data.get("input") or {}
    config = data.get("execution_config") or {}
    retry = config.get("retry_config")
    return ExecuteCall(
        request=ExecutionRequest(
            agent_ref=agent_ref,
            context=dict(data.get("context") or {}),
            message=given.get("message"),
            parameters=dict(given.get("parameters") or {}),
            timeout_seconds=config.get("timeout_seconds"),
            retry=dict(retry) if retry else None,
            input_mapping=config.get("input_mapping"),
            output_mapping=config.get("output_mapping"),
            principal=principal.audit_actor,
            request_id=request_id_for(request),
        ),
        mode=config.get("mode", "blocking"),
        stream=bool(config.get("stream", False)),
        on_disconnect=config.get("on_disconnect"),
    )


def check_input_schema(agent: Agent, call: ExecutionRequest, schema_name: str) -> None:
    """Refuse, before anything runs, an input that does not match the agent's input schema.

    The engine checks the same thing (and stays the authority); checking here turns a certain
    failure into a 400 instead of a stored failed execution.
    """
    if agent.input_schema is None:
        return
    mapping = call.input_mapping if call.input_mapping is not None else agent.input_mapping
    context = {**call.context, "tenant_id": schema_name, "execution_id": ""}
    try:
        mapped = map_input(
            context, mapping or {}, ExecutionInput(message=call.message, parameters=call.parameters)
        )
        validate_input(mapped, agent.input_schema)
    except InvalidInput as exc:
        raise ValidationFailed(f"input: {exc.message}", details={"input": [exc.message]}) from None
    except MappingError:
        return  # the engine reports a broken mapping as a failed execution, with its code


# ---- output ----


def agent_json(agent: Agent) -> dict[str, Any]:
    """An agent as the API shows it: its configuration, the credential by name, no secret."""
    from agents.services.agents import CONFIG_FIELDS

    body: dict[str, Any] = {"id": agent.id}
    body.update({field: getattr(agent, field) for field in CONFIG_FIELDS})
    body["tools"] = mask_tool_secrets(agent.tools)
    body["credential"] = agent.credential.name
    body["version"] = agent.version
    body["created_at"] = agent.created_at.isoformat()
    body["updated_at"] = agent.updated_at.isoformat()
    return body


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def execution_response(execution: Execution) -> dict[str, Any]:
    """The original's response shape, plus usage, cost and the model that answered."""
    return {
        "execution_id": execution.id,
        "agent_id": execution.agent_id,
        "status": execution.status,
        "output": execution.output,
        "error": execution.error_message or None,
        "error_code": execution.error_code or None,
        "created_at": _iso(execution.created_at),
        "context": execution.context,
        "usage": {
            "input_tokens": execution.input_tokens,
            "output_tokens": execution.output_tokens,
            "estimated": execution.usage_estimated,
        },
        "cost": format(execution.cost.normalize(), "f"),  # "0", "0.00042": never "0E-8"
        "model": execution.model_used or None,
    }


def execution_json(execution: Execution, *, detail: bool = False) -> dict[str, Any]:
    """An execution record: the response shape plus timing, lineage and (detail) attempts."""
    body = execution_response(execution)
    body.update(
        {
            "agent_version": execution.agent_version,
            "requested_model": execution.requested_model,
            "input": execution.request_input,
            "started_at": _iso(execution.started_at),
            "completed_at": _iso(execution.completed_at),
            "cancel_requested_at": _iso(execution.cancel_requested_at),
            "duration_ms": execution.duration_ms,
            "retry_count": execution.retry_count,
            "parent_id": execution.parent_id,
        }
    )
    if detail:
        body.update(
            {
                "input_data": execution.input_data,
                "options": execution.options,
                "attempts": execution.attempts,
                "principal": execution.principal,
                "request_id": execution.request_id,
            }
        )
    return body


# ---- list queries ----


@dataclass(frozen=True)
class ExecutionQuery:
    status: list[str]
    resource_id: str | None
    context_filters: dict[str, str]
    agent_ref: str | None
    limit: int
    offset: int

    def page_of(self, total: int, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "executions": items,
            "total": total,
            "page": self.offset // self.limit + 1,
            "page_size": self.limit,
            "limit": self.limit,
            "offset": self.offset,
        }


def _int_param(params: QueryDict, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: must be an integer") from None
    if not low <= value <= high:
        raise ValidationFailed(f"{name}: must be between {low} and {high}")
    return value


def parse_execution_query(params: QueryDict, *, allow_agent: bool) -> ExecutionQuery:
    """``status`` (repeatable or comma separated), ``resource_id``, ``context.<dot.path>=v``
    (string values, all must match), ``agent_id`` (tenant-wide list only), ``limit``/``offset``."""
    statuses = [s for raw in params.getlist("status") for s in raw.split(",") if s]
    for status in statuses:
        if status not in ExecutionStatus.values:
            raise ValidationFailed(
                f"status: {status!r} is not one of {', '.join(ExecutionStatus.values)}"
            )
    filters: dict[str, str] = {}
    known = {"status", "resource_id", "limit", "offset", "page"} | (
        {"agent_id"} if allow_agent else set()
    )
    for name in params:
        if name.startswith("context."):
            path = name.removeprefix("context.")
            if not DOT_PATH_RE.match(path):
                raise ValidationFailed(f"{name}: not a dot path")
            filters[path] = params[name]
        elif name not in known:
            raise ValidationFailed(f"{name}: unknown query parameter")
    limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_param(params, "offset", 0, 0, 10_000_000)
    if "page" in params and "offset" not in params:
        offset = (_int_param(params, "page", 1, 1, 1_000_000) - 1) * limit
    return ExecutionQuery(
        status=statuses,
        resource_id=params.get("resource_id") or None,
        context_filters=filters,
        agent_ref=params.get("agent_id") or None if allow_agent else None,
        limit=limit,
        offset=offset,
    )
