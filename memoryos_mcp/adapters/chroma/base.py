"""What every part of the Chroma store shares: the collections and reads and writes split under the batch
limit (see adapters/chroma_store.py for how reads are made fast)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from memoryos_mcp.adapters.dir_lock import lock_data_dir

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: selective keys on segments and facts, the meta collection
LOG_KEEP = 512  # change-log entries kept per user; a reader further behind reloads the user
SEGMENT_CHUNK = 100  # segment ids per `$in` filter
SMALL_SYNC = 100  # vector-index sync interval of every collection (see ChromaStore._sync_often)
PAGE_COLUMNS = {"documents", "metadatas", "embeddings"}
WAITING_KEY = "sentences_wait_of"  # carried by a page stored without its sentence vectors, = its user_id


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


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rows_of(got: Any) -> list[tuple[str, str | None, dict[str, Any], np.ndarray | None]]:
    """(id, document, metadata, embedding) of each record a get returned."""
    ids = got["ids"]
    docs = got.get("documents") or [None] * len(ids)
    metas = got.get("metadatas") or [{}] * len(ids)
    raw = got.get("embeddings")
    embeddings = [None] * len(ids) if raw is None else [np.asarray(v, dtype=np.float32) for v in raw]
    return [(i, d, m or {}, e) for i, d, m, e in zip(ids, docs, metas, embeddings, strict=True)]


def is_embedded(client: ClientAPI) -> bool:
    """True for a PersistentClient/EphemeralClient (in-process Chroma), False for an HttpClient."""
    from chromadb.api.rust import RustBindingsAPI

    server = getattr(client, "_server", None)
    return isinstance(server, RustBindingsAPI)


class ChromaBase:
    """The collections of one store (a prefix in a Chroma client) and the batched primitives."""

    def __init__(self, client: ClientAPI, prefix: str = "memoryos") -> None:
        self.client = client
        self.prefix = prefix
        self.stm, self.lpm, self.meta, self.mtm, self.visits = (
            self._collection(name) for name in ("short_term", "long_term", "meta", "mid_term", "visits")
        )
        for collection in (self.stm, self.lpm, self.meta, self.mtm, self.visits):
            self._sync_often(collection)
        self.batch = max(1, int(client.get_max_batch_size()))
        self._shared = not is_embedded(client)
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
            if int(hnsw.get("sync_threshold", 0)) > SMALL_SYNC:  # a collection made before this setting
                with (
                    warnings.catch_warnings()
                ):  # Chroma warns that embedding_function=None is a "legacy" config
                    warnings.simplefilter("ignore", DeprecationWarning)
                    collection.modify(
                        configuration={"hnsw": {"sync_threshold": SMALL_SYNC, "batch_size": SMALL_SYNC}}
                    )
        except Exception as exc:  # a server or version that cannot change it: only slower writes
            logger.debug("could not lower sync_threshold of %s: %s", collection.name, exc)

    def _collection(self, tier: str) -> Collection:
        # embedding_function=None: Chroma's default one downloads a model; we always pass vectors.
        # Nothing searches Chroma's vector index (retrieval scores pages in its own index), so it is built
        # cheaply: half the write cost of the defaults (ef_construction 100, 16 neighbours). Collections
        # created before keep their settings.
        hnsw: dict[str, Any] = {"space": "cosine", "ef_construction": 16, "max_neighbors": 4}
        hnsw.update(sync_threshold=SMALL_SYNC, batch_size=SMALL_SYNC)
        return self.client.get_or_create_collection(
            f"{self.prefix}_{tier}",
            configuration={"hnsw": hnsw},
            embedding_function=None,  # type: ignore[typeddict-item]
        )

    def _get_ids(
        self, collection: Collection, ids: Sequence[str], include: set[str]
    ) -> list[tuple[str, str | None, dict[str, Any], np.ndarray | None]]:
        rows = []
        for chunk in chunks(list(dict.fromkeys(ids)), self.batch):
            rows.extend(rows_of(collection.get(ids=list(chunk), include=sorted(include))))  # type: ignore[arg-type]
        return rows

    def _get_where(
        self, collection: Collection, where: dict[str, Any], include: set[str]
    ) -> list[tuple[str, str | None, dict[str, Any], np.ndarray | None]]:
        """All records matching a (selective) filter, read in pages under the batch limit."""
        rows: list[tuple[str, str | None, dict[str, Any], np.ndarray | None]] = []
        while True:
            got = collection.get(where=where, limit=self.batch, offset=len(rows), include=sorted(include))  # type: ignore[arg-type]
            page = rows_of(got)
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
        for chunk in chunks(owned, self.batch):
            collection.delete(ids=list(chunk))
