"""The memory page of a running stdio server in a real headless Chromium (Debian's chromium and
chromium-driver, installed by scripts/setup.sh; nothing is downloaded): get in with the address the
memory_page tool gives, search and read why, correct a fact, forget a page through its preview, reload, and
check over MCP that the tools agree. A failure leaves a screenshot."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.helpers.fake_openai import FakeOpenAIServer
from tests.helpers.fakes import free_port
from tests.helpers.mcp_calls import call, memoryos_command, server_env
from tests.helpers.scripted_llm import good_answer
from tests.web.conftest import EXCHANGES

pytestmark = pytest.mark.slow
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver",)


def _found(paths: tuple[str, ...], name: str) -> str:
    for path in (*paths, shutil.which(name) or ""):
        if path and Path(path).exists():
            return path
    pytest.fail(
        f"{name} is not installed: scripts/setup.sh installs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)"
    )


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = _found(CHROMIUM, "chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(executable_path=_found(DRIVER, "chromedriver")), options=options
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


async def test_a_person_searches_corrects_and_forgets_in_a_real_browser(
    chromium: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The whole product path: a stdio MCP server with a (fake) language model that learns facts, its page
    opened from the address its memory_page tool gives, and the tools asked afterwards whether they agree."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(chromium, 30)
    shots = Path(os.environ.get("PAGE_TEST_ARTIFACTS", tmp_path))

    def click(text: str) -> None:
        chromium.find_element(By.XPATH, f"//*[self::a or self::button][normalize-space()={text!r}]").click()

    with FakeOpenAIServer(default=good_answer) as llm:
        env = {
            **server_env(),
            "MEMORYOS_LLM_BASE_URL": llm.base_url,
            "MEMORYOS_LLM_API_KEY": "test-key",
            "MEMORYOS_TAU": "3",
            "MEMORYOS_STM_CAPACITY": "1",
            "MEMORYOS_STM_EVICT_BATCH": "1",
            "MEMORYOS_USER_ID": "alice",
        }
        command = ["serve", "--data-dir", str(tmp_path / "data"), "--ui-port", str(free_port())]
        params = StdioServerParameters(command=memoryos_command()[0], args=command, env=env)
        async with Client(params, read_timeout_seconds=120) as client:
            for user, said, answer, when in EXCHANGES:
                await call(
                    client, "add_memory", user_id=user, user_input=said, agent_response=answer, timestamp=when
                )
            address = (await call(client, "memory_page"))["address"]
            try:
                chromium.get(address)
                wait.until(ready.title_contains("Overview"))
                assert "Short-term pages" in chromium.page_source and "<svg" in chromium.page_source

                # search, and open why the first ranked result was recalled
                click("Pages")
                wait.until(ready.title_contains("Pages"))
                box = chromium.find_element(By.NAME, "q")
                box.send_keys("tomato risotto")
                box.submit()
                wait.until(ready.title_contains("Search: tomato risotto"))
                why = chromium.find_element(By.CSS_SELECTOR, "details.why")
                why.find_element(By.TAG_NAME, "summary").click()
                assert why.get_attribute("open") is not None
                assert "risotto" in why.find_element(By.TAG_NAME, "mark").text.lower()

                # correct a fact
                click("Profile and facts")
                wait.until(ready.title_contains("Profile and facts"))
                facts = (await call(client, "list_memories", kind="facts"))["facts"]
                (fact, *_) = [f for f in facts if "Maya" in f["text"]]
                field = chromium.find_element(By.CSS_SELECTOR, f'li[id="{fact["id"]}"] input[name="text"]')
                field.clear()
                field.send_keys("The user's name is Mia")
                chromium.find_element(By.CSS_SELECTOR, f'li[id="{fact["id"]}"] button').click()
                wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "saved"))
                assert "corrected by you" in chromium.page_source
                facts = (await call(client, "list_memories", kind="facts"))["facts"]
                now = {f["id"]: f for f in facts}[fact["id"]]
                assert now["text"] == "The user's name is Mia" and now["corrected_from"] == fact["text"]

                # forget one page through the preview
                click("Pages")
                wait.until(ready.title_contains("Pages"))
                target = chromium.find_elements(By.CSS_SELECTOR, "li.memory")[0].get_attribute("id")
                chromium.find_element(By.CSS_SELECTOR, f'li[id="{target}"] input[type="checkbox"]').click()
                click("Forget the selected pages…")
                wait.until(ready.title_contains("Forget"))
                assert "Nothing has changed yet" in chromium.page_source
                removed = chromium.find_element(
                    By.XPATH, "//th[.='Pages removed']/following-sibling::td"
                ).text
                assert removed == "1"
                click("Forget for good")
                wait.until(
                    ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Forgotten: 1 page(s)")
                )
                chromium.refresh()
                wait.until(ready.title_contains("Pages"))
                assert not chromium.find_elements(By.CSS_SELECTOR, f'li[id="{target}"]')
                listed = await call(client, "list_memories", limit=200)  # the tool, over MCP, agrees
                assert target not in {p["id"] for p in listed["pages"]} and len(listed["pages"]) == 11
            except BaseException:
                shot = shots / f"{request.node.name}.png"
                chromium.save_screenshot(str(shot))
                print(f"screenshot of the failure: {shot}")
                raise
