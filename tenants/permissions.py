"""DRF's side of access control: every view names the one permission it needs."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.principals import Principal
from tenants.roles import Permission


class HasRolePermission(BasePermission):
    """Each view names the permission it needs in ``required_permission``; a view that names
    none is closed to everybody. The check (and the audit of a refusal) is ``tenants.access``'s,
    the same as for every other interface."""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, Principal):
            return False
        required: Permission | None = getattr(view, "required_permission", None)
        if required is None:
            return False
        # Imported here: DRF imports this module while config.errors (which tenants.access
        # needs) is itself still importing DRF.
        from tenants.access import authorize

        # Raises PermissionRefused (403, audited) when the role does not allow it.
        authorize(
            principal,
            required,
            request=request._request,
            method=request.method,
            path=request.path,
        )
        return True
