"""The usage pages of both admin sites: the tenant's (charts as inline SVG, figures by agent and
model) and the platform's (every tenant's totals), each only for staff of its own site."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from agents.models import Agent, Execution
from agents.usage import usage_by_tenant
from tests.agents.conftest import make_agent, make_credential
from tests.conftest import Persona

PASSWORD = "correct-horse-battery-staple"
TENANT_PAGE = "/admin/agents/execution/usage/"
PLATFORM_PAGE = "/admin/usage/"


def make_user(schema: str, username: str, *, superuser: bool, perms: tuple[str, ...] = ()) -> Any:
    with schema_context(schema):
        users = get_user_model().objects
        if superuser:
            return users.create_superuser(username, f"{username}@example.com", PASSWORD)
        user = users.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user


def logged_in(user: Any, schema: str, host: str) -> Client:
    client = Client(HTTP_HOST=host)
    with schema_context(schema):
        client.force_login(user)
    return client


class Tables(HTMLParser):
    """The text of every cell (th and td) of each row of the tables with an id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id"):
            self._table = dict(attrs)["id"]
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: str) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(html)
    return parser.tables


def svgs_of(html: str) -> list[str]:
    """The charts (the admin's own theme icons are SVG too, without role="img")."""
    return re.findall(r'<svg\b[^>]*role="img".*?</svg>', html, flags=re.S)


# ---- stored executions with known figures ----


def store(
    agent: Agent,
    day: dt.date,
    status: str,
    tokens: tuple[int, int],
    cost: str,
    duration: int | None,
    model: str,
) -> Execution:
    execution = Execution.objects.create(
        agent=agent,
        agent_version=agent.version,
        status=status,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=Decimal(cost),
        duration_ms=duration,
        model_used=model,
        requested_model=model,
    )
    moment = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    Execution.objects.filter(pk=execution.pk).update(created_at=moment)
    return execution


def expected_cells(executions: list[Execution]) -> list[str]:
    """The cells figures_cells.html writes for these executions."""
    import statistics

    durations = sorted(e.duration_ms for e in executions if e.duration_ms is not None)
    tokens_in = sum(e.input_tokens for e in executions)
    tokens_out = sum(e.output_tokens for e in executions)
    cost = sum((e.cost for e in executions), Decimal("0"))
    p50 = round(float(statistics.median(durations)), 1) if durations else None
    p95: float | None = None
    if len(durations) == 1:
        p95 = float(durations[0])
    elif durations:
        p95 = round(statistics.quantiles(durations, n=100, method="inclusive")[94], 1)
    return [
        str(len(executions)),
        str(tokens_in),
        str(tokens_out),
        str(tokens_in + tokens_out),
        format(cost.normalize(), "f"),
        "—" if p50 is None else str(p50),
        "—" if p95 is None else str(p95),
    ]


@pytest.fixture
def period() -> tuple[dt.date, dt.date]:
    today = timezone.now().date()
    return today - dt.timedelta(days=6), today - dt.timedelta(days=4)


@pytest.fixture
def usage_data(alpha: Persona, bravo: Persona, period: tuple[dt.date, dt.date]) -> dict[str, Any]:
    first, last = period
    middle = first + dt.timedelta(days=1)
    with schema_context(alpha.schema):
        writer = make_agent(make_credential(), alpha.schema, slug="writer-usage")
        coder = make_agent(make_credential(), alpha.schema, slug="coder-usage")
        alpha_runs = [
            store(writer, first, "completed", (100, 40), "0.00120000", 120, "m-small"),
            store(writer, first, "completed", (300, 60), "0.00250000", 480, "m-small"),
            store(writer, middle, "failed", (5, 0), "0", 30, "m-small"),
            store(coder, middle, "completed", (2000, 900), "0.75000000", 2100, "m-large"),
            store(coder, last, "timeout", (50, 0), "0.00010000", 9000, "m-large"),
        ]
        # Outside the period: on no figure of the page.
        store(writer, first - dt.timedelta(days=1), "completed", (7777, 7777), "77", 7, "m-small")
    with schema_context(bravo.schema):
        other = make_agent(make_credential(), bravo.schema, slug="bravo-only-agent")
        bravo_runs = [
            store(other, middle, "completed", (11, 22), "0.03300000", 330, "bravo-model"),
            store(other, last, "cancelled", (0, 0), "0", None, "bravo-model"),
        ]
    return {
        "writer": writer,
        "coder": coder,
        "alpha": alpha_runs,
        "bravo": bravo_runs,
        "query": {"from": first.isoformat(), "to": last.isoformat()},
    }


# ---- the tenant admin's page ----


def test_tenant_usage_page_draws_svg_charts_and_writes_out_the_figures(alpha, usage_data):
    client = logged_in(
        make_user(alpha.schema, "usage-root", superuser=True), alpha.schema, alpha.host
    )
    response = client.get(TENANT_PAGE, usage_data["query"])
    assert response.status_code == 200
    html = response.content.decode()
    tables = tables_of(html)
    runs: list[Execution] = usage_data["alpha"]
    assert tables["usage-totals"][1] == expected_cells(runs)

    by_agent = {row[0]: row[1:] for row in tables["usage-by-agent"][1:]}
    assert by_agent == {
        "coder-usage": expected_cells([r for r in runs if r.agent_id == usage_data["coder"].id]),
        "writer-usage": expected_cells([r for r in runs if r.agent_id == usage_data["writer"].id]),
    }
    by_model = {row[0]: row[1:] for row in tables["usage-by-model"][1:]}
    assert by_model == {
        model: expected_cells([r for r in runs if r.model_used == model])
        for model in ("m-small", "m-large")
    }
    # Three charts, drawn inline: no script, no link to anything.
    charts = svgs_of(html)
    assert len(charts) == 3
    for svg in charts:
        assert "<script" not in svg and "href" not in svg and "url(" not in svg
    executions, cost, tokens = charts
    first = usage_data["query"]["from"]
    assert f"{first} completed: 2</title>" in executions
    assert "failed: 1</title>" in executions and "timeout: 1</title>" in executions
    assert f"{first} cost: 0.0037</title>" in cost
    assert "m-large input: 2,050</title>" in tokens and "m-large output: 900</title>" in tokens
    # Bravo's executions are on no figure of alpha's page.
    assert "bravo-only-agent" not in html and "bravo-model" not in html


def test_tenant_index_links_the_usage_page(alpha):
    client = logged_in(
        make_user(alpha.schema, "usage-root", superuser=True), alpha.schema, alpha.host
    )
    assert f'href="{TENANT_PAGE}"' in client.get("/admin/").content.decode()


def test_tenant_usage_page_is_for_staff_who_may_view_executions(alpha, usage_data):
    response = Client(HTTP_HOST=alpha.host).get(TENANT_PAGE)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    # Staff without the right to view executions: refused, and no link on the index.
    clerk = logged_in(make_user(alpha.schema, "clerk", superuser=False), alpha.schema, alpha.host)
    assert clerk.get(TENANT_PAGE).status_code == 403
    assert TENANT_PAGE not in clerk.get("/admin/").content.decode()

    viewer = make_user(alpha.schema, "viewer", superuser=False, perms=("agents.view_execution",))
    page = logged_in(viewer, alpha.schema, alpha.host).get(TENANT_PAGE, usage_data["query"])
    assert page.status_code == 200
    assert tables_of(page.content.decode())["usage-totals"][1] == expected_cells(
        usage_data["alpha"]
    )

    # A logged-in user who is not staff is sent to the login page.
    with schema_context(alpha.schema):
        plain = get_user_model().objects.create_user("plain", "plain@example.com", PASSWORD)
    response = logged_in(plain, alpha.schema, alpha.host).get(TENANT_PAGE)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_another_tenants_operator_sees_only_their_own_usage(alpha, bravo, usage_data):
    # Alpha's session does not open bravo's admin; bravo's operator sees bravo's figures.
    alpha_client = logged_in(
        make_user(alpha.schema, "root-a", superuser=True), alpha.schema, alpha.host
    )
    alpha_client.defaults["HTTP_HOST"] = bravo.host
    assert alpha_client.get(TENANT_PAGE).status_code == 302
    client = logged_in(make_user(bravo.schema, "root-b", superuser=True), bravo.schema, bravo.host)
    html = client.get(TENANT_PAGE, usage_data["query"]).content.decode()
    assert tables_of(html)["usage-totals"][1] == expected_cells(usage_data["bravo"])
    assert "writer-usage" not in html and "coder-usage" not in html


def test_a_bad_period_is_said_and_the_default_one_shown(alpha):
    client = logged_in(
        make_user(alpha.schema, "usage-root", superuser=True), alpha.schema, alpha.host
    )
    response = client.get(TENANT_PAGE, {"from": "2024-05-01", "to": "2024-04-01"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "from: must be before to" in html and 'class="errornote"' in html
    today = timezone.now().date().isoformat()
    assert f'name="to" value="{today}"' in html


# ---- the platform admin's page ----


@pytest.fixture
def platform_root(personas, db) -> Client:
    return logged_in(make_user("public", "platform-root", superuser=True), "public", "localhost")


def test_platform_usage_page_lists_every_tenants_totals(platform_root, usage_data):
    response = platform_root.get(PLATFORM_PAGE, usage_data["query"])
    assert response.status_code == 200
    html = response.content.decode()
    rows = {row[0].split()[0]: row for row in tables_of(html)["usage-by-tenant"][1:]}
    assert rows["alpha"][2:] == expected_cells(usage_data["alpha"])
    assert rows["bravo"][2:] == expected_cells(usage_data["bravo"])
    assert rows["alpha"][1] == "active"
    # The all-tenants row adds the additive figures up (other tenants may have some too).
    overall = rows["all"]
    assert int(overall[2]) >= len(usage_data["alpha"]) + len(usage_data["bravo"])
    assert overall[-2:] == ["—", "—"]
    charts = svgs_of(html)
    assert len(charts) == 1 and "alpha cost: 0.7538</title>" in charts[0]
    assert f'href="{PLATFORM_PAGE}"' in platform_root.get("/admin/").content.decode()


def test_platform_usage_page_is_for_platform_staff_only(alpha, platform_root):
    response = Client(HTTP_HOST="localhost").get(PLATFORM_PAGE)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    # Staff of the platform without the right to view tenants: refused, and no link.
    clerk = logged_in(make_user("public", "platform-clerk", superuser=False), "public", "localhost")
    assert clerk.get(PLATFORM_PAGE).status_code == 403
    assert PLATFORM_PAGE not in clerk.get("/admin/").content.decode()
    # A tenant's operator is no platform staff: their session does not reach the platform
    # site, and the tenant admin has no platform page.
    operator = make_user(alpha.schema, "tenant-root", superuser=True)
    tenant_client = logged_in(operator, alpha.schema, alpha.host)
    assert tenant_client.get(PLATFORM_PAGE).status_code == 404
    tenant_client.defaults["HTTP_HOST"] = "localhost"
    assert tenant_client.get(PLATFORM_PAGE).status_code == 302
    # Nor does the platform site serve the tenant page.
    assert platform_root.get(TENANT_PAGE).status_code == 404


def test_usage_by_tenant_names_each_schema_whatever_schema_is_current(alpha, bravo, usage_data):
    first, last = (dt.date.fromisoformat(usage_data["query"][k]) for k in ("from", "to"))
    since = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    # Left in bravo's schema (as a thread or a job might leave the connection): alpha's
    # figures are still alpha's.
    with schema_context(bravo.schema):
        found = {t.slug: t.totals for t in usage_by_tenant(since=since, until=until)}
    assert found["alpha"].executions == len(usage_data["alpha"])
    assert found["alpha"].cost == sum(e.cost for e in usage_data["alpha"])
    assert found["bravo"].executions == len(usage_data["bravo"])
    assert found["bravo"].input_tokens == 11
