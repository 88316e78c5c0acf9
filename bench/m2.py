"""M2: streaming (time to first token, gaps between chunks)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from client import Bench, Errors, paired
from common import Plan
from m1 import stream_step
from stats import across, raw, summary


async def m2(b: Bench, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    rounds = []
    chunk_counts_in: Counter[int] = Counter()
    chunk_counts_out: Counter[int] = Counter()
    await b.clear("stream")
    await b.script("stream", stream_step(plan), 6)
    for _ in range(3):  # the stream path of a freshly started server, warmed
        await paired(lambda: b.direct_call("stream"), b.execute_stream)
    for index in range(plan.m2_rounds):
        await b.clear("stream")
        await b.script("stream", stream_step(plan), plan.m2_pairs * 2 + 4)
        ttft_d: list[float] = []
        ttft_p: list[float] = []
        ttft_added: list[float] = []
        first_event_added: list[float] = []
        gaps_d: list[float] = []
        gaps_p: list[float] = []
        gaps_added: list[float] = []
        total_added: list[float] = []
        mismatched = 0
        text_mismatch = 0
        errors = Errors()
        t0 = time.monotonic()
        deadline = t0 + 60
        for _ in range(plan.m2_pairs):
            if time.monotonic() > deadline or b.halted():
                break
            d, p = await paired(lambda: b.direct_call("stream"), b.execute_stream)
            errors.add(d)
            errors.add(p)
            if not (d.ok and p.ok) or d.ttft_ms is None or p.ttft_ms is None:
                continue
            chunk_counts_in[len(d.stamps_ms)] += 1
            chunk_counts_out[len(p.stamps_ms)] += 1
            ttft_d.append(d.ttft_ms)
            ttft_p.append(p.ttft_ms)
            ttft_added.append(p.ttft_ms - d.ttft_ms)
            if p.first_event_ms is not None:
                first_event_added.append(p.first_event_ms - d.ttft_ms)
            total_added.append(p.latency_ms - d.latency_ms)
            if d.text != p.text:
                text_mismatch += 1
            dg = [y - x for x, y in zip(d.stamps_ms, d.stamps_ms[1:], strict=False)]
            pg = [y - x for x, y in zip(p.stamps_ms, p.stamps_ms[1:], strict=False)]
            gaps_d.extend(dg)
            gaps_p.extend(pg)
            if len(dg) == len(pg):
                gaps_added.extend(y - x for x, y in zip(dg, pg, strict=True))
            else:
                mismatched += 1
        item: dict[str, Any] = {
            "round": index + 1,
            "pairs": len(ttft_added),
            "seconds": round(time.monotonic() - t0, 2),
            "ttft_added_ms": summary(ttft_added),
            "first_event_added_ms": summary(first_event_added),
            "ttft_direct_ms": summary(ttft_d),
            "ttft_platform_ms": summary(ttft_p),
            "gap_added_ms": summary(gaps_added),
            "gap_direct_ms": summary(gaps_d),
            "gap_platform_ms": summary(gaps_p),
            "total_added_ms": summary(total_added),
            "chunk_count_mismatches": mismatched,
            "text_mismatches": text_mismatch,
            "errors": errors.json(),
            # Raw samples for the TTFT CDF chart (bench/charts.py).
            "raw": {"ttft_direct_ms": raw(ttft_d), "ttft_platform_ms": raw(ttft_p)},
        }
        rounds.append(item)
        log(
            f"M2 round {index + 1}: TTFT added p50 {item['ttft_added_ms'].get('p50')} "
            f"p99 {item['ttft_added_ms'].get('p99')} ms; gap added p50 "
            f"{item['gap_added_ms'].get('p50')} p99 {item['gap_added_ms'].get('p99')} ms; "
            f"chunk count mismatches {mismatched}/{len(ttft_added)}; errors {errors.count}"
        )
    await b.clear("stream")
    return {
        "chunks_scripted": plan.m2_chunks,
        "chunk_delay_ms": plan.m2_chunk_delay * 1000,
        "rounds": rounds,
        "ttft_added_p50_ms": across(rounds, "ttft_added_ms", "p50"),
        "ttft_added_p99_ms": across(rounds, "ttft_added_ms", "p99"),
        "gap_added_p50_ms": across(rounds, "gap_added_ms", "p50"),
        "gap_added_p99_ms": across(rounds, "gap_added_ms", "p99"),
        "gap_platform_p99_ms": across(rounds, "gap_platform_ms", "p99"),
        "chunks_in_histogram": dict(sorted(chunk_counts_in.items())),
        "chunks_out_histogram": dict(sorted(chunk_counts_out.items())),
    }
