"""A MemoryOS over a real store with the deterministic embedder, filled with pages, and what its cached state
holds and finds, to compare two processes."""

from __future__ import annotations

from memoryos_mcp.adapters.chroma_store import ChromaStore
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.memory import MemoryOS, MemoryParams
from memoryos_mcp.core.state import UserState
from memoryos_mcp.index.page_index import PageIndexes
from tests.helpers.fakes import HashEmbedder

TOPICS = [
    "hiking trail mountains boots summit",
    "recipe oven bread flour dough",
    "guitar chords strings melody practice",
    "taxes invoice accountant deduction receipts",
    "garden tomatoes roses compost watering",
]


def make_memory(store: ChromaStore, budget: int = 64 * 1024 * 1024) -> MemoryOS:
    params = MemoryParams(stm_capacity=3, stm_evict_batch=2)
    return MemoryOS(
        store,
        HashEmbedder(),
        LocalAnalyzer(chain_threshold=0.5),
        params,
        cache_budget_bytes=budget,
        indexes=PageIndexes(),
    )


def fill(memory: MemoryOS, user: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        memory.add_page(user, f"{TOPICS[i % 5]} entry{i}", f"noted {i}", f"2024-01-{1 + i % 27:02d}T10:00:00")


def summary(state: UserState) -> tuple[object, ...]:
    return (
        state.seq,
        [p.id for p in state.stm],
        sorted(state.segments),
        sorted((s.id, s.page_count, s.l_interaction) for s in state.segments.values()),
        [p.id for p in state.index.pages()],
        state.mid_term_pages,
        state.archived_segments,
    )


def found(memory: MemoryOS, user: str, query: str) -> list[tuple[str, float]]:
    return [
        (sp.page.id, round(sp.score, 6)) for sp in memory.retrieve(user, query, top_k=8, top_m=3).mid_term
    ]
