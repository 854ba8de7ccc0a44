"""When the language model may be asked again: the rest after failures, and logging an outage once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from memoryos_mcp.core.errors import LLMAnswerUnusable, LLMError

logger = logging.getLogger(__name__)

MAX_REST_DOUBLINGS = 3  # a model failing again and again rests cooldown_s, 2x, 4x, then 8x at most
LOG_EVERY_S = 600.0  # a run of failures starting this soon after a logged one is logged at DEBUG only


class ModelHealth:
    """Rests the model after a failure so that no add_memory waits on a model that is down or unhelpful.

    The rest is `cooldown_s`, doubled for each further failure in a row (up to 8x): a model that stays down
    or keeps answering uselessly is asked ever more rarely, so it costs well under one call per add even when
    adds are slow. An endpoint's Retry-After lengthens the rest to what it asked. While resting, calls raise
    at once — LLMAnswerUnusable when the last failure was an unusable answer (the caller then goes on without
    the model rather than wait for it), LLMError otherwise. The first failure of a run is logged once, and
    runs at most once per LOG_EVERY_S: an outage or a useless model leaves a line on stderr, not one per add.
    """

    def __init__(self, model: str, cooldown_s: float, clock: Callable[[], float]) -> None:
        self.model = model
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._failures_in_a_row = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._last_unusable = False
        self._logged_at: float | None = None
        self._run_logged = False

    def check(self) -> None:
        """Raise if the model is resting."""
        with self._lock:
            wait = self._retry_at - self.clock()
            if wait <= 0:
                return
            message = f"LLM resting after a failure (last: {self._last_error}); next try in {wait:.0f} s"
            raise LLMAnswerUnusable(message) if self._last_unusable else LLMError(message)

    def failed(self, error: str, *, unusable: bool = False, retry_after: float | None = None) -> LLMError:
        """Record a failure and return the error to raise."""
        with self._lock:
            now = self.clock()
            new_run = self._failing_since is None
            if new_run:
                self._failing_since = now
                # A model that fails one task and answers another (a lazy one does) starts a new run at every
                # batch: runs are logged once per LOG_EVERY_S, not each one.
                self._run_logged = self._logged_at is None or now - self._logged_at >= LOG_EVERY_S
            if new_run and self._run_logged:
                self._logged_at = now
                logger.error(
                    "LLM %s failed: %s — memory keeps working; the analysis %s",
                    self.model,
                    error,
                    "goes on without it" if unusable else "is retried later",
                )
            else:
                logger.debug("LLM failing: %s", error)
            rest = self.cooldown_s * 2 ** min(self._failures_in_a_row, MAX_REST_DOUBLINGS)
            self._failures_in_a_row += 1
            self._retry_at = now + max(rest, retry_after or 0.0)
            self._last_error = error
            self._last_unusable = unusable
        return LLMAnswerUnusable(error) if unusable else LLMError(error)

    def succeeded(self) -> None:
        with self._lock:
            if self._failing_since is not None and self._run_logged:
                logger.warning(
                    "LLM %s answers again after %.0f s", self.model, self.clock() - self._failing_since
                )
            self._failing_since = None
            self._failures_in_a_row = 0
            self._retry_at = 0.0
