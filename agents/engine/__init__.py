"""The agent engine: plain async Python that runs one agent execution.

It takes an :class:`AgentSnapshot`, a JSON context, the caller's input and injected callables
(``emit`` for events, a provider factory, a tool runner) and returns an
:class:`ExecutionResult`. It imports nothing from Django, DRF or Channels.
"""

from __future__ import annotations

from agents.engine.breaker import BreakerPolicy, BreakerRegistry, CircuitBreaker, default_breakers
from agents.engine.context import get_path, set_path
from agents.engine.errors import (
    INVALID_OUTPUT,
    EngineError,
    InvalidInput,
    InvalidSchema,
    MappingError,
    ModelResolutionError,
    PromptRenderError,
    ToolStepLimit,
)
from agents.engine.events import TERMINAL_EVENT_TYPES, Emit, Event, EventType, ResetEvent
from agents.engine.mapping import apply_output_mapping, map_input, validate_input
from agents.engine.pricing import PriceEntry, PriceTable
from agents.engine.prompts import render_template
from agents.engine.retry import backoff_delay
from agents.engine.routing import VIRTUAL_MODELS, ModelOption, is_virtual, resolve_model
from agents.engine.runner import AgentRun, run_agent, start_agent
from agents.engine.tools import (
    CompositeToolRunner,
    ToolCallContext,
    ToolOutcome,
    ToolRunner,
    wrap_untrusted,
)
from agents.engine.turns import ProviderFactory
from agents.engine.types import (
    DEFAULT_RETRY_ON,
    AgentSnapshot,
    AttemptRecord,
    CallConfig,
    ExecutionInput,
    ExecutionResult,
    ModelTarget,
    RetryConfig,
    SpendGate,
    ToolDefinition,
)

__all__ = [
    "DEFAULT_RETRY_ON",
    "INVALID_OUTPUT",
    "TERMINAL_EVENT_TYPES",
    "VIRTUAL_MODELS",
    "AgentRun",
    "AgentSnapshot",
    "AttemptRecord",
    "BreakerPolicy",
    "BreakerRegistry",
    "CallConfig",
    "CircuitBreaker",
    "CompositeToolRunner",
    "Emit",
    "EngineError",
    "Event",
    "EventType",
    "ExecutionInput",
    "ExecutionResult",
    "InvalidInput",
    "InvalidSchema",
    "MappingError",
    "ModelOption",
    "ModelResolutionError",
    "ModelTarget",
    "PriceEntry",
    "PriceTable",
    "PromptRenderError",
    "ProviderFactory",
    "ResetEvent",
    "RetryConfig",
    "SpendGate",
    "ToolCallContext",
    "ToolDefinition",
    "ToolOutcome",
    "ToolRunner",
    "ToolStepLimit",
    "apply_output_mapping",
    "backoff_delay",
    "default_breakers",
    "get_path",
    "is_virtual",
    "map_input",
    "render_template",
    "resolve_model",
    "run_agent",
    "set_path",
    "start_agent",
    "validate_input",
    "wrap_untrusted",
]
