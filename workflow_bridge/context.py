"""Between resources and agents: the seed's generic execution context and the way back.

``resource_to_context`` builds what an agent run sees (seed §4.2.2): ``tenant_id``,
``workflow_context`` {resource_id, workflow_id, state_id, transition_id, metadata}, the
resource's ``data``, and a ``user_context`` when a person started the step. A state agent's
``input_mapping`` picks its input from there (``{"text": "data.document"}``).

``apply_output`` writes an agent's output back through its ``output_mapping``: targets are
``data.<path>`` or ``metadata.<path>``, sources ``output`` or ``output.<path>``. Each target is
set at its path and everything else is kept: the data is merged, never replaced. Without a
mapping the whole output lands at ``data.agent_outputs.<agent slug>``.
"""

from __future__ import annotations

import re
from typing import Any, cast

from agents.engine.context import lookup, set_path
from config.errors import ValidationFailed
from workflow_bridge.net import merge_patch

_TARGET = re.compile(r"^(data|metadata)(\.[A-Za-z0-9_-]+)+$")
_SOURCE = re.compile(r"^output(\.[A-Za-z0-9_-]+)*$")


def resource_to_context(
    *,
    schema_name: str,
    resource_id: str,
    workflow_id: str,
    place: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    transition_id: str = "",
    user_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The context an agent run for a resource gets (the core adds ``execution_id``)."""
    context: dict[str, Any] = {
        "tenant_id": schema_name,
        "workflow_context": {
            "resource_id": resource_id,
            "workflow_id": workflow_id,
            "state_id": place,
            "transition_id": transition_id,
            "metadata": metadata,
        },
        "data": data,
    }
    if user_context:
        context["user_context"] = user_context
    return context


def merge_data(data: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A resource's data with ``patch`` merged in (RFC 7386: ``null`` deletes a key)."""
    merged = merge_patch(data, patch)
    # An object patch always yields an object (RFC 7386, section 2).
    return cast(dict[str, Any], merged)


def check_output_mapping(mapping: Any, field: str = "output_mapping") -> dict[str, str]:
    """Refuse a mapping whose targets are not ``data.*``/``metadata.*`` or whose sources are
    not ``output``/``output.*``, naming the entry."""
    if not isinstance(mapping, dict):
        raise ValidationFailed(f"{field}: must be an object of resource paths to output paths")
    for target, source in mapping.items():
        if not isinstance(target, str) or not _TARGET.match(target):
            raise ValidationFailed(
                f"{field}: {target!r} must be a path under data. or metadata. (data.summary)"
            )
        if not isinstance(source, str) or not _SOURCE.match(source):
            raise ValidationFailed(f"{field}.{target}: {source!r} must be output or output.<path>")
    return dict(mapping)


def apply_output(
    *,
    data: dict[str, Any],
    metadata: dict[str, Any],
    output: Any,
    mapping: dict[str, str],
    agent_slug: str,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(new data, new metadata, what was written: target → value). Sources the output lacks
    are skipped (and not written), never turned into nulls."""
    view = {"output": output}
    written: dict[str, Any] = {}
    targets = mapping or {f"data.agent_outputs.{agent_slug}": "output"}
    new_data, new_metadata = dict(data), dict(metadata)
    for target, source in targets.items():
        found, value = lookup(view, source)
        if not found:
            continue
        root, _, path = target.partition(".")
        if root == "data":
            new_data = set_path(new_data, path, value)
        else:
            new_metadata = set_path(new_metadata, path, value)
        written[target] = value
    return new_data, new_metadata, written
