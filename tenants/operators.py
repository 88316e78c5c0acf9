"""What a signed-in operator (a Django user of a tenant's admin) may do through the API.

The console and the admin's test run act for a person, not for an API key: they mint a tenant
token, or run an execution, on that person's behalf. The person's Django permissions decide the
role here, in one place, so that no page grants more than an administrator gave:

- a superuser → ``admin``;
- a staff member with ``agents.run_agent`` ("Can run agents") → ``user``;
- a staff member with ``agents.view_execution`` or ``agents.view_agent`` → ``readonly``;
- anyone else (anonymous, inactive, not staff, none of these permissions) → no role at all.
"""

from __future__ import annotations

from typing import Any, Protocol

from tenants.roles import Permission, Role, role_allows

RUN_AGENTS_PERMISSION = "agents.run_agent"
VIEW_PERMISSIONS = ("agents.view_execution", "agents.view_agent")


class Operator(Protocol):
    """What is read of a user (``User`` and ``AnonymousUser`` both fit)."""

    # Read-only members: AnonymousUser's are Literal[False], which a plain (writable) `bool`
    # member would refuse.
    @property
    def is_authenticated(self) -> bool: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def is_staff(self) -> bool: ...
    @property
    def is_superuser(self) -> bool: ...

    def has_perm(self, perm: str, obj: Any = None) -> bool: ...


def operator_role(user: Operator) -> Role | None:
    """The API role ``user`` may act with, or None when they may not use the API at all.

    Only an active staff member has a role: the admin refuses the others, and so does
    everything that acts for an operator. The tenant is the caller's business (users and their
    permissions live in the tenant's schema, read through the request's connection).
    """
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return None
    if user.is_superuser:
        return Role.ADMIN
    if user.has_perm(RUN_AGENTS_PERMISSION):
        return Role.USER
    if any(user.has_perm(permission) for permission in VIEW_PERMISSIONS):
        return Role.READONLY
    return None


def operator_may(user: Operator, permission: Permission) -> bool:
    """Whether ``user``'s role (see :func:`operator_role`) allows ``permission``."""
    role = operator_role(user)
    return role is not None and role_allows(role, permission)
