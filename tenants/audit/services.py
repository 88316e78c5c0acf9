"""Writing audit entries. Callers name the schema: audit entries are written from middleware
(before any tenant is set on the connection) and from background code alike."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest
from django_tenants.utils import schema_context

from config.middleware import request_id_for
from tenants.audit.models import AuditLog, AuditOutcome

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest | None) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is trivially forged unless a trusted proxy sets it.
    return request.META.get("REMOTE_ADDR") or None if request is not None else None


def audit_record(
    *,
    schema_name: str,
    actor: str,
    action: str,
    outcome: str = AuditOutcome.SUCCESS,
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    if not schema_name or schema_name == "public":
        raise ValueError("audit entries belong to a tenant schema")
    with schema_context(schema_name):
        return AuditLog.objects.create(
            actor=actor[:200],
            action=action,
            outcome=outcome,
            target_type=target_type,
            target_id=str(target_id)[:100],
            ip_address=client_ip(request),
            request_id=request_id_for(request) if request is not None else "",
            details=details or {},
        )
