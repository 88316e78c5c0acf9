"""Live execution events across processes, with PostgreSQL alone.

Every execution's events are rows (``ExecutionEvent``) numbered from 1. Writers insert a batch
and ``NOTIFY execution_events '<schema>:<execution_id>:<seq>'`` in the same transaction; each
process runs one :class:`~agents.streaming.hub.EventHub` that LISTENs and wakes its local
followers, who then read the new rows by sequence number. Resume after a disconnect is the same
read from a cursor (``after``). Cancellation travels the same way on ``execution_cancel``.
"""
