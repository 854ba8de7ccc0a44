"""The index snapshot format, in one place: what PageIndex.export() gives, how pack_snapshot() lays it out,
which arrays a snapshot file holds (adapters/snapshots.py writes and reads exactly these), and how
PageIndex.restore() reads it back (page records stay encoded until a page is read).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, TypeVar

import numpy as np

from memoryos_mcp.core.models import Page
from memoryos_mcp.core.text import sentence_layout
from memoryos_mcp.index.arrays import Postings, Rows, runs
from memoryos_mcp.index.screen import SCREEN_FROM, DenseScreen, Dots

logger = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = (
    3  # 3: pages' sentence vectors (sent_*); a snapshot of another format is not read, the index is rebuilt
)
ARRAYS = (
    "emb", "sent_cnt", "sent_codes", "sent_scale", "added_at", "epoch", "dates", "time", "seg", "textlen", "len_own", "len_ctx", "norm", "nbrs",
    "term_cnt", "term_buf", "tf_buf", "order", "post_ptr", "post_slots", "post_tf", "page_blob", "page_offsets",
)  # fmt: skip
LISTS = ("ids", "vocab", "segments")
# Optional arrays: the int8 screen of a large index (index/screen.py); which of each page's sentences are the
# user's and which are questions (absent in snapshots of earlier versions). All are derived again on restore
# when absent.
OPTIONAL = (
    "screen_codes", "screen_scale", "screen_colsum", "screen_first", "screen_second", "screen_centre",
    "screen_limits", "sent_user", "sent_ask",
)  # fmt: skip


LAZY = object()  # a restored page not decoded yet: its record is read from the snapshot's bytes when needed
PAGE_FIELDS = (
    "id",
    "user_id",
    "user_input",
    "agent_response",
    "timestamp",
    "added_at",
    "metadata",
    "chain_id",
    "chain_summary",
    "segment_id",
    "analyzed",
)


def page_payload(page: Page) -> bytes:
    """A page record as a snapshot stores it."""
    return json.dumps([getattr(page, f) for f in PAGE_FIELDS], ensure_ascii=False).encode()


def page_from_payload(payload: bytes) -> Page:
    return Page(**dict(zip(PAGE_FIELDS, json.loads(payload), strict=True)))


def pack_snapshot(exported: dict[str, Any]) -> dict[str, Any]:
    """What export() returned, in the form a snapshot stores and restore() reads: postings grouped by term,
    page records as one blob with offsets. The slow part of saving: runs without the owner's lock."""
    n = len(exported["ids"])
    term_buf, tf_buf = exported["term_buf"], exported["tf_buf"]
    slots_of_terms = np.repeat(np.arange(n, dtype=np.int32), exported["term_cnt"])
    by_term = np.argsort(term_buf, kind="stable")  # slots stay ascending within a term
    pointer = np.searchsorted(term_buf[by_term], np.arange(len(exported["vocab"]) + 1)).astype(np.int64)
    payloads = [r if isinstance(r, bytes) else page_payload(r) for r in exported["records"]]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in payloads]) if payloads else []
    packed = {k: v for k, v in exported.items() if k != "records"}
    packed.update(
        post_ptr=pointer,
        post_slots=slots_of_terms[by_term],
        post_tf=tf_buf[by_term],
        page_blob=np.frombuffer(b"".join(payloads), dtype=np.uint8),
        page_offsets=offsets,
    )
    return packed


class Persisted:
    """Part of PageIndex: its export to a snapshot and its restore from one."""

    def export(self) -> dict[str, Any]:
        """The live pages' arrays, terms and records, renumbered densely. Cheap (copies of arrays): call it
        under the owner's lock, then pack_snapshot() the result without it."""
        live = np.flatnonzero(self._alive[: self._n])
        renumber = np.full(self._n + 1, -1, dtype=np.int32)
        renumber[live] = np.arange(len(live), dtype=np.int32)
        counts = self._term_cnt[live].astype(np.int64)
        positions, _ = runs(self._term_off[live], counts)
        code_names = [""] * len(self._seg_slots)
        for sid, code in self._seg_code.items():
            code_names[code] = sid
        records: list[Page | bytes] = []
        for slot in live.tolist():
            page = self._pages[slot]
            if page is LAZY:  # still the snapshot's bytes: passed on without decoding
                page = self._lazy_blob[self._lazy_offsets[slot] : self._lazy_offsets[slot + 1]]
            records.append(page)
        # Only the terms live pages hold: a forgotten page's words must not survive in a snapshot's vocabulary.
        term_ids = self._term_buf[positions]
        used = np.unique(term_ids)
        remap = np.full(len(self._postings), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        every_term = list(self._vocab)  # in id order: ids were given in insertion order
        sentence_rows, _ = self._sentence_rows(live)
        return {
            "context_window": self.context_window,
            "dim": self._dim,
            "emb": self._emb.take(live),
            "sent_cnt": self._sent_cnt[live],
            "sent_codes": self._sent.take(sentence_rows),
            "sent_scale": self._sent_scale[sentence_rows],
            "sent_user": self._sent_user[live],
            "sent_ask": self._sent_ask[live],
            "added_at": self._added_at[live],
            "epoch": self._epoch[live],
            "dates": self._dates[live],
            "time": self._time[live],
            "seg": self._seg[live],
            "textlen": self._textlen[live],
            "len_own": self._len_own[live],
            "len_ctx": self._len_ctx[live],
            "norm": self._norm[live],
            "nbrs": renumber[self._nbrs[live]],
            "term_cnt": counts.astype(np.int32),
            "term_buf": remap[term_ids],
            "tf_buf": self._tf_buf[positions],
            "order": renumber[np.asarray(self._key_slots, dtype=np.int64)],
            "ids": [self._ids[s] for s in live.tolist()],
            "vocab": [every_term[t] for t in used.tolist()],
            "segments": code_names,
            "records": records,
            "vocatives": dict(self._vocatives),
            "introduced": dict(self._introduced),
            "addressed": [[name, side, count] for (name, side), count in self._addressed.items()],
            # Building a screen of 100k pages takes ~0.5 s, loading it ~0.05 s.
            **(self._screen.export(live) if self._screen is not None else {}),
        }

    @classmethod
    def restore(
        cls: type[T], data: dict[str, Any], screen_from: int = SCREEN_FROM, screen_dots: Dots | None = None
    ) -> T:
        """An index from what pack_snapshot() made (read back from a snapshot). Page records stay encoded
        until a page is read; postings and conversation order come ready-made."""
        index = cls(int(data["context_window"]), screen_from, screen_dots)
        ids: list[str] = list(data["ids"])
        n = len(ids)
        index._n, index._dim = n, int(data["dim"])
        index._emb = Rows(index._dim)
        index._emb.adopt(np.asarray(data["emb"], dtype=np.float32))
        index._sent = Rows(index._dim, np.int8)
        index._sent.adopt(np.asarray(data["sent_codes"], dtype=np.int8))
        index._sent_scale = np.asarray(data["sent_scale"], dtype=np.float32)
        index._sent_used = len(index._sent_scale)
        index._sent_cnt = np.asarray(data["sent_cnt"], dtype=np.int32)
        index._sent_off = np.cumsum(index._sent_cnt, dtype=np.int64) - index._sent_cnt
        if index._sent_used != int(index._sent_cnt.sum()) or index._sent.capacity != index._sent_used:
            raise ValueError("the snapshot's sentence vectors do not match its pages")
        for name in (
            "added_at",
            "epoch",
            "dates",
            "time",
            "seg",
            "textlen",
            "len_own",
            "len_ctx",
            "norm",
            "nbrs",
        ):
            setattr(index, f"_{name}", np.asarray(data[name]))
        index._alive = np.ones(n, dtype=bool)
        index._len_ctx_total = float(index._len_ctx.sum())
        index._term_cnt = np.asarray(data["term_cnt"], dtype=np.int32)
        index._term_off = np.cumsum(index._term_cnt, dtype=np.int64) - index._term_cnt
        index._term_buf = np.asarray(data["term_buf"], dtype=np.int32)
        index._tf_buf = np.asarray(data["tf_buf"], dtype=np.float32)
        index._term_used = len(index._term_buf)
        index._ids = ids
        index._pages = [LAZY] * n
        index._lazy_blob = bytes(data["page_blob"])
        index._lazy_offsets = np.asarray(data["page_offsets"], dtype=np.int64)
        index._slot_of = {page_id: slot for slot, page_id in enumerate(ids)}
        order = np.asarray(data["order"], dtype=np.int64)
        index._key_slots = order.tolist()
        index._keys = list(
            zip(index._added_at[order].tolist(), [ids[s] for s in index._key_slots], strict=True)
        )
        index._vocab = {term: tid for tid, term in enumerate(data["vocab"])}
        pointer, slots, tfs = data["post_ptr"], data["post_slots"], data["post_tf"]
        postings = []
        for tid in range(len(index._vocab)):
            posting = Postings()
            a, b = int(pointer[tid]), int(pointer[tid + 1])
            if b > a:
                posting.slots, posting.tf, posting.n = slots[a:b], tfs[a:b], b - a
            postings.append(posting)
        index._postings = postings
        index._postings_bytes = int(slots.nbytes + tfs.nbytes) + 220 * len(postings)
        names = list(data["segments"])
        index._seg_code = {sid: code for code, sid in enumerate(names)}
        by_code = np.argsort(index._seg, kind="stable")
        bounds = np.searchsorted(index._seg[by_code], np.arange(len(names) + 1))
        index._seg_slots = [set(by_code[bounds[c] : bounds[c + 1]].tolist()) for c in range(len(names))]
        index._text_bytes = int(index._textlen.sum())
        if any(data.get(k) is None for k in ("vocatives", "introduced", "addressed")):
            for slot in range(n):  # a snapshot from before names were counted: read them from the pages once
                index._count_names(index._page(slot), 1)
            index.restored_from_older = True
        else:
            index._vocatives = Counter({str(k): int(v) for k, v in dict(data["vocatives"]).items()})
            index._introduced = Counter({str(k): int(v) for k, v in dict(data["introduced"]).items()})
            index._addressed = Counter({(str(a), str(b)): int(c) for a, b, c in data["addressed"]})
        sent_user, sent_ask = data.get("sent_user"), data.get("sent_ask")
        if sent_user is not None and sent_ask is not None and len(sent_user) == len(sent_ask) == n:
            index._sent_user = np.asarray(sent_user, dtype=np.int32)
            index._sent_ask = np.asarray(sent_ask, dtype=np.uint32)
        else:  # a snapshot from before sides or questions were told apart: split the pages' sentences once
            layouts = [sentence_layout(index._page(s), int(index._sent_cnt[s])) for s in range(n)]
            index._sent_user = np.fromiter((u for u, _ in layouts), dtype=np.int32, count=n)
            index._sent_ask = np.fromiter((a for _, a in layouts), dtype=np.uint32, count=n)
            index.restored_from_older = True
        if "screen_codes" in data and "screen_limits" not in data and n >= screen_from:
            # A screen of an earlier version: its query was quantized to 8 bits, with another bound. Built
            # again (~0.5 s at 100k pages), and the snapshot saved again.
            index.restored_from_older = True
        elif "screen_codes" in data and n >= screen_from:
            try:
                screen = DenseScreen.restore(data, dots=screen_dots)
                if screen.dim != index._dim or len(screen.scale) != n:
                    raise ValueError(f"a screen of {len(screen.scale)} x {screen.dim} for {n} x {index._dim}")
                index._screen = screen
            except (KeyError, ValueError) as exc:  # a cache like the rest of the snapshot: rebuilt
                logger.warning("rebuilding the index screen the snapshot held: %s", exc)
        index._build_screen()  # a snapshot saved without one (a smaller index, an older version)
        return index
