"""Markdown rendering of docs/performance.md."""

from __future__ import annotations

from typing import Any

from charts import TITLES
from report import fmt, results_markdown
from report_costs import costs_markdown
from report_history import history_markdown

# Results heading (its start) -> the chart shown at the end of that section.
CHART_AFTER = {
    "### M1 at 1 client, per round": "m1-latency-cdf",
    "### M1 at a constant arrival rate": "m1-open-loop",
    "### M2 per round": "m2-ttft-cdf",
    "### M3 closed-loop ramp": "m3-rate-vs-p99",
    "### ASGI servers side by side": "servers",
}


def attach_charts(markdown: str, charts: dict[str, str]) -> str:
    """Puts each chart at the end of its section of the results (before the next heading),
    so it sits next to its table. ``charts``: chart name -> path relative to the doc."""
    lines = markdown.split("\n")
    for heading, name in CHART_AFTER.items():
        if name not in charts:
            continue
        start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
        if start is None:
            continue
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines)
        )
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = ["", f"![{TITLES[name]}]({charts[name]})"]
    return "\n".join(lines)


def _inclusive(prof: dict[str, Any], suffix: str) -> float | None:
    for label, value in (prof.get("inclusive_ms_per_execution") or {}).items():
        if label.endswith(suffix):
            return value
    return None


def where_time_goes(res: dict[str, Any]) -> str:
    """The "where the time goes" note, written from this run's figures only."""
    steps = res["ladder"]["steps_p50_ms"]
    m1c = res["m1"]["closed"]
    cpu = res["m1"].get("cpu") or {}
    db_run = res.get("db_accounting") or {}
    db = db_run.get("per_execution") or {}
    prof = res.get("profile") or {}
    header = m1c["header_p50_ms"]["median"]
    added = m1c["added_p50_ms"]["median"]
    out = [
        "Written by `bench/run.py` from this run's figures: the ladder of requests above (the "
        "same client asking for ever more of the stack, interleaved), the platform's own "
        "`X-Platform-Overhead-Ms`, CPU time per process, PostgreSQL's counters and a stdlib "
        "sampling profile of the server (`bench/profiled_daphne.py`; no profiler package is "
        "installed and none was added). Profile figures are thread-milliseconds per execution "
        "under the profiler, so they are indicative, not additive to the millisecond.",
        "",
        f"- **What the header sees.** The platform reports {fmt(header, ' ms')} p50 in "
        f"`X-Platform-Overhead-Ms`; measured from outside the same executions add "
        f"{fmt(added, ' ms')}. The header starts inside the view, so the ASGI server, the "
        "middleware (tenant resolution and API key authentication included) and the hop to "
        "the request's thread are not in it.",
        f"- **Fixed cost of a request.** The server + Django + middleware on a path that touches "
        f"no database (GET /healthz) costs ~{fmt(steps['server_django_middleware'], ' ms')} over "
        f"a bare ASGI server; authentication, tenant resolution, DRF and one query add "
        f"~{fmt(steps['auth_tenant_drf_one_query'], ' ms')} (GET /agents/{{id}}); the "
        f"execution itself ~{fmt(steps['execution_beyond_authenticated_get'], ' ms')} more, "
        f"of which the upstream call is ~{fmt(steps['of_which_upstream_call_direct'], ' ms')} "
        "when made directly.",
    ]
    groups = prof.get("self_by_group") or {}
    if groups:
        ranked = sorted(groups.items(), key=lambda kv: -(kv[1]["ms_per_execution"] or 0))
        top = "; ".join(
            f"{name} {item['ms_per_execution']:.1f} ms ({item['share'] * 100:.0f} %)"
            for name, item in ranked[:4]
        )
        threads = prof.get("threads_seen_busy")
        out.append(
            f"- **Profile.** {fmt(prof.get('busy_thread_ms_per_execution'), ' ms')} of busy "
            f"thread time per blocking execution; by the innermost known frame: {top}. "
            f"{threads} distinct threads ran platform code for {prof.get('executions')} "
            "sequential executions"
            + (
                ": a new thread per request (Django's ASGI handler gives every request its own "
                "asgiref thread-sensitive context, and asgiref a one-thread executor per "
                "context), paid in thread start-up and in anything kept per thread."
                if threads and threads >= 0.8 * (prof.get("executions") or 0)
                else "."
            )
            + " The sampler sees what each thread is doing, not CPU spent in the kernel "
            "(thread start-up, socket system calls); compare with the CPU figure below."
        )
    if db.get("xact_commit") is not None:
        sessions = db["sessions"]
        text = (
            f"- **Database.** Per blocking execution: {fmt(db['xact_commit'], '', 1)} "
            f"transactions (in autocommit each statement is one), {fmt(db['tup_inserted'], '', 1)}"
            f" rows inserted, {fmt(db['tup_updated'], '', 1)} updated, "
            f"{fmt(sessions)} new PostgreSQL sessions."
        )
        search_path = _inclusive(prof, ":_handle_search_path")
        if search_path:
            text += (
                f" django-tenants' `SET search_path` on cursor creation costs "
                f"~{search_path:.1f} ms per execution in the profile (a round trip each time "
                "a connection is (re)entered into a schema)."
            )
        if sessions >= 0.5:
            text += (
                " A new session for (nearly) every request: each one pays connect, "
                "authentication and a cold backend whose catalog caches must be refilled "
                "(see the catalog reads below), and the old connections linger until garbage "
                "collection, so a loaded server piles up connections towards "
                "`max_connections`."
            )
        else:
            text += " Connections are reused across requests (pooled)."
        catalog = {
            k: v
            for k, v in (db_run.get("tables_per_execution") or {}).items()
            if k.startswith("pg_catalog.")
        }
        reads = sum(v.get("idx_tup_fetch", 0) + v.get("seq_tup_read", 0) for v in catalog.values())
        if reads > 50 and sessions >= 0.5:
            text += (
                f" System catalog rows read per execution: ~{reads:.0f} (a fresh backend "
                "filling its caches)."
            )
        out.append(text)
    sniff = _inclusive(prof, "httpcore/_synchronization.py:current_async_library")
    if sniff and sniff >= 0.2:
        out.append(
            f"- **A failing import on every upstream call.** httpcore's "
            f"`current_async_library()` runs `import sniffio`, which is not installed; a "
            f"failed import is not cached, so every call searches `sys.path` on disk again: "
            f"~{sniff:.1f} ms per execution in the profile. Installing `sniffio` (a tiny "
            "pure-Python package) removes it."
        )
    if cpu.get("server_ms_per_execution"):
        per = cpu["server_ms_per_execution"]
        server = (res.get("environment") or {}).get("asgi_server_name", "daphne")
        top_rate = ((res.get("m3") or {}).get("highest_observed") or {}).get("throughput_per_s")
        pg_cpu = cpu.get("postgres_ms_per_execution")
        psy = sum(
            item["ms_per_execution"] or 0
            for name, item in (prof.get("self_by_group") or {}).items()
            if name.startswith("PostgreSQL:")
        )
        pg_note = ""
        if pg_cpu is not None and psy and pg_cpu < 0.5 * psy:
            pg_note = (
                f" The profile's {psy:.1f} ms under psycopg is therefore mostly the driver's "
                "own work in the server process and waiting for round trips on a busy 2-core "
                "machine, not query execution in PostgreSQL."
            )
        out.append(
            f"- **CPU.** The server ({server}) uses {fmt(per, ' ms')} of CPU per blocking "
            f"execution at 1 client, {fmt(cpu.get('server_system_ms_per_execution'), ' ms')} "
            f"of it in the kernel; PostgreSQL's backends use "
            f"{fmt(cpu.get('postgres_ms_per_execution'), ' ms')} (the fake LLM "
            f"{fmt(cpu.get('fake_ms_per_call'), ' ms')} per call, this load generator "
            f"{fmt(cpu.get('client_ms_per_pair'), ' ms')} per pair).{pg_note} One Python "
            "process runs Python on one core at a time (the GIL): at this cost that is "
            f"~{1000 / per:.0f} executions/s per process, with PostgreSQL, the fake and the "
            f"load generator sharing the same 2 cores; M3's highest rate was "
            f"{fmt(top_rate, '/s', 0)}. 500/s would take ~{per * 500 / 1000:.0f} cores of "
            "server CPU at this cost per execution: it needs far less CPU per execution, not "
            "just more processes."
        )
    m2 = res.get("m2") or {}
    if m2.get("ttft_added_p50_ms", {}).get("median") is not None:
        out.append(
            f"- **Streaming.** The first token reaches an SSE client "
            f"{fmt(m2['ttft_added_p50_ms']['median'], ' ms')} (p50) later than a direct "
            "client. From the code (`agents/api/sse.py`, `agents/core/event_log.py`)"
            ": before the upstream call the stream view creates the execution, then a "
            "detached task claims it and loads the agent and prices (database round trips "
            "on a thread of its own); every chunk is written to the event log (INSERT + "
            "NOTIFY) and read back by the follower before it is sent. Between chunks the "
            f"added gap is small at p50 ({fmt(m2['gap_added_p50_ms']['median'], ' ms')}) and "
            f"{fmt(m2['gap_added_p99_ms']['median'], ' ms')} at p99: the write/read round "
            "trip per chunk shows in the tail."
        )
    return "\n".join(out) + "\n"


def doc_markdown(
    res: dict[str, Any],
    charts: dict[str, str] | None = None,
    charts_note: str | None = None,
    history: list[dict[str, Any]] | None = None,
) -> str:
    """The whole of docs/performance.md. ``charts``: chart name -> path relative to docs/;
    ``charts_note``: why there are none (matplotlib missing); ``history``: bench/history.json."""
    charts = charts or {}
    results = attach_charts(results_markdown(res), charts)
    if charts_note:
        results = f"*{charts_note[0].upper()}{charts_note[1:]}.*\n\n" + results
    env = res["environment"]
    setup = res["setup"]
    versions = env["versions"]
    git = res["meta"].get("git", {})
    files = git.get("local_changes_files") or []
    changed = (": " + ", ".join(f"`{f}`" for f in files[:12])) if files else ""
    if len(files) > 12:
        changed += ", ..."
    return f"""# Performance

What the platform adds on top of the model call, measured against the physical limit (the same
request sent straight to the same LLM stub), following
`../shared/reference/performance-protocol.md`. **This file is generated** by
`bench/run.py`; every figure below comes from `bench/results/latest.json` (raw samples) and
`bench/results/latest.md` (the same tables), which the command rewrites.

## How to run

```sh
make bench                          # full run, ~4-5 min on 2 cores; rewrites this file
make bench BENCH_ARGS=--quick       # smoke test, ~1 min; bench/results/latest-quick.*
.venv/bin/python bench/run.py [--quick] [--database cb_bench] [--extra-tenants 10]
.venv/bin/python bench/run.py --servers daphne,uvicorn,granian:2  # + ASGI servers side by side
.venv/bin/python bench/run.py --server granian:2   # the main phases on two worker processes
.venv/bin/python bench/run.py --m7 200   # + M7: tenant creation, M1 at 10 and at 200 tenants
.venv/bin/python bench/m7.py --n 200     # M7 alone (its own fake LLM and daphne)
.venv/bin/python bench/run.py --render bench/results/latest.json   # re-render, no measuring
.venv/bin/python bench/run.py --record "what changed"   # full run + a row in bench/history.json
.venv/bin/python bench/run.py --render bench/results/latest.json --record "what changed"
```

Charts are SVGs drawn with matplotlib (the `bench` extra of `pyproject.toml`, which `make
bench` installs; without it the figures are all still written, only the charts are missing):
a full run writes them to `docs/performance/`, a quick run (or `--render ... --no-docs`) next
to its results, in `bench/results/<run>-charts/`.

It needs only a PostgreSQL the platform can reach (the same resolution as the platform:
`DATABASE_URL`, else `localhost:5432`, else the embedded server) and uses its own database
(`cb_bench`, created and migrated with `manage.py migrate_schemas`). It then:

1. creates the tenant `bench` and {setup["tenants"] - 1} extra tenants if missing, two
   `openai`-kind credentials pointing at the fake LLM and one agent for each, and a fresh API
   key; it empties the `bench` tenant's executions so each run starts from the same table
   sizes;
2. starts the fake LLM (`python -m agents.fakellm`, zero think time) and the platform under
   its production server (daphne, as `platform/Procfile` runs it; `--server` names another),
   both as subprocesses on 127.0.0.1, and stops both at the end, even on error;
3. warms up, then runs the phases below, each load phase on a freshly started and re-warmed
   server (so that no phase inherits the previous one's database connections); every loop
   is bounded by count and time, every call by a deadline;
4. watches PostgreSQL's connection count throughout: the server may be shared, so a phase
   stops sending when fewer than `--pg-reserve` (15) connections are left, and says so.

Method, in short:

- **Direct baseline**: the exact JSON body the platform sent upstream (read back from the
  fake's request log), sent by a bare `httpx.AsyncClient` configured like the platform's
  provider client (HTTP/1.1 keep-alive, pool 200/50), streaming, consumed fully with one
  `json.loads` per frame.
- **M1**: (direct, platform) pairs, the order within each pair random, 1 client, several
  rounds: percentiles of the per-pair difference; the median of the rounds is quoted with its
  min-max spread. Then the same pairs at a constant arrival rate (open loop, in-flight bounded),
  where achieved rate, errors, drops and timeouts are reported as they are.
- **M2**: the fake is scripted to stream {res["m2"]["chunks_scripted"]} chunks
  {res["m2"]["chunk_delay_ms"]:.0f} ms apart; paired (direct, platform SSE) calls: the added
  time to the first `chunk` event, the added gap between consecutive chunks (gap *i* through
  the platform minus gap *i* direct), and whether a live SSE client receives as many `chunk`
  events as the model sent (and the same text).
- **M3**: closed-loop ramp of blocking executions until p99 > 100 ms or errors > 0.1 %; the
  stub is then driven alone at every level, to show it is not the bottleneck.
- **Where the time goes**: a ladder of requests (bare ASGI server, `/healthz`, an
  authenticated GET, an execution, interleaved); CPU time of each process;
  `pg_stat_database` / `pg_stat_all_tables` deltas over sequential executions; and, in a last
  phase of its own, daphne under a stdlib sampling profiler (`bench/profiled_daphne.py`: the
  sampler runs in daphne's own process; granian serves from workers it spawns).

## Environment of the last run

| | |
|---|---|
| Machine | {env["cpu_count"]} CPUs, {env["cpu_model"]}; {env["os"]} |
| Load average at start | {env["loadavg_start"]} |
| Python | {versions["python"]} |
| Django / DRF / django-tenants | {versions["django"]} / {versions["djangorestframework"]} / {versions["django-tenants"]} |
| ASGI server (main phases) | {_server_row(res, versions)} |
{_servers_row(res)}| asgiref / channels | {versions["asgiref"]} / {versions["channels"]} |
| psycopg / httpx | {versions["psycopg"]} / {versions["httpx"]} |
| PostgreSQL server | {setup["postgres"]["server_version"]} ({setup["database"]["source"]}, database `{setup["database"]["name"]}`, `max_connections` {setup["postgres"]["max_connections"]}); Django `CONN_MAX_AGE` {setup["database"]["conn_max_age"]}, pool {setup["database"].get("pool") or "none"} |
| Tenants / schemas | {setup["tenants"]} tenants / {setup["postgres"]["schemas"]} schemas |
| Bench tenant's plan | {_plan_row(setup.get("limits", "none"))} |
| Settings | `config.settings` (production), `DEBUG` {setup["settings"]["DEBUG"]}, all production middleware, `LOG_LEVEL` {setup["settings"]["LOG_LEVEL"]} (the production default: one JSON access line per request), channel layer `{setup["settings"]["CHANNEL_LAYER"].rsplit(".", 1)[-1]}` |
| Fake LLM | uvicorn (h11), 1 process, same machine |
| Load generator | this script, 1 process, asyncio + httpx, same machine |
| Commit | {git.get("commit", "?")}; {git.get("local_changes", "?")} paths with local changes at the time{changed} |

The load generator, the fake LLM, PostgreSQL and the platform share the same {env["cpu_count"]}
cores: at high rates the client itself takes CPU from the server (see the client lag column).
Absolute figures move from run to run on this shared machine; the paired differences and
ratios measured within one run are the figures to compare. The tree is worked on while the
benchmark runs: the commit and locally changed paths above say what was measured.

## Results

{results}
## Before and after

{history_markdown(history or [], charts.get("history"))}
## What a request costs

{costs_markdown(res)}
## Where the time goes

{where_time_goes(res)}
"""


def _plan_row(limits: str) -> str:
    if limits == "metered":
        return (
            "`--limits metered`: every limit of a plan set out of reach (all checks, rate "
            "buckets, reservations and usage counters run; none refuses), the fake model priced"
        )
    return "none (`--limits none`: no plan, so no limit is checked)"


def _server_row(res: dict[str, Any], versions: dict[str, str]) -> str:
    """The main phases' server and command line (runs before --server ran daphne)."""
    env = res.get("environment") or {}
    name = env.get("asgi_server_name")
    if name is None:
        return (
            f"daphne {versions.get('daphne', '?')} (Twisted {versions.get('twisted', '?')}), "
            "1 process, its default access log on (to a file)"
        )
    base = name.partition(":")[0]
    return f"{base} {versions.get(base, '?')}: `{env.get('asgi_server', '?')}`"


def _servers_row(res: dict[str, Any]) -> str:
    """The environment table's row of the servers compared (none for runs without)."""
    compared = (res.get("server_comparison") or {}).get("servers") or {}
    if not compared:
        return ""
    names = [
        " ".join(f"{d} {v}" for d, v in (row.get("versions") or {}).items())
        for row in compared.values()
    ]
    return (
        "| ASGI servers compared | "
        + "; ".join(names)
        + " (one serving process each; granian's under its supervisor) |\n"
    )
