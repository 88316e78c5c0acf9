"""Resources in the tenant admin, read-only: marking, data and metadata, the history, the
agent runs (linked to their executions), the firings that wait(ed) for activity agents, a drawing of the
resource's own marking, and the activities it may take next. An operator whose role allows
``workflows.run`` fires one from the page (``services.activity_fire``, as ``user:<name>``);
nobody edits a marking, data or the history by hand."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from config.admin_sites import tenant_admin_site
from config.errors import DomainError
from tenants.operators import operator_may
from tenants.roles import Permission
from workflow_bridge.admin.common import (
    TenantObjectAdmin,
    actor,
    execution_link,
    json_block,
    marking_text,
    net_diagram,
    schema,
)
from workflow_bridge.definitions import marked_places
from workflow_bridge.models import AgentRun, Firing, Resource, ResourceEvent
from workflow_bridge.selectors import marked_places_in_use
from workflow_bridge.services import activity_fire, available_activities, compiled_of


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ResourceEventInline(ReadOnlyInline):
    model = ResourceEvent
    verbose_name = "history entry"
    verbose_name_plural = "history"
    fields = ("seq", "kind", "actor", "activity", "move", "entry_data", "execution", "created_at")
    readonly_fields = fields
    ordering = ("seq",)

    @admin.display(description="from → to")
    def move(self, obj: ResourceEvent) -> str:
        before, after = marking_text(obj.from_marking), marking_text(obj.to_marking)
        return before if before == after else f"{before} → {after}"

    @admin.display(description="data")
    def entry_data(self, obj: ResourceEvent) -> str:
        return json_block(obj.data) if obj.data else "-"

    @admin.display(description="execution")
    def execution(self, obj: ResourceEvent) -> str:
        return execution_link(obj.execution_id)


class AgentRunInline(ReadOnlyInline):
    model = AgentRun
    fk_name = "resource"
    fields = ("execution", "place", "trigger", "status", "reason", "created_at", "finished_at")
    readonly_fields = fields
    ordering = ("-created_at",)

    @admin.display(description="execution")
    def execution(self, obj: AgentRun) -> str:
        return execution_link(obj.execution_id)


class FiringInline(ReadOnlyInline):
    model = Firing
    verbose_name = "firing with activity agents"
    verbose_name_plural = "firings with activity agents"
    fields = ("activity", "transition", "status", "reason", "actor", "created_at", "finished_at")
    readonly_fields = fields
    ordering = ("-created_at",)


class PlaceFilter(admin.SimpleListFilter):
    """Resources with a token in a place (of the workflow filtered on, or of any)."""

    title = "place"
    parameter_name = "place"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        workflow_id = request.GET.get("workflow__id__exact") or None
        return [(place, place) for place in marked_places_in_use(workflow_id=workflow_id)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Resource]) -> QuerySet[Resource]:
        place = self.value()
        # Markings hold positive counts only: a key is a token (and the GIN index answers).
        return queryset.filter(marking__has_key=place) if place else queryset


@admin.register(Resource, site=tenant_admin_site)
class ResourceAdmin(TenantObjectAdmin):
    list_display = ("id", "workflow", "where", "version", "created_by", "updated_at")
    list_filter = ("workflow", PlaceFilter)
    list_select_related = ("workflow",)
    search_fields = ("id",)
    fieldsets = [
        (None, {"fields": ["id", "workflow", "state", "marking_shown", "version"]}),
        ("Diagram", {"fields": ["diagram"]}),
        ("Data", {"fields": ["data_shown", "metadata_shown"]}),
        (None, {"fields": ["agent_streak", "created_by", "created_at", "updated_at"]}),
    ]
    readonly_fields = (
        "id",
        "workflow",
        "state",
        "marking_shown",
        "version",
        "diagram",
        "data_shown",
        "metadata_shown",
        "agent_streak",
        "created_by",
        "created_at",
        "updated_at",
    )
    inlines = [FiringInline, ResourceEventInline, AgentRunInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Resource]:
        return super().get_queryset(request).select_related("workflow")

    # Resources are created and moved through the API and the activities below, never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="where")
    def where(self, obj: Resource) -> str:
        return marking_text(obj.marking)

    @admin.display(description="state")
    def state(self, obj: Resource) -> str:
        return obj.state or "- (not in exactly one place)"

    @admin.display(description="marking")
    def marking_shown(self, obj: Resource) -> str:
        return json_block(obj.marking)

    @admin.display(description="data")
    def data_shown(self, obj: Resource) -> str:
        return json_block(obj.data)

    @admin.display(description="metadata")
    def metadata_shown(self, obj: Resource) -> str:
        return json_block(obj.metadata)

    @admin.display(description="net")
    def diagram(self, obj: Resource) -> str:
        return net_diagram(
            compiled_of(obj.workflow),
            obj.marking,
            highlight=marked_places(obj.marking),
            note="This resource's tokens; its marked places are outlined, enabled transitions "
            "green.",
        )

    def get_urls(self) -> list[URLPattern]:
        fire = path(
            "<path:object_id>/fire/",
            self.admin_site.admin_view(require_POST(self.fire_view)),
            name="workflow_bridge_resource_fire",
        )
        return [fire, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        resource = self.get_object(request, unquote(object_id))
        activities = available_activities(resource)
        context = {
            **(extra_context or {}),
            "now": marking_text(resource.marking),
            "activities": activities,
            "fireable": [activity for activity in activities if activity["allowed"]],
            "can_fire": operator_may(request.user, Permission.WORKFLOWS_RUN),
            "fire_url": reverse(
                "tenant_admin:workflow_bridge_resource_fire", args=[quote(resource.pk)]
            ),
        }
        return super().change_view(request, object_id, form_url, context)

    def fire_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Fire the posted activity as the signed-in operator, then back to the page."""
        # The same rule as every action taken for an operator: tenants.operators.
        if not (
            self.has_view_permission(request)
            and operator_may(request.user, Permission.WORKFLOWS_RUN)
        ):
            raise PermissionDenied
        resource = self.get_object(request, unquote(object_id))
        back = HttpResponseRedirect(
            reverse("tenant_admin:workflow_bridge_resource_change", args=[quote(resource.pk)])
        )
        activity_id = request.POST.get("activity", "")
        text = request.POST.get("data", "").strip()
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            self.message_user(request, f"data: not valid JSON ({exc.msg})", messages.ERROR)
            return back
        try:
            fired = activity_fire(
                resource=resource,
                activity_id=activity_id,
                data=data,
                actor=actor(request),
                schema_name=schema(request),
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return back
        if fired.firing is not None:
            done = f"“{activity_id}” waits for its activity agents before the tokens move."
        else:
            done = f"Fired “{activity_id}”: now {marking_text(fired.resource.marking)}."
        self.message_user(request, done, messages.SUCCESS)
        return back
