"""Index snapshots on local disk: what lets a user with 100k indexed pages start in about a second.

Reading 100k pages back from Chroma and tokenising them takes 10-15 s on 2 cores; loading the saved arrays
takes a fraction of that. A snapshot is a cache, not state: it records the change-log position it reflects,
the loader replays the entries written since, and a missing, stale beyond the kept log, or unreadable
snapshot only means a slower start (the loader then reads the store). Files are written whole to a
temporary name and renamed, so a crash never leaves half a snapshot; nothing here uses pickle.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_mcp.index.snapshot_format import ARRAYS, FORMAT, LISTS, OPTIONAL, pack_snapshot

logger = logging.getLogger(__name__)


def _text(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode(), dtype=np.uint8)


def _untext(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode())


class SnapshotStore:
    """Snapshots of page indexes of one store (`identity` names it: a snapshot of another store is ignored).

    `also_accepted`: identities earlier versions wrote for the same store (read, never written)."""

    def __init__(self, directory: Path, identity: str, also_accepted: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.identity = identity
        self.accepted = frozenset((identity, *also_accepted))

    def path(self, user_id: str) -> Path:
        return self.directory / f"user-{user_id}.npz"

    def save(self, user_id: str, seq: int, exported: dict[str, Any], epoch: str = "") -> None:
        """Write a snapshot of an index at change-log position `seq` (from PageIndex.export())."""
        packed = pack_snapshot(exported)
        self.directory.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT,
            "identity": self.identity,
            "user_id": user_id,
            "seq": seq,
            "epoch": epoch,
            "context_window": packed["context_window"],
            "dim": packed["dim"],
            "vocatives": packed.get("vocatives", {}),
            "introduced": packed.get("introduced", {}),
            "addressed": packed.get("addressed"),
        }
        target = self.path(user_id)
        for stale in self.directory.glob(f"{target.name}.tmp*"):  # left by a process killed while saving
            try:
                if time.time() - stale.stat().st_mtime > 3600:  # not one being written right now
                    stale.unlink(missing_ok=True)
            except OSError:
                pass
        temporary = target.with_name(
            f"{target.name}.tmp{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
        )
        with temporary.open("wb") as out:
            np.savez(
                out,
                header=_text(header),
                **{name: _text(packed[name]) for name in LISTS},
                **{name: packed[name] for name in ARRAYS},
                **{name: packed[name] for name in OPTIONAL if name in packed},
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)

    def load(self, user_id: str, context_window: int) -> tuple[dict[str, Any], int] | None:
        """(what PageIndex.restore takes, seq), or None when there is no usable snapshot."""
        path = self.path(user_id)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                header = _untext(data["header"])
                if (
                    header.get("format") != FORMAT
                    or header.get("identity") not in self.accepted
                    or header.get("user_id") != user_id
                    or header.get("context_window") != context_window
                ):
                    return None
                packed: dict[str, Any] = {name: data[name] for name in ARRAYS}
                packed.update({name: data[name] for name in OPTIONAL if name in data.files})
                packed.update({name: _untext(data[name]) for name in LISTS})
                packed.update(
                    context_window=header["context_window"],
                    dim=header["dim"],
                    memory_epoch=header.get("epoch", ""),
                )
                # None in older snapshots: the names are counted again from the pages on restore
                for name in ("vocatives", "introduced", "addressed"):
                    packed[name] = header.get(name)
                return packed, int(header["seq"])
        except Exception as exc:  # a cache: any damage only costs a slower start
            logger.warning("ignoring the index snapshot %s: %s", path, exc)
            return None

    def delete(self, user_id: str) -> None:
        self.path(user_id).unlink(missing_ok=True)
