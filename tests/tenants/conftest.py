from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenants.audit.services import auth_failure_budget


@pytest.fixture(autouse=True)
def _fresh_auth_failure_budget() -> Iterator[None]:
    """Each test starts with full audit budgets: a test that floods a tenant with bad
    credentials must not silence the entries the next test looks for."""
    auth_failure_budget.reset()
    yield
    auth_failure_budget.reset()
