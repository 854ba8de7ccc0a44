"""Leave-one-conversation-out (LOO) evaluation of retrieval choices on LoCoMo.

bench/locomo.py measures what the server returns end to end, with its defaults. This program asks whether
those defaults were chosen honestly: every choice — a weight, a threshold, whether a cue is on — is made on
four conversations and scored on the fifth, rotating, and the mean of the five held-out folds is reported
next to the all-dev figure of the same choice made on all five.

To make that affordable each conversation is ingested once per *build* (what changes the stored state:
segmentation, the dialogue-context window) by an in-process MemoryOS with the real embedder and a real
Chroma store in a temporary directory, exactly as add_memory would (the bulk path: same pipeline, one
commit); then every *query-time* candidate (RetrievalWeights, top_m) ranks against that state, without
recording visits (visits move heat, not ranking). The flat baselines of bench/locomo.py run in the same
program on the same pages.

    .venv/bin/python bench/locomo_loo.py                      # LOO over the choices issue 11 made (~3 min)
    .venv/bin/python bench/locomo_loo.py --grid ablations     # each change alone, on the old defaults
    .venv/bin/python bench/locomo_loo.py --grid sentences     # the best-sentence re-ranking's weight
    .venv/bin/python bench/locomo_loo.py --grid speakers      # the named speaker's sentences or anyone's
    .venv/bin/python bench/locomo_loo.py --json bench/results/locomo_loo.json

Selection criterion on the training folds: mean mid-term recall @10 over their questions (ties: the
earlier candidate, i.e. the defaults first). Held-out figures are reported per fold and as the mean of the
five folds; per category they are pooled over the held-out questions.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from locomo import (
    CATEGORIES,
    DEFAULT_DATA,
    Conversation,
    FlatBaselines,
    evidence_recall,
    load_conversations,
)

from memoryos_mcp.core.embedding import embed_pages
from memoryos_mcp.core.memory import MemoryOS
from memoryos_mcp.core.pipeline import MemoryParams, rank_segments
from memoryos_mcp.core.recall import mean_direction
from memoryos_mcp.core.state import UserState
from memoryos_mcp.core.text import extract_keywords
from memoryos_mcp.core.weights import RetrievalWeights
from memoryos_mcp.index.cues import embedding_texts
from memoryos_mcp.index.page_index import PageIndexes

KS = (5, 10)
SELECT_ON = "mid@10"  # what a fold's training conversations are scored by when choosing a candidate


class CachedEmbedder:
    """The real embedder behind a memo: every page text is embedded once, in batches, for all builds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.memo: dict[str, np.ndarray] = {}

    def prime(self, texts: Iterable[str], batch: int = 64) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            for text, vector in zip(
                chunk, np.asarray(self.inner.embed(chunk), dtype=np.float32), strict=True
            ):
                self.memo[text] = vector

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.prime(texts)
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


@dataclass(frozen=True)
class Build:
    """What is fixed when pages are stored: the pipeline's parameters and the index's context window."""

    name: str
    params: MemoryParams = field(default_factory=MemoryParams)
    context_window: int = 1


@dataclass(frozen=True)
class Candidate:
    """One retrieval configuration: a build and the query-time choices."""

    name: str
    build: Build
    weights: RetrievalWeights = field(default_factory=RetrievalWeights)
    top_m: int = 5


@dataclass
class Built:
    """One conversation stored by one build."""

    conv: Conversation
    state: UserState
    query_embeddings: np.ndarray
    query_keywords: list[list[str]]
    seconds: float
    embedder: CachedEmbedder


def build_conversations(
    conversations: Sequence[Conversation], build: Build, embedder: CachedEmbedder, root: Path
) -> dict[str, Built]:
    """Store every conversation (one user each) with this build's parameters and return its cached state."""
    from memoryos_mcp.adapters.chroma_store import ChromaStore, make_client
    from memoryos_mcp.core.local_analyzer import LocalAnalyzer

    folder = Path(tempfile.mkdtemp(prefix=f"build-{build.name}-", dir=root))
    store = ChromaStore(make_client(data_dir=folder, host=None, port=8000, ssl=False), "loo")
    analyzer = LocalAnalyzer(chain_threshold=build.params.chain_threshold)
    memory = MemoryOS(
        store,
        embedder,
        analyzer,
        build.params,
        weights=RetrievalWeights(context_window=build.context_window),
        indexes=PageIndexes(),
    )
    out: dict[str, Built] = {}
    for conv in conversations:
        started = time.perf_counter()
        pages = []
        for page in conv.pages:
            stored = memory.new_page(
                conv.user_id,
                page.user_input,
                page.agent_response,
                page.timestamp,
                {"turns": " ".join(page.turns)},
            )
            pages.append(stored)
        embed_pages(embedder, pages)  # as add_memory and `memoryos-mcp import` do
        for start in range(0, len(pages), 200):  # import-sized chunks, as `memoryos-mcp import` writes them
            memory.add_pages(conv.user_id, pages[start : start + 200])
        state = memory.states.fresh(conv.user_id)
        questions = [q.question for q in conv.questions]
        out[conv.sample_id] = Built(
            conv=conv,
            state=state,
            query_embeddings=np.asarray(embedder.embed(questions), dtype=np.float32),
            query_keywords=[extract_keywords(q, limit=12) for q in questions],
            seconds=time.perf_counter() - started,
            embedder=embedder,
        )
    return out


def turns_of(page: Any) -> list[str]:
    return str(page.metadata.get("turns", "")).split()


def evaluate(built: Built, candidate: Candidate) -> list[dict[str, float]]:
    """Per question of the conversation: recall of mid-term @5/@10 and of the default (short-term + @10)."""
    state = built.state
    segments = list(state.segments.values())
    short = [t for page in state.stm for t in turns_of(page)]
    names = state.index.participants() if candidate.weights.strip_participants else frozenset()
    out = []
    for i, question in enumerate(built.conv.questions):
        embedding, keywords = built.query_embeddings[i], built.query_keywords[i]
        if names:  # as Recall does: embedded without the names of the people talking, and in their words
            texts = embedding_texts(question.question, names, first_person=candidate.weights.first_person)
            embedding = mean_direction(built.embedder.embed(texts))
        by_f = rank_segments(segments, embedding, keywords, len(segments))
        _, hits = state.index.rank(
            question.question,
            embedding,
            [s for s, _ in by_f],
            [f for _, f in by_f],
            top_m=candidate.top_m,
            top_k=max(KS),
            weights=candidate.weights,
        )
        ranked = [turns_of(page) for page, _ in hits]
        row = {f"mid@{k}": evidence_recall(question.evidence, [t for p in ranked[:k] for t in p]) for k in KS}
        row["default"] = evidence_recall(question.evidence, short + [t for p in ranked[:10] for t in p])
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- grids

BASE = Build("base")  # today's defaults
CHAIN045 = Build(
    "chain0.45", MemoryParams(chain_threshold=0.45)
)  # the LLM-free chain threshold before issue 11
# The query-time defaults before issue 11.
OLD_WEIGHTS = RetrievalWeights(
    lexical=0.6, time_cue=0.5, strip_participants=False, participant_df=0.0, first_person=False, sentence=0.0
)


def grid(name: str) -> list[Candidate]:
    """Candidate lists; the first of each is today's default (it wins ties).

    defaults:  the defaults alone (all-dev = LOO: nothing is chosen);
    ablations: the configuration before issue 11 (second), each change of issue 11 alone on top of it, and
               the defaults with each change taken back; each change is also judged by a LOO of its own
               (with or without it, chosen on four conversations, scored on the fifth);
    choices:   every combination of the choices issue 11 made — the LLM-free chain threshold, participants'
               names out of the query embedding (and the query also in first person), their BM25 idf
               floor, the lexical share, the time cue — so
               that LOO makes all of them on four conversations and scores them on the fifth;
    sentences: the weight of the re-ordering of the top pages by their best sentence (0: off);
    speakers:  that best sentence taken among the named speaker's own (index/sides.py) or anyone's, at a few
               weights.
    """
    default = Candidate("default", BASE)
    if name == "defaults":
        return [default]
    if name == "speakers":
        return [default] + [
            Candidate(f"{who} sentence weight {w}", BASE, RetrievalWeights(sentence=w, named_speaker=named))
            for named, who in ((True, "speaker's"), (False, "anyone's"))
            for w in (0.5, 0.8, 1.0)
            if (named, w) != (True, RetrievalWeights().sentence)
        ]
    if name == "sentences":
        return [default] + [
            Candidate(f"sentence weight {w}", BASE, RetrievalWeights(sentence=w))
            for w in (0.0, 0.3, 0.5, 1.0, 1.3)
        ]
    if name == "ablations":
        return [
            default,
            Candidate("before issue 11", CHAIN045, OLD_WEIGHTS),
            Candidate(
                "before + names out of the query embedding",
                CHAIN045,
                replace(OLD_WEIGHTS, strip_participants=True),
            ),
            Candidate(
                "before + names' BM25 idf floor 0.25", CHAIN045, replace(OLD_WEIGHTS, participant_df=0.25)
            ),
            Candidate(
                "before + lexical 0.5, time cue 1.0",
                CHAIN045,
                replace(OLD_WEIGHTS, lexical=0.5, time_cue=1.0),
            ),
            Candidate("before + chain threshold 0.2", BASE, OLD_WEIGHTS),
            Candidate(
                "default - names back in the query embedding",
                BASE,
                RetrievalWeights(strip_participants=False, first_person=False),
            ),
            Candidate(
                "before + names out, query also in first person",
                CHAIN045,
                replace(OLD_WEIGHTS, strip_participants=True, first_person=True),
            ),
            Candidate("default - names' BM25 idf floor", BASE, RetrievalWeights(participant_df=0.0)),
            Candidate("default - query not also in first person", BASE, RetrievalWeights(first_person=False)),
            Candidate(
                "default - lexical 0.6, time cue 0.5 again", BASE, RetrievalWeights(lexical=0.6, time_cue=0.5)
            ),
            Candidate("default - chain threshold 0.45 again", CHAIN045),
            Candidate("before + best-sentence re-ranking 0.8", CHAIN045, replace(OLD_WEIGHTS, sentence=0.8)),
            Candidate("default - best-sentence re-ranking", BASE, RetrievalWeights(sentence=0.0)),
            Candidate(
                "default - the named speaker's sentences (anyone's)",
                BASE,
                RetrievalWeights(named_speaker=False),
            ),
            Candidate(
                "default - questions skipped for the best sentence",
                BASE,
                RetrievalWeights(skip_questions=False),
            ),
        ]
    if name == "choices":
        out = [default]
        for build in (BASE, CHAIN045):
            # names in the query embedding: out and also in first person (I), out (-), kept (+)
            for names, strip, first in (("I", True, True), ("-", True, False), ("+", False, False)):
                for floor in (0.25, 0.0):
                    for lexical in (0.5, 0.4, 0.6):
                        for time_cue in (1.0, 0.5):
                            weights = RetrievalWeights(
                                lexical=lexical,
                                time_cue=time_cue,
                                strip_participants=strip,
                                participant_df=floor,
                                first_person=first,
                            )
                            if (build, weights) != (BASE, RetrievalWeights()):
                                label = f"{build.name} names{names} floor{floor} lex{lexical} time{time_cue}"
                                out.append(Candidate(label, build, weights))
        return out
    raise SystemExit(f"unknown grid {name!r}: defaults, ablations, choices, sentences or speakers")


# ---------------------------------------------------------------------------------------------- LOO


Scores = dict[str, dict[str, list[dict[str, float]]]]  # candidate -> conversation -> per-question rows


def mean_of(rows: Sequence[Mapping[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows) if rows else float("nan")


def choose(scores: Scores, candidates: Sequence[Candidate], train: Sequence[str]) -> Candidate:
    """The candidate with the best mean SELECT_ON over the training conversations' questions."""
    best, best_value = candidates[0], -1.0
    for candidate in candidates:
        rows = [r for sid in train for r in scores[candidate.name][sid]]
        value = mean_of(rows, SELECT_ON)
        if value > best_value + 1e-12:
            best, best_value = candidate, value
    return best


@dataclass
class Fold:
    held_out: str
    chosen: str
    train_value: float
    held_out_values: dict[str, float]


def leave_one_out(
    scores: Scores, candidates: Sequence[Candidate], sids: Sequence[str]
) -> tuple[list[Fold], dict[str, list[dict[str, float]]]]:
    """Each conversation held out in turn; returns the folds and the held-out rows of each conversation."""
    folds, held = [], {}
    for sid in sids:
        train = [s for s in sids if s != sid]
        chosen = choose(scores, candidates, train)
        rows = scores[chosen.name][sid]
        held[sid] = rows
        folds.append(
            Fold(
                held_out=sid,
                chosen=chosen.name,
                train_value=round(mean_of([r for s in train for r in scores[chosen.name][s]], SELECT_ON), 4),
                held_out_values={k: round(mean_of(rows, k), 4) for k in rows[0]},
            )
        )
    return folds, held


# ---------------------------------------------------------------------------------------------- report


def category_row(
    rows_by_conv: Mapping[str, Sequence[Mapping[str, float]]], convs: Mapping[str, Conversation], key: str
) -> dict[str, float]:
    """Mean of `key` per category and overall, pooled over the questions of the given conversations."""
    pairs = [
        (q.category, r[key])
        for sid, rows in rows_by_conv.items()
        for q, r in zip(convs[sid].questions, rows, strict=True)
    ]
    out = {CATEGORIES[c]: round(statistics.fmean(v for cat, v in pairs if cat == c), 4) for c in CATEGORIES}
    out["overall"] = round(statistics.fmean(v for _, v in pairs), 4)
    return out


def format_rows(title: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    cols = [*CATEGORIES.values(), "overall"]
    width = max(len(n) for n in rows) + 2
    lines = [title, " " * width + "  ".join(c.rjust(11) for c in cols)]
    for name, row in rows.items():
        lines.append(name.ljust(width) + "  ".join(f"{row[c]:.3f}".rjust(11) for c in cols))
    return "\n".join(lines)


def flat_rows(
    conversations: Sequence[Conversation], embedder: Any
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Flat dense / BM25 / hybrid @5/@10/@20 per question, as bench/locomo.py scores them."""
    out: dict[str, dict[str, list[dict[str, float]]]] = {}
    for conv in conversations:
        rankings = FlatBaselines(conv.pages, embedder).rankings([q.question for q in conv.questions])
        rows = []
        for q, ranking in zip(conv.questions, rankings, strict=True):
            row = {}
            for method in ("dense", "bm25", "hybrid"):
                for k in (5, 10, 20):
                    turns = [t for i in ranking[method][:k] for t in conv.pages[i].turns]
                    row[f"{method} @{k}"] = evidence_recall(q.evidence, turns)
            rows.append(row)
        out[conv.sample_id] = rows
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Leave-one-conversation-out evaluation of retrieval choices on LoCoMo."
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--grid",
        default="choices",
        help="candidate list: defaults, ablations, choices (default), sentences or speakers",
    )
    parser.add_argument("--conversations", default="", help="comma-separated sample ids (default: all)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the flat baselines")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--dump", type=Path, default=None, help="write per-question rows of every candidate here"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from memoryos_mcp.adapters.embedder import make_embedder

    wanted = [c.strip() for c in args.conversations.split(",") if c.strip()]
    conversations = load_conversations(args.data, wanted or None)
    convs = {c.sample_id: c for c in conversations}
    sids = [c.sample_id for c in conversations]
    candidates = grid(args.grid)
    started = time.perf_counter()
    embedder = CachedEmbedder(make_embedder())
    embedder.prime(
        " ".join(p for p in (page.user_input.strip(), page.agent_response.strip()) if p)
        for c in conversations
        for page in c.pages
    )
    print(
        f"embedded {len(embedder.memo)} page texts in {time.perf_counter() - started:.0f} s", file=sys.stderr
    )

    root = Path(tempfile.mkdtemp(prefix="memoryos-loo-"))
    scores: Scores = {}
    try:
        builds: dict[str, dict[str, Built]] = {}
        for candidate in candidates:
            if candidate.build.name not in builds:
                t0 = time.perf_counter()
                builds[candidate.build.name] = build_conversations(
                    conversations, candidate.build, embedder, root
                )
                print(f"build {candidate.build.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            t0 = time.perf_counter()
            scores[candidate.name] = {
                sid: evaluate(b, candidate) for sid, b in builds[candidate.build.name].items()
            }
            all_dev = mean_of([r for sid in sids for r in scores[candidate.name][sid]], SELECT_ON)
            print(
                f"  {candidate.name:<40} mid@10 {all_dev:.4f}  ({time.perf_counter() - t0:.1f} s)",
                file=sys.stderr,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    default = candidates[0]  # what the server ships: its all-dev figure stands beside the LOO one
    best_all = choose(scores, candidates, sids)
    folds, held = leave_one_out(scores, candidates, sids)
    keys = (("default", "short-term + @10"), ("mid@5", "mid-term @5"), ("mid@10", "mid-term @10"))
    tables: dict[str, dict[str, float]] = {}
    for key, label in keys:
        tables[f"all-dev, defaults: {label}"] = category_row(scores[default.name], convs, key)
    for key, label in keys:
        tables[f"LOO held-out (pooled): {label}"] = category_row(held, convs, key)
    if not args.no_baselines:
        flat = flat_rows(conversations, embedder.inner)
        for name in flat[sids[0]][0]:
            tables[f"flat {name}"] = category_row(flat, convs, name)
    print(
        format_rows(
            f"LoCoMo evidence recall ({', '.join(sids)}), grid {args.grid!r}: {len(candidates)} candidate(s)",
            tables,
        )
    )
    print()
    print(
        f"{'held out':<10}{'chosen on the other four':<46}{'train @10':>10}{'@5':>8}{'@10':>8}{'default':>9}"
    )
    for f in folds:
        v = f.held_out_values
        print(
            f"{f.held_out:<10}{f.chosen:<46}{f.train_value:>10.4f}{v['mid@5']:>8.4f}{v['mid@10']:>8.4f}{v['default']:>9.4f}"
        )
    metrics = ("mid@5", "mid@10", "default")
    fold_mean = {k: round(statistics.fmean(f.held_out_values[k] for f in folds), 4) for k in metrics}
    conv_mean = {
        k: round(statistics.fmean(mean_of(scores[default.name][sid], k) for sid in sids), 4) for k in metrics
    }
    print(
        f"{'LOO fold mean':<66}{fold_mean['mid@5']:>8.4f}{fold_mean['mid@10']:>8.4f}{fold_mean['default']:>9.4f}"
    )
    print(
        f"{'defaults on each conversation, mean of the five':<66}{conv_mean['mid@5']:>8.4f}{conv_mean['mid@10']:>8.4f}{conv_mean['default']:>9.4f}"
    )
    print(f"chosen on all five: {best_all.name}")
    pairwise = {}
    if args.grid == "ablations":  # each change judged on its own: LOO between having it and not
        for candidate in candidates[2:]:
            # "before + X": X is the change; "default - X": the defaults are the change.
            without, with_ = (
                (candidates[1], candidate) if candidate.name.startswith("before") else (candidate, default)
            )
            pair_folds, _ = leave_one_out(scores, [without, with_], sids)
            pairwise[candidate.name] = {
                "folds_keeping_the_change": sum(f.chosen == with_.name for f in pair_folds),
                "fold_mean": {
                    k: round(statistics.fmean(f.held_out_values[k] for f in pair_folds), 4) for k in metrics
                },
            }
    print()
    print(
        f"{'candidate':<48}{'@5':>7}{'@10':>7}{'default':>8}{'multi-hop':>10}{'open-dom':>9}  LOO of the change alone"
    )
    for candidate in candidates:
        rows = [r for sid in sids for r in scores[candidate.name][sid]]
        cats = category_row(scores[candidate.name], convs, "mid@10")
        line = (
            f"{candidate.name:<48}{mean_of(rows, 'mid@5'):>7.3f}{mean_of(rows, 'mid@10'):>7.3f}{mean_of(rows, 'default'):>8.3f}"
            f"{cats['multi-hop']:>10.3f}{cats['open-domain']:>9.3f}"
        )
        if candidate.name in pairwise:
            pair = pairwise[candidate.name]
            line += f"  kept on {pair['folds_keeping_the_change']}/5 folds, held-out @10 {pair['fold_mean']['mid@10']:.3f}"
        print(line)
    print(f"\nwall {time.perf_counter() - started:.0f} s", file=sys.stderr)
    figures = {
        "grid": args.grid,
        "candidates": [c.name for c in candidates],
        "selected_on": SELECT_ON,
        "chosen_on_all": best_all.name,
        "tables": tables,
        "folds": [f.__dict__ for f in folds],
        "fold_mean": fold_mean,
        "defaults_conversation_mean": conv_mean,
        "pairwise_loo": pairwise,
        "candidate_all_dev_mid@10": {
            c.name: round(mean_of([r for sid in sids for r in scores[c.name][sid]], SELECT_ON), 4)
            for c in candidates
        },
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if args.dump:
        args.dump.parent.mkdir(parents=True, exist_ok=True)
        args.dump.write_text(json.dumps(scores) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
