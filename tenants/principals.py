"""Who is calling: the result of authenticating a credential, fixed for the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tenants.roles import Permission, role_allows


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["api_key", "token", "user", "workflow"]
    # api_key: the key's prefix; token: its jti; user: the username; workflow: the workflow's
    # slug (runs the platform starts for a workflow's state agents, as the tenant)
    identifier: str
    role: str
    tenant_id: int
    tenant_slug: str
    schema_name: str
    # The API key the credential derives from (a token remembers the key that minted it).
    api_key_id: str | None = None
    token_expires_at: int | None = None

    # DRF and Django treat request.user as authenticated when this is true.
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def audit_actor(self) -> str:
        return f"{self.kind}:{self.identifier}"

    def can(self, permission: Permission) -> bool:
        return role_allows(self.role, permission)
