"""The LoCoMo benchmark's own logic: page building, recall, and the answer path against the fake OpenAI server."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import openai
import pytest

from tests.helpers.fake_openai import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import locomo  # noqa: E402

CONVERSATION = {
    "speaker_a": "Ann",
    "speaker_b": "Bob",
    "session_2_date_time": "9:05 am on 3 June, 2023",
    "session_2": [{"speaker": "Ann", "dia_id": "D2:1", "text": "Back again"}],
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        {"speaker": "Bob", "dia_id": "D1:1", "text": "Hi Ann!"},
        {"speaker": "Ann", "dia_id": "D1:2", "text": "Look at my dog", "blip_caption": "a photo of a dog"},
        {"speaker": "Bob", "dia_id": "D1:3", "text": "Cute!"},
        {"speaker": "Bob", "dia_id": "D1:4", "text": "What breed?"},
    ],
}


def test_pages_are_built_as_the_paper_builds_them() -> None:
    pages = locomo.build_pages(CONVERSATION)
    assert [p.turns for p in pages] == [("D1:1",), ("D1:2", "D1:3", "D1:4"), ("D2:1",)]
    assert pages[0].user_input == "" and pages[0].agent_response == "Hi Ann!"
    assert pages[1].user_input == "Look at my dog (image description: a photo of a dog)"
    assert pages[1].agent_response == "Cute! What breed?"
    assert pages[1].timestamp == "2023-05-08T13:56:00" and pages[2].timestamp == "2023-06-03T09:05:00"


def test_evidence_recall_and_repaired_ids() -> None:
    assert locomo.evidence_recall(["D1:2", "D1:9"], ["D1:2", "D1:3"]) == 0.5
    assert locomo.normalise_evidence(["D8:6; D9:17", "D:11:26"]) == ["D8:6", "D9:17", "D11:26"]


def test_f1_and_bleu1_on_normalised_tokens() -> None:
    assert locomo.f1_score("The 7th of May, 2023", "7 May 2023") == pytest.approx(
        2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    )
    assert locomo.f1_score("", "") == 1.0 and locomo.f1_score("x", "") == 0.0
    assert locomo.bleu1("May 2023", "7 May 2023") == pytest.approx(
        math.exp(-0.5)
    )  # precision 1, brevity penalty


def test_answers_come_from_the_context_through_the_openai_client() -> None:
    with FakeOpenAIServer() as fake:
        fake.enqueue("7 May 2023")
        client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=5)
        answer = locomo.generate_answer(
            client, "fake-model", "When did Ann adopt the dog?", "[2023-05-08] dog"
        )
        assert answer == "7 May 2023"
        (request,) = fake.requests
        assert "When did Ann adopt the dog?" in request["messages"][-1]["content"]
        assert "[2023-05-08] dog" in request["messages"][-1]["content"]
        assert request["temperature"] == 0


def test_answer_errors_reach_the_caller() -> None:
    from tests.helpers.fake_openai import Fault

    with FakeOpenAIServer() as fake:
        fake.enqueue(Fault.http(500))
        client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=5)
        with pytest.raises(openai.InternalServerError):
            locomo.generate_answer(client, "fake-model", "q", "c")
