"""Audit entries for what Django itself writes: every admin change (its ``LogEntry``), and
the tenant's users, groups and their permissions however they change (admin, shell,
commands). Each is written in the log of the schema the write happened in: a tenant's
admin into the tenant's log, the platform admin into the platform log.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry, LogEntryManager
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

from tenants.audit.context import current_actor, current_request
from tenants.audit.services import audit_record, platform_audit_record

ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


def record_here(**entry: Any) -> None:
    """One entry in the log of the schema the connection is on, with the current request's
    address and id."""
    schema = str(getattr(connection, "schema_name", "public"))
    entry.setdefault("request", current_request())
    if schema == "public":
        platform_audit_record(**entry)
    else:
        audit_record(schema_name=schema, **entry)


# ---- the admin's own log ----


def audit_log_entry(entry: LogEntry) -> None:
    content_type = entry.content_type
    record_here(
        actor=current_actor(default=f"user_id:{entry.user_id}"),
        action=ADMIN_ACTIONS.get(entry.action_flag, "admin.unknown"),
        target_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        target_id=entry.object_id or "",
        details={"object": entry.object_repr, "message": entry.get_change_message()},
    )


def _log_entry_saved(sender: Any, instance: LogEntry, created: bool, **_: Any) -> None:
    if created:
        audit_log_entry(instance)


def _wrap_bulk_log_actions() -> None:
    """The admin logs an action on several objects at once (delete selected) with
    ``bulk_create``, which sends no ``post_save``: those are audited here."""
    original = LogEntryManager.log_actions
    if getattr(original, "audited", False):
        return

    @functools.wraps(original)
    def log_actions(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if isinstance(result, list) and len(result) > 1:
            for entry in result:
                audit_log_entry(entry)
        return result

    log_actions.audited = True  # type: ignore[attr-defined]
    LogEntryManager.log_actions = log_actions  # type: ignore[method-assign]


# ---- users, groups and permissions ----


def _kind(model: type[Model]) -> str:
    return "user" if issubclass(model, User) else "group"


def _saved(sender: type[Model], instance: Any, created: bool, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login (audited as admin.login), not a change of the account
    kind = _kind(sender)
    details: dict[str, Any] = {"name": str(instance)}
    if update_fields is not None:
        details["fields"] = sorted(update_fields)
    if kind == "user":
        details |= {"is_staff": instance.is_staff, "is_superuser": instance.is_superuser}
    record_here(
        actor=current_actor(),
        action=f"{kind}.{'create' if created else 'change'}",
        target_type=kind,
        target_id=str(instance.pk),
        details=details,
    )


def _deleted(sender: type[Model], instance: Any, **_: Any) -> None:
    kind = _kind(sender)
    record_here(
        actor=current_actor(),
        action=f"{kind}.delete",
        target_type=kind,
        target_id=str(instance.pk),
        details={"name": str(instance)},
    )


RELATIONS = {
    User.groups.through: ("user", "groups"),
    User.user_permissions.through: ("user", "permissions"),
    Group.permissions.through: ("group", "permissions"),
}


def _names(model: type[Model], pks: set[Any]) -> list[str]:
    if model is Permission:
        rows = Permission.objects.filter(pk__in=pks).select_related("content_type")
        return sorted(f"{p.content_type.app_label}.{p.codename}" for p in rows)
    return sorted(str(obj) for obj in model._default_manager.filter(pk__in=pks))


def _m2m_changed(
    sender: Any,
    instance: Any,
    action: str,
    reverse: bool,
    model: type[Model],
    pk_set: set[Any] | None,
    **_: Any,
) -> None:
    if action not in {"post_add", "post_remove", "pre_clear"}:
        return
    owner_kind, relation = RELATIONS[sender]
    verb = {"post_add": "add", "post_remove": "remove", "pre_clear": "clear"}[action]
    if action == "pre_clear":  # afterwards nobody can say what was there
        related = getattr(instance, _accessor(sender, reverse, owner_kind, relation))
        pk_set = set(related.values_list("pk", flat=True))
    if not pk_set:
        return
    names = _names(model, pk_set)
    # Reverse (group.user_set.add(user)): one entry per changed owner, as if done from it.
    owners = list(model._default_manager.filter(pk__in=pk_set)) if reverse else [instance]
    for owner in owners:
        record_here(
            actor=current_actor(),
            action=f"{owner_kind}.{relation}.{verb}",
            target_type=owner_kind,
            target_id=str(owner.pk),
            details={
                "name": str(owner),
                relation: [str(instance)] if reverse else names,
            },
        )


def _accessor(sender: Any, reverse: bool, owner_kind: str, relation: str) -> str:
    if not reverse:
        return (
            "groups"
            if (owner_kind, relation) == ("user", "groups")
            else ("user_permissions" if owner_kind == "user" else "permissions")
        )
    return "user_set" if owner_kind == "user" else "group_set"


def connect() -> None:
    post_save.connect(_log_entry_saved, sender=LogEntry, dispatch_uid="audit-log-entry")
    _wrap_bulk_log_actions()
    for model in (User, Group):
        post_save.connect(_saved, sender=model, dispatch_uid=f"audit-{model.__name__}-saved")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"audit-{model.__name__}-deleted")
    for through in RELATIONS:
        m2m_changed.connect(
            _m2m_changed, sender=through, dispatch_uid=f"audit-m2m-{through.__name__}"
        )
