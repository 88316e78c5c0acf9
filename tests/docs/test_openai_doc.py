"""docs/agents/openai.md, executed: its shell blocks run in order against a live server on the
test database, and its Python session (the official OpenAI SDK) runs as written."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.docs.pages import blocks, run_page

DOC = ROOT / "docs/agents/openai.md"

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_openai_page_runs_as_written(live_server_url: Any, tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the page uses curl and jq, and this machine lacks one of them")
    scripts, files = blocks(DOC.read_text())
    assert len(scripts) == 3 and set(files) == {"session.py"}
    (tmp_path / "session.py").write_text(files["session.py"])
    done = run_page(
        scripts, tmp_path, API=live_server_url.url, TENANT=f"doc-{uuid.uuid4().hex[:8]}"
    )
    out = [line for line in done.stdout.splitlines() if line]
    assert '{"slug":"helper","version":1}' in out
    models = json.loads(next(line for line in out if line.startswith('["')))
    assert models[0] == "agent:helper" and "echo" in models
    assert '{"object":"chat.completion","content":"echo: Who is on call?","finish":"stop"}' in out
    # The streamed curl: the usage chunk, then [DONE].
    done_at = out.index("data: [DONE]")
    usage_chunk = json.loads(out[done_at - 1].removeprefix("data: "))
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    # The SDK session.
    assert "answer: echo: Who is on call?" in out
    assert any(line.startswith("execution: exec_") for line in out)
    chunks = [line.removeprefix("chunk: ") for line in out if line.startswith("chunk: ")]
    # Chunks as the event log stored them (consecutive ones may be coalesced into one).
    assert chunks and " ".join(chunks) == "echo: count to three"
    assert any(line.startswith("tokens: ") and int(line.split()[1]) > 0 for line in out)
    assert "responses: echo: Are you there?" in out
    assert "streamed: echo: hi there" in out
    # The last call is an ordinary execution over REST.
    assert out[-1] == '{"status":"completed","output":"echo: hi there"}'
