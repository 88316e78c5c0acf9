"""M7: tenant creation time, and M1's sensitivity to the number of tenant schemas.

Target (performance-protocol.md): "M1 moves < 10 % between 10 and 10,000 tenant schemas;
tenant creation < 1 s". The phase measures M1 (bench/m1.py's ``m1_closed``, 1 client) with
``base`` tenants (10; more if the database already has more), creates tenants through the real
``tenant_create`` (bench/m7_tenants.py, in a subprocess) up to N, measures M1 again on a
freshly started server, and drops the tenants it created (``tenant_delete``) so that the next
run starts from the same count. Creation times are those of every tenant it created.

Part of ``bench/run.py --m7 N`` (off by default: 200 creations take a few minutes); or alone,
on a migrated database, starting its own fake LLM and the production server (daphne)::

    .venv/bin/python bench/m7.py --n 200 [--base 10] [--database cb_bench] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from client import Bench
from common import FULL, HOST, PY, QUICK, ROOT, Plan
from m1 import m1_closed
from m_servers import server_argv
from servers import Processes, bench_env, free_port, run_checked, wait_http
from stats import r3, summary

TARGET_CREATE_SECONDS = 1.0
TARGET_M1_MOVE = 0.10  # M1(N) / M1(base) - 1

Tenants = Callable[[list[str]], dict[str, Any]]


def tenants_runner(env: dict[str, str]) -> Tenants:
    """Runs bench/m7_tenants.py with the given arguments in the bench's environment."""

    def run(args: list[str]) -> dict[str, Any]:
        out = run_checked([PY, "bench/m7_tenants.py", *args], env, 3600, "m7 tenants")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    return run


async def m7(
    b: Bench,
    plan: Plan,
    n: int,
    base: int,
    tenants: Tenants,
    fresh: Callable[[str], Awaitable[None]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    t0 = time.monotonic()
    leftover = await asyncio.to_thread(tenants, ["--cleanup"])
    if leftover["dropped"]:
        log(f"M7: dropped {leftover['dropped']} tenants left by an earlier run")
    low = await asyncio.to_thread(tenants, ["--upto", str(base)])
    await fresh(f"M7 M1 at {low['tenants']} tenants")
    m1_low = await m1_closed(b, plan, log)
    log(f"M7: creating tenants up to {n}")
    high = await asyncio.to_thread(tenants, ["--upto", str(n)])
    await fresh(f"M7 M1 at {high['tenants']} tenants")
    m1_high = await m1_closed(b, plan, log)
    dropped = await asyncio.to_thread(tenants, ["--cleanup"])
    seconds = [*low["seconds"], *high["seconds"]]
    creation = summary(seconds)

    def move(key: str) -> float | None:
        lo, hi = m1_low[key]["median"], m1_high[key]["median"]
        return r3(hi / lo - 1) if lo and hi is not None else None

    out = {
        "n_asked": n,
        "base_asked": base,
        "tenants_low": low["tenants"],
        "tenant_schemas_low": low["tenant_schemas"],
        "tenants_high": high["tenants"],
        "tenant_schemas_high": high["tenant_schemas"],
        "template_current": bool(low["template_current"] and high["template_current"]),
        "creation_seconds": creation,
        "creation_within_target": creation.get("max", 99.0) < TARGET_CREATE_SECONDS,
        "creation_raw_seconds": [round(s, 4) for s in seconds],
        "m1_low": m1_summary(m1_low),
        "m1_high": m1_summary(m1_high),
        "m1_p50_move": move("added_p50_ms"),
        "m1_p99_move": move("added_p99_ms"),
        "dropped_after": dropped["dropped"],
        "seconds": round(time.monotonic() - t0, 1),
    }
    log(
        f"M7: creation p50 {creation.get('p50')} s, p99 {creation.get('p99')} s, max "
        f"{creation.get('max')} s over {creation.get('n', 0)}; M1 p50 "
        f"{m1_low['added_p50_ms']['median']} ms at {low['tenants']} tenants, "
        f"{m1_high['added_p50_ms']['median']} ms at {high['tenants']} (move {out['m1_p50_move']})"
    )
    return out


def m1_summary(closed: dict[str, Any]) -> dict[str, Any]:
    """``m1_closed``'s result without the raw samples."""
    keys = ("added_p50_ms", "added_p99_ms", "direct_p50_ms", "platform_p50_ms")
    return {
        **{key: closed[key] for key in keys},
        "pairs": sum(r["pairs"] for r in closed["rounds"]),
        "errors": sum(r["errors"]["count"] for r in closed["rounds"]),
    }


# ---------------------------------------------------------------------------------------------
# report


def _f(value: Any, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def m7_target_rows(res: dict[str, Any]) -> list[str]:
    """The M7 rows of the report's target table (none when the phase did not run)."""
    m = res.get("m7")
    if not m:
        return []
    if "failed" in m:
        return [
            f"| M7 | Tenant creation and M1 against the number of schemas | | failed: "
            f"{m['failed'][:160]} | |"
        ]
    c = m["creation_seconds"]
    move = m["m1_p50_move"]
    return [
        f"| M7 | Tenant creation (`tenant_create`: schema, domain, operator, key), max of "
        f"{c.get('n', 0)} (p50, p99) | < {TARGET_CREATE_SECONDS:.0f} s | "
        f"{_f(c.get('max'), 3, ' s')} ({_f(c.get('p50'), 3)}, {_f(c.get('p99'), 3)}) | "
        f"{'met' if m['creation_within_target'] else 'not met'} |",
        f"| M7 | M1 p50 move from {m['tenant_schemas_low']} to {m['tenant_schemas_high']} tenant "
        f"schemas (target: 10 to 10,000) | < {TARGET_M1_MOVE:.0%} | "
        f"{_f(None if move is None else move * 100, 1, ' %')} | "
        f"{'met' if move is not None and abs(move) < TARGET_M1_MOVE else 'not met'}"
        f"{'' if m['tenant_schemas_high'] >= 10_000 else ' at this N'} |",
    ]


def render_m7(res: dict[str, Any]) -> list[str]:
    """The report's M7 section (empty when the phase did not run)."""
    m = res.get("m7")
    if not m or "failed" in m:
        return []
    lo, hi, c = m["m1_low"], m["m1_high"], m["creation_seconds"]
    lines = [
        "\n### M7 tenant creation and the number of tenant schemas\n",
        f"{c.get('n', 0)} tenants created through `tenant_create` (schema "
        f"{'copied from the template schema' if m['template_current'] else 'migrated'}, "
        "domain, first operator with its PBKDF2 password hash, first API key, audit entries), "
        "then dropped again. M1 at 1 client on a freshly started server, before and after.\n",
        "| Creation s | p50 | p90 | p99 | max | n |",
        "|---|---|---|---|---|---|",
        f"| | {_f(c.get('p50'), 3)} | {_f(c.get('p90'), 3)} | {_f(c.get('p99'), 3)} | "
        f"{_f(c.get('max'), 3)} | {c.get('n', 0)} |",
        "",
        "| Tenants (schemas) | M1 added p50 ms (min-max) | added p99 ms | direct p50 ms | "
        "Pairs | Errors |",
        "|---|---|---|---|---|---|",
    ]
    for count, schemas, row in (
        (m["tenants_low"], m["tenant_schemas_low"], lo),
        (m["tenants_high"], m["tenant_schemas_high"], hi),
    ):
        a = row["added_p50_ms"]
        lines.append(
            f"| {count} ({schemas}) | {_f(a['median'])} ({_f(a['min'])}-{_f(a['max'])}) | "
            f"{_f(row['added_p99_ms']['median'])} | {_f(row['direct_p50_ms']['median'])} | "
            f"{row['pairs']} | {row['errors']} |"
        )
    lines.append(
        f"\nM1(N)/M1(base) - 1: p50 {_f(m['m1_p50_move'], 3)}, p99 {_f(m['m1_p99_move'], 3)}."
    )
    return lines


# ---------------------------------------------------------------------------------------------
# alone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, required=True, help="tenants to reach")
    parser.add_argument("--base", type=int, default=10, help="tenants of the first M1")
    parser.add_argument("--quick", action="store_true", help="the quick plan's M1 (fewer pairs)")
    parser.add_argument("--pairs", type=int, default=None, help="M1 pairs per round")
    parser.add_argument("--rounds", type=int, default=None, help="M1 rounds")
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "cb_bench"))
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--no-migrate", action="store_true", help="the database is migrated")
    parser.add_argument("--out", type=Path, help="write the phase's JSON here too")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    overrides = {"m1_pairs": args.pairs, "m1_rounds": args.rounds}
    plan = Plan(**{**plan.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    sys.path.insert(0, str(ROOT))
    workdir = Path(tempfile.mkdtemp(prefix="cb-m7-"))
    procs = Processes(workdir)
    env = bench_env(args, workdir)
    try:
        if not args.no_migrate:
            run_checked(
                [PY, "manage.py", "migrate_schemas", "--verbosity", "0"], env, 900, "migrate"
            )
        fake_url = f"http://{HOST}:{free_port()}"
        fake = procs.start(
            "fakellm",
            [PY, "-m", "agents.fakellm", "--host", HOST, "--port", fake_url.rsplit(":", 1)[1]],
            env,
        )
        wait_http(f"{fake_url}/v1/models", fake, 20, "fake LLM")
        out = run_checked(
            [PY, "bench/setup_db.py", "--fake-url", fake_url, "--extra-tenants", "0"],
            env,
            900,
            "setup",
        )
        setup = json.loads(out.strip().splitlines()[-1])
        platform_url = f"http://{HOST}:{free_port()}"
        web_argv = server_argv("daphne", int(platform_url.rsplit(":", 1)[1]))

        def restart() -> None:
            procs.stop("web")
            web = procs.start("web", web_argv, env)
            wait_http(f"{platform_url}/healthz", web, 60, "daphne")

        async def phase() -> dict[str, Any]:
            b = Bench(platform_url, fake_url, setup)

            async def fresh(name: str) -> None:
                await asyncio.to_thread(restart)
                await b.renew_platform()
                b.begin(name)
                for _ in range(plan.rewarm):
                    await b.execute()

            try:
                await asyncio.to_thread(restart)
                first = await b.execute()
                if not first.ok:
                    raise RuntimeError(f"the first execution failed: {first.error}")
                await b.capture_body("fast")  # what the direct calls send (bench/m1.py)
                return await m7(b, plan, args.n, args.base, tenants_runner(env), fresh, log)
            finally:
                await b.aclose()

        res = asyncio.run(phase())
    except BaseException:
        for name in procs.procs:
            print(f"--- {name} log (tail) ---\n{procs.tail(name)}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    print("\n".join([*m7_target_rows({"m7": res}), *render_m7({"m7": res})]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
