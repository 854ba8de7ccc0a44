"""OpenAIChat with the real openai client against the fake OpenAI-compatible server: how it asks for JSON,
how it learns what an endpoint takes, and how it backs off."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from memoryos_mcp.adapters.llm_health import ModelHealth
from memoryos_mcp.adapters.openai_llm import OpenAIChat
from memoryos_mcp.core.errors import LLMAnswerUnusable, LLMError
from memoryos_mcp.core.protocols import LLMUsage
from tests.helpers.fake_openai import FakeOpenAIServer, Fault

SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}


class Word(BaseModel):
    word: str


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default={"word": "hello"}) as server:
        yield server


def chat(srv: FakeOpenAIServer, **options: Any) -> OpenAIChat:
    settings: dict[str, Any] = dict(
        model="m", base_url=srv.base_url, api_key="k", timeout_s=2.0, max_retries=0, cooldown_s=0.0
    )
    settings.update(options)
    return OpenAIChat(**settings)


def ask(client: OpenAIChat, usage: LLMUsage | None = None, use: Any = None) -> Word:
    return client.complete_json(
        "system",
        "say a word",
        Word,
        usage or LLMUsage(),
        use=use or (lambda w: w),
        json_schema=SCHEMA,
        name="word",
    )


def formats(srv: FakeOpenAIServer) -> list[Any]:
    return [r.get("response_format") for r in srv.requests]


def llama_cpp_like(request: dict[str, Any]) -> Any:
    """llama-cpp-python's server: HTTP 500 to json_schema (its request model allows only text / json_object)."""
    if (request.get("response_format") or {}).get("type") == "json_schema":
        return Fault.http(500, {"detail": "response_format.type: Input should be 'text' or 'json_object'"})
    return {"word": "hi"}


# ---------------------------------------------------------------- constrained JSON


def test_asks_with_the_answers_json_schema_first(srv: FakeOpenAIServer) -> None:
    usage = LLMUsage()
    assert ask(chat(srv), usage).word == "hello"
    (fmt,) = formats(srv)
    assert fmt == {"type": "json_schema", "json_schema": {"name": "word", "schema": SCHEMA, "strict": False}}
    assert usage.calls == 1


def test_json_object_with_schema_is_found_remembered_and_logged_once(
    srv: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="memoryos_mcp")
    srv.default = llama_cpp_like
    client = chat(srv)
    usage = LLMUsage()
    assert ask(client, usage).word == "hi"
    assert usage.calls == 2  # the probe costs one request, once
    assert ask(client).word == "hi" and ask(client).word == "hi"
    assert [f["type"] for f in formats(srv)] == ["json_schema", "json_object", "json_object", "json_object"]
    assert all(f["schema"] == SCHEMA for f in formats(srv)[1:])  # llama.cpp constrains decoding to it
    logged = [r.getMessage() for r in caplog.records if "rejects response_format" in r.getMessage()]
    assert len(logged) == 1 and "json_object+schema" in logged[0] and "HTTP 500" in logged[0]
    assert client.stats_snapshot()["response_format"] == "json_object+schema"


@pytest.mark.parametrize("status", [400, 422])
def test_an_endpoint_that_takes_no_response_format_gets_the_plain_request(
    srv: FakeOpenAIServer, status: int
) -> None:
    srv.default = lambda request: Fault.http(status) if "response_format" in request else {"word": "plain"}
    client = chat(srv)
    assert ask(client).word == "plain"
    assert (
        formats(srv)[-1] is None and len(srv.requests) == 4
    )  # json_schema, json_object+schema, json_object, plain
    srv.reset()
    assert ask(client).word == "plain"
    assert formats(srv) == [None]  # remembered: the second call does not send it again


@pytest.mark.parametrize(("status", "requests"), [(500, 2), (503, 1)])
def test_an_outage_is_not_mistaken_for_a_rejected_format(
    srv: FakeOpenAIServer, status: int, requests: int
) -> None:
    srv.default = lambda request: Fault.http(status)
    client = chat(srv)
    with pytest.raises(LLMError):
        ask(client)
    assert len(srv.requests) == requests  # a 500 may be a rejection: one step down, then it is an outage
    srv.default = {"word": "back"}
    srv.reset()
    assert ask(client).word == "back"
    assert formats(srv)[0]["type"] == "json_schema"  # nothing was settled during the outage


@pytest.mark.parametrize(
    ("setting", "first"),
    [("json_schema", "json_schema"), ("json_object", "json_object"), ("off", None)],
)
def test_the_json_mode_setting_picks_where_to_start(
    srv: FakeOpenAIServer, setting: str, first: str | None
) -> None:
    ask(chat(srv, json_mode=setting))
    (fmt,) = formats(srv)
    assert (fmt or {}).get("type") == first


def test_a_valid_but_useless_answer_fails_after_one_call_and_rests_the_model(srv: FakeOpenAIServer) -> None:
    client = chat(srv, cooldown_s=60.0)

    def useless(word: Word) -> Word:
        raise LLMAnswerUnusable("covered 1 of 3 pages")

    usage = LLMUsage()
    with pytest.raises(LLMAnswerUnusable, match="covered 1 of 3"):
        ask(client, usage, use=useless)
    assert usage.calls == 1  # no repair try for an answer that validated
    with pytest.raises(LLMAnswerUnusable, match="next try in"):  # resting: no request at all
        ask(client)
    assert len(srv.requests) == 1
    assert client.stats_snapshot() | {"response_format": None} == {
        "requests": 1,
        "answers": 1,
        "valid": 1,
        "usable": 0,
        "unusable": 1,
        "invalid": 0,
        "response_format": None,
    }


def test_malformed_json_gets_one_repair_try(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.malformed(), {"word": "fixed"})
    usage = LLMUsage()
    assert ask(chat(srv), usage).word == "fixed"
    assert usage.calls == 2
    assert "That answer was unusable" in srv.requests[1]["messages"][-1]["content"]


# ---------------------------------------------------------------- backoff


def test_429_retry_after_is_honoured_within_the_budget(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.http(429, headers={"Retry-After": "1"}), {"word": "later"})
    usage = LLMUsage(deadline=time.monotonic() + 10.0)
    started = time.monotonic()
    assert ask(chat(srv, max_retries=1), usage).word == "later"
    assert 1.0 <= time.monotonic() - started < 3.0
    assert usage.calls == 2


def test_429_retry_after_past_the_budget_is_not_waited_for_and_rests_the_model(srv: FakeOpenAIServer) -> None:
    srv.enqueue(Fault.http(429, headers={"Retry-After": "30"}))
    client = chat(srv, max_retries=3)
    started = time.monotonic()
    with pytest.raises(LLMError, match="past this call's time budget"):
        ask(client, LLMUsage(deadline=time.monotonic() + 5.0))
    assert time.monotonic() - started < 1.5 and len(srv.requests) == 1
    with pytest.raises(LLMError, match="next try in (29|30) s"):  # cooldown 0, but the server asked for 30 s
        ask(client)
    assert len(srv.requests) == 1


def test_5xx_is_retried_with_growing_jittered_backoff(srv: FakeOpenAIServer) -> None:
    srv.default = None
    srv.enqueue(Fault.http(502), Fault.http(503), {"word": "ok"})
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    client = chat(srv, max_retries=2, json_mode="off", sleep=sleep, jitter=lambda: 0.5)
    assert ask(client, LLMUsage(deadline=time.monotonic() + 10.0)).word == "ok"
    assert waits == [0.375, 0.75]  # 0.5 s then 1 s, each 75 % with this jitter
    assert len(srv.requests) == 3


def test_backoff_never_runs_past_the_deadline(srv: FakeOpenAIServer) -> None:
    srv.default = lambda request: Fault.http(500)
    client = chat(srv, max_retries=5, json_mode="off", jitter=lambda: 1.0)
    started = time.monotonic()
    with pytest.raises(LLMError, match="past this call's time budget"):
        ask(client, LLMUsage(deadline=time.monotonic() + 2.2))
    assert time.monotonic() - started < 2.2
    assert len(srv.requests) == 2  # waits 0.5 s once; the next wait (1 s) would end past the deadline


# ---------------------------------------------------------------- rest


def test_the_rest_doubles_while_the_model_keeps_failing_and_resets_on_success() -> None:
    now = [0.0]
    health = ModelHealth("m", cooldown_s=10.0, clock=lambda: now[0])
    rests = []
    for _ in range(5):
        health.failed("down")
        start = now[0]
        while True:
            try:
                health.check()
                break
            except LLMError:
                now[0] += 1.0
        rests.append(now[0] - start)
    assert rests == [10.0, 20.0, 40.0, 80.0, 80.0]
    health.succeeded()
    health.failed("down again")
    now[0] += 10.0
    health.check()  # back to the first rest
    health.failed("asked to wait", retry_after=100.0)
    now[0] += 99.0
    with pytest.raises(LLMError):
        health.check()
