"""When index snapshots are saved and discarded: what lets a user with a large index start in about a second.

A snapshot (IndexSnapshots) is a cache of a user's page index at a change-log position. It is saved in the
background every `every` changes once the index holds `min_pages` pages, at shutdown, after an import, and
again when one of an earlier version was completed on load; it is discarded when memory is forgotten (a
snapshot on disk would still hold the forgotten text). One save of a user at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from memoryos_mcp.core.protocols import IndexSnapshots
from memoryos_mcp.core.state import UserState

logger = logging.getLogger(__name__)


class SnapshotKeeper:
    """Saves and discards the index snapshots of the states a registry caches."""

    def __init__(
        self,
        snapshots: IndexSnapshots | None,
        cached: Callable[[], list[UserState]],
        min_pages: int = 2000,
        every: int = 500,
    ) -> None:
        self.snapshots = snapshots
        self.cached = cached  # the states cached now
        self.min_pages = min_pages
        self.every = every
        self._saving: set[str] = set()
        self._guard = threading.Lock()

    def save(self, state: UserState) -> bool:
        """Save the state's index now (if it changed since the last snapshot). True when one was written."""
        if self.snapshots is None or state.seq == state.snapshot_seq:
            return False
        with state.lock:  # copies of the arrays: the slow part (serialising) runs without the lock
            exported, seq, epoch = state.index.export(), state.seq, state.epoch
        self.snapshots.save(state.user_id, seq, exported, epoch)
        state.snapshot_seq = seq
        return True

    def save_all(self, min_pages: int | None = None) -> int:
        """Snapshot every cached state with at least `min_pages` indexed pages that changed since its last
        snapshot (at shutdown, after an import). Returns how many were written."""
        floor = self.min_pages if min_pages is None else min_pages
        written = 0
        for state in self.cached():
            if len(state.index) < floor:
                continue
            # A background save of this user under way is waited for (a daemon thread: cut short if the
            # process exits now); then whatever it did not cover is saved.
            if not self._claim(state.user_id):
                logger.warning(
                    "an index snapshot of %s is still being written; not saving it again", state.user_id
                )
                continue
            try:
                written += self.save(state)
            except OSError as exc:
                logger.warning("could not save the index snapshot of %s: %s", state.user_id, exc)
            finally:
                self._release(state.user_id)
        return written

    def if_due(self, state: UserState) -> None:
        """After a change: save in the background when enough changes came since the last snapshot."""
        if self.snapshots is not None and len(state.index) >= self.min_pages:
            if state.seq - state.snapshot_seq >= self.every:
                self.in_background(state)

    def loaded(self, state: UserState) -> None:
        """After a load: a snapshot of an earlier version was completed from its pages (~6 s at 100k pages):
        save it again now, or every start of a process that only reads pays that again."""
        if (
            state.index.restored_from_older
            and self.snapshots is not None
            and len(state.index) >= self.min_pages
        ):
            self.in_background(state)

    def discard(self, user_id: str) -> None:
        """Delete the user's snapshot (memory was forgotten or restored under it), after a save of it under
        way, which may have exported what is gone."""
        if self.snapshots is None:
            return
        if self._claim(user_id, timeout_s=30.0):
            self._release(user_id)
        else:
            logger.warning("an index snapshot of %s is still being written; deleting it anyway", user_id)
        self.snapshots.delete(user_id)

    def in_background(self, state: UserState) -> None:
        if not self._claim(state.user_id, timeout_s=0.0):  # one is being written already
            return

        def run() -> None:
            try:
                self.save(state)
            except Exception as exc:  # a cache: failing to save it only costs a slower start later
                logger.warning("could not save the index snapshot of %s: %s", state.user_id, exc)
            finally:
                self._release(state.user_id)

        threading.Thread(target=run, name=f"snapshot-{state.user_id}", daemon=True).start()

    def _claim(self, user_id: str, timeout_s: float = 60.0) -> bool:
        """Mark the user's snapshot as being written by the caller, once no other save of it is running."""
        give_up = time.monotonic() + timeout_s
        while True:
            with self._guard:
                if user_id not in self._saving:
                    self._saving.add(user_id)
                    return True
            if time.monotonic() >= give_up:
                return False
            time.sleep(0.01)

    def _release(self, user_id: str) -> None:
        with self._guard:
            self._saving.discard(user_id)
