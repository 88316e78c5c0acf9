"""The tenant admin for agents, driven like a browser: Django's test client on the tenant's host,
forms read from the rendered page and posted back with the operator's changes."""

from __future__ import annotations

import json
import re
import uuid
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_tenants.utils import schema_context

from agents.models import (
    Agent,
    AgentVersion,
    Execution,
    ExecutionEvent,
    McpServer,
    ModelPrice,
    ProviderCredential,
)
from agents.services.credentials import provider_config_for
from agents.services.mcp_servers import mcp_auth_header
from tenants.audit.models import AuditLog
from tests.agents.conftest import make_agent, make_credential
from tests.runs import principal_for, run

PASSWORD = "correct-horse-battery-staple"


# ---- helpers: operators, logged-in clients, and forms read back from the page ----


def make_operator(schema: str, username: str = "operator", *, staff: bool = True) -> Any:
    with schema_context(schema):
        users = get_user_model().objects
        if staff:
            return users.create_superuser(username, f"{username}@example.com", PASSWORD)
        return users.create_user(username, f"{username}@example.com", PASSWORD)


def client_for(user: Any, schema: str, host: str) -> Client:
    """A browser on ``host`` with ``user`` logged in (the session lives in ``schema``)."""
    client = Client(HTTP_HOST=host)
    with schema_context(schema):
        client.force_login(user)
    return client


class _FormReader(HTMLParser):
    """The fields a browser would submit for the form with ``form_id``."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.found = False
        self.fields: dict[str, list[str]] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._textarea: str | None = None
        self._text: list[str] = []

    def _add(self, name: str, value: str) -> None:
        self.fields.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = self.found = True
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in {"submit", "button", "image", "file", "reset"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self._add(name, a.get("value", "on" if kind in {"checkbox", "radio"} else ""))
        elif tag == "select" and name:
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in a:
                self._add(self._select, value)
                self._select_chosen = True
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_endtag(self, tag: str) -> None:
        if not self.inside:
            return
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            if not self._select_chosen and self._select_first is not None:
                self._add(self._select, self._select_first)
            self._select = None
        elif tag == "textarea" and self._textarea:
            text = "".join(self._text)
            # Browsers drop the newline that directly follows <textarea>.
            self._add(self._textarea, text[1:] if text.startswith("\n") else text)
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text.append(data)


def read_form(response: Any, form_id: str) -> dict[str, Any]:
    assert response.status_code == 200, response.status_code
    reader = _FormReader(form_id)
    reader.feed(response.content.decode())
    assert reader.found, f"no form #{form_id} on the page"
    return {k: v[0] if len(v) == 1 else v for k, v in reader.fields.items()}


def form_errors(response: Any) -> dict[str, list[str]]:
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


def ndjson(response: Any) -> list[dict[str, Any]]:
    # The view streams from an async generator; iterating the response consumes it.
    body = b"".join(response).decode()
    assert body.endswith("\n"), body
    return [json.loads(line) for line in body.splitlines()]


def url(name: str, *args: Any) -> str:
    # The admin's own views unquote the id in the URL ("agent_5f..." is not "agent_5f..." there):
    # link to them the way the admin does. The test-run views take the raw id.
    if name.endswith(("_change", "_history", "_delete")):
        args = tuple(quote(a) for a in args)
    return reverse(f"tenant_admin:{name}", args=args, urlconf="config.urls_tenant")


# ---- fixtures ----


@pytest.fixture
def operator(alpha) -> Any:
    return make_operator(alpha.schema)


@pytest.fixture
def browser(alpha, operator) -> Client:
    return client_for(operator, alpha.schema, alpha.host)


@pytest.fixture
def echo_agent(alpha) -> Agent:
    with schema_context(alpha.schema):
        return make_agent(make_credential(kind="echo"), alpha.schema, name="Echo helper")


def run_once(schema: str, agent: Agent, message: str) -> Execution:
    return run(schema, agent, message=message, principal=principal_for(schema, identifier="t"))


# ---- 1. an operator finds their way around ----


def test_operator_sees_changelists_and_agent_change_page(alpha, browser, echo_agent):
    with schema_context(alpha.schema):
        ModelPrice.objects.create(model="priced-model-x", input_per_million=1)
        execution = run_once(alpha.schema, echo_agent, "hi")

    pages = {
        "agents_agent_changelist": echo_agent.slug,
        "agents_providercredential_changelist": echo_agent.credential.name,
        "agents_modelprice_changelist": "priced-model-x",
        "agents_execution_changelist": execution.id,
    }
    for name, expected in pages.items():
        response = browser.get(url(name))
        assert response.status_code == 200, name
        assert expected in response.content.decode(), name
        if name == "agents_agent_changelist":
            assert url("agents_agent_test_run", echo_agent.pk) in response.content.decode()

    response = browser.get(url("agents_agent_change", echo_agent.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Echo helper" in html and echo_agent.slug in html
    response = browser.get(url("agents_agent_test_run", echo_agent.pk))
    assert response.status_code == 200
    assert url("agents_agent_test_run_stream", echo_agent.pk) in response.content.decode()


def test_links_work_for_ids_that_look_like_admin_escapes(alpha, browser):
    # The admin escapes "_" in ids as "_5F"; an id containing "_5f" must still round-trip.
    tricky = f"agent_5f{uuid.uuid4().hex[:10]}"
    with schema_context(alpha.schema):
        agent = make_agent(make_credential(kind="echo"), alpha.schema, name="Tricky id")
        # Foreign keys are checked at commit, and the test's transaction never commits.
        AgentVersion.objects.filter(agent_id=agent.pk).update(agent_id=tricky)
        Agent.objects.filter(pk=agent.pk).update(id=tricky)
    listing = browser.get(url("agents_agent_changelist")).content.decode()
    hrefs = re.findall(r'href="([^"]+)"', listing)
    change = next(h for h in hrefs if h.endswith(f"/{quote(tricky)}/change/"))
    (test_run,) = [h for h in hrefs if h.endswith("/test-run/")]  # the only agent
    assert "Tricky id" in browser.get(change).content.decode()
    page = browser.get(test_run)
    assert page.status_code == 200 and "Tricky id" in page.content.decode()


def test_operator_can_log_in_through_the_admin_login_form(alpha, operator):
    client = Client(HTTP_HOST=alpha.host)
    assert client.get(url("agents_agent_changelist")).status_code == 302  # to the login page
    response = client.post(
        url("login"), {"username": "operator", "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get(url("agents_agent_changelist")).status_code == 200


# ---- 2. and 3. provider credentials: write-only secrets, SSRF refused ----


def test_credential_key_is_stored_sealed_and_never_shown(alpha, browser):
    key = f"sk-admin-{uuid.uuid4().hex}"
    form = read_form(browser.get(url("agents_providercredential_add")), "providercredential_form")
    form.update(
        name="openai-main", kind="openai", base_url="https://llm.example.com/v1", api_key=key
    )
    response = browser.post(url("agents_providercredential_add"), form)
    assert response.status_code == 302, form_errors(response)

    with schema_context(alpha.schema):
        credential = ProviderCredential.objects.get(name="openai-main")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT row_to_json(c)::text FROM agents_providercredential c WHERE id = %s",
                [credential.pk],
            )
            (raw_row,) = cursor.fetchone()
        assert key not in raw_row and credential.api_key_encrypted
        assert provider_config_for(credential).api_key == key

    change = browser.get(url("agents_providercredential_change", credential.pk))
    html = change.content.decode()
    assert change.status_code == 200 and "openai-main" in html
    assert key not in html and credential.api_key_encrypted not in html

    # Saving the form again with the key field left empty keeps the stored key.
    form = read_form(change, "providercredential_form")
    assert form["api_key"] == ""
    form["name"] = "openai-renamed"
    response = browser.post(url("agents_providercredential_change", credential.pk), form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        credential.refresh_from_db()
        assert credential.name == "openai-renamed"
        assert provider_config_for(credential).api_key == key

    # Pointing it at another host without entering the key again is refused on the form: the
    # stored key would otherwise be sent to whoever runs that host.
    form["base_url"] = "https://collector.example.net/v1"
    response = browser.post(url("agents_providercredential_change", credential.pk), form)
    assert response.status_code == 200 and list(form_errors(response)) == ["api_key"]
    with schema_context(alpha.schema):
        credential.refresh_from_db()
        assert credential.base_url == "https://llm.example.com/v1"


def test_save_and_continue_opens_the_stored_credential(alpha, browser):
    form = read_form(browser.get(url("agents_providercredential_add")), "providercredential_form")
    form.update(name="echo-cont", kind="echo", base_url="", api_key="k", _continue="1")
    response = browser.post(url("agents_providercredential_add"), form)
    with schema_context(alpha.schema):
        credential = ProviderCredential.objects.get(name="echo-cont")
    assert response.status_code == 302
    assert response["Location"] == url("agents_providercredential_change", credential.pk)


def test_credential_with_metadata_address_is_refused(alpha, browser):
    with schema_context(alpha.schema):
        before = ProviderCredential.objects.count()
    form = read_form(browser.get(url("agents_providercredential_add")), "providercredential_form")
    form.update(name="imds", kind="openai", base_url="http://169.254.169.254/", api_key="k")
    response = browser.post(url("agents_providercredential_add"), form)
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == ["base_url"], errors
    assert "base_url" in errors["base_url"][0]
    with schema_context(alpha.schema):
        assert ProviderCredential.objects.count() == before
        assert not ProviderCredential.objects.filter(name="imds").exists()


# ---- the price table: every execution reads it, so bad rows are refused ----


def test_model_price_form_refuses_rows_that_would_break_executions(alpha, browser, echo_agent):
    add = url("agents_modelprice_add")
    for field, value in (
        ("capabilities", "5"),
        ("capabilities", '"fast"'),
        ("capabilities", '["fast", 3]'),
        ("input_per_million", "-1"),
    ):
        form = read_form(browser.get(add), "modelprice_form")
        form.update(model="bad-row", credential=str(echo_agent.credential_id), **{field: value})
        response = browser.post(add, form)
        assert response.status_code == 200, (field, value)
        assert list(form_errors(response)) == [field], (field, value)
    with schema_context(alpha.schema):
        assert not ModelPrice.objects.filter(model="bad-row").exists()

    # An emptied tag field means "no tags", and a good row is stored as entered.
    for model, tags, stored in (("no-tags", "", []), ("tagged", '["fast"]', ["fast"])):
        form = read_form(browser.get(add), "modelprice_form")
        form.update(model=model, credential=str(echo_agent.credential_id), capabilities=tags)
        response = browser.post(add, form)
        assert response.status_code == 302, form_errors(response)
        with schema_context(alpha.schema):
            assert ModelPrice.objects.get(model=model).capabilities == stored

    # The agents of the tenant still run.
    events = ndjson(
        browser.post(url("agents_agent_test_run_stream", echo_agent.pk), {"message": "still ok"})
    )
    assert events[-1]["status"] == "completed", events


def test_model_price_list_edit_refuses_a_negative_price(alpha, browser):
    with schema_context(alpha.schema):
        price = ModelPrice.objects.create(model="listed-model", input_per_million=2)
    changelist = url("agents_modelprice_changelist")
    form = read_form(browser.get(changelist), "changelist-form")
    row = next(k for k, v in form.items() if k.endswith("-id") and v == str(price.pk))
    form[row.replace("-id", "-input_per_million")] = "-5"
    form["_save"] = "Save"
    response = browser.post(changelist, form)
    assert response.status_code == 200
    assert "Must not be negative." in response.content.decode()
    with schema_context(alpha.schema):
        price.refresh_from_db()
        assert price.input_per_million == 2


# ---- 4. agents: every save is a version ----


def test_agent_add_and_change_make_versions(alpha, browser):
    with schema_context(alpha.schema):
        credential = make_credential(kind="echo")
    form = read_form(browser.get(url("agents_agent_add")), "agent_form")
    form.update(slug="admin-made", name="Admin made", credential=str(credential.pk), model="echo")
    response = browser.post(url("agents_agent_add"), form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        agent = Agent.objects.get(slug="admin-made")
        assert agent.version == 1 and agent.credential_id == credential.pk
        (v1,) = AgentVersion.objects.filter(agent=agent)
        assert v1.version == 1 and v1.created_by == "user:operator"
        assert v1.config["name"] == "Admin made"

    form = read_form(browser.get(url("agents_agent_change", agent.pk)), "agent_form")
    form["system_prompt"] = "Answer in one line."
    response = browser.post(url("agents_agent_change", agent.pk), form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        agent.refresh_from_db()
        assert agent.version == 2 and agent.system_prompt == "Answer in one line."
        versions = list(AgentVersion.objects.filter(agent=agent).order_by("version"))
        assert [v.version for v in versions] == [1, 2]
        assert versions[0].config["system_prompt"] == ""
        assert versions[1].config["system_prompt"] == "Answer in one line."

    # The change page lists both versions.
    html = browser.get(url("agents_agent_change", agent.pk)).content.decode()
    assert "user:operator" in html


def test_agent_with_bad_temperature_is_refused(alpha, browser, echo_agent):
    with schema_context(alpha.schema):
        versions_before = AgentVersion.objects.count()
    form = read_form(browser.get(url("agents_agent_add")), "agent_form")
    form.update(
        slug="too-hot",
        name="Too hot",
        credential=str(echo_agent.credential_id),
        model="echo",
        temperature="5",
    )
    response = browser.post(url("agents_agent_add"), form)
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == ["temperature"], errors
    assert "between 0 and 2" in errors["temperature"][0]

    form = read_form(browser.get(url("agents_agent_change", echo_agent.pk)), "agent_form")
    form["temperature"] = "5"
    response = browser.post(url("agents_agent_change", echo_agent.pk), form)
    assert response.status_code == 200 and "temperature" in form_errors(response)
    with schema_context(alpha.schema):
        assert not Agent.objects.filter(slug="too-hot").exists()
        assert AgentVersion.objects.count() == versions_before
        echo_agent.refresh_from_db()
        assert echo_agent.version == 1 and echo_agent.temperature == 0.7


def test_agent_with_unknown_virtual_model_is_refused(alpha, browser, echo_agent):
    form = read_form(browser.get(url("agents_agent_add")), "agent_form")
    form.update(
        slug="virtual-nope", name="Nope", credential=str(echo_agent.credential_id), model="cb:nope"
    )
    response = browser.post(url("agents_agent_add"), form)
    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == ["model"] and errors["model"][0].startswith("model:"), errors
    with schema_context(alpha.schema):
        assert not Agent.objects.filter(slug="virtual-nope").exists()


# ---- 5. the test run streams the answer and stores the execution ----


def test_test_run_streams_chunks_and_stores_the_execution(alpha, browser, echo_agent):
    response = browser.post(
        url("agents_agent_test_run_stream", echo_agent.pk), {"message": "hello stream world"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    events = ndjson(response)
    assert events[0]["type"] == "execution"
    # The stream is the stored log: every line has its seq, chunks keep their numbering
    # (consecutive chunks may share a row), and nothing comes twice.
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(1, len(seqs) + 1)), events
    chunks = [e for e in events if e["type"] == "chunk"]
    assert chunks[-1]["sequence_end"] > 1, events  # the echo provider streams several chunks
    assert "".join(e["text"] for e in chunks) == "echo: hello stream world"
    stored = events[-1]
    assert stored["type"] == "stored" and stored["status"] == "completed", events

    with schema_context(alpha.schema):
        execution = Execution.objects.get(pk=stored["execution_id"])
        assert execution.agent_id == echo_agent.pk
        assert execution.principal == "user:operator"
        assert execution.output == "echo: hello stream world"
        assert ExecutionEvent.objects.filter(execution=execution, type="chunk").exists()


def test_a_test_run_is_read_again_from_its_events_url_after_a_cursor(alpha, browser, echo_agent):
    events = ndjson(
        browser.post(url("agents_agent_test_run_stream", echo_agent.pk), {"message": "resume me"})
    )
    events_url = events[0]["events_url"]
    seqs = [e["seq"] for e in events if "seq" in e]
    rest = ndjson(browser.get(f"{events_url}?after=2"))
    # The rest of the stored log from the cursor on, nothing twice, then the end.
    assert [e["seq"] for e in rest if "seq" in e] == [seq for seq in seqs if seq > 2]
    assert rest[-1] == events[-1] and rest[-1]["type"] == "stored"
    # The events URL is the tenant's own and for operators only.
    assert Client(HTTP_HOST=alpha.host).get(events_url).status_code == 403


def test_test_run_stream_is_for_staff_and_post_only(alpha, browser, echo_agent):
    stream = url("agents_agent_test_run_stream", echo_agent.pk)
    anonymous = Client(HTTP_HOST=alpha.host)
    assert anonymous.post(stream, {"message": "x"}).status_code == 403
    member = client_for(
        make_operator(alpha.schema, "member", staff=False), alpha.schema, alpha.host
    )
    assert member.post(stream, {"message": "x"}).status_code == 403
    assert browser.get(stream).status_code == 405
    with schema_context(alpha.schema):
        assert not Execution.objects.filter(agent=echo_agent).exists()


def test_test_run_stream_needs_the_pages_csrf_token(alpha, operator, echo_agent):
    browser = Client(HTTP_HOST=alpha.host, enforce_csrf_checks=True)
    with schema_context(alpha.schema):
        browser.force_login(operator)
    stream = url("agents_agent_test_run_stream", echo_agent.pk)
    assert browser.post(stream, {"message": "forged"}).status_code == 403
    with schema_context(alpha.schema):
        assert not Execution.objects.filter(agent=echo_agent).exists()

    # The test-run page carries the token its script posts back (as a browser would).
    page = read_form(browser.get(url("agents_agent_test_run", echo_agent.pk)), "test-run")
    assert set(page) == {"csrfmiddlewaretoken", "message", "context"}
    page["message"] = "from the page"
    events = ndjson(browser.post(stream, page))
    assert events[-1]["type"] == "stored" and events[-1]["status"] == "completed", events


def test_test_run_with_bad_context_is_refused_before_running(alpha, browser, echo_agent):
    stream = url("agents_agent_test_run_stream", echo_agent.pk)
    response = browser.post(stream, {"message": "x", "context": "{not json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("context:")
    with schema_context(alpha.schema):
        assert not Execution.objects.filter(agent=echo_agent).exists()


def test_test_run_reports_an_unexpected_failure(alpha, browser, echo_agent, monkeypatch):
    async def broken(**kwargs: Any) -> Execution:
        raise RuntimeError("boom")

    monkeypatch.setattr("agents.admin_test_run.start_run", broken)
    response = browser.post(url("agents_agent_test_run_stream", echo_agent.pk), {"message": "x"})
    events = ndjson(response)
    # An error line, not an empty stream (the browser would show a blank answer).
    assert [e["type"] for e in events] == ["error"] and events[0]["code"] == "server_error"
    assert "boom" not in json.dumps(events)


# ---- 6. executions are a read-only audit ----


def test_execution_change_page_is_read_only_with_its_timeline(alpha, browser, echo_agent):
    with schema_context(alpha.schema):
        execution = run_once(alpha.schema, echo_agent, "audit me")
        types = set(
            ExecutionEvent.objects.filter(execution=execution).values_list("type", flat=True)
        )
    assert {"execution.started", "chunk", "complete"} <= types

    page = browser.get(url("agents_execution_change", execution.pk))
    assert page.status_code == 200
    html = page.content.decode()
    for event_type in types:
        assert event_type in html
    assert "echo: audit me" in html
    assert 'name="status"' not in html and 'name="output"' not in html

    response = browser.post(
        url("agents_execution_change", execution.pk),
        {"status": "failed", "output": "tampered", "principal": "user:someone"},
    )
    assert response.status_code == 403
    with schema_context(alpha.schema):
        execution.refresh_from_db()
        assert execution.status == "completed" and execution.output == "echo: audit me"
        assert execution.principal == "api_key:t"
    assert browser.get(url("agents_execution_add")).status_code == 403


# ---- 7. tenants never see each other in the admin ----


def test_other_tenant_operator_cannot_reach_alpha_objects(alpha, bravo, echo_agent):
    with schema_context(alpha.schema):
        execution = run_once(alpha.schema, echo_agent, "private to alpha")
    bravo_browser = client_for(make_operator(bravo.schema, "bravo-op"), bravo.schema, bravo.host)

    listing = bravo_browser.get(url("agents_agent_changelist"))
    assert listing.status_code == 200
    assert echo_agent.slug not in listing.content.decode()

    for page in (
        url("agents_agent_change", echo_agent.pk),
        url("agents_execution_change", execution.pk),
    ):
        response = bravo_browser.get(page, follow=True)
        html = response.content.decode()
        # Django's admin answers a missing object with a redirect to the index and a message.
        assert response.redirect_chain and response.redirect_chain[-1][0] == "/admin/"
        assert "Perhaps it was deleted?" in html
        assert "Echo helper" not in html and "private to alpha" not in html

    assert bravo_browser.get(url("agents_agent_test_run", echo_agent.pk)).status_code == 404
    events = ndjson(
        bravo_browser.post(url("agents_agent_test_run_stream", echo_agent.pk), {"message": "x"})
    )
    assert events == [{"type": "error", "code": "not_found", "message": "Agent not found."}]
    with schema_context(alpha.schema):
        assert Execution.objects.filter(agent=echo_agent).count() == 1


def test_alpha_session_is_not_logged_in_on_bravo(alpha, bravo, browser):
    assert browser.get(url("agents_agent_changelist")).status_code == 200
    # The same cookie, sent to bravo's host: bravo's schema has no such session.
    response = browser.get(url("agents_agent_changelist"), HTTP_HOST=bravo.host)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    # Nor do alpha's credentials open bravo's admin.
    client = Client(HTTP_HOST=bravo.host)
    response = client.post(url("login"), {"username": "operator", "password": PASSWORD})
    assert response.status_code == 200  # the login form again, with an error
    assert client.get(url("agents_agent_changelist")).status_code == 302


# ---- 8. the platform admin has no agents ----


@pytest.fixture
def platform_browser(personas, db) -> Client:
    with schema_context("public"):
        root = get_user_model().objects.create_superuser("platform", "p@example.com", PASSWORD)
    return client_for(root, "public", "localhost")


def test_platform_admin_does_not_serve_agents(platform_browser):
    for path in ("/admin/agents/agent/", "/admin/agents/execution/", "/admin/agents/"):
        assert platform_browser.get(path).status_code == 404, path
    # Logged in (an anonymous visitor would be sent to the login page, not get a 404).
    assert Client(HTTP_HOST="localhost").get("/admin/agents/agent/").status_code == 302


def test_platform_admin_index_lists_no_agents(platform_browser):
    response = platform_browser.get("/admin/")
    assert response.status_code == 200
    assert "/admin/agents/" not in response.content.decode()


def test_mcp_server_header_is_sealed_write_only_and_the_url_checked(alpha, browser, settings):
    settings.PROVIDER_ALLOWED_PRIVATE = ["127.0.0.1"]
    secret = f"Bearer remote-{uuid.uuid4().hex}"
    form = read_form(browser.get(url("agents_mcpserver_add")), "mcpserver_form")
    form.update(
        name="imds", url="http://169.254.169.254/mcp", auth_header=f"Authorization: {secret}"
    )
    refused = browser.post(url("agents_mcpserver_add"), form)
    assert refused.status_code == 200 and list(form_errors(refused)) == ["url"]
    form.update(name="team", url="http://127.0.0.1:9/mcp", allowed_tools='["lookup"]')
    response = browser.post(url("agents_mcpserver_add"), form)
    assert response.status_code == 302, form_errors(response)
    with schema_context(alpha.schema):
        server = McpServer.objects.get(name="team")
        assert server.allowed_tools == ["lookup"]
        assert secret not in server.auth_header_encrypted
        assert mcp_auth_header(server) == ("Authorization", secret)
        assert AuditLog.objects.filter(action="mcp_server.create").exists()
    change = browser.get(url("agents_mcpserver_change", server.pk))
    assert change.status_code == 200 and secret not in change.content.decode()
    # Saved again with the header left empty: the stored one stays.
    form = read_form(change, "mcpserver_form")
    form["timeout_seconds"] = "5"
    assert browser.post(url("agents_mcpserver_change", server.pk), form).status_code == 302
    with schema_context(alpha.schema):
        server.refresh_from_db()
        assert server.timeout_seconds == 5 and mcp_auth_header(server) == ("Authorization", secret)
