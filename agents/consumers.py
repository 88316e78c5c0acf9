"""The agents WebSocket (``/agents/ws``): run executions and follow their stored event logs.

Wire format: ``agents.ws_protocol``. Lifecycle of a connection:

- The handshake passed ``TenantHostMiddleware`` (known host). The connection authenticates
  with the handshake's credential (``Authorization: Bearer`` or ``?token=``) or with a first
  ``auth{token}`` message; anything else first → ``auth_failure`` and close 4401. Tenant and
  principal are then fixed for the connection: a later ``auth`` is refused. A connection that
  authenticated with a token is closed (4401) when the token expires.
- ``execute`` runs the agent in a task (``execution_run(live=True)``) and follows its event log
  like ``subscribe`` does; ``subscribe{after}`` replays the stored events after that ``seq``,
  then follows live until the terminal event; ``unsubscribe`` stops following (the run goes on).
- Closing the socket stops its followers **and cancels the runs this connection started**
  (stored as ``cancelled``). A run that must outlive the socket is started over REST in
  background mode and followed here with ``subscribe``.
- Every ORM call runs through ``tenants.context.in_schema(schema, …)`` with the connection's
  schema: never on the ambient schema of the shared database thread.
- Slow readers: messages go through a bounded outbox to one writer, which waits while daphne's
  send buffer is over its high-water mark; a client that stays that slow for
  ``SLOW_CONSUMER_SECONDS`` is disconnected with 4008, so memory per connection stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from agents.engine.events import now_iso
from agents.selectors import execution_get
from agents.services.executions import ExecutionRequest, execution_cancel, execution_run
from agents.streaming.follow import follow_events
from agents.streaming.hub import get_hub
from agents.ws_protocol import (
    ProtocolError,
    ServerMessage,
    encode_event,
    error_message,
    event_message,
    parse_after,
    parse_execute,
    parse_execution_id,
    parse_request,
)
from agents.ws_transport import Follower, Outbox, Outgoing, Run, SlowConsumer, flow_control_for
from config.errors import DomainError
from tenants.audit.models import AuditOutcome
from tenants.audit.services import audit_record
from tenants.authentication import Authenticated
from tenants.channels import (
    ORIGIN_SCOPE_KEY,
    ConnectionOrigin,
    ConnectionRefused,
    authenticate_connection,
    handshake_credential,
)
from tenants.context import in_schema
from tenants.roles import Permission

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_SLOW_CONSUMER = 4008
CLOSE_INTERNAL_ERROR = 1011
AUTH_TIMEOUT_SECONDS = 10.0
SLOW_CONSUMER_SECONDS = 5.0
OUTBOX_EVENTS = 64
MAX_INBOUND_CHARS = 512 * 1024
MAX_RUNS = 16
MAX_FOLLOWERS = 64
SHUTDOWN_GRACE_SECONDS = 5.0


REQUIRED: dict[str, Permission] = {
    "execute": Permission.EXECUTIONS_RUN,
    "subscribe": Permission.EXECUTIONS_READ,
    "cancel": Permission.EXECUTIONS_CANCEL,
}


class AgentsConsumer(AsyncWebsocketConsumer):
    # Events travel through PostgreSQL (stored log + NOTIFY), not a channel layer: none is used.
    channel_layer_alias = "agents-ws-uses-no-channel-layer"

    async def connect(self) -> None:
        self.auth: Authenticated | None = None
        self.closing = False
        self.slow = False
        self.runs: set[Run] = set()
        self.followers: dict[str, Follower] = {}
        self.timers: list[asyncio.TimerHandle] = []
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None
        origin = self.scope.get(ORIGIN_SCOPE_KEY)
        if not isinstance(origin, ConnectionOrigin):  # not behind TenantHostMiddleware: refuse
            await self.close()
            return
        self.origin = origin
        self.outbox = Outbox(flow_control_for(self.base_send), events=OUTBOX_EVENTS)
        await self.accept()
        self.writer = asyncio.create_task(self._write_loop())
        credential = handshake_credential(self.scope)
        if credential is not None:
            await self._authenticate(credential)
        else:
            self._later(AUTH_TIMEOUT_SECONDS, "No credential within the time allowed.")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        try:
            payload = parse_request(text_data, MAX_INBOUND_CHARS)
            kind = payload["type"]
            if self.auth is None:
                if kind != "auth":
                    raise ConnectionRefused("Authenticate first: send auth{token}.")
                token = payload.get("token")
                await self._authenticate(token if isinstance(token, str) else "")
                return
            await self._dispatch(kind, payload)
        except ConnectionRefused as refused:
            self._refuse(refused.message)
        except ProtocolError as exc:
            if self.auth is None:
                self._refuse(exc.message)
            else:
                self._reply(exc.as_message())
        except DomainError as exc:
            self._reply(error_message(exc.code, exc.message))

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for timer in self.timers:
            timer.cancel()
        pending: list[asyncio.Task[None]] = []
        for follower in list(self.followers.values()):
            follower.stop()
            pending.append(follower.task)  # type: ignore[arg-type]
        if self.writer is not None:
            self.writer.cancel()
            pending.append(self.writer)
        for run in self.runs:
            self._cancel_run(run)
            pending.append(run.task)  # type: ignore[arg-type]
        # A cancelled run stops upstream and stores itself as cancelled: give it time to.
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)

    def _cancel_run(self, run: Run) -> None:
        if run.execution_id is not None:
            # Through the run's own handle: it closes upstream, stores "cancelled" and returns.
            get_hub().cancel_local(self._schema(), run.execution_id)
        elif run.task is not None:
            # Not started yet. A cancel that lands in the database call preparing the run is
            # swallowed by asgiref; the listener then sees the start and cancels it there.
            run.task.cancel()

    # ---- requests ----

    async def _dispatch(self, kind: str, payload: dict[str, Any]) -> None:
        principal = self._auth().principal
        required = REQUIRED.get(kind)
        if required is not None and not principal.can(required):
            await in_schema(
                principal.schema_name,
                audit_record,
                schema_name=principal.schema_name,
                actor=principal.audit_actor,
                action="permission.denied",
                outcome=AuditOutcome.DENIED,
                details={"permission": str(required), "role": principal.role, "ws": kind},
            )
            raise ProtocolError(
                "permission_denied",
                "Your role does not allow this operation.",
                execution_id=_short(payload.get("execution_id")),
                request_id=_short(payload.get("request_id")) or "",
            )
        if kind == "auth":
            # Tenant and principal are fixed for the connection: no switching, not even back.
            raise ProtocolError("already_authenticated", "This connection is authenticated.")
        if kind == "ping":
            self._reply({"type": "pong", "timestamp": now_iso()})
        elif kind == "execute":
            self._execute(payload)
        elif kind == "subscribe":
            await self._subscribe(parse_execution_id(payload), parse_after(payload))
        elif kind == "unsubscribe":
            execution_id = parse_execution_id(payload)
            self._stop_following(execution_id)
            self._reply({"type": "unsubscribed", "execution_id": execution_id})
        elif kind == "cancel":
            await self._cancel(parse_execution_id(payload))

    async def _authenticate(self, credential: str) -> None:
        try:
            auth = await authenticate_connection(self.origin, credential)
        except ConnectionRefused as refused:
            self._refuse(refused.message)
            return
        self.auth = auth
        for timer in self.timers:
            timer.cancel()
        expires_at = auth.principal.token_expires_at
        if expires_at is not None:
            self._later(expires_at - time.time(), "The token has expired.")
        self._reply(
            {
                "type": "auth_success",
                "tenant_id": auth.principal.tenant_slug,
                "role": auth.principal.role,
            }
        )

    def _execute(self, payload: dict[str, Any]) -> None:
        args = parse_execute(payload)
        if len(self.runs) >= MAX_RUNS or len(self.followers) >= MAX_FOLLOWERS:
            raise ProtocolError(
                "too_many_executions",
                f"At most {MAX_RUNS} runs and {MAX_FOLLOWERS} streams per connection.",
                request_id=args.request_id,
            )
        request = ExecutionRequest(
            agent_ref=args.agent_ref,
            context=args.context,
            message=args.message,
            parameters=args.parameters,
            input_mapping=args.input_mapping,
            output_mapping=args.output_mapping,
            timeout_seconds=args.timeout_seconds,
            principal=self._auth().principal.audit_actor,
            request_id=args.request_id,
        )
        run = Run()
        run.task = asyncio.create_task(self._run(request, run))
        self.runs.add(run)
        run.task.add_done_callback(lambda _: self.runs.discard(run))

    async def _run(self, request: ExecutionRequest, run: Run) -> None:
        async def listener(event: dict[str, Any]) -> None:
            if event["type"] == "execution.started":
                run.execution_id = event["execution_id"]
                if self.closing:  # the socket closed while the run was being prepared
                    asyncio.get_running_loop().call_soon(self._cancel_run, run)
                else:
                    self._follow(event["execution_id"], 0, request.request_id)

        try:
            await execution_run(
                schema_name=self._schema(), request=request, listener=listener, live=True
            )
        except DomainError as exc:  # unknown or disabled agent: nothing was started
            self._reply(error_message(exc.code, exc.message, request_id=request.request_id))
        except Exception:
            logger.exception("websocket execution failed")
            if run.execution_id is not None:  # no terminal event will come: stop waiting
                self._stop_following(run.execution_id)
            self._reply(
                error_message(
                    "internal_error",
                    "The execution failed.",
                    execution_id=run.execution_id,
                    request_id=request.request_id,
                )
            )

    async def _subscribe(self, execution_id: str, after: int) -> None:
        if execution_id not in self.followers and len(self.followers) >= MAX_FOLLOWERS:
            raise ProtocolError(
                "too_many_subscriptions",
                f"At most {MAX_FOLLOWERS} streams per connection.",
                execution_id=execution_id,
            )
        await self._execution(execution_id)
        self._reply({"type": "subscribed", "execution_id": execution_id, "after": after})
        self._follow(execution_id, after, None)

    async def _cancel(self, execution_id: str) -> None:
        execution = await self._execution(execution_id)
        schema = self._schema()
        receipt = await in_schema(
            schema,
            execution_cancel,
            schema_name=schema,
            execution=execution,
            actor=self._auth().principal.audit_actor,
        )
        self._reply(
            {"type": "cancel_requested", "execution_id": execution_id, "status": receipt["status"]}
        )

    async def _execution(self, execution_id: str) -> Any:
        """The connection's tenant's execution; another tenant's id is simply not found."""
        try:
            return await in_schema(self._schema(), execution_get, execution_id)
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message, execution_id=execution_id) from None

    # ---- followers ----

    def _follow(self, execution_id: str, after: int, request_id: str | None) -> None:
        """Start (or restart, from ``after``) following one execution's stored events."""
        self._stop_following(execution_id)
        follower = Follower()
        follower.task = asyncio.create_task(
            self._follow_loop(follower, execution_id, after, request_id)
        )
        self.followers[execution_id] = follower

        def forget(_: asyncio.Task[None]) -> None:
            if self.followers.get(execution_id) is follower:
                del self.followers[execution_id]

        follower.task.add_done_callback(forget)

    def _stop_following(self, execution_id: str) -> None:
        follower = self.followers.pop(execution_id, None)
        if follower is not None:
            follower.stop()

    async def _follow_loop(
        self, follower: Follower, execution_id: str, after: int, request_id: str | None
    ) -> None:
        try:
            async for event in follow_events(self._schema(), execution_id, after=after):
                if follower.stopped:
                    return
                if event is not None:
                    message = event_message(execution_id, event, request_id=request_id)
                    for frame in encode_event(message):
                        await self.outbox.put_event(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("websocket follower failed")
            self._reply(
                error_message(
                    "stream_failed",
                    "Following the execution failed; subscribe again with after.",
                    execution_id=execution_id,
                )
            )

    # ---- sending and closing ----

    def _reply(self, message: ServerMessage) -> None:
        if self.closing:
            return
        try:
            self.outbox.put_reply(json.dumps(message, default=str))
        except SlowConsumer:
            self.closer = asyncio.create_task(self._slow_consumer())

    async def _write_loop(self) -> None:
        try:
            while True:
                item: Outgoing = await self.outbox.get()
                if item.close_code is not None:
                    await self.close(code=item.close_code)
                    return
                if not await self.outbox.flow.wait_writable(SLOW_CONSUMER_SECONDS):
                    await self._slow_consumer()
                    return
                await self.send(text_data=item.text)
                self.outbox.sent(item)
        except Exception:
            # Nothing can be sent any more: say so rather than leave the client waiting.
            logger.exception("websocket writer failed")
            self.closing = True
            await self.close(code=CLOSE_INTERNAL_ERROR)

    def _refuse(self, error: str) -> None:
        """auth_failure, then close 4401 once it is written; nothing else is processed."""
        self._reply({"type": "auth_failure", "error": error})
        self.closing = True
        self.outbox.put_close(CLOSE_UNAUTHENTICATED)

    async def _slow_consumer(self) -> None:
        if self.slow:
            return
        logger.info("closing a websocket whose client does not read (slow consumer)")
        self.slow = self.closing = True
        for follower in self.followers.values():
            follower.stop()
        await self.close(code=CLOSE_SLOW_CONSUMER, reason="slow consumer")

    def _later(self, delay: float, refusal: str) -> None:
        """Refuse the connection after ``delay`` (no credential yet; the token expired)."""

        def refuse() -> None:
            if not self.closing:
                self._refuse(refusal)

        self.timers.append(asyncio.get_running_loop().call_later(max(delay, 0.0), refuse))

    def _auth(self) -> Authenticated:
        if self.auth is None:  # _dispatch runs only after authentication
            raise ConnectionRefused("Authenticate first: send auth{token}.")
        return self.auth

    def _schema(self) -> str:
        return self._auth().principal.schema_name


def _short(value: Any) -> str | None:
    """An id echoed back in an error: only if it is a short string."""
    return value if isinstance(value, str) and len(value) <= 200 else None
