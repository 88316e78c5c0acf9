"""Seal the HTTP tool header values stored in clear text before sealing existed, in agents and
in every stored version (see agents.services.tool_secrets). Runs in each tenant schema."""

from __future__ import annotations

from django.db import migrations


def seal_clear_text_headers(apps, schema_editor) -> None:
    from agents.crypto import field_key_ring
    from agents.services.tool_secrets import reseal_tools

    ring = field_key_ring()
    Agent = apps.get_model("agents", "Agent")
    AgentVersion = apps.get_model("agents", "AgentVersion")
    for agent in Agent.objects.only("pk", "tools").iterator():
        tools, changed = reseal_tools(agent.tools, ring)
        if changed:
            agent.tools = tools
            agent.save(update_fields=["tools"])
    for version in AgentVersion.objects.only("pk", "config").iterator():
        tools, changed = reseal_tools(version.config.get("tools"), ring)
        if changed:
            version.config = {**version.config, "tools": tools}
            version.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [("agents", "0004_execution_run_agent_permission")]

    # Sealing cannot be undone: the reverse leaves the values sealed (they still open).
    operations = [migrations.RunPython(seal_clear_text_headers, migrations.RunPython.noop)]
