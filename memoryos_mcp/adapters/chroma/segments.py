"""Mid-term segments with their visit counts (kept apart: a retrieval writes them), and the chain head."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from memoryos_mcp.adapters.chroma.base import PAGE_COLUMNS, ChromaBase
from memoryos_mcp.core.models import (
    Page,
    Segment,
)
from memoryos_mcp.core.protocols import ChainHead

logger = logging.getLogger(__name__)


class SegmentRecords(ChromaBase):
    """Part of ChromaStore: mid-term segments with their visit counts (kept apart: a retrieval writes them), and the chain head."""

    def list_segments(self, user_id: str, *, include_archived: bool = False) -> list[Segment]:
        where = {"segment_of": user_id} if include_archived else {"active_of": user_id}
        segments = []
        for sid, doc, meta, embedding in self._get_where(self.mtm, where, PAGE_COLUMNS):
            if meta.get("user_id") != user_id or meta.get("kind") != "segment":
                continue
            body = json.loads(doc or "{}")
            segments.append(
                Segment(
                    id=sid,
                    user_id=user_id,
                    summary=body["summary"],
                    keyword_counts={str(k): int(v) for k, v in body["keyword_counts"].items()},
                    created_at=float(meta["created_at"]),
                    last_access=float(meta["last_access"]),
                    n_visit=int(meta["n_visit"]),
                    l_interaction=int(meta["l_interaction"]),
                    page_count=int(meta["page_count"]),
                    archived=bool(meta["archived"]),
                    embedding=embedding,
                )
            )
        visits = self._stored_visits(user_id, [s.id for s in segments])
        for segment in segments:
            n_visit, last_access = visits.get(segment.id, (0, 0.0))
            segment.n_visit = max(segment.n_visit, n_visit)
            segment.last_access = max(segment.last_access, last_access)
        return sorted(segments, key=lambda s: (s.created_at, s.id))

    @staticmethod
    def _segment_record(s: Segment, *, with_visits: bool) -> tuple[str, dict[str, Any]]:
        document = json.dumps({"summary": s.summary, "keyword_counts": s.keyword_counts}, ensure_ascii=False)
        meta: dict[str, Any] = {
            "kind": "segment",
            "user_id": s.user_id,
            "segment_of": s.user_id,
            "active_of": "" if s.archived else s.user_id,
            "created_at": s.created_at,
            "l_interaction": s.l_interaction,
            "page_count": s.page_count,
            "archived": s.archived,
        }
        if with_visits:
            meta.update(n_visit=s.n_visit, last_access=s.last_access)
        return document, meta

    def put_segments(self, segments: Sequence[Segment], *, new: bool) -> None:
        if not segments:
            return
        # update() merges metadata, so the visit fields that concurrent retrievals write are kept.
        records = [self._segment_record(s, with_visits=new) for s in segments]
        self._write(
            self.mtm.upsert if new else self.mtm.update,
            [s.id for s in segments],
            embeddings=np.asarray([np.asarray(s.embedding, dtype=np.float32) for s in segments]),
            documents=[doc for doc, _ in records],
            metadatas=[meta for _, meta in records],
        )

    def write_mid_term(
        self,
        new_segments: Sequence[Segment],
        changed_segments: Sequence[Segment],
        pages: Sequence[Page],
        head: ChainHead | None,
    ) -> None:
        # One upsert for everything new (segments, pages, the chain head), one update for changed segments:
        # each call costs ~5 ms whatever it carries, and an eviction touches all of these.
        ids: list[str] = []
        embeddings: list[np.ndarray] = []
        documents: list[str] = []
        metadatas: list[dict[str, Any]] = []
        for segment in new_segments:
            doc, meta = self._segment_record(segment, with_visits=True)
            ids.append(segment.id), embeddings.append(np.asarray(segment.embedding, dtype=np.float32))
            documents.append(doc), metadatas.append(meta)
        for page in pages:
            doc, meta = self._page_record(page)
            ids.append(page.id), embeddings.append(np.asarray(page.embedding, dtype=np.float32))
            documents.append(doc), metadatas.append(meta)
        if head is not None:
            doc, meta = self._head_record(head)
            (
                ids.append(f"chain:{head.user_id}"),
                embeddings.append(np.asarray(head.embedding, dtype=np.float32)),
            )
            documents.append(doc), metadatas.append(meta)
        if ids:
            self._write(
                self.mtm.upsert,
                ids,
                embeddings=np.asarray(embeddings),
                documents=documents,
                metadatas=metadatas,
            )
        self.put_segments(changed_segments, new=False)

    def _stored_visits(self, user_id: str, segment_ids: Sequence[str]) -> dict[str, tuple[int, float]]:
        """(N_visit, last access) of these segments in the visits collection, where it holds them."""
        return {
            sid: (int(meta["n_visit"]), float(meta["last_access"]))
            for sid, _, meta, _ in self._get_ids(self.visits, segment_ids, {"metadatas"})
            if meta.get("user_id") == user_id
        }

    def record_visits(
        self, user_id: str, segment_ids: Sequence[str], now: float
    ) -> dict[str, tuple[int, float]]:
        # Visits are written to a collection of their own. Chroma saves a collection's vector index every
        # SMALL_SYNC writes, and at 100k pages the mid-term one takes 30-50 ms to save: written there, one
        # retrieval in ~30 paid for it. A segment's count stays in its record until its first visit here,
        # and readers take the larger of the two (list_segments).
        # Incremented from the stored value, not from a cached one: another replica may have visited too.
        ids = list(dict.fromkeys(segment_ids))
        seen = self._stored_visits(user_id, ids)
        first: dict[str, tuple[int, float]] = {}
        unseen = [sid for sid in ids if sid not in seen]
        for sid, _, meta, _ in self._get_ids(self.mtm, unseen, {"metadatas"}) if unseen else []:
            if meta.get("user_id") == user_id and meta.get("kind") == "segment":
                first[sid] = (int(meta["n_visit"]), float(meta["last_access"]))
        written = {
            sid: (n_visit + 1, max(last_access, now))
            for sid, (n_visit, last_access) in (seen | first).items()
        }
        for chosen in (seen, first):
            ids = [sid for sid in written if sid in chosen]
            if not ids:
                continue
            metadatas = [
                {"user_id": user_id, "n_visit": written[i][0], "last_access": written[i][1]} for i in ids
            ]
            if chosen is seen:  # update(): a record that a concurrent forget just deleted stays deleted
                self._write(self.visits.update, ids, metadatas=metadatas)
            else:  # Chroma stores a vector with every record; nothing reads this one
                self._write(
                    self.visits.upsert,
                    ids,
                    metadatas=metadatas,
                    embeddings=np.ones((len(ids), 1), np.float32),
                )
        return written

    def get_chain_head(self, user_id: str) -> ChainHead | None:
        for _, doc, meta, embedding in self._get_ids(
            self.mtm, [f"chain:{user_id}"], {"documents", "metadatas", "embeddings"}
        ):
            if meta.get("user_id") == user_id:
                body = json.loads(doc or "{}")
                return ChainHead(user_id=user_id, embedding=embedding, **body)  # type: ignore[arg-type]
        return None

    @staticmethod
    def _head_record(head: ChainHead) -> tuple[str, dict[str, Any]]:
        body = {
            "chain_id": head.chain_id,
            "chain_summary": head.chain_summary,
            "last_page_id": head.last_page_id,
            "last_page_text": head.last_page_text,
        }
        return json.dumps(body, ensure_ascii=False), {"kind": "chain_head", "user_id": head.user_id}

    def put_chain_head(self, head: ChainHead) -> None:
        doc, meta = self._head_record(head)
        self.mtm.upsert(
            ids=[f"chain:{head.user_id}"],
            embeddings=np.asarray([head.embedding], dtype=np.float32),
            documents=[doc],
            metadatas=[meta],
        )
