"""Docs are executed against a live server and worker, with the fixtures of those tests."""

from tests.worker.conftest import clean_queue, spawn_worker  # noqa: F401  (fixtures)
