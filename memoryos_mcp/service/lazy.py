"""The service built in the background, so that the MCP handshake never waits for Chroma or the model."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from memoryos_mcp.core.errors import MemoryOSError, StorageError
from memoryos_mcp.service.facade import MemoryService

logger = logging.getLogger(__name__)


class LazyService:
    """Builds the MemoryService in a background thread so the MCP handshake never waits for torch or Chroma."""

    def __init__(
        self,
        factory: Callable[[], MemoryService],
        startup_timeout_s: float = 120.0,
        on_ready: Callable[[MemoryService], None] | None = None,
    ) -> None:
        self._factory = factory
        self._on_ready = on_ready
        self._timeout = startup_timeout_s
        self._ready = threading.Event()
        self._service: MemoryService | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._build, name="memoryos-startup", daemon=True)

    def start(self) -> LazyService:
        self._thread.start()
        return self

    def _build(self) -> None:
        started = time.monotonic()
        try:
            self._service = self._factory()
            logger.info("memory service ready in %.1f s", time.monotonic() - started)
            if self._on_ready is not None:
                self._on_ready(self._service)
        except (
            BaseException
        ) as exc:  # kept and re-raised to every caller, so a tool call explains the failure
            logger.exception("memory service failed to start")
            self._error = exc
        finally:
            self._ready.set()

    def ready(self) -> MemoryService | None:
        """The service if it started, without waiting."""
        return self._service if self._ready.is_set() else None

    def get(self) -> MemoryService:
        """The service, waiting for start-up if it is still under way."""
        if not self._ready.wait(self._timeout):
            raise StorageError(
                f"memory service did not start within {self._timeout:.0f} s; see the server log"
            )
        if self._error is not None:
            if isinstance(self._error, MemoryOSError):
                raise self._error
            raise StorageError(f"memory service failed to start: {self._error}")
        assert self._service is not None
        return self._service
