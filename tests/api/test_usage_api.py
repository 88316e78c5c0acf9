"""GET /usage: every figure is the sum (or percentile) of the stored executions it groups, for
each grouping and filter; another tenant sees none of it; bad parameters are 400 by name."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Agent, Execution
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import Persona

# ---- stored executions with known figures, and the same figures computed in Python ----


@dataclass(frozen=True)
class Run:
    agent: Agent
    provider_kind: str  # the agent's credential
    status: str
    day: dt.date
    input_tokens: int = 0
    output_tokens: int = 0
    cost: str = "0"
    duration_ms: int | None = None
    model_used: str = ""
    requested_model: str = "m-small"
    attempt_providers: tuple[str, ...] = ()

    # What the endpoint documents for each dimension.
    @property
    def model(self) -> str:
        return self.model_used or self.requested_model

    @property
    def provider(self) -> str:
        return self.attempt_providers[-1] if self.attempt_providers else self.provider_kind

    def key(self, group_by: Iterable[str]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for name in group_by:
            if name == "day":
                parts.append(self.day.isoformat())
            elif name == "agent":
                parts += [self.agent.slug, self.agent.id]
            else:
                parts.append(getattr(self, name))
        return tuple(parts)


def store(run: Run) -> Execution:
    execution = Execution.objects.create(
        agent=run.agent,
        agent_version=run.agent.version,
        status=run.status,
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        cost=Decimal(run.cost),
        duration_ms=run.duration_ms,
        model_used=run.model_used,
        requested_model=run.requested_model,
        attempts=[{"model": run.model, "provider": p} for p in run.attempt_providers],
    )
    # created_at is auto_now_add: move the row to its day afterwards (noon UTC).
    moment = dt.datetime.combine(run.day, dt.time(12), tzinfo=dt.UTC)
    Execution.objects.filter(pk=execution.pk).update(created_at=moment)
    return execution


def percentile(values: list[int], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont, by Python's statistics on the same values."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    if fraction == 0.5:
        return float(statistics.median(values))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(fraction * 100) - 1]


def figures(runs: list[Run]) -> dict[str, Any]:
    durations = [r.duration_ms for r in runs if r.duration_ms is not None]
    tokens_in = sum(r.input_tokens for r in runs)
    tokens_out = sum(r.output_tokens for r in runs)
    return {
        "executions": len(runs),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
        "cost": sum((Decimal(r.cost) for r in runs), Decimal("0")),
        "duration_ms_p50": percentile(durations, 0.5),
        "duration_ms_p95": percentile(durations, 0.95),
    }


def expected_rows(runs: list[Run], group_by: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.key(group_by)].append(run)
    return {key: figures(members) for key, members in groups.items()}


def row_key(row: dict[str, Any], group_by: list[str]) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name in group_by:
        parts += [row["agent_slug"], row["agent_id"]] if name == "agent" else [row[name]]
    return tuple(parts)


def measured(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer's figures in the types of ``figures`` (cost exact, durations as floats)."""
    return {**answer, "cost": Decimal(answer["cost"])}


def assert_figures(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    got = measured(answer)
    for name in ("duration_ms_p50", "duration_ms_p95"):
        if expected[name] is None:
            assert got[name] is None, (name, answer)
        else:
            # The endpoint rounds to 0.1 ms.
            assert got[name] == pytest.approx(expected[name], abs=0.051), (name, answer)
    exact = ("executions", "input_tokens", "output_tokens", "total_tokens", "cost")
    assert {k: got[k] for k in exact} == {k: expected[k] for k in exact}, answer


@dataclass
class World:
    alpha: Persona
    bravo: Persona
    writer: Agent  # echo credential
    coder: Agent  # openai credential
    runs: list[Run]  # alpha's, inside the period
    outside: list[Run]  # alpha's, before or after it
    bravo_runs: list[Run]
    start: dt.date  # the period: start .. end (both days included)
    end: dt.date

    def params(self, **extra: str) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), **extra}

    def only(self, predicate: Callable[[Run], bool]) -> list[Run]:
        return [run for run in self.runs if predicate(run)]


@pytest.fixture
def world(alpha: Persona, bravo: Persona) -> World:
    start = timezone.now().date() - dt.timedelta(days=12)
    d0, d1, d2 = start, start + dt.timedelta(days=1), start + dt.timedelta(days=2)
    end = start + dt.timedelta(days=3)
    with schema_context(alpha.schema):
        writer = make_agent(make_credential(kind="echo"), alpha.schema, slug="writer")
        coder = make_agent(
            make_credential(kind="openai", base_url="https://llm.example.com/v1"),
            alpha.schema,
            slug="coder",
            model="gpt-x",
        )
        w, c = (writer, "echo"), (coder, "openai")
        runs = [
            Run(*w, "completed", d0, 100, 50, "0.00100000", 100, "m-small", "m-small", ("echo",)),
            Run(*w, "completed", d0, 200, 80, "0.00200000", 300, "m-small", "m-small", ("echo",)),
            # Failed before any model call: no model used, no attempt.
            Run(*w, "failed", d1, 0, 0, "0", 50),
            # Fell back from openai to anthropic: the last attempt's provider counts.
            Run(
                *c,
                "completed",
                d1,
                1000,
                500,
                "0.50000000",
                1200,
                "claude-y",
                "gpt-x",
                ("openai", "anthropic"),
            ),
            # A virtual model that timed out: the model asked for, the provider tried.
            Run(*c, "timeout", d2, 10, 0, "0.00001000", 5000, "", "auto", ("openai",)),
            # Still running: no duration, no attempt yet.
            Run(*c, "running", d2, requested_model="gpt-x"),
            Run(*w, "completed", d2, 300, 120, "0.00300000", 200, "m-small", "m-small", ("echo",)),
            Run(*w, "completed", d2, 7, 3, "0.00000700", 250, "m-small", "m-small", ("echo",)),
            Run(*c, "completed", d0, 40, 60, "0.01234567", 900, "gpt-x", "gpt-x", ("openai",)),
        ]
        outside = [
            Run(*w, "completed", start - dt.timedelta(days=1), 999, 999, "9.99", 7, "m-small"),
            Run(*c, "completed", end + dt.timedelta(days=1), 888, 888, "8.88", 8, "gpt-x"),
        ]
        for run in runs + outside:
            store(run)
    with schema_context(bravo.schema):
        agent = make_agent(make_credential(kind="echo"), bravo.schema, slug="writer")
        bravo_runs = [
            Run(agent, "echo", "completed", d1, 5, 5, "0.00005000", 40, "b-model"),
            Run(agent, "echo", "failed", d2, 1, 0, "0", 60, "b-model"),
        ]
        for run in bravo_runs:
            store(run)
    return World(alpha, bravo, writer, coder, runs, outside, bravo_runs, start, end)


def get_usage(api: Any, key: str, params: dict[str, str]) -> Any:
    return api(key).get("/usage", **params)


# ---- groupings ----


@pytest.mark.parametrize(
    "group_by",
    [
        ["day"],
        ["agent"],
        ["model"],
        ["provider"],
        ["status"],
        ["day", "status"],
        ["agent", "model", "provider"],
        ["status", "day", "agent", "model", "provider"],
    ],
)
def test_each_grouping_equals_the_stored_executions(api, world, group_by):
    response = get_usage(api, world.alpha.readonly_key, world.params(group_by=",".join(group_by)))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_by"] == group_by
    expected = expected_rows(world.runs, group_by)
    got = {row_key(row, group_by): row for row in body["rows"]}
    assert set(got) == set(expected)
    for key, figures_ in expected.items():
        assert_figures(got[key], figures_)
    # The rows come ordered by their keys, and the totals are all the runs of the period.
    keys = [row_key(row, group_by) for row in body["rows"]]
    assert keys == sorted(keys)
    assert_figures(body["totals"], figures(world.runs))
    assert sum(Decimal(row["cost"]) for row in body["rows"]) == Decimal(body["totals"]["cost"])


def test_the_documented_model_and_provider_of_a_run(api, world):
    body = get_usage(
        api, world.alpha.readonly_key, world.params(group_by="status,model,provider")
    ).json()
    seen = {(r["status"], r["model"], r["provider"]) for r in body["rows"]}
    assert ("completed", "claude-y", "anthropic") in seen  # the fallback that answered
    assert ("timeout", "auto", "openai") in seen  # the virtual model asked for
    assert ("running", "gpt-x", "openai") in seen  # no attempt: the agent's credential
    assert ("failed", "m-small", "echo") in seen


def test_default_grouping_is_by_day_and_costs_are_decimal_strings(api, world):
    body = get_usage(api, world.alpha.readonly_key, world.params()).json()
    assert body["group_by"] == ["day"]
    assert [row["day"] for row in body["rows"]] == [
        (world.start + dt.timedelta(days=n)).isoformat() for n in range(3)
    ]
    assert all(isinstance(row["cost"], str) for row in body["rows"])
    assert body["totals"]["cost"] == "0.51836267"
    assert body["from"] == f"{world.start.isoformat()}T00:00:00+00:00"
    assert body["to"] == f"{(world.end + dt.timedelta(days=1)).isoformat()}T00:00:00+00:00"


def test_the_period_includes_the_to_day_and_excludes_a_to_instant(api, world):
    everything = world.runs + world.outside
    wide = world.params()
    wide["from"] = (world.start - dt.timedelta(days=1)).isoformat()
    wide["to"] = (world.end + dt.timedelta(days=1)).isoformat()
    assert_figures(
        get_usage(api, world.alpha.readonly_key, wide).json()["totals"], figures(everything)
    )
    # A date-time "to" excludes its instant: the runs of that day at noon stay out.
    last_noon = f"{(world.start + dt.timedelta(days=2)).isoformat()}T12:00:00Z"
    body = get_usage(
        api, world.alpha.readonly_key, {"from": world.start.isoformat(), "to": last_noon}
    )
    assert_figures(
        body.json()["totals"],
        figures([r for r in world.runs if r.day < world.start + dt.timedelta(days=2)]),
    )
    # An offset, with its "+" sent unencoded (a space once decoded), is understood.
    body = get_usage(
        api,
        world.alpha.readonly_key,
        {"from": f"{world.start.isoformat()}T14:00:00 02:00", "to": world.end.isoformat()},
    ).json()
    assert body["from"] == f"{world.start.isoformat()}T14:00:00+02:00"
    assert_figures(body["totals"], figures(world.runs))


def test_the_default_period_is_the_last_30_days(api, alpha):
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(), alpha.schema)
        today = timezone.now().date()
        recent = Run(agent, "echo", "completed", today - dt.timedelta(days=3), 11, 22, "0.1", 5)
        old = Run(agent, "echo", "completed", today - dt.timedelta(days=40), 33, 44, "0.2", 6)
        store(recent)
        store(old)
    body = api(alpha.readonly_key).get("/usage").json()
    assert_figures(body["totals"], figures([recent]))


# ---- filters ----


@pytest.mark.parametrize(
    ("params", "predicate"),
    [
        ({"agent": "writer"}, lambda r: r.agent.slug == "writer"),
        ({"agent": "@coder"}, lambda r: r.agent.slug == "coder"),  # by id (see below)
        ({"model": "gpt-x"}, lambda r: r.model == "gpt-x"),
        ({"model": "auto"}, lambda r: r.model == "auto"),
        ({"provider": "openai"}, lambda r: r.provider == "openai"),
        ({"provider": "anthropic,echo"}, lambda r: r.provider in {"anthropic", "echo"}),
        ({"status": "completed"}, lambda r: r.status == "completed"),
        ({"status": "failed,timeout"}, lambda r: r.status in {"failed", "timeout"}),
        (
            {"agent": "coder", "status": "completed", "provider": "openai"},
            lambda r: (
                r.agent.slug == "coder" and r.status == "completed" and r.provider == "openai"
            ),
        ),
    ],
)
def test_filters_keep_exactly_the_matching_executions(api, world, params, predicate):
    if params.get("agent") == "@coder":
        params = {**params, "agent": world.coder.id}
    matching = world.only(predicate)
    assert matching  # each case keeps something
    for group_by in (["day"], ["agent", "status"]):
        body = get_usage(
            api, world.alpha.readonly_key, world.params(**params, group_by=",".join(group_by))
        ).json()
        assert_figures(body["totals"], figures(matching))
        expected = expected_rows(matching, group_by)
        got = {row_key(row, group_by): row for row in body["rows"]}
        assert set(got) == set(expected)
        for key, figures_ in expected.items():
            assert_figures(got[key], figures_)


def test_a_filter_that_matches_nothing_is_an_empty_report(api, world):
    body = get_usage(api, world.alpha.readonly_key, world.params(model="no-such-model")).json()
    assert body["rows"] == []
    assert body["totals"] == {
        "executions": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cost": "0",
        "duration_ms_p50": None,
        "duration_ms_p95": None,
    }


# ---- tenants ----


def test_another_tenant_sees_only_its_own_usage(api, world):
    for group_by in ("day", "agent,model,provider,status"):
        body = get_usage(api, world.bravo.readonly_key, world.params(group_by=group_by)).json()
        assert_figures(body["totals"], figures(world.bravo_runs))
        assert {row.get("agent_id") for row in body["rows"]}.isdisjoint(
            {world.writer.id, world.coder.id}
        )
    # Bravo's "writer" is its own agent; alpha's agents are not found, by id or slug.
    mine = get_usage(api, world.bravo.readonly_key, world.params(agent="writer")).json()
    assert_figures(mine["totals"], figures(world.bravo_runs))
    for ref in (world.writer.id, world.coder.id, "coder"):
        response = get_usage(api, world.bravo.readonly_key, world.params(agent=ref))
        assert response.status_code == 404, ref
        assert response.json()["error"]["code"] == "not_found"
    # And the other way round.
    body = get_usage(api, world.alpha.readonly_key, world.params()).json()
    assert_figures(body["totals"], figures(world.runs))


def test_an_unknown_agent_is_404(api, world):
    response = get_usage(api, world.alpha.readonly_key, world.params(agent="agent_nope"))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Agent not found."


# ---- refusals ----


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2024-13-01"}, "from"),
        ({"to": "2024-02-30"}, "to"),
        ({"to": "2024-01-01T25:00:00"}, "to"),
        ({"from": "2024-02-01", "to": "2024-01-01"}, "from"),
        ({"from": "2024-01-01T10:00:00Z", "to": "2024-01-01T10:00:00Z"}, "from"),
        ({"to": "0001-01-01T00:00:00Z"}, "to"),
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "day,tenant"}, "group_by"),
        ({"group_by": ","}, "group_by"),
        ({"status": "done"}, "status"),
        ({"status": "completed,nope"}, "status"),
        ({"provider": "openai,skynet"}, "provider"),
        ({"model": ""}, "model"),
        ({"tenant": "alpha"}, "tenant"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api, alpha, params, parameter):
    response = api(alpha.readonly_key).get("/usage", **params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{parameter}:"), error


def test_every_role_may_read_usage_but_no_one_may_write_it(api, world):
    for key in (world.alpha.readonly_key, world.alpha.user_key, world.alpha.admin_key):
        assert get_usage(api, key, world.params()).status_code == 200
    # Only GET has a permission: anything else is refused (fail closed), even for an admin.
    response = api(world.alpha.admin_key).post("/usage", {})
    assert response.status_code == 403
    assert api(None).get("/usage").status_code == 401
