"""The paper's generation-module input: one text block the host model can read as memory."""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_mcp.core.models import Page, ScoredFact, ScoredPage, UserProfile


def _when(page: Page) -> str:
    return page.timestamp.replace("T", " ")[:16]


def _exchange(page: Page) -> str:
    parts = []
    if page.user_input:
        parts.append(f"User: {page.user_input}")
    if page.agent_response:
        parts.append(f"Assistant: {page.agent_response}")
    return " | ".join(parts)


def build_context(
    *,
    user_id: str,
    short_term: Sequence[Page],
    mid_term: Sequence[ScoredPage],
    user_facts: Sequence[ScoredFact],
    assistant_traits: Sequence[ScoredFact],
    profile: UserProfile | None,
    assistant_profile: str,
) -> str:
    """Assemble retrieved memory into sections with timestamps, most stable knowledge first."""
    sections: list[str] = [f"# Memory for user '{user_id}'"]
    if assistant_profile.strip():
        sections.append(f"## Assistant profile\n{assistant_profile.strip()}")
    if profile is not None and not profile.is_empty:
        sections.append("## User profile\n" + "\n".join(f"- {line}" for line in profile.lines()))
    if user_facts:
        sections.append("## Known facts about the user\n" + "\n".join(f"- {f.fact.text}" for f in user_facts))
    if assistant_traits:
        sections.append(
            "## What the assistant has said about itself\n"
            + "\n".join(f"- {f.fact.text}" for f in assistant_traits)
        )
    if mid_term:
        # Oldest first reads as a story; the ranking already chose which pages are here.
        pages = sorted(mid_term, key=lambda sp: sp.page.timestamp)
        lines = []
        for sp in pages:
            line = f"[{_when(sp.page)}] {_exchange(sp.page)}"
            if sp.page.chain_summary:
                line += f"\n  (conversation so far: {sp.page.chain_summary})"
            lines.append(line)
        sections.append("## Relevant earlier conversations\n" + "\n".join(lines))
    if short_term:
        sections.append(
            "## Recent conversation\n" + "\n".join(f"[{_when(p)}] {_exchange(p)}" for p in short_term)
        )
    if len(sections) == 1:
        sections.append("(no memories stored yet)")
    return "\n\n".join(sections)
