"""Fakes shared by the engine tests: scripted providers, an event recorder, an agent builder."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from agents.engine import AgentSnapshot, RetryConfig
from agents.engine.events import Event
from agents.providers.base import (
    ChatRequest,
    Finished,
    ProviderConfig,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallsReady,
    Usage,
    UsageReport,
)

PRIMARY = ProviderConfig(kind="openai", base_url="https://primary.test/v1", api_key="sk-canary")
SECONDARY = ProviderConfig(kind="anthropic", base_url="https://secondary.test", api_key="sk-2")


@dataclass(frozen=True)
class Delay:
    """A scripted pause inside a stream (a slow or hanging upstream)."""

    seconds: float


Step = ProviderEvent | BaseException | Delay


class FakeStream:
    """An async iterator over scripted steps that records whether ``aclose`` was called."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.index = 0
        self.closed = False

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> ProviderEvent:
        while True:
            if self.closed or self.index >= len(self.steps):
                raise StopAsyncIteration
            step = self.steps[self.index]
            self.index += 1
            if isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
                continue
            if isinstance(step, BaseException):
                raise step
            return step

    async def aclose(self) -> None:
        self.closed = True


class FakeProvider:
    """Implements the Provider protocol; each ``stream`` call plays the next script."""

    def __init__(self, config: ProviderConfig, scripts: list[list[Step]]) -> None:
        self.config = config
        self.scripts = list(scripts)
        self.requests: list[ChatRequest] = []
        self.streams: list[FakeStream] = []

    def stream(self, request: ChatRequest) -> FakeStream:
        self.requests.append(request)
        if not self.scripts:
            raise AssertionError(f"unexpected extra call to {self.config.base_url}")
        stream = FakeStream(self.scripts.pop(0))
        self.streams.append(stream)
        return stream


class FakeFactory:
    """A provider factory keyed by base URL; records the order in which providers were used."""

    def __init__(self) -> None:
        self.providers: dict[str, FakeProvider] = {}
        self.calls: list[str] = []

    def add(self, config: ProviderConfig, *scripts: list[Step]) -> FakeProvider:
        provider = FakeProvider(config, list(scripts))
        self.providers[config.base_url] = provider
        return provider

    def __call__(self, config: ProviderConfig) -> FakeProvider:
        self.calls.append(config.base_url)
        return self.providers[config.base_url]


class Recorder:
    """An ``emit`` that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [dict(e) for e in self.events if e["type"] == kind]


class SleepRecorder:
    """An instant ``sleep`` that records the requested delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def reply(
    text: str = "hello",
    *,
    model: str = "gpt-test",
    usage: Usage | None = Usage(10, 5),
    pieces: int = 1,
) -> list[Step]:
    """A successful streamed reply, optionally split into several chunks."""
    size = max(1, -(-len(text) // pieces))
    steps: list[Step] = [TextDelta(text[i : i + size]) for i in range(0, len(text), size)]
    if usage is not None:
        steps.append(UsageReport(usage))
    steps.append(Finished("stop", model))
    return steps


def tool_request(
    *calls: ToolCall, model: str = "gpt-test", usage: Usage = Usage(8, 4)
) -> list[Step]:
    """A reply that asks for tools."""
    return [ToolCallsReady(tuple(calls)), UsageReport(usage), Finished("tool_calls", model)]


def make_agent(**overrides: Any) -> AgentSnapshot:
    """An agent with quick retries (the tests inject sleep anyway)."""
    base = AgentSnapshot(
        id="agent_00000000-0000-0000-0000-000000000001",
        slug="helper",
        version=1,
        name="Helper",
        provider=PRIMARY,
        model="gpt-test",
        system_prompt="You are helpful.",
        retry=RetryConfig(max_attempts=3, backoff_seconds=1.0),
        timeout_seconds=10.0,
    )
    return replace(base, **overrides)


def make_context(**extra: Any) -> dict[str, Any]:
    """A context in the seed's §4.2.1 shape."""
    ctx: dict[str, Any] = {
        "tenant_id": "tenant123",
        "execution_id": "exec456",
        "user_context": {"user_id": "user123", "session_id": "session456", "preferences": {}},
        "workflow_context": {"resource_id": "resource789", "state_id": "state_pending"},
        "custom_context": {"any_key": "any_value"},
    }
    ctx.update(extra)
    return ctx
