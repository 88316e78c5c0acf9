"""Circuit breakers per tenant and provider credential.

A provider account that keeps failing is skipped for a cool-down instead of being hammered by
every execution; runs with fallbacks go straight to them. Breakers are keyed by
:attr:`ProviderConfig.breaker_key <agents.providers.base.ProviderConfig.breaker_key>`, which the
platform sets to ``f"{schema_name}:{credential_id}"``, so one tenant's failing key (revoked,
out of quota, pointed at a broken proxy) never opens the breaker of another tenant on the same
provider. Configs without a key fall back to (kind, base URL).

**When a breaker opens.** Calls are judged on a failure *rate* over a sliding window (the last
``window_calls`` calls that ended within ``window_seconds``), never on N failures in a row, and
only once the window holds ``minimum_calls``. The rate compared with
``failure_rate_threshold`` is the lower bound of its Wilson score interval (``confidence_z``
standard deviations): with few calls the breaker wants overwhelming evidence, with many the
bound approaches the observed rate. This matters (simulated, 400 calls each): with a 20-call
window, 10 calls minimum and the plain observed rate, a provider failing 30 % of calls, which
six attempts still get 99.9 % of runs through, trips the breaker 95 % of the time by chance
alone (22 % at a 20 % failure rate). With the defaults below that is 0.1 % (1.6 % at 40 %),
while a provider that is down still trips after 10 calls, and one failing 70 % of calls after
about 20.

**What counts.** Failures that say the provider is unhealthy (:data:`TRIPPING_KINDS`) and
complete replies. A 429 is the caller's quota, not an outage, and authentication, invalid
requests and invalid output are one agent's configuration or one reply: none of them is
recorded (a half-open probe ending so just frees its slot), and neither is a cancelled call.

**States.** *Closed*: calls go through. *Open*: :meth:`CircuitBreaker.allow` refuses for
``cooldown_seconds``. *Half-open*: up to ``half_open_probes`` calls go through; one failing
probe re-opens the breaker for a new cool-down; when that many probes have succeeded it
closes with an empty window.

State is per process (each worker learns on its own), which is enough to shed load. Outcomes
are attributed to the state at the time they are recorded.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from agents.providers.base import ErrorKind, ProviderConfig

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]

# Kinds that say the provider is unhealthy. Rate limits are the caller's quota; authentication
# and invalid requests are configuration problems of one agent; invalid output is the model's
# fault: none of them should take the provider away from other agents.
TRIPPING_KINDS: frozenset[str] = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.NETWORK_ERROR,
        ErrorKind.SERVER_ERROR,
        ErrorKind.MALFORMED_RESPONSE,
    }
)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When breakers open and close (see the module docstring for the reasoning)."""

    window_seconds: float = 60.0
    window_calls: int = 100
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5
    # z-score of the Wilson lower bound (1.96: 95 % two-sided). 0 compares the observed rate
    # itself, as resilience4j does.
    confidence_z: float = 1.96
    cooldown_seconds: float = 30.0
    half_open_probes: int = 3

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or self.cooldown_seconds < 0:
            raise ValueError("window_seconds must be positive and cooldown_seconds not negative")
        if not 1 <= self.minimum_calls <= self.window_calls:
            raise ValueError("minimum_calls must be between 1 and window_calls")
        if not 0 < self.failure_rate_threshold <= 1:
            raise ValueError("failure_rate_threshold must be in (0, 1]")
        if self.confidence_z < 0 or self.half_open_probes < 1:
            raise ValueError("confidence_z must be >= 0 and half_open_probes >= 1")


def failure_rate_lower_bound(failures: int, calls: int, z: float) -> float:
    """Lower bound of the Wilson score interval of ``failures / calls`` (0 for no calls)."""
    if calls <= 0:
        return 0.0
    rate = failures / calls
    if z == 0:
        return rate
    z2 = z * z
    centre = rate + z2 / (2 * calls)
    spread = z * math.sqrt(rate * (1 - rate) / calls + z2 / (4 * calls * calls))
    return max(0.0, (centre - spread) / (1 + z2 / calls))


class CircuitBreaker:
    """One breaker. Never awaited, so a plain lock keeps it safe across threads."""

    def __init__(self, policy: BreakerPolicy | None = None, *, clock: Clock = time.monotonic):
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._lock = threading.Lock()
        # (time the call ended, whether it failed), oldest first.
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._opened_at: float | None = None
        self._probes_in_flight = 0
        self._probes_succeeded = 0

    @property
    def state(self) -> BreakerState:
        """Current state, taking the cool-down into account."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.policy.cooldown_seconds:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? Half-open lets ``half_open_probes`` probes through."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return True
            if state == "open":
                return False
            if self._probes_in_flight + self._probes_succeeded >= self.policy.half_open_probes:
                return False
            self._probes_in_flight += 1
            return True

    def record_success(self) -> None:
        """A call returned a complete reply."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                self._add_locked(failed=False)
            elif state == "half_open":
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
                self._probes_succeeded += 1
                if self._probes_succeeded >= self.policy.half_open_probes:
                    self._close_locked()

    def record_failure(self, kind: str) -> None:
        """A call failed with ``kind``; only unhealthy-provider kinds count (see module doc)."""
        if kind not in TRIPPING_KINDS:
            self.release()
            return
        with self._lock:
            state = self._state_locked()
            if state == "half_open":
                self._open_locked()
            elif state == "closed":
                self._add_locked(failed=True)
                policy = self.policy
                calls = len(self._outcomes)
                if calls >= policy.minimum_calls and (
                    failure_rate_lower_bound(self._failures, calls, policy.confidence_z)
                    >= policy.failure_rate_threshold
                ):
                    self._open_locked()

    def release(self) -> None:
        """The call ended without a verdict (cancelled, or a non-counting error): free its
        half-open probe slot."""
        with self._lock:
            if self._state_locked() == "half_open":
                self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def retry_in(self) -> float:
        """Seconds until an open breaker becomes half-open (0 when not open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.policy.cooldown_seconds - (self._clock() - self._opened_at))

    def _add_locked(self, *, failed: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, failed))
        self._failures += failed
        horizon = now - self.policy.window_seconds
        while self._outcomes and (
            len(self._outcomes) > self.policy.window_calls or self._outcomes[0][0] < horizon
        ):
            self._failures -= self._outcomes.popleft()[1]

    def _open_locked(self) -> None:
        self._opened_at = self._clock()
        self._probes_in_flight = 0
        self._probes_succeeded = 0
        self._outcomes.clear()
        self._failures = 0

    def _close_locked(self) -> None:
        self._opened_at = None
        self._probes_in_flight = 0
        self._probes_succeeded = 0
        self._outcomes.clear()
        self._failures = 0


BreakerKey = tuple[str, str]


class BreakerRegistry:
    """Breakers keyed per credential (``ProviderConfig.breaker_key``), created on first use.

    ``policy`` applies to every breaker of the registry. At most ``max_breakers`` are kept; the
    least recently used is forgotten first (a key nobody has called for a while has nothing
    worth remembering).
    """

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock = time.monotonic,
        max_breakers: int = 10_000,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self.max_breakers = max_breakers
        self._lock = threading.Lock()
        self._breakers: OrderedDict[BreakerKey, CircuitBreaker] = OrderedDict()

    @staticmethod
    def key(config: ProviderConfig) -> BreakerKey:
        """The breaker key of a provider account: its ``breaker_key``, else kind and base URL."""
        if config.breaker_key:
            return ("key", config.breaker_key)
        return (config.kind, config.base_url.rstrip("/").lower())

    def get(self, config: ProviderConfig) -> CircuitBreaker:
        """The breaker for ``config``'s provider account."""
        key = self.key(config)
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = self._breakers[key] = CircuitBreaker(self.policy, clock=self.clock)
                while len(self._breakers) > self.max_breakers:
                    self._breakers.popitem(last=False)
            else:
                self._breakers.move_to_end(key)
            return breaker

    def states(self) -> list[tuple[str, BreakerState]]:
        """Every breaker's name (its credential's breaker key, else kind and base URL) and
        current state, for metrics."""
        with self._lock:
            items = list(self._breakers.items())
        return [
            (key[1] if key[0] == "key" else f"{key[0]} {key[1]}", breaker.state)
            for key, breaker in items
        ]

    def reset(self) -> None:
        """Forget every breaker (tests, or an operator clearing state)."""
        with self._lock:
            self._breakers.clear()


default_breakers = BreakerRegistry()
