"""daphne with a stdlib sampling profiler, for the benchmark's "where the time goes" phase.

``python bench/profiled_daphne.py <daphne arguments>`` runs daphne exactly as ``python -m
daphne`` does, plus a thread that looks at every thread's stack every millisecond
(``sys._current_frames``: no dependency, little overhead; samples are weighted by the time
since the previous one, see ``Sampler``). ``SIGUSR1`` starts recording,
``SIGUSR2`` stops and writes ``$BENCH_PROFILE_OUT`` (JSON). Only used by ``bench/run.py``, in
a phase of its own after the measured phases (sampling adds overhead of its own).

A sample of a thread counts as *busy* unless the thread is plainly idle (the event loop in
``select``, a pool worker waiting for work, a request thread waiting for the event loop); a
thread inside psycopg counts as busy even when it waits for PostgreSQL, since that wait is
latency the request pays.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
OUT = os.environ.get("BENCH_PROFILE_OUT", "")
INTERVAL = float(os.environ.get("BENCH_PROFILE_INTERVAL", "0.001"))
SKIP_THREADS = ("pg-guard", "execution-event-hub", "bench-sampler")
IDLE_LEAVES = {
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("queue.py", "get"),
    ("thread.py", "_worker"),
}
# Django's and psycopg's functions that open and set up a new connection.
CONNECT_FUNCTIONS = frozenset({"get_new_connection", "init_connection_state", "connect"})
# (group, path fragment): the first fragment found in a frame's file names its group.
GROUPS = [
    ("psycopg (PostgreSQL driver and waits on the server)", "/psycopg/"),
    ("psycopg_pool (connection pool)", "/psycopg_pool/"),
    ("django-tenants", "/django_tenants/"),
    ("Django ORM", "/django/db/"),
    ("Django REST framework", "/rest_framework/"),
    ("Django (request handling, middleware, other)", "/django/"),
    ("asgiref (sync/async thread hops)", "/asgiref/"),
    ("HTTP client to the LLM (httpx, httpcore, h11, anyio)", "/httpx/"),
    ("HTTP client to the LLM (httpx, httpcore, h11, anyio)", "/httpcore/"),
    ("HTTP client to the LLM (httpx, httpcore, h11, anyio)", "/h11/"),
    ("HTTP client to the LLM (httpx, httpcore, h11, anyio)", "/anyio/"),
    ("daphne / Twisted / autobahn (ASGI server)", "/daphne/"),
    ("daphne / Twisted / autobahn (ASGI server)", "/twisted/"),
    ("daphne / Twisted / autobahn (ASGI server)", "/autobahn/"),
    ("cryptography (secrets, API key checks)", "/cryptography/"),
    ("platform code: agents/", f"{ROOT}/agents/"),
    ("platform code: tenants/", f"{ROOT}/tenants/"),
    ("platform code: config/", f"{ROOT}/config/"),
    ("asyncio event loop", "/asyncio/"),
    ("json", "/json/"),
    ("threading / concurrent.futures", "/threading.py"),
    ("threading / concurrent.futures", "/concurrent/"),
]


# Stages of one blocking execution, for the doc's "What a request costs": each busy sample
# goes to the innermost of these functions on its stack (so the stages are exclusive and add
# up to the busy time); a sample whose leaf is a thread hand-off goes to that stage instead,
# and one with none of them to the ASGI server. The order is the doc's row order.
STAGE_MARKERS = (
    ("Storing the end", "agents/core/finish.py:store_terminal"),
    ("Admission", "agents/core/admission.py:admit"),
    ("Engine and provider call", "agents/engine/run_state.py:execute"),
    ("Middleware: tenant, API key, request rate bucket", "tenants/middleware.py:_resolve"),
    ("DRF view (its own work)", "rest_framework/views.py:dispatch"),
    ("Django handler and the other middleware", "asgiref/sync.py:thread_handler"),
)
STAGE_ORDER = (
    "ASGI server, event loop, Django's ASGI handler",
    "Django handler and the other middleware",
    "Middleware: tenant, API key, request rate bucket",
    "DRF view (its own work)",
    "Admission",
    "Engine and provider call",
    "Storing the end",
    "Thread hand-offs (asgiref, waking the event loop, starting threads)",
)
STAGE_OF = {label: stage for stage, label in STAGE_MARKERS}
HOP_LEAVES = frozenset(
    {
        "selector_events.py:_write_to_self",
        "selector_events.py:_read_from_self",
        "thread.py:submit",
        "threading.py:start",
    }
)


def _stage(labels: list[str]) -> str:
    """The stage of one sample; ``labels`` innermost first."""
    if labels and labels[0] in HOP_LEAVES:
        return STAGE_ORDER[-1]
    for label in labels:
        stage = STAGE_OF.get(label)
        if stage is not None:
            return stage
    return STAGE_ORDER[0]


def _group(filename: str) -> str | None:
    for name, fragment in GROUPS:
        if fragment in filename:
            return name
    return None


def _label(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    cut = path.find("site-packages/")
    if cut >= 0:
        path = path[cut + 14 :]
    elif path.startswith(str(ROOT)):
        path = path[len(str(ROOT)) + 1 :]
    else:
        path = Path(path).name
    return f"{path}:{code.co_name}"


class Sampler:
    """Each sample of a busy thread is weighted by the time since the previous sample: the
    sampler only runs when it gets the GIL, so a thread running Python code is sampled less
    often than one waiting on a socket; weighting by elapsed time corrects that bias."""

    def __init__(self) -> None:
        self.recording = threading.Event()
        self.dump = threading.Event()
        self.samples = 0
        self.busy = 0.0
        self.self_groups: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.threads_busy: Counter[int] = Counter()
        self.leaves: Counter[str] = Counter()
        self.stacks: Counter[str] = Counter()
        self.stages: Counter[str] = Counter()
        self.started = 0.0
        self.last = 0.0

    def sample(self) -> None:
        now = time.monotonic()
        weight = now - self.last if self.last else INTERVAL
        self.last = now
        threads = {t.ident: t for t in threading.enumerate()}
        me = threading.get_ident()
        self.samples += 1
        for ident, frame in sys._current_frames().items():
            thread = threads.get(ident)
            if ident == me or (thread is not None and thread.name.startswith(SKIP_THREADS)):
                continue
            stack: list[FrameType] = []
            f: FrameType | None = frame
            while f is not None and len(stack) < 200:
                stack.append(f)
                f = f.f_back
            leaf = stack[0].f_code
            files = [s.f_code.co_filename for s in stack]
            in_db = any("/psycopg/" in name for name in files)
            idle_leaf = (Path(leaf.co_filename).name, leaf.co_name) in IDLE_LEAVES
            waits_for_pool = any(s.f_code.co_name == "getconn" for s in stack)
            if idle_leaf and not in_db and not waits_for_pool:
                continue
            self.busy += weight
            # The OS thread id: Python's ident (a pthread address) is reused by new threads.
            native = getattr(thread, "native_id", None) or ident
            self.threads_busy[native] += 1
            group = "other"
            for name in files:  # innermost first: where the time is spent
                found = _group(name)
                if found is not None:
                    group = found
                    break
            if waits_for_pool and idle_leaf:
                group = "PostgreSQL: waiting for a pooled connection"
            elif group.startswith("psycopg"):
                setup = any(s.f_code.co_name in CONNECT_FUNCTIONS for s in stack)
                group = "PostgreSQL: opening connections" if setup else "PostgreSQL: queries"
                group += " (psycopg, incl. waiting on the server)"
            self.self_groups[group] += weight
            labels = [_label(s) for s in stack]
            self.leaves[labels[0]] += weight
            self.stacks[" <- ".join(labels[:14])] += weight
            self.stages[_stage(labels)] += weight
            for label in set(labels):
                self.inclusive[label] += weight

    def run(self) -> None:
        while True:
            if self.dump.is_set():
                self.write()
                self.dump.clear()
                self.recording.clear()
            if self.recording.is_set():
                if not self.started:
                    self.started = time.monotonic()
                self.sample()
            time.sleep(INTERVAL)

    def write(self) -> None:
        def seconds(counter: Counter[str], n: int) -> dict[str, float]:
            return {k: round(v, 6) for k, v in counter.most_common(n)}

        data = {
            "interval_s": INTERVAL,
            "seconds": round(time.monotonic() - self.started, 3) if self.started else 0,
            "samples": self.samples,
            "busy_thread_seconds": round(self.busy, 6),
            "threads_seen_busy": len(self.threads_busy),
            "self_by_group": seconds(self.self_groups, 100),
            "inclusive_top": seconds(self.inclusive, 400),
            "self_top": seconds(self.leaves, 60),
            "stacks_top": seconds(self.stacks, 40),
            "stages": {name: round(self.stages[name], 6) for name in STAGE_ORDER},
        }
        if OUT:
            tmp = Path(OUT + ".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(OUT)


def main() -> None:
    sampler = Sampler()
    signal.signal(signal.SIGUSR1, lambda *_: sampler.recording.set())
    signal.signal(signal.SIGUSR2, lambda *_: sampler.dump.set())
    threading.Thread(target=sampler.run, name="bench-sampler", daemon=True).start()
    sys.setswitchinterval(0.001)  # finer GIL hand-offs: the sampler sees more (profiling only)
    sys.path.insert(0, str(ROOT))
    sys.argv = ["daphne", *sys.argv[1:]]
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
