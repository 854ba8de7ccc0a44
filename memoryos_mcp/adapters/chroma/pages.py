"""Pages of both tiers: records, sentence vectors and the pages still waiting for them."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from chromadb.api.models.Collection import Collection

from memoryos_mcp.adapters.chroma.base import (
    PAGE_COLUMNS,
    SEGMENT_CHUNK,
    WAITING_KEY,
    ChromaBase,
    chunks,
    rows_of,
)
from memoryos_mcp.core.models import (
    Page,
    SentenceVectors,
)

logger = logging.getLogger(__name__)


class PageRecords(ChromaBase):
    """Part of ChromaStore: pages of both tiers: records, sentence vectors and the pages still waiting for them."""

    @staticmethod
    def _page_record(page: Page) -> tuple[str, dict[str, Any]]:
        document = json.dumps(
            {
                "user_input": page.user_input,
                "agent_response": page.agent_response,
                "metadata": page.metadata,
                "chain_summary": page.chain_summary,
            },
            ensure_ascii=False,
        )
        meta: dict[str, Any] = {
            "kind": "page",
            "user_id": page.user_id,
            "timestamp": page.timestamp,
            "added_at": page.added_at,
            "segment_id": page.segment_id,
            "chain_id": page.chain_id,
            "analyzed": page.analyzed,
        }
        if page.sentences is not None:  # ~3 KB a page of base64; read back with the page, written with it
            meta["sentences"] = page.sentences.to_text()
        else:  # stored before its sentences were embedded: the backfill finds it by this (selective) key
            meta[WAITING_KEY] = page.user_id
        return document, meta

    @staticmethod
    def _page(page_id: str, document: str | None, meta: dict[str, Any], embedding: np.ndarray | None) -> Page:
        body = json.loads(document or "{}")
        return Page(
            id=page_id,
            user_id=str(meta["user_id"]),
            user_input=body.get("user_input", ""),
            agent_response=body.get("agent_response", ""),
            timestamp=str(meta["timestamp"]),
            added_at=int(meta["added_at"]),
            metadata=body.get("metadata") or {},
            chain_id=str(meta.get("chain_id", "")),
            chain_summary=body.get("chain_summary", ""),
            segment_id=str(meta.get("segment_id", "")),
            analyzed=bool(meta.get("analyzed", False)),
            embedding=embedding,
            sentences=_sentences(meta.get("sentences"), embedding, page_id),
        )

    def _pages(
        self, rows: Sequence[tuple[str, str | None, dict[str, Any], np.ndarray | None]], user_id: str
    ) -> list[Page]:
        pages = [
            self._page(i, d, m, e)
            for i, d, m, e in rows
            if m.get("user_id") == user_id and m.get("kind") == "page"
        ]
        return sorted(pages, key=lambda p: (p.added_at, p.id))

    def _put_pages(self, collection: Collection, pages: Sequence[Page]) -> None:
        if not pages:
            return
        records = [self._page_record(p) for p in pages]
        self._write(
            collection.upsert,
            [p.id for p in pages],
            embeddings=np.asarray([np.asarray(p.embedding, dtype=np.float32) for p in pages]),
            documents=[doc for doc, _ in records],
            metadatas=[meta for _, meta in records],
        )

    def put_stm_pages(self, pages: Sequence[Page]) -> None:
        self._put_pages(self.stm, pages)

    def list_stm_pages(self, user_id: str) -> list[Page]:
        # Short-term memory holds a handful of pages per user, so user_id is selective in this collection.
        return self._pages(self._get_where(self.stm, {"user_id": user_id}, PAGE_COLUMNS), user_id)

    def delete_stm_pages(self, user_id: str, page_ids: Sequence[str]) -> None:
        if page_ids:
            self._delete_owned(self.stm, user_id, page_ids)

    def put_mtm_pages(self, pages: Sequence[Page]) -> None:
        self._put_pages(self.mtm, pages)

    def find_pages(self, user_id: str, page_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for tier, collection in (
            ("short_term", self.stm),
            ("mid_term", self.mtm),
        ):  # mid-term wins: the move happened
            for pid, _, meta, _ in self._get_ids(collection, page_ids, {"metadatas"}):
                if meta.get("user_id") == user_id and meta.get("kind") == "page":
                    found[pid] = tier
        return found

    def get_mtm_pages(self, user_id: str, page_ids: Sequence[str]) -> list[Page]:
        return self._pages(self._get_ids(self.mtm, page_ids, PAGE_COLUMNS), user_id) if page_ids else []

    def mark_analyzed(self, user_id: str, page_ids: Sequence[str]) -> None:
        owned = [
            i
            for i, _, m, _ in self._get_ids(self.mtm, page_ids, {"metadatas"})
            if m.get("user_id") == user_id
        ]
        self._write(self.mtm.update, owned, metadatas=[{"analyzed": True}] * len(owned))

    def put_sentences(self, user_id: str, tier: str, pages: Sequence[Page]) -> None:
        collection = {"short_term": self.stm, "mid_term": self.mtm}[tier]
        owned = {i for i, _, m, _ in self._get_ids(collection, [p.id for p in pages], {"metadatas"})
                 if m.get("user_id") == user_id}  # fmt: skip
        chosen = [p for p in pages if p.id in owned and p.sentences is not None]
        # update() merges metadata: the page's other fields stay as they are; None removes the waiting key.
        self._write(
            collection.update,
            [p.id for p in chosen],
            metadatas=[{"sentences": p.sentences.to_text(), WAITING_KEY: None} for p in chosen],  # type: ignore[union-attr]
        )

    def waiting_for_sentences(self, user_id: str, limit: int) -> list[Page]:
        pages: list[Page] = []
        for collection in (self.stm, self.mtm):
            if len(pages) < limit:
                got = collection.get(
                    where={WAITING_KEY: user_id}, limit=limit - len(pages), include=sorted(PAGE_COLUMNS)
                )  # type: ignore[arg-type]
                pages.extend(self._pages(rows_of(got), user_id))
        return pages

    def count_waiting_for_sentences(self, user_id: str) -> int:
        return sum(len(c.get(where={WAITING_KEY: user_id}, include=[])["ids"]) for c in (self.stm, self.mtm))

    def pages_of_segments(self, user_id: str, segment_ids: Sequence[str]) -> list[Page]:
        rows = []
        for chunk in chunks(list(dict.fromkeys(segment_ids)), SEGMENT_CHUNK):
            rows.extend(self._get_where(self.mtm, {"segment_id": {"$in": list(chunk)}}, PAGE_COLUMNS))
        return self._pages(rows, user_id)


def _sentences(text: Any, embedding: np.ndarray | None, page_id: str) -> SentenceVectors | None:
    """A page's stored sentence vectors (derived data: unreadable ones are dropped, the page's own vector then
    stands in for them)."""
    if not isinstance(text, str) or embedding is None:
        return None
    try:
        return SentenceVectors.from_text(text, len(embedding))
    except ValueError as exc:
        logger.warning("page %s: ignoring its stored sentence vectors (%s)", page_id, exc)
        return None
