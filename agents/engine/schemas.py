"""JSON Schema checks and validation that are safe with schemas tenants write.

Tenants write the input, output and tool-parameter schemas of their agents, so a schema is
untrusted input to our servers. Two things in plain ``jsonschema`` are unsafe with it:

* **Remote references.** A ``$ref`` to ``http://…`` is fetched by the server when validation
  reaches it (server-side request forgery, and a validation that waits on the network).
  Validators here are built on a :class:`referencing.Registry` that holds nothing and whose
  ``retrieve`` refuses; :func:`check_schema` refuses every reference that does not start with
  ``#`` (the same check runs when an agent is saved and when it runs).
* **Catastrophic backtracking.** ``pattern`` and ``patternProperties`` are regular expressions
  run by a backtracking engine; ``^(a|aa)+$`` against forty ``a`` and a ``!`` would hold the
  worker (and its event loop) for hours. While :func:`first_error` runs, every regular
  expression jsonschema evaluates goes through the ``regex`` package with a shared time
  budget (:data:`REGEX_BUDGET_SECONDS` per validation), and running past it raises
  :class:`PatternTimeout`. ``regex`` rather than ``google-re2``: RE2 refuses lookarounds and
  backreferences that tenants' schemas legitimately use, while ``regex`` keeps Python ``re``
  syntax, answers many classic bad cases (``^(a+)+$``) quickly anyway, and takes a timeout.

jsonschema calls ``re.search`` from three internal modules (``pattern``,
``patternProperties``, and the helpers behind ``additionalProperties`` and
``unevaluatedProperties``). Rewriting those keywords would copy a hundred lines of its
internals, so instead their module-level ``re`` is replaced by a stand-in that behaves exactly
like ``re`` except inside :func:`first_error`, where a context variable holds the budget. Other
callers of jsonschema in the process see no difference. If a jsonschema release moves these
internals, importing this module fails loudly instead of silently losing the bound.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import jsonschema
import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import regex
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

# Wall-clock seconds all regular expressions of one validation may take together. Real
# patterns on real values take microseconds; the budget only has to stop runaway ones.
REGEX_BUDGET_SECONDS = 0.25

_REF_KEYWORDS = frozenset({"$ref", "$dynamicRef", "$recursiveRef"})
# Keywords whose values are data, not schemas: a "$ref" or "pattern" key inside them means
# nothing and must not be checked as one.
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})


class SchemaProblem(ValueError):
    """The schema itself is unusable: invalid, a remote reference, a pattern that does not
    compile. The message says which and names the offending value."""


class PatternTimeout(Exception):
    """A regular expression of the schema ran past the validation's time budget."""

    def __init__(self, pattern: str, seconds: float) -> None:
        super().__init__(
            f"the pattern {pattern!r} did not finish within {seconds:g} s "
            "(catastrophic backtracking); simplify the pattern"
        )
        self.pattern = pattern
        self.seconds = seconds


class RemoteReferenceRefused(LookupError):
    """Raised by the registry's ``retrieve``: schemas never load anything from outside."""


def _refuse_retrieval(uri: str) -> Any:
    raise RemoteReferenceRefused(
        f"schema reference {uri!r} is not inside the schema; remote references are never fetched"
    )


# Empty: jsonschema adds the draft meta-schemas itself (from memory, never the network).
# The ignore: referencing declares its attrs fields through a private `__dataclass_transform__`
# that mypy does not follow, so it sees a constructor without arguments.
SAFE_REGISTRY: Registry[Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


# ---- bounded regular expressions inside jsonschema --------------------------------------


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def search(self, pattern: str, string: str) -> Any:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise PatternTimeout(pattern, self.seconds)
        try:
            return regex.search(pattern, string, timeout=remaining)
        except TimeoutError:
            raise PatternTimeout(pattern, self.seconds) from None


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "schema_regex_budget", default=None
)


class _BoundedRe:
    """Stands in for ``re`` in jsonschema's keyword modules (see the module docstring)."""

    def search(self, pattern: Any, string: Any, flags: int = 0) -> Any:
        budget = _budget.get()
        if budget is None or flags or not isinstance(pattern, str):
            return re.search(pattern, string, flags)
        return budget.search(pattern, string)

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


_BOUNDED_RE = _BoundedRe()


def _install_bounded_re() -> None:
    for module in (jsonschema._keywords, jsonschema._utils, jsonschema._legacy_keywords):
        current = getattr(module, "re", None)
        if current is _BOUNDED_RE:
            continue
        if current is not re:
            raise RuntimeError(
                f"unsupported jsonschema version: {module.__name__} no longer uses 're', "
                "so tenant patterns can not be time-bounded"
            )
        # The stubs list a module's public names only, not the `re` it imported.
        module.re = _BOUNDED_RE  # type: ignore[attr-defined]


_install_bounded_re()


# ---- checks ------------------------------------------------------------------------------


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (keyword, value) pair of a schema, depth first, skipping data keywords."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key), value
            if key not in _DATA_KEYWORDS:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def remote_references(schema: Mapping[str, Any]) -> list[str]:
    """Every ``$ref`` (and ``$dynamicRef``) that does not point inside the schema."""
    return [
        value
        for key, value in _walk(schema)
        if key in _REF_KEYWORDS and isinstance(value, str) and not value.startswith("#")
    ]


def patterns(schema: Mapping[str, Any]) -> list[str]:
    """Every regular expression of the schema (``pattern``, ``patternProperties`` keys)."""
    found: list[str] = []
    for key, value in _walk(schema):
        if key == "pattern" and isinstance(value, str):
            found.append(value)
        elif key == "patternProperties" and isinstance(value, Mapping):
            found.extend(str(p) for p in value)
    return found


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaProblem` unless ``schema`` is a valid JSON Schema with only local
    references and regular expressions that compile. Used when an agent is saved and before
    every run."""
    validator_cls = jsonschema.validators.validator_for(schema)
    try:
        # jsonschema takes only a dict for a JSON object (its "object" type is `dict`); ours are
        # parsed JSON, so dicts, and `Mapping` in our signatures only promises not to mutate.
        validator_cls.check_schema(cast(dict[str, Any], schema))
    except SchemaError as exc:
        raise SchemaProblem(f"is not a valid JSON Schema: {exc.message}") from None
    for ref in remote_references(schema):
        raise SchemaProblem(
            f"$ref {ref!r} points outside the schema; only local references "
            "(starting with '#', e.g. '#/$defs/address') are allowed"
        )
    for pattern in patterns(schema):
        try:
            regex.compile(pattern)
        except (regex.error, ValueError) as exc:
            raise SchemaProblem(f"pattern {pattern!r} does not compile: {exc}") from None


def first_error(instance: Any, schema: Mapping[str, Any]) -> jsonschema.ValidationError | None:
    """The most relevant validation error of ``instance``, or None when it is valid.

    Never fetches a reference (an unresolvable one raises :class:`SchemaProblem`) and raises
    :class:`PatternTimeout` when the schema's regular expressions exceed
    :data:`REGEX_BUDGET_SECONDS` together.
    """
    validator = jsonschema.validators.validator_for(schema)(schema, registry=SAFE_REGISTRY)
    token = _budget.set(_Budget(REGEX_BUDGET_SECONDS))
    try:
        # best_match picks the most relevant error when several fail (e.g. inside anyOf).
        best: jsonschema.ValidationError | None = jsonschema.exceptions.best_match(
            validator.iter_errors(instance)
        )
        return best
    except Unresolvable as exc:
        ref = getattr(exc, "ref", None) or str(exc)
        raise SchemaProblem(
            f"$ref {ref!r} can not be resolved inside the schema (remote references are "
            "never fetched)"
        ) from None
    finally:
        _budget.reset(token)
