"""What a page is embedded as: its exchange, and each of its sentences (retrieval re-orders pages by their
best sentence). One call to the model for a batch of pages; sentences can also come later (a bulk import's
pages, filled in by the server's backfill)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from memoryos_mcp.core.models import Page, SentenceVectors
from memoryos_mcp.core.protocols import Embedder, PausableEmbedder
from memoryos_mcp.core.text import exchange_text, page_sentences


def own_sentences(page: Page) -> list[str]:
    """The texts a page's sentence vectors are embedded from: none when its only sentence is its whole
    exchange (or it has none), whose vector is the page's own."""
    sentences = page_sentences(page)
    return [] if sentences in ([], [exchange_text(page)]) else sentences


def embed_pages(embedder: Embedder, pages: Sequence[Page], *, sentences: bool = True) -> None:
    """Set each page's embedding (of its exchange) and its sentences' vectors, in one call to the model.

    A page whose only sentence is its whole exchange (or that has none) has its own vector as its one
    sentence, not embedded twice. `sentences=False` (a bulk import at the rate of its pages): the other pages
    keep sentences=None, which the store records as waiting; embed_sentences() fills them in later, and until
    then a page ranks with its own vector as its one sentence."""
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for page in pages:
        texts.append(exchange_text(page))
        own = own_sentences(page) if sentences else []
        spans.append((len(texts), len(texts) + len(own)))
        texts.extend(own)
    vectors = embedder.embed(texts) if texts else []
    for page, (start, end) in zip(pages, spans, strict=True):
        page.embedding = vectors[start - 1]
        if end > start:
            page.sentences = SentenceVectors.quantize(np.asarray(vectors[start:end], dtype=np.float32))
        elif sentences or not own_sentences(page):
            page.sentences = SentenceVectors.quantize(np.asarray([page.embedding], dtype=np.float32))


def embed_sentences(
    embedder: Embedder,
    pages: Sequence[Page],
    *,
    at_most: int | None = None,
    before_each: Callable[[], None] | None = None,
) -> None:
    """Set the sentence vectors of pages that have their embedding (pages stored without them).

    Background work passes `before_each`, which may wait while tool calls use the model: an embedder that
    can pause between its runs (PausableEmbedder) is called once and pauses there; any other is called for
    at most `at_most` texts at a time, with before_each() before each call."""
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for page in pages:
        own = own_sentences(page)
        spans.append((len(texts), len(texts) + len(own)))
        texts.extend(own)
    if not texts:
        vectors = np.zeros((0, 0), dtype=np.float32)
    elif before_each is not None and isinstance(embedder, PausableEmbedder):
        vectors = embedder.embed_pausing(texts, before_each)
    else:
        # Shortest first, so that each call's texts are alike in length (padding is what costs the most).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = at_most or len(texts)
        parts = []
        for start in range(0, len(texts), step):
            if before_each is not None:
                before_each()
            parts.append(embedder.embed([texts[i] for i in order[start : start + step]]))
        vectors = np.empty_like(np.concatenate(parts))
        vectors[order] = np.concatenate(parts)
    for page, (start, end) in zip(pages, spans, strict=True):
        own = vectors[start:end] if end > start else np.asarray([page.embedding])
        page.sentences = SentenceVectors.quantize(np.asarray(own, dtype=np.float32))
