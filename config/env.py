"""Typed readers for settings taken from the environment.

Every reader fails loudly: a value that cannot be parsed raises ``ImproperlyConfigured`` naming the
variable, instead of silently falling back to a default.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _read(name: str, default: T, parse: Callable[[str], T]) -> T:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return parse(raw.strip())
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not valid: {exc}") from None


def env_str(name: str, default: str = "") -> str:
    return _read(name, default, str)


def env_bool(name: str, default: bool = False) -> bool:
    def parse(raw: str) -> bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("expected one of 1/0, true/false, yes/no, on/off")

    return _read(name, default, parse)


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    def parse(raw: str) -> int:
        value = int(raw)
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return _read(name, default, parse)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    def parse(raw: str) -> float:
        value = float(raw)
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return _read(name, default, parse)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated list; empty items are dropped."""
    return _read(
        name,
        list(default or []),
        lambda raw: [item.strip() for item in raw.split(",") if item.strip()],
    )


def env_networks(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated IP addresses or CIDR networks, each checked and normalised
    (``192.0.2.1`` becomes ``192.0.2.1/32``). A network with host bits set (``10.0.0.1/8``) is
    refused rather than guessed at: it usually means a typo in a security setting."""

    def parse(raw: str) -> list[str]:
        return [str(ipaddress.ip_network(item.strip())) for item in raw.split(",") if item.strip()]

    return _read(name, list(default or []), parse)


def env_secret(name: str, *, debug: bool, debug_default: str) -> str:
    """A secret: required outside debug mode, where a development-only default is allowed."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if debug:
        return debug_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off")
