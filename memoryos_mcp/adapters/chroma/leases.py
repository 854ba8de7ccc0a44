"""Per-user write leases in the meta collection: one writer at a time across processes."""

from __future__ import annotations

import logging
import time

import numpy as np

from memoryos_mcp.adapters.chroma.base import ChromaBase

logger = logging.getLogger(__name__)


class Leases(ChromaBase):
    """Part of ChromaStore: per-user write leases in the meta collection: one writer at a time across processes."""

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
