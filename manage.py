#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

In a development checkout it first reads ``.env`` (written by ``make install``/``make run``,
see ``platform/dev_env.py``), so that every documented command runs with the development
settings; see :func:`load_dev_env` for when it does not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_SETTINGS = "config.settings"
DEV_ENV_FILE = Path(__file__).resolve().parent / ".env"


def load_dev_env(path: Path | None = None) -> list[str]:
    """Set the variables of ``path`` (``NAME=value`` lines) that the environment lacks; return
    their names. Nothing when the file is missing, with ``CBA_ENV=production``, or under any
    settings module but the default (the tests run production-like settings and must not pick
    up a developer's secrets, nor their DEBUG)."""
    if os.environ.get("CBA_ENV", "").strip().lower() == "production":
        return []
    if os.environ.get("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS) != DEFAULT_SETTINGS:
        return []
    path = path or DEV_ENV_FILE
    if not path.is_file():
        return []
    loaded = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name and name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded


def main() -> None:
    load_dev_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
