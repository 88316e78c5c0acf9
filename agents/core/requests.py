"""What a caller asks an agent run to do, and its validation: one type for every interface.

Every transport (REST, SSE, WebSocket, the admin, later MCP and the OpenAI-compatible endpoint)
turns its wire format into the canonical body ``{context, input: {message, parameters},
execution_config: {...}}`` and hands it to :func:`parse_run_request`. The same body therefore
gets the same answer everywhere: the same error code (``validation_error``), the same field path
at the start of the message (``input.parameters.temperature: ...``), the same bounds.

Input is parsed strictly: unknown keys are refused (mass assignment), numbers must be JSON
numbers and text must be JSON strings; keys that would point the provider call elsewhere or
carry credentials are refused at any depth (reliability case 14).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings

from agents.engine import VIRTUAL_MODELS, is_virtual
from agents.providers.base import Message, ToolSpec
from agents.validation import DOT_PATH_RE, RETRYABLE_ERRORS
from config.errors import ValidationFailed

RunMode = Literal["blocking", "streamed", "background"]
OnDisconnect = Literal["cancel", "continue"]

# Keys that would let a caller point the provider call somewhere else or inject credentials
# (LiteLLM CVE-2024-6587): refused anywhere in an execution body, whatever the nesting.
FORBIDDEN_KEYS = frozenset(
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
# Per-call sampling parameters and their bounds (``max_tokens`` is bounded by a setting).
PARAMETER_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
}


@dataclass(frozen=True)
class RunRequest:
    """A validated request to run an agent. Built by :func:`parse_run_request` (callers'
    bodies) or directly by the platform (child runs of agent tools, workflows)."""

    agent_ref: str
    context: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float | None = None
    retry: dict[str, Any] | None = None
    input_mapping: dict[str, str] | None = None
    output_mapping: dict[str, str] | None = None
    # Another model than the agent's, through the agent's provider credential (or a virtual
    # model routed over the tenant's credentials); its fallbacks still apply.
    model: str | None = None
    # "blocking" unless the body asks for "background"; a streaming transport sets "streamed".
    mode: RunMode = "blocking"
    on_disconnect: OnDisconnect | None = None
    # Set by the platform only (never parsed from a body): the end hook to call when the run
    # ends (agents.core.hooks), e.g. the workflow bridge applying a state agent's result.
    notify: str | None = None
    # A conversation instead of one message, tools the caller runs itself, stop sequences
    # (the OpenAI-compatible endpoint: agents.core.conversation builds these).
    messages: tuple[Message, ...] = ()
    client_tools: tuple[ToolSpec, ...] = ()
    stop: tuple[str, ...] = ()

    def stored_input(self) -> dict[str, Any]:
        """The input as stored with the execution (and shown by the executions API)."""
        stored: dict[str, Any] = {"message": self.message, "parameters": self.parameters}
        if self.messages:
            stored["messages"] = [message_json(m) for m in self.messages]
        if self.client_tools:
            stored["tools"] = [
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in self.client_tools
            ]
        if self.stop:
            stored["stop"] = list(self.stop)
        return stored

    def options(self) -> dict[str, Any]:
        """The per-call options stored with the execution, so that any worker can run it."""
        return {
            key: value
            for key, value in {
                "timeout_seconds": self.timeout_seconds,
                "retry": self.retry,
                "input_mapping": self.input_mapping,
                "output_mapping": self.output_mapping,
                "model": self.model,
                "notify": self.notify,
            }.items()
            if value is not None
        }


def message_json(message: Message) -> dict[str, Any]:
    """One conversation message as JSON (for the record, not a wire format)."""
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    if message.name:
        data["name"] = message.name
    return data


# ---- parsing ----


class _Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _fail(path: str, message: str) -> _Invalid:
    return _Invalid(path, message)


def _object(value: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, "must be a JSON object")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise _fail(where, "unknown field")
    return dict(value)


def _number(
    value: Any, path: str, low: float, high: float, *, integer: bool = False
) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, "must be an integer" if integer else "must be a number")
    if integer and not isinstance(value, int):
        raise _fail(path, "must be an integer")
    if not low <= value <= high:
        raise _fail(path, f"must be between {low:g} and {high:g}")
    return value


def _string(value: Any, path: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(path, "must be a string")
    if max_length is not None and len(value) > max_length:
        raise _fail(path, f"at most {max_length} characters")
    return value


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(path, f"must be one of {', '.join(choices)}")
    return value


def _mapping(value: Any, path: str, *, keys_are_paths: bool) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _fail(path, "must be an object of dot paths")
    result: dict[str, str] = {}
    for key, target in value.items():
        where = f"{path}.{key}"
        _string(target, where)
        if not DOT_PATH_RE.match(str(key) if keys_are_paths else target):
            raise _fail(where, "must be a dot path like 'user_context.user_id'")
        result[str(key)] = target
    return result


def forbidden_paths(value: Any, path: str = "") -> list[str]:
    """Paths of every forbidden key in ``value``, at any depth (``context.deep[0].Headers``)."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in FORBIDDEN_KEYS:
                found.append(where)
            found.extend(forbidden_paths(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(forbidden_paths(item, f"{path}[{index}]"))
    return found


def _parameters(value: Any) -> dict[str, Any]:
    given = _object(value, "input.parameters", frozenset(PARAMETER_BOUNDS) | {"max_tokens"})
    result: dict[str, Any] = {}
    for name, item in given.items():
        where = f"input.parameters.{name}"
        if name == "max_tokens":
            result[name] = _number(item, where, 1, settings.AGENT_MAX_TOKENS_LIMIT, integer=True)
        else:
            low, high = PARAMETER_BOUNDS[name]
            result[name] = _number(item, where, low, high)
    return result


def _retry(value: Any) -> dict[str, Any]:
    path = "execution_config.retry_config"
    given = _object(value, path, frozenset({"max_attempts", "backoff_seconds", "retry_on_errors"}))
    retry: dict[str, Any] = {}
    if "max_attempts" in given:
        retry["max_attempts"] = _number(
            given["max_attempts"], f"{path}.max_attempts", 1, 10, integer=True
        )
    if "backoff_seconds" in given:
        retry["backoff_seconds"] = _number(
            given["backoff_seconds"], f"{path}.backoff_seconds", 0, 300
        )
    if "retry_on_errors" in given:
        kinds = given["retry_on_errors"]
        if not isinstance(kinds, list) or len(kinds) > 10:
            raise _fail(f"{path}.retry_on_errors", "must be a list of at most 10 error kinds")
        retry["retry_on_errors"] = [
            _choice(kind, f"{path}.retry_on_errors.{index}", RETRYABLE_ERRORS)
            for index, kind in enumerate(kinds)
        ]
    return retry


_TOP = frozenset({"context", "input", "execution_config"})
_INPUT = frozenset({"message", "parameters"})
_CONFIG = frozenset(
    {
        "timeout_seconds",
        "retry_config",
        "stream",
        "stream_format",
        "mode",
        "on_disconnect",
        "input_mapping",
        "output_mapping",
        "model",
    }
)


def _parse(body: Any, agent_ref: str, mode: RunMode | None) -> RunRequest:
    if not isinstance(body, Mapping):
        raise _fail("body", "must be a JSON object")
    forbidden = forbidden_paths(body)
    if forbidden:
        raise _fail(forbidden[0], "provider settings cannot be given per execution")
    given = _object(body, "", _TOP)
    context = given.get("context")
    if context is not None and not isinstance(context, Mapping):
        raise _fail("context", "must be a JSON object")
    run_input = _object(given.get("input"), "input", _INPUT)
    message = run_input.get("message")
    if message is not None:
        _string(message, "input.message")
    config = _object(given.get("execution_config"), "execution_config", _CONFIG)
    timeout = config.get("timeout_seconds")
    if timeout is not None:
        timeout = float(
            _number(
                timeout,
                "execution_config.timeout_seconds",
                1,
                settings.AGENT_MAX_TIMEOUT_SECONDS,
            )
        )
    model = config.get("model")
    if model is not None:
        model = _string(model, "execution_config.model", max_length=200).strip()
        if not model:
            raise _fail("execution_config.model", "must name a model")
        if is_virtual(model) and model not in VIRTUAL_MODELS:
            choices = ", ".join(sorted(VIRTUAL_MODELS))
            raise _fail("execution_config.model", f"unknown virtual model; use one of {choices}")
    stream = config.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _fail("execution_config.stream", "must be true or false")
    if "stream_format" in config:
        # Accepted for clients of the original system; the transport is chosen by the endpoint.
        _string(config["stream_format"], "execution_config.stream_format", max_length=32)
    asked = config.get("mode")
    if asked is not None:
        asked = _choice(asked, "execution_config.mode", ("blocking", "background"))
    on_disconnect = config.get("on_disconnect")
    if on_disconnect is not None:
        on_disconnect = _choice(
            on_disconnect, "execution_config.on_disconnect", ("cancel", "continue")
        )
    if mode is None:
        if stream:
            raise _fail(
                "execution_config.stream",
                "use POST /agents/{agent_id}/execute/stream (SSE) or the WebSocket to stream",
            )
        mode = "background" if asked == "background" else "blocking"
    elif mode == "streamed" and asked == "background":
        raise _fail("execution_config.mode", "a streamed run cannot be a background run")
    return RunRequest(
        agent_ref=agent_ref,
        context=dict(context or {}),
        message=message,
        parameters=_parameters(run_input.get("parameters")),
        timeout_seconds=timeout,
        retry=_retry(config["retry_config"]) if "retry_config" in config else None,
        input_mapping=_mapping(
            config["input_mapping"], "execution_config.input_mapping", keys_are_paths=False
        )
        if "input_mapping" in config
        else None,
        output_mapping=_mapping(
            config["output_mapping"], "execution_config.output_mapping", keys_are_paths=True
        )
        if "output_mapping" in config
        else None,
        model=model,
        mode=mode,
        # ignore: _choice checked it is "cancel" or "continue", but returns a plain str.
        on_disconnect=on_disconnect,  # type: ignore[arg-type]
    )


def parse_run_request(body: Any, *, agent_ref: str, mode: RunMode | None = None) -> RunRequest:
    """Validate a canonical execute body; raise ``ValidationFailed`` naming the first wrong
    field (``details`` maps that path to its message).

    ``mode``: what the transport already decided (``"streamed"`` for SSE and WebSocket); when
    None, the body's ``execution_config.mode`` decides between blocking and background, and
    ``stream: true`` is refused (the transport, not a flag, chooses streaming).
    """
    try:
        return _parse(body, agent_ref, mode)
    except _Invalid as exc:
        raise ValidationFailed(
            f"{exc.path}: {exc.message}", details={exc.path: [exc.message]}
        ) from None
