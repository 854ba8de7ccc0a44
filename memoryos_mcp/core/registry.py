"""The per-user state cache: an LRU with a memory budget and an O(1) freshness check.

Each call asks the store for the user's version (one small read by id). If the cached state is at that
version it is used as is; if it is behind, the change-log entries it missed are replayed (work in
proportion to what changed); if it is missing — never loaded, or evicted to stay within the budget — it
is loaded, in bounded batches. A change made by another process sharing the store is therefore seen on
the next call.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from memoryos_mcp.core.protocols import MemoryStore
from memoryos_mcp.core.state import StateLoader, UserState, is_current

logger = logging.getLogger(__name__)


class StateRegistry:
    """Cached UserStates, least recently used evicted first once their memory passes `budget_bytes`.

    One user larger than the whole budget is still served (and stays cached while it is the only one).
    """

    def __init__(
        self,
        store: MemoryStore,
        loader: StateLoader,
        budget_bytes: int,
        on_load: Callable[[UserState], None] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.budget_bytes = budget_bytes
        self.on_load = on_load  # called with each state loaded whole (not on a replay)
        self._states: OrderedDict[str, UserState] = OrderedDict()
        self._guard = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # full loads, for tests and stats
        self.replays = 0  # refreshes from the change log

    def fresh(self, user_id: str) -> UserState:
        """The user's state as the store has it now."""
        version = self.store.read_version(user_id)
        with self._guard:
            state = self._states.get(user_id)
            if state is not None:
                self._states.move_to_end(user_id)
            lock = self._loading.setdefault(user_id, threading.Lock())
        if state is not None and is_current(state, version):
            return state
        with lock:  # one load or replay per user at a time; the others then find it done
            with self._guard:
                state = self._states.get(user_id)
            loaded = state is None  # whole: not found, or too far behind to replay (refresh reloads it)
            if state is None:
                state = self.loader.load(user_id)
            elif not is_current(state, version):
                refreshed = self.loader.refresh(state, version)
                loaded = refreshed is not state
                self.replays += not loaded
                state = refreshed
            self.loads += loaded
            self._keep(state)
            if loaded and self.on_load is not None:
                self.on_load(state)
        return state

    def peek(self, user_id: str) -> UserState | None:
        """The cached state as it is (no freshness check), or None."""
        with self._guard:
            return self._states.get(user_id)

    def drop(self, user_id: str) -> None:
        """Forget the cached state (after a write failed part-way: the next call reloads from the store)."""
        with self._guard:
            self._states.pop(user_id, None)

    def account(self, state: UserState) -> None:
        """Re-measure a state that changed in place and evict others if the budget is now exceeded."""
        self._keep(state)

    @property
    def nbytes(self) -> int:
        with self._guard:
            return sum(s.nbytes for s in self._states.values())

    def cached_users(self) -> list[str]:
        with self._guard:
            return list(self._states)

    def _keep(self, state: UserState) -> None:
        state.measure()
        with self._guard:
            self._states[state.user_id] = state
            self._states.move_to_end(state.user_id)
            total = sum(s.nbytes for s in self._states.values())
            while total > self.budget_bytes and len(self._states) > 1:
                user, evicted = self._states.popitem(last=False)
                total -= evicted.nbytes
                logger.debug(
                    "evicted the cached state of %s (%.1f MB) to stay within the index budget",
                    user,
                    evicted.nbytes / 1e6,
                )
