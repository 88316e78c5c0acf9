"""REST and SSE endpoints for agents and executions (tenant URLconf)."""
