"""What a finished (or re-rendered) run leaves behind besides its results JSON: the history
entry, the charts and docs/performance.md. Shared by a measuring run and ``--render``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charts import draw_all
from common import DOC
from report_doc import doc_markdown
from report_history import load_history, record

DOC_CHARTS = DOC.parent / "performance"


def publish(
    res: dict[str, Any],
    results_json: Path,
    *,
    docs: bool,
    label: str | None,
    log: Callable[[str], None] = print,
) -> None:
    """Records the run in bench/history.json if ``label`` is given, draws the charts and, if
    ``docs``, rewrites docs/performance.md. The doc's charts go to docs/performance/ only when
    the doc is rewritten; otherwise (quick runs, ``--no-docs``) they go next to the results
    file, so a quick run never replaces the charts the doc shows."""
    if label:
        added = record(res, label)
        run_id = (res.get("meta") or {}).get("run_id")
        log(
            f"history: run {run_id} recorded in bench/history.json"
            if added
            else f"history: run {run_id} not recorded (already there, failed, or not a full run)"
        )
    history = load_history()
    out_dir = DOC_CHARTS if docs else results_json.with_name(results_json.stem + "-charts")
    written, note = draw_all(res, history, out_dir)
    if note:
        log(f"charts: {note}")
    else:
        log(f"charts: {len(written)} written to {out_dir}")
    if docs:
        relative = {
            name: os.path.relpath(path, DOC.parent).replace(os.sep, "/")
            for name, path in written.items()
        }
        DOC.write_text(doc_markdown(res, relative, note, history))
