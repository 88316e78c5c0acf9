"""The core's end-to-end tests use the WebSocket and HTTP fixtures of their own packages."""

from tests.ws.conftest import ws  # noqa: F401  (a fixture, re-exported for these tests)
