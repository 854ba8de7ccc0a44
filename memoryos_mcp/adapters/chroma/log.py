"""Each user's change log and version: what keeps every process's cached state current."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from memoryos_mcp.adapters.chroma.base import LOG_KEEP, ChromaBase
from memoryos_mcp.core.errors import StorageError
from memoryos_mcp.core.protocols import Change, Version

logger = logging.getLogger(__name__)


class ChangeLog(ChromaBase):
    """Part of ChromaStore: each user's change log and version: what keeps every process's cached state current."""

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
