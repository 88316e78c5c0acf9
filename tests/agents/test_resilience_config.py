"""Agent configuration can name every retryable error kind, the broken-stream one included."""

from __future__ import annotations

import pytest

from agents.providers.base import RETRYABLE_KINDS
from agents.validation import RETRYABLE_ERRORS, validate_agent_config
from config.errors import ValidationFailed


def validate(**config: object) -> None:
    data = {"slug": "retrying", "name": "Retrying", "model": "fake-model", **config}
    validate_agent_config(
        data, self_slug=None, agent_exists=lambda slug: False, credential_exists=lambda c: False
    )


def test_every_retryable_kind_may_be_named() -> None:
    assert set(RETRYABLE_ERRORS) == {kind.value for kind in RETRYABLE_KINDS}
    validate(
        retry_on_errors=[
            "timeout",
            "rate_limit",
            "network_error",
            "server_error",
            "malformed_response",
        ]
    )


@pytest.mark.parametrize("kind", ["authentication", "invalid_request", "circuit_open", "boom"])
def test_permanent_or_unknown_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate(retry_on_errors=[kind])
    assert caught.value.message.startswith("retry_on_errors:")
    assert "malformed_response" in caught.value.message
