"""Roles and what each may do: the one place that defines it.

Every API view declares the one permission it needs (``required_permission``); the DRF
permission class looks it up here. A view that declares none is refused (fail closed).
"""

from __future__ import annotations

import enum

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    USER = "user", "User"
    READONLY = "readonly", "Read-only"


class Permission(enum.StrEnum):
    AGENTS_READ = "agents.read"
    AGENTS_WRITE = "agents.write"
    EXECUTIONS_READ = "executions.read"
    EXECUTIONS_RUN = "executions.run"
    EXECUTIONS_CANCEL = "executions.cancel"
    WORKFLOWS_READ = "workflows.read"
    WORKFLOWS_WRITE = "workflows.write"
    WORKFLOWS_RUN = "workflows.run"
    CREDENTIALS_MANAGE = "credentials.manage"
    KEYS_MANAGE = "keys.manage"
    AUDIT_READ = "audit.read"
    TOKENS_ISSUE = "tokens.issue"
    IDENTITY_READ = "identity.read"


_READ = {
    Permission.AGENTS_READ,
    Permission.EXECUTIONS_READ,
    Permission.WORKFLOWS_READ,
    Permission.IDENTITY_READ,
    Permission.TOKENS_ISSUE,
}
_USE = _READ | {Permission.EXECUTIONS_RUN, Permission.EXECUTIONS_CANCEL, Permission.WORKFLOWS_RUN}

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.READONLY: frozenset(_READ),
    Role.USER: frozenset(_USE),
    Role.ADMIN: frozenset(Permission),
}

# Lower number, fewer rights: a token may be issued for the caller's role or a lower one.
ROLE_RANK: dict[str, int] = {Role.READONLY: 0, Role.USER: 1, Role.ADMIN: 2}


def role_allows(role: str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
