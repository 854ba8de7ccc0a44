"""Local text processing: tokens, keywords and extractive summaries (no LLM, no I/O)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from memoryos_mcp.core.models import Page

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")

# A compact English stop list: enough to keep keywords about content, not function words.
STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during
each few for from further get got had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
just let's like me more most much mustn't my myself no nor not now of off oh ok okay on once only or other
ought our ours ourselves out over own really same shan't she she'd she'll she's should shouldn't so some
such than that that's the their theirs them themselves then there there's these they they'd they'll
they're they've this those through to too under until up us very was wasn't we we'd we'll we're we've
were weren't what what's when when's where where's which while who who's whom why why's will with won't
would wouldn't yeah yes yet you you'd you'll you're you've your yours yourself yourselves thanks thank
hey hi hello wow great good nice sure well lot lots one two thing things something anything everything
know think going go want way make made really still even also always never ever back day time
""".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; apostrophe suffixes kept so that stop words like "don't" match."""
    return _TOKEN.findall(text.lower())


def content_tokens(text: str) -> list[str]:
    """Tokens that carry content: no stop words, no one- or two-letter tokens, no bare numbers."""
    return [t for t in tokenize(text) if len(t) > 2 and t not in STOPWORDS and not t.isdigit()]


def keyword_counts(text: str) -> Counter[str]:
    return Counter(content_tokens(text))


def extract_keywords(text: str, limit: int = 8) -> list[str]:
    """The most frequent content words, ties broken by first appearance (stable, deterministic)."""
    counts = keyword_counts(text)
    order = {word: i for i, word in reversed(list(enumerate(content_tokens(text))))}
    ranked = sorted(counts, key=lambda w: (-counts[w], order[w]))
    return ranked[:limit]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


MAX_PAGE_SENTENCES = 32  # a long page's sentences are grouped into this many: its cost stays bounded


def sentences_by_side(page: Page) -> tuple[list[str], list[str]]:
    """The sentences of each side of a page (the user's, the agent's), fragments of one or two characters
    dropped ("Ok", "?!")."""
    user, agent = (
        [s for s in split_sentences(side) if len(s) > 2] for side in (page.user_input, page.agent_response)
    )
    return user, agent


def page_sentences(page: Page) -> list[str]:
    """The sentences of a page, the user's then the agent's; more than MAX_PAGE_SENTENCES are joined in
    consecutive groups."""
    user, agent = sentences_by_side(page)
    parts = user + agent
    if len(parts) <= MAX_PAGE_SENTENCES:
        return parts
    size = -(-len(parts) // MAX_PAGE_SENTENCES)
    return [" ".join(parts[i : i + size]) for i in range(0, len(parts), size)]


def is_question(sentence: str) -> bool:
    """A sentence that asks ("Do you paint?", "Really?!"): it states nothing to be recalled."""
    return sentence.rstrip(" \"')]\u201d\u2019!").endswith("?")


def sentence_layout(page: Page, vectors: int) -> tuple[int, int]:
    """How a page's `vectors` sentence vectors divide: (how many, the first ones, are the user's; a bit mask
    of those that are questions, bit i for the i-th). (-1, 0) when that is not known — sentences joined in
    groups that may span both sides, or vectors that do not match this version's split (a page stored before
    sentences were embedded has its own vector as its one sentence: right only when its text is one sentence)."""
    user, agent = sentences_by_side(page)
    if len(user) + len(agent) > MAX_PAGE_SENTENCES or vectors != len(user) + len(agent):
        return -1, 0
    return len(user), sum(1 << i for i, sentence in enumerate(user + agent) if is_question(sentence))


def extractive_summary(texts: Iterable[str], max_sentences: int = 3, max_chars: int = 400) -> str:
    """Pick the sentences richest in the passage's frequent content words, kept in their original order."""
    sentences: list[str] = []
    for text in texts:
        sentences.extend(split_sentences(text))
    if not sentences:
        return ""
    counts = keyword_counts(" ".join(sentences))

    def weight(sentence: str) -> float:
        tokens = content_tokens(sentence)
        if not tokens:
            return 0.0
        # Normalise by a damped length so long rambling sentences don't always win.
        return sum(counts[t] for t in set(tokens)) / (1.0 + len(tokens) ** 0.5)

    chosen = sorted(sorted(range(len(sentences)), key=lambda i: -weight(sentences[i]))[:max_sentences])
    summary = " ".join(sentences[i] for i in chosen)
    if len(summary) > max_chars:
        summary = summary[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    return summary


def exchange_text(page: Page) -> str:
    """Both sides of the exchange: what a page is embedded by.

    No date: in a short text the date's tokens pull every page of one day together and blur what was said
    (LoCoMo dev, LLM-free: mid-term @5 +0.7 points, @10 +0.1). Retrieval's date cue matches dates instead.
    """
    return " ".join(part for part in (page.user_input.strip(), page.agent_response.strip()) if part)


def page_text(page: Page) -> str:
    """The text a page is searched by (BM25) and shown to an LLM as: its date, then the exchange."""
    return f"[{page.timestamp[:10]}] {exchange_text(page)}"


def topic_text(summary: str, keywords: Iterable[str]) -> str:
    """What a topic or a segment is embedded by (its e_s in F_score): summary, then keywords."""
    return f"{summary} {' '.join(keywords)}"
