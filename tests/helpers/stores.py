"""Services over a real Chroma store in a temp dir, a generated history to import, and what a memory holds
(every record and field, its stats, its retrievals) to compare two of them."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
from memoryos_mcp.core.local_analyzer import LocalAnalyzer
from memoryos_mcp.core.state import FACT_KINDS
from memoryos_mcp.service.export import export_users
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import load_settings
from tests.helpers.fakes import HashEmbedder

TOPICS = [
    "hiking trail boots summit", "sourdough bread oven flour", "guitar chords melody", "taxes invoice receipts",
    "puppy leash vet", "marathon training pace", "pottery wheel clay", "chess opening gambit",
]  # fmt: skip


QUERIES = [
    "hiking boots on the summit",
    "bread in the oven",
    "guitar melody note 17",
    "taxes receipts note 140",
    "flour",
]


def history(n: int, user: str | None = None) -> list[str]:
    return [
        json.dumps(
            {
                "user_input": f"{TOPICS[i % len(TOPICS)]} note {i} detail{i % 13}",
                "agent_response": f"reply {i}",
                "timestamp": f"2024-{1 + i // 100:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00",
                "metadata": {"line": i, "even": i % 2 == 0, "weight": i / 7},
                **({"user_id": user} if user else {}),
            }
        )
        for i in range(n)
    ]


def local_service(data_dir: Path, **overrides: Any) -> MemoryService:
    settings = load_settings(data_dir=data_dir, **overrides)
    store = ChromaStore(make_client(data_dir=data_dir), settings.collection_prefix)
    return MemoryService(settings, store, HashEmbedder(), LocalAnalyzer(settings.chain_threshold))


def export_text(service: MemoryService, users: list[str]) -> str:
    out = io.StringIO()
    export_users(service, users, out.write)
    return out.getvalue()


def vec(v: Any) -> list[float] | None:
    # Rounded: Chroma hands back a vector it has moved into its cosine index renormalised (last-bit changes).
    return None if v is None else [round(x, 6) for x in np.asarray(v, dtype=np.float32).tolist()]


def contents(service: MemoryService, user: str) -> dict[str, Any]:
    """Every record of a user, every field (vectors included), straight from the store."""
    store = service.store
    segments = store.list_segments(user, include_archived=True)

    def plain(obj: Any) -> dict[str, Any]:
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
        if "embedding" in fields:
            fields["embedding"] = vec(fields["embedding"])
        if fields.get("sentences") is not None:  # int8 codes and their scales: restored bit for bit
            fields["sentences"] = fields["sentences"].to_bytes().hex()
        return fields

    head = store.get_chain_head(user)
    profile = store.get_profile(user)
    return {
        "stm": [plain(p) for p in store.list_stm_pages(user)],
        "mtm": [plain(p) for p in store.pages_of_segments(user, [s.id for s in segments])],
        "segments": [plain(s) for s in segments],
        "head": None if head is None else plain(head),
        "facts": [plain(f) for kind in FACT_KINDS for f in store.list_facts(user, kind)],
        "profile": None if profile is None else dataclasses.asdict(profile),
        "profile_embedding": vec(store.profile_embedding(user)),
    }


def stats(service: MemoryService, user: str) -> tuple[int, ...]:
    s = service.stats(user)
    return (
        s.short_term_pages,
        s.mid_term_pages,
        s.segments,
        s.archived_segments,
        s.indexed_pages,
        s.user_facts,
        s.assistant_traits,
    )


def retrievals(service: MemoryService, user: str, **kw: Any) -> list[Any]:
    results = []
    for query in QUERIES:
        found = service.retrieve_memory(query, user_id=user, **kw)
        results.append(
            (
                [p.id for p in found.short_term],
                [(p.id, round(p.score, 5)) for p in found.mid_term],
                [s.id for s in found.segments],
                [(f.id, round(f.score, 5)) for f in found.user_facts + found.assistant_traits],
            )
        )
    return results
