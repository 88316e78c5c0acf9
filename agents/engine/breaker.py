"""Per-provider circuit breakers.

A provider account (kind + base URL) that keeps failing is skipped for a cool-down instead of
being hammered by every execution: after ``failure_threshold`` consecutive failures the breaker
opens and calls fail fast with ``ErrorKind.CIRCUIT_OPEN``; after ``cooldown_seconds`` it is
half-open and lets exactly one probe through; the probe's success closes it, its failure opens
it again. State is per process (each worker learns on its own), which is enough to shed load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from agents.providers.base import ErrorKind, ProviderConfig

BreakerState = Literal["closed", "open", "half_open"]

# Kinds that say the provider is unhealthy. Authentication and invalid requests are
# configuration problems of one agent and invalid output is the model's fault: none of them
# should take the provider away from other agents.
TRIPPING_KINDS: frozenset[str] = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.RATE_LIMIT,
        ErrorKind.NETWORK_ERROR,
        ErrorKind.SERVER_ERROR,
        ErrorKind.MALFORMED_RESPONSE,
    }
)


class CircuitBreaker:
    """One breaker. Not awaited anywhere, so a plain lock keeps it safe across threads."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """Current state, taking the cool-down into account."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe at a time may."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return True
            if state == "open" or self._probe_in_flight:
                return False
            self._probe_in_flight = True
            return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probe_in_flight = False

    def record_failure(self, kind: str) -> None:
        """A call failed with ``kind``; only unhealthy-provider kinds count."""
        with self._lock:
            self._probe_in_flight = False
            if kind not in TRIPPING_KINDS:
                return
            if self._opened_at is not None:
                # A failed half-open probe starts a fresh cool-down.
                self._opened_at = self._clock()
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._opened_at = self._clock()

    def release(self) -> None:
        """The call ended without a verdict (cancelled): free the half-open probe slot."""
        with self._lock:
            self._probe_in_flight = False

    def retry_in(self) -> float:
        """Seconds until an open breaker becomes half-open (0 when not open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))


class BreakerRegistry:
    """Breakers keyed by provider kind and base URL, created on first use."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    @staticmethod
    def key(config: ProviderConfig) -> tuple[str, str]:
        """The breaker key of a provider account."""
        return (config.kind, config.base_url.rstrip("/").lower())

    def get(self, config: ProviderConfig) -> CircuitBreaker:
        """The breaker for ``config``'s provider account."""
        key = self.key(config)
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(
                    failure_threshold=self.failure_threshold,
                    cooldown_seconds=self.cooldown_seconds,
                    clock=self.clock,
                )
                self._breakers[key] = breaker
            return breaker

    def reset(self) -> None:
        """Forget every breaker (tests, or an operator clearing state)."""
        with self._lock:
            self._breakers.clear()


default_breakers = BreakerRegistry()
