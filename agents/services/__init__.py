"""Writes of the agents app: credentials, agents and their versions, executions."""
