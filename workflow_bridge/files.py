"""Workflow files: a tenant keeps its workflows in its own repository, as YAML or JSON, and
loads them with ``manage.py load_workflow`` or the API.

A file is a workflow definition (``format: circuit-breaker/workflow@1``; see
``workflow_bridge/definitions.py`` and the JSON Schema ``docs/agents/workflow.schema.json``)
plus, optionally, the agents bound to it::

    state_agents:
      - place: summarising
        agent: summariser            # an agent of the tenant, by slug
        output_mapping: {data.summary: output}
        auto_activity: summarised
    activity_agents:
      - activity: approve
        agent: approver
        required: true

Loading is idempotent: the workflow is created, or its next version stored when the definition
changed (by ``slug``); bindings are created or updated by (place, agent) / (activity, agent),
with the same validation as everywhere else. Nothing is stored unless all of it is valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from django.db import transaction

from config.errors import ValidationFailed
from workflow_bridge.binding_services import activity_agent_save, bound_agent, state_agent_save
from workflow_bridge.models import ActivityAgent, StateAgent, Workflow
from workflow_bridge.services import workflow_save

FileFormat = Literal["yaml", "json"]
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Loaded:
    workflow: Workflow
    created: bool
    state_agents: int
    activity_agents: int


def parse_workflow_file(text: str | bytes, fmt: FileFormat) -> dict[str, Any]:
    """The file's content as a dict; ``ValidationFailed`` saying where it does not parse.
    YAML is read with the safe loader (no Python objects, no tags that run code)."""
    if len(text) > MAX_FILE_BYTES:
        raise ValidationFailed(f"file: larger than {MAX_FILE_BYTES} bytes")
    try:
        content = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"file: not valid YAML ({exc})".replace("\n", " ")) from None
    except ValueError as exc:
        raise ValidationFailed(f"file: not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise ValidationFailed("file: must hold one workflow (a mapping at the top)")
    return content


def load_workflow(content: dict[str, Any], *, actor: str, schema_name: str) -> Loaded:
    """Create or update the workflow a file describes, and its agent bindings, atomically
    (current tenant schema)."""
    definition = dict(content)
    state_agents = definition.pop("state_agents", None) or []
    activity_agents = definition.pop("activity_agents", None) or []
    for field, value in (("state_agents", state_agents), ("activity_agents", activity_agents)):
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ValidationFailed(f"{field}: must be a list of bindings")
    with transaction.atomic():
        existing = Workflow.objects.filter(slug=definition.get("slug")).first()
        workflow = workflow_save(
            definition=definition, actor=actor, schema_name=schema_name, workflow=existing
        )
        for index, data in enumerate(state_agents):
            try:
                binding = _state_binding(workflow, data)
                state_agent_save(workflow=workflow, data=data, binding=binding)
            except ValidationFailed as exc:
                raise ValidationFailed(f"state_agents[{index}].{exc.message}") from None
        for index, data in enumerate(activity_agents):
            try:
                activity_binding = _activity_binding(workflow, data)
                activity_agent_save(workflow=workflow, data=data, binding=activity_binding)
            except ValidationFailed as exc:
                raise ValidationFailed(f"activity_agents[{index}].{exc.message}") from None
    return Loaded(workflow, existing is None, len(state_agents), len(activity_agents))


def _state_binding(workflow: Workflow, data: dict[str, Any]) -> StateAgent | None:
    if "agent" not in data or "place" not in data:
        return None
    agent = bound_agent(data["agent"])
    return StateAgent.objects.filter(workflow=workflow, place=data["place"], agent=agent).first()


def _activity_binding(workflow: Workflow, data: dict[str, Any]) -> ActivityAgent | None:
    if "agent" not in data or "activity" not in data:
        return None
    agent = bound_agent(data["agent"])
    return ActivityAgent.objects.filter(
        workflow=workflow, activity=data["activity"], agent=agent
    ).first()
