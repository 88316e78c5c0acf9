"""A fake LLM server speaking the OpenAI, Anthropic, Gemini and Ollama wire formats.

Run it with ``python -m agents.fakellm --host 127.0.0.1 --port 9100`` or, in tests,
``start_in_thread()``. Behaviour is scripted per API key through ``POST /_control/scripts``;
``POST /_control/chaos`` sets reproducible fault rates (429/500/503, dropped, truncated or
malformed streams) per key or globally, ``GET /_control/chaos?key=…`` reports the faults
injected so far (see :class:`~agents.fakellm.state.Chaos`).
"""

from __future__ import annotations

from agents.fakellm.app import create_app
from agents.fakellm.server import FakeServer, start_in_thread
from agents.fakellm.state import Chaos, FakeState, Step

__all__ = ["Chaos", "FakeServer", "FakeState", "Step", "create_app", "start_in_thread"]
