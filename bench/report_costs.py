"""The doc's "What a request costs" section: one blocking execution, stage by stage.

Three views from the same run, each with its own unit and caveats: the request ladder
(wall-clock p50 of ever larger requests, interleaved), CPU time per execution of each process
(exact, from /proc and pg_stat_activity), and the sampling profile's busy thread time mapped
to stages (indicative). The stage mapping uses the profile's ``stages_ms_per_execution`` when
the profiler wrote it (bench/profiled_daphne.py, each sample to its innermost stage), else
derives the same stages from inclusive times per function; any figure the results file lacks
is shown as n/a.
"""

from __future__ import annotations

from typing import Any

from report import fmt

# Stage name -> (function whose inclusive time is the stage, what it holds). The derivation
# below nests them as the code does: the middleware and the view run on the request's thread
# (asgiref's thread_handler), admission and the end are called from the view, the engine runs
# on the event loop (async_to_sync from the view).
MARKERS = {
    "request_thread": "asgiref/sync.py:thread_handler",
    "middleware": "tenants/middleware.py:_resolve",
    "rate_bucket": "tenants/access.py:check_request_rate",
    "api_key": "tenants/authentication.py:authenticate_bearer",
    "view": "rest_framework/views.py:dispatch",
    "admission": "agents/core/admission.py:admit",
    "finish": "agents/core/finish.py:store_terminal",
    "engine": "agents/engine/run_state.py:execute",
    "provider": "agents/providers/http.py:open_stream",
}
# Leaves that are hand-offs between threads (a thread waking the event loop, the loop waking
# a thread, starting threads): spread over the stages, shown apart and not added.
HOP_LEAVES = (
    "selector_events.py:_write_to_self",
    "selector_events.py:_read_from_self",
    "thread.py:submit",
    "threading.py:start",
)


def _inc(prof: dict[str, Any], label: str) -> float | None:
    value = (prof.get("inclusive_ms_per_execution") or {}).get(label)
    return float(value) if isinstance(value, int | float) else None


def _minus(total: float | None, *parts: float | None) -> float | None:
    if total is None:
        return None
    return max(0.0, total - sum(p or 0.0 for p in parts))


def _us(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms * 1000:,.0f}"


ASGI = "ASGI server, event loop, Django's ASGI handler"
HANDLER = "Django handler and the other middleware"
MIDDLEWARE = "Middleware: tenant, API key, request rate bucket"
VIEW = "DRF view (its own work)"
ADMISSION = "Admission"
ENGINE = "Engine and provider call"
FINISH = "Storing the end"
HOPS = "Thread hand-offs (asgiref, waking the event loop, starting threads)"
NOTES = {
    ASGI: "the server reading and writing the sockets (the profile: daphne/Twisted), asyncio, "
    "Django's ASGI handler",
    HANDLER: "request id, metrics, JSON access log, audit context, on the request's thread",
    MIDDLEWARE: "`tenants/middleware.py`, `tenants/access.py`, `tenants/ratelimit.py`",
    VIEW: "`agents/api/executions.py`, serializers, the async_to_sync hop to the engine",
    ADMISSION: "`agents/core/admission.py:admit`: limits, rate, the execution row and its "
    "audit entry",
    ENGINE: "`agents/engine`, `agents/providers` on the event loop; waiting for the LLM is "
    "not busy time",
    FINISH: "`agents/core/finish.py:store_terminal`",
    HOPS: "a thread waking the event loop, the loop waking a thread, threads started",
}
# "of which" rows (inclusive time of a function inside a stage), after their stage.
OF_WHICH = {
    MIDDLEWARE: (
        ("the request rate bucket", "rate_bucket"),
        ("API-key authentication", "api_key"),
    ),
    ENGINE: (("opening the upstream stream (httpx/httpcore)", "provider"),),
}


def profile_stages(prof: dict[str, Any]) -> tuple[list[tuple[str, float | None, str]], bool]:
    """(stage, busy thread-ms per execution, what is in it) in request order, the nested
    "of which" rows indented; and whether the stages came from the profiler itself (each
    sample to its innermost stage) rather than derived here from inclusive times. The
    unindented rows add up to the profile's busy time."""
    m = {key: _inc(prof, label) for key, label in MARKERS.items()}
    stored = prof.get("stages_ms_per_execution")
    if isinstance(stored, dict) and stored:
        stages = {name: v if isinstance(v, int | float) else None for name, v in stored.items()}
        from_profiler = True
    else:
        thread, view = m["request_thread"], m["view"]
        busy = prof.get("busy_thread_ms_per_execution")
        stages = {
            ASGI: _minus(busy, thread, m["engine"]) if thread is not None else None,
            HANDLER: _minus(thread, m["middleware"], view),
            MIDDLEWARE: m["middleware"],
            VIEW: _minus(view, m["admission"], m["finish"]),
            ADMISSION: m["admission"],
            ENGINE: m["engine"],
            FINISH: m["finish"],
        }
        from_profiler = False
    rows: list[tuple[str, float | None, str]] = []
    for name, value in stages.items():
        rows.append((name, value, NOTES.get(name, "")))
        for label, key in OF_WHICH.get(name, ()):
            part = m[key]
            if part is not None:
                # Inclusive time can pass a stage counted exclusively (hand-offs inside it
                # are a stage of their own): a part is never shown above its whole.
                part = min(part, value) if value is not None else part
                rows.append((f"  of which {label}", part, f"`{MARKERS[key]}`"))
    return rows, from_profiler


def costs_markdown(res: dict[str, Any]) -> str:
    out: list[str] = []
    ladder = (res.get("ladder") or {}).get("steps_p50_ms") or {}
    cpu = (res.get("m1") or {}).get("cpu") or {}
    prof = res.get("profile") or {}
    out += [
        "One blocking execution (`POST /agents/{id}/execute`, 1 client), in three views of "
        "the same run. They do not add up to each other: the ladder is wall-clock time the "
        "client waits, CPU is what each process burns, the profile is busy thread time in "
        "the server.",
        "",
        "**The request ladder** (interleaved, p50 of each rung minus the one below; wall-clock):",
        "",
        "| Stage | Added p50 (µs) |",
        "|---|---|",
        f"| Loopback HTTP + a minimal ASGI server (the stub's GET) | "
        f"{_us(ladder.get('loopback_http_minimal_asgi'))} |",
        f"| server + Django + the middleware, no database (`GET /healthz`) | "
        f"{_us(ladder.get('server_django_middleware'))} |",
        f"| API-key auth, tenant, rate bucket, DRF, one query (`GET /agents/{{id}}`) | "
        f"{_us(ladder.get('auth_tenant_drf_one_query'))} |",
        f"| The execution beyond that (admission, engine, upstream call, storing the end) | "
        f"{_us(ladder.get('execution_beyond_authenticated_get'))} |",
        f"| &nbsp;&nbsp;of which the upstream call made directly | "
        f"{_us(ladder.get('of_which_upstream_call_direct'))} |",
        "",
        "**CPU per execution** (M1 at 1 client, process CPU time over the phase divided by "
        "the executions; exact, but the whole process, not one request):",
        "",
        "| Process | CPU (µs) |",
        "|---|---|",
        f"| Platform server, user + kernel | {_us(cpu.get('server_ms_per_execution'))} |",
        f"| &nbsp;&nbsp;of which kernel | {_us(cpu.get('server_system_ms_per_execution'))} |",
        f"| PostgreSQL backends | {_us(cpu.get('postgres_ms_per_execution'))} |",
        f"| Fake LLM, per call | {_us(cpu.get('fake_ms_per_call'))} |",
        f"| Load generator, per (direct, platform) pair | {_us(cpu.get('client_ms_per_pair'))} |",
        f"| Whole machine, per pair | {_us(cpu.get('machine_ms_per_pair'))} |",
        "",
    ]
    stages, from_profiler = (
        profile_stages(prof) if prof.get("busy_thread_ms_per_execution") else ([], False)
    )
    if not stages:
        out.append("This run has no sampling profile (`--no-profile`), so no stages.")
        return "\n".join(out) + "\n"
    executions = prof.get("executions")
    latency = (prof.get("latency_ms") or {}).get("p50")
    out += [
        f"**Stages, from the sampling profile** ({executions} sequential executions under "
        f"the profiler, p50 {fmt(latency, ' ms')} there; busy thread time per execution, "
        "µs). *Indicative*: a stdlib sampler at ~1 ms (each sample weighted by the time since "
        "the previous one), thread time rather than CPU (a thread waiting on PostgreSQL counts "
        "as busy; the kernel's work and the GIL are not seen), and the profiler slows the "
        "server down. "
        + (
            "Each sample was counted in the innermost stage on its thread's stack."
            if from_profiler
            else "Each stage is the inclusive time of the function that starts it, minus "
            "the stages nested in it (this run's profiler did not classify samples by stage; "
            "thread hand-offs are inside the stages, see below)."
        ),
        "",
        "| Stage | Busy thread time (µs) | Share | What is in it |",
        "|---|---|---|---|",
    ]
    busy = prof["busy_thread_ms_per_execution"]
    for name, ms, note in stages:
        share = f"{ms / busy * 100:.0f} %" if ms is not None and busy else ""
        label = name.replace("  ", "&nbsp;&nbsp;") if name.startswith("  ") else name
        out.append(
            f"| {label} | {_us(ms)} | {share if not name.startswith('  ') else ''} | {note} |"
        )
    out.append(f"| **Total busy** | **{_us(busy)}** | 100 % | |")
    leaves = prof.get("self_ms_per_execution") or {}
    hops = [(label, leaves[label]) for label in leaves if label.endswith(HOP_LEAVES)]
    if hops and not from_profiler:
        total = sum(v for _, v in hops)
        out += [
            "",
            f"Thread hand-offs (asgiref's sync/async hops: a thread waking the event loop, "
            f"the loop waking a thread, threads started), spread over the stages above: "
            f"~{_us(total)} µs per execution at the innermost frame ("
            + ", ".join(f"`{label}` {_us(v)}" for label, v in hops)
            + "); the profile counted "
            f"{prof.get('threads_seen_busy', 'n/a')} distinct busy threads for {executions} "
            "executions.",
        ]
    sp = (prof.get("inclusive_ms_per_execution") or {}).get(
        "django_tenants/postgresql_backend/base.py:_handle_search_path"
    )
    psy = (prof.get("inclusive_ms_per_execution") or {}).get("psycopg/connection.py:wait")
    if psy is not None:
        out += [
            "",
            f"Across the stages, waiting on PostgreSQL (`psycopg/connection.py:wait`) is "
            f"~{_us(psy)} µs per execution"
            + (f", of which django-tenants' `SET search_path` ~{_us(sp)} µs" if sp else "")
            + f"; PostgreSQL's own CPU is {_us(cpu.get('postgres_ms_per_execution'))} µs "
            "(above): most of that wait is round trips, not query execution.",
        ]
    return "\n".join(out) + "\n"
