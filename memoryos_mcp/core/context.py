"""The paper's generation-module input: the one text the host model reads as memory, within a budget.

A model pays for every token it reads, and reads memory on most turns. So the text says each page once —
its date, the two sides, a short id a follow-up call can use (forget_memory) — and nothing a model does not
need (scores, nulls, chain summaries that repeat the pages). With a budget (max_tokens) it is filled best
first: short-term pages (newest first) up to a third of it, then mid-term pages by score, then the other
short-term pages, then the persona; what is left out is said in one line, and the caller gets exactly what
the text shows.

Tokens are estimated as characters / 4 (CHARS_PER_TOKEN): what OpenAI and Anthropic tokenizers give for
English prose on average, with no tokenizer to download; LoCoMo pages measured 3.9-4.3 characters a token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from memoryos_mcp.core.models import Page, ScoredFact, ScoredPage, ScoredSegment, UserProfile

CHARS_PER_TOKEN = 4
SHORT_ID_CHARS = 8  # hex digits kept after the kind ("pg_3d0b48ae"): unique among a user's pages in practice
MIN_BUDGET = 100  # tokens: below this not even one page and the left-out line fit
# Under a budget, recent pages come first up to this share of it; then the best earlier pages, then the rest
# of the recent ones. Measured on LoCoMo dev (evidence recall at 1,000 / 500 tokens): recent pages first
# without a limit 0.791 / 0.061 (seven recent pages take most of 1,000 tokens, and the host model often has
# them in its own context already); a half 0.802 / 0.662; a third 0.831 / 0.720; a quarter 0.838 / 0.732.
RECENT_SHARE = 1 / 3


def estimate_tokens(text: str) -> int:
    """The tokens `text` costs a model, estimated (characters / 4, rounded up)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def short_id(full_id: str) -> str:
    """The id as the text shows it: its kind and the first hex digits ("pg_3d0b48ae"). forget_memory
    takes it (a prefix of one page's id)."""
    kind, sep, rest = full_id.partition("_")
    return f"{kind}_{rest[:SHORT_ID_CHARS]}" if sep and rest else full_id


def is_short_id(given: str) -> bool:
    """Whether an id has the short form: a kind, "_", then SHORT_ID_CHARS hex digits and no more."""
    kind, sep, rest = given.partition("_")
    return bool(kind and sep) and len(rest) == SHORT_ID_CHARS and all(c in "0123456789abcdef" for c in rest)


def _date(page: Page) -> str:
    return page.timestamp[:10] or "undated"


def page_line(page: Page) -> str:
    """A page as the text shows it (under a line naming its date): its short id, then U: and A:."""
    sides = [f"U: {page.user_input}"] if page.user_input else []
    sides += [f"A: {page.agent_response}"] if page.agent_response else []
    return f"{short_id(page.id)} " + " ".join(sides)


def fact_line(scored: ScoredFact) -> str:
    return f"- {scored.fact.text} [{short_id(scored.fact.id)}]"


@dataclass
class LeftOut:
    """What a budget left out of the text (and of the result)."""

    short_term_pages: int = 0
    mid_term_pages: int = 0
    user_facts: int = 0
    assistant_traits: int = 0
    profile: bool = False

    @property
    def any(self) -> bool:
        counts = (self.short_term_pages, self.mid_term_pages, self.user_facts, self.assistant_traits)
        return any(counts) or self.profile

    def sentence(self, max_tokens: int) -> str:
        pages = self.short_term_pages + self.mid_term_pages
        facts = self.user_facts + self.assistant_traits
        parts = [f"{pages} page(s)"] if pages else []
        parts += [f"{facts} fact(s)"] if facts else []
        parts += ["the profile"] if self.profile else []
        said = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
        return (
            f"({said} left out to stay within {max_tokens:,} tokens: a narrower query or a larger "
            "max_tokens gets them.)"
        )


@dataclass
class Context:
    """The text, and what it holds: pages and facts in the order they were chosen."""

    text: str
    short_term: list[Page]
    mid_term: list[ScoredPage]
    user_facts: list[ScoredFact]
    assistant_traits: list[ScoredFact]
    profile: UserProfile | None
    left_out: LeftOut = field(default_factory=LeftOut)


RECENT = "Recent conversation:"
EARLIER = "Earlier conversations:"
PROFILE = "User profile:"
FACTS = "Facts about the user:"
TRAITS = "What you, the assistant, said about yourself:"


class _Budget:
    """Characters left. An item goes in whole, with what it brings the first time: its section's heading,
    its topic's line, its date's line — each counted once, as _render() writes each once."""

    def __init__(self, max_tokens: int) -> None:
        self.left = max_tokens * CHARS_PER_TOKEN
        self.full = False  # once one item did not fit, nothing after it goes in (best first)
        self.seen: set[tuple[str, ...]] = set()

    def take(self, line: str, *firsts: tuple[tuple[str, ...], str]) -> bool:
        """`firsts`: (key, text) of the lines that come with the item unless an earlier item brought them."""
        if self.full:
            return False
        new = [(key, text) for key, text in firsts if key not in self.seen]
        cost = len(line) + 1 + sum(len(text) + 1 for _, text in new)
        if cost > self.left:
            self.full = True
            return False
        self.left -= cost
        self.seen.update(key for key, _ in new)
        return True


def build_context(
    *,
    user_id: str,
    short_term: Sequence[Page],
    mid_term: Sequence[ScoredPage],
    user_facts: Sequence[ScoredFact],
    assistant_traits: Sequence[ScoredFact],
    profile: UserProfile | None,
    assistant_profile: str,
    segments: Sequence[ScoredSegment] = (),
    max_tokens: int | None = None,
    recent_share: float = RECENT_SHARE,
) -> Context:
    """The memory text for the host model; with `max_tokens`, what fits of it, best first.

    `segments`: the retrieved segments, whose summaries head their pages — pass them only where the
    summaries say more than the pages (written by a language model; extractive ones repeat the pages)."""
    header = f"Memory of user '{user_id}' (U: the user, A: you; the id before each page is what forget_memory takes)."
    if assistant_profile.strip():
        header += f"\nYou, the assistant: {assistant_profile.strip()}"
    topics = {s.segment.id: s.segment.summary for s in segments if s.segment.summary}
    everything = _render(header, short_term, mid_term, user_facts, assistant_traits, profile, segments)
    if max_tokens is None or estimate_tokens(everything) <= max_tokens:
        return Context(
            everything, list(short_term), list(mid_term), list(user_facts), list(assistant_traits), profile
        )
    # Room for the header and for the line saying what was left out, whatever it says.
    reserve = len(header) + len(LeftOut(10**6, 10**6, 10**6, 10**6, True).sentence(max_tokens)) + 2
    budget = _Budget(max(max_tokens - -(-reserve // CHARS_PER_TOKEN), 0))
    heading = ("section", "recent"), "\n" + RECENT  # a section's heading comes after a blank line
    first_claim = _Budget(0)
    first_claim.left = int(budget.left * recent_share)
    recent: list[Page] = []
    for page in reversed(short_term):
        brought = (heading, (("recent", _date(page)), _date(page)))
        if not first_claim.take(page_line(page), *brought) or not budget.take(page_line(page), *brought):
            break
        recent.append(page)
    earlier: list[ScoredPage] = []
    for scored in mid_term:
        page = scored.page
        group = page.segment_id if page.segment_id in topics else ""
        brought = [(("section", "earlier"), "\n" + EARLIER)]
        if group:
            brought.append((("topic", group), f"Topic: {topics[group]}"))
        brought.append((("earlier", group, _date(page)), _date(page)))
        if not budget.take(page_line(page), *brought):
            break
        earlier.append(scored)
    if not budget.full:
        for page in list(reversed(short_term))[len(recent) :]:
            if not budget.take(page_line(page), heading, (("recent", _date(page)), _date(page))):
                break
            recent.append(page)
    recent.reverse()
    lines = _profile_lines(profile)
    kept_profile = (
        profile if lines and budget.take("\n".join(lines), (("section", "profile"), "\n" + PROFILE)) else None
    )
    facts = [f for f in user_facts if budget.take(fact_line(f), (("section", "facts"), "\n" + FACTS))]
    traits = [
        f for f in assistant_traits if budget.take(fact_line(f), (("section", "traits"), "\n" + TRAITS))
    ]
    left_out = LeftOut(
        short_term_pages=len(short_term) - len(recent),
        mid_term_pages=len(mid_term) - len(earlier),
        user_facts=len(user_facts) - len(facts),
        assistant_traits=len(assistant_traits) - len(traits),
        profile=bool(lines) and kept_profile is None,
    )
    text = _render(header, recent, earlier, facts, traits, kept_profile, segments, empty_note=False)
    if left_out.any:
        text += "\n\n" + left_out.sentence(max_tokens)
    return Context(text, recent, earlier, facts, traits, kept_profile, left_out)


def _pages(pages: Sequence[Page], topics: dict[str, str] | None = None) -> list[str]:
    """Pages in date order under a line for each date; with `topics`, first grouped under their topic."""
    lines: list[str] = []
    previous: tuple[str, str] | None = None
    for page in pages:
        group = page.segment_id if topics and page.segment_id in topics else ""
        if group and (previous is None or previous[0] != group):
            lines.append(f"Topic: {topics[group]}")  # type: ignore[index]
            previous = (group, "")
        if previous != (group, _date(page)):
            lines.append(_date(page))
            previous = (group, _date(page))
        lines.append(page_line(page))
    return lines


def _render(
    header: str,
    short_term: Sequence[Page],
    mid_term: Sequence[ScoredPage],
    user_facts: Sequence[ScoredFact],
    assistant_traits: Sequence[ScoredFact],
    profile: UserProfile | None,
    segments: Sequence[ScoredSegment],
    *,
    empty_note: bool = True,
) -> str:
    """Stable knowledge first, then earlier conversations, then the recent ones (nearest the question)."""
    sections = [header]
    if _profile_lines(profile):
        sections.append(PROFILE + "\n" + "\n".join(_profile_lines(profile)))
    if user_facts:
        sections.append(FACTS + "\n" + "\n".join(fact_line(f) for f in user_facts))
    if assistant_traits:
        sections.append(TRAITS + "\n" + "\n".join(fact_line(f) for f in assistant_traits))
    if mid_term:
        topics = {s.segment.id: s.segment.summary for s in segments if s.segment.summary}
        rank = {s.segment.id: i for i, s in enumerate(segments)}
        # By topic (in the order the segments ranked) where there are topics; oldest first reads as a story.
        pages = sorted(
            (sp.page for sp in mid_term),
            key=lambda p: (rank.get(p.segment_id, len(rank)) if p.segment_id in topics else -1, p.timestamp),
        )
        sections.append(EARLIER + "\n" + "\n".join(_pages(pages, topics)))
    if short_term:
        sections.append(RECENT + "\n" + "\n".join(_pages(sorted(short_term, key=lambda p: p.timestamp))))
    if len(sections) == 1 and empty_note:
        sections.append("(no memories stored yet)")
    return "\n\n".join(sections)


def _profile_lines(profile: UserProfile | None) -> list[str]:
    return [f"- {line}" for line in profile.lines()] if profile is not None and not profile.is_empty else []
