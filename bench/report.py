"""Markdown rendering of the results table (bench/results/*.md)."""

from __future__ import annotations

from typing import Any

from common import PROFILE_LANDMARKS, TARGETS
from m4 import render_m4
from m7 import m7_target_rows, render_m7
from stats import r3

# ---------------------------------------------------------------------------------------------
# reporting


def verdict(value: float | None, target: float, *, at_least: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if at_least else value <= target
    return "met" if ok else "not met"


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def spread(item: dict[str, Any], unit: str = " ms") -> str:
    if item.get("median") is None:
        return "n/a"
    if item.get("rounds", 0) <= 1:
        return f"{item['median']:.2f}{unit}"
    return f"{item['median']:.2f}{unit} ({item['min']:.2f}-{item['max']:.2f})"


def headline(res: dict[str, Any]) -> dict[str, Any]:
    m1c, m2r, m3r = res["m1"]["closed"], res["m2"], res["m3"]
    opens = res["m1"]["open"]
    at200 = next((o for o in opens if o["target_rate"] == 200), None)
    top = max(opens, key=lambda o: o["target_rate"]) if opens else None
    direct_p50 = m1c["direct_p50_ms"]["median"]
    plat_p50 = m1c["platform_p50_ms"]["median"]
    ratio = plat_p50 / direct_p50 if direct_p50 and plat_p50 else None
    best = m3r["best"]
    through_best = best["throughput_per_s"] if best else None
    highest = (m3r.get("highest_observed") or {}).get("throughput_per_s")
    direct_best = m3r["direct_best_throughput_per_s"]
    out_hist = {int(k): v for k, v in m2r["chunks_out_histogram"].items()}
    n = m2r["chunks_scripted"]
    streams = sum(out_hist.values())
    equal = out_hist.get(n, 0)
    return {
        "m1_p50_ms": m1c["added_p50_ms"]["median"],
        "m1_open_at_200": at200,
        "m1_open_top": top,
        "m2_ttft_p50_ms": m2r["ttft_added_p50_ms"]["median"],
        "m2_ttft_p99_ms": m2r["ttft_added_p99_ms"]["median"],
        "m2_gap_p99_ms": m2r["gap_added_p99_ms"]["median"],
        "m2_streams": streams,
        "m2_streams_n_out": equal,
        "m3_best": through_best,
        "stub_latency_ratio": r3(ratio),
        "stub_throughput_ratio": r3(direct_best / highest) if direct_best and highest else None,
    }


def upgrade_result(res: dict[str, Any]) -> dict[str, Any]:
    """A results file written while the main phases always ran on daphne, under today's
    names (the figures are daphne's: ``environment.asgi_server`` says so)."""
    cpu = ((res.get("m1") or {}).get("cpu")) or {}
    for old, new in (
        ("daphne_ms_per_execution", "server_ms_per_execution"),
        ("daphne_system_ms_per_execution", "server_system_ms_per_execution"),
    ):
        if old in cpu:
            cpu.setdefault(new, cpu.pop(old))
    steps = ((res.get("ladder") or {}).get("steps_p50_ms")) or {}
    if "daphne_django_middleware" in steps:
        steps.setdefault("server_django_middleware", steps.pop("daphne_django_middleware"))
    return res


def results_markdown(res: dict[str, Any]) -> str:
    h = headline(res)
    m1c, m2r, m3r, lad = res["m1"]["closed"], res["m2"], res["m3"], res["ladder"]
    env = res["environment"]
    lines: list[str] = []
    add = lines.append
    add(f"Run `{res['meta']['run_id']}` ({res['meta']['plan']}), {res['meta']['started_at']}, ")
    add(
        f"{env['cpu_count']} CPUs ({env['cpu_model']}), load average at start "
        f"{env['loadavg_start']}; total {res['meta']['seconds']:.0f} s.\n"
    )
    add("| # | Metric | Target | Measured | Verdict |")
    add("|---|---|---|---|---|")
    add(
        f"| M1 | Added latency, blocking persisted execution, p50 at 1 client "
        f"(median of {m1c['added_p50_ms']['rounds']} rounds, min-max) | ≤ "
        f"{TARGETS['m1_p50_ms']:.0f} ms | {spread(m1c['added_p50_ms'])} | "
        f"{verdict(h['m1_p50_ms'], TARGETS['m1_p50_ms'])} |"
    )
    at200 = h["m1_open_at_200"]
    if at200 is not None:
        p99 = at200["added_ms"].get("p99")
        achieved = (
            f"{fmt(p99, ' ms')} of the requests that ran: {at200['scheduled']} arrivals in "
            f"{at200['seconds']:.0f} s, at most {at200.get('max_inflight', '?')} in flight, "
            f"{at200['dropped_inflight_bound']} dropped at that bound; achieved "
            f"{fmt(at200['achieved_rate'], '/s', 0)}, errors {at200['errors']['count']}, "
            f"timed out {at200['timed_out']}"
        )
        ok = verdict(p99, TARGETS["m1_p99_at_200_ms"])
        if at200["achieved_rate"] < 190 or at200["dropped_inflight_bound"] or at200["timed_out"]:
            ok = "not met (rate not sustained)"
        add(f"| M1 | Added latency p99 at 200 req/s (open loop) | ≤ 20 ms | {achieved} | {ok} |")
    else:
        top = h["m1_open_top"]
        if top:
            add(
                f"| M1 | Added latency p99 at {top['target_rate']} req/s (open loop; 200/s "
                f"not run in this plan) | ≤ 20 ms at 200/s | {fmt(top['added_ms'].get('p99'), ' ms')}"
                f" | n/a |"
            )
    add(f"| M1 | Same, p99 at 1 client | — | {spread(m1c['added_p99_ms'])} | |")
    add(
        f"| M1 | `X-Platform-Overhead-Ms` reported by the platform, p50 / p99 at 1 client | — | "
        f"{spread(m1c['header_p50_ms'])} / {spread(m1c['header_p99_ms'])} | |"
    )
    add(
        f"| M2 | Added time to first token over SSE, p50 (p99) | ≤ 5 ms | "
        f"{spread(m2r['ttft_added_p50_ms'])} ({spread(m2r['ttft_added_p99_ms'])}) | "
        f"{verdict(h['m2_ttft_p50_ms'], TARGETS['m2_ttft_p50_ms'])} |"
    )
    add(
        f"| M2 | Added gap between chunks, p99 (p50) | ≤ 2 ms | "
        f"{spread(m2r['gap_added_p99_ms'])} ({spread(m2r['gap_added_p50_ms'])}) | "
        f"{verdict(h['m2_gap_p99_ms'], TARGETS['m2_gap_p99_ms'])} |"
    )
    add(
        f"| M2 | N chunks in = N out (live SSE client) | all streams | "
        f"{h['m2_streams_n_out']}/{h['m2_streams']} streams delivered all "
        f"{m2r['chunks_scripted']} chunks as separate events (chunk events per stream: "
        + ", ".join(f"{k}: {v} streams" for k, v in m2r["chunks_out_histogram"].items())
        + ") | "
        f"{'met' if h['m2_streams'] and h['m2_streams_n_out'] == h['m2_streams'] else 'not met'} |"
    )
    best = m3r["best"]
    top = m3r.get("highest_observed")
    best_txt = (
        f"{best['throughput_per_s']:.0f}/s at {best['concurrency']} clients (p99 "
        f"{best['p99_ms']:.1f} ms)"
        if best
        else "no level within limits"
    )
    if top and (not best or top["concurrency"] != best["concurrency"]):
        # A level where every call failed has no latency: say so rather than crash the report.
        p99 = "no successful call" if top["p99_ms"] is None else f"p99 {top['p99_ms']:.0f} ms"
        best_txt += (
            f"; highest seen {top['throughput_per_s'] or 0:.0f}/s at {top['concurrency']} "
            f"clients ({p99})"
        )
    add(
        f"| M3 | Executions/s until p99 > 100 ms or errors > 0.1 % | ≥ 500/s | {best_txt} | "
        f"{verdict(h['m3_best'], TARGETS['m3_per_s'], at_least=True)} |"
    )
    add(
        f"| — | Stub ≥ 10x faster than the platform: capacity (stub alone, peak calls/s over "
        f"platform peak executions/s); for information, platform/direct latency p50 at 1 "
        f"client | ≥ 10x | {fmt(h['stub_throughput_ratio'], 'x', 1)} "
        f"({fmt(m3r['direct_best_throughput_per_s'], '/s', 0)} vs "
        f"{fmt((m3r.get('highest_observed') or {}).get('throughput_per_s'), '/s', 0)}); "
        f"latency {fmt(h['stub_latency_ratio'], 'x', 1)} | "
        f"{verdict(h['stub_throughput_ratio'], TARGETS['stub_ratio'], at_least=True)} |"
    )
    lines.extend(m7_target_rows(res))  # M7 (bench/m7.py), when run
    add("")
    add("### M1 at 1 client, per round (ms)\n")
    add("| Round | Pairs | Added p50 | p90 | p99 | Header p50 | p99 | Direct p50 | Platform p50 |")
    add("|---|---|---|---|---|---|---|---|---|")
    for item in m1c["rounds"]:
        a, hd = item["added_ms"], item["overhead_header_ms"]
        add(
            f"| {item['round']} | {item['pairs']} | {fmt(a.get('p50'))} | {fmt(a.get('p90'))} | "
            f"{fmt(a.get('p99'))} | {fmt(hd.get('p50'))} | {fmt(hd.get('p99'))} | "
            f"{fmt(item['direct_ms'].get('p50'))} | {fmt(item['platform_ms'].get('p50'))} |"
        )
    add(
        "\n### M1 at a constant arrival rate (open loop, one (direct, platform) pair per arrival)\n"
    )
    bound = next((o.get("max_inflight") for o in res["m1"]["open"]), None)
    add(
        f"Arrivals that find {bound} pairs already in flight are dropped and counted, not "
        "queued in the client: past the platform's capacity the table shows the capacity and "
        "the drops, not an ever-growing queue.\n"
    )
    add(
        "| Target /s | Sent /s | Achieved /s | OK | Errors | Dropped at bound | Timed out | "
        "Added p50 | p90 | p99 | Platform p99 | Direct p99 | Client lag p99 | Stopped by guard |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for o in res["m1"]["open"]:
        a = o["added_ms"]
        add(
            f"| {o['target_rate']} | {fmt(o.get('sent_rate', o['offered_rate']), '', 0)} | "
            f"{fmt(o['achieved_rate'], '', 0)} | {o['completed_ok']} | {o['errors']['count']} | "
            f"{o['dropped_inflight_bound']} | {o['timed_out']} | {fmt(a.get('p50'))} | "
            f"{fmt(a.get('p90'))} | {fmt(a.get('p99'))} | "
            f"{fmt(o['platform_ms'].get('p99'))} | {fmt(o['direct_ms'].get('p99'))} | "
            f"{fmt(o['client_send_lag_ms'].get('p99'))} | "
            f"{'yes' if o.get('halted_by_db_guard') else 'no'} |"
        )
    add(
        f"\n### M2 per round ({m2r['chunks_scripted']} chunks, "
        f"{m2r['chunk_delay_ms']:.0f} ms apart, ms)\n"
    )
    add(
        "| Round | Pairs | TTFT added p50 | p99 | Direct TTFT p50 | Gap added p50 | p99 | "
        "Platform gap p50 | p99 | Count mismatches | Text mismatches |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for item in m2r["rounds"]:
        t, g, gp = item["ttft_added_ms"], item["gap_added_ms"], item["gap_platform_ms"]
        add(
            f"| {item['round']} | {item['pairs']} | {fmt(t.get('p50'))} | {fmt(t.get('p99'))} | "
            f"{fmt(item['ttft_direct_ms'].get('p50'))} | {fmt(g.get('p50'))} | "
            f"{fmt(g.get('p99'))} | {fmt(gp.get('p50'))} | {fmt(gp.get('p99'))} | "
            f"{item['chunk_count_mismatches']} | {item['text_mismatches']} |"
        )
    add("\n### M3 closed-loop ramp (blocking executions)\n")
    add(
        "| Clients | Executions/s | p50 ms | p99 ms | Errors | PostgreSQL connections (peak) | OK |"
    )
    add("|---|---|---|---|---|---|---|")
    top_rate = max((c["throughput_per_s"] or 0 for c in m3r["curve"]), default=0) or 1
    for c in m3r["curve"]:
        bar = "#" * max(1, round(20 * (c["throughput_per_s"] or 0) / top_rate))
        peak = c.get("db_connections_peak") or {}
        add(
            f"| {c['concurrency']} | {fmt(c['throughput_per_s'], '', 1)} `{bar}` | "
            f"{fmt(c['latency_ms'].get('p50'))} | {fmt(c['latency_ms'].get('p99'))} | "
            f"{c['errors']['count']} | {peak.get('bench_db', 'n/a')} (server "
            f"{peak.get('server', 'n/a')}) | {'yes' if c['within_limits'] else 'no'} |"
        )
    if m3r["stopped_by"]:
        add(f"\nRamp stopped at {m3r['stopped_by']}.")
    add("\nThe stub alone, same client, same levels (it must stay far ahead and flat):\n")
    add("| Clients | Direct calls/s | p50 ms | p99 ms | Errors |")
    add("|---|---|---|---|---|")
    for item in m3r["stub"]:
        add(
            f"| {item['concurrency']} | {fmt(item['throughput_per_s'], '', 0)} | "
            f"{fmt(item['latency_ms'].get('p50'))} | {fmt(item['latency_ms'].get('p99'))} | "
            f"{item['errors']} |"
        )
    lines.extend(render_m4(res))  # M4/M5 (bench/m4.py)
    lines.extend(render_m7(res))  # M7 (bench/m7.py)
    add("\n### Request ladder (1 client, p50 of each rung, interleaved in random order)\n")
    add("| Rung | p50 ms | p90 ms |")
    add("|---|---|---|")
    names = {
        "stub_get": "GET the stub's /v1/models (loopback HTTP + minimal ASGI server)",
        "direct_chat": "Direct streamed chat completion to the stub (the M1 baseline)",
        "platform_healthz": "Platform GET /healthz (server + Django + middleware, no DB)",
        "platform_agent_get": "Platform GET /agents/{id} (+ API key auth, tenant, DRF, 1 query)",
        "platform_execute": "Platform POST /agents/{id}/execute (blocking, persisted)",
    }
    for key, label in names.items():
        rung = lad["rungs"].get(key, {})
        add(f"| {label} | {fmt(rung.get('p50'))} | {fmt(rung.get('p90'))} |")
    db = res.get("db_accounting") or {}
    cpu = res["m1"].get("cpu") or {}
    prof = res.get("profile") or {}
    log_info = res.get("server_log") or {}
    if "lines" in log_info:
        add(
            f"\nServer log over the run (all phases; the platform's own access lines): "
            f"{log_info['lines']} lines, {log_info['access_log_lines']} access-log lines, "
            f"{log_info['error_lines']} errors/tracebacks."
        )
        for kind, count in list((log_info.get("errors") or {}).items())[:6]:
            add(f"- {count}x `{kind.replace('`', '')[:300]}`")
    if prof.get("self_by_group"):
        add(
            f"\n### Sampling profile of the server ({prof['executions']} sequential blocking "
            f"executions, p50 {fmt(prof['latency_ms'].get('p50'))} ms under the profiler)\n"
        )
        add(
            f"Busy thread time per execution: {fmt(prof['busy_thread_ms_per_execution'], ' ms')}"
            f" (sampling period {fmt(prof['sampling_period_ms'], ' ms')}). Where the innermost "
            "known frame of each busy sample was:\n"
        )
        add("| Code | ms per execution | Share |")
        add("|---|---|---|")
        for name, item in sorted(
            prof["self_by_group"].items(), key=lambda kv: -(kv[1]["ms_per_execution"] or 0)
        ):
            if (item["share"] or 0) < 0.01:
                continue
            add(f"| {name} | {fmt(item['ms_per_execution'])} | {item['share'] * 100:.0f} % |")
        add("\nInclusive time of the heaviest functions (ms per execution, all threads):\n")
        add("| Function | ms per execution |")
        add("|---|---|")
        shown = 0
        for label, value in prof["inclusive_ms_per_execution"].items():
            if label.startswith(("agents/", "tenants/", "config/")) or any(
                key in label for key in PROFILE_LANDMARKS
            ):
                add(f"| `{label}` | {fmt(value)} |")
                shown += 1
            if shown >= 25:
                break
    add("")
    if cpu:
        add(
            f"CPU per blocking execution during M1 at 1 client: server "
            f"{fmt(cpu.get('server_ms_per_execution'), ' ms')}, fake LLM "
            f"{fmt(cpu.get('fake_ms_per_call'), ' ms')} per call, benchmark client "
            f"{fmt(cpu.get('client_ms_per_pair'), ' ms')} per pair, PostgreSQL backends "
            f"{fmt(cpu.get('postgres_ms_per_execution'), ' ms')} per execution, whole machine "
            f"{fmt(cpu.get('machine_ms_per_pair'), ' ms')} per pair."
        )
    if db.get("per_execution"):
        per = db["per_execution"]
        add(
            f"PostgreSQL per blocking execution ({db['executions']} sequential): "
            f"{fmt(per['sessions'])} new sessions, {fmt(per['xact_commit'])} commits, "
            f"{fmt(per['tup_inserted'])} rows inserted, {fmt(per['tup_updated'])} updated."
        )
    lines.extend(openai_markdown(res))
    lines.extend(servers_markdown(res))
    return "\n".join(lines) + "\n"


def openai_markdown(res: dict[str, Any]) -> list[str]:
    """The report's section for the OpenAI-compatible endpoint (empty when not measured)."""
    measured = res.get("openai")
    if not measured:
        return []
    m1, m2 = measured["m1"], measured["m2"]
    lines = [
        "\n### Through the OpenAI-compatible endpoint (`POST /v1/chat/completions`)\n",
        "The same agents, upstream body and direct baseline as M1 and M2, asked in OpenAI's "
        "format (`model: agent:<slug>`; streams with `stream_options.include_usage`).\n",
        "| Metric | Measured (median of rounds, min-max) |",
        "|---|---|",
        f"| M1 added latency p50 / p99 at 1 client | {spread(m1['added_p50_ms'])} / "
        f"{spread(m1['added_p99_ms'])} |",
        f"| M2 added time to first token p50 / p99 | {spread(m2['ttft_added_p50_ms'])} / "
        f"{spread(m2['ttft_added_p99_ms'])} |",
        f"| M2 added gap between chunks p99 | {spread(m2['gap_added_p99_ms'])} |",
        "| Errors (M1, M2) | "
        + fmt(sum(r["errors"]["count"] for r in m1["rounds"]), "", 0)
        + ", "
        + fmt(sum(r["errors"]["count"] for r in m2["rounds"]), "", 0)
        + " |",
    ]
    return lines


def _pair(item: dict[str, Any], digits: int = 2) -> str:
    return f"{fmt(item.get('p50'), '', digits)} / {fmt(item.get('p99'), '', digits)}"


def servers_markdown(res: dict[str, Any]) -> list[str]:
    """The report's "ASGI servers side by side" section (empty when not measured)."""
    compared = res.get("server_comparison")
    if not compared:
        return []
    plan, rows = compared["plan"], compared["servers"]
    lines = [
        "\n### ASGI servers side by side\n",
        f"Each server in turn (in this order: {', '.join(compared['order'])}), freshly "
        "started and warmed, on the same database, fake LLM, tenant, agents and API key as "
        f"above: the ladder ({plan['ladder_rounds']} rounds), one M1 round of "
        f"{plan['m1_pairs']} pairs at 1 client, one M2 round of {plan['m2_pairs']} streams, "
        f"an M3 ramp over {', '.join(str(n) for n in plan['m3_levels'])} clients "
        f"({plan['m3_seconds']:.0f} s each, stopped at the first level past p99 100 ms), and "
        "executions over the agents WebSocket. CPU is that of the server's whole process tree "
        "during M1 (granian serves from a worker process of its own), divided by the "
        "executions. Every server logs at warning level with no access log of its own (the "
        "platform's own access line per request is the same under all of them). One round "
        "each: differences of a millisecond or two are within this shared machine's noise.\n",
        "| Server | M1 added p50 / p99 ms | M2 TTFT added p50 / p99 ms | M3 peak within limits "
        "| `/healthz` p50 ms | CPU ms / execution (kernel) | Processes | WebSocket | Errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        versions = row.get("versions") or {}
        label = f"{name} {versions.get(name, '')}".strip()
        extra = [f"{d} {v}" for d, v in versions.items() if d != name]
        if extra:
            label += f" ({', '.join(extra)})"
        if "m1" not in row:
            lines.append(f"| {label} | failed: {row.get('failed', '?')[:160]} | | | | | | | |")
            continue
        m3 = row.get("m3") or {}
        best = m3.get("best")
        peak = (
            f"{best['throughput_per_s']:.0f}/s at {best['concurrency']} clients (p99 "
            f"{best['p99_ms']:.0f} ms)"
            if best
            else "no level within limits"
        )
        ws = row.get("ws") or {}
        ws_txt = "not run"
        if ws:
            ws_txt = (
                f"ok ({ws['completed']}/{ws['runs']}, p50 {fmt(ws['latency_ms'].get('p50'))} ms)"
                if ws["ok"]
                else f"failed ({ws['completed']}/{ws['runs']}"
                + (f": {ws['errors'][0][:120]}" if ws["errors"] else "")
                + ")"
            )
        errors = row["m1"]["errors"]["count"] + (row.get("m2") or {}).get("errors", {}).get(
            "count", 0
        )
        errors_txt = f"{errors} calls, {row.get('log_error_lines', 0)} log errors"
        if row.get("failed"):
            errors_txt += f"; stopped: {row['failed'][:160]}"
        lines.append(
            f"| {label} | {_pair(row['m1']['added_ms'])} | "
            f"{_pair((row.get('m2') or {}).get('ttft_added_ms') or {})} | {peak} | "
            f"{fmt((row.get('healthz_ms') or {}).get('p50'))} | "
            f"{fmt(row.get('cpu_ms_per_execution'))} "
            f"({fmt(row.get('system_cpu_ms_per_execution'))}) | {row.get('processes', '?')} | "
            f"{ws_txt} | {errors_txt} |"
        )
    lines.append("\nCommand lines (`PORT` chosen per run):\n")
    lines.extend(f"- {name}: `{row['command']}`" for name, row in rows.items())
    best = compared.get("fastest") or {}
    served = best.get("served_every_interface") or []
    lines.append(
        "\n"
        + (
            f"Served HTTP, SSE and the WebSocket without an error: {', '.join(served)}. "
            f"Among them the lowest M1 added p50 is {best['by_m1_p50']}'s and the highest "
            f"M3 rate within limits {best['by_m3_peak']}'s."
            if served
            else "No server served HTTP, SSE and the WebSocket without an error."
        )
        + (
            " A quick run: one short round each ranks nothing that differs by less than the "
            "run-to-run spread; confirm with a full run."
            if res["meta"]["plan"] == "quick"
            else ""
        )
    )
    lines.append(
        "\n**Production default: daphne**, for now. granian was the fastest in every full run "
        "(M1, CPU per execution; two worker processes the best M3), and the whole suite passes "
        "on it (`LIVE_SERVER=granian`), but in M4 it held only ~240 idle SSE streams of 10,000 "
        "asked, busy at ~100 % CPU while they idled (cause not found yet), and an idle WebSocket "
        "costs ~150 KiB of granian's own buffers (measured against a bare ASGI app), where "
        "daphne's whole cost per connection is ~40 KiB. `platform/Procfile` has granian as the "
        "alternative web line for request-heavy nodes. uvicorn is out: its WebSocket `send` "
        "returns while a non-reading client's frames pile up, so the slow-consumer guard "
        "cannot hold under it. `granian:N` rows are N worker processes."
    )
    return lines
