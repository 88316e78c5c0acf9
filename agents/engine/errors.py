"""Errors the engine raises internally and turns into a failed :class:`ExecutionResult`.

Each carries a stable ``code`` that ends up as ``ExecutionResult.error_code`` and in the ``error``
event, so clients can branch on it. Provider failures keep the provider's
:class:`~agents.providers.base.ErrorKind` value as their code.
"""

from __future__ import annotations

# Error code of a reply that is not valid JSON or does not match the output schema. It is an
# attempt failure (retried like a transient provider error), not an EngineError.
INVALID_OUTPUT = "invalid_output"


class EngineError(Exception):
    """A failure of the engine itself (configuration, mapping, rendering, validation)."""

    code: str = "engine_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(EngineError):
    """The mapped input is missing or does not match the agent's input schema."""

    code = "invalid_input"


class InvalidSchema(EngineError):
    """An input, output or tool JSON Schema configured on the agent is itself invalid."""

    code = "invalid_schema"


class PromptRenderError(EngineError):
    """The user template could not be rendered (unknown or malformed placeholder)."""

    code = "prompt_render_error"

    def __init__(self, message: str, *, placeholder: str | None = None) -> None:
        super().__init__(message)
        self.placeholder = placeholder


class MappingError(EngineError):
    """An input or output mapping is malformed or targets a protected context key."""

    code = "invalid_mapping"


class ModelResolutionError(EngineError):
    """A virtual model name (``auto``, ``cb:*``) is unknown or has no candidate target."""

    code = "model_resolution_error"


class ToolStepLimit(EngineError):
    """The model kept asking for tools past ``max_tool_steps``."""

    code = "tool_step_limit"


class UncheckableOutput(EngineError):
    """The reply could not be validated at all: the output schema's regular expressions ran
    past their time budget. Unlike a reply that fails the schema, retrying can not help, so the
    run fails at once."""

    code = INVALID_OUTPUT
