"""Settings for the type checker: the test settings with a database that is named, never reached.

django-stubs' mypy plugin imports the settings module and populates the apps to learn the models.
Without ``DATABASE_URL``, ``config.database`` would probe localhost:5432 and then start an
embedded PostgreSQL just to fill in ``DATABASES``; a URL is only parsed, so type checking starts
no server and needs none. Nothing connects to it: no query runs while mypy inspects the apps.
"""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://mypy@127.0.0.1:5432/mypy")

from config.test_settings import *  # noqa: F403
