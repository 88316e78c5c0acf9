"""Token buckets shared by every server process: PostgreSQL by default, Redis when configured.

A bucket holds up to ``limit`` tokens and refills at ``limit / window`` per second; a request
(or an execution) takes one. Both back-ends do refill-and-take atomically on the server (a
row-locked PL/pgSQL function, ``public.cba_take_tokens``; a Lua script on Redis), with the
server's clock, so any number of processes on any number of machines share one budget.
Several buckets (the tenant's and the key's) are taken in one round trip.

Redis unreachable: the PostgreSQL back-end answers instead (logged), so a Redis outage
neither opens the limits nor takes the API down.

No library does this for us: ``limits`` (the usual choice) has fixed and sliding windows over
Redis but neither token buckets nor a PostgreSQL store, and the script is a dozen lines.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from tenants.context import unscoped_cursor

logger = logging.getLogger(__name__)

REDIS_PREFIX = "cba:rl:"

# KEYS: the buckets; ARGV: (limit, per_second, cost) per key. Returns per key
# {allowed (0/1), remaining, retry_after} as strings (Lua numbers lose precision in replies).
_TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[i * 3 - 2])
  local rate = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  local b = redis.call('HMGET', key, 't', 'u')
  local tokens = tonumber(b[1]) or cap
  local updated = tonumber(b[2]) or now
  tokens = math.min(cap, tokens + math.max(now - updated, 0) * rate)
  local allowed = 0
  local retry = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    retry = (cost - tokens) / rate
  end
  redis.call('HSET', key, 't', tostring(tokens), 'u', tostring(now))
  redis.call('EXPIRE', key, math.ceil(cap / rate) + 1)
  out[i] = {allowed, tostring(tokens), tostring(retry)}
end
return out
"""


@dataclass(frozen=True)
class Bucket:
    """One limit: ``limit`` per ``window`` seconds. ``code`` is the error code when it is hit."""

    key: str
    limit: int
    window: float
    code: str
    cost: float = 1.0

    @property
    def per_second(self) -> float:
        return self.limit / self.window


@dataclass(frozen=True)
class Decision:
    bucket: Bucket
    allowed: bool
    remaining: float
    retry_after: float

    @property
    def reset_seconds(self) -> int:
        """Seconds until the bucket is full again (RateLimit-Reset)."""
        missing = self.bucket.limit - self.remaining
        return max(math.ceil(missing / self.bucket.per_second), 0)


def _take_postgres(buckets: Sequence[Bucket]) -> list[Decision]:
    sql = " UNION ALL ".join(
        ["SELECT %s AS i, * FROM public.cba_take_tokens(%s, %s, %s, %s)"] * len(buckets)
    )
    params: list[Any] = []
    for i, b in enumerate(buckets):
        params += [i, b.key, float(b.limit), b.per_second, b.cost]
    # Schema-qualified (the function and its table live in public): no search path to set.
    with unscoped_cursor() as cursor:
        cursor.execute(sql, params)
        rows = sorted(cursor.fetchall())
    return [
        Decision(b, bool(allowed), float(remaining), float(retry))
        for b, (_, allowed, remaining, retry) in zip(buckets, rows, strict=True)
    ]


class _Redis:
    """The Redis client and registered script, made once per process."""

    _lock = threading.Lock()
    _script: Any = None

    @classmethod
    def script(cls) -> Any:
        with cls._lock:
            if cls._script is None:
                import redis

                client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5
                )
                cls._script = client.register_script(_TAKE_SCRIPT)
            return cls._script


def _take_redis(buckets: Sequence[Bucket]) -> list[Decision]:
    args: list[Any] = []
    for b in buckets:
        args += [b.limit, repr(b.per_second), repr(b.cost)]
    replies = _Redis.script()(keys=[REDIS_PREFIX + b.key for b in buckets], args=args)
    return [
        Decision(b, int(allowed) == 1, float(remaining), float(retry))
        for b, (allowed, remaining, retry) in zip(buckets, replies, strict=True)
    ]


def take(buckets: Sequence[Bucket]) -> list[Decision]:
    """Take one token (``cost``) from each bucket; sync, one round trip."""
    if not buckets:
        return []
    if settings.RATE_LIMIT_BACKEND == "redis":
        import redis

        try:
            return _take_redis(buckets)
        except redis.RedisError as exc:
            logger.warning("rate limits: Redis unavailable (%s); using PostgreSQL", exc)
    return _take_postgres(buckets)


def refused(decisions: Sequence[Decision]) -> Decision | None:
    """The decision that refuses (the one to wait longest for), or None."""
    denied = [d for d in decisions if not d.allowed]
    return max(denied, key=lambda d: d.retry_after) if denied else None


def headers(decisions: Sequence[Decision]) -> dict[str, str]:
    """IETF draft RateLimit-* headers for the tightest of ``decisions`` (and Retry-After
    when one refuses)."""
    if not decisions:
        return {}
    worst = refused(decisions) or min(decisions, key=lambda d: d.remaining / d.bucket.limit)
    out = {
        "RateLimit-Limit": str(worst.bucket.limit),
        "RateLimit-Remaining": str(max(math.floor(worst.remaining), 0)),
        "RateLimit-Reset": str(worst.reset_seconds),
        "RateLimit-Policy": f"{worst.bucket.limit};w={int(worst.bucket.window)}",
    }
    if not worst.allowed:
        out["Retry-After"] = str(max(math.ceil(worst.retry_after), 1))
    return out
