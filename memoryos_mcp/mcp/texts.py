"""What the host model reads of each tool's result: a short text saying what a model needs, once.

The structured content carries every field for programs; the text is not a dump of it. Ids are shown short
(core/context.short_id): forget_memory takes them. retrieve_memory's text is its `context`
(core/context.py), built within the caller's token budget.
"""

from __future__ import annotations

from memoryos_mcp.core.context import short_id
from memoryos_mcp.service.schemas import (
    AddMemoryResult,
    ForgetMemoryResult,
    ListMemoriesResult,
    MemoryPageResult,
    MemoryStats,
    PageOut,
    ProfileOut,
    UpdateMemoryResult,
    UserProfileResult,
)


def _page(page: PageOut) -> str:
    sides = [f"User: {page.user_input}"] if page.user_input else []
    sides += [f"Assistant: {page.agent_response}"] if page.agent_response else []
    return f"[{page.timestamp.replace('T', ' ')[:16]} {short_id(page.id)} {page.tier}] " + " | ".join(sides)


def _profile(profile: ProfileOut) -> list[str]:
    return [f"- {line}" for line in profile.lines()]


def added(r: AddMemoryResult) -> str:
    if r.already_stored:
        return f"Already stored as {short_id(r.page_id)} (same idempotency_key): nothing was added."
    parts = [f"Stored page {short_id(r.page_id)} for user '{r.user_id}'."]
    if r.moved_to_mid_term:
        topics = len(r.segments_created) + len(r.segments_merged)
        parts.append(
            f"{len(r.moved_to_mid_term)} older page(s) moved to mid-term memory ({topics} topic(s))."
        )
    if r.segments_archived:
        parts.append(f"{len(r.segments_archived)} cold topic(s) archived.")
    if r.segments_promoted:
        parts.append(f"{len(r.segments_promoted)} hot topic(s) analysed: {r.facts_added} fact(s) learned.")
    if r.promotion_pending:
        parts.append(f"{len(r.promotion_pending)} hot topic(s) wait for analysis.")
    if r.facts_dropped:
        parts.append(f"{len(r.facts_dropped)} oldest fact(s) dropped (capacity).")
    return " ".join(parts + r.notes)


def profile(r: UserProfileResult) -> str:
    sections = [f"Long-term memory of user '{r.user_id}'."]
    lines = _profile(r.profile)
    sections.append("Profile:\n" + "\n".join(lines) if lines else "Profile: (empty)")
    if r.user_knowledge is not None:
        facts = [f"- {f.text} [{short_id(f.id)}]" for f in r.user_knowledge]
        sections.append("Facts about the user:\n" + ("\n".join(facts) or "(none)"))
    if r.assistant_traits is not None:
        traits = [f"- {f.text} [{short_id(f.id)}]" for f in r.assistant_traits]
        sections.append("What you, the assistant, said about yourself:\n" + ("\n".join(traits) or "(none)"))
    if r.note:
        sections.append(r.note)
    return "\n\n".join(sections)


def listed(r: ListMemoriesResult) -> str:
    lines: list[str]
    if r.kind == "pages":
        lines = [_page(p) for p in r.pages or []]
    elif r.kind == "segments":
        lines = [
            f"[{short_id(s.id)}{', archived' if s.archived else ''}] {s.page_count} page(s), heat {s.heat:.2f}: "
            f"{s.summary}"
            for s in r.segments or []
        ]
    else:
        lines = [
            f"- {f.text} [{short_id(f.id)}, {f.kind}, from {len(f.source_pages)} page(s)]"
            for f in r.facts or []
        ]
        if r.profile is not None and _profile(r.profile):
            lines = ["Profile:", *_profile(r.profile), "Facts:", *lines]
    text = f"{r.kind.capitalize()} of user '{r.user_id}', newest first:\n" + ("\n".join(lines) or "(none)")
    if r.next_cursor:
        text += f"\nMore: pass cursor={r.next_cursor!r}."
    return text


def forgotten(r: ForgetMemoryResult) -> str:
    verb = "Would forget" if r.dry_run else "Forgot"
    if r.everything:
        return (
            f"{verb} all memory of user '{r.user_id}': {r.pages_removed} page(s), {r.facts_removed} fact(s)."
        )
    text = (
        f"{verb} {r.pages_removed} page(s) and {r.facts_removed} fact(s) of user '{r.user_id}' "
        f"({r.segments_removed} topic(s) removed, {r.segments_recomputed} recomputed, "
        f"{r.chain_summaries_recomputed} chain summaries rewritten, {len(r.fact_ids_trimmed)} fact(s) kept with "
        "fewer sources)."
    )
    if r.dry_run:
        text += " Nothing was changed: call again without dry_run to forget."
    unknown = r.unknown_page_ids + r.unknown_fact_ids
    if unknown:
        text += f" Not found for this user: {', '.join(unknown)}."
    return text


def stats(r: MemoryStats) -> str:
    text = (
        f"User '{r.user_id}': {r.short_term_pages} short-term page(s), {r.mid_term_pages} mid-term page(s) in "
        f"{r.segments} topic(s) ({r.archived_segments} archived), {r.user_facts} user fact(s), "
        f"{r.assistant_traits} assistant trait(s)."
    )
    if r.pages_waiting_for_sentences:
        text += f" {r.pages_waiting_for_sentences} imported page(s) still get their sentence vectors."
    text += f" Language model: {'configured' if r.llm_configured else 'none (profiling off)'}."
    return text


def updated(r: UpdateMemoryResult) -> str:
    if r.fact is not None:
        return (
            f"Fact {short_id(r.fact.id)} now reads: {r.fact.text} (corrected by the person; it said "
            f'"{r.fact.corrected_from}"; learned from {len(r.fact.source_pages)} page(s)).'
        )
    lines = _profile(r.profile) if r.profile is not None else []
    return (
        f"Profile of user '{r.user_id}' (set by the person: {', '.join(r.profile.set_by_person) if r.profile else ''}):\n"
        + ("\n".join(lines) or "(empty)")
    )


def page_address(r: MemoryPageResult) -> str:
    return (
        f"The memory page of user '{r.user_id}': {r.address}\nOpen it in a browser on this machine to see what is "
        "remembered, why it is recalled, and to correct, forget or export it. "
        + (
            "The address opens the page once, within an hour; call memory_page again for another."
            if "/enter?" in r.address
            else "The page asks for the bearer token this client uses."
        )
    )
