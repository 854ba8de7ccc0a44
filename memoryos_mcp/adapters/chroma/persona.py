"""The long-term persona: the profile and the facts about the user and the assistant."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np

from memoryos_mcp.adapters.chroma.base import PAGE_COLUMNS, ChromaBase
from memoryos_mcp.core.models import (
    Fact,
    FactKind,
    TraitLevel,
    UserProfile,
    Vector,
)

logger = logging.getLogger(__name__)


class PersonaRecords(ChromaBase):
    """Part of ChromaStore: the long-term persona: the profile and the facts about the user and the assistant."""

    def get_profile(self, user_id: str) -> UserProfile | None:
        for _, doc, meta, _ in self._get_ids(self.lpm, [f"profile:{user_id}"], {"documents", "metadatas"}):
            if meta.get("user_id") != user_id:
                continue
            body = json.loads(doc or "{}")
            return UserProfile(
                user_id=user_id,
                static=body.get("static", {}),
                traits={
                    group: {dim: TraitLevel(**t) for dim, t in dims.items()}
                    for group, dims in body.get("traits", {}).items()
                },
                updated_at=float(body.get("updated_at", 0.0)),
                set_by_person=list(body.get("set_by_person", [])),
            )
        return None

    def put_profile(self, profile: UserProfile, embedding: Vector) -> None:
        body = {
            "static": profile.static,
            "traits": {
                group: {dim: {"level": t.level, "evidence": t.evidence} for dim, t in dims.items()}
                for group, dims in profile.traits.items()
            },
            "updated_at": profile.updated_at,
            "set_by_person": profile.set_by_person,
        }
        self.lpm.upsert(
            ids=[f"profile:{profile.user_id}"],
            embeddings=np.asarray([embedding], dtype=np.float32),
            documents=[json.dumps(body, ensure_ascii=False)],
            metadatas=[{"kind": "profile", "user_id": profile.user_id}],
        )

    def list_facts(self, user_id: str, kind: FactKind) -> list[Fact]:
        facts = [
            Fact(
                id=fid,
                user_id=user_id,
                kind=kind,
                text=doc or "",
                created_at=float(meta["created_at"]),
                source_segment=str(meta.get("source_segment", "")),
                source_pages=json.loads(str(meta.get("source_pages") or "[]")),
                embedding=embedding,
                corrected_from=str(meta.get("corrected_from", "")),
                corrected_at=float(meta.get("corrected_at", 0.0)),
            )
            for fid, doc, meta, embedding in self._get_where(
                self.lpm, {"owner_kind": f"{user_id}|{kind}"}, PAGE_COLUMNS
            )
            if meta.get("user_id") == user_id and meta.get("kind") == kind
        ]
        return sorted(facts, key=lambda f: (f.created_at, f.id))

    def add_facts(self, facts: Sequence[Fact]) -> None:
        if not facts:
            return
        self._write(
            self.lpm.upsert,
            [f.id for f in facts],
            embeddings=np.asarray([np.asarray(f.embedding, dtype=np.float32) for f in facts]),
            documents=[f.text for f in facts],
            metadatas=[
                {
                    "kind": f.kind,
                    "user_id": f.user_id,
                    "owner_kind": f"{f.user_id}|{f.kind}",
                    "created_at": f.created_at,
                    "source_segment": f.source_segment,
                    "source_pages": json.dumps(f.source_pages),  # Chroma metadata holds scalars only
                    "corrected_from": f.corrected_from,
                    "corrected_at": f.corrected_at,
                }
                for f in facts
            ],
        )

    def delete_facts(self, user_id: str, fact_ids: Sequence[str]) -> None:
        if fact_ids:
            self._delete_owned(self.lpm, user_id, fact_ids)

    def profile_embedding(self, user_id: str) -> Vector | None:
        """The stored vector of the user's profile (get_profile returns the profile without it)."""
        for _, _, meta, embedding in self._get_ids(
            self.lpm, [f"profile:{user_id}"], {"metadatas", "embeddings"}
        ):
            if meta.get("user_id") == user_id:
                return embedding
        return None
