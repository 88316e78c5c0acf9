"""Workflow files (YAML or JSON, with a published JSON Schema) loaded with the command:
idempotent, versioned on change, all-or-nothing, safe YAML only."""

from __future__ import annotations

import json
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context
from jsonschema import Draft202012Validator

from tests.agents.conftest import make_agent, make_credential
from tests.workflow_bridge.test_cascade import review_flow
from workflow_bridge.definitions import compile_definition
from workflow_bridge.models import StateAgent, Workflow

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs/agents/workflow.schema.json").read_text())


def _file(tmp_path: Path, content: dict[str, Any], *, as_json: bool = False) -> Path:
    path = tmp_path / ("workflow.json" if as_json else "workflow.yaml")
    path.write_text(json.dumps(content) if as_json else yaml.safe_dump(content))
    return path


def _load(path: Path, tenant: str) -> dict[str, Any]:
    out = StringIO()
    call_command("load_workflow", str(path), "--tenant", tenant, "--json", stdout=out)
    return dict(json.loads(out.getvalue()))


def _with_binding(slug: str, agent_slug: str) -> dict[str, Any]:
    return {
        **review_flow(slug),
        "state_agents": [
            {
                "place": "summarising",
                "agent": agent_slug,
                "output_mapping": {"data.summary": "output"},
                "auto_activity": "summarised",
            }
        ],
    }


def test_a_yaml_file_creates_then_versions_a_workflow_and_its_bindings(
    alpha: Any, tmp_path: Path
) -> None:
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema)
    slug = f"from-file-{uuid.uuid4().hex[:6]}"
    content = _with_binding(slug, agent.slug)
    first = _load(_file(tmp_path, content), alpha.slug)
    assert first["created"] and first["version"] == 1 and first["state_agents"] == 1
    again = _load(_file(tmp_path, content), alpha.slug)
    assert not again["created"] and again["version"] == 1  # unchanged: no new version
    content["name"] = "Review, renamed"
    content["state_agents"][0]["auto_activity"] = ""
    changed = _load(_file(tmp_path, content, as_json=True), alpha.slug)
    assert changed["version"] == 2
    with schema_context(alpha.schema):
        workflow = Workflow.objects.get(slug=slug)
        assert workflow.name == "Review, renamed"
        (binding,) = StateAgent.objects.filter(workflow=workflow)
        assert binding.auto_activity == "" and binding.output_mapping == {"data.summary": "output"}


def test_a_bad_file_stores_nothing_and_says_where(alpha: Any, tmp_path: Path) -> None:
    slug = f"bad-{uuid.uuid4().hex[:6]}"
    content = _with_binding(slug, "no-such-agent")
    with pytest.raises(CommandError, match=r"^state_agents\[0\]\.agent: no agent 'no-such-agent'"):
        _load(_file(tmp_path, content), alpha.slug)
    broken = tmp_path / "broken.yaml"
    broken.write_text("slug: [unclosed\n")
    with pytest.raises(CommandError, match="not valid YAML"):
        _load(broken, alpha.slug)
    with schema_context(alpha.schema):
        assert not Workflow.objects.filter(slug=slug).exists()  # the workflow rolled back too


def test_yaml_tags_that_would_build_python_objects_are_refused(alpha: Any, tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text('slug: !!python/object/apply:os.system ["touch /tmp/pwned"]\n')
    with pytest.raises(CommandError, match="not valid YAML"):
        _load(hostile, alpha.slug)


def test_the_published_schema_accepts_what_the_platform_accepts(tmp_path: Path) -> None:
    validator = Draft202012Validator(SCHEMA)
    net = {
        "format": "circuit-breaker/workflow@1",
        "slug": "fork-join",
        "places": ["start", "a", "b", "end"],
        "initial_marking": {"start": 1},
        "transitions": [
            {"id": "split", "inputs": ["start"], "outputs": ["a", "b"]},
            {"id": "join", "inputs": ["a", {"place": "b", "weight": 1}], "outputs": ["end"]},
        ],
        "final_places": ["end"],
    }
    for good in (review_flow("review"), net, _with_binding("bound", "summariser")):
        assert list(validator.iter_errors(good)) == []
        definition = {k: v for k, v in good.items() if not k.endswith("_agents")}
        compile_definition(definition)  # the platform agrees
    for bad in (
        {**net, "states": ["x"]},  # both shapes at once
        {**net, "slug": "Not A Slug"},
        {**net, "transitions": [{"id": "t", "inputs": []}]},
        {**review_flow("r"), "rules": [{"id": "r", "condition": {"type": "AlwaysTrue"}}]},
        {**review_flow("r"), "extra": 1},
    ):
        assert list(validator.iter_errors(bad)), bad
