"""The agents WebSocket (``/agents/ws``): run executions and follow their stored event logs.

Wire format: ``agents.ws_protocol``. Lifecycle of a connection:

- The handshake passed ``TenantHostMiddleware`` (known host). The connection authenticates
  with the handshake's credential (``Authorization: Bearer`` or ``?token=``) or with a first
  ``auth{token}`` message; anything else first → ``auth_failure`` and close 4401. Tenant and
  principal are then fixed for the connection: a later ``auth`` is refused. A connection that
  authenticated with a token is closed (4401) when the token expires.
- A thin transport: ``execute`` hands the canonical body to ``agents.core.start_run`` (same
  validation, refusals and ``Idempotency-Key`` semantics as REST and SSE; ``idempotency_key``
  in the message) and follows the run's stored event log like ``subscribe`` does;
  ``subscribe{after}`` replays the stored events after that ``seq``, then follows live until the
  terminal event; ``unsubscribe`` stops following (the run goes on). Permissions are checked,
  and denials audited, by ``tenants.access``.
- Closing the socket stops its followers **and cancels the runs this connection started**
  (stored as ``cancelled``) unless the run asked for ``execution_config.on_disconnect:
  "continue"``.
- A revoked or expired API key, or a suspended tenant, closes the connections it opened
  (4401) within ``WS_CREDENTIAL_CHECK_SECONDS``; a token's connection closes when it expires.
- Every ORM call runs through ``tenants.context.in_schema(schema, …)`` with the connection's
  schema: never on the ambient schema of the shared database thread.
- Slow readers: messages go through a bounded outbox to one writer, which waits while daphne's
  send buffer is over its high-water mark (under granian: while ``send`` waits for the socket);
  a client that stays that slow for ``SLOW_CONSUMER_SECONDS`` is disconnected with 4008, so
  memory per connection stays bounded. uvicorn's WebSocket implementations give neither signal
  (``send`` returns while the frames pile up in the transport), one reason it is not the
  production server.
- Workflow events: ``subscribe_resource`` / ``subscribe_workflow`` follow a resource's or a
  workflow's stored event log (``workflow_bridge.events``) from ``after``, like ``subscribe``
  follows an execution's; they count towards the same ``MAX_FOLLOWERS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents.core import DatabaseUnavailable, cancel_execution, follow_events, start_run
from agents.core.streams import StreamLease, open_stream
from agents.engine.events import now_iso
from agents.selectors import execution_get
from agents.ws_protocol import (
    ExecuteArgs,
    ProtocolError,
    ServerMessage,
    StreamKind,
    encode_event,
    encode_workflow_event,
    error_message,
    event_message,
    parse_after,
    parse_execute,
    parse_execution_id,
    parse_request,
    parse_resource_id,
    parse_workflow_id,
    short_id,
    workflow_event_message,
)
from agents.ws_transport import (
    Follower,
    Outbox,
    Outgoing,
    Periodic,
    Run,
    SlowConsumer,
    flow_control_for,
)
from config.database import database_unavailable
from config.errors import DomainError
from tenants.access import AccessRefused, admit_frame, authorize_async
from tenants.authentication import Authenticated
from tenants.channels import (
    ORIGIN_SCOPE_KEY,
    ConnectionOrigin,
    ConnectionRefused,
    authenticate_connection,
    handshake_credential,
)
from tenants.context import in_schema
from tenants.credential_watch import CredentialWatch, watch_credential
from tenants.roles import Permission
from workflow_bridge.events import WorkflowEvent, follow_resource_events, follow_workflow_events
from workflow_bridge.selectors import resource_get, workflow_get

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_SLOW_CONSUMER = 4008
CLOSE_INTERNAL_ERROR = 1011
# A limit of the plan (open streams) refuses the connection (4000 + HTTP 429; servers may send
# only 1000 and 3000-4999).
CLOSE_TRY_AGAIN_LATER = 4429
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
    "subscribe_resource": Permission.WORKFLOWS_READ,
    "subscribe_workflow": Permission.WORKFLOWS_READ,
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
        self.timers: list[asyncio.TimerHandle | Periodic] = []
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None
        self.watch: CredentialWatch | None = None
        self.lease: StreamLease | None = None
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
        if self.watch is not None:
            self.watch.close()
        if self.lease is not None:
            await self.lease.close()
        for timer in self.timers:
            timer.cancel()
        pending: list[asyncio.Future[Any]] = []
        for follower in list(self.followers.values()):
            follower.stop()
            # Set before the follower is registered (_follow); Follower types it optional.
            pending.append(cast(asyncio.Task[None], follower.task))
        if self.writer is not None:
            self.writer.cancel()
            pending.append(self.writer)
        for run in self.runs:
            waitable = run.stop_on_disconnect()
            if waitable is not None:
                pending.append(waitable)
        # A cancelled run stops upstream and stores itself as cancelled: give it time to.
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)

    # ---- requests ----

    async def _dispatch(self, kind: str, payload: dict[str, Any]) -> None:
        principal = self._auth().principal
        if kind != "ping":  # keep-alives are not requests
            try:
                await admit_frame(principal)
            except AccessRefused as refused:
                self._reply(
                    error_message(
                        refused.code,
                        refused.message,
                        execution_id=short_id(payload.get("execution_id")),
                        request_id=short_id(payload.get("request_id")),
                        retry_after=refused.headers.get("Retry-After"),
                    )
                )
                return
        required = REQUIRED.get(kind)
        if required is not None:
            try:
                await authorize_async(principal, required, ws=kind, path=self.origin.path)
            except DomainError as refused:
                raise ProtocolError(
                    refused.code,
                    refused.message,
                    execution_id=short_id(payload.get("execution_id")),
                    request_id=short_id(payload.get("request_id")) or "",
                    resource_id=short_id(payload.get("resource_id")),
                    workflow_id=short_id(payload.get("workflow_id")),
                ) from None
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
        elif kind == "subscribe_resource":
            await self._subscribe_resource(parse_resource_id(payload), parse_after(payload))
        elif kind == "subscribe_workflow":
            await self._subscribe_workflow(parse_workflow_id(payload), parse_after(payload))
        elif kind == "unsubscribe_resource":
            resource_id = parse_resource_id(payload)
            self._stop_following(f"resource:{resource_id}")
            self._reply({"type": "unsubscribed", "stream": "resource", "resource_id": resource_id})
        elif kind == "unsubscribe_workflow":
            workflow_id = parse_workflow_id(payload)
            if f"workflow:{workflow_id}" not in self.followers:  # named by its slug
                workflow_id = (await self._workflow(workflow_id)).pk
            self._stop_following(f"workflow:{workflow_id}")
            self._reply({"type": "unsubscribed", "stream": "workflow", "workflow_id": workflow_id})

    async def _authenticate(self, credential: str) -> None:
        try:
            auth = await authenticate_connection(self.origin, credential)
        except ConnectionRefused as refused:
            self._refuse(refused.message)
            return
        try:
            # The connection is one stream of the plan's open-stream cap, from here to its end.
            self.lease = await open_stream(auth.principal)
        except DomainError as exc:
            self._reply(
                error_message(exc.code, exc.message, retry_after=exc.headers.get("Retry-After"))
            )
            self.closing = True
            self.outbox.put_close(CLOSE_TRY_AGAIN_LATER)
            return
        self.auth = auth
        for timer in self.timers:
            timer.cancel()
        self.timers = [Periodic(settings.WS_HEARTBEAT_SECONDS, self._beat)]
        self.watch = watch_credential(auth.principal, self._credential_lapsed)
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
        self.runs = {run for run in self.runs if run.active}
        if len(self.runs) >= MAX_RUNS or len(self.followers) >= MAX_FOLLOWERS:
            raise ProtocolError(
                "too_many_executions",
                f"At most {MAX_RUNS} runs and {MAX_FOLLOWERS} streams per connection.",
                request_id=args.request_id,
            )
        run = Run()
        run.task = asyncio.create_task(self._start(args, run))
        self.runs.add(run)

    async def _start(self, args: ExecuteArgs, run: Run) -> None:
        try:
            handle = await start_run(
                principal=self._auth().principal,
                agent_ref=args.agent_ref,
                body=args.body,
                mode="streamed",
                request_id=args.request_id,
                idempotency_key=args.idempotency_key,
            )
        except DomainError as exc:  # refused (unknown agent, bad body, ...): nothing started
            self._reply(
                error_message(
                    exc.code,
                    exc.message,
                    request_id=args.request_id,
                    retry_after=exc.headers.get("Retry-After"),
                )
            )
            return
        except Exception as exc:
            if database_unavailable(exc):
                failure = error_message(
                    "database_unavailable",
                    "The service is briefly unavailable; nothing was started. Try again.",
                    request_id=args.request_id,
                )
                failure["retryable"] = True
            else:
                logger.exception("websocket execute failed")
                failure = error_message(
                    "internal_error", "The execution could not start.", request_id=args.request_id
                )
            self._reply(failure)
            return
        run.handle = handle
        if self.closing:  # the socket closed while the run was being admitted
            run.stop_on_disconnect()
            return
        self._follow(handle.execution_id, 0, args.request_id)

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
            cancel_execution,
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

    # ---- workflow event subscriptions ----

    def _room_for(self, key: str, **ids: str) -> None:
        if key not in self.followers and len(self.followers) >= MAX_FOLLOWERS:
            raise ProtocolError(
                "too_many_subscriptions", f"At most {MAX_FOLLOWERS} streams per connection.", **ids
            )

    async def _subscribe_resource(self, resource_id: str, after: int) -> None:
        self._room_for(f"resource:{resource_id}", resource_id=resource_id)
        try:
            resource = await in_schema(self._schema(), resource_get, resource_id)
        except DomainError as exc:  # another tenant's resource is simply not found
            raise ProtocolError(exc.code, exc.message, resource_id=resource_id) from None
        self._reply(
            {"type": "subscribed", "stream": "resource", "resource_id": resource.pk, "after": after}
        )
        events = follow_resource_events(self._schema(), resource.pk, after=after)
        self._follow_stream(f"resource:{resource.pk}", "resource", events, resource.pk)

    async def _subscribe_workflow(self, workflow_ref: str, after: int) -> None:
        workflow = await self._workflow(workflow_ref)
        self._room_for(f"workflow:{workflow.pk}", workflow_id=workflow.pk)
        self._reply(
            {"type": "subscribed", "stream": "workflow", "workflow_id": workflow.pk, "after": after}
        )
        events = follow_workflow_events(self._schema(), workflow.pk, after=after)
        self._follow_stream(f"workflow:{workflow.pk}", "workflow", events, workflow.pk)

    async def _workflow(self, workflow_ref: str) -> Any:
        """The connection's tenant's workflow (id or slug); another tenant's is not found."""
        try:
            return await in_schema(self._schema(), workflow_get, workflow_ref)
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message, workflow_id=workflow_ref) from None

    def _follow_stream(
        self,
        key: str,
        stream: StreamKind,
        events: AsyncIterator[WorkflowEvent | None],
        log_id: str,
    ) -> None:
        """Start (or restart) following a resource's or workflow's events under ``key``."""
        self._stop_following(key)
        follower = Follower()
        follower.task = asyncio.create_task(self._stream_loop(follower, stream, events, log_id))
        self.followers[key] = follower

        def forget(_: asyncio.Task[None]) -> None:
            if self.followers.get(key) is follower:
                del self.followers[key]

        follower.task.add_done_callback(forget)

    async def _stream_loop(
        self,
        follower: Follower,
        stream: StreamKind,
        events: AsyncIterator[WorkflowEvent | None],
        log_id: str,
    ) -> None:
        ids = {"resource_id": log_id} if stream == "resource" else {"workflow_id": log_id}
        try:
            async for event in events:
                if follower.stopped:
                    return
                if event is not None:
                    frame = encode_workflow_event(workflow_event_message(stream, event))
                    await self.outbox.put_event(frame)
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailable:
            interrupted = error_message(
                "stream_interrupted",
                f"Following the {stream} was interrupted (database unavailable); "
                "subscribe again with after.",
                **ids,
            )
            interrupted["retryable"] = True
            self._reply(interrupted)
        except Exception:
            logger.exception("websocket %s follower failed", stream)
            self._reply(
                error_message(
                    "stream_failed",
                    f"Following the {stream} failed; subscribe again with after.",
                    **ids,
                )
            )

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
        except DatabaseUnavailable:
            interrupted = error_message(
                "stream_interrupted",
                "Following the execution was interrupted (database unavailable); "
                "subscribe again with after.",
                execution_id=execution_id,
            )
            interrupted["retryable"] = True
            self._reply(interrupted)
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
                try:
                    # granian (no push producer to attach) makes ``send`` itself wait while
                    # the socket's buffer is full.
                    async with asyncio.timeout(SLOW_CONSUMER_SECONDS):
                        await self.send(text_data=item.text)
                except TimeoutError:
                    await self._slow_consumer()
                    return
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
        # Where ``send`` waits for the socket, the close frame may wait behind the unread data:
        # the followers are stopped, so nothing more is queued for this client either way.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SLOW_CONSUMER_SECONDS):
                await self.close(code=CLOSE_SLOW_CONSUMER, reason="slow consumer")

    def _beat(self) -> None:
        # ASGI gives the application no ping frames, and granian sends none of its own.
        if not self.closing:
            self._reply({"type": "heartbeat", "timestamp": now_iso()})

    def _credential_lapsed(self, reason: str) -> None:
        """The key behind this connection was revoked or expired, or its tenant suspended."""
        if not self.closing:
            self._refuse(reason)

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
