"""The background worker process (``python manage.py worker``): background executions and the
periodic sweeper.

One process runs two procrastinate workers on one event loop:
- ``executions`` with ``WORKER_CONCURRENCY`` slots for agent runs;
- ``maintenance`` with one slot for the sweeper and the cleanup, so that recovery never waits
  behind a full house of long runs.

The process also starts its :class:`~agents.core.hub.EventHub` before taking jobs, so a
cancel request (NOTIFY ``execution_cancel``) from any web process reaches the runs here.

SIGTERM/SIGINT: stop taking jobs and let running ones finish (``WORKER_SHUTDOWN_TIMEOUT_SECONDS``,
0 = no limit). Past the limit, or on the same signal twice, the worker deregisters and exits at once;
its unfinished jobs have no worker then, so the next sweep anywhere restarts them.

Database outages (a restart, a failover, a pooler cut) do not stop the process: it exits only
on a signal. procrastinate 3.x stops a worker as soon as its job fetch, heartbeat, LISTEN
connection or periodic deferrer meets a connection error; :class:`ResilientWorker` makes each
of them retry with a capped, jittered backoff (``WORKER_RECONNECT_MAX_SECONDS``) and carry on
with the same worker id, its running jobs untouched. A job that ends while the database is away
keeps retrying to record its end. The outage is logged once when it starts and once when it
ends. Should a worker stop anyway (an error nobody foresaw), ``serve`` starts a new one after
the old one's running jobs have finished.

Modules: ``resilience`` (procrastinate's worker and connector taught to ride out database
outages), ``process`` (one process: its two workers, its event hub, signals, supervision).
"""
