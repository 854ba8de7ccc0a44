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

import logging
from collections.abc import Sequence

from memoryos_mcp.adapters.chroma.base import (
    LOG_KEEP,
    SCHEMA_VERSION,
    ChromaBase,
    chunks,
    make_client,
    rows_of,
)
from memoryos_mcp.adapters.chroma.leases import Leases
from memoryos_mcp.adapters.chroma.log import ChangeLog
from memoryos_mcp.adapters.chroma.pages import PageRecords
from memoryos_mcp.adapters.chroma.persona import PersonaRecords
from memoryos_mcp.adapters.chroma.segments import SegmentRecords

logger = logging.getLogger(__name__)

__all__ = ["LOG_KEEP", "SCHEMA_VERSION", "ChromaStore", "make_client"]


class ChromaStore(PageRecords, SegmentRecords, PersonaRecords, ChangeLog, Leases, ChromaBase):
    """Implements core.protocols.MemoryStore: the parts (adapters/chroma/), and forgetting, migration and the
    reads of export/import here."""

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
            for chunk in chunks(ids, self.batch):
                collection.delete(ids=list(chunk))
            removed += len(ids)
        return removed

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

    def user_ids(self) -> list[str]:
        """Every user with memory here: a version record (every committed write leaves one) or short-term
        pages (a first add whose commit did not finish). Bounded reads: the meta and short-term collections
        are small, and both are read in pages under the batch limit."""
        users = {
            str(m["user_id"]) for _, _, m, _ in self._get_where(self.meta, {"kind": "version"}, {"metadatas"})
        }
        offset = 0
        while True:
            rows = rows_of(self.stm.get(limit=self.batch, offset=offset, include=["metadatas"]))
            users.update(str(m["user_id"]) for _, _, m, _ in rows if m.get("user_id"))
            offset += len(rows)
            if len(rows) < self.batch:
                return sorted(users)

    def record_owners(self, ids: Sequence[str]) -> dict[str, str]:
        """Which user holds each of these record ids in any tier (ids nobody holds are absent)."""
        owners: dict[str, str] = {}
        for collection in (self.stm, self.mtm, self.lpm):
            for rid, _, meta, _ in self._get_ids(collection, ids, {"metadatas"}):
                owners.setdefault(rid, str(meta.get("user_id", "")))
        return owners
