"""Benchmark constants, targets of the protocol and the run plans (full / quick)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
PY = sys.executable
HOST = "127.0.0.1"  # every socket of the benchmark is on loopback

# Targets of the protocol (2 cores).
TARGETS = {
    "m1_p50_ms": 3.0,
    "m1_p99_at_200_ms": 20.0,
    "m2_ttft_p50_ms": 5.0,
    "m2_gap_p99_ms": 2.0,
    "m3_per_s": 500.0,
    "stub_ratio": 10.0,
}
M3_P99_LIMIT_MS = 100.0
# Library functions worth showing in the profile table next to the platform's own code.
PROFILE_LANDMARKS = (
    "get_new_connection",
    "init_connection_state",
    "ensure_connection",
    "connect",
    "_execute",
    "execute",
    "dispatch",
    "__call__",
    "thread_handler",
)
M3_ERROR_LIMIT = 0.001
MESSAGE = "Say something short about circuit breakers."
STREAM_REPLY = " ".join(f"token{i:02d}" for i in range(30))


@dataclass(frozen=True)
class Plan:
    name: str
    extra_tenants: int = 10
    warmup: int = 150
    ladder_rounds: int = 80
    m1_rounds: int = 3
    m1_pairs: int = 300
    m1_rates: tuple[int, ...] = (10, 25, 50, 100, 200)
    m1_rate_seconds: float = 6.0
    m2_rounds: int = 3
    m2_pairs: int = 30
    m2_chunks: int = 10
    m2_chunk_delay: float = 0.020
    m3_levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    m3_seconds: float = 5.0
    m3_direct_seconds: float = 1.0
    db_executions: int = 200
    db_wait_seconds: float = 11.0
    profile_executions: int = 200
    rewarm: int = 20
    # Pairs in flight in the open loop; arrivals beyond it are dropped (and counted). Kept low:
    # the platform opens a PostgreSQL connection per request (see docs/performance.md).
    max_inflight: int = 8
    drain_seconds: float = 8.0
    m4_streams: int = 10_000  # idle open streams per kind (M4/M5: SSE, then WebSocket)
    m4_idle_seconds: float = 10.0


FULL = Plan("full")
QUICK = Plan(
    "quick",
    warmup=20,
    ladder_rounds=15,
    m1_rounds=2,
    m1_pairs=30,
    m1_rates=(10, 50),
    m1_rate_seconds=2.0,
    m2_rounds=2,
    m2_pairs=6,
    m3_levels=(1, 4),
    m3_seconds=2.0,
    m3_direct_seconds=0.5,
    db_executions=30,
    db_wait_seconds=1.0,
    profile_executions=40,
    rewarm=5,
    drain_seconds=5.0,
    m4_streams=500,
)
