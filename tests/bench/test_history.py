"""bench/history.json bookkeeping (bench/report_history.py): pure functions, no database,
no matplotlib (``make test`` does not install the ``bench`` extra)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # bench/ is scripts with flat imports, not a package

import report_history  # noqa: E402


def _run(run_id: str, limits: str, m1: float, plan: str = "full") -> dict[str, Any]:
    return {
        "meta": {
            "run_id": run_id,
            "plan": plan,
            "started_at": "2026-12-07T12:00:00+00:00",
            "git": {"commit": "abc1234", "local_changes": 0},
        },
        "setup": {"limits": limits},
        "m1": {
            "closed": {"added_p50_ms": {"median": m1}, "added_p99_ms": {"median": m1 * 2}},
            "cpu": {"daphne_ms_per_execution": 10.0},
        },
        "m2": {"ttft_added_p50_ms": {"median": 12.0}},
        "m3": {"best": {"throughput_per_s": 70.0}},
        "db_accounting": {
            "per_execution": {"xact_commit": 3.0, "tup_inserted": 2.0, "tup_updated": 1.0}
        },
    }


def test_deltas_compare_with_the_previous_row_of_the_same_limits() -> None:
    history = [
        {"limits": "none", "m1_p50_ms": 12.0},
        {"limits": "metered", "m1_p50_ms": 16.0},
        {"limits": "none", "m1_p50_ms": 10.0},
        {"limits": "metered", "m1_p50_ms": 15.0, "m3_per_s": 60},
    ]
    m1 = [row["m1_p50_ms"] for row in report_history.deltas(history)]
    assert m1 == [None, None, -2.0, -1.0]
    assert report_history.deltas(history)[3]["m3_per_s"] is None  # nothing to compare with


def test_record_appends_a_full_run_once(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    assert report_history.record(_run("r1", "none", 12.0), "first", path)
    assert not report_history.record(_run("r1", "none", 12.0), "again", path)
    assert not report_history.record(_run("q1", "none", 9.0, plan="quick"), "quick", path)
    assert report_history.record(_run("r2", "none", 11.0), "second", path)
    rows = json.loads(path.read_text())
    assert [(r["run_id"], r["label"], r["m1_p50_ms"]) for r in rows] == [
        ("r1", "first", 12.0),
        ("r2", "second", 11.0),
    ]
    table = report_history.history_markdown(rows, None)
    assert "11.00 ms (-1.00)" in table
