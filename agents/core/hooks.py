"""What else must happen when a run ends, in the same transaction that stores its end.

A part of the platform that starts runs on behalf of something else (the workflow bridge: a
resource waiting for its state agent's result) names a hook in the run's request
(``RunRequest.notify``, stored with the execution, never settable by a caller). Whoever ends
the run (its finish, a cancel, the sweeper) calls :func:`run_ended` inside the transaction that
writes the terminal state: the hook's own writes (typically a job that applies the result)
stand or fall with that end, so a result is never lost between the two and never applied twice.

A failing hook must not cost the run its end: it runs in a savepoint, and its failure is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

from agents.models import Execution

logger = logging.getLogger(__name__)

RunEnded = Callable[[Execution], None]

_hooks: dict[str, RunEnded] = {}


def register_run_ended(name: str, hook: RunEnded) -> None:
    """Register ``hook`` under ``name`` (an app's ``ready()`` does it, in every process)."""
    _hooks[name] = hook


def run_ended(execution: Execution) -> None:
    """Call the hook the execution names, if any (inside the caller's transaction)."""
    name = (execution.options or {}).get("notify")
    if not name:
        return
    hook = _hooks.get(str(name))
    if hook is None:
        logger.error("execution %s names an unknown end hook %r", execution.pk, name)
        return
    try:
        with transaction.atomic():
            hook(execution)
    except Exception:
        logger.exception("end hook %r failed for execution %s", name, execution.pk)
