"""Token prices and cost computation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from agents.providers.base import Usage

_PER_TOKENS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """USD per one million input and output tokens of one model.

    Not called ``ModelPrice``: that is the ORM model the platform builds these entries from.
    """

    input_per_million: Decimal
    output_per_million: Decimal

    @property
    def combined(self) -> Decimal:
        """Input plus output price, the ranking key for "cheapest"."""
        return self.input_per_million + self.output_per_million


class PriceTable:
    """Model name → price. Lookup is exact, then by the longest key that is a dated-version
    prefix of the name (``gpt-4o`` prices ``gpt-4o-2024-08-06``), since providers often report
    the concrete snapshot that answered."""

    def __init__(self, prices: Mapping[str, tuple[Decimal, Decimal] | PriceEntry] | None = None):
        self._prices: dict[str, PriceEntry] = {}
        for model, price in (prices or {}).items():
            if isinstance(price, PriceEntry):
                self._prices[model] = price
            else:
                self._prices[model] = PriceEntry(Decimal(price[0]), Decimal(price[1]))

    def lookup(self, model: str) -> PriceEntry | None:
        """The price of ``model``, or None when unknown."""
        if model in self._prices:
            return self._prices[model]
        candidates = [k for k in self._prices if model.startswith(k + "-")]
        if not candidates:
            return None
        return self._prices[max(candidates, key=len)]

    def highest(self) -> tuple[Decimal, Decimal]:
        """The highest input and output price of any model (a bound for calls whose model is
        chosen later, e.g. a virtual model)."""
        if not self._prices:
            return Decimal(0), Decimal(0)
        return (
            max(e.input_per_million for e in self._prices.values()),
            max(e.output_per_million for e in self._prices.values()),
        )

    def cost(self, model: str, usage: Usage) -> Decimal | None:
        """Cost of ``usage`` on ``model`` in USD, or None when the model has no price."""
        price = self.lookup(model)
        if price is None:
            return None
        return (
            Decimal(usage.input_tokens) * price.input_per_million
            + Decimal(usage.output_tokens) * price.output_per_million
        ) / _PER_TOKENS

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None


def add_usage(a: Usage, b: Usage) -> Usage:
    """Sum two usages; the result is estimated if either part was."""
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        estimated=a.estimated or b.estimated,
    )
