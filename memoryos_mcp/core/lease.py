"""The write lease of a user: one writer at a time across processes that share a store (a Chroma server).

A write takes the user's lease in the store, renews it while it runs (an import chunk with an LLM can outlast
its ttl) and gives it back; a write that lost it (another process took it after it expired) must not commit:
`lost()` says so. On a store no other process writes, the lease is a no-op. Export/import, forget and the
sentence backfill take it as adds do.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from memoryos_mcp.core.errors import StorageError
from memoryos_mcp.core.protocols import MemoryStore
from memoryos_mcp.core.state import UserState

logger = logging.getLogger(__name__)


class WriteLeases:
    """The write leases this process takes, as `owner` (one per process)."""

    def __init__(
        self,
        store: MemoryStore,
        fresh: Callable[[str], UserState],
        owner: str,
        ttl_s: float = 60.0,
        wait_s: float = 75.0,
    ) -> None:
        self.store = store
        self.fresh = fresh  # the user's current state (read once the lease is held)
        self.owner = owner
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self._lost: dict[str, bool] = {}

    def lost(self, user_id: str) -> bool:
        """Whether the lease of the write under way for this user was lost: its commit must be refused."""
        return self._lost.get(user_id, False)

    def check(self, user_id: str, doing: str) -> None:
        """StorageError when the lease was lost while `doing` (said in the message)."""
        if self.lost(user_id):
            raise StorageError(f"lost the write lease of user {user_id!r} while {doing}; try again")

    @contextmanager
    def writing(self, user_id: str) -> Iterator[UserState]:
        """The user's fresh state, under the user's write lease when other processes share the store."""
        if not self.store.shared:
            yield self.fresh(user_id)
            return
        give_up = time.monotonic() + self.wait_s
        while not self.store.acquire_lease(user_id, self.owner, self.ttl_s):
            if time.monotonic() > give_up:
                raise StorageError(
                    f"another server process has been writing the memory of user {user_id!r} for over "
                    f"{self.wait_s:.0f} s; try again shortly"
                )
            time.sleep(0.02 + random.random() * 0.05)
        done = threading.Event()
        self._lost[user_id] = False

        def heartbeat() -> None:
            while not done.wait(self.ttl_s / 3):
                try:
                    if not self.store.renew_lease(user_id, self.owner, self.ttl_s):
                        logger.warning("lost the write lease of %s while writing", user_id)
                        self._lost[user_id] = True  # the commit is refused
                        return
                except Exception as exc:  # the write itself reports store failures
                    logger.warning("could not renew the write lease of %s: %s", user_id, exc)

        beat = threading.Thread(target=heartbeat, name=f"lease-{user_id}", daemon=True)
        beat.start()
        try:
            yield self.fresh(user_id)
        finally:
            done.set()
            beat.join()
            try:
                self.store.release_lease(user_id, self.owner)
            except Exception as exc:  # the write itself is done; the lease expires on its own
                logger.warning("could not release the write lease of %s: %s", user_id, exc)
