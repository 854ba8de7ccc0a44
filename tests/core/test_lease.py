"""The per-user write lease on a shared store: held for the whole write, renewed while it runs."""

from __future__ import annotations

import threading
import time
import uuid

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.memory import MemoryOS
from memoryos_mcp.index.page_index import PageIndexes
from tests.helpers.fakes import HashEmbedder


def test_a_long_write_keeps_its_lease_and_a_second_writer_waits(chroma_server: int) -> None:
    store = ChromaStore(make_client(host="127.0.0.1", port=chroma_server), f"lease{uuid.uuid4().hex[:8]}")
    assert store.shared
    first = MemoryOS(store, HashEmbedder(), LocalAnalyzer(), lease_ttl_s=0.3, indexes=PageIndexes())
    second = MemoryOS(store, HashEmbedder(), LocalAnalyzer(), lease_ttl_s=0.3, indexes=PageIndexes())
    order: list[str] = []
    with first.writing("alice"):
        waiter = threading.Thread(
            target=lambda: (
                second.add_page("alice", "second writer", "", "2024-01-01T00:00:00"),
                order.append("second"),
            )
        )
        waiter.start()
        time.sleep(1.0)  # three times the ttl: without renewals the lease would have expired
        assert not store.acquire_lease("alice", "someone else", ttl_s=60)
        order.append("first")
    waiter.join(30)
    assert order == ["first", "second"]
    assert [p.user_input for p in store.list_stm_pages("alice")] == ["second writer"]
