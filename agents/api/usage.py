"""``GET /usage``: the tenant's usage over a period, grouped by day, agent, model, provider or
status (``agents.usage`` says what each means); the figures of each group and the totals.

Query parameters: ``from``, ``to`` (ISO dates, UTC days with ``to`` included, or date-times
with ``to`` excluded; default: the last 30 days), ``group_by`` (comma list; default ``day``),
filters ``agent`` (id or slug: an unknown one is 404, like every agent of another tenant),
``model``, ``provider`` and ``status`` (these two: one value or a comma list). A bad value is
400 naming the parameter. Costs are decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import MethodPermissions
from agents.models import Agent, ExecutionStatus, ProviderKind
from agents.services.agents import agent_get
from agents.usage import (
    DIMENSIONS,
    UsageFigures,
    UsagePeriod,
    UsageReport,
    UsageRow,
    usage,
    usage_group_by,
    usage_period,
)
from config.errors import ValidationFailed
from tenants.roles import Permission

KNOWN_PARAMETERS = frozenset({"from", "to", "group_by", "agent", "model", "provider", "status"})


@dataclass(frozen=True, slots=True)
class UsageQuery:
    period: UsagePeriod
    group_by: tuple[str, ...]
    agent: Agent | None
    model: str | None
    providers: list[str]
    statuses: list[str]


def _choices(params: QueryDict, name: str, allowed: list[str]) -> list[str]:
    chosen = [value for raw in params.getlist(name) for value in raw.split(",") if value]
    for value in chosen:
        if value not in allowed:
            raise ValidationFailed(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return list(dict.fromkeys(chosen))


def parse_usage_query(params: QueryDict) -> UsageQuery:
    unknown = sorted(set(params) - KNOWN_PARAMETERS)
    if unknown:
        raise ValidationFailed(f"{unknown[0]}: unknown query parameter")
    agent_ref = params.get("agent")
    model = params.get("model")
    if "model" in params and not model:
        raise ValidationFailed("model: must not be empty")
    return UsageQuery(
        period=usage_period(start=params.get("from") or None, end=params.get("to") or None),
        group_by=usage_group_by(params.get("group_by")),
        # Resolved in the request's schema: another tenant's agent is not found (404).
        agent=agent_get(agent_ref) if agent_ref else None,
        model=model,
        providers=_choices(params, "provider", ProviderKind.values),
        statuses=_choices(params, "status", ExecutionStatus.values),
    )


def figures_json(figures: UsageFigures) -> dict[str, Any]:
    return {
        "executions": figures.executions,
        "input_tokens": figures.input_tokens,
        "output_tokens": figures.output_tokens,
        "total_tokens": figures.total_tokens,
        "cost": figures.cost_text,
        "duration_ms_p50": figures.duration_ms_p50,
        "duration_ms_p95": figures.duration_ms_p95,
    }


def _row_json(row: UsageRow, group_by: tuple[str, ...]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name in group_by:
        if name == "day":
            keys["day"] = row.day.isoformat() if row.day else None
        elif name == "agent":
            keys["agent_id"], keys["agent_slug"] = row.agent_id, row.agent_slug
        else:
            keys[name] = getattr(row, name)
    return {**keys, **figures_json(row.figures)}


def usage_json(report: UsageReport, query: UsageQuery) -> dict[str, Any]:
    return {
        "from": report.since.isoformat(),
        "to": report.until.isoformat(),
        "group_by": list(report.group_by),
        "filters": {
            "agent": query.agent.id if query.agent else None,
            "model": query.model,
            "provider": query.providers,
            "status": query.statuses,
        },
        "rows": [_row_json(row, report.group_by) for row in report.rows],
        "totals": figures_json(report.totals),
    }


class UsageFiguresOutput(serializers.Serializer[dict[str, Any]]):
    """Documentation of the figures of a group and of the totals (``figures_json``)."""

    executions = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.CharField(help_text="Decimal string")
    duration_ms_p50 = serializers.FloatField(allow_null=True)
    duration_ms_p95 = serializers.FloatField(allow_null=True)


# Documentation of the response (``usage_json`` builds it); inline: "from" is no Python name.
USAGE_OUTPUT = inline_serializer(
    "UsageOutput",
    fields={
        "from": serializers.DateTimeField(),
        "to": serializers.DateTimeField(),
        "group_by": serializers.ListField(child=serializers.ChoiceField(choices=DIMENSIONS)),
        "filters": serializers.DictField(),
        "rows": serializers.ListField(
            child=serializers.DictField(),
            help_text="The grouped keys (day, agent_id and agent_slug, model, provider, "
            "status) and the figures of each group",
        ),
        "totals": UsageFiguresOutput(),
    },
)


def _parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, str, OpenApiParameter.QUERY, description=description)


class UsageReportApi(MethodPermissions, APIView):
    """``GET /usage``: the tenant's executions, tokens, cost and duration percentiles over a
    period, grouped and filtered as the query asks (the module docstring has the rules)."""

    method_permissions = {"GET": Permission.EXECUTIONS_READ}

    @extend_schema(
        operation_id="usage_report",
        parameters=[
            _parameter("from", "ISO date (UTC day) or date-time; default: 30 days before to"),
            _parameter("to", "ISO date (included) or date-time (excluded); default: now"),
            _parameter("group_by", f"Comma list of {', '.join(DIMENSIONS)}; default: day"),
            _parameter("agent", "Agent id or slug"),
            _parameter("model", "The model used (or asked for, by runs that used none)"),
            _parameter("provider", "Provider kind(s), comma separated"),
            _parameter("status", "Execution status(es), comma separated"),
        ],
        responses={200: USAGE_OUTPUT, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
        summary="Usage (executions, tokens, cost, duration percentiles) by group",
    )
    def get(self, request: Request) -> Response:
        query = parse_usage_query(request.query_params)
        report = usage(
            group_by=query.group_by,
            since=query.period.since,
            until=query.period.until,
            agent=query.agent,
            model=query.model,
            provider=query.providers,
            status=query.statuses,
        )
        return Response(usage_json(report, query))
