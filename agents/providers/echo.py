"""Deterministic offline provider: replies with the last user message, no network at all.

Used for demos, tests and the benchmark baseline. The reply is ``"echo: <text>"`` (or
``{"echo": "<text>"}`` in JSON mode) streamed one word at a time, with estimated usage.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from agents.providers.base import (
    ChatRequest,
    Finished,
    ProviderConfig,
    ProviderEvent,
    TextDelta,
    UsageReport,
)
from agents.providers.http import estimate_usage

MODEL = "echo"


def echo_reply(request: ChatRequest) -> str:
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    if request.json_mode or request.json_schema is not None:
        return json.dumps({"echo": last_user})
    return f"echo: {last_user}"


class EchoProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        reply = echo_reply(request)
        # Word chunks keep their trailing whitespace so the chunks join back to the reply.
        for chunk in re.findall(r"\S+\s*|\s+", reply):
            # Yield to the loop between chunks, like a network provider, so cancellation and
            # fairness behave the same way.
            await asyncio.sleep(0)
            yield TextDelta(chunk)
        yield UsageReport(estimate_usage(request, reply))
        yield Finished(finish_reason="stop", model=MODEL)
