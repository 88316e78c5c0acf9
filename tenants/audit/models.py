"""The audit log: one append-only table in each tenant schema.

Append-only is enforced by the database (triggers refuse UPDATE, DELETE and TRUNCATE, see the
migrations), not only by the admin being read-only. Entries are hash-chained by the database
on INSERT (``tenants.audit.chain``).

The model is unmanaged since the chain was added: Django's ``flush`` (``manage.py flush``, the
teardown of transactional tests) truncates every managed table, and the log refuses TRUNCATE.
Its table is still created and altered by this app's migrations (while it was managed).
"""

from __future__ import annotations

from django.db import models


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class AuditEntry(models.Model):
    """What an audit entry holds, in a tenant's log and in the platform's alike (the chain's
    SQL, ``tenants.audit.chain``, hashes exactly these fields)."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # "api_key:<prefix>", "token:<jti>", "user:<username>", "anonymous"
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    outcome = models.CharField(
        max_length=16, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS
    )
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # Computed by the database's trigger whatever the INSERT says; db_default makes Django
    # leave them out of the INSERT and read them back in its RETURNING clause.
    prev_hash = models.CharField(max_length=64, db_default="", editable=False)
    entry_hash = models.CharField(max_length=64, db_default="", editable=False)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.outcome}"


class AuditLog(AuditEntry):
    """A tenant's log, in its schema."""

    class Meta:
        managed = False
        ordering = ["-created_at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
