"""Retry policy: which failures are retried and how long to wait between attempts."""

from __future__ import annotations

import random
from collections.abc import Callable

from agents.engine.errors import INVALID_OUTPUT
from agents.engine.types import RetryConfig

# Failures of the model's reply (not of the provider) are always worth another try.
ALWAYS_RETRIED: frozenset[str] = frozenset({INVALID_OUTPUT})


def is_retryable(error_kind: str, retry: RetryConfig) -> bool:
    """True when ``error_kind`` may be retried on the same target under ``retry``."""
    return error_kind in ALWAYS_RETRIED or error_kind in retry.retry_on_errors


def backoff_delay(
    failed_attempt: int,
    retry: RetryConfig,
    *,
    retry_after: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait after the ``failed_attempt``-th failure (1-based) before the next try.

    Exponential backoff with full jitter: a uniform draw in ``[0, min(cap, base * 2**(n-1))]``
    (jitter keeps many clients from retrying in lockstep after a shared outage). A provider's
    ``Retry-After`` wins when it is larger. Returns ``None`` when ``Retry-After`` exceeds
    ``max_backoff_seconds``: waiting that long is worse than moving on to a fallback target.
    """
    if failed_attempt < 1:
        raise ValueError("failed_attempt is 1-based")
    cap = max(0.0, retry.max_backoff_seconds)
    if retry_after is not None and retry_after > cap:
        return None
    # Clamp the exponent so a large max_attempts can not overflow the float.
    ceiling = min(cap, max(0.0, retry.backoff_seconds) * 2 ** min(failed_attempt - 1, 32))
    delay = uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
