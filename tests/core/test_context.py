"""The text the host model reads: each page once, within a budget, best first, saying what was left out."""

from __future__ import annotations

import random
from typing import Any

import pytest

from memoryos_mcp.core.context import (
    MIN_BUDGET,
    Context,
    build_context,
    estimate_tokens,
    is_short_id,
    page_line,
    short_id,
)
from memoryos_mcp.core.models import (
    Fact,
    FactKind,
    Page,
    ScoredFact,
    ScoredPage,
    ScoredSegment,
    Segment,
    UserProfile,
)


def _page(i: int, words: int = 30) -> Page:
    return Page(
        id=f"pg_{i:08x}{i:024x}",
        user_id="ann",
        user_input=f"page {i} says " + " ".join(f"word{i}-{j}" for j in range(words)),
        agent_response=f"reply to {i}",
        timestamp=f"2024-03-{1 + i % 28:02d}T10:{i % 60:02d}:00",
        added_at=i,
        segment_id=f"seg_{i % 3:016x}",
        chain_summary=f"a chain summary that repeats page {i} at length " * 3,
    )


def _fact(i: int, kind: FactKind = "user_fact") -> ScoredFact:
    fact = Fact(f"fact_{i:08x}{i:012x}", "ann", kind, f"fact number {i} about ann", created_at=0.0)
    return ScoredFact(fact, 1.0 - i / 100)


def _context(
    max_tokens: int | None, seed: int = 0, **extra: Any
) -> tuple[list[Page], list[ScoredPage], Context]:
    rng = random.Random(seed)
    recent = [_page(100 + i, rng.randint(5, 60)) for i in range(7)]
    earlier = [ScoredPage(_page(i, rng.randint(5, 60)), 10.0 - i, "mid_term") for i in range(10)]
    profile = UserProfile("ann", static={"name": "Ann", "city": "Lisbon"})
    return (
        recent,
        earlier,
        build_context(
            user_id="ann",
            short_term=recent,
            mid_term=earlier,
            user_facts=[_fact(i) for i in range(5)],
            assistant_traits=[_fact(50 + i, "assistant_trait") for i in range(3)],
            profile=profile,
            assistant_profile="",
            max_tokens=max_tokens,
            **extra,  # type: ignore[arg-type]
        ),
    )


def test_every_page_is_said_once_with_its_short_id_and_nothing_a_model_does_not_need() -> None:
    recent, earlier, context = _context(None)
    for page in recent + [sp.page for sp in earlier]:
        assert context.text.count(short_id(page.id)) == 1
        assert context.text.count(page.user_input) == 1 and page.id not in context.text
    assert "chain summary" not in context.text and "score" not in context.text
    assert "fact number 3 about ann [fact_00000003]" in context.text and "- name: Ann" in context.text
    assert context.short_term == recent and context.mid_term == earlier and not context.left_out.any


@pytest.mark.parametrize("max_tokens", [MIN_BUDGET, 150, 300, 500, 800, 1200, 2000, 5000])
def test_a_budget_is_never_exceeded_and_is_filled_best_first(max_tokens: int) -> None:
    for seed in range(5):
        recent, earlier, context = _context(max_tokens, seed)
        assert estimate_tokens(context.text) <= max_tokens
        # recent pages: the newest ones; earlier ones: the best by score; the persona only after all pages
        assert context.short_term == recent[len(recent) - len(context.short_term) :]
        assert context.mid_term == earlier[: len(context.mid_term)]
        if context.user_facts or context.assistant_traits or context.profile is not None:
            assert len(context.short_term) == len(recent) and len(context.mid_term) == len(earlier)
        if left_mid := len(earlier) - len(context.mid_term):  # recent pages took at most a third first
            assert sum(len(page_line(p)) + 12 for p in context.short_term) <= max_tokens * 4 / 3 + 40, (
                left_mid
            )
        assert context.user_facts == [] or context.user_facts == [
            _fact(i) for i in range(len(context.user_facts))
        ]
        left = context.left_out
        assert left.short_term_pages == len(recent) - len(context.short_term)
        assert left.mid_term_pages == len(earlier) - len(context.mid_term)
        assert left.any == ("left out to stay within" in context.text)
        for page in context.short_term + [sp.page for sp in context.mid_term]:
            assert context.text.count(short_id(page.id)) == 1
        shown = {p.id for p in recent + [sp.page for sp in earlier] if short_id(p.id) in context.text}
        assert shown == {p.id for p in context.short_term} | {sp.page.id for sp in context.mid_term}


def test_recent_pages_first_without_a_share_take_the_budget_before_any_earlier_page() -> None:
    for max_tokens in (150, 300, 600, 1000):
        recent, earlier, context = _context(max_tokens, recent_share=1.0)
        assert estimate_tokens(context.text) <= max_tokens
        if context.mid_term:
            assert context.short_term == recent
        _, _, shared = _context(max_tokens)
        assert len(shared.mid_term) >= len(context.mid_term)


def test_a_budget_larger_than_the_text_changes_nothing() -> None:
    _, _, whole = _context(None)
    _, _, roomy = _context(estimate_tokens(whole.text))
    assert roomy.text == whole.text and not roomy.left_out.any


def test_what_was_left_out_is_said_in_one_line() -> None:
    _, _, context = _context(MIN_BUDGET)
    last = context.text.splitlines()[-1]
    assert last.startswith("(") and "left out to stay within 100 tokens" in last
    assert "page(s)" in last and "fact(s)" in last and "the profile" in last


def test_language_model_summaries_head_their_pages_when_given() -> None:
    recent, earlier, _ = _context(None)
    segments = [
        ScoredSegment(Segment(f"seg_{i:016x}", "ann", f"Topic {i}: hiking with Ana", {}, 0.0, 0.0), 1.0, 1.0)
        for i in range(3)
    ]
    _, _, context = _context(None, segments=segments)
    assert context.text.count("Topic: Topic 0: hiking with Ana") == 1
    for budget in (200, 400, 700):
        _, _, small = _context(budget, segments=segments)
        assert estimate_tokens(small.text) <= budget


def test_short_ids() -> None:
    assert short_id("pg_3d0b48ae005c63c68989fa36bfeba7a0") == "pg_3d0b48ae"
    assert short_id("fact_0123456789abcdef0123") == "fact_01234567"
    assert (
        is_short_id("pg_3d0b48ae") and not is_short_id("pg_3d0b48ae005c") and not is_short_id("pg_3D0B48AE")
    )
