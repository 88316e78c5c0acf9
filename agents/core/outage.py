"""Riding out a database that went away for a moment (restart, failover, PgBouncer blip).

A run whose provider call completed must still be stored once the database is back, and its
events must not be lost in between: writers of the event log and of the terminal state retry
with backoff instead of failing the run. Readers (streams) retry for a short while, then end
with a retryable error so that the client resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from config.database import database_unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database stayed unreachable past the caller's patience."""


async def retry_while_down(
    call: Callable[[], Awaitable[T]],
    *,
    patience: float,
    what: str,
    first_delay: float = 0.1,
    max_delay: float = 2.0,
) -> T:
    """Await ``call()`` until it does not fail with a database outage, for up to ``patience``
    seconds (then :class:`DatabaseUnavailable`). Other errors propagate at once. The outage is
    logged once, and again when it is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = first_delay
    failures = 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            failures += 1
            if failures == 1:
                logger.warning("database unavailable while %s (%s); retrying", what, exc)
            if loop.time() + delay > deadline:
                raise DatabaseUnavailable(f"database unavailable while {what}") from exc
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, max_delay)
            continue
        if failures:
            logger.warning("database back after %d failed attempt(s) while %s", failures, what)
        return result
