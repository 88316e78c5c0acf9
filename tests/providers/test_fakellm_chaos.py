"""The fake LLM server's probabilistic faults (``/_control/chaos``) and where stream faults land."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from agents.providers import ChatRequest, Message, ProviderError, TextDelta, get_provider
from tests.providers.conftest import KINDS


@pytest.fixture
def http(fake_llm):
    with httpx.Client(base_url=fake_llm.url, timeout=5) as client:
        yield client


def chat(http: httpx.Client, key: str, text: str) -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": text}]},
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"rates": {"418": 0.1}},
        {"rates": {"500": 1.5}},
        {"rates": {"500": 0.6, "503": 0.6}},
        {"rates": {"disconnect": "often"}},
        {"rates": {}, "colour": "red"},
        {"rates": {}, "seed": 1.5},
    ],
)
def test_bad_chaos_settings_are_refused(http, api_key, settings) -> None:
    response = http.post("/_control/chaos", json={"key": api_key, **settings})
    assert response.status_code == 400


def test_status_faults_follow_their_rates_and_are_counted(http, fake_llm, api_key) -> None:
    response = http.post(
        "/_control/chaos",
        json={"key": api_key, "seed": 3, "rates": {"429": 0.2, "500": 0.1}, "retry_after": 1},
    )
    assert response.status_code == 200
    statuses = Counter(chat(http, api_key, f"message {i}").status_code for i in range(400))
    # 80/40 expected out of 400; bounds are ~4.5 standard deviations wide.
    assert 45 <= statuses[429] <= 115
    assert 15 <= statuses[500] <= 65
    assert statuses[200] + statuses[429] + statuses[500] == 400
    report = http.get("/_control/chaos", params={"key": api_key}).json()
    assert report["chaos"]["rates"] == {"429": 0.2, "500": 0.1}
    assert report["injected"]["429"] == statuses[429]
    assert report["injected"]["500"] == statuses[500]
    limited = next(
        r for r in (chat(http, api_key, f"again {i}") for i in range(100)) if r.status_code == 429
    )
    assert limited.headers["retry-after"] == "1"


def test_draws_are_reproducible_and_fresh_for_a_repeated_request(http, api_key) -> None:
    def play() -> list[int]:
        http.post("/_control/chaos", json={"key": api_key, "seed": "s", "rates": {"503": 0.5}})
        return [chat(http, api_key, text).status_code for text in ["a", "b", "a", "a", "c"] * 4]

    first = play()
    assert play() == first
    assert {200, 503} <= set(first)
    # The same request retried gets new draws, not the same answer forever.
    same = [chat(http, api_key, "retry me").status_code for _ in range(20)]
    assert {200, 503} <= set(same)


def test_scripts_come_first_and_keys_override_the_global_settings(http, fake_llm, api_key):
    other = f"{api_key}-other"
    try:
        http.post("/_control/chaos", json={"rates": {"500": 1}})  # global
        http.post("/_control/chaos", json={"key": api_key, "rates": {"503": 1}})
        fake_llm.script(api_key, {"reply": "scripted"})
        assert chat(http, api_key, "x").json()["choices"][0]["message"]["content"] == "scripted"
        assert chat(http, api_key, "x").status_code == 503
        assert chat(http, other, "x").status_code == 500
        http.delete("/_control/chaos", params={"key": api_key})
        assert chat(http, api_key, "x").status_code == 500  # back to the global settings
    finally:
        http.delete("/_control/chaos")
    assert chat(http, other, "x").status_code == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["reset_mid_stream", "truncate", "malformed"])
@pytest.mark.parametrize("after", [0, 2])
async def test_stream_faults_land_after_the_given_number_of_chunks(
    kind, fault, after, make_config, fake_llm, api_key
) -> None:
    fake_llm.script(
        api_key, {"reply": "one two three four five six", fault: True, "fault_after_chunks": after}
    )
    provider = get_provider(make_config(kind))
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(
            ChatRequest(model="m", messages=(Message("user", "hi"),))
        ):
            if isinstance(event, TextDelta):
                texts.append(event.text)
    assert len(texts) == after
    assert caught.value.kind in ("network_error", "malformed_response")
