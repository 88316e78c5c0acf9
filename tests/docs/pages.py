"""Running a documentation page as written: its shell blocks, in order, in one bash, from a
scratch folder where `$PY manage.py ...` works as it does from the checkout, against the
test database. A page and the platform that drift apart fail here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.worker.conftest import database_url

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def blocks(text: str) -> tuple[list[str], dict[str, str]]:
    """The page's shell blocks in order, and its files (```yaml file=NAME)."""
    scripts: list[str] = []
    files: dict[str, str] = {}
    for language, info, body in FENCE.findall(text):
        named = re.search(r"file=(\S+)", info)
        if named:
            files[named.group(1)] = body
        elif language == "sh":
            scripts.append(body)
    return scripts, files


def run_page(
    scripts: list[str], folder: Path, *, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts`` with ``set -euo pipefail`` in ``folder`` (``env`` adds variables the
    page uses, e.g. ``API``, ``TENANT``); the run must succeed, its output is returned."""
    (folder / "manage.py").write_text(
        f"import runpy, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        f"runpy.run_path({str(ROOT / 'manage.py')!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(scripts)],
        cwd=folder,
        env={
            **os.environ,
            "PY": sys.executable,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "DATABASE_URL": database_url(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done
