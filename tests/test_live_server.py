"""End to end: the real ASGI app under the live tests' server, driven over HTTP by httpx."""

from __future__ import annotations

import httpx


def test_probe_request_id_and_tenant_routing_over_real_http(live_server_url, committed_personas):
    alpha, bravo = committed_personas["alpha"], committed_personas["bravo"]
    with httpx.Client(base_url=live_server_url.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        whoami = client.get(
            "/auth/whoami",
            headers={"Authorization": f"Bearer {alpha.user_key}", "X-Request-ID": "e2e-1"},
        )
        assert whoami.status_code == 200 and whoami.json()["tenant"] == "alpha"
        assert whoami.headers["X-Request-ID"] == "e2e-1"
        # bravo's credential presented at alpha's host
        mismatch = client.get(
            "/auth/whoami",
            headers={
                "Authorization": f"Bearer {bravo.user_key}",
                "Host": f"{alpha.host}:{live_server_url.port}",
            },
        )
        assert mismatch.status_code == 403
        token = client.post(
            "/auth/token", headers={"Authorization": f"Bearer {alpha.user_key}"}, json={}
        ).json()
        as_token = client.get(
            "/auth/whoami", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert as_token.json()["tenant"] == "alpha"
        unknown = client.get(
            "/auth/whoami", headers={"Host": f"ghost.localhost:{live_server_url.port}"}
        )
        assert unknown.status_code == 404
