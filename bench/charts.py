"""SVG charts of a benchmark run (matplotlib, the ``bench`` extra of pyproject.toml).

matplotlib is imported inside ``draw_all`` only, so the rest of bench/ (and ``--render``)
works without it: ``draw_all`` then returns no charts and a note saying why, which the doc
prints. The SVGs are meant to be committed (docs/performance/), so they are made small and
reproducible: text stays text (``svg.fonttype: none``, no embedded glyphs), element ids come
from a fixed salt and the file carries no date, so the same JSON gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import M3_P99_LIMIT_MS

# Chart file name -> what it shows (alt text in the doc).
TITLES = {
    "m1-latency-cdf": "M1: latency CDF at 1 client, direct vs platform, and the added latency",
    "m1-open-loop": "M1 open loop: target rate vs achieved rate and p99",
    "m2-ttft-cdf": "M2: time to first token, direct vs platform",
    "m3-rate-vs-p99": "M3: executions/s vs p99 per client level, and the stub alone",
    "servers": "ASGI servers side by side",
    "history": "Before and after: M1 and M2 p50 per recorded run",
}
DIRECT, PLATFORM, ADDED = "#4c72b0", "#dd8452", "#55a868"


def draw_all(
    res: dict[str, Any], history: list[dict[str, Any]], out_dir: Path
) -> tuple[dict[str, str], str | None]:
    """Draws every chart the run's figures allow into ``out_dir``. Returns {chart name: file
    path} and a note when charts could not be drawn (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display; must precede pyplot
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, (
            "matplotlib is not installed, so this run has no charts "
            "(`pip install -e '.[bench]'`, or `make bench`, installs it)"
        )
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "cb-bench",
            "font.size": 9,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 100,
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    drawers: dict[str, Callable[[Any, dict[str, Any]], bool]] = {
        "m1-latency-cdf": _m1_cdf,
        "m1-open-loop": _m1_open,
        "m2-ttft-cdf": _m2_ttft,
        "m3-rate-vs-p99": _m3,
        "servers": _servers,
    }
    written: dict[str, str] = {}
    for name in [*drawers, "history"]:
        fig = plt.figure(figsize=(7.5, 3.6))
        try:
            drawn = _history(fig, history) if name == "history" else drawers[name](fig, res)
        except (KeyError, TypeError, ValueError, IndexError):
            drawn = False  # an older or partial results file: skip that chart
        if drawn:
            fig.tight_layout()
            path = out_dir / f"{name}.svg"
            fig.savefig(path, format="svg", metadata={"Date": None})
            written[name] = str(path)
        plt.close(fig)
    return written, None


def _num(value: Any) -> float:
    """matplotlib wants floats: a missing figure is a gap in the line (NaN)."""
    return float(value) if isinstance(value, int | float) else float("nan")


def _cdf(ax: Any, values: list[float], label: str, color: str) -> None:
    """An empirical CDF, thinned to at most ~250 steps (the SVG stays small; a step is then
    a few tenths of a percent of the calls, below what the eye sees) with the extremes kept."""
    xs = sorted(values)
    n = len(xs)
    every = max(1, n // 250)
    keep = sorted({*range(0, n, every), n - 1})
    ax.step(
        [xs[i] for i in keep], [(i + 1) / n for i in keep], where="post", label=label, color=color
    )


def _upper(values: list[float], q: float = 0.995) -> float:
    """Where to cut an axis so a few outliers do not squash the curve (said in the title)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1.15


def _m1_cdf(fig: Any, res: dict[str, Any]) -> bool:
    direct: list[float] = []
    through: list[float] = []
    for item in res["m1"]["closed"]["rounds"]:
        rawd = item.get("raw") or {}
        d, p = rawd.get("direct_ms") or [], rawd.get("platform_ms") or []
        if len(d) == len(p):
            direct.extend(d)
            through.extend(p)
    if not direct:
        return False
    left, right = fig.subplots(1, 2)
    _cdf(left, direct, f"direct (n={len(direct)})", DIRECT)
    _cdf(left, through, "through the platform", PLATFORM)
    left.set_xlim(0, _upper(through))
    left.set_xlabel("latency at 1 client (ms)")
    left.set_ylabel("fraction of calls")
    left.set_title("Direct vs platform (x axis to p99.5)", fontsize=9)
    left.legend(loc="lower right")
    added = [p - d for d, p in zip(direct, through, strict=True)]
    _cdf(right, added, "platform minus direct, per pair", ADDED)
    right.axvline(res["targets"]["m1_p50_ms"], color="grey", ls="--", lw=1, label="target p50")
    right.set_xlim(0, _upper(added))
    right.set_xlabel("added latency (ms)")
    right.set_title("Added latency, paired (x axis to p99.5)", fontsize=9)
    right.legend(loc="lower right")
    return True


def _m1_open(fig: Any, res: dict[str, Any]) -> bool:
    opens = res["m1"]["open"]
    if not opens:
        return False
    left, right = fig.subplots(1, 2)
    target = [o["target_rate"] for o in opens]
    left.plot(target, target, color="grey", ls="--", lw=1, label="target")
    left.plot(target, [o["achieved_rate"] for o in opens], "o-", color=PLATFORM, label="achieved")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("target arrival rate (pairs/s)")
    left.set_ylabel("rate (/s)")
    left.set_title("Rate", fontsize=9)
    left.legend()
    for key, label, color in (
        ("platform_ms", "platform p99", PLATFORM),
        ("added_ms", "added p99", ADDED),
        ("direct_ms", "direct p99", DIRECT),
    ):
        ys = [_num(o[key].get("p99")) for o in opens]
        right.plot(target, ys, "o-", color=color, label=label)
    right.axhline(res["targets"]["m1_p99_at_200_ms"], color="grey", ls="--", lw=1)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("target arrival rate (pairs/s)")
    right.set_ylabel("p99 (ms)")
    right.set_title("p99 (dashed: target at 200/s)", fontsize=9)
    right.legend()
    return True


def _quantile_points(summary: dict[str, Any]) -> tuple[list[float], list[float]]:
    """A coarse CDF from a summary (min, p50, p90, p99, max) when no raw samples exist."""
    keys = (("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
    pts = [(summary[k], q) for k, q in keys if summary.get(k) is not None]
    return [x for x, _ in pts], [q for _, q in pts]


def _m2_ttft(fig: Any, res: dict[str, Any]) -> bool:
    rounds = res["m2"]["rounds"]
    if not rounds:
        return False
    ax = fig.subplots(1, 1)
    direct = [v for r in rounds for v in (r.get("raw") or {}).get("ttft_direct_ms") or []]
    through = [v for r in rounds for v in (r.get("raw") or {}).get("ttft_platform_ms") or []]
    if direct and through:
        _cdf(ax, direct, f"direct (n={len(direct)})", DIRECT)
        _cdf(ax, through, "through the platform (SSE)", PLATFORM)
        ax.set_title("Time to first token, all rounds", fontsize=9)
    else:  # results from before raw samples were kept: per-round percentiles only
        for i, r in enumerate(rounds):
            for key, label, color in (
                ("ttft_direct_ms", "direct", DIRECT),
                ("ttft_platform_ms", "platform (SSE)", PLATFORM),
                ("ttft_added_ms", "added", ADDED),
            ):
                xs, qs = _quantile_points(r[key])
                ax.plot(xs, qs, "o-", color=color, alpha=0.8, label=label if i == 0 else None)
        ax.set_title(
            "Time to first token: min, p50, p90, p99, max of each round "
            "(this run kept no raw samples)",
            fontsize=9,
        )
    ax.set_xlabel("time to first token (ms)")
    ax.set_ylabel("fraction of streams")
    ax.legend(loc="lower right")
    return True


def _m3(fig: Any, res: dict[str, Any]) -> bool:
    m3 = res["m3"]
    curve, stub = m3["curve"], m3.get("stub") or []
    if not curve:
        return False
    ax = fig.subplots(1, 1)
    for series, label, color in (
        (curve, "platform, blocking executions", PLATFORM),
        (stub, "the stub alone, direct calls", DIRECT),
    ):
        xs = [c["throughput_per_s"] for c in series]
        ys = [_num(c["latency_ms"].get("p99")) for c in series]
        ax.plot(xs, ys, "o-", color=color, label=label)
        for c, x, y in zip(series, xs, ys, strict=True):
            ax.annotate(f"{c['concurrency']}", (x, y), textcoords="offset points", xytext=(4, 4))
    ax.axhline(M3_P99_LIMIT_MS, color="grey", ls="--", lw=1, label="p99 limit (100 ms)")
    ax.axvline(res["targets"]["m3_per_s"], color="grey", ls=":", lw=1, label="target 500/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("Closed-loop ramp; numbers: concurrent clients", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, fontsize=8)
    return True


def _servers(fig: Any, res: dict[str, Any]) -> bool:
    servers = (res.get("server_comparison") or {}).get("servers") or {}
    if not servers:
        return False
    names = list(servers)
    panels: list[tuple[str, list[tuple[str, Callable[[dict[str, Any]], Any]]]]] = [
        (
            "M1 added (ms)",
            [
                ("p50", lambda s: s["m1"]["added_ms"].get("p50")),
                ("p99", lambda s: s["m1"]["added_ms"].get("p99")),
            ],
        ),
        (
            "M2 TTFT added (ms)",
            [
                ("p50", lambda s: s["m2"]["ttft_added_ms"].get("p50")),
                ("p99", lambda s: s["m2"]["ttft_added_ms"].get("p99")),
            ],
        ),
        ("M3 best (/s)", [("best", lambda s: (s["m3"].get("best") or {}).get("throughput_per_s"))]),
        ("CPU per execution (ms)", [("cpu", lambda s: s.get("cpu_ms_per_execution"))]),
    ]
    axes = fig.subplots(1, len(panels))
    for ax, (title, bars) in zip(axes, panels, strict=True):
        width = 0.8 / len(bars)
        for j, (label, get) in enumerate(bars):
            values = [get(servers[n]) or 0 for n in names]
            xs = [i + j * width for i in range(len(names))]
            ax.bar(xs, values, width, label=label if len(bars) > 1 else None)
        ticks = [i + (len(bars) - 1) * width / 2 for i in range(len(names))]
        ax.set_xticks(ticks, names, fontsize=7, rotation=25)
        ax.set_title(title, fontsize=9)
        if len(bars) > 1:
            ax.legend(fontsize=7)
    return True


def _history(fig: Any, history: list[dict[str, Any]]) -> bool:
    if len(history) < 2:
        return False
    ax = fig.subplots(1, 1)
    xs = list(range(len(history)))
    for key, label, color in (
        ("m1_p50_ms", "M1 added p50", PLATFORM),
        ("m2_ttft_p50_ms", "M2 added TTFT p50", ADDED),
    ):
        ax.plot(xs, [_num(h.get(key)) for h in history], "o-", color=color, label=label)
    ax.set_xticks(
        xs, [f"{h.get('commit', '?')}\n{h.get('limits', '?')}" for h in history], fontsize=7
    )
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ms")
    ax.set_title("Recorded runs, oldest first (commit, limits)", fontsize=9)
    ax.legend()
    return True
