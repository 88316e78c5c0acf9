"""Small helpers every agent/execution view shares."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework.request import Request

from tenants.principals import Principal
from tenants.roles import Permission


def principal_of(request: Request) -> Principal:
    assert isinstance(request.user, Principal)  # guaranteed by HasRolePermission
    return request.user


def schema_of(request: Request) -> str:
    return principal_of(request).schema_name


class MethodPermissions:
    """DRF routes one class per URL, so ``GET /agents`` and ``POST /agents`` share a view
    class. Each method still declares exactly one permission; any other method (OPTIONS,
    HEAD on a write) has none and is refused by ``HasRolePermission`` (fail closed)."""

    method_permissions: ClassVar[dict[str, Permission]] = {}
    request: Any

    @property
    def required_permission(self) -> Permission | None:
        method = getattr(self.request, "method", None) or ""
        return self.method_permissions.get(method.upper())
