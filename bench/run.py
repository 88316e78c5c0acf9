"""Platform overhead benchmark: M1 (added latency), M2 (streaming), M3 (throughput).

``.venv/bin/python bench/run.py [--quick]`` or ``make bench`` (``BENCH_ARGS=--quick``).

Method: docs/performance.md and /work/shared/reference/performance-protocol.md. In one run it
starts everything it needs on 127.0.0.1 (its own database ``cb_bench``, the fake LLM, the
platform under its production server, daphne as platform/Procfile runs it, with production
settings; ``--server`` names another, ``granian:2`` two granian worker processes), measures every figure as the *difference* between a call through
the platform and the same upstream call made directly (paired, interleaved in random order),
writes ``bench/results/<timestamp>.json`` (raw figures) + ``.md`` (tables), ``latest.*``, and
rewrites ``docs/performance.md``. Both servers are killed at the end, even on error.
``--servers daphne,uvicorn,granian`` adds a phase that measures those ASGI servers side by side
(bench/m_servers.py); the main phases run on ``--server`` whatever the flag.
``--m7 N`` adds M7 (bench/m7.py): tenant creation time and M1 with 10, then N tenants.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from client import _IDS, _STAMP, Bench
from common import FULL, HOST, PY, QUICK, RESULTS, ROOT, TARGETS, Plan
from m1 import ladder, m1_closed, m1_open, warm_up
from m2 import m2
from m3 import db_accounting, m3
from m4 import m4
from m7 import m7, tenants_runner
from m_openai import openai_phase
from m_servers import parse_servers, server_argv, servers_phase
from profiling import profile_phase, profile_summary
from publish import publish
from report import results_markdown, upgrade_result
from servers import (
    DbGuard,
    PgStats,
    Processes,
    bench_env,
    environment,
    free_port,
    git_facts,
    run_checked,
    total_cpu_busy_seconds,
    wait_http,
)
from stats import r3

# ---------------------------------------------------------------------------------------------
# main


def _one_server(text: str) -> str:
    """``--server``: one name as ``--servers`` takes them."""
    names = parse_servers(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError(f"one server, not a list: {text!r}")
    return names[0]


async def measure(
    plan: Plan,
    platform_url: str,
    fake_url: str,
    setup: dict[str, Any],
    procs: Processes,
    restart: Callable[[], None],
    stats: PgStats | None,
    pg_reserve: int,
    log: Callable[[str], None],
    compare: Callable[[Bench], Awaitable[dict[str, Any]]] | None = None,
    m7_phase: Callable[[Bench, Callable[[str], Awaitable[None]]], Awaitable[dict[str, Any]]]
    | None = None,
) -> dict[str, Any]:
    b = Bench(platform_url, fake_url, setup)
    if stats is not None:
        b.guard = DbGuard(stats, int(setup["postgres"]["max_connections"]), pg_reserve)
    res: dict[str, Any] = {"restarts": 0}

    async def fresh(phase: str) -> None:
        """A freshly started, warmed server for each load phase: the platform keeps one
        PostgreSQL connection per past request until garbage collection (see the docs), so
        a phase must not inherit the previous phase's pile."""
        await asyncio.to_thread(restart)
        res["restarts"] += 1
        await b.renew_platform()
        b.begin(phase)
        for _ in range(plan.rewarm):
            if b.halted():
                break
            await b.execute()

    try:
        b.begin("warm-up")
        res["warmup"] = await warm_up(b, plan, log)
        res["request_body_sent_upstream"] = b.bodies["fast"]
        b.begin("ladder")
        res["ladder"] = await ladder(b, plan, log)

        def cpu_now() -> list[float | None]:
            return [
                procs.cpu_seconds("web", tree=True),
                procs.cpu_seconds("fakellm"),
                time.process_time(),
                total_cpu_busy_seconds(),
                procs.cpu_seconds("web", "system", tree=True),
            ]

        await fresh("M1 1 client")
        cpu0 = cpu_now()
        pg0 = stats.backend_cpu() if stats is not None else {}
        closed = await m1_closed(b, plan, log)
        cpu1 = cpu_now()
        pg1 = stats.backend_cpu() if stats is not None else {}
        closed["db_connections_peak"] = b.peak("M1 1 client")
        pairs = sum(r["pairs"] for r in closed["rounds"]) or 1
        cpu: dict[str, Any] = {}
        if None not in cpu0 and None not in cpu1:
            used = [(a or 0.0) - (b0 or 0.0) for a, b0 in zip(cpu1, cpu0, strict=True)]
            cpu = {
                "server_ms_per_execution": r3(used[0] * 1000 / pairs),
                "server_system_ms_per_execution": r3(used[4] * 1000 / pairs),
                "fake_ms_per_call": r3(used[1] * 1000 / (2 * pairs)),
                "client_ms_per_pair": r3(used[2] * 1000 / pairs),
                "machine_ms_per_pair": r3(used[3] * 1000 / pairs),
                "postgres_ms_per_execution": r3(
                    sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items()) * 1000 / pairs
                )
                if pg1
                else None,
            }
        res["m1"] = {"closed": closed, "cpu": cpu, "open": []}
        for rate in plan.m1_rates:
            await fresh(f"M1 open {rate}/s")
            res["m1"]["open"].append(await m1_open(b, plan, rate, log))
        await fresh("M2")
        res["m2"] = await m2(b, plan, log)
        res["m2"]["db_connections_peak"] = b.peak("M2")
        await fresh("OpenAI-compatible")
        res["openai"] = await openai_phase(b, plan, log)
        res["m3"] = await m3(b, plan, fresh, log)
        if stats is not None:
            await fresh("DB accounting")
            res["db_accounting"] = await db_accounting(b, plan, stats, procs, log)
        res["m4"] = await m4(b, plan, procs, stats, fresh, log)  # M4/M5: idle open streams
        if m7_phase is not None:  # M7: tenant creation, M1 against the number of schemas
            res["m7"] = await m7_phase(b, fresh)
        if compare is not None:
            procs.stop("web")  # one server at a time on the machine
            res["server_comparison"] = await compare(b)
    finally:
        await b.aclose()
        if b.guard is not None:
            b.guard.stop()
            res["db_guard"] = b.guard.json()
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small version (~30-60 s)")
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "cb_bench"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--extra-tenants", type=int, default=None)
    parser.add_argument("--log-level", default="INFO", help="platform LOG_LEVEL (default INFO)")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite docs/performance.md (default: full runs yes, --quick no)",
    )
    parser.add_argument(
        "--limits",
        choices=["none", "metered"],
        default="none",
        help="the bench tenant without a plan (default) or with every limit set out of reach",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--server",
        type=_one_server,
        default="daphne",
        help="the server of the main phases: daphne (default, as deployed), granian, "
        "granian:N (N worker processes) or uvicorn[:N]",
    )
    parser.add_argument(
        "--servers",
        type=parse_servers,
        default=[],
        help="ASGI servers to compare afterwards, comma-separated out of daphne,uvicorn,granian "
        "(:N for N workers; default: no comparison)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the profiling phase")
    parser.add_argument(
        "--m7",
        type=int,
        default=0,
        metavar="N",
        help="add M7: create tenants up to N (then drop them) and measure M1 at --m7-base "
        "and at N tenants (default 0: off; each creation takes about a second)",
    )
    parser.add_argument("--m7-base", type=int, default=10, help="tenants of M7's first M1")
    parser.add_argument(
        "--pg-reserve",
        type=int,
        default=15,
        help="stop a load phase when PostgreSQL has fewer free connections than this "
        "(the server may be shared; default 15)",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: rewrite the Markdown table and docs/performance.md from a "
        "results file (e.g. bench/results/latest.json)",
    )
    parser.add_argument(
        "--record",
        metavar="LABEL",
        help="append this full run's headline figures to bench/history.json, LABEL saying "
        "what changed (with --render: record that results file)",
    )
    args = parser.parse_args()
    if args.render:
        res = upgrade_result(json.loads(Path(args.render).read_text()))
        table = results_markdown(res)
        Path(args.render).with_suffix(".md").write_text(table)
        publish(res, Path(args.render), docs=args.docs is not False, label=args.record)
        print(table)
        return 0
    plan = QUICK if args.quick else FULL
    if args.extra_tenants is not None:
        plan = Plan(**{**plan.__dict__, "extra_tenants": args.extra_tenants})
    random.seed(args.seed)

    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    run_id = started_at.strftime("%Y%m%dT%H%M%SZ")

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (nohup, &)
    sys.path.insert(0, str(ROOT))
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cb-bench-"))
    procs = Processes(workdir)
    stats: PgStats | None = None
    env = bench_env(args, workdir)
    res: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "plan": plan.name,
            "plan_parameters": {k: v for k, v in plan.__dict__.items()},
            "started_at": started_at.isoformat(timespec="seconds"),
            "git": git_facts(),
        },
        "environment": environment(),
        "targets": TARGETS,
    }
    try:
        log(f"migrating database {args.database} (migrate_schemas)")
        t0 = time.monotonic()
        run_checked(
            [PY, "manage.py", "migrate_schemas", "--verbosity", "0"], env, 900, "migrate_schemas"
        )
        res["meta"]["migrate_seconds"] = round(time.monotonic() - t0, 2)

        fake_port, platform_port = free_port(), free_port()
        fake_url = f"http://{HOST}:{fake_port}"
        fake_argv = [PY, "-m", "agents.fakellm", "--host", HOST, "--port", str(fake_port)]
        fake = procs.start("fakellm", fake_argv, env)
        wait_http(f"{fake_url}/v1/models", fake, 20, "fake LLM")

        log("creating tenants, credentials, agents")
        out = run_checked(
            [
                PY,
                "bench/setup_db.py",
                "--fake-url",
                fake_url,
                "--extra-tenants",
                str(plan.extra_tenants),
                "--limits",
                args.limits,
            ],
            env,
            900,
            "setup",
        )
        setup = json.loads(out.strip().splitlines()[-1])
        res["setup"] = {k: v for k, v in setup.items() if k != "api_key"}
        log(
            f"{setup['tenants']} tenants ({setup['tenants_created_now']} created now), "
            f"{setup['postgres']['schemas']} schemas, PostgreSQL "
            f"{setup['postgres']['server_version']}"
        )

        platform_url = f"http://{HOST}:{platform_port}"
        web_argv = server_argv(args.server, platform_port)

        def restart() -> None:
            procs.stop("web")
            web = procs.start("web", web_argv, env)
            wait_http(f"{platform_url}/healthz", web, 60, args.server)

        restart()
        res["environment"]["asgi_server"] = " ".join(
            [os.path.basename(web_argv[0]), *web_argv[1:]]
        ).replace(f" {platform_port}", " PORT")
        res["environment"]["asgi_server_name"] = args.server

        with contextlib.suppress(Exception):
            stats = PgStats(setup["database"])
        compare: Callable[[Bench], Awaitable[dict[str, Any]]] | None = None
        if args.servers:
            names, versions = args.servers, res["environment"]["versions"]

            async def compare_servers(b: Bench) -> dict[str, Any]:
                return await servers_phase(b, plan, names, setup, procs, env, versions, log)

            compare = compare_servers

        async def m7_phase(b: Bench, fresh: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
            return await m7(b, plan, args.m7, args.m7_base, tenants_runner(env), fresh, log)

        log(f"platform at {platform_url}, fake LLM at {fake_url}; measuring ({plan.name})")
        res.update(
            asyncio.run(
                measure(
                    plan,
                    platform_url,
                    fake_url,
                    setup,
                    procs,
                    restart,
                    stats,
                    args.pg_reserve,
                    log,
                    compare,
                    m7_phase if args.m7 else None,
                )
            )
        )
        procs.stop("web")
        if not args.no_profile:
            # The sampler wraps daphne's command line in-process (granian serves from worker
            # processes it spawns): the profile is daphne's, whatever --server was.
            log("profiling phase: daphne under the stdlib sampling profiler")
            profile_port = free_port()
            profile_url = f"http://{HOST}:{profile_port}"
            profile_out = workdir / "profile.json"
            profiled = procs.start(
                "daphne-profiled",
                [
                    PY,
                    "bench/profiled_daphne.py",
                    "-b",
                    HOST,
                    "-p",
                    str(profile_port),
                    "config.asgi:application",
                ],
                {**env, "BENCH_PROFILE_OUT": str(profile_out)},
            )
            wait_http(f"{profile_url}/healthz", profiled, 60, "profiled daphne")
            latencies, errors = asyncio.run(
                profile_phase(plan, profile_url, fake_url, setup, profiled)
            )
            res["profile"] = profile_summary(profile_out, latencies, errors, log)
    except BaseException as exc:
        res["failed"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {res['failed']} (server logs in {workdir})")
        for name in procs.procs:
            tail = procs.tail(name)
            if tail:
                print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        if stats is not None:
            stats.close()
        server_log = procs.tail("web", 50_000_000)
        lines = server_log.splitlines()
        # Console lines (" ERROR "), JSON lines (LOG_FORMAT json) and the servers' own.
        marks = (" ERROR ", '"level": "error"', '"level": "critical"', "[ERROR]")
        bad = [
            i
            for i, line in enumerate(lines)
            if any(m in line for m in marks)
            or (line.startswith("Traceback") and not (i and " ERROR " in lines[i - 1]))
        ]
        skip = ("Traceback", "During handling", "The above exception", " ", "\t")
        # Each error with the exception line that ends its traceback, counted by kind.
        kinds: Counter[str] = Counter()
        for i in bad:
            end = next(
                (
                    j
                    for j in range(i + 1, min(i + 120, len(lines)))
                    if lines[j] and not lines[j].startswith(skip)
                ),
                i,
            )
            head = _STAMP.sub("", lines[i])[:160]
            kinds[_IDS.sub("<id>", head + " | " + lines[end][:240])] += 1
        res["server_log"] = {
            "lines": len(lines),
            "access_log_lines": sum(1 for line in lines if "config.access" in line),
            "error_lines": len(bad),
            "errors": dict(kinds.most_common(20)),
            "tail": server_log[-1500:],
        }
        res["meta"]["seconds"] = round(time.monotonic() - started, 1)
        name = run_id + ("-quick" if plan.name == "quick" else "")
        if "failed" in res:
            name += "-failed"
        latest = "latest-quick" if plan.name == "quick" else "latest"
        text = json.dumps(res, indent=1, default=str)
        (RESULTS / f"{name}.json").write_text(text)
        if "failed" not in res:
            (RESULTS / f"{latest}.json").write_text(text)
    shutil.rmtree(workdir, ignore_errors=True)  # server logs: kept only when a run fails
    table = results_markdown(res)
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{latest}.md").write_text(table)
    docs = args.docs if args.docs is not None else plan.name == "full"
    publish(res, RESULTS / f"{name}.json", docs=docs, label=args.record, log=log)
    log(f"wrote bench/results/{name}.json + .md, {latest}.*" + (", docs" if docs else ""))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
