"""The service calls under way, which background work (the sentence backfill) waits for."""

from __future__ import annotations

import threading
import time


class Foreground:
    """Counts the service calls under way, so that background work runs between them."""

    def __init__(self, quiet_s: float = 0.005) -> None:
        self.quiet_s = quiet_s  # a client's next call often follows the answer at once
        self._busy = 0
        self._last_end = 0.0
        self._changed = threading.Condition()

    def enter(self) -> None:
        with self._changed:
            self._busy += 1

    def leave(self) -> None:
        with self._changed:
            self._busy -= 1
            self._last_end = time.monotonic()
            self._changed.notify_all()

    def wait_quiet(self, stop: threading.Event) -> None:
        """Return once no call has run for quiet_s (or `stop` is set)."""
        with self._changed:
            while not stop.is_set():
                if self._busy:
                    self._changed.wait()
                    continue
                left = self._last_end + self.quiet_s - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    def release_waiters(self) -> None:
        with self._changed:
            self._changed.notify_all()
