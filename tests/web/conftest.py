"""A memory with learned facts (the fake OpenAI server), its page on a real loopback listener, a browser-like client."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.web.host import MemoryPage
from tests.helpers.fake_openai import FakeOpenAIServer
from tests.helpers.llm_services import make_service
from tests.helpers.scripted_llm import good_answer

TOKENS = {"alice-token-0123456789": ["alice"], "bob-token-0123456789": ["bob"]}


# Alice: a name learned into the profile and facts (the fake model), hiking and cooking pages; bob: one page.
EXCHANGES = [
    *(
        ("alice", "I am Maya and I love hiking", "Hiking is great.", f"2024-05-{i:02d} 09:00")
        for i in range(1, 9)
    ),
    *(
        (
            "alice",
            f"I cooked a tomato risotto with basil, attempt {i}",
            "Sounds delicious.",
            f"2024-05-{i:02d} 19:00",
        )
        for i in range(9, 13)
    ),
    ("bob", "bob's secret garden plan: plant kiwis", "Noted.", "2024-05-03 10:00"),
]


def remember(service: MemoryService) -> None:
    for user, said, answer, when in EXCHANGES:
        service.add_memory(said, answer, user_id=user, timestamp=when)


@pytest.fixture
def learned(tmp_path: Path) -> Iterator[MemoryService]:
    with FakeOpenAIServer(default=good_answer) as llm:
        service = make_service(
            tmp_path, llm.base_url, tau=3.0, stm_capacity=1, stm_evict_batch=1, user_id="alice"
        )
        remember(service)
        yield service


class Browser:
    """What a browser sends: the page's cookie, its Origin on forms, the CSRF token read from the page."""

    def __init__(self, page: MemoryPage) -> None:
        assert page.url is not None
        self.page = page
        self.origin = page.url.split("/", 3)[:3]
        self.client = httpx.Client(base_url=page.url, follow_redirects=False, timeout=30)

    def enter(self, user: str = "alice") -> httpx.Response:
        address = self.page.address(user)
        assert address is not None
        return self.client.get(address)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def post(
        self, path: str, data: dict[str, Any], csrf: str | None = None, **headers: str
    ) -> httpx.Response:
        form = {"csrf": csrf if csrf is not None else self.csrf(), **data}
        sent = {"Origin": "/".join(self.origin), **headers}
        return self.client.post(path, data=form, headers=sent)

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get("/facts", user="alice").text)
        assert found, "no form on the facts view"
        return found.group(1)


@pytest.fixture
def page_of(tmp_path: Path) -> Iterator[Any]:
    """page_of(service, tokens=False): the service's page listening on a free loopback port, detached after."""
    pages: list[MemoryPage] = []

    def start(service: MemoryService, tokens: bool = False) -> Browser:
        update: dict[str, Any] = {"ui_port": 0}
        if tokens:
            path = tmp_path / "tokens.json"
            path.write_text(json.dumps({"tokens": [{"token": t, "users": u} for t, u in TOKENS.items()]}))
            path.chmod(0o600)
            update["auth_tokens_file"] = path
        page = MemoryPage(service.settings.model_copy(update=update)).listen_on_attach()
        page.attach(lambda: service)
        pages.append(page)
        return Browser(page)

    yield start
    for page in pages:
        page.detach()
