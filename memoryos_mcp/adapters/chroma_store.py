"""MemoryStore on Chroma: one collection per tier, `<prefix>_visits` for segments' visit counts and
`<prefix>_meta` for the change log, versions and leases.

Every record carries user_id; every read returns only the asked user's records. How reads are made
matters at scale (measured at 100k records, embedded Chroma 1.5): `get` by ids alone takes ~1 ms, but a
`where` that names a common key (user_id, kind) costs 50-150 ms whatever else it names, and ids together
with a `where` are pathologically slow. So reads go by id, or by one selective key that only the wanted
records carry (`segment_id`, `active_of`, `segment_of`, `owner_kind`, `sentences_wait_of`), and ownership is
checked on the records that come back. Reads and writes are split under the client's max batch size.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from memoryos_mcp.adapters.dir_lock import lock_data_dir
from memoryos_mcp.core.errors import StorageError
from memoryos_mcp.core.models import (
    Fact,
    FactKind,
    Page,
    Segment,
    SentenceVectors,
    TraitLevel,
    UserProfile,
    Vector,
)
from memoryos_mcp.core.protocols import ChainHead, Change, Version

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: selective keys on segments and facts, the meta collection
LOG_KEEP = 512  # change-log entries kept per user; a reader further behind reloads the user
_SEGMENT_CHUNK = 100  # segment ids per `$in` filter
_SMALL_SYNC = 100  # vector-index sync interval of every collection (see ChromaStore._sync_often)
_PAGE = {"documents", "metadatas", "embeddings"}
_WAITING = "sentences_wait_of"  # carried by a page stored without its sentence vectors, = its user_id


def make_client(
    *, data_dir: Path | None = None, host: str | None = None, port: int = 8000, ssl: bool = False
) -> ClientAPI:
    """Embedded PersistentClient under data_dir, or HttpClient when a Chroma server host is given."""
    settings = chromadb.Settings(anonymized_telemetry=False)
    if host:
        return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
    if data_dir is None:
        raise ValueError("data_dir is required for the embedded Chroma client")
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_data_dir(data_dir)
    return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rows(got: Any) -> list[tuple[str, str | None, dict[str, Any], np.ndarray | None]]:
    """(id, document, metadata, embedding) of each record a get returned."""
    ids = got["ids"]
    docs = got.get("documents") or [None] * len(ids)
    metas = got.get("metadatas") or [{}] * len(ids)
    raw = got.get("embeddings")
    embeddings = [None] * len(ids) if raw is None else [np.asarray(v, dtype=np.float32) for v in raw]
    return [(i, d, m or {}, e) for i, d, m, e in zip(ids, docs, metas, embeddings, strict=True)]


class ChromaStore:
    """Implements core.protocols.MemoryStore."""

    def __init__(self, client: ClientAPI, prefix: str = "memoryos") -> None:
        self.client = client
        self.prefix = prefix
        self.stm, self.lpm, self.meta, self.mtm, self.visits = (
            self._collection(name) for name in ("short_term", "long_term", "meta", "mid_term", "visits")
        )
        for collection in (self.stm, self.lpm, self.meta, self.mtm, self.visits):
            self._sync_often(collection)
        self.batch = max(1, int(client.get_max_batch_size()))
        self._shared = not _is_embedded(client)
        self._migrate()

    @property
    def shared(self) -> bool:
        return self._shared

    @staticmethod
    def _sync_often(collection: Collection) -> None:
        """Embedded Chroma keeps every write in a queue until the vector index syncs (every 1,000 writes by
        default), and each write gets slower as the queue grows: a version record took 40 ms to write
        instead of 5 in a store with 100k pages, and a visit update of a segment 30 ms instead of 8 in the
        mid-term collection. Syncing every 100 writes costs nothing measurable (import throughput the same)."""
        try:
            hnsw = (collection.configuration_json or {}).get("hnsw") or {}  # .configuration warns about EFs
            if int(hnsw.get("sync_threshold", 0)) > _SMALL_SYNC:  # a collection made before this setting
                with (
                    warnings.catch_warnings()
                ):  # Chroma warns that embedding_function=None is a "legacy" config
                    warnings.simplefilter("ignore", DeprecationWarning)
                    collection.modify(
                        configuration={"hnsw": {"sync_threshold": _SMALL_SYNC, "batch_size": _SMALL_SYNC}}
                    )
        except Exception as exc:  # a server or version that cannot change it: only slower writes
            logger.debug("could not lower sync_threshold of %s: %s", collection.name, exc)

    def _collection(self, tier: str) -> Collection:
        # embedding_function=None: Chroma's default one downloads a model; we always pass vectors.
        # Nothing searches Chroma's vector index (retrieval scores pages in its own index), so it is built
        # cheaply: half the write cost of the defaults (ef_construction 100, 16 neighbours). Collections
        # created before keep their settings.
        hnsw: dict[str, Any] = {"space": "cosine", "ef_construction": 16, "max_neighbors": 4}
        hnsw.update(sync_threshold=_SMALL_SYNC, batch_size=_SMALL_SYNC)
        return self.client.get_or_create_collection(
            f"{self.prefix}_{tier}",
            configuration={"hnsw": hnsw},
            embedding_function=None,  # type: ignore[typeddict-item]
        )

    # ------------------------------------------------------------------ batched primitives

    def _get_ids(
        self, collection: Collection, ids: Sequence[str], include: set[str]
    ) -> list[tuple[str, str | None, dict[str, Any], np.ndarray | None]]:
        rows = []
        for chunk in _chunks(list(dict.fromkeys(ids)), self.batch):
            rows.extend(_rows(collection.get(ids=list(chunk), include=sorted(include))))  # type: ignore[arg-type]
        return rows

    def _get_where(
        self, collection: Collection, where: dict[str, Any], include: set[str]
    ) -> list[tuple[str, str | None, dict[str, Any], np.ndarray | None]]:
        """All records matching a (selective) filter, read in pages under the batch limit."""
        rows: list[tuple[str, str | None, dict[str, Any], np.ndarray | None]] = []
        while True:
            got = collection.get(where=where, limit=self.batch, offset=len(rows), include=sorted(include))  # type: ignore[arg-type]
            page = _rows(got)
            rows.extend(page)
            if len(page) < self.batch:
                return rows

    def _write(self, method: Any, ids: Sequence[str], **columns: Sequence[Any]) -> None:
        for start in range(0, len(ids), self.batch):
            end = start + self.batch
            method(ids=list(ids[start:end]), **{k: list(v[start:end]) for k, v in columns.items()})

    def _delete_owned(self, collection: Collection, user_id: str, ids: Sequence[str]) -> None:
        owned = [
            i
            for i, _, meta, _ in self._get_ids(collection, ids, {"metadatas"})
            if meta.get("user_id") == user_id
        ]
        for chunk in _chunks(owned, self.batch):
            collection.delete(ids=list(chunk))

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
        if page.sentences is not None:  # ~3 KB a page of base64; read back with the page, written with it
            meta["sentences"] = page.sentences.to_text()
        else:  # stored before its sentences were embedded: the backfill finds it by this (selective) key
            meta[_WAITING] = page.user_id
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
        return self._pages(self._get_where(self.stm, {"user_id": user_id}, _PAGE), user_id)

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
        return self._pages(self._get_ids(self.mtm, page_ids, _PAGE), user_id) if page_ids else []

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
            metadatas=[{"sentences": p.sentences.to_text(), _WAITING: None} for p in chosen],  # type: ignore[union-attr]
        )

    def waiting_for_sentences(self, user_id: str, limit: int) -> list[Page]:
        pages: list[Page] = []
        for collection in (self.stm, self.mtm):
            if len(pages) < limit:
                got = collection.get(
                    where={_WAITING: user_id}, limit=limit - len(pages), include=sorted(_PAGE)
                )  # type: ignore[arg-type]
                pages.extend(self._pages(_rows(got), user_id))
        return pages

    def count_waiting_for_sentences(self, user_id: str) -> int:
        return sum(len(c.get(where={_WAITING: user_id}, include=[])["ids"]) for c in (self.stm, self.mtm))

    def pages_of_segments(self, user_id: str, segment_ids: Sequence[str]) -> list[Page]:
        rows = []
        for chunk in _chunks(list(dict.fromkeys(segment_ids)), _SEGMENT_CHUNK):
            rows.extend(self._get_where(self.mtm, {"segment_id": {"$in": list(chunk)}}, _PAGE))
        return self._pages(rows, user_id)

    # ------------------------------------------------------------------ segments

    def list_segments(self, user_id: str, *, include_archived: bool = False) -> list[Segment]:
        where = {"segment_of": user_id} if include_archived else {"active_of": user_id}
        segments = []
        for sid, doc, meta, embedding in self._get_where(self.mtm, where, _PAGE):
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
        # _SMALL_SYNC writes, and at 100k pages the mid-term one takes 30-50 ms to save: written there, one
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

    # ------------------------------------------------------------------ chain head

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

    # ------------------------------------------------------------------ long-term persona

    def get_profile(self, user_id: str) -> UserProfile | None:
        for _, doc, meta, _ in self._get_ids(self.lpm, [f"profile:{user_id}"], {"documents", "metadatas"}):
            if meta.get("user_id") != user_id:
                continue
            body = json.loads(doc or "{}")
            return UserProfile(
                user_id=user_id,
                static=body.get("static", {}),
                traits={
                    group: {dim: TraitLevel(**t) for dim, t in dims.items()}
                    for group, dims in body.get("traits", {}).items()
                },
                updated_at=float(body.get("updated_at", 0.0)),
            )
        return None

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
            embeddings=np.asarray([embedding], dtype=np.float32),
            documents=[json.dumps(body, ensure_ascii=False)],
            metadatas=[{"kind": "profile", "user_id": profile.user_id}],
        )

    def list_facts(self, user_id: str, kind: FactKind) -> list[Fact]:
        facts = [
            Fact(
                id=fid,
                user_id=user_id,
                kind=kind,
                text=doc or "",
                created_at=float(meta["created_at"]),
                source_segment=str(meta.get("source_segment", "")),
                source_pages=json.loads(str(meta.get("source_pages") or "[]")),
                embedding=embedding,
            )
            for fid, doc, meta, embedding in self._get_where(
                self.lpm, {"owner_kind": f"{user_id}|{kind}"}, _PAGE
            )
            if meta.get("user_id") == user_id and meta.get("kind") == kind
        ]
        return sorted(facts, key=lambda f: (f.created_at, f.id))

    def add_facts(self, facts: Sequence[Fact]) -> None:
        if not facts:
            return
        self._write(
            self.lpm.upsert,
            [f.id for f in facts],
            embeddings=np.asarray([np.asarray(f.embedding, dtype=np.float32) for f in facts]),
            documents=[f.text for f in facts],
            metadatas=[
                {
                    "kind": f.kind,
                    "user_id": f.user_id,
                    "owner_kind": f"{f.user_id}|{f.kind}",
                    "created_at": f.created_at,
                    "source_segment": f.source_segment,
                    "source_pages": json.dumps(f.source_pages),  # Chroma metadata holds scalars only
                }
                for f in facts
            ],
        )

    def delete_facts(self, user_id: str, fact_ids: Sequence[str]) -> None:
        if fact_ids:
            self._delete_owned(self.lpm, user_id, fact_ids)

    # ------------------------------------------------------------------ change log, versions, leases

    def _meta_put(self, records: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        self.meta.upsert(
            ids=[r[0] for r in records],
            embeddings=np.ones(
                (len(records), 1), dtype=np.float32
            ),  # the meta records are looked up by id only
            documents=[r[1] for r in records],
            metadatas=[r[2] for r in records],
        )

    def read_version(self, user_id: str) -> Version:
        for _, _, meta, _ in self._get_ids(self.meta, [f"version:{user_id}"], {"metadatas"}):
            if meta.get("user_id") == user_id:
                mtm, archived = meta.get("mid_term_pages"), meta.get("archived_segments")
                return Version(
                    seq=int(meta["seq"]),
                    mid_term_pages=None if mtm is None else int(mtm),
                    archived_segments=None if archived is None else int(archived),
                    epoch=str(meta.get("epoch", "")),
                )
        return Version(seq=0)

    def read_changes(self, user_id: str, after: int, upto: int) -> list[Change] | None:
        wanted = [f"log:{user_id}:{seq}" for seq in range(after + 1, upto + 1)]
        rows = {i: (d, m) for i, d, m, _ in self._get_ids(self.meta, wanted, {"documents", "metadatas"})}
        changes = []
        for entry_id in wanted:
            doc, meta = rows.get(entry_id, (None, {}))
            if doc is None or meta.get("user_id") != user_id:
                return None
            body = json.loads(doc)
            changes.append(Change(**body))
        return changes

    def append_change(self, user_id: str, change: Change, writer: str = "") -> int:
        if not self.shared:
            # One process writes an embedded store (the data-dir lock): the entry and the version go in one
            # upsert, so a reader never sees a version whose entry is missing and no entry is left orphaned.
            self._meta_put([self._log_record(user_id, change, writer), self._version_record(user_id, change)])
        else:
            self._append_shared(user_id, change, writer)
        if change.seq % 64 == 0 and change.seq > LOG_KEEP:
            old = range(max(1, change.seq - LOG_KEEP - 64), change.seq - LOG_KEEP)
            try:
                self.meta.delete(ids=[f"log:{user_id}:{seq}" for seq in old])
            except Exception as exc:  # the write is done; old entries go with a later trim
                logger.warning("could not trim the change log of %s: %s", user_id, exc)
        return change.seq

    @staticmethod
    def _log_record(user_id: str, change: Change, writer: str) -> tuple[str, str, dict[str, Any]]:
        body = json.dumps(change.__dict__, ensure_ascii=False)
        return (
            f"log:{user_id}:{change.seq}",
            body,
            {"kind": "log", "user_id": user_id, "seq": change.seq, "writer": writer},
        )

    @staticmethod
    def _version_record(user_id: str, change: Change) -> tuple[str, str, dict[str, Any]]:
        version = {
            "kind": "version",
            "user_id": user_id,
            "seq": change.seq,
            "mid_term_pages": change.mid_term_pages,
            "archived_segments": change.archived_segments,
            "epoch": change.epoch,
        }
        return f"version:{user_id}", "", version

    def _append_shared(self, user_id: str, change: Change, writer: str) -> None:
        # Several processes: add() of an existing id is a no-op, so the entry is a compare-and-set. A seq can
        # be taken already when a writer crashed between its entry and its version, or when a lease was taken
        # over from a writer that was only slow: this entry then goes to the next free seq (replaying both is
        # right: each entry names what its writer put in the store).
        for _ in range(64):
            entry_id, body, entry = self._log_record(user_id, change, writer)
            self.meta.add(
                ids=[entry_id],
                embeddings=np.ones((1, 1), dtype=np.float32),
                documents=[body],
                metadatas=[entry],
            )
            stored = self._get_ids(self.meta, [entry_id], {"documents", "metadatas"})
            if stored and stored[0][2].get("writer") == writer and stored[0][1] == body:
                break
            logger.warning(
                "change %d of user %s was written by another process; using the next one", change.seq, user_id
            )
            change.seq += 1
        else:
            raise StorageError(
                f"could not append to the change log of user {user_id!r}: 64 entries in a row taken"
            )
        self._meta_put([self._version_record(user_id, change)])

    def count_mid_term(self, user_id: str) -> tuple[int, int]:
        pages = sum(
            1
            for _, _, meta, _ in self._get_where(self.mtm, {"user_id": user_id}, {"metadatas"})
            if meta.get("kind") == "page"
        )
        archived = sum(1 for s in self.list_segments(user_id, include_archived=True) if s.archived)
        return pages, archived

    def acquire_lease(self, user_id: str, owner: str, ttl_s: float) -> bool:
        lease_id = f"lease:{user_id}"
        now = time.time()
        # add() of an existing id is a no-op: exactly one of several racing writers creates the record.
        self.meta.add(
            ids=[lease_id],
            embeddings=np.ones((1, 1), dtype=np.float32),
            documents=[""],
            metadatas=[{"kind": "lease", "user_id": user_id, "owner": owner, "expires": now + ttl_s}],
        )
        for _, _, meta, _ in self._get_ids(self.meta, [lease_id], {"metadatas"}):
            if meta.get("owner") == owner:
                return True
            if float(meta.get("expires", 0)) < now:  # its holder died: clear it; the next try may take it
                # Read again just before deleting: the holder may have renewed it, or another waiter replaced
                # it, meanwhile (Chroma has no conditional delete; this leaves a window of a few ms).
                again = self._get_ids(self.meta, [lease_id], {"metadatas"})
                if (
                    again
                    and again[0][2].get("owner") == meta.get("owner")
                    and again[0][2].get("expires") == meta.get("expires")
                ):
                    logger.warning(
                        "write lease of %s held by %s expired; taking over", user_id, meta.get("owner")
                    )
                    self.meta.delete(ids=[lease_id])
        return False

    def renew_lease(self, user_id: str, owner: str, ttl_s: float) -> bool:
        for _, _, meta, _ in self._get_ids(self.meta, [f"lease:{user_id}"], {"metadatas"}):
            if meta.get("owner") == owner:
                self.meta.update(ids=[f"lease:{user_id}"], metadatas=[{"expires": time.time() + ttl_s}])
                return True
        return False

    def release_lease(self, user_id: str, owner: str) -> None:
        for _, _, meta, _ in self._get_ids(self.meta, [f"lease:{user_id}"], {"metadatas"}):
            if meta.get("owner") == owner:
                self.meta.delete(ids=[f"lease:{user_id}"])

    # ------------------------------------------------------------------ forgetting

    def delete_mid_term(self, user_id: str, record_ids: Sequence[str]) -> None:
        if record_ids:
            self._delete_owned(self.mtm, user_id, record_ids)
            self._delete_owned(self.visits, user_id, record_ids)

    def delete_chain_head(self, user_id: str) -> None:
        self._delete_owned(self.mtm, user_id, [f"chain:{user_id}"])

    def delete_user(self, user_id: str) -> int:
        removed = 0
        for collection in (self.stm, self.mtm, self.visits, self.lpm, self.meta):
            # A scan by user_id: slow at 100k records (~0.1 s a page of reads) but this runs once per user.
            ids = [
                i
                for i, _, meta, _ in self._get_where(collection, {"user_id": user_id}, {"metadatas"})
                if meta.get("user_id") == user_id
                and meta.get("kind") != "lease"  # the caller's lease goes last
            ]
            for chunk in _chunks(ids, self.batch):
                collection.delete(ids=list(chunk))
            removed += len(ids)
        return removed

    # ------------------------------------------------------------------ schema

    def _migrate(self) -> None:
        """Give records written by schema 1 the selective keys reads use now (once per store)."""
        for _, _, meta, _ in self._get_ids(self.meta, ["schema"], {"metadatas"}):
            if int(meta.get("version", 0)) >= SCHEMA_VERSION:
                return
        segments = self._get_where(self.mtm, {"kind": "segment"}, {"metadatas"})
        if segments:
            logger.info("adding selective keys to %d segments (schema %d)", len(segments), SCHEMA_VERSION)
            self._write(
                self.mtm.update,
                [sid for sid, _, _, _ in segments],
                metadatas=[
                    {"segment_of": m["user_id"], "active_of": "" if m.get("archived") else m["user_id"]}
                    for _, _, m, _ in segments
                ],
            )
        facts = self._get_where(self.lpm, {"kind": {"$in": ["user_fact", "assistant_trait"]}}, {"metadatas"})
        if facts:
            self._write(
                self.lpm.update,
                [fid for fid, _, _, _ in facts],
                metadatas=[{"owner_kind": f"{m['user_id']}|{m['kind']}"} for _, _, m, _ in facts],
            )
        self._meta_put([("schema", "", {"kind": "schema", "version": SCHEMA_VERSION})])

    # ------------------------------------------------------------------ export / import (issue 9)
    # Reads an export needs beyond the ones above; the import restores through the ordinary writes.

    def user_ids(self) -> list[str]:
        """Every user with memory here: a version record (every committed write leaves one) or short-term
        pages (a first add whose commit did not finish). Bounded reads: the meta and short-term collections
        are small, and both are read in pages under the batch limit."""
        users = {
            str(m["user_id"]) for _, _, m, _ in self._get_where(self.meta, {"kind": "version"}, {"metadatas"})
        }
        offset = 0
        while True:
            rows = _rows(self.stm.get(limit=self.batch, offset=offset, include=["metadatas"]))
            users.update(str(m["user_id"]) for _, _, m, _ in rows if m.get("user_id"))
            offset += len(rows)
            if len(rows) < self.batch:
                return sorted(users)

    def profile_embedding(self, user_id: str) -> Vector | None:
        """The stored vector of the user's profile (get_profile returns the profile without it)."""
        for _, _, meta, embedding in self._get_ids(
            self.lpm, [f"profile:{user_id}"], {"metadatas", "embeddings"}
        ):
            if meta.get("user_id") == user_id:
                return embedding
        return None

    def record_owners(self, ids: Sequence[str]) -> dict[str, str]:
        """Which user holds each of these record ids in any tier (ids nobody holds are absent)."""
        owners: dict[str, str] = {}
        for collection in (self.stm, self.mtm, self.lpm):
            for rid, _, meta, _ in self._get_ids(collection, ids, {"metadatas"}):
                owners.setdefault(rid, str(meta.get("user_id", "")))
        return owners


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


def _is_embedded(client: ClientAPI) -> bool:
    """True for a PersistentClient/EphemeralClient (in-process Chroma), False for an HttpClient."""
    from chromadb.api.rust import RustBindingsAPI

    server = getattr(client, "_server", None)
    return isinstance(server, RustBindingsAPI)
