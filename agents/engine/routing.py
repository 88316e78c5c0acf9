"""Virtual models: names that pick a concrete model target per tenant.

``auto``, ``cb:fastest``, ``cb:cost-optimal``, ``cb:smart-chat``, ``cb:coding``,
``cb:analysis`` and ``cb:creative`` (the original system's names) resolve against the tenant's
configured :class:`ModelOption` list, in the order the tenant configured them (ties keep it):

- ``cb:cost-optimal``: the cheapest by input + output price per million tokens.
- ``cb:fastest``: the cheapest option tagged ``fast``; without one, the cheapest overall.
- ``cb:coding`` / ``cb:analysis`` / ``cb:creative`` / ``cb:smart-chat``: the most expensive
  option tagged ``coding`` / ``analysis`` / ``creative`` / ``chat``; without one, the most
  expensive ("smartest") option overall.
- ``auto``: ``cb:smart-chat`` when the prompt is long (``AUTO_LONG_PROMPT_CHARS`` characters or
  more, about 1,000 tokens), else ``cb:cost-optimal``.

Options without a known price rank after priced ones for "cheapest" and are never the
"smartest" unless nothing is priced; with no prices at all the first configured option wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from agents.engine.errors import ModelResolutionError
from agents.engine.pricing import PriceTable
from agents.engine.types import ModelTarget

AUTO_LONG_PROMPT_CHARS = 4000

_TAGGED = {
    "cb:coding": "coding",
    "cb:analysis": "analysis",
    "cb:creative": "creative",
    "cb:smart-chat": "chat",
}
VIRTUAL_MODELS: frozenset[str] = frozenset({"auto", "cb:fastest", "cb:cost-optimal", *_TAGGED})


@dataclass(frozen=True, slots=True)
class ModelOption:
    """A concrete target a tenant may use, with capability tags (``fast``, ``coding``, ...)."""

    target: ModelTarget
    tags: frozenset[str] = field(default_factory=frozenset)


def is_virtual(model: str) -> bool:
    """True for ``auto`` and any ``cb:`` name (known or not)."""
    return model == "auto" or model.startswith("cb:")


def _price(option: ModelOption, prices: PriceTable) -> Decimal | None:
    price = prices.lookup(option.target.model)
    return None if price is None else price.combined


def _cheapest(options: Sequence[ModelOption], prices: PriceTable) -> ModelOption:
    priced = [(p, i, o) for i, o in enumerate(options) if (p := _price(o, prices)) is not None]
    if priced:
        return min(priced, key=lambda t: (t[0], t[1]))[2]
    return options[0]


def _smartest(options: Sequence[ModelOption], prices: PriceTable) -> ModelOption:
    priced = [(p, i, o) for i, o in enumerate(options) if (p := _price(o, prices)) is not None]
    if priced:
        # Highest price first; among equals the earliest configured (hence -index).
        return max(priced, key=lambda t: (t[0], -t[1]))[2]
    return options[0]


def resolve_model(
    name: str,
    options: Sequence[ModelOption],
    prices: PriceTable,
    *,
    prompt_chars: int = 0,
) -> ModelTarget:
    """Resolve a virtual model name to a concrete target (see the module docstring)."""
    if name not in VIRTUAL_MODELS:
        known = ", ".join(sorted(VIRTUAL_MODELS))
        raise ModelResolutionError(f"unknown virtual model {name!r}; known: {known}")
    if not options:
        raise ModelResolutionError(f"no models are configured to resolve {name!r}")
    if name == "auto":
        name = "cb:smart-chat" if prompt_chars >= AUTO_LONG_PROMPT_CHARS else "cb:cost-optimal"
    if name == "cb:cost-optimal":
        return _cheapest(options, prices).target
    if name == "cb:fastest":
        fast = [o for o in options if "fast" in o.tags]
        return _cheapest(fast or options, prices).target
    tag = _TAGGED[name]
    tagged = [o for o in options if tag in o.tags]
    return _smartest(tagged or options, prices).target
