"""Plain, frozen data the engine consumes and produces.

Django code builds an :class:`AgentSnapshot` from the stored agent version and a
:class:`CallConfig` from the request, then receives an :class:`ExecutionResult`. Nothing here
knows about models, requests or transports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from agents.providers.base import Message, ProviderConfig, ToolSpec, Usage

ExecutionStatus = Literal["completed", "failed", "timeout", "cancelled"]
AttemptStatus = Literal["succeeded", "failed", "skipped", "cancelled"]
ToolKind = Literal["agent", "http", "mcp"]

# A broken stream (malformed_response) is as transient as a dropped connection; server errors
# stay opt-in, as in the original system (a 500 often repeats for the same request).
DEFAULT_RETRY_ON: tuple[str, ...] = ("timeout", "rate_limit", "network_error", "malformed_response")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How often one model target is tried. Names and defaults are the original system's."""

    max_attempts: int = 3
    backoff_seconds: float = 10.0
    retry_on_errors: tuple[str, ...] = DEFAULT_RETRY_ON
    # Upper bound of one backoff sleep; a Retry-After above it moves on to the next fallback.
    max_backoff_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """One concrete provider account plus model name."""

    provider: ProviderConfig
    model: str


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool an agent may call. ``parameters`` is the JSON Schema of its arguments.

    ``config`` is kind-specific: for ``http`` see
    :class:`agents.providers.http_tool.HttpTool`; for ``agent`` and ``mcp`` it is whatever the
    runner plugged into :class:`CompositeToolRunner` for that kind expects.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    kind: ToolKind = "http"
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """An immutable copy of one agent version, taken when an execution starts."""

    id: str
    slug: str
    version: int
    name: str
    provider: ProviderConfig
    model: str
    temperature: float | None = 0.7
    max_tokens: int | None = 4000
    top_p: float | None = 0.9
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop_sequences: tuple[str, ...] = ()
    system_prompt: str = ""
    user_template: str = ""
    context_instructions: str = ""
    capabilities: tuple[str, ...] = ()
    tools: tuple[ToolDefinition, ...] = ()
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    input_mapping: Mapping[str, str] = field(default_factory=dict)
    output_mapping: Mapping[str, str] = field(default_factory=dict)
    retry: RetryConfig = field(default_factory=RetryConfig)
    timeout_seconds: float | None = 120.0
    fallbacks: tuple[ModelTarget, ...] = ()
    max_tool_steps: int = 8


class SpendGate(Protocol):
    """Asked before every model call of a run whose tenant meters tokens or cost; raises an
    ``EngineError`` (``budget_exceeded``) to end the run instead of making the call. ``spent``
    and ``spent_cost``: what the run's earlier calls used."""

    async def before_call(
        self,
        *,
        model: str,
        prompt_bytes: int,
        max_output: int | None,
        spent: Usage,
        spent_cost: Decimal,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CallConfig:
    """Per-call overrides (the original ``AgentActivityConfig``). ``None`` keeps the agent's value.

    ``timeout_seconds`` bounds the whole execution (all attempts, backoff sleeps and tool calls);
    ``attempt_timeout_seconds`` bounds one model call.
    """

    input_mapping: Mapping[str, str] | None = None
    output_mapping: Mapping[str, str] | None = None
    timeout_seconds: float | None = None
    attempt_timeout_seconds: float | None = None
    retry: RetryConfig | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop_sequences: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ExecutionInput:
    """What the caller sends: a free-text message and/or named parameters.

    ``messages``: a conversation instead of one message (the OpenAI-compatible endpoint). The
    model sees the agent's system prompt, then these messages in order; a final user message is
    rendered through the agent's user template like ``message`` (which then holds its text).
    ``client_tools``: tools the *caller* runs: offered to the model, never executed here; a
    turn that calls one ends the run with the calls as its output (``finish_reason``
    ``tool_calls``).
    """

    message: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    client_tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One call to one model target (or a target skipped because its circuit was open)."""

    model: str
    provider_kind: str
    status: AttemptStatus
    error_kind: str | None
    latency_ms: int
    usage: Usage
    started_at: datetime
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The outcome of :func:`agents.engine.run_agent`.

    ``output`` is the final reply text, or the parsed JSON value when the agent has an output
    schema. ``context`` is an updated copy (output mapping applied); the caller's dict is never
    mutated. ``cost`` only covers models found in the price table; the others are listed in
    ``unpriced_models``.
    """

    status: ExecutionStatus
    execution_id: str
    output: Any
    context: dict[str, Any]
    mapped_input: dict[str, Any]
    usage: Usage
    cost: Decimal
    model_used: str | None
    requested_model: str
    attempts: list[AttemptRecord]
    error_code: str | None = None
    error_message: str | None = None
    unpriced_models: tuple[str, ...] = ()
    tool_steps: int = 0

    @property
    def cost_known(self) -> bool:
        """False when some tokens were spent on a model missing from the price table."""
        return not self.unpriced_models

    @property
    def retry_count(self) -> int:
        """Number of failed attempts (the original's ``retry_count``)."""
        return sum(1 for a in self.attempts if a.status == "failed")
