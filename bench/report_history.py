"""Before and after: bench/history.json (one entry per recorded full run) and its table.

``bench/run.py --record "what changed"`` appends the run's headline figures after a full run;
``--render <json> --record "..."`` records an existing results file. The file is committed, so
the doc can show every change that mattered next to the figures it moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import ROOT
from report import fmt

HISTORY = ROOT / "bench" / "history.json"
# The figures compared row to row: (key, column title, unit, digits).
COMPARED = (
    ("m1_p50_ms", "M1 p50", " ms", 2),
    ("m2_ttft_p50_ms", "M2 TTFT p50", " ms", 2),
    ("m3_per_s", "M3", "/s", 0),
    ("cpu_ms_per_exec", "CPU/exec", " ms", 1),
)


def load_history(path: Path = HISTORY) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else []


def entry_from_results(res: dict[str, Any], label: str) -> dict[str, Any]:
    """A run's headline figures, as history.json keeps them."""
    meta = res.get("meta") or {}
    git = meta.get("git") or {}
    m1c = ((res.get("m1") or {}).get("closed")) or {}
    db = ((res.get("db_accounting") or {}).get("per_execution")) or {}
    entry: dict[str, Any] = {
        "run_id": meta.get("run_id"),
        "date": str(meta.get("started_at", ""))[:10] or None,
        "commit": git.get("commit"),
        "limits": (res.get("setup") or {}).get("limits", "none"),
        "label": label,
        # Runs before the main phases took --server ran on daphne.
        "server": ((res.get("environment") or {}).get("asgi_server_name")) or "daphne",
        "m1_p50_ms": (m1c.get("added_p50_ms") or {}).get("median"),
        "m1_p99_ms": (m1c.get("added_p99_ms") or {}).get("median"),
        "m2_ttft_p50_ms": (((res.get("m2") or {}).get("ttft_added_p50_ms")) or {}).get("median"),
        "m3_per_s": (((res.get("m3") or {}).get("best")) or {}).get("throughput_per_s"),
        "cpu_ms_per_exec": (((res.get("m1") or {}).get("cpu")) or {}).get(
            "server_ms_per_execution"
        ),
        "pg_commits_per_exec": db.get("xact_commit"),
    }
    if db.get("tup_updated") is not None:
        entry["statements_note"] = (
            f"{db['xact_commit']:.2f} commits, {db.get('tup_inserted', 0):.0f} rows inserted, "
            f"{db['tup_updated']:.0f} updated per execution"
        )
    if git.get("local_changes"):
        entry["local_changes"] = git["local_changes"]
    return entry


def record(res: dict[str, Any], label: str, path: Path = HISTORY) -> bool:
    """Appends the run to the history; False (and nothing written) if its run_id is there
    already or the run is not a complete full run."""
    if res.get("failed") or (res.get("meta") or {}).get("plan") != "full":
        return False
    entry = entry_from_results(res, label)
    history = load_history(path)
    if entry["run_id"] and any(h.get("run_id") == entry["run_id"] for h in history):
        return False
    history.append(entry)
    path.write_text(json.dumps(history, indent=1) + "\n")
    return True


def deltas(history: list[dict[str, Any]]) -> list[dict[str, float | None]]:
    """Per entry, the change of each compared figure against the previous entry with the same
    ``limits`` (runs with and without limits are not comparable); None where there is none."""
    out: list[dict[str, float | None]] = []
    previous: dict[str, dict[str, Any]] = {}
    for h in history:
        before = previous.get(h.get("limits", "none"))
        row: dict[str, float | None] = {}
        for key, *_ in COMPARED:
            now, then = h.get(key), (before or {}).get(key)
            if isinstance(now, int | float) and isinstance(then, int | float):
                row[key] = float(now - then)
            else:
                row[key] = None
        out.append(row)
        previous[h.get("limits", "none")] = h
    return out


def _cell(value: Any, delta: float | None, unit: str, digits: int) -> str:
    if value is None:
        return "—"
    text = fmt(float(value), unit, digits)
    if delta is None:
        return text
    return f"{text} ({delta:+.{digits}f})"


def history_markdown(history: list[dict[str, Any]], chart: str | None) -> str:
    if not history:
        return 'No run has been recorded yet (`bench/run.py --record "what changed"`).\n'
    lines = [
        "From `bench/history.json`, oldest first: one row per recorded full run, with what "
        "changed before it. In brackets: the change against the previous row with the same "
        "limits (runs with every limit switched on pay the limit checks, so they are compared "
        "with each other only). M1 and M2 are added latencies at 1 client (p50), M3 the best "
        "executions/s within the p99 limit, CPU the server's processes' CPU per blocking "
        "execution. The first rows were seeded from earlier versions of this file; a row "
        "without a run id holds figures quoted in the performance issue (its results file "
        "was not kept).",
        "",
        "| Date | Commit | Server | Limits | What changed | "
        + " | ".join(title for _, title, _, _ in COMPARED)
        + " | M1 p99 | PostgreSQL per execution |",
        "|---|---|---|---|---|" + "---|" * len(COMPARED) + "---|---|",
    ]
    for h, d in zip(history, deltas(history), strict=True):
        cells = [_cell(h.get(k), d[k], unit, digits) for k, _, unit, digits in COMPARED]
        pg = h.get("statements_note") or (
            f"{h['pg_commits_per_exec']:.2f} commits"
            if isinstance(h.get("pg_commits_per_exec"), int | float)
            else "—"
        )
        run = f" (`{h['run_id']}`)" if h.get("run_id") else ""
        lines.append(
            f"| {h.get('date') or '?'} | {h.get('commit') or '?'}{run} | "
            f"{h.get('server') or 'daphne'} | {h.get('limits')} | "
            f"{h.get('label', '')} | "
            + " | ".join(cells)
            + f" | {_cell(h.get('m1_p99_ms'), None, ' ms', 2)} | {pg} |"
        )
    if chart:
        lines += ["", f"![M1 and M2 p50 per recorded run]({chart})"]
    return "\n".join(lines) + "\n"
