"""The writer lock of an embedded data directory: one process per directory, checked before serving.

Kept apart from the Chroma adapter so that `serve` can take the lock (and refuse to start) in milliseconds,
before it answers `initialize` and long before Chroma is imported.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from memoryos_mcp.core.errors import StorageError

# Directories this process holds the writer lock of (path -> open lock file descriptor).
_held_locks: dict[str, int] = {}
_held_locks_guard = threading.Lock()


def lock_data_dir(data_dir: Path) -> None:
    """Hold an exclusive lock on data_dir for the life of this process.

    Embedded Chroma allows one writer process per directory; two (say Claude Desktop and Cursor both
    launching the server on ~/.memoryos) can corrupt it. The second one fails here with a way out instead.
    """
    import fcntl

    key = str(data_dir.resolve())
    with _held_locks_guard:
        if key in _held_locks:
            return
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(os.path.join(key, ".memoryos.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageError(
                f"another process is using the memory directory {data_dir}: embedded Chroma allows one process "
                "per directory. Give this server its own MEMORYOS_DATA_DIR, or share one memory between "
                "processes through a Chroma server (MEMORYOS_CHROMA_HOST)."
            ) from None
        _held_locks[key] = fd
