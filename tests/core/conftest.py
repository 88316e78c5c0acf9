"""The core's tests use fixtures of the packages whose interfaces they go through."""

from tests.agents.conftest import in_alpha  # noqa: F401  (fixtures, re-exported for these tests)
from tests.ws.conftest import ws  # noqa: F401
