"""The OpenAI-compatible endpoint: ``/v1/models``, ``/v1/chat/completions``, ``/v1/responses``.

One more thin transport over the execution core (``agents.core.conversation``): it parses
OpenAI's wire formats (``wire``), asks ``tenants.access`` who is calling, starts runs through
the core and frames their stored events (``chat``, ``responses``); errors keep OpenAI's shape
(``errors``). See ``docs/agents/openai.md``.
"""
