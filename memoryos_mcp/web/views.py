"""The memory page's HTML, written by the server: every value escaped, no script, forms for every change."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import urlencode

from memoryos_mcp.core.context import short_id
from memoryos_mcp.core.text import content_tokens
from memoryos_mcp.service.schemas import (
    ForgetMemoryResult,
    ListedFactOut,
    ListedSegmentOut,
    ListMemoriesResult,
    MemoryStats,
    PageOut,
    RetrieveMemoryResult,
)
from memoryos_mcp.web import charts


class View:
    """What every view knows: the mount path, the user shown, the users the session may switch to, CSRF."""

    def __init__(self, base: str, user: str, users: Sequence[str] | None, csrf: str) -> None:
        self.base = base
        self.user = user
        self.users = users
        self.csrf = csrf

    def url(self, path: str, **query: object) -> str:
        items = [(k, v) for k, v in {"user": self.user, **query}.items() if v not in (None, "", [])]
        flat: list[tuple[str, object]] = []
        for key, value in items:
            flat.extend((key, v) for v in value) if isinstance(value, list) else flat.append((key, value))
        return escape(f"{self.base}{path}?{urlencode(flat)}")

    def hidden(self) -> str:
        return (
            f'<input type="hidden" name="csrf" value="{escape(self.csrf)}">'
            f'<input type="hidden" name="user" value="{escape(self.user)}">'
        )

    def page(self, title: str, body: str, notice: str = "") -> str:
        nav = "".join(
            f'<a href="{self.url(path)}">{label}</a>'
            for path, label in (
                ("/", "Overview"),
                ("/pages", "Pages"),
                ("/segments", "Segments"),
                ("/facts", "Profile and facts"),
                ("/export", "Export"),
            )
        )
        switch = ""
        if self.users is None:  # any user: name one
            switch = (
                f'<form method="get" action="{escape(self.base)}/" class="switch">'
                f'<label>User <input name="user" value="{escape(self.user)}" size="12"></label>'
                "<button>Switch</button></form>"
            )
        elif len(self.users) > 1:
            options = "".join(
                f'<option value="{escape(u)}"{" selected" if u == self.user else ""}>{escape(u)}</option>'
                for u in self.users
            )
            switch = (
                f'<form method="get" action="{escape(self.base)}/" class="switch">'
                f'<label>User <select name="user">{options}</select></label><button>Switch</button></form>'
            )
        note = f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} — memory of {escape(self.user)}</title>"
            f'<link rel="stylesheet" href="{escape(self.base)}/static/page.css"></head><body>'
            f"<header><strong>memoryos</strong> · {escape(self.user)}<nav>{nav}</nav>{switch}</header>"
            f"<main><h1>{escape(title)}</h1>{note}{body}</main></body></html>"
        )


def plain(title: str, message: str, base: str = "", home: bool = False) -> str:
    """A page of its own (an error, a refusal); `home`: with the way back to the memory page."""
    back = f'<p><a href="{escape(base)}/">Back to the memory page</a></p>' if home else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="{escape(base)}/static/page.css"></head>'
        f"<body><main><h1>{escape(title)}</h1><p>{escape(message)}</p>{back}</main></body></html>"
    )


def shares_a_word(query: str, page: PageOut) -> bool:
    """Whether a page has one of the query's content words (how the search picks short-term pages)."""
    words = set(content_tokens(query))
    return bool(words) and not words.isdisjoint(content_tokens(f"{page.user_input} {page.agent_response}"))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def moving_on(target: str, base: str) -> str:
    """The answer to the start address: on to the clean address (by itself, or by the link)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="0;url={escape(target)}"><title>memoryos</title>'
        f'<link rel="stylesheet" href="{escape(base)}/static/page.css"></head><body><main>'
        f'<p>You are in. <a href="{escape(target)}">Open the memory page</a>.</p></main></body></html>'
    )


def login_form(base: str, error: str = "") -> str:
    wrong = f'<p class="notice" role="alert">{escape(error)}</p>' if error else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in — memoryos</title>"
        f'<link rel="stylesheet" href="{escape(base)}/static/page.css"></head><body><main>'
        f"<h1>Sign in</h1>{wrong}<p>This server's memory page needs the bearer token your client uses.</p>"
        f'<form method="post" action="{escape(base)}/login"><label>Token '
        '<input type="password" name="token" autocomplete="off" required></label>'
        "<button>Sign in</button></form></main></body></html>"
    )


def overview(
    v: View, stats: MemoryStats, segments: Sequence[ListedSegmentOut], days: dict[str, int], notice: str = ""
) -> str:
    active = [s for s in segments if not s.archived]
    rows = [
        ("Short-term pages", stats.short_term_pages),
        ("Mid-term pages", stats.mid_term_pages),
        ("Segments", f"{len(active)} active, {stats.archived_segments} archived"),
        ("User facts", stats.user_facts),
        ("Assistant traits", stats.assistant_traits),
        ("Language model", "configured" if stats.llm_configured else "none: profiling is off"),
        ("Waiting for sentence vectors", stats.pages_waiting_for_sentences),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v_))}</td></tr>" for k, v_ in rows)
    empty = not (stats.short_term_pages or stats.mid_term_pages or stats.user_facts or stats.assistant_traits)
    hint = (
        f"<p>Nothing is remembered for <code>{escape(v.user)}</code>. User ids are exact (upper and lower case "
        "differ): is it the one your assistant uses?</p>"
        if empty
        else ""
    )
    return v.page(
        "Overview",
        hint + f'<table class="stats">{table}</table>'
        f"<h2>Heat of the segments</h2>{charts.heat_picture(segments)}"
        f"<h2>Pages over time</h2>{charts.pages_over_time(days)}",
        notice,
    )


def _page_row(v: View, page: PageOut, selectable: bool = True, extra: str = "") -> str:
    pick = (
        f'<input type="checkbox" name="page_id" value="{escape(page.id)}" aria-label="select {escape(page.id)}">'
        if selectable
        else ""
    )
    segment = (
        f' · <a href="{v.url("/segments/" + page.segment_id)}">{escape(short_id(page.segment_id))}</a>'
        if page.segment_id
        else ""
    )
    sides = []
    if page.user_input:
        sides.append(f'<p class="said"><b>User:</b> {escape(page.user_input)}</p>')
    if page.agent_response:
        sides.append(f'<p class="said"><b>Assistant:</b> {escape(page.agent_response)}</p>')
    return (
        f'<li class="memory" id="{escape(page.id)}">{pick}<span class="meta">{escape(page.timestamp[:16])} · '
        f"{escape(page.tier.replace('_', '-'))} · <code>{escape(short_id(page.id))}</code>{segment}</span>"
        f"{''.join(sides)}{extra}</li>"
    )


def _filters(v: View, tier: str, since: str, until: str, query: str) -> str:
    tiers = "".join(
        f'<option value="{t}"{" selected" if t == tier else ""}>{label}</option>'
        for t, label in (("all", "all tiers"), ("short_term", "short-term"), ("mid_term", "mid-term"))
    )
    return (
        f'<form method="get" action="{escape(v.base)}/pages" class="filters">'
        f'<input type="hidden" name="user" value="{escape(v.user)}">'
        f'<label>Search <input type="search" name="q" value="{escape(query)}" placeholder="what to look for"></label>'
        f'<select name="tier" aria-label="tier">{tiers}</select>'
        f'<label>From <input type="date" name="since" value="{escape(since)}"></label>'
        f'<label>To <input type="date" name="until" value="{escape(until)}"></label>'
        "<button>Show</button></form>"
    )


def _forget_form(v: View, items: str) -> str:
    return (
        f'<form method="get" action="{escape(v.base)}/forget">'
        f'<input type="hidden" name="user" value="{escape(v.user)}"><ol class="pages">{items}</ol>'
        '<button class="danger">Forget the selected pages…</button></form>'
    )


def pages(
    v: View,
    listing: ListMemoriesResult,
    tier: str,
    since: str,
    until: str,
    more: str | None,
    notice: str = "",
    newer: bool = False,
) -> str:
    """`more`: the cursor of older pages; `newer`: this is not the newest page of the list."""
    items = "".join(_page_row(v, p) for p in listing.pages or [])
    links = []
    if newer:
        links.append(f'<a href="{v.url("/pages", tier=tier, since=since, until=until)}">Newest</a>')
    if more:
        links.append(
            f'<a rel="next" href="{v.url("/pages", tier=tier, since=since, until=until, cursor=more)}">Older</a>'
        )
    next_link = f'<p class="paging">{" · ".join(links)}</p>' if links else ""
    before = (
        f'<form method="get" action="{escape(v.base)}/forget" class="inline">'
        f'<input type="hidden" name="user" value="{escape(v.user)}">'
        '<label>Everything before <input type="date" name="before" required></label>'
        '<button class="danger">Preview forgetting…</button></form>'
        f'<form method="get" action="{escape(v.base)}/forget" class="inline">'
        f'<input type="hidden" name="user" value="{escape(v.user)}"><input type="hidden" name="all" value="1">'
        '<button class="danger">Forget everything…</button></form>'
    )
    return v.page(
        "Pages",
        _filters(v, tier, since, until, "")
        + (_forget_form(v, items) if items else "<p>No pages.</p>")
        + next_link
        + before,
        notice,
    )


def search(
    v: View,
    query: str,
    ranked: RetrieveMemoryResult | None,
    recent: Sequence[PageOut],
    tier: str,
    since: str,
    until: str,
) -> str:
    """Mid-term pages ranked exactly as retrieve_memory ranks them (no visit recorded), each with why it was
    recalled; above them the short-term pages that share a word with the search (retrieve_memory returns the
    short-term pages whole, unranked)."""
    heat = {s.id: s for s in ranked.segments} if ranked is not None else {}
    items = []
    for page in ranked.mid_term if ranked is not None else []:
        why = page.why
        parts = ""
        if why is not None:
            sentence = (
                f'<p class="why-sentence">Best sentence ({why.sentence_cosine:.2f}): <mark>{escape(why.sentence)}</mark></p>'
                if why.sentence
                else ""
            )
            context = ", ".join(escape(short_id(c)) for c in why.context_page_ids) or "none"
            segment = heat.get(page.segment_id or "")
            seg = (
                f"<p>Segment: {escape(_cut(segment.summary, 160))} (heat {segment.heat:.2f})</p>"
                if segment is not None
                else ""
            )
            parts = (
                '<details class="why"><summary>Why this was recalled</summary><table>'
                f"<tr><th>Words (BM25 with its context)</th><td>{why.lexical:+.2f}</td></tr>"
                f"<tr><th>Meaning (vector with its context)</th><td>{why.dense:+.2f}</td></tr>"
                f"<tr><th>Time cue</th><td>{why.time_cue:+.2f}</td></tr>"
                f"<tr><th>Date cue</th><td>{why.date_cue:+.2f}</td></tr>"
                f"<tr><th>Best sentence</th><td>{why.best_sentence:+.2f}</td></tr>"
                f"<tr><th>Score</th><td>{(page.score or 0.0):+.2f}</td></tr></table>"
                f"{sentence}<p>Dialogue context: {context}</p>{seg}</details>"
            )
        items.append(_page_row(v, page, extra=parts))
    body = _filters(v, tier, since, until, query)
    if tier != "mid_term":
        shown = "".join(_page_row(v, p) for p in recent)
        body += "<h2>Short-term memory</h2><p>The newest exchanges that share a word with the search.</p>" + (
            _forget_form(v, shown) if shown else "<p>None.</p>"
        )
    if ranked is not None:
        if tier != "mid_term":
            body += "<h2>Mid-term memory</h2>"
        body += "<p>Ranked as retrieve_memory ranks them, without counting as a recall (no segment gets hotter).</p>"
        if ranked.mid_term and not any(shares_a_word(query, p) for p in ranked.mid_term):
            body += '<p class="notice">No page here shares a word with the search: these are only the nearest in meaning.</p>'
        body += _forget_form(v, "".join(items)) if items else "<p>Nothing found.</p>"
    return v.page(f"Search: {query}", body)


SEGMENTS_SHOWN = 100


def segments(v: View, listing: Sequence[ListedSegmentOut], start: int = 0) -> str:
    """Every segment, hottest first, SEGMENTS_SHOWN at a time from `start`."""
    ranked = sorted(listing, key=lambda s: (-s.heat, s.id))
    start = max(0, min(start, len(ranked) - 1)) if ranked else 0
    rows = "".join(
        f'<tr><td><a href="{v.url("/segments/" + s.id)}">{escape(_cut(s.summary, 200) or s.id)}</a></td>'
        f"<td>{escape(', '.join(s.keywords[:8]))}</td><td>{s.page_count}</td><td>{s.heat:.2f}</td>"
        f"<td>{s.n_visit}</td><td>{s.l_interaction}</td><td>{escape(s.last_access[:16])}</td>"
        f"<td>{'archived' if s.archived else 'active'}</td></tr>"
        for s in ranked[start : start + SEGMENTS_SHOWN]
    )
    head = (
        "<tr><th>Summary</th><th>Keywords</th><th>Pages</th><th>Heat</th><th>Visits (N)</th>"
        "<th>Pages since promotion (L)</th><th>Last access (recency)</th><th>State</th></tr>"
    )
    links = []
    if start > 0:
        links.append(f'<a href="{v.url("/segments", start=max(0, start - SEGMENTS_SHOWN))}">Hotter</a>')
    if start + SEGMENTS_SHOWN < len(ranked):
        links.append(f'<a rel="next" href="{v.url("/segments", start=start + SEGMENTS_SHOWN)}">Colder</a>')
    shown = f"{start + 1}–{min(start + SEGMENTS_SHOWN, len(ranked))} of {len(ranked)}"
    return v.page(
        "Segments",
        f"<p>Hottest first ({shown}). heat = α·N_visit + β·L_interaction + γ·exp(−Δt/μ): a hot segment is "
        "analysed into the profile.</p>"
        f'<div class="scroll"><table class="grid">{head}{rows}</table></div>'
        + (f'<p class="paging">{" · ".join(links)}</p>' if links else "")
        if rows
        else "<p>No segments yet.</p>",
    )


def segment(v: View, info: ListedSegmentOut | None, listing: ListMemoriesResult, segment_id: str) -> str:
    head = (
        f"<p>{escape(info.summary)}</p><p>Heat {info.heat:.2f} · {info.page_count} page(s) · "
        f"{'archived' if info.archived else 'active'}</p>"
        if info is not None
        else ""
    )
    items = "".join(_page_row(v, p) for p in listing.pages or [])
    more = (
        f'<p><a href="{v.url("/segments/" + segment_id, cursor=listing.next_cursor)}">Older</a></p>'
        if listing.next_cursor
        else ""
    )
    return v.page(f"Segment {short_id(segment_id)}", head + _forget_form(v, items) + more)


def facts(v: View, listing: ListMemoriesResult, notice: str = "") -> str:
    profile = listing.profile
    entries = ""
    if profile is not None:
        for key, value in profile.static.items():
            mine = " (set by you)" if key in profile.set_by_person else ""
            entries += (
                f'<li><form method="post" action="{escape(v.base)}/profile">{v.hidden()}'
                f'<input type="hidden" name="key" value="{escape(key)}"><label>{escape(key)}{mine} '
                f'<input name="value" value="{escape(value)}"></label><button>Save</button>'
                '<button name="remove" value="1" class="danger">Remove</button></form></li>'
            )
    add = (
        f'<form method="post" action="{escape(v.base)}/profile" class="inline">{v.hidden()}'
        '<label>New entry <input name="key" placeholder="e.g. location" required></label>'
        '<label>Value <input name="value" required></label><button>Add</button></form>'
    )
    traits = ""
    if profile is not None:
        for group, dims in profile.traits.items():
            for dim, t in dims.items():
                traits += (
                    f"<li>{escape(group)} / {escape(dim)}: {escape(t.level)} — {escape(t.evidence)}</li>"
                )
    items = ""
    for fact in listing.facts or []:
        sources = " ".join(
            f'<a href="{v.url("/pages", ids=p)}">{escape(short_id(p))}</a>' for p in fact.source_pages[:12]
        )
        mine = (
            f' <span class="mine">corrected by you (it said: {escape(fact.corrected_from)})</span>'
            if fact.corrected_from
            else ""
        )
        items += (
            f'<li class="fact" id="{escape(fact.id)}"><form method="post" action="{escape(v.base)}/facts">'
            f'{v.hidden()}<input type="hidden" name="fact_id" value="{escape(fact.id)}">'
            f'<label>{escape(fact.kind.replace("_", " "))} <input name="text" value="{escape(fact.text)}" size="70">'
            f"</label><button>Save</button></form>{mine}<p>Learned from: {sources or 'no page recorded'} · "
            f'<a class="danger" href="{v.url("/forget", fact_id=fact.id)}">Forget…</a></p></li>'
        )
    return v.page(
        "Profile and facts",
        f"<h2>Profile</h2><ul class=profile>{entries or '<li>No profile entries.</li>'}</ul>{add}"
        + (f"<h2>Traits</h2><ul>{traits}</ul>" if traits else "")
        + f"<h2>Facts</h2><ol class=facts>{items or '<li>No facts learned yet.</li>'}</ol>",
        notice,
    )


def forget_preview(
    v: View,
    preview: ForgetMemoryResult,
    page_ids: Sequence[str],
    fact_ids: Sequence[str],
    before: str,
    everything: bool,
    shown: Sequence[PageOut] = (),
    named: Sequence[ListedFactOut] = (),
    notice: str = "",
) -> str:
    """What the forget will do (a dry run of the real one): what was chosen, the cascade, the form that does it."""
    if everything:
        what = f"<p>Everything remembered about <code>{escape(v.user)}</code>: every page, topic and fact, and the profile.</p>"
    else:
        what = ""
        if before:
            what += f"<p>Every page dated before {escape(before)}.</p>"
        if shown:
            more = f"<p>…and {len(page_ids) - len(shown)} more.</p>" if len(page_ids) > len(shown) else ""
            what += f'<p>These pages:</p><ol class="pages">{"".join(_page_row(v, p, False) for p in shown)}</ol>{more}'
        if named:
            what += "<p>These facts:</p><ul>" + "".join(f"<li>{escape(f.text)}</li>" for f in named) + "</ul>"
    rows = [
        ("Pages removed", preview.pages_removed),
        ("Segments removed (left without pages)", preview.segments_removed),
        ("Segments recomputed from the pages they keep", preview.segments_recomputed),
        ("Chain summaries rewritten", preview.chain_summaries_recomputed),
        ("Facts removed (learned only from these pages, or named)", preview.facts_removed),
        ("Facts kept, with fewer sources", len(preview.fact_ids_trimmed)),
    ]
    if everything:
        rows.append(("Profile removed", "yes" if preview.profile_removed else "there is none"))
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(n))}</td></tr>" for k, n in rows)
    unknown = preview.unknown_page_ids + preview.unknown_fact_ids
    keep = "".join(f'<input type="hidden" name="page_id" value="{escape(p)}">' for p in page_ids)
    keep += "".join(f'<input type="hidden" name="fact_id" value="{escape(f)}">' for f in fact_ids)
    if before:
        keep += f'<input type="hidden" name="before" value="{escape(before)}">'
    confirm = ""
    if everything:
        keep += '<input type="hidden" name="all" value="1">'
        confirm = (
            f"<label>Type the user id, <code>{escape(v.user)}</code>, to confirm "
            '<input name="confirm" autocomplete="off" required></label>'
        )
    nothing = preview.pages_removed == 0 and preview.facts_removed == 0 and not preview.profile_removed
    form = (
        "<p>Nothing to forget.</p>"
        if nothing
        else f'<form method="post" action="{escape(v.base)}/forget">{v.hidden()}{keep}{confirm}'
        '<button class="danger">Forget for good</button></form>'
    )
    return v.page(
        "Forget — preview",
        what + "<p>This is what forgetting will do. Nothing has changed yet.</p>"
        f'<table class="stats preview">{table}</table>'
        + (
            f"<p>Not found for this user (already forgotten?): {escape(', '.join(unknown))}</p>"
            if unknown
            else ""
        )
        + form,
        notice,
    )
