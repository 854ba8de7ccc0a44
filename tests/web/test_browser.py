"""The memory page in a real headless Chromium (Debian's chromium and chromium-driver, installed by
scripts/setup.sh; nothing is downloaded): get in with the address the tool gives (a single-use ticket), search and read why, correct a fact,
forget a page through its preview, reload, and check that the tools agree. A failure leaves a screenshot."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_mcp.service.facade import MemoryService
from tests.web.conftest import Browser

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


def test_a_person_searches_corrects_and_forgets_in_a_real_browser(
    learned: MemoryService, page_of: Any, chromium: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser: Browser = page_of(learned)
    wait = WebDriverWait(chromium, 30)
    shots = Path(os.environ.get("PAGE_TEST_ARTIFACTS", tmp_path))

    def click(text: str) -> None:
        chromium.find_element(By.XPATH, f"//*[self::a or self::button][normalize-space()={text!r}]").click()

    try:
        chromium.get(browser.page.address("alice"))  # the address the memory_page tool gives
        wait.until(ready.title_contains("Overview"))
        assert "Short-term pages" in chromium.page_source and "<svg" in chromium.page_source

        # search, and open why the first result was recalled
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
        (fact, *_) = [f for f in learned.list_memories(kind="facts").facts or [] if "Maya" in f.text]
        field = chromium.find_element(By.CSS_SELECTOR, f'li[id="{fact.id}"] input[name="text"]')
        field.clear()
        field.send_keys("The user's name is Mia")
        chromium.find_element(By.CSS_SELECTOR, f'li[id="{fact.id}"] button').click()
        wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "saved"))
        assert "corrected by you" in chromium.page_source
        now = {f.id: f for f in learned.list_memories(kind="facts").facts or []}[fact.id]
        assert now.text == "The user's name is Mia" and now.corrected_from == fact.text

        # forget one page through the preview
        click("Pages")
        wait.until(ready.title_contains("Pages"))
        target = chromium.find_elements(By.CSS_SELECTOR, "li.memory")[0].get_attribute("id")
        chromium.find_element(By.CSS_SELECTOR, f'li[id="{target}"] input[type="checkbox"]').click()
        click("Forget the selected pages…")
        wait.until(ready.title_contains("Forget"))
        assert "Nothing has changed yet" in chromium.page_source
        removed = chromium.find_element(By.XPATH, "//th[.='Pages removed']/following-sibling::td").text
        assert removed == "1"
        click("Forget for good")
        wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Forgotten: 1 page(s)"))
        chromium.refresh()
        wait.until(ready.title_contains("Pages"))
        assert not chromium.find_elements(By.CSS_SELECTOR, f'li[id="{target}"]')
        assert target not in {p.id for p in learned.list_memories(user_id="alice", limit=200).pages or []}
    except BaseException:
        shot = shots / f"{request.node.name}.png"
        chromium.save_screenshot(str(shot))
        print(f"screenshot of the failure: {shot}")
        raise
