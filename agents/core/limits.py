"""A tenant's plan, enforced where every run starts: once, for every interface.

Admission (:func:`check_request`, then :func:`admit_within_quota` in the admission
transaction) refuses what the plan forbids (a model or provider it does not allow, a
``max_tokens`` or timeout above its bounds) with a 400/403, and what its quotas no longer allow
(executions per day, tokens per day and month, the cost budget, concurrent executions,
executions per hour) with a 429 and ``Retry-After``, before anything is stored.

Tokens and cost are *reserved*: admission sets aside an upper bound of the first model call
(its prompt's bytes, an upper bound of its tokens, plus its ``max_tokens``) on the execution
row, under a per-tenant lock, and only if what the tenant's ended runs consumed this period
(``UsageCounter``) plus what its active runs hold plus this bound stays within the quota. Each
further model call of the run (tool steps, retries, fallbacks) must fit its own bound the same
way (:class:`QuotaGate`); one that does not ends the run with a terminal ``budget_exceeded``
error. When the run ends, the counters take its actual usage in the transaction that stores the
end (``agents.core.finish``, in the statement that stores the end) and its reservation stops counting (it is no longer active). So spend
never passes a cap, however many runs start at once, as long as providers honour
``max_tokens``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.core.requests import RunRequest
from agents.engine import PriceTable, is_virtual
from agents.engine.errors import EngineError
from agents.models import Agent, Execution, ExecutionStatus, UsagePeriod
from agents.providers.base import Usage
from config.errors import LimitExceeded, PermissionRefused, ValidationFailed
from tenants import ratelimit
from tenants.context import in_schema
from tenants.plans import NO_LIMITS, Limits, limits_for

BUDGET_EXCEEDED = "budget_exceeded"
ACTIVE_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
# Messages, roles and tool framing around the texts we can measure.
PROMPT_OVERHEAD_TOKENS = 256
_MILLION = Decimal(1_000_000)


class BudgetExceeded(EngineError):
    """A model call of a running execution would pass a quota: the run ends here."""

    code = BUDGET_EXCEEDED


# ---- periods ----


def day_start(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(dt.UTC).date()


def month_start(now: dt.datetime | None = None) -> dt.date:
    return day_start(now).replace(day=1)


def seconds_to_period_end(period: str, now: dt.datetime | None = None) -> float:
    now = (now or timezone.now()).astimezone(dt.UTC)
    day = now.date()
    if period == UsagePeriod.DAY:
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    else:
        first = day.replace(day=1)
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
        end = dt.datetime.combine(nxt, dt.time(), dt.UTC)
    return max((end - now).total_seconds(), 1.0)


# ---- checks that need no counting ----


def effective_max_tokens(agent: Agent, request: RunRequest) -> int:
    given = request.parameters.get("max_tokens")
    value = given if isinstance(given, int) else agent.max_tokens
    return int(value) if value else settings.AGENT_MAX_TOKENS_LIMIT


def check_request(limits: Limits, agent: Agent, request: RunRequest) -> RunRequest:
    """Refuse what the plan forbids outright; returns the request bounded by the plan (the
    agent's own ``max_tokens`` and timeout lowered to the plan's bounds)."""
    if limits is NO_LIMITS:
        return request
    model = request.model or agent.model
    if not is_virtual(model) and not limits.model_allowed(model):
        raise PermissionRefused(
            f"model {model!r} is not allowed on this tenant's plan",
            details={"model": model, "allowed_models": list(limits.allowed_models)},
        )
    kind = agent.credential.kind
    if not limits.provider_allowed(kind):
        raise PermissionRefused(
            f"provider {kind!r} is not allowed on this tenant's plan",
            details={"provider": kind, "allowed_providers": list(limits.allowed_providers)},
        )
    changes: dict[str, Any] = {}
    cap = limits.max_tokens_per_call
    if cap is not None:
        given = request.parameters.get("max_tokens")
        if isinstance(given, int) and given > cap:
            raise ValidationFailed(
                f"input.parameters.max_tokens: at most {cap} on this tenant's plan",
                details={"input.parameters.max_tokens": [f"at most {cap}"]},
            )
        if given is None and (agent.max_tokens is None or agent.max_tokens > cap):
            changes["parameters"] = {**request.parameters, "max_tokens": cap}
    seconds = limits.max_execution_seconds
    if seconds is not None:
        given_timeout = request.timeout_seconds
        if given_timeout is not None and given_timeout > seconds:
            raise ValidationFailed(
                f"execution_config.timeout_seconds: at most {seconds} on this tenant's plan",
                details={"execution_config.timeout_seconds": [f"at most {seconds}"]},
            )
        if given_timeout is None and agent.timeout_seconds > seconds:
            changes["timeout_seconds"] = float(seconds)
    return dataclasses.replace(request, **changes) if changes else request


# ---- reservations ----


def _price_bound(prices: PriceTable, models: list[str]) -> tuple[Decimal, Decimal]:
    """Highest input and output price among the models a call may end up on (every priced
    model, for a virtual one); unpriced models cost nothing, as they are billed."""
    if any(is_virtual(m) for m in models):
        return prices.highest()
    entries = [e for e in (prices.lookup(m) for m in models) if e is not None]
    if not entries:
        return Decimal(0), Decimal(0)
    return (
        max(e.input_per_million for e in entries),
        max(e.output_per_million for e in entries),
    )


def call_cost_bound(
    prices: PriceTable, models: list[str], input_tokens: int, output_tokens: int
) -> Decimal:
    inp, out = _price_bound(prices, models)
    return (Decimal(input_tokens) * inp + Decimal(output_tokens) * out) / _MILLION


def _utf8(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return len(text.encode())


@dataclass(frozen=True)
class Reservation:
    tokens: int = 0
    cost: Decimal = Decimal(0)


def first_call_bound(agent: Agent, request: RunRequest, prices: PriceTable) -> Reservation:
    """An upper bound of the first model call: every byte that can go into its prompt is at
    most one token, plus the call's ``max_tokens``."""
    prompt = (
        _utf8(agent.system_prompt)
        + _utf8(agent.context_instructions)
        + _utf8(agent.user_template)
        + _utf8(request.message or "")
        + _utf8(request.parameters)
        + _utf8(request.context)
        + _utf8(agent.tools)
        + _utf8(agent.output_schema or {})
        + sum(
            _utf8(m.content) + _utf8([c.arguments for c in m.tool_calls]) for m in request.messages
        )
        + sum(
            _utf8(t.name) + _utf8(t.description) + _utf8(t.parameters) for t in request.client_tools
        )
        + PROMPT_OVERHEAD_TOKENS
    )
    output = effective_max_tokens(agent, request)
    models = [request.model or agent.model]
    models += [str(f.get("model", "")) for f in agent.fallback_models or [] if isinstance(f, dict)]
    return Reservation(prompt + output, call_cost_bound(prices, models, prompt, output))


@dataclass(frozen=True)
class Standing:
    """What the tenant's quotas stand at: ended runs this period plus active reservations."""

    running: int
    active: int
    reserved_tokens: int
    reserved_cost: Decimal
    day_executions: int
    day_tokens: int
    day_cost: Decimal
    month_tokens: int
    month_cost: Decimal


_STANDING_SQL = """
WITH active AS (
    SELECT count(*) FILTER (WHERE status = 'running') AS running, count(*) AS n,
           coalesce(sum(reserved_tokens), 0) AS tokens, coalesce(sum(reserved_cost), 0) AS cost
      FROM agents_execution WHERE status IN ('pending', 'queued', 'running')
), d AS (
    SELECT executions, input_tokens + output_tokens AS tokens, cost
      FROM agents_usagecounter WHERE period = 'day' AND starts_on = %s
), m AS (
    SELECT input_tokens + output_tokens AS tokens, cost
      FROM agents_usagecounter WHERE period = 'month' AND starts_on = %s
)
SELECT active.running, active.n, active.tokens, active.cost,
       coalesce(d.executions, 0), coalesce(d.tokens, 0), coalesce(d.cost, 0),
       coalesce(m.tokens, 0), coalesce(m.cost, 0)
  FROM active LEFT JOIN d ON true LEFT JOIN m ON true
"""


_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def lock_key(schema_name: str) -> str:
    """The per-tenant advisory lock of quota decisions. The same lock the worker's claim takes
    for the concurrency cap: admissions and claims count together."""
    return f"cba:tenant-cap:{schema_name}"


def standing(lock_schema: str | None = None) -> Standing:
    """One statement (one snapshot): a run ending meanwhile is counted exactly once.

    ``lock_schema``: first take that tenant's lock (until the transaction ends), in the same
    round trip. The two statements go in one message; in READ COMMITTED each statement takes
    its own snapshot, so the count is taken after the lock is held, as with two calls.
    """
    now = timezone.now()
    params: list[Any] = [day_start(now), month_start(now)]
    sql = _STANDING_SQL
    if lock_schema is not None:
        sql = f"{_LOCK_SQL}; {_STANDING_SQL}"
        params = [lock_key(lock_schema), *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if lock_schema is not None:
            cursor.nextset()
        row = cursor.fetchone()
    return Standing(
        running=int(row[0]),
        active=int(row[1]),
        reserved_tokens=int(row[2]),
        reserved_cost=Decimal(row[3]),
        day_executions=int(row[4]),
        day_tokens=int(row[5]),
        day_cost=Decimal(row[6]),
        month_tokens=int(row[7]),
        month_cost=Decimal(row[8]),
    )


def _check_room(limits: Limits, now: Standing, extra: Reservation) -> None:
    """Raise ``LimitExceeded`` unless ``extra`` fits every token and cost quota."""
    tokens = now.reserved_tokens + extra.tokens
    if limits.tokens_per_day is not None and now.day_tokens + tokens > limits.tokens_per_day:
        raise LimitExceeded(
            "daily_token_quota_exceeded",
            f"the tenant's {limits.tokens_per_day} tokens per day are used up "
            f"(or this run could pass them)",
            retry_after=seconds_to_period_end(UsagePeriod.DAY),
        )
    if limits.tokens_per_month is not None and now.month_tokens + tokens > limits.tokens_per_month:
        raise LimitExceeded(
            "monthly_token_quota_exceeded",
            f"the tenant's {limits.tokens_per_month} tokens per month are used up "
            f"(or this run could pass them)",
            retry_after=seconds_to_period_end(UsagePeriod.MONTH),
        )
    budget = limits.cost_budget
    if budget is not None:
        spent = now.day_cost if limits.budget_period == UsagePeriod.DAY else now.month_cost
        if spent + now.reserved_cost + extra.cost > budget:
            raise LimitExceeded(
                BUDGET_EXCEEDED,
                f"the tenant's budget of {format(budget.normalize(), 'f')} per "
                f"{limits.budget_period} is spent (or this run could pass it)",
                retry_after=seconds_to_period_end(limits.budget_period),
                details={"spent": format(spent, "f"), "budget": format(budget, "f")},
            )


def admit_within_quota(
    schema_name: str, limits: Limits, *, foreground: bool, bound: Reservation
) -> Reservation:
    """Inside the admission transaction: refuse a run the quotas have no room for, or return
    what to reserve on its row. Takes the tenant's lock only when a quota applies."""
    cap = limits.max_concurrent_executions
    if not limits.meters_usage and not (foreground and cap is not None):
        return Reservation()
    now = standing(lock_schema=schema_name)
    if foreground and cap is not None and now.running >= cap:
        raise LimitExceeded(
            "concurrency_limit_exceeded",
            f"the tenant already runs {now.running} executions (its plan allows {cap} at once)",
            retry_after=1,
        )
    if (
        limits.executions_per_day is not None
        and now.day_executions + now.active >= limits.executions_per_day
    ):
        raise LimitExceeded(
            "daily_execution_quota_exceeded",
            f"the tenant's {limits.executions_per_day} executions per day are used up",
            retry_after=seconds_to_period_end(UsagePeriod.DAY),
        )
    if limits.tokens_per_day is None and limits.tokens_per_month is None:
        bound = Reservation(0, bound.cost)
    if limits.cost_budget is None:
        bound = Reservation(bound.tokens, Decimal(0))
    _check_room(limits, now, bound)
    return bound


def execution_rate_buckets(
    limits: Limits, tenant_id: int | str, who: str
) -> list[ratelimit.Bucket]:
    buckets = []
    if limits.executions_per_hour is not None:
        buckets.append(
            ratelimit.Bucket(
                f"exec:t:{tenant_id}",
                limits.executions_per_hour,
                3600.0,
                "tenant_execution_rate_exceeded",
            )
        )
    if limits.executions_per_hour_per_key is not None:
        buckets.append(
            ratelimit.Bucket(
                f"exec:k:{tenant_id}:{who}",
                limits.executions_per_hour_per_key,
                3600.0,
                "key_execution_rate_exceeded",
            )
        )
    return buckets


def take_execution_rate(limits: Limits, tenant_id: int | str, who: str) -> None:
    """One execution from the tenant's and the caller's hourly buckets, or a 429."""
    buckets = execution_rate_buckets(limits, tenant_id, who)
    if not buckets:
        return
    decisions = ratelimit.take(buckets)
    hit = ratelimit.refused(decisions)
    if hit is not None:
        scope = "tenant" if hit.bucket.code.startswith("tenant") else "API key"
        raise LimitExceeded(
            hit.bucket.code,
            f"too many executions: {hit.bucket.limit} per hour ({scope})",
            headers=ratelimit.headers(decisions),
        )


# ---- while a run runs ----


def _extend(schema_name: str, execution_id: str, limits: Limits, extra: Reservation) -> Reservation:
    with transaction.atomic():
        _check_room(limits, standing(lock_schema=schema_name), extra)
        row = Execution.objects.filter(pk=execution_id).values_list(
            "reserved_tokens", "reserved_cost"
        )[0]
        total = Reservation(row[0] + extra.tokens, row[1] + extra.cost)
        Execution.objects.filter(pk=execution_id).update(
            reserved_tokens=total.tokens, reserved_cost=total.cost
        )
        return total


class QuotaGate:
    """The engine asks this before every model call of a metered run (``SpendGate``)."""

    def __init__(
        self,
        *,
        schema_name: str,
        execution: Execution,
        limits: Limits,
        prices: PriceTable,
    ) -> None:
        self.schema_name = schema_name
        self.execution_id = execution.id
        self.limits = limits
        self.prices = prices
        self.reserved = Reservation(execution.reserved_tokens, execution.reserved_cost)

    async def before_call(
        self,
        *,
        model: str,
        prompt_bytes: int,
        max_output: int | None,
        spent: Usage,
        spent_cost: Decimal,
    ) -> None:
        limits = self.limits
        output = max_output or settings.AGENT_MAX_TOKENS_LIMIT
        prompt = prompt_bytes + PROMPT_OVERHEAD_TOKENS
        tokens = spent.total_tokens + prompt + output
        cost = spent_cost + call_cost_bound(self.prices, [model], prompt, output)
        if limits.tokens_per_day is None and limits.tokens_per_month is None:
            tokens = 0
        if limits.cost_budget is None:
            cost = Decimal(0)
        extra = Reservation(
            max(tokens - self.reserved.tokens, 0), max(cost - self.reserved.cost, Decimal(0))
        )
        if extra.tokens == 0 and extra.cost == 0:
            return
        try:
            self.reserved = await in_schema(
                self.schema_name, _extend, self.schema_name, self.execution_id, limits, extra
            )
        except LimitExceeded as exc:
            raise BudgetExceeded(f"the next model call could pass a quota: {exc.message}") from None


def gate_for(
    schema_name: str, execution: Execution, limits: Limits, prices: PriceTable
) -> QuotaGate | None:
    """The gate of a run whose tenant meters tokens or cost (None: nothing to check)."""
    if (
        limits.tokens_per_day is None
        and limits.tokens_per_month is None
        and limits.cost_budget is None
    ):
        return None
    return QuotaGate(schema_name=schema_name, execution=execution, limits=limits, prices=prices)


class Overloaded(LimitExceeded):
    pass


def shed_load(running_here: int) -> None:
    """Refuse a new run (503 + Retry-After) when this process already runs its maximum:
    better a quick answer the client can retry elsewhere than an unbounded queue in memory."""
    cap = settings.MAX_RUNS_PER_PROCESS
    if cap and running_here >= cap:
        raise Overloaded(
            "overloaded",
            "the server is at capacity; retry shortly",
            retry_after=settings.SHED_RETRY_AFTER_SECONDS,
            status=503,
        )


def consumption(schema_name: str) -> dict[str, Any]:
    """The tenant's plan and where it stands (sync, in ``schema_name``), for ``GET /plan``."""
    limits = limits_for(schema_name)
    now = standing()
    agents = Agent.objects.count()
    budget = limits.cost_budget
    spent = now.day_cost if limits.budget_period == UsagePeriod.DAY else now.month_cost
    share = float(spent / budget) if budget else None
    return {
        "plan": limits.as_json(),
        "current": {
            "agents": agents,
            "running_executions": now.running,
            "active_executions": now.active,
            "executions_today": now.day_executions + now.active,
            "tokens_today": now.day_tokens,
            "tokens_this_month": now.month_tokens,
            "cost_today": format(now.day_cost, "f"),
            "cost_this_month": format(now.month_cost, "f"),
            "reserved_tokens": now.reserved_tokens,
            "reserved_cost": format(now.reserved_cost, "f"),
            "budget_spent": format(spent, "f") if budget is not None else None,
            "budget_used_percent": round(share * 100, 2) if share is not None else None,
            "budget_warning": share is not None and share * 100 >= limits.budget_warning_percent,
        },
    }
