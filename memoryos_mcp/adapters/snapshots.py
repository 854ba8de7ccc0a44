"""Index snapshots on local disk: what lets a user with 100k indexed pages start in about a second.

Reading 100k pages back from Chroma and tokenising them takes 10-15 s on 2 cores; loading the saved arrays
takes a fraction of that. A snapshot is a cache, not state: it records the change-log position it reflects,
the loader replays the entries written since, and a missing, stale beyond the kept log, or unreadable
snapshot only means a slower start (the loader then reads the store). Files are written whole to a
temporary name and renamed, so a crash never leaves half a snapshot; nothing here uses pickle.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_mcp.core.models import Page

logger = logging.getLogger(__name__)

FORMAT = 1
_ARRAYS = ("emb", "added_at", "epoch", "dates", "time", "seg", "len_own", "len_ctx", "norm", "nbrs", "term_off", "term_cnt", "term_buf", "tf_buf")
_PAGE_FIELDS = ("id", "user_id", "user_input", "agent_response", "timestamp", "added_at", "metadata", "chain_id", "chain_summary", "segment_id", "analyzed")


def _text(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode(), dtype=np.uint8)


def _untext(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode())


class SnapshotStore:
    """Snapshots of page indexes of one store (`identity` names it: a snapshot of another store is ignored)."""

    def __init__(self, directory: Path, identity: str) -> None:
        self.directory = directory
        self.identity = identity

    def path(self, user_id: str) -> Path:
        return self.directory / f"user-{user_id}.npz"

    def save(self, user_id: str, seq: int, exported: dict[str, Any]) -> None:
        """Write a snapshot of an index at change-log position `seq` (export() of the index)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pages = [[getattr(p, f) for f in _PAGE_FIELDS] for p in exported["pages"]]
        header = {
            "format": FORMAT,
            "identity": self.identity,
            "user_id": user_id,
            "seq": seq,
            "context_window": exported["context_window"],
            "dim": exported["dim"],
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            header=_text(header),
            vocab=_text(exported["vocab"]),
            segments=_text(exported["segments"]),
            pages=_text(pages),
            **{name: exported[name] for name in _ARRAYS},
        )
        target = self.path(user_id)
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        with temporary.open("wb") as out:
            out.write(buffer.getbuffer())
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
                    or header.get("identity") != self.identity
                    or header.get("user_id") != user_id
                    or header.get("context_window") != context_window
                ):
                    return None
                exported: dict[str, Any] = {name: data[name] for name in _ARRAYS}
                exported.update(
                    context_window=header["context_window"],
                    dim=header["dim"],
                    vocab=_untext(data["vocab"]),
                    segments=_untext(data["segments"]),
                    pages=[Page(**dict(zip(_PAGE_FIELDS, row, strict=True))) for row in _untext(data["pages"])],
                )
                return exported, int(header["seq"])
        except Exception as exc:  # a cache: any damage only costs a slower start
            logger.warning("ignoring the index snapshot %s: %s", path, exc)
            return None

    def delete(self, user_id: str) -> None:
        self.path(user_id).unlink(missing_ok=True)
