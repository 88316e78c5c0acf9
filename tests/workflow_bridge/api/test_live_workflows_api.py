"""The firing path against the live server in another process: a workflow, a resource and its steps
over real HTTP, the history and the available activities with their explanations, a refused
step as 409 with the explanation. (``committed_personas`` removes the workflow afterwards.)"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api.conftest import auth
from tests.workflow_bridge.test_cascade import review_flow


def test_firing_over_http(live_server_url: Any, committed_personas: Any) -> None:
    alpha = committed_personas["alpha"]
    slug = f"live-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=live_server_url.url, timeout=20) as client:
        created = client.post("/workflows", headers=auth(alpha.admin_key), json=review_flow(slug))
        assert created.status_code == 201, created.text
        headers = auth(alpha.user_key)
        resource = client.post(
            f"/workflows/{slug}/resources", headers=headers, json={"data": {"n": 1}}
        )
        assert resource.status_code == 201, resource.text
        rid = resource.json()["id"]
        assert resource.headers["Location"] == f"/resources/{rid}"

        for activity in ("submit", "summarised"):
            step = client.post(f"/resources/{rid}/activities/{activity}", headers=headers, json={})
            assert step.status_code == 200, step.text
        refused = client.post(f"/resources/{rid}/activities/checked", headers=headers, json={})
        assert refused.status_code == 409
        assert "has-summary" in refused.json()["error"]["details"]["explanation"]
        assert refused.headers["X-Request-ID"] == refused.json()["request_id"]

        available = client.get(f"/resources/{rid}/available-activities", headers=headers).json()
        verdicts = {a["activity"]: a for a in available["activities"]}
        assert verdicts["redo"]["allowed"] is True
        assert "data.summary is absent" in verdicts["checked"]["explanation"]

        done = client.post(
            f"/resources/{rid}/activities/checked",
            headers=headers,
            json={"data": {"summary": "fine"}},
        )
        assert done.status_code == 200 and done.json()["state"] == "done"
        history = client.get(f"/resources/{rid}", headers=headers).json()["history"]
        assert [(e["kind"], e["activity"]) for e in history] == [
            ("created", ""),
            ("activity", "submit"),
            ("activity", "summarised"),
            ("activity", "checked"),
        ]
        diagram = client.get(f"/workflows/{slug}/diagram.svg", headers=headers)
        assert diagram.headers["content-type"].startswith("image/svg+xml")
        assert 'data-place="done" data-tokens="1"' in diagram.text
