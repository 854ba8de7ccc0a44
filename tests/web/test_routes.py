"""The memory page over real HTTP: who gets in, what each request must carry, and that every action is the tool's."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.web.security import SECRET_HEADER
from tests.web.conftest import Browser

SECURE = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "same-origin",
}


def assert_guarded(response: Any) -> None:
    for key, value in SECURE.items():
        assert response.headers.get(key) == value, key
    policy = response.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy
    )
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_only_a_fresh_ticket_lets_a_browser_in(learned: MemoryService, page_of: Any) -> None:
    browser: Browser = page_of(learned)
    access = browser.page.access
    outsider = browser.get("/")
    assert outsider.status_code == 401 and "Maya" not in outsider.text
    assert_guarded(outsider)
    for wrong in (
        {"ticket": "not-a-ticket"},
        {"ticket": ""},
        {"secret": access.secret},
        {"ticket": access.secret},
    ):
        refused = browser.get("/enter", user="alice", **wrong)
        assert refused.status_code == 403 and access.cookie not in refused.headers.get("set-cookie", "")
    assert browser.get("/pages").status_code == 401
    assert browser.get("/export").status_code == 401

    address = browser.page.address("alice")
    assert address is not None and "ticket=" in address and access.secret not in address
    entered = browser.client.get(address)
    assert entered.status_code == 200 and 'http-equiv="refresh"' in entered.text  # on to the clean address
    cookie = entered.headers["set-cookie"].lower()
    assert cookie.startswith(f"{access.cookie}=") and access.cookie.endswith(browser.origin[2].split(":")[1])
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert_guarded(entered)
    # a ticket opens the page once (an address in a chat, a log or the history is used up)
    assert httpx.get(address).status_code == 403

    # `memoryos-mcp ui` asks for a ticket with the secret; a web page cannot (a browser sends an Origin)
    asked = browser.client.post("/ticket", headers={SECRET_HEADER: access.secret})
    assert (
        asked.status_code == 200
        and httpx.get(f"{browser.page.url}/enter?ticket={asked.text}").status_code == 200
    )
    assert browser.client.post("/ticket", headers={SECRET_HEADER: "guess"}).status_code == 403
    from_a_page = {SECRET_HEADER: access.secret, "Origin": "http://attacker.example"}
    assert browser.client.post("/ticket", headers=from_a_page).status_code == 403
    overview = browser.get("/", user="alice")
    assert overview.status_code == 200 and "Overview" in overview.text and "<svg" in overview.text
    assert "<script" not in overview.text
    assert_guarded(overview)
    assert_guarded(browser.get("/static/page.css"))


def test_a_rebinding_host_foreign_origin_or_missing_csrf_is_refused(
    learned: MemoryService, page_of: Any
) -> None:
    browser: Browser = page_of(learned)
    browser.enter()
    rebound = browser.client.get("/", headers={"Host": "attacker.example:80"})
    assert rebound.status_code == 421 and "Maya" not in rebound.text
    assert_guarded(rebound)
    (fact, *_) = learned.list_memories(kind="facts").facts or []
    change = {"user": "alice", "fact_id": fact.id, "text": "changed by an attacker"}
    assert browser.post("/facts", change, Origin="http://attacker.example").status_code == 403
    assert browser.post("/facts", change, Origin="null").status_code == 403  # a sandboxed or opaque page
    no_origin = browser.client.post("/facts", data={"csrf": browser.csrf(), **change})
    assert no_origin.status_code == 403
    assert browser.post("/facts", change, csrf="").status_code == 403
    assert browser.post("/facts", change, csrf="forged").status_code == 403
    assert all(f.text != "changed by an attacker" for f in learned.list_memories(kind="facts").facts or [])
    # the same request from the page itself goes through
    assert browser.post("/facts", change).status_code == 303


def test_a_token_shows_only_its_users(learned: MemoryService, page_of: Any) -> None:
    browser: Browser = page_of(learned, tokens=True)
    assert browser.get("/").status_code == 303  # to the login form
    assert (
        browser.get("/enter", ticket=browser.page.access.ticket()).status_code == 303
    )  # no ticket with tokens
    assert (
        browser.client.post("/ticket", headers={SECRET_HEADER: browser.page.access.secret}).status_code == 403
    )
    assert browser.get("/").status_code == 303
    origin = {"Origin": "/".join(browser.origin)}
    refused = browser.client.post("/login", data={"token": "guess"}, headers=origin)
    assert refused.status_code == 401
    assert (
        browser.client.post("/login", data={"token": "alice-token-0123456789"}, headers=origin).status_code
        == 303
    )
    for path in ("/", "/pages", "/segments", "/facts", "/export"):
        mine = browser.get(path)
        assert mine.status_code == 200 and "kiwis" not in mine.text, path
        theirs = browser.get(path, user="bob")
        assert theirs.status_code == 400 and "kiwis" not in theirs.text, path
    assert "kiwis" not in browser.get("/pages", q="secret garden plan").text
    assert browser.get("/pages", q="secret garden plan", user="bob").status_code == 400
    bobs = learned.list_memories(user_id="bob").pages or []
    assert "kiwis" not in browser.get("/pages", ids=bobs[0].id).text  # another user's id shows nothing
    preview = browser.get("/forget", page_id=bobs[0].id)
    assert "Not found for this user" in preview.text
    gone = browser.post("/forget", {"user": "bob", "page_id": bobs[0].id})
    assert gone.status_code == 400
    assert [p.id for p in learned.list_memories(user_id="bob").pages or []] == [bobs[0].id]
    # bob's token, on a server whose default user is alice: the page opens on bob, and never shows alice
    bob = Browser(browser.page)
    assert (
        bob.client.post("/login", data={"token": "bob-token-0123456789"}, headers=origin).status_code == 303
    )
    landing = bob.get("/")
    assert landing.status_code == 200 and "memory of bob" in landing.text and "Maya" not in landing.text
    assert bob.get("/", user="alice").status_code == 400


def test_search_ranks_as_retrieve_does_and_heats_nothing(learned: MemoryService, page_of: Any) -> None:
    browser: Browser = page_of(learned)
    browser.enter()
    before = {s.id: (s.n_visit, s.heat) for s in learned.list_memories(kind="segments").segments or []}
    found = browser.get("/pages", q="tomato risotto", user="alice")
    assert found.status_code == 200 and "Why this was recalled" in found.text and "<mark>" in found.text
    recent, ranked = found.text.split("<h2>Mid-term memory</h2>")
    tool = learned.retrieve_memory("tomato risotto", explain=True, record_visits=False)
    shown = re.findall(r'<li class="memory" id="([^"]+)"', ranked)
    assert shown and shown == [p.id for p in tool.mid_term]  # ranked as the tool ranks them
    # the short-term pages (the tool returns them whole) that share a word with the search; the newest is one
    newest = re.findall(r'<li class="memory" id="([^"]+)"', recent)
    assert newest == [p.id for p in reversed(tool.short_term) if "risotto" in p.user_input] and newest
    only_mid = browser.get("/pages", q="tomato risotto", user="alice", tier="mid_term").text
    assert re.findall(r'<li class="memory" id="([^"]+)"', only_mid) == shown
    only_recent = browser.get("/pages", q="tomato risotto", user="alice", tier="short_term").text
    assert re.findall(r'<li class="memory" id="([^"]+)"', only_recent) == newest
    nonsense = browser.get("/pages", q="zzqx", user="alice", tier="mid_term").text
    assert "only the nearest in meaning" in nonsense
    after = {s.id: s.n_visit for s in learned.list_memories(kind="segments").segments or []}
    assert after == {k: v[0] for k, v in before.items()}  # looking is not recalling


def test_every_action_is_the_tools(learned: MemoryService, page_of: Any) -> None:
    browser: Browser = page_of(learned)
    browser.enter()
    # correct a fact: the same as update_memory (same id, its sources kept, marked as the person's)
    (fact, *_) = [f for f in learned.list_memories(kind="facts").facts or [] if "Maya" in f.text]
    saved = browser.post("/facts", {"user": "alice", "fact_id": fact.id, "text": "The user's name is Mia"})
    assert saved.status_code == 303 and saved.headers["location"].startswith("/facts?")
    now = {f.id: f for f in learned.list_memories(kind="facts").facts or []}[fact.id]
    assert now.text == "The user's name is Mia" and now.corrected_from == fact.text
    assert now.source_pages == fact.source_pages
    facts_view = browser.get("/facts", user="alice", done="fact")
    assert "corrected by you" in facts_view.text and "promotions will not change it" in facts_view.text
    sources = browser.get("/pages", user="alice", ids=fact.source_pages)
    assert set(re.findall(r'<li class="memory" id="([^"]+)"', sources.text)) == set(fact.source_pages)
    # a profile entry, set and removed
    assert browser.post("/profile", {"user": "alice", "key": "city", "value": "Lyon"}).status_code == 303
    assert learned.get_user_profile().profile.static["city"] == "Lyon"
    assert browser.post("/profile", {"user": "alice", "key": "city", "remove": "1"}).status_code == 303
    assert "city" not in learned.get_user_profile().profile.static
    # forget with a preview that is the tool's dry run, then the forget itself
    pages = learned.list_memories(user_id="alice", tier="mid_term").pages or []
    target = pages[0].id
    preview = browser.get("/forget", user="alice", page_id=target)
    assert pages[0].user_input in preview.text  # what was chosen is shown, not only counted
    dry = learned.forget_memory(page_ids=[target], dry_run=True)
    assert f"<th>Pages removed</th><td>{dry.pages_removed}</td>" in preview.text
    assert f"<td>{dry.segments_recomputed}</td>" in preview.text
    done = browser.post("/forget", {"user": "alice", "page_id": target})
    assert done.status_code == 303 and "forgot" in done.headers["location"]
    assert target not in {p.id for p in learned.list_memories(limit=200).pages or []}
    assert target not in browser.get("/pages", user="alice").text
    again = browser.post("/forget", {"user": "alice", "page_id": target})  # the form again (browser's Back)
    assert "done=nothing" in again.headers["location"]
    assert "already gone" in browser.client.get(again.headers["location"]).text
    nothing = browser.get("/forget", user="alice")  # nothing chosen: back to the list, which says what to do
    assert nothing.status_code == 303 and "done=select" in nothing.headers["location"]
    assert browser.get("/segments/seg_nope", user="alice").status_code == 404
    lost = browser.get("/no-such-view")
    assert lost.status_code == 404 and "Back to the memory page" in lost.text
    assert_guarded(lost)
    # delete a fact (its preview first), and everything before a date: each the tool's dry run, then done
    (other, *_) = [f for f in learned.list_memories(kind="facts").facts or [] if f.id != fact.id]
    fact_preview = browser.get("/forget", user="alice", fact_id=other.id).text
    assert "<th>Facts removed (learned only from these pages, or named)</th><td>1</td>" in fact_preview
    assert browser.post("/forget", {"user": "alice", "fact_id": other.id}).status_code == 303
    assert other.id not in {f.id for f in learned.list_memories(kind="facts").facts or []}
    early = learned.forget_memory(before="2024-05-03", dry_run=True)
    assert early.pages_removed == 2
    shown = browser.get("/forget", user="alice", before="2024-05-03").text
    assert f"<th>Pages removed</th><td>{early.pages_removed}</td>" in shown
    assert browser.post("/forget", {"user": "alice", "before": "2024-05-03"}).status_code == 303
    assert learned.list_memories(until="2024-05-02").pages == []
    # forgetting everything needs the user id typed
    everything = {"user": "alice", "all": "1"}
    wrong = browser.post("/forget", {**everything, "confirm": "yes"})
    assert wrong.status_code == 303 and "done=confirm" in wrong.headers["location"]  # back to the preview
    assert "did not match: nothing was forgotten" in browser.client.get(wrong.headers["location"]).text
    assert learned.stats().mid_term_pages > 0
    # export: the same versioned file the CLI writes
    exported = browser.get("/export", user="alice")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[1] == {"type": "user", "user_id": "alice"} and lines[-1]["type"] == "user_end"
    assert browser.post("/forget", {**everything, "confirm": "alice"}).status_code == 303
    assert learned.stats().mid_term_pages == 0 and not learned.list_memories().pages


def test_a_busy_port_is_a_warning_and_the_page_takes_another(
    learned: MemoryService, page_of: Any, caplog: Any
) -> None:
    browser: Browser = page_of(learned)
    from memoryos_mcp.web.host import MemoryPage

    port = int(browser.page.url.rsplit(":", 1)[1])
    second = MemoryPage(learned.settings.model_copy(update={"ui_port": port})).listen_on_attach()
    second.attach(lambda: learned)
    try:
        address = second.address("alice")
        assert address is not None and f":{port}/" not in address  # another port, found the same ways
        assert f"127.0.0.1:{port} is busy" in caplog.text and "MEMORYOS_UI_PORT" in caplog.text
        assert httpx.get(address).status_code == 200
    finally:
        second.detach()


def test_the_hosts_a_loopback_page_answers() -> None:
    from memoryos_mcp.web.security import loopback_hosts

    assert loopback_hosts(8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert "127.0.0.2:8765" in loopback_hosts(8765, "127.0.0.2")  # the HTTP app bound to another loopback
    assert "[::1]:8765" in loopback_hosts(8765, "::1") and "evil.example:8765" not in loopback_hosts(8765)


def test_the_segments_view_shows_a_hundred_at_a_time_hottest_first() -> None:
    from memoryos_mcp.service.schemas import ListedSegmentOut
    from memoryos_mcp.web.views import View, segments

    many = [
        ListedSegmentOut(
            id=f"seg_{i:04d}",
            summary=f"topic {i}",
            keywords=[],
            page_count=1,
            heat=float(i),
            n_visit=0,
            l_interaction=1,
            last_access="",
            created_at="",
            archived=i < 200,
        )
        for i in range(250)
    ]
    view = View("", "alice", None, "csrf")
    first = segments(view, many)
    assert first.count("<tr><td>") == 100 and "topic 249" in first and "topic 149" not in first
    assert "1–100 of 250" in first and "Colder" in first and "Hotter" not in first
    last = segments(view, many, start=200)
    assert last.count("<tr><td>") == 50 and "topic 49" in last and "topic 0<" in last and "Hotter" in last
    assert "Colder" not in last
