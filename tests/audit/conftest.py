from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.core.management import CommandError, call_command

from tenants.audit.services import auth_failure_budget

# Fixtures of other suites used here: the live WebSocket environment, a committed agent (MCP).
from tests.api.conftest import live_agent  # noqa: F401
from tests.ws.conftest import ws  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_auth_failure_budget():
    auth_failure_budget.reset()
    yield
    auth_failure_budget.reset()


@dataclass(frozen=True)
class CommandResult:
    status: int
    out: str


def run_command(*args: str) -> CommandResult:
    """A management command's exit status and output, as a shell would see them."""
    out = io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return CommandResult(error.returncode, out.getvalue() + str(error))
    return CommandResult(0, out.getvalue())
