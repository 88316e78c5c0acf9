"""Rules and agent bindings in the tenant admin.

A rule's stored versions are never changed: saving a rule's page stores its next version
(``services.rule_save``). Agents bound to places (state agents) and to activities are saved
through ``services.state_agent_save`` / ``activity_agent_save``, and their forms run the same
checks first (``*_check``), so a binding the API would refuse (a place that can never be
marked, an activity that does not start there, a mapping writing outside ``data.*``) is
refused here with the same reason, on the field it names. Bindings are disabled, not deleted:
their runs keep pointing at them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join

from config.admin_sites import tenant_admin_site
from config.errors import DomainError
from workflow_bridge.admin.common import JSONText, TenantObjectAdmin, actor, refusal
from workflow_bridge.binding_services import (
    ACTIVITY_AGENT_FIELDS,
    STATE_AGENT_FIELDS,
    activity_agent_check,
    activity_agent_save,
    state_agent_check,
    state_agent_save,
)
from workflow_bridge.models import ActivityAgent, Rule, StateAgent, Workflow
from workflow_bridge.rules import check_rule
from workflow_bridge.services import rule_save

# ---- rules ----


class RuleForm(forms.ModelForm):
    condition = JSONText(rows=8, help_text='e.g. {"type": "FieldExists", "field": "data.total"}')
    tags = JSONText(rows=2, required=False, help_text='A list of tags, e.g. ["billing"].')

    class Meta:
        model = Rule
        fields = ["workflow", "rule_id", "name", "description", "condition", "tags"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            # A new version of the same rule: which rule it is does not change.
            self.fields["workflow"].disabled = True
            self.fields["rule_id"].disabled = True

    def rule_body(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "id": data.get("rule_id"),
            "name": data.get("name") or "",
            "description": data.get("description") or "",
            "condition": data.get("condition"),
            "tags": data.get("tags") or [],
        }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data: dict[str, Any] = self.cleaned_data
        if not self.errors:
            try:
                check_rule(self.rule_body())  # what rule_save checks
            except DomainError as exc:
                raise refusal(exc, self.fields, {"id": "rule_id"}) from None
        return data


@admin.register(Rule, site=tenant_admin_site)
class RuleAdmin(TenantObjectAdmin):
    form = RuleForm
    list_display = ("rule_id", "version", "workflow", "name", "created_by", "created_at")
    list_filter = ("workflow",)
    search_fields = ("rule_id", "name", "description")
    list_select_related = ("workflow",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["workflow", "rule_id", "name", "description", "condition", "tags"]
        if obj is None:
            return fields
        return ["version", "created_by", "created_at", "versions", *fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("version", "created_by", "created_at", "versions")

    @admin.display(description="all versions")
    def versions(self, obj: Rule) -> str:
        rows = Rule.objects.filter(workflow_id=obj.workflow_id, rule_id=obj.rule_id).order_by(
            "-version"
        )
        return format_html_join(
            ", ",
            '<a href="{}">v{}</a>',
            (
                (reverse("tenant_admin:workflow_bridge_rule_change", args=[quote(r.pk)]), r.version)
                for r in rows.only("pk", "version")
            ),
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # activities and agents name rules; a rule's versions are its history

    def save_model(self, request: HttpRequest, obj: Rule, form: Any, change: bool) -> None:
        # ``obj`` is the version this page showed: it stays as stored; the save is a version.
        saved = rule_save(workflow=obj.workflow, data=form.rule_body(), actor=actor(request))
        obj.pk, obj.version = saved.pk, saved.version

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_changeform_initial_data(request)
        initial.setdefault("condition", {"type": "FieldExists", "field": "data.total"})
        initial.setdefault("tags", [])
        return initial


# ---- agent bindings ----


class BindingForm(forms.ModelForm):
    """A binding's form: the model's fields, then the service's check of the whole binding."""

    service_fields: frozenset[str] = frozenset()

    def service_data(self) -> dict[str, Any]:
        data = {
            name: value
            for name, value in self.cleaned_data.items()
            if name in self.service_fields and name != "agent"
        }
        agent = self.cleaned_data.get("agent")
        data["agent"] = agent.pk if agent is not None else ""
        return data

    def check(self, workflow: Workflow, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        super().clean()
        data: dict[str, Any] = self.cleaned_data
        workflow = data.get("workflow")
        if workflow is not None and not self.errors:
            try:
                self.check(workflow, self.service_data())
            except DomainError as exc:
                raise refusal(exc, self.fields) from None
        return data

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.fields["workflow"].disabled = True  # a binding belongs to its workflow

    def _get_validation_exclusions(self) -> set[str]:
        # The services refuse a second binding of one agent with a message of their own;
        # the model's check of the same constraint would say it again, differently. (ignore:
        # the hook Django's ModelForm has for this is missing from django-stubs.)
        excluded: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]
        return {*excluded, "agent"}


def _binding(form: BindingForm) -> Any:
    return None if form.instance._state.adding else form.instance


class StateAgentForm(BindingForm):
    service_fields = STATE_AGENT_FIELDS
    trigger_rules = JSONText(rows=2, required=False, help_text='Rule ids, e.g. ["has-total"].')
    input_mapping = JSONText(
        required=False, help_text='Agent input ← resource path, e.g. {"message": "data.text"}.'
    )
    output_mapping = JSONText(
        required=False, help_text='Resource path ← output, e.g. {"data.summary": "output"}.'
    )
    parameters = JSONText(rows=2, required=False, help_text='e.g. {"temperature": 0.2}.')
    retry = JSONText(rows=2, required=False, help_text='e.g. {"max_retries": 2}.')

    class Meta:
        model = StateAgent
        fields = ["workflow", "place", "agent", *sorted(STATE_AGENT_FIELDS - {"place", "agent"})]
        help_texts = {
            "place": "A place of the workflow that some resource can reach (the workflow's "
            "analysis decides).",
            "auto_activity": "Fired when the agent's result is applied; it must start here.",
        }

    def check(self, workflow: Workflow, data: dict[str, Any]) -> None:
        state_agent_check(workflow=workflow, data=data, binding=_binding(self))


class ActivityAgentForm(BindingForm):
    service_fields = ACTIVITY_AGENT_FIELDS
    input_mapping = JSONText(required=False)
    output_mapping = JSONText(required=False)
    parameters = JSONText(rows=2, required=False)

    class Meta:
        model = ActivityAgent
        fields = [
            "workflow",
            "activity",
            "agent",
            *sorted(ACTIVITY_AGENT_FIELDS - {"activity", "agent"}),
        ]

    def check(self, workflow: Workflow, data: dict[str, Any]) -> None:
        activity_agent_check(workflow=workflow, data=data, binding=_binding(self))


class BindingAdmin(TenantObjectAdmin):
    list_filter = ("workflow", "enabled")
    list_select_related = ("workflow", "agent")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("workflow", "agent")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # disable a binding instead: its agent runs keep pointing at it


@admin.register(StateAgent, site=tenant_admin_site)
class StateAgentAdmin(BindingAdmin):
    form = StateAgentForm
    list_display = ("workflow", "place", "agent", "auto_activity", "merge_policy", "enabled")

    def save_model(self, request: HttpRequest, obj: StateAgent, form: Any, change: bool) -> None:
        saved = state_agent_save(
            workflow=form.cleaned_data["workflow"],
            data=form.service_data(),
            binding=obj if change else None,
        )
        obj.pk = saved.pk


@admin.register(ActivityAgent, site=tenant_admin_site)
class ActivityAgentAdmin(BindingAdmin):
    form = ActivityAgentForm
    list_display = ("workflow", "activity", "agent", "required", "enabled")

    def save_model(self, request: HttpRequest, obj: ActivityAgent, form: Any, change: bool) -> None:
        saved = activity_agent_save(
            workflow=form.cleaned_data["workflow"],
            data=form.service_data(),
            binding=obj if change else None,
        )
        obj.pk = saved.pk
