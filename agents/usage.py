"""Usage of a tenant's executions: counts, tokens, cost and duration percentiles over a period,
grouped by any of day, agent, model, provider and status. Reads only, in the current schema
(the request's tenant, or one entered by name); ``usage_by_tenant`` is the one function that
walks the tenant schemas itself.

What each dimension means:

- ``day``: the UTC date the execution was created (the period is about ``created_at`` too).
- ``agent``: the execution's agent (``agent_id``, with its ``agent_slug``).
- ``model``: the model that produced the answer (``model_used``); for runs that never got one
  (failed before any call, queued, running, cancelled), the model that was asked for
  (``requested_model``, which may be a virtual model such as ``auto``).
- ``provider``: the provider of the run's *last* attempt (``attempts[-1].provider``), i.e.
  the one that served ``model_used`` when the run completed, including runs routed by a virtual
  model or moved to a fallback on another credential; for runs without attempts, the kind of
  the agent's credential. Tokens and cost of a run are never split across the providers of
  its attempts: the whole run counts for that one provider.
- ``status``: the execution's status.

Duration percentiles are PostgreSQL's ``percentile_cont`` (linear interpolation, as Python's
``statistics.quantiles(method="inclusive")``) over the rows that have a duration (ended runs);
``None`` when none has.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import CharField, F, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce, NullIf, TruncDate
from django.db.models.lookups import Exact, In
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.core.queue import tenant_schemas
from agents.models import Agent, Execution
from config.errors import ValidationFailed
from tenants.context import run_in_schema
from tenants.models import Tenant

DIMENSIONS: tuple[str, ...] = ("day", "agent", "model", "provider", "status")
DEFAULT_GROUP_BY: tuple[str, ...] = ("day",)
DEFAULT_PERIOD = dt.timedelta(days=30)
# Rounding of the percentiles (milliseconds), like agent_stats' average.
DURATION_DIGITS = 1

# The expressions behind ``model`` and ``provider`` (see the module docstring).
MODEL_EXPRESSION = Coalesce(NullIf(F("model_used"), Value("")), F("requested_model"))
PROVIDER_EXPRESSION = Coalesce(
    NullIf(KeyTextTransform("provider", KeyTransform(-1, "attempts")), Value("")),
    F("agent__credential__kind"),
    output_field=CharField(),
)

# Each dimension as the columns the inner query selects (alias, expression). The aliases are
# a fixed set: they are the only names spliced into the outer SQL.
_COLUMNS: dict[str, tuple[tuple[str, Any], ...]] = {
    "day": (("k_day", TruncDate("created_at", tzinfo=dt.UTC)),),
    # Slug first: groups by agent come ordered by slug.
    "agent": (("k_agent_slug", F("agent__slug")), ("k_agent_id", F("agent_id"))),
    "model": (("k_model", MODEL_EXPRESSION),),
    "provider": (("k_provider", PROVIDER_EXPRESSION),),
    "status": (("k_status", F("status")),),
}


@dataclass(frozen=True, slots=True)
class UsageFigures:
    executions: int
    input_tokens: int
    output_tokens: int
    cost: Decimal
    duration_ms_p50: float | None
    duration_ms_p95: float | None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_text(self) -> str:
        """The cost as the API and the pages show it: a plain decimal string, exact, without
        exponent or trailing zeros ("0.0125", "0")."""
        return format(self.cost.normalize(), "f")


NO_USAGE = UsageFigures(0, 0, 0, Decimal("0"), None, None)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group: the values of the grouped dimensions (the others are None) and its figures."""

    figures: UsageFigures
    day: dt.date | None = None
    agent_id: str | None = None
    agent_slug: str | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class UsageReport:
    since: dt.datetime
    until: dt.datetime
    group_by: tuple[str, ...]
    rows: list[UsageRow]
    totals: UsageFigures


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    """``[since, until)``, both aware."""

    since: dt.datetime
    until: dt.datetime

    @property
    def days(self) -> list[dt.date]:
        """Every UTC date the period touches, in order (the x axis of a chart by day)."""
        first = self.since.astimezone(dt.UTC).date()
        last = (self.until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class TenantUsage:
    slug: str
    name: str
    status: str
    schema_name: str
    totals: UsageFigures


# ---- parameters (shared by the REST endpoint and the admin pages) ----


def _instant(name: str, value: str, *, end: bool) -> dt.datetime:
    text = value.strip()
    if len(text) == 10:  # a date: the start of that UTC day, or (for an end) of the next one
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(f"{name}: not an ISO date or date-time") from None
        if end:
            if day == dt.date.max:
                raise ValidationFailed(f"{name}: out of range")
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    # A "+" of an offset left unencoded in a query string arrives as a space.
    candidates = [text]
    if " " in text:
        head, _, tail = text.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            moment = dt.datetime.fromisoformat(candidate)
        except ValueError:
            continue
        # Without an offset, a time is UTC (the days of the report are UTC days too).
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    raise ValidationFailed(f"{name}: not an ISO date or date-time")


def usage_period(
    *, start: str | None, end: str | None, now: dt.datetime | None = None
) -> UsagePeriod:
    """The period of ``from``/``to`` parameters: ISO dates (UTC days, ``to`` included) or
    date-times (``to`` excluded; UTC without an offset). ``to`` defaults to now, ``from`` to
    30 days before ``to``. ValidationFailed names the parameter."""
    until = _instant("to", end, end=True) if end else now or timezone.now()
    if start:
        since = _instant("from", start, end=False)
    else:
        try:
            since = until - DEFAULT_PERIOD
        except OverflowError:
            raise ValidationFailed("to: out of range") from None
    if since >= until:
        raise ValidationFailed("from: must be before to")
    return UsagePeriod(since, until)


def usage_period_or_default(
    *, start: str | None, end: str | None
) -> tuple[UsagePeriod, str | None]:
    """For pages: the asked period, or the default one and why the asked one was refused."""
    try:
        return usage_period(start=start, end=end), None
    except ValidationFailed as exc:
        return usage_period(start=None, end=None), exc.message


def usage_group_by(value: str | None) -> tuple[str, ...]:
    """``day,agent`` → ``("day", "agent")``: known dimensions, each once, in the order given;
    the default (absent) is by day."""
    if value is None:
        return DEFAULT_GROUP_BY
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise ValidationFailed(f"group_by: name at least one of {', '.join(DIMENSIONS)}")
    for name in names:
        if name not in DIMENSIONS:
            raise ValidationFailed(f"group_by: {name!r} is not one of {', '.join(DIMENSIONS)}")
    return tuple(dict.fromkeys(names))


# ---- queries ----


def _values(raw: str | Iterable[str] | None) -> list[str]:
    if raw is None:
        return []
    return [raw] if isinstance(raw, str) else list(raw)


def _duration(value: Any) -> float | None:
    return None if value is None else round(float(value), DURATION_DIGITS)


def _figures(
    executions: Any, tokens_in: Any, tokens_out: Any, cost: Any, p50: Any, p95: Any
) -> UsageFigures:
    return UsageFigures(
        executions=int(executions),
        input_tokens=int(tokens_in),
        output_tokens=int(tokens_out),
        cost=Decimal(cost),
        duration_ms_p50=_duration(p50),
        duration_ms_p95=_duration(p95),
    )


def usage(
    *,
    group_by: Sequence[str],
    since: dt.datetime,
    until: dt.datetime,
    agent: Agent | None = None,
    model: str | None = None,
    provider: str | Iterable[str] | None = None,
    status: str | Iterable[str] | None = None,
) -> UsageReport:
    """Usage of the current schema's executions created in ``[since, until)``, one row per
    group of ``group_by`` (none: no rows, only the totals), rows ordered by their keys.

    One SQL statement computes the rows and the totals (``GROUPING SETS``): both come from the
    same snapshot, so the totals are always the sum of the rows (a second query could see runs
    that ended in between). The filters and derived columns are the ORM's (an inner query);
    the grouping and ``percentile_cont`` are SQL around it. The filters ``provider`` and
    ``status`` take one value or several (any of them matches).
    """
    unknown = [name for name in group_by if name not in _COLUMNS]
    if unknown:
        raise ValueError(f"unknown usage dimensions: {unknown}")
    dimensions = tuple(dict.fromkeys(group_by))
    providers, statuses = _values(provider), _values(status)

    queryset = Execution.objects.filter(created_at__gte=since, created_at__lt=until).order_by()
    if agent is not None:
        queryset = queryset.filter(agent=agent)
    if statuses:
        queryset = queryset.filter(status__in=statuses)
    if model is not None:
        queryset = queryset.filter(Exact(MODEL_EXPRESSION, model))
    if providers:
        queryset = queryset.filter(In(PROVIDER_EXPRESSION, providers))
    derived: dict[str, Any] = {}
    for name in dimensions:
        derived.update(_COLUMNS[name])
    queryset = queryset.annotate(**derived)
    keys = [alias for name in dimensions for alias, _ in _COLUMNS[name]]
    inner = queryset.values(
        *keys,
        m_input=F("input_tokens"),
        m_output=F("output_tokens"),
        m_cost=F("cost"),
        m_duration=F("duration_ms"),
    )
    inner_sql, params = inner.query.sql_with_params()

    key_list = ", ".join(keys)
    measures = (
        "COUNT(*), COALESCE(SUM(m_input), 0), COALESCE(SUM(m_output), 0), "
        "COALESCE(SUM(m_cost), 0), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY m_duration), "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY m_duration)"
    )
    if keys:
        # GROUPING(...) is 0 on a row of the groups and non-zero on the totals row: a group
        # whose keys are NULL can never be taken for the totals.
        sql = (
            f"SELECT {key_list}, GROUPING({key_list}) <> 0 AS is_total, {measures} "  # noqa: S608
            f"FROM ({inner_sql}) AS usage_rows "
            f"GROUP BY GROUPING SETS (({key_list}), ()) "
            f"ORDER BY is_total, {key_list}"
        )
    else:
        sql = f"SELECT TRUE AS is_total, {measures} FROM ({inner_sql}) AS usage_rows"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()

    rows: list[UsageRow] = []
    totals = NO_USAGE
    for record in fetched:
        values = dict(zip(keys, record[: len(keys)], strict=True))
        is_total, *measured = record[len(keys) :]
        figures = _figures(*measured)
        if is_total:
            totals = figures
            continue
        rows.append(
            UsageRow(
                figures=figures,
                day=values.get("k_day"),
                agent_id=values.get("k_agent_id"),
                agent_slug=values.get("k_agent_slug"),
                model=values.get("k_model"),
                provider=values.get("k_provider"),
                status=values.get("k_status"),
            )
        )
    return UsageReport(since, until, dimensions, rows, totals)


def usage_sum(figures: Iterable[UsageFigures]) -> UsageFigures:
    """Counts, tokens and costs added up; the percentiles of a union cannot be made from those
    of its parts, so they are None."""
    listed = list(figures)
    return UsageFigures(
        executions=sum(f.executions for f in listed),
        input_tokens=sum(f.input_tokens for f in listed),
        output_tokens=sum(f.output_tokens for f in listed),
        cost=sum((f.cost for f in listed), Decimal("0")),
        duration_ms_p50=None,
        duration_ms_p95=None,
    )


def _tenant_totals(since: dt.datetime, until: dt.datetime) -> UsageFigures:
    return usage(group_by=(), since=since, until=until).totals


def usage_by_tenant(*, since: dt.datetime, until: dt.datetime) -> list[TenantUsage]:
    """Every tenant's totals for ``[since, until)``, by slug (platform admin).

    Runs on the public schema's side (no tenant is current): the tenants are read in
    ``public`` by name, and each one's executions inside its own schema, entered by name
    (``run_in_schema``), never through whatever schema the connection was left in. Tenants
    whose schema has no tables yet (being created) are left out. One query per tenant.
    """
    schemas = tenant_schemas()
    with schema_context("public"):
        tenants = list(Tenant.objects.filter(schema_name__in=schemas).order_by("slug"))
    return [
        TenantUsage(
            slug=tenant.slug,
            name=tenant.name,
            status=tenant.status,
            schema_name=tenant.schema_name,
            totals=run_in_schema(tenant.schema_name, _tenant_totals, since, until),
        )
        for tenant in tenants
    ]
