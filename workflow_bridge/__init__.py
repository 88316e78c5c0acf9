"""Workflows: Petri nets whose places can run agents."""
