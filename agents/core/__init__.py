"""The execution core: the one way a run is started, run, streamed, cancelled and recovered.

Every interface (REST, SSE, WebSocket, the admin, the job queue, and later MCP, workflows and
the OpenAI-compatible API) is a thin transport over this package: it parses its wire format
into a :class:`RunRequest` (:func:`parse_run_request`), asks ``tenants.access`` who the caller
is, calls :func:`start_run`, and frames the stored events of the :class:`RunHandle` it gets.

One module per responsibility, public names only, no cycle:

- ``requests``: the transport-neutral request and its validation;
- ``idempotency``: what an ``Idempotency-Key`` already produced;
- ``admission``: the database checks and the stored execution (queued with its job, or
  ``running`` and claimed at once);
- ``claim``: claiming stored runs (the pinned agent version, tenant caps);
- ``run``: running a claimed execution (the only caller of the engine);
- ``event_log`` / ``follow`` / ``hub``: writing, reading and waking on the stored event log;
- ``finish``: the terminal status and terminal event in one transaction, exactly once;
- ``cancel``: cancelling anywhere; ``recovery``: runs whose worker was lost;
- ``queue``: the job queue (fairness, queue position); ``outage``: riding out a database blip;
- ``handle`` / ``start``: the entry point and what it returns;
- ``conversation``: runs of a message list (the OpenAI-compatible endpoint): an agent's, or
  a model's through the tenant's credentials (gateway calls, with the caller's own tools).
"""

from agents.core.cancel import cancel_execution
from agents.core.conversation import Conversation, ModelNotFound, start_conversation
from agents.core.follow import StoredEvent, follow_events, read_events
from agents.core.handle import RunHandle
from agents.core.idempotency import REPLAYED_HEADER
from agents.core.outage import DatabaseUnavailable
from agents.core.queue import queue_position
from agents.core.requests import RunMode, RunRequest, parse_run_request
from agents.core.start import queue_run, run_request, start_run

__all__ = [
    "REPLAYED_HEADER",
    "Conversation",
    "DatabaseUnavailable",
    "ModelNotFound",
    "RunHandle",
    "RunMode",
    "RunRequest",
    "StoredEvent",
    "cancel_execution",
    "follow_events",
    "parse_run_request",
    "queue_position",
    "queue_run",
    "read_events",
    "run_request",
    "start_conversation",
    "start_run",
]
