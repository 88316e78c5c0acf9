"""MCP (Model Context Protocol): the platform's agents as tools, executions as resources.

- ``server``: the SDK server with every handler, for one caller whose tenant and principal the
  HTTP layer fixed: ``tools``, ``resources`` (and subscriptions), ``prompts``, over the
  execution core, with what they share in ``common``;
- ``app``: the ASGI layer at ``/mcp`` in front of Channels: host, origin and credential checks
  (``tenants.access``), the SDK's Streamable HTTP app, and its session manager's lifetime
  (daphne sends no lifespan events);
- ``sessions``: 2025-11-25 sessions without server state (signed ids, stored subscriptions,
  the session's notification stream);
- ``catalog``: what a tenant's agents look like as MCP tools;
- ``client``: tools of remote MCP servers inside agents (the engine's runner for kind ``mcp``).
"""
