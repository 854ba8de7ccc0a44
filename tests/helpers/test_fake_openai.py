"""Prove the fake OpenAI server behaves like the real API for the real ``openai`` client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.helpers.fake_openai import FakeOpenAIServer, Fault, free_port_refusing


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _client(base_url: str, timeout: float = 2.0) -> openai.OpenAI:
    # max_retries=0 so each fault surfaces as exactly one exception.
    return openai.OpenAI(base_url=base_url, api_key="test", timeout=timeout, max_retries=0)


def _chat(client: openai.OpenAI, text: str = "hello there world") -> Any:
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}])


def test_json_reply_round_trips_with_usage(srv: FakeOpenAIServer) -> None:
    srv.enqueue({"summary": "a b", "keywords": ["x", "y"]})
    resp = _chat(_client(srv.base_url), "one two three")
    content = resp.choices[0].message.content
    assert json.loads(content) == {"summary": "a b", "keywords": ["x", "y"]}
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "gpt-test"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 3
    assert resp.usage.completion_tokens == len(content.split())
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_models_endpoint(srv: FakeOpenAIServer) -> None:
    models = _client(srv.base_url).models.list()
    assert [m.id for m in models.data] == ["fake-model"]


def test_http_500_and_429_raise(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.http(500), Fault.http(429))
    client = _client(srv.base_url)
    with pytest.raises(openai.InternalServerError):
        _chat(client)
    with pytest.raises(openai.RateLimitError) as excinfo:
        _chat(client)
    assert excinfo.value.response.headers["retry-after"] == "0"
    assert srv.request_count == 2


def test_retries_recover_after_429(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.rate_limit(), "ok")
    client = openai.OpenAI(base_url=srv.base_url, api_key="test", timeout=2.0, max_retries=1)
    assert _chat(client).choices[0].message.content == "ok"
    assert srv.request_count == 2


def test_empty_queue_without_default_is_500(srv: FakeOpenAIServer) -> None:
    with pytest.raises(openai.InternalServerError) as excinfo:
        _chat(_client(srv.base_url))
    assert "no scripted reply" in str(excinfo.value)


def test_delay_longer_than_timeout_times_out_and_stop_is_prompt() -> None:
    server = FakeOpenAIServer().start()
    server.enqueue(Fault.delay(30, then="late"))
    with pytest.raises(openai.APITimeoutError):
        _chat(_client(server.base_url, timeout=0.3))
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0


def test_short_delay_then_reply(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.delay(0.1, then="after"))
    assert _chat(_client(srv.base_url)).choices[0].message.content == "after"


def test_refused_port_raises_connection_error() -> None:
    with pytest.raises(openai.APIConnectionError):
        _chat(_client(free_port_refusing()))


def test_stopped_server_refuses() -> None:
    server = FakeOpenAIServer().start()
    url = server.base_url
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        _chat(_client(url))


def test_drop_connection_raises_connection_error(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.drop_connection())
    with pytest.raises(openai.APIConnectionError):
        _chat(_client(srv.base_url))
    assert srv.request_count == 1


def test_content_faults(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.malformed(), Fault.truncated({"a": "b" * 20}), Fault.huge(2_000_000))
    client = _client(srv.base_url)

    bad = _chat(client).choices[0].message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)

    cut = _chat(client).choices[0]
    assert cut.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.message.content)

    big = _chat(client).choices[0].message.content
    assert len(big) == 2_000_000


def test_requests_recorded_in_order(srv: FakeOpenAIServer) -> None:
    srv.enqueue("first", Fault.http(500))
    client = _client(srv.base_url)
    _chat(client, "alpha")
    with pytest.raises(openai.InternalServerError):
        _chat(client, "beta")
    assert srv.request_count == 2
    assert [r["messages"][0]["content"] for r in srv.requests] == ["alpha", "beta"]
    assert srv.requests[0]["model"] == "gpt-test"
    assert srv.received[0].headers.get("authorization") == "Bearer test"


def test_default_callable_answers_from_prompt(srv: FakeOpenAIServer) -> None:
    def answer(req: dict[str, Any]) -> Any:
        prompt = req["messages"][-1]["content"]
        return {"echo": prompt.upper()}

    srv.default = answer
    client = _client(srv.base_url)
    srv.enqueue("scripted wins first")
    assert _chat(client, "x").choices[0].message.content == "scripted wins first"
    assert json.loads(_chat(client, "shout").choices[0].message.content) == {"echo": "SHOUT"}
    assert srv.pending == 0


def test_streaming_reply(srv: FakeOpenAIServer) -> None:
    srv.enqueue("streamed text")
    stream = _client(srv.base_url).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed text"
