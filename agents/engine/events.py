"""Execution events: one schema for every transport (SSE, WebSocket, stored event log).

The engine emits these through an injected ``emit`` callable and does not know where they go.
Payloads are JSON-ready (``cost`` is a decimal string). Transports add their own envelope
(execution id, stored sequence, timestamp) around them.

Order: ``execution.started`` → any of ``thinking`` / ``chunk`` / ``reset`` / ``tool_call`` /
``tool_result`` → ``usage`` → exactly one of ``complete``, ``error`` or ``cancelled``.

``chunk.sequence`` starts at 1 and increases by one across the whole execution; it never
restarts, not even after a ``reset``.

**Reset rule.** A ``reset`` event withdraws text already streamed: a client drops every chunk
with ``sequence >= discard_from_sequence`` that it received before the reset, and keeps
everything after it. The engine emits one when a model attempt fails after some of its text
was streamed (a dropped connection, a truncated or malformed stream, a reply that failed the
output schema), before any text of the next attempt or fallback: ``discard_from_sequence`` is
the sequence of that attempt's first chunk and ``reason`` its error kind. The platform emits
one with ``discard_from_sequence=1`` when it restarts a run from the beginning (a lost worker).
Applying the rule to a run without tool calls, the kept chunks join to exactly the reply text
of the ``complete`` event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

logger = logging.getLogger(__name__)


class ExecutionStartedEvent(TypedDict):
    type: Literal["execution.started"]
    execution_id: str
    agent_id: str
    model: str
    timestamp: str


class ThinkingEvent(TypedDict):
    type: Literal["thinking"]
    message: str


class ChunkEvent(TypedDict):
    type: Literal["chunk"]
    text: str
    sequence: int


class ResetEvent(TypedDict):
    """Withdraws streamed text: drop chunks with ``sequence >= discard_from_sequence`` received
    before this event (see the reset rule in the module docstring)."""

    type: Literal["reset"]
    reason: str  # an error kind, e.g. "network_error", "malformed_response", "invalid_output"
    message: str
    discard_from_sequence: int


class ToolCallEvent(TypedDict):
    type: Literal["tool_call"]
    tool_name: str
    tool_input: dict[str, Any]
    call_id: str


class ToolResultEvent(TypedDict):
    type: Literal["tool_result"]
    tool_name: str
    tool_result: str
    call_id: str
    is_error: bool


class UsageEvent(TypedDict):
    type: Literal["usage"]
    input_tokens: int
    output_tokens: int
    estimated: bool


class UsagePayload(TypedDict):
    input_tokens: int
    output_tokens: int
    estimated: bool


class CompleteEvent(TypedDict):
    type: Literal["complete"]
    output: Any
    usage: UsagePayload
    cost: str
    model: str
    # Why the reply ended: the provider's reason ("stop", "length"), or "tool_calls" when the
    # caller's own tools were called (the output then holds the calls).
    finish_reason: NotRequired[str]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    code: str
    message: str


class CancelledEvent(TypedDict):
    type: Literal["cancelled"]


Event = (
    ExecutionStartedEvent
    | ThinkingEvent
    | ChunkEvent
    | ResetEvent
    | ToolCallEvent
    | ToolResultEvent
    | UsageEvent
    | CompleteEvent
    | ErrorEvent
    | CancelledEvent
)

EventType = Literal[
    "execution.started",
    "thinking",
    "chunk",
    "reset",
    "tool_call",
    "tool_result",
    "usage",
    "complete",
    "error",
    "cancelled",
]

TERMINAL_EVENT_TYPES: frozenset[str] = frozenset({"complete", "error", "cancelled"})

Emit = Callable[[Event], Awaitable[None]]


def now_iso() -> str:
    """UTC timestamp in ISO 8601, as used in event payloads."""
    return datetime.now(UTC).isoformat()


async def discard(event: Event) -> None:
    """An ``emit`` that drops every event (for callers that only want the result)."""


class EventSink:
    """Wraps the caller's ``emit``: numbers chunks and isolates the run from a broken sink.

    A sink that raises (say, a closed socket) must not fail an execution whose result is still
    stored; the error is logged once and later events are still offered. Cancellation is not
    swallowed: a client that wants the run stopped cancels the task.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._sequence = 0
        self._failed = False

    @property
    def chunks_sent(self) -> int:
        """How many chunk events were emitted so far (the last sequence number used)."""
        return self._sequence

    async def send(self, event: Event) -> None:
        """Offer one event to the sink."""
        try:
            await self._emit(event)
        except Exception:
            if not self._failed:
                logger.exception("event sink failed; the execution continues without it")
            self._failed = True

    async def chunk(self, text: str) -> None:
        """Emit a chunk with the next sequence number."""
        self._sequence += 1
        await self.send({"type": "chunk", "text": text, "sequence": self._sequence})
