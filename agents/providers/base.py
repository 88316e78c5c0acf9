"""The contract between the agent engine and LLM provider adapters.

Everything the engine knows about a provider is in this module: a request made of plain
dataclasses, a stream of typed provider events, and one error type. Adapters (one module per
provider family) translate these to and from a vendor's wire format over ``httpx`` and never let
an ``httpx`` or vendor exception escape: every failure becomes a :class:`ProviderError`.

Nothing here imports Django, DRF or Channels.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class ErrorKind(enum.StrEnum):
    """Why a provider call failed.

    Retryable (:data:`RETRYABLE_KINDS`, the kinds agents may name in ``retry_on_errors``):
    ``timeout``, ``rate_limit`` (a 429: the caller's quota, retried after Retry-After, never a
    reason to open a circuit breaker), ``network_error`` (refused, reset, or a stream cut off),
    ``server_error`` (5xx, or an error event inside a stream) and ``malformed_response`` (a
    stream that ended early or carried invalid JSON: transient like a dropped connection). The
    rest are permanent.
    """

    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    NETWORK_ERROR = "network_error"
    SERVER_ERROR = "server_error"
    AUTHENTICATION = "authentication"
    INVALID_REQUEST = "invalid_request"
    MALFORMED_RESPONSE = "malformed_response"
    BLOCKED_URL = "blocked_url"
    CIRCUIT_OPEN = "circuit_open"


RETRYABLE_KINDS: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.RATE_LIMIT,
        ErrorKind.NETWORK_ERROR,
        ErrorKind.SERVER_ERROR,
        ErrorKind.MALFORMED_RESPONSE,
    }
)


class ProviderError(Exception):
    """The only exception a provider adapter raises.

    ``message`` must never contain the API key or request headers.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def __repr__(self) -> str:
        return f"ProviderError({self.kind.value!r}, {self.message!r}, status={self.status_code})"


ProviderKind = Literal["openai", "anthropic", "google", "ollama", "echo"]


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Where and how to reach one provider account. ``api_key`` is plaintext in memory only.

    ``breaker_key`` names the circuit breaker this account's calls count towards (see
    :mod:`agents.engine.breaker`). The platform sets it per tenant and credential,
    ``f"{schema_name}:{credential_id}"``, so one tenant's failing key never opens the breaker
    of another tenant using the same provider. Empty means (kind, base URL), for callers
    outside any tenant (tests, the benchmark).
    """

    kind: ProviderKind
    base_url: str
    api_key: str = field(default="", repr=False)
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)
    # Hosts/networks an operator allow-listed past the SSRF guard (e.g. a local Ollama).
    allowed_private: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # Sending the request body, and waiting for a free pooled connection.
    write_timeout: float = 10.0
    pool_timeout: float = 5.0
    breaker_key: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    # assistant messages that asked for tools
    tool_calls: tuple[ToolCall, ...] = ()
    # tool messages answer one call
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: name, description, JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    # Ask for a JSON object reply (OpenAI json mode, Gemini responseMimeType, ...).
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # True when the provider reported no usage and the numbers were estimated.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


# ---- provider stream events -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallsReady:
    """The model finished asking for one or more tool calls (arguments fully assembled)."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Finished:
    """Always the last event of a successful stream."""

    finish_reason: str  # "stop", "length", "tool_calls", ...
    model: str  # the model the provider says answered


ProviderEvent = TextDelta | ToolCallsReady | UsageReport | Finished


class Provider(Protocol):
    """One provider family. Instances are cheap; connection pools are shared per base URL."""

    config: ProviderConfig

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """Stream one chat completion. Closing the iterator (``aclose``), or cancelling the task
        that iterates it, closes the upstream HTTP response at once."""
        ...
