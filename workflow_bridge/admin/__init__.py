"""The tenant admin for workflows: workflows (definition, versions, analysis, a drawing of the
net with the tokens of its resources), resources (read-only, with history, agent runs and the
activities an operator may fire), rules and the agents bound to places and activities.

Every write goes through ``workflow_bridge.services``, so a form refuses what the API refuses,
with the same reason, shown on the field it names. Importing this package registers the
pages on ``config.admin_sites.tenant_admin_site`` (Django's admin autodiscovery does it).
"""

from __future__ import annotations

from workflow_bridge.admin import configuration, resources, workflows

__all__ = ["configuration", "resources", "workflows"]
