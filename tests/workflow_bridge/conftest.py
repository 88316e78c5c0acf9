"""Workflow tests run agents in real workers, with the worker tests' fixtures."""

from tests.agents.conftest import in_alpha  # noqa: F401  (fixtures)
from tests.worker.conftest import clean_queue, spawn_worker  # noqa: F401
