"""The agents WebSocket's wire format: client requests, server messages, and the mapping of
stored execution events to messages.

Names follow the original system (``auth``, ``execute``, ``subscribe``, ``chunk``,
``complete``, …). Every message that carries an execution event has ``execution_id`` and
``seq`` (the stored event's sequence number), so a client resumes with
``subscribe{execution_id, after: <last seq>}``. An ``error`` *with* ``seq`` is an execution's
terminal event; an ``error`` without ``seq`` answers a request.

Client → server: ``auth{token}``, ``execute{agent_id, context?, input?{message, parameters} or
message/parameters, execution_config?, input_mapping?, output_mapping?, timeout_seconds?,
idempotency_key?, request_id?}`` (validated by the execution core like a REST body),
``subscribe{execution_id, after?}``, ``unsubscribe{execution_id}``, ``cancel{execution_id}``,
``ping``. Server → client, besides the events: ``auth_success{tenant_id, role}``,
``auth_failure{error}`` (then close 4401), ``subscribed{execution_id, after}`` (before the
replay), ``unsubscribed{execution_id}`` (nothing more for it follows), ``cancel_requested
{execution_id, status}`` (the ``cancelled`` event follows when the run has stopped), ``pong``,
``heartbeat{timestamp}`` (every ``WS_HEARTBEAT_SECONDS`` whatever else is sent; a client that
has seen nothing for two of them may assume the connection dead and reconnect),
``error{code, error, execution_id?, request_id?, retryable?}``. ``execution_started`` of an
``execute`` echoes its ``request_id``. A ``reset{reason, message, discard_from_sequence}``
event means: drop the text of the chunks from ``discard_from_sequence`` on (that attempt is
retried). ``error{code: "stream_interrupted", retryable: true}`` without ``seq`` means the
server stopped following (database unavailable): ``subscribe{after}`` again. Close codes: 4401 unauthenticated, 4008 slow consumer, 1011 server
error.

Workflow events (``workflow_bridge.events``; permission ``workflows.read``):
``subscribe_resource{resource_id, after?}`` follows one resource's events, ``after`` its last
``seq``; ``subscribe_workflow{workflow_id, after?}`` (id or slug) follows the events of all the
workflow's resources in commit order, ``after`` its last ``workflow_seq``;
``unsubscribe_resource{resource_id}`` / ``unsubscribe_workflow{workflow_id}`` stop. Answers:
``subscribed{stream, resource_id | workflow_id, after}`` before the replay, ``unsubscribed
{stream, …}``; another tenant's id (or a missing one) is ``error{code: "not_found"}``. Each
event is the stored event (``type`` = ``resource_created``, ``resource_activity_executed``,
``agent_triggered``, …; ``seq``, ``workflow_seq``, ``resource_id``, ``workflow_id``,
``workflow_slug``, ``kind``, ``actor``, ``activity``, ``from_marking``, ``to_marking``,
``from_state``, ``to_state``, ``data``, ``execution_id``, ``timestamp``) plus ``stream``:
``"resource"`` or ``"workflow"``, the subscription it came through (a client subscribed to
both a resource and its workflow gets each of its events once per subscription). Workflow
subscriptions do not end by themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, cast

from agents.core.follow import StoredEvent
from agents.engine.events import now_iso
from workflow_bridge.events import WorkflowEvent

MAX_ID_CHARS = 200
MAX_REQUEST_ID_CHARS = 128

# ---- client → server ----


class AuthRequest(TypedDict):
    type: Literal["auth"]
    token: str


class ExecuteInput(TypedDict, total=False):
    message: str
    parameters: dict[str, Any]


class ExecuteRequest(TypedDict):
    type: Literal["execute"]
    agent_id: str
    context: NotRequired[dict[str, Any]]
    input: NotRequired[ExecuteInput]
    message: NotRequired[str]
    parameters: NotRequired[dict[str, Any]]
    input_mapping: NotRequired[dict[str, str]]
    output_mapping: NotRequired[dict[str, str]]
    timeout_seconds: NotRequired[float]
    execution_config: NotRequired[dict[str, Any]]
    idempotency_key: NotRequired[str]
    request_id: NotRequired[str]


class SubscribeRequest(TypedDict):
    type: Literal["subscribe"]
    execution_id: str
    after: NotRequired[int]


class UnsubscribeRequest(TypedDict):
    type: Literal["unsubscribe"]
    execution_id: str


class CancelRequest(TypedDict):
    type: Literal["cancel"]
    execution_id: str


class PingRequest(TypedDict):
    type: Literal["ping"]


class SubscribeResourceRequest(TypedDict):
    type: Literal["subscribe_resource"]
    resource_id: str
    after: NotRequired[int]


class SubscribeWorkflowRequest(TypedDict):
    type: Literal["subscribe_workflow"]
    workflow_id: str
    after: NotRequired[int]


class UnsubscribeResourceRequest(TypedDict):
    type: Literal["unsubscribe_resource"]
    resource_id: str


class UnsubscribeWorkflowRequest(TypedDict):
    type: Literal["unsubscribe_workflow"]
    workflow_id: str


ClientType = Literal[
    "auth",
    "execute",
    "subscribe",
    "unsubscribe",
    "cancel",
    "ping",
    "subscribe_resource",
    "subscribe_workflow",
    "unsubscribe_resource",
    "unsubscribe_workflow",
]
WORKFLOW_STREAM_TYPES: frozenset[str] = frozenset(
    {"subscribe_resource", "subscribe_workflow", "unsubscribe_resource", "unsubscribe_workflow"}
)
CLIENT_TYPES: frozenset[str] = (
    frozenset({"auth", "execute", "subscribe", "unsubscribe", "cancel", "ping"})
    | WORKFLOW_STREAM_TYPES
)

# ---- server → client (replies; not events) ----


class AuthSuccessMessage(TypedDict):
    type: Literal["auth_success"]
    tenant_id: str
    role: str


class AuthFailureMessage(TypedDict):
    type: Literal["auth_failure"]
    error: str


class ErrorMessage(TypedDict):
    type: Literal["error"]
    error: str
    code: str
    timestamp: str
    execution_id: NotRequired[str]
    resource_id: NotRequired[str]
    workflow_id: NotRequired[str]
    # A limit that was hit: seconds until a retry can succeed (HTTP's Retry-After).
    retry_after: NotRequired[int]
    request_id: NotRequired[str]
    # true: try again (resubscribe with after); the failure was the server's, not the request's
    retryable: NotRequired[bool]


class SubscribedMessage(TypedDict):
    type: Literal["subscribed", "unsubscribed"]
    execution_id: str
    after: NotRequired[int]


StreamKind = Literal["resource", "workflow"]


class StreamSubscribedMessage(TypedDict):
    """A workflow event subscription began (``after``) or ended."""

    type: Literal["subscribed", "unsubscribed"]
    stream: StreamKind
    resource_id: NotRequired[str]
    workflow_id: NotRequired[str]
    after: NotRequired[int]


class CancelRequestedMessage(TypedDict):
    type: Literal["cancel_requested"]
    execution_id: str
    status: str


class PongMessage(TypedDict):
    type: Literal["pong"]
    timestamp: str


class HeartbeatMessage(TypedDict):
    type: Literal["heartbeat"]
    timestamp: str


# ---- server → client (execution events: all carry execution_id, seq and timestamp) ----


class EventMessage(TypedDict):
    type: Literal[
        "execution_started",
        "thinking",
        "chunk",
        "tool_call",
        "tool_result",
        "usage",
        "complete",
        "error",
        "cancelled",
        "reset",
    ]
    execution_id: str
    seq: int
    timestamp: str
    # per type: execution_started{agent_id, model, request_id?}, thinking{message},
    # chunk{chunk, sequence, sequence_end}, tool_call{tool_name, tool_input, call_id},
    # tool_result{tool_name, tool_result, call_id, is_error}, usage{input_tokens,
    # output_tokens, estimated}, complete{response, usage, cost, model}, error{error, code}
    agent_id: NotRequired[str]
    model: NotRequired[str]
    request_id: NotRequired[str]
    message: NotRequired[str]
    chunk: NotRequired[str]
    sequence: NotRequired[int]
    sequence_end: NotRequired[int]
    tool_name: NotRequired[str]
    tool_input: NotRequired[Any]
    tool_result: NotRequired[Any]
    call_id: NotRequired[str]
    is_error: NotRequired[bool]
    input_tokens: NotRequired[int]
    output_tokens: NotRequired[int]
    estimated: NotRequired[bool]
    response: NotRequired[Any]
    usage: NotRequired[Any]
    # set when the message was too large for one frame (see encode_event)
    part: NotRequired[int]
    parts: NotRequired[int]
    truncated: NotRequired[bool]
    cost: NotRequired[str]
    error: NotRequired[str]
    code: NotRequired[str]
    # reset{reason, message, discard_from_sequence}
    reason: NotRequired[str]
    discard_from_sequence: NotRequired[int]


class WorkflowEventMessage(TypedDict):
    """A workflow event (``workflow_bridge.events.WorkflowEventPayload``) and the subscription
    it came through."""

    type: str
    stream: StreamKind
    seq: int
    workflow_seq: int
    resource_id: str
    workflow_id: str
    workflow_slug: str
    kind: str
    actor: str
    activity: str | None
    from_marking: dict[str, int]
    to_marking: dict[str, int]
    from_state: str | None
    to_state: str | None
    data: dict[str, Any] | None
    execution_id: str | None
    timestamp: str
    # An event too large for one frame is sent with ``data: null`` and ``truncated: true``
    # (encode_workflow_event); the full entry is in the resource's history.


ServerMessage = (
    AuthSuccessMessage
    | AuthFailureMessage
    | ErrorMessage
    | SubscribedMessage
    | StreamSubscribedMessage
    | CancelRequestedMessage
    | PongMessage
    | HeartbeatMessage
    | EventMessage
    | WorkflowEventMessage
)


class ProtocolError(Exception):
    """A request the server will not act on; answered with an ``error`` message."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        execution_id: str | None = None,
        request_id: str = "",
        resource_id: str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.execution_id = execution_id
        self.request_id = request_id
        self.resource_id = resource_id
        self.workflow_id = workflow_id

    def as_message(self) -> ErrorMessage:
        return error_message(
            self.code,
            self.message,
            execution_id=self.execution_id,
            request_id=self.request_id,
            resource_id=self.resource_id,
            workflow_id=self.workflow_id,
        )


def error_message(
    code: str,
    error: str,
    *,
    execution_id: str | None = None,
    request_id: str | None = None,
    resource_id: str | None = None,
    workflow_id: str | None = None,
    retry_after: str | None = None,
) -> ErrorMessage:
    message: ErrorMessage = {"type": "error", "error": error, "code": code, "timestamp": now_iso()}
    if retry_after is not None and retry_after.isdigit():
        message["retry_after"] = int(retry_after)
    if execution_id is not None:
        message["execution_id"] = execution_id
    if resource_id is not None:
        message["resource_id"] = resource_id
    if workflow_id is not None:
        message["workflow_id"] = workflow_id
    if request_id:
        message["request_id"] = request_id
    return message


def workflow_event_message(stream: StreamKind, event: WorkflowEvent) -> WorkflowEventMessage:
    """The wire message for one workflow event: the stored event as every transport sends
    it, and the subscription it came through."""
    return {**event.payload, "stream": stream}


def event_message(
    execution_id: str, event: StoredEvent, *, request_id: str | None = None
) -> EventMessage:
    """The wire message for one stored event. ``timestamp`` is when it is sent (events keep
    their own time only on ``execution_started``)."""
    data = event.data
    base: dict[str, Any] = {"execution_id": execution_id, "seq": event.seq, "timestamp": now_iso()}
    match event.type:
        case "execution.started":
            base.update(
                type="execution_started",
                agent_id=str(data.get("agent_id", "")),
                model=str(data.get("model", "")),
                timestamp=str(data.get("timestamp") or base["timestamp"]),
            )
            if request_id:
                base["request_id"] = request_id
        case "chunk":
            sequence = int(data.get("sequence", 0))
            base.update(
                type="chunk",
                chunk=str(data.get("text", "")),
                sequence=sequence,
                sequence_end=int(data.get("sequence_end") or sequence),
            )
        case "complete":
            base.update(
                type="complete",
                response=data.get("output"),
                usage=data.get("usage"),
                cost=data.get("cost"),
                model=data.get("model"),
            )
        case "error":
            base.update(type="error", error=str(data.get("message", "")), code=data.get("code"))
        case _:
            # thinking, tool_call, tool_result, usage, cancelled: the stored fields as they are.
            base.update({k: v for k, v in data.items() if k not in base}, type=event.type)
    # Each case fills the keys of its type; the last passes stored fields through unchecked.
    return cast(EventMessage, base)


# ---- parsing requests ----


def parse_request(text_data: str | None, limit: int) -> dict[str, Any]:
    """A client message: a JSON object of a known ``type``, at most ``limit`` characters."""
    if text_data is None:
        raise ProtocolError("bad_request", "Messages are JSON text frames.")
    if len(text_data) > limit:
        raise ProtocolError("payload_too_large", "The message is too large.")
    try:
        payload = json.loads(text_data)
    except ValueError:
        raise ProtocolError("bad_request", "The message is not valid JSON.") from None
    if not isinstance(payload, dict) or payload.get("type") not in CLIENT_TYPES:
        raise ProtocolError("bad_request", "Unknown message type.")
    return payload


@dataclass(frozen=True)
class ExecuteArgs:
    """An ``execute`` message as the core takes it: the canonical body, plus what belongs to
    the message itself (its ``request_id``, an idempotency key)."""

    agent_ref: str
    body: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    idempotency_key: str | None = None


_EXECUTE_KEYS = frozenset(ExecuteRequest.__annotations__)
# The original's flat fields that belong in ``execution_config`` of the canonical body.
_FLAT_CONFIG = ("timeout_seconds", "input_mapping", "output_mapping")


def _string(payload: dict[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError("validation_error", f"{key}: a non-empty string is required")
    return value


def _echo(payload: dict[str, Any]) -> str:
    value = payload.get("request_id")
    return value if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_CHARS else ""


def parse_execute(payload: dict[str, Any]) -> ExecuteArgs:
    """Turn an ``execute`` message into the canonical execute body (the REST endpoint's
    ``{context, input, execution_config}``); the execution core validates it, with the same
    rules and messages as every other interface. Accepts the original's flat form
    (``message``/``parameters``/``timeout_seconds``/mappings at the top) too."""
    unknown = sorted(set(payload) - _EXECUTE_KEYS)
    if unknown:
        raise ProtocolError(
            "validation_error", f"{unknown[0]}: unknown field", request_id=_echo(payload)
        )
    agent_ref = _string(payload, "agent_id", MAX_ID_CHARS, required=True) or ""
    request_id = _string(payload, "request_id", MAX_REQUEST_ID_CHARS, required=False) or ""
    key = payload.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise ProtocolError(
            "validation_error", "idempotency_key: must be a string", request_id=request_id
        )
    body: dict[str, Any] = {}
    if "context" in payload:
        body["context"] = payload["context"]
    if "input" in payload:
        body["input"] = payload["input"]
    else:
        flat = {k: payload[k] for k in ("message", "parameters") if k in payload}
        if flat:
            body["input"] = flat
    config = payload.get("execution_config")
    flat_config = {k: payload[k] for k in _FLAT_CONFIG if k in payload}
    if flat_config:
        if config is not None and not isinstance(config, dict):
            raise ProtocolError(
                "validation_error",
                "execution_config: must be a JSON object",
                request_id=request_id,
            )
        config = {**flat_config, **(config or {})}
    if config is not None:
        body["execution_config"] = config
    return ExecuteArgs(agent_ref, body, request_id, key)


def parse_execution_id(payload: dict[str, Any]) -> str:
    return _string(payload, "execution_id", MAX_ID_CHARS, required=True) or ""


def parse_resource_id(payload: dict[str, Any]) -> str:
    return _string(payload, "resource_id", MAX_ID_CHARS, required=True) or ""


def parse_workflow_id(payload: dict[str, Any]) -> str:
    return _string(payload, "workflow_id", MAX_ID_CHARS, required=True) or ""


def parse_after(payload: dict[str, Any]) -> int:
    after = payload.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ProtocolError("validation_error", "after: a non-negative integer (a seq)")
    return after


# ---- fitting messages under the server's frame limit ----

# daphne (autobahn) refuses to send a message over 1 MiB; stay under it with room to spare.
MAX_OUTBOUND_BYTES = 1_000_000
_BULKY_FIELDS = ("response", "tool_result", "tool_input", "usage")


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, default=str)


def encode_event(message: EventMessage, limit: int = MAX_OUTBOUND_BYTES) -> list[str]:
    """The frames for one event message: one, unless it is larger than ``limit``.

    A large ``chunk`` is split into several ``chunk`` frames with the same ``seq`` and
    ``part``/``parts`` (a resume cursor skips whole seqs, so parts are sent back to back).
    Any other large message loses its bulky fields and says ``truncated: true``: the full
    value is in the stored execution.
    """
    text = _encode(dict(message))
    if len(text.encode()) <= limit:
        return [text]
    if message["type"] == "chunk":
        chunk = message.get("chunk", "")
        # A character is at most 6 bytes JSON-escaped: pieces of limit/8 characters fit.
        size = max(limit // 8, 1)
        pieces = [chunk[i : i + size] for i in range(0, len(chunk), size)]
        return [
            _encode({**message, "chunk": piece, "part": index, "parts": len(pieces)})
            for index, piece in enumerate(pieces, 1)
        ]
    slim: dict[str, Any] = {
        key: (None if key in _BULKY_FIELDS else value) for key, value in message.items()
    }
    slim["truncated"] = True
    text = _encode(slim)
    if len(text.encode()) > limit:  # still too large (a huge error text): keep the envelope
        keep = ("type", "execution_id", "seq", "timestamp", "code")
        text = _encode({k: v for k, v in slim.items() if k in keep})
    return [text]


def encode_workflow_event(message: WorkflowEventMessage, limit: int = MAX_OUTBOUND_BYTES) -> str:
    """One frame for a workflow event; one larger than ``limit`` loses its ``data`` (and says
    ``truncated: true``)."""
    text = _encode(dict(message))
    if len(text.encode()) <= limit:
        return text
    return _encode({**message, "data": None, "truncated": True})


def short_id(value: Any) -> str | None:
    """An id echoed back in an error: only if it is a short string."""
    return value if isinstance(value, str) and len(value) <= 200 else None
