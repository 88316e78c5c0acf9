"""LLM provider adapters behind one contract (see :mod:`agents.providers.base`).

``get_provider(config)`` picks the adapter for ``config.kind``; ``complete(provider, request)``
drains a stream into one result. Nothing in this package imports Django.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import (
    ChatRequest,
    ErrorKind,
    Finished,
    Message,
    Provider,
    ProviderConfig,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallsReady,
    ToolSpec,
    Usage,
    UsageReport,
)
from agents.providers.echo import EchoProvider
from agents.providers.google import GoogleProvider
from agents.providers.http import aclose_all
from agents.providers.ollama import OllamaProvider
from agents.providers.openai import OpenAIProvider
from agents.providers.ssrf import UnsafeURL, check_url

_PROVIDERS: dict[
    str, type[OpenAIProvider | AnthropicProvider | GoogleProvider | OllamaProvider | EchoProvider]
] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "google": GoogleProvider,
    "ollama": OllamaProvider,
    "echo": EchoProvider,
}


def get_provider(config: ProviderConfig) -> Provider:
    """The adapter for ``config.kind``. Cheap: connection pools are shared, not per instance."""
    try:
        cls = _PROVIDERS[config.kind]
    except KeyError:
        raise ProviderError(
            ErrorKind.INVALID_REQUEST, f"unknown provider kind {config.kind!r}"
        ) from None
    return cls(config)


@dataclass(frozen=True, slots=True)
class CompleteResult:
    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    model: str
    finish_reason: str
    # How many text deltas arrived (1 for a non-streamed reply, more for a real stream).
    chunks: int


async def complete(provider: Provider, request: ChatRequest) -> CompleteResult:
    """Run one request to the end and collect the stream. Raises :class:`ProviderError`."""
    parts: list[str] = []
    calls: tuple[ToolCall, ...] = ()
    usage = Usage(estimated=True)
    finished: Finished | None = None
    stream = provider.stream(request)
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, ToolCallsReady):
                calls += event.calls
            elif isinstance(event, UsageReport):
                usage = event.usage
            elif isinstance(event, Finished):
                finished = event
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    if finished is None:
        raise ProviderError(ErrorKind.MALFORMED_RESPONSE, "provider stream ended without Finished")
    return CompleteResult(
        text="".join(parts),
        tool_calls=calls,
        usage=usage,
        model=finished.model,
        finish_reason=finished.finish_reason,
        chunks=len(parts),
    )


__all__ = [
    "AnthropicProvider",
    "ChatRequest",
    "CompleteResult",
    "EchoProvider",
    "ErrorKind",
    "Finished",
    "GoogleProvider",
    "Message",
    "OllamaProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallsReady",
    "ToolSpec",
    "UnsafeURL",
    "Usage",
    "UsageReport",
    "aclose_all",
    "check_url",
    "complete",
    "get_provider",
]
