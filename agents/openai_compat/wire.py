"""Parsing OpenAI request bodies (Chat Completions and Responses) into a core ``Conversation``.

Only the wire format is handled here; the values (sampling bounds, the plan's ``max_tokens``,
the model) are the core's to judge. Every parameter OpenAI defines that this endpoint does not
honour is refused with a 400 naming it, never silently dropped; a value that means "the
default" (``n: 1``, ``logprobs: false``, ``response_format: {"type": "text"}``...) is accepted.
``null`` counts as absent, as in OpenAI's API.

System and developer messages: for a model they are sent as they are; for an agent
(``agent:<slug>``) they are *appended* after the agent's own system prompt (the agent's prompt
comes first, then the caller's system messages in their order, then the conversation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.core.conversation import Conversation
from agents.openai_compat.errors import OpenAIError, invalid, unsupported
from agents.providers.base import Message, ToolCall, ToolSpec

# Parameters passed to the core as they are (its bounds apply).
SAMPLING = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
MAX_STOP = 4

# Accepted when they ask for the default; anything else is refused naming them.
_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "store": False,
    "parallel_tool_calls": True,
    "modalities": ["text"],
    "truncation": "disabled",
    "background": False,
}
CHAT_UNSUPPORTED = frozenset(
    {
        "audio",
        "function_call",
        "functions",
        "logit_bias",
        "metadata",
        "prediction",
        "reasoning_effort",
        "seed",
        "service_tier",
        "top_logprobs",
        "web_search_options",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
    }
)
CHAT_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "user",
        *SAMPLING,
        *_DEFAULTS,
    }
)
RESPONSES_UNSUPPORTED = frozenset(
    {
        "conversation",
        "include",
        "max_tool_calls",
        "metadata",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "stream_options",
        "top_logprobs",
    }
)
RESPONSES_KNOWN = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "max_output_tokens",
        "tools",
        "tool_choice",
        "text",
        "user",
        *SAMPLING,
        *_DEFAULTS,
    }
)


@dataclass(frozen=True)
class ChatCall:
    conversation: Conversation
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class ResponsesCall:
    conversation: Conversation
    stream: bool
    instructions: str | None


def _given(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _check_names(given: Mapping[str, Any], known: frozenset[str], refused: frozenset[str]) -> None:
    for name in sorted(given):
        if name in refused:
            raise unsupported(name)
        if name not in known:
            raise OpenAIError(f"{name}: unknown parameter", param=name, code="unknown_parameter")
    for name, default in _DEFAULTS.items():
        if name in given and given[name] != default:
            raise unsupported(name, f"only {json.dumps(default)} is supported")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(where, "must be a string")
    return value


def _flag(given: Mapping[str, Any], name: str) -> bool:
    value = given.get(name, False)
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def _model(given: Mapping[str, Any]) -> str:
    model = given.get("model")
    if not isinstance(model, str) or not model.strip():
        raise OpenAIError("model: required", param="model", code="missing_required_parameter")
    return model.strip()


def _content_text(content: Any, where: str, part_types: tuple[str, ...]) -> str:
    """Text content: a string, or a list of text parts (other parts are refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(where, "must be a string or a list of content parts")
    texts: list[str] = []
    for index, part in enumerate(content):
        spot = f"{where}[{index}]"
        if not isinstance(part, Mapping) or part.get("type") not in part_types:
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise unsupported(f"{spot}.type", f"only text parts are supported (got {kind!r})")
        texts.append(_text(part.get("text"), f"{spot}.text"))
    return "".join(texts)


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(_text(raw, where)) if raw else {}
    except ValueError:
        raise invalid(where, "must be a JSON object encoded as a string") from None
    if not isinstance(value, dict):
        raise invalid(where, "must be a JSON object encoded as a string")
    return value


def _function_spec(name: Any, description: Any, parameters: Any, where: str) -> ToolSpec:
    name = _text(name, f"{where}.name")
    if not name or len(name) > 64:
        raise invalid(f"{where}.name", "1 to 64 characters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise invalid(f"{where}.parameters", "must be a JSON Schema object")
    return ToolSpec(name, _text(description or "", f"{where}.description"), dict(parameters))


def _tool_choice(given: Mapping[str, Any], tools: tuple[ToolSpec, ...]) -> tuple[ToolSpec, ...]:
    choice = given.get("tool_choice", "auto")
    if choice == "auto":
        return tools
    if choice == "none":
        return ()  # offered nothing, the model cannot call anything
    raise unsupported("tool_choice", 'only "auto" and "none" are supported')


def _stop(given: Mapping[str, Any]) -> tuple[str, ...]:
    stop = given.get("stop")
    if stop is None:
        return ()
    values = [stop] if isinstance(stop, str) else stop
    if not isinstance(values, list) or len(values) > MAX_STOP:
        raise invalid("stop", f"a string or a list of at most {MAX_STOP} strings")
    return tuple(_text(v, f"stop[{i}]") for i, v in enumerate(values))


def _sampling(given: Mapping[str, Any], max_tokens_names: tuple[str, ...]) -> dict[str, Any]:
    parameters = {name: given[name] for name in SAMPLING if name in given}
    named = [name for name in max_tokens_names if name in given]
    if len(named) > 1:
        raise invalid(named[1], f"give {named[0]} or {named[1]}, not both")
    if named:
        parameters["max_tokens"] = given[named[0]]
    return parameters


# ---- Chat Completions ----


def _chat_message(raw: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(raw, Mapping):
        raise invalid(where, "must be an object")
    role = raw.get("role")
    parts = ("text",)
    if role in ("system", "developer"):
        return Message(
            role="system", content=_content_text(raw.get("content"), f"{where}.content", parts)
        )
    if role == "user":
        name = raw.get("name")
        return Message(
            role="user",
            content=_content_text(raw.get("content"), f"{where}.content", parts),
            name=_text(name, f"{where}.name") if name is not None else None,
        )
    if role == "assistant":
        calls = []
        for number, call in enumerate(raw.get("tool_calls") or []):
            spot = f"{where}.tool_calls[{number}]"
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                raise invalid(spot, "must be a function tool call")
            calls.append(
                ToolCall(
                    id=_text(call.get("id"), f"{spot}.id"),
                    name=_text(function.get("name"), f"{spot}.function.name"),
                    arguments=_arguments(function.get("arguments"), f"{spot}.function.arguments"),
                )
            )
        content = _content_text(raw.get("content"), f"{where}.content", ("text", "refusal"))
        return Message(role="assistant", content=content, tool_calls=tuple(calls))
    if role == "tool":
        return Message(
            role="tool",
            content=_content_text(raw.get("content"), f"{where}.content", parts),
            tool_call_id=_text(raw.get("tool_call_id"), f"{where}.tool_call_id"),
        )
    if role == "function":
        raise unsupported(f"{where}.role", 'the legacy "function" role is not supported; use tools')
    raise invalid(f"{where}.role", "must be system, developer, user, assistant or tool")


def _chat_tools(given: Mapping[str, Any]) -> tuple[ToolSpec, ...]:
    raw = given.get("tools", [])
    if not isinstance(raw, list):
        raise invalid("tools", "must be a list")
    tools = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise unsupported(f"{where}.type", 'only "function" tools are supported')
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise invalid(f"{where}.function", "required")
        tools.append(
            _function_spec(
                function.get("name"),
                function.get("description"),
                function.get("parameters"),
                f"{where}.function",
            )
        )
    return _tool_choice(given, tuple(tools))


def parse_chat(body: Any) -> ChatCall:
    """A ``POST /v1/chat/completions`` body; ``OpenAIError`` (400) naming what is wrong."""
    if not isinstance(body, Mapping):
        raise invalid("body", "must be a JSON object")
    given = _given(body)
    _check_names(given, CHAT_KNOWN, CHAT_UNSUPPORTED)
    fmt = given.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise unsupported("response_format", 'only {"type": "text"} is supported')
    messages = given.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(
            "messages: a non-empty list is required",
            param="messages",
            code="missing_required_parameter",
        )
    stream = _flag(given, "stream")
    options = given.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid("stream_options", "only allowed with stream: true")
        if not isinstance(options, Mapping) or set(options) - {"include_usage"}:
            raise unsupported("stream_options", "only include_usage is supported")
        include_usage = _flag(options, "include_usage")
    user = given.get("user")
    if user is not None:
        _text(user, "user")
    conversation = Conversation(
        model=_model(given),
        messages=tuple(_chat_message(m, i) for i, m in enumerate(messages)),
        tools=_chat_tools(given),
        parameters=_sampling(given, ("max_tokens", "max_completion_tokens")),
        stop=_stop(given),
        user=user,
    )
    return ChatCall(conversation, stream, include_usage)


# ---- Responses ----


def _responses_items(raw: Any) -> list[Message]:
    if isinstance(raw, str):
        return [Message(role="user", content=raw)]
    if not isinstance(raw, list) or not raw:
        raise OpenAIError(
            "input: a string or a non-empty list of items is required",
            param="input",
            code="missing_required_parameter",
        )
    messages: list[Message] = []
    pending: list[ToolCall] = []

    def flush() -> None:
        if pending:
            messages.append(Message(role="assistant", tool_calls=tuple(pending)))
            pending.clear()

    parts = ("input_text", "output_text", "text")
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if not isinstance(item, Mapping):
            raise invalid(where, "must be an object")
        kind = item.get("type", "message")
        if kind == "function_call":
            pending.append(
                ToolCall(
                    id=_text(item.get("call_id"), f"{where}.call_id"),
                    name=_text(item.get("name"), f"{where}.name"),
                    arguments=_arguments(item.get("arguments"), f"{where}.arguments"),
                )
            )
            continue
        flush()
        if kind == "function_call_output":
            output = item.get("output")
            messages.append(
                Message(
                    role="tool",
                    content=output if isinstance(output, str) else json.dumps(output),
                    tool_call_id=_text(item.get("call_id"), f"{where}.call_id"),
                )
            )
        elif kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise invalid(f"{where}.role", "must be user, assistant, system or developer")
            content = _content_text(item.get("content"), f"{where}.content", parts)
            messages.append(
                Message(role="system" if role == "developer" else role, content=content)
            )
        else:
            raise unsupported(f"{where}.type", f"input items of type {kind!r} are not supported")
    flush()
    return messages


def _responses_tools(given: Mapping[str, Any]) -> tuple[ToolSpec, ...]:
    raw = given.get("tools", [])
    if not isinstance(raw, list):
        raise invalid("tools", "must be a list")
    tools = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise unsupported(f"{where}.type", 'only "function" tools are supported')
        tools.append(
            _function_spec(tool.get("name"), tool.get("description"), tool.get("parameters"), where)
        )
    return _tool_choice(given, tuple(tools))


def parse_responses(body: Any) -> ResponsesCall:
    """A ``POST /v1/responses`` body; ``OpenAIError`` (400) naming what is wrong."""
    if not isinstance(body, Mapping):
        raise invalid("body", "must be a JSON object")
    given = _given(body)
    _check_names(given, RESPONSES_KNOWN, RESPONSES_UNSUPPORTED)
    text = given.get("text")
    if text is not None and text not in ({"format": {"type": "text"}}, {}):
        raise unsupported("text", 'only {"format": {"type": "text"}} is supported')
    instructions = given.get("instructions")
    messages = _responses_items(given.get("input"))
    if instructions is not None:
        messages.insert(0, Message(role="system", content=_text(instructions, "instructions")))
    user = given.get("user")
    if user is not None:
        _text(user, "user")
    conversation = Conversation(
        model=_model(given),
        messages=tuple(messages),
        tools=_responses_tools(given),
        parameters=_sampling(given, ("max_output_tokens",)),
        user=user,
    )
    return ResponsesCall(conversation, _flag(given, "stream"), instructions)
