"""MemoryStore on Chroma: one collection per tier, user_id on every record and in every filter."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from memoryos_mcp.core.models import Fact, FactKind, Page, Segment, TraitLevel, UserProfile, Vector
from memoryos_mcp.core.protocols import ChainHead
from memoryos_mcp.errors import StorageError

logger = logging.getLogger(__name__)

# Directories this process holds the writer lock of (path -> open lock file descriptor).
_held_locks: dict[str, int] = {}
_held_locks_guard = threading.Lock()


def lock_data_dir(data_dir: Path) -> None:
    """Hold an exclusive lock on data_dir for the life of this process.

    Embedded Chroma allows one writer process per directory; two (say Claude Desktop and Cursor both
    launching the server on ~/.memoryos) can corrupt it. The second one fails here with a way out instead.
    """
    import fcntl

    key = str(data_dir.resolve())
    with _held_locks_guard:
        if key in _held_locks:
            return
        fd = os.open(os.path.join(key, ".memoryos.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageError(
                f"another process is using the memory directory {data_dir}: embedded Chroma allows one process "
                "per directory. Give this server its own MEMORYOS_DATA_DIR, or share one memory between "
                "processes through a Chroma server (MEMORYOS_CHROMA_HOST)."
            ) from None
        _held_locks[key] = fd

TIERS = ("short_term", "mid_term", "long_term")


def make_client(*, data_dir: Path | None = None, host: str | None = None, port: int = 8000, ssl: bool = False) -> ClientAPI:
    """Embedded PersistentClient under data_dir, or HttpClient when a Chroma server host is given."""
    settings = chromadb.Settings(anonymized_telemetry=False)
    if host:
        return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
    if data_dir is None:
        raise ValueError("data_dir is required for the embedded Chroma client")
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_data_dir(data_dir)
    return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)


def _vectors(raw: Any) -> list[Vector | None]:
    if raw is None:
        return []
    return [None if v is None else [float(x) for x in v] for v in raw]


class ChromaStore:
    """Implements core.protocols.MemoryStore."""

    def __init__(self, client: ClientAPI, prefix: str = "memoryos") -> None:
        self.client = client
        self.prefix = prefix
        self.stm, self.mtm, self.lpm = (self._collection(tier) for tier in TIERS)

    def _collection(self, tier: str) -> Collection:
        # embedding_function=None: Chroma's default one downloads a model; we always pass vectors.
        return self.client.get_or_create_collection(
            f"{self.prefix}_{tier}",
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )

    # ------------------------------------------------------------------ pages

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
        return document, meta

    @staticmethod
    def _page(page_id: str, document: str, meta: dict[str, Any], embedding: Vector | None) -> Page:
        body = json.loads(document)
        return Page(
            id=page_id,
            user_id=str(meta["user_id"]),
            user_input=body["user_input"],
            agent_response=body["agent_response"],
            timestamp=str(meta["timestamp"]),
            added_at=int(meta["added_at"]),
            metadata=body.get("metadata") or {},
            chain_id=str(meta.get("chain_id", "")),
            chain_summary=body.get("chain_summary", ""),
            segment_id=str(meta.get("segment_id", "")),
            analyzed=bool(meta.get("analyzed", False)),
            embedding=embedding,
        )

    def _upsert_pages(self, collection: Collection, pages: Sequence[Page]) -> None:
        if not pages:
            return
        records = [self._page_record(p) for p in pages]
        collection.upsert(
            ids=[p.id for p in pages],
            embeddings=[p.embedding for p in pages],  # type: ignore[misc]
            documents=[doc for doc, _ in records],
            metadatas=[meta for _, meta in records],
        )

    def _pages_from_get(self, got: Any) -> list[Page]:
        embeddings = _vectors(got.get("embeddings"))
        return [
            self._page(pid, doc, meta, embeddings[i] if embeddings else None)
            for i, (pid, doc, meta) in enumerate(zip(got["ids"], got["documents"], got["metadatas"], strict=True))
        ]

    def add_stm_page(self, page: Page) -> None:
        self._upsert_pages(self.stm, [page])

    def list_stm_pages(self, user_id: str) -> list[Page]:
        got = self.stm.get(where={"user_id": user_id}, include=["documents", "metadatas", "embeddings"])
        return self._pages_from_get(got)

    def delete_stm_pages(self, user_id: str, page_ids: Sequence[str]) -> None:
        if page_ids:
            self.stm.delete(ids=list(page_ids), where={"user_id": user_id})

    def existing_mtm_page_ids(self, user_id: str, page_ids: Sequence[str]) -> set[str]:
        if not page_ids:
            return set()
        got = self.mtm.get(ids=list(page_ids), where={"user_id": user_id}, include=[])
        return set(got["ids"])

    def upsert_mtm_pages(self, pages: Sequence[Page]) -> None:
        self._upsert_pages(self.mtm, pages)

    def get_mtm_pages(self, user_id: str, segment_ids: Sequence[str], *, analyzed: bool | None = None) -> list[Page]:
        if not segment_ids:
            return []
        clauses: list[dict[str, Any]] = [
            {"user_id": user_id},
            {"kind": "page"},
            {"segment_id": {"$in": list(segment_ids)}},
        ]
        if analyzed is not None:
            clauses.append({"analyzed": analyzed})
        got = self.mtm.get(where={"$and": clauses}, include=["documents", "metadatas", "embeddings"])
        return sorted(self._pages_from_get(got), key=lambda p: p.added_at)

    def mtm_page_ids(self, user_id: str) -> list[str]:
        got = self.mtm.get(where={"$and": [{"user_id": user_id}, {"kind": "page"}]}, include=[])
        return list(got["ids"])

    def get_mtm_pages_by_id(self, user_id: str, page_ids: Sequence[str]) -> list[Page]:
        if not page_ids:
            return []
        got = self.mtm.get(
            ids=list(page_ids),
            where={"$and": [{"user_id": user_id}, {"kind": "page"}]},
            include=["documents", "metadatas", "embeddings"],
        )
        return self._pages_from_get(got)

    def all_mtm_pages(self, user_id: str) -> list[Page]:
        got = self.mtm.get(
            where={"$and": [{"user_id": user_id}, {"kind": "page"}]}, include=["documents", "metadatas"]
        )
        return sorted(self._pages_from_get(got), key=lambda p: p.added_at)

    # ------------------------------------------------------------------ segments

    def list_segments(self, user_id: str, *, include_archived: bool = False) -> list[Segment]:
        clauses: list[dict[str, Any]] = [{"user_id": user_id}, {"kind": "segment"}]
        if not include_archived:
            clauses.append({"archived": False})
        got = self.mtm.get(where={"$and": clauses}, include=["documents", "metadatas", "embeddings"])
        embeddings = _vectors(got.get("embeddings"))
        segments = []
        for i, (sid, doc, meta) in enumerate(zip(got["ids"], got["documents"], got["metadatas"], strict=True)):
            body = json.loads(doc)
            segments.append(
                Segment(
                    id=sid,
                    user_id=str(meta["user_id"]),
                    summary=body["summary"],
                    keyword_counts={str(k): int(v) for k, v in body["keyword_counts"].items()},
                    created_at=float(meta["created_at"]),
                    last_access=float(meta["last_access"]),
                    n_visit=int(meta["n_visit"]),
                    l_interaction=int(meta["l_interaction"]),
                    page_count=int(meta["page_count"]),
                    archived=bool(meta["archived"]),
                    embedding=embeddings[i],
                )
            )
        return sorted(segments, key=lambda s: s.created_at)

    @staticmethod
    def _segment_record(s: Segment, *, with_visits: bool) -> tuple[str, dict[str, Any]]:
        document = json.dumps({"summary": s.summary, "keyword_counts": s.keyword_counts}, ensure_ascii=False)
        meta: dict[str, Any] = {
            "kind": "segment",
            "user_id": s.user_id,
            "created_at": s.created_at,
            "l_interaction": s.l_interaction,
            "page_count": s.page_count,
            "archived": s.archived,
        }
        if with_visits:
            meta.update(n_visit=s.n_visit, last_access=s.last_access)
        return document, meta

    def upsert_segments(self, segments: Sequence[Segment]) -> None:
        self._write_segments(self.mtm.upsert, segments, with_visits=True)

    def update_segments(self, segments: Sequence[Segment]) -> None:
        # update() merges metadata, so the visit fields that concurrent retrievals write are kept.
        self._write_segments(self.mtm.update, segments, with_visits=False)

    def _write_segments(self, write: Any, segments: Sequence[Segment], *, with_visits: bool) -> None:
        if not segments:
            return
        records = [self._segment_record(s, with_visits=with_visits) for s in segments]
        write(
            ids=[s.id for s in segments],
            embeddings=[s.embedding for s in segments],
            documents=[doc for doc, _ in records],
            metadatas=[meta for _, meta in records],
        )

    def record_visits(self, segments: Sequence[Segment]) -> None:
        if segments:
            # update() merges metadata and leaves the vector alone, so the HNSW index is not touched.
            self.mtm.update(
                ids=[s.id for s in segments],
                metadatas=[{"n_visit": s.n_visit, "last_access": s.last_access} for s in segments],
            )

    # ------------------------------------------------------------------ chain head

    def get_chain_head(self, user_id: str) -> ChainHead | None:
        got = self.mtm.get(ids=[f"chain:{user_id}"], where={"user_id": user_id}, include=["documents", "embeddings"])
        if not got["ids"]:
            return None
        body = json.loads(got["documents"][0])
        return ChainHead(user_id=user_id, embedding=_vectors(got["embeddings"])[0] or [], **body)

    def put_chain_head(self, head: ChainHead) -> None:
        body = {
            "chain_id": head.chain_id,
            "chain_summary": head.chain_summary,
            "last_page_id": head.last_page_id,
            "last_page_text": head.last_page_text,
        }
        self.mtm.upsert(
            ids=[f"chain:{head.user_id}"],
            embeddings=[head.embedding],
            documents=[json.dumps(body, ensure_ascii=False)],
            metadatas=[{"kind": "chain_head", "user_id": head.user_id}],
        )

    # ------------------------------------------------------------------ long-term persona

    def get_profile(self, user_id: str) -> UserProfile | None:
        got = self.lpm.get(ids=[f"profile:{user_id}"], where={"user_id": user_id}, include=["documents"])
        if not got["ids"]:
            return None
        body = json.loads(got["documents"][0])
        return UserProfile(
            user_id=user_id,
            static=body.get("static", {}),
            traits={
                group: {dim: TraitLevel(**t) for dim, t in dims.items()}
                for group, dims in body.get("traits", {}).items()
            },
            updated_at=float(body.get("updated_at", 0.0)),
        )

    def put_profile(self, profile: UserProfile, embedding: Vector) -> None:
        body = {
            "static": profile.static,
            "traits": {
                group: {dim: {"level": t.level, "evidence": t.evidence} for dim, t in dims.items()}
                for group, dims in profile.traits.items()
            },
            "updated_at": profile.updated_at,
        }
        self.lpm.upsert(
            ids=[f"profile:{profile.user_id}"],
            embeddings=[embedding],
            documents=[json.dumps(body, ensure_ascii=False)],
            metadatas=[{"kind": "profile", "user_id": profile.user_id}],
        )

    def _facts_from(self, ids: Sequence[str], docs: Sequence[str], metas: Sequence[Any], embeddings: Sequence[Vector | None]) -> list[Fact]:
        return [
            Fact(
                id=fid,
                user_id=str(meta["user_id"]),
                kind=meta["kind"],
                text=doc,
                created_at=float(meta["created_at"]),
                source_segment=str(meta.get("source_segment", "")),
                embedding=embeddings[i] if embeddings else None,
            )
            for i, (fid, doc, meta) in enumerate(zip(ids, docs, metas, strict=True))
        ]

    def list_facts(self, user_id: str, kind: FactKind) -> list[Fact]:
        got = self.lpm.get(
            where={"$and": [{"user_id": user_id}, {"kind": kind}]}, include=["documents", "metadatas", "embeddings"]
        )
        facts = self._facts_from(got["ids"], got["documents"], got["metadatas"], _vectors(got.get("embeddings")))
        return sorted(facts, key=lambda f: f.created_at)

    def add_facts(self, facts: Sequence[Fact]) -> None:
        if not facts:
            return
        self.lpm.upsert(
            ids=[f.id for f in facts],
            embeddings=[f.embedding for f in facts],  # type: ignore[misc]
            documents=[f.text for f in facts],
            metadatas=[
                {"kind": f.kind, "user_id": f.user_id, "created_at": f.created_at, "source_segment": f.source_segment}
                for f in facts
            ],
        )

    def delete_facts(self, user_id: str, fact_ids: Sequence[str]) -> None:
        if fact_ids:
            self.lpm.delete(ids=list(fact_ids), where={"user_id": user_id})

    def query_facts(self, user_id: str, kind: FactKind, embedding: Vector, n: int) -> list[tuple[Fact, float]]:
        if n <= 0:
            return []
        got = self.lpm.query(
            query_embeddings=[embedding],
            n_results=n,
            where={"$and": [{"user_id": user_id}, {"kind": kind}]},
            include=["documents", "metadatas", "distances"],
        )
        facts = self._facts_from(got["ids"][0], got["documents"][0], got["metadatas"][0], [])
        return [(f, 1.0 - float(d)) for f, d in zip(facts, got["distances"][0], strict=True)]

    # ------------------------------------------------------------------ stats

    def count(self, user_id: str) -> dict[str, int]:
        def n(collection: Collection, where: dict[str, Any]) -> int:
            return len(collection.get(where=where, include=[])["ids"])

        return {
            "short_term_pages": n(self.stm, {"user_id": user_id}),
            "mid_term_pages": n(self.mtm, {"$and": [{"user_id": user_id}, {"kind": "page"}]}),
            "segments": n(self.mtm, {"$and": [{"user_id": user_id}, {"kind": "segment"}, {"archived": False}]}),
            "archived_segments": n(self.mtm, {"$and": [{"user_id": user_id}, {"kind": "segment"}, {"archived": True}]}),
            "user_facts": n(self.lpm, {"$and": [{"user_id": user_id}, {"kind": "user_fact"}]}),
            "assistant_traits": n(self.lpm, {"$and": [{"user_id": user_id}, {"kind": "assistant_trait"}]}),
        }
