"""Workflows in the tenant admin: the definition edited as JSON text (every save a version,
through ``services.workflow_save``), the version history, the structural analysis in words and
a drawing of the net with the tokens of all the workflow's resources."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from config.admin_sites import tenant_admin_site
from config.errors import DomainError
from workflow_bridge.admin.common import (
    TenantObjectAdmin,
    actor,
    marking_text,
    net_diagram,
    pretty,
    schema,
)
from workflow_bridge.definitions import FORMAT
from workflow_bridge.models import Workflow, WorkflowVersion
from workflow_bridge.selectors import workflow_token_counts
from workflow_bridge.services import (
    compiled_of,
    workflow_analysis,
    workflow_check,
    workflow_delete,
    workflow_save,
)

EXAMPLE = {
    "format": FORMAT,
    "slug": "my-workflow",
    "name": "My workflow",
    "states": ["draft", "review", "done"],
    "initial_state": "draft",
    "activities": [
        {"id": "submit", "from_states": ["draft"], "to_state": "review"},
        {"id": "approve", "from_states": ["review"], "to_state": "done"},
    ],
    "final_places": ["done"],
}


# The order a person reads a definition in (PostgreSQL's jsonb keeps keys in its own order).
READING_ORDER = (
    "format",
    "slug",
    "name",
    "description",
    "states",
    "initial_state",
    "activities",
    "places",
    "initial_marking",
    "transitions",
    "final_places",
    "rules",
)


def definition_text(definition: Any) -> str:
    if not isinstance(definition, dict):
        return pretty(definition)
    known = [key for key in READING_ORDER if key in definition]
    ordered = {key: definition[key] for key in [*known, *sorted(set(definition) - set(known))]}
    return json.dumps(ordered, indent=2, ensure_ascii=False)


class WorkflowForm(forms.ModelForm):
    """One field: the workflow file's content. Slug, name and description come from it."""

    definition = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 28, "cols": 100, "spellcheck": "false", "class": "vLargeTextField"}
        ),
        help_text=(
            "The workflow as JSON: a state machine (states, initial_state, activities) or a net "
            "(places, transitions, initial_marking), with its rules. Every change is stored as a "
            "new version; a place that holds tokens of a resource cannot be removed."
        ),
    )

    class Meta:
        model = Workflow
        fields = ["definition"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            self.initial.setdefault("definition", definition_text(EXAMPLE))
        else:
            self.initial["definition"] = definition_text(self.instance.definition)

    def clean_definition(self) -> Any:
        text = self.cleaned_data["definition"]
        try:
            definition = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"definition: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
            ) from None
        try:
            # The checks workflow_save makes, with the same messages, storing nothing.
            workflow_check(
                definition=definition,
                workflow=None if self.instance._state.adding else self.instance,
            )
        except DomainError as exc:
            raise ValidationError(exc.message) from None
        return definition


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    fields = ("version", "created_by", "created_at", "stored_definition")
    readonly_fields = fields
    ordering = ("-version",)

    @admin.display(description="definition")
    def stored_definition(self, obj: WorkflowVersion) -> str:
        return format_html(
            "<details><summary>show</summary><pre>{}</pre></details>",
            definition_text(obj.definition),
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workflow, site=tenant_admin_site)
class WorkflowAdmin(TenantObjectAdmin):
    form = WorkflowForm
    list_display = ("slug", "name", "version", "resource_total", "updated_at")
    search_fields = ("slug", "name", "description")
    inlines = [WorkflowVersionInline]
    details = ("id", "slug", "name", "description", "version", "resource_total")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        workflows: QuerySet[Workflow] = super().get_queryset(request)
        return workflows.annotate(resource_count=Count("resources"))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["definition"]})]
        editable = self.has_change_permission(request, obj)
        return [
            (None, {"fields": list(self.details)}),
            ("Diagram", {"fields": ["diagram"]}),
            ("Structural analysis", {"fields": ["analysis"]}),
            ("Definition", {"fields": ["definition" if editable else "stored_definition"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return (*self.details, "diagram", "analysis", "stored_definition")

    @admin.display(description="resources", ordering="resource_count")
    def resource_total(self, obj: Workflow) -> int:
        return int(getattr(obj, "resource_count", 0))

    @admin.display(description="definition")
    def stored_definition(self, obj: Workflow) -> str:
        return format_html("<pre>{}</pre>", definition_text(obj.definition))

    @admin.display(description="net")
    def diagram(self, obj: Workflow) -> str:
        compiled = compiled_of(obj)
        return net_diagram(
            compiled,
            workflow_token_counts(obj),
            note=(
                "Tokens of all this workflow's resources, summed per place. Green transitions "
                "are enabled by these summed tokens (a join may need tokens of one resource)."
            ),
        )

    @admin.display(description="analysis")
    def analysis(self, obj: Workflow) -> str:
        found = workflow_analysis(obj)
        found["deadlocks"] = [
            {"path": d["path"], "marking": marking_text(d["marking"])} for d in found["deadlocks"]
        ]
        return render_to_string("admin/workflow_bridge/analysis.html", {"analysis": found})

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        saved = workflow_save(
            definition=form.cleaned_data["definition"],
            actor=actor(request),
            schema_name=schema(request),
            workflow=obj if change else None,
        )
        # The admin logs, links and redirects to ``obj``: make it the stored row.
        obj.pk, obj.slug, obj.name, obj.version = saved.pk, saved.slug, saved.name, saved.version

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        workflow = self.get_object(request, unquote(object_id))
        count = workflow.resources.count()
        if count:
            self.message_user(
                request,
                f"The workflow “{workflow.slug}” has {count} resource{'s' if count != 1 else ''} "
                "and cannot be deleted: their history would go with it.",
                messages.ERROR,
            )
            return HttpResponseRedirect(
                reverse("tenant_admin:workflow_bridge_workflow_change", args=[quote(workflow.pk)])
            )
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        # Versions, rules and bindings go with their workflow. Their own pages refuse deleting
        # one of them (a rule's versions are history, a binding's runs point at it), which
        # would otherwise read as "you may not delete this workflow" here.
        return deleted, counts, set(), protected

    def delete_model(self, request: HttpRequest, obj: Workflow) -> None:
        workflow_delete(workflow=obj, actor=actor(request), schema_name=schema(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        for workflow in queryset:
            try:
                workflow_delete(
                    workflow=workflow, actor=actor(request), schema_name=schema(request)
                )
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
