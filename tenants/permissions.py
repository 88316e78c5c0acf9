from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.audit.models import AuditOutcome
from tenants.audit.services import audit_record
from tenants.principals import Principal
from tenants.roles import Permission


class HasRolePermission(BasePermission):
    """Each view names the permission it needs in ``required_permission``; a view that names
    none is closed to everybody. Refusals are audited in the caller's tenant."""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, Principal):
            return False
        required: Permission | None = getattr(view, "required_permission", None)
        if required is None:
            return False
        if principal.can(required):
            return True
        audit_record(
            schema_name=principal.schema_name,
            actor=principal.audit_actor,
            action="permission.denied",
            outcome=AuditOutcome.DENIED,
            request=request._request,
            details={
                "permission": str(required),
                "role": principal.role,
                "method": request.method,
                "path": request.path,
            },
        )
        return False
