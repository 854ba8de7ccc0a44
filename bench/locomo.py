"""LoCoMo retrieval benchmark for memoryos-mcp: evidence recall of MemoryOS against flat baselines.

Every conversation of the LoCoMo split is replayed into a fresh user of an in-process memoryos-mcp server
through the MCP tools (`add_memory`, then `retrieve_memory` per question). Pages are built as the MemoryOS
paper's evaluation builds them: each speaker_a turn starts a page (`user_input`), the speaker_b turns after
it form its `agent_response`; image captions are appended to a turn as " (image description: ...)"; the
page's timestamp is its session's date; `metadata.turns` lists the page's dia_ids.

For every question of categories 1-4 the benchmark scores evidence recall (share of the question's
evidence dia_ids found among the turns of the returned pages) for

* memoryos default   — everything retrieve_memory returns by default: short-term + mid-term (top_k pages);
* memoryos mid-term @5 / @10 — the first k pages of the ranked mid-term list;
* flat baselines over the same pages at k = 5, 10, 20: dense (all-MiniLM-L6-v2, cosine), BM25 (bm25s) and
  reciprocal-rank fusion of the two (constant 60). Baseline text: "[YYYY-MM-DD] user_input agent_response";
* diagnostics (unless --no-diagnostics): where memoryos loses evidence — short-term only, all pages of the
  top-m segments (the segment-stage ceiling) and mid-term @10 searching up to 50 segments.

It also times ingestion (per conversation, and per add_memory call) and retrieve_memory (median, p95).

When a language model is configured (MEMORYOS_LLM_BASE_URL / --llm-base-url, --llm-model, --llm-api-key)
the server ingests through its LLM pipeline, and the benchmark also answers each question from
retrieve_memory's `context` with that model and scores token F1 and BLEU-1 against the gold answer.
Answers are normalised before scoring: lower-cased, punctuation removed, the articles a/an/the removed,
then split on whitespace (see `normalize_answer`).

Run from the repository root:

    .venv/bin/python bench/locomo.py                               # all five dev conversations (~7 min, 2 CPU cores)
    .venv/bin/python bench/locomo.py --conversations conv-26       # one conversation (~2 min)
    .venv/bin/python bench/locomo.py --out /tmp/locomo.json --keep-dir

The table goes to stdout, progress to stderr, the full results (including per-question records) to
--out (default bench/results/locomo.json).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import math
import re
import shutil
import statistics
import string
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from figures import percentile

if TYPE_CHECKING:
    from mcp import Client
    from openai import OpenAI
    from tqdm import tqdm

    from memoryos_mcp.service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "locomo.json"

CATEGORIES: dict[int, str] = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
BASELINE_KS = (5, 10, 20)
MEMORYOS_KS = (5, 10)
RRF_CONSTANT = 60
RRF_DEPTH = 25  # pages each ranking contributes to the fusion; 0 fuses the full rankings
QA_TIMEOUT_S = 30.0

_SESSION_KEY = re.compile(r"session_(\d+)")
_DIA_ID = re.compile(r"D:?(\d+):(\d+)")  # also repairs the odd "D:11:26" of the released data
_USER_ID_BAD = re.compile(r"[^A-Za-z0-9._-]")
_WORD = re.compile(r"[a-z0-9]+")

BM25_TOKENISATION = (
    "lower-case, split into runs of [a-z0-9], drop scikit-learn's ENGLISH_STOP_WORDS (318 words), "
    "no stemming; bm25s defaults (Lucene BM25, k1=1.5, b=0.75)"
)
ANSWER_TOKENISATION = (
    "lower-case; remove punctuation (ASCII punctuation and Unicode category P*); "
    "remove the articles a/an/the; split on whitespace"
)


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class BenchPage:
    """One page as the benchmark replays it."""

    user_input: str
    agent_response: str
    timestamp: str  # ISO-8601, the session's date and time
    turns: tuple[str, ...]  # dia_ids of the turns in the page

    @property
    def date(self) -> str:
        return self.timestamp[:10]

    @property
    def search_text(self) -> str:
        """What the flat baselines index: date, then both sides, no speaker names."""
        return f"[{self.date}] {self.user_input} {self.agent_response}".strip()


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    category: int
    evidence: tuple[str, ...]


@dataclass
class Conversation:
    sample_id: str
    user_id: str
    pages: list[BenchPage]
    questions: list[Question]
    # Evidence ids named by a question but matching no turn of the conversation (dropped from scoring).
    dropped_evidence: list[str] = field(default_factory=list)


def parse_session_time(text: str) -> str:
    """LoCoMo's "1:56 pm on 8 May, 2023" as ISO-8601 "2023-05-08T13:56:00"."""
    cleaned = re.sub(r"\s*,\s*", ", ", " ".join(text.split()))  # tolerate "8 May,2023" and stray spaces
    return datetime.strptime(cleaned, "%I:%M %p on %d %B, %Y").isoformat(timespec="seconds")


def turn_text(turn: Mapping[str, Any]) -> str:
    """A turn's text, with its image caption appended when it shared an image."""
    text = str(turn.get("text", "")).strip()
    caption = str(turn.get("blip_caption") or "").strip()
    return f"{text} (image description: {caption})" if caption else text


def session_keys(conversation: Mapping[str, Any]) -> list[str]:
    """session_1, session_2, ... in numeric order (session_10 after session_9)."""
    numbered = [(int(m.group(1)), key) for key in conversation if (m := _SESSION_KEY.fullmatch(key))]
    return [key for _, key in sorted(numbered)]


def build_pages(conversation: Mapping[str, Any]) -> list[BenchPage]:
    """Replay the sessions in order: a speaker_a turn opens a page, the speaker_b turns after it answer it.

    speaker_b turns that open a session, before any speaker_a turn, form a page with an empty user_input.
    """
    speaker_a = conversation["speaker_a"]
    pages: list[BenchPage] = []
    for key in session_keys(conversation):
        timestamp = parse_session_time(conversation[f"{key}_date_time"]) if conversation[key] else ""
        for opener, replies in _exchanges(conversation[key] or [], speaker_a):
            members = ([opener] if opener is not None else []) + replies
            pages.append(
                BenchPage(
                    user_input=turn_text(opener) if opener is not None else "",
                    agent_response=" ".join(turn_text(t) for t in replies),
                    timestamp=timestamp,
                    turns=tuple(str(t["dia_id"]) for t in members),
                )
            )
    return pages


def _exchanges(
    turns: Sequence[Mapping[str, Any]], speaker_a: str
) -> list[tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]]:
    """(speaker_a turn or None, the speaker_b turns after it) for one session, in order."""
    groups: list[tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]] = []
    for turn in turns:
        if turn["speaker"] == speaker_a:
            groups.append((turn, []))
        elif groups:
            groups[-1][1].append(turn)
        else:
            groups.append((None, [turn]))
    return groups


def normalise_evidence(raw: Iterable[Any]) -> list[str]:
    """Evidence dia_ids, repaired where the data is malformed ("D8:6; D9:17", "D:11:26"); unreadable ones go."""
    ids: list[str] = []
    for item in raw:
        ids.extend(f"D{int(m.group(1))}:{int(m.group(2))}" for m in _DIA_ID.finditer(str(item)))
    return list(dict.fromkeys(ids))


def sanitize_user_id(sample_id: str) -> str:
    return _USER_ID_BAD.sub("_", sample_id)[:64] or "locomo"


def load_conversations(path: Path, wanted: Sequence[str] | None = None) -> list[Conversation]:
    """The conversations of a LoCoMo file (all, or those named in `wanted`, in file order).

    Questions of category 5 and questions left without evidence are skipped; evidence ids that name no
    turn of the conversation are dropped (and listed in `dropped_evidence`).
    """
    samples = json.loads(path.read_text(encoding="utf-8"))
    by_id = {str(s["sample_id"]): s for s in samples}
    if wanted:
        missing = [w for w in wanted if w not in by_id]
        if missing:
            raise SystemExit(f"unknown conversation(s) {', '.join(missing)}; the file has {', '.join(by_id)}")
        samples = [s for s in samples if str(s["sample_id"]) in set(wanted)]
    conversations = []
    for sample in samples:
        pages = build_pages(sample["conversation"])
        known = {turn for page in pages for turn in page.turns}
        questions: list[Question] = []
        dropped: list[str] = []
        for qa in sample["qa"]:
            category = int(qa["category"])
            if category not in CATEGORIES:
                continue
            evidence = normalise_evidence(qa.get("evidence", []))
            dropped.extend(e for e in evidence if e not in known)
            evidence = [e for e in evidence if e in known]
            if not evidence:
                continue
            answer = qa.get("answer", "")
            questions.append(Question(str(qa["question"]), str(answer), category, tuple(evidence)))
        sid = str(sample["sample_id"])
        conversations.append(Conversation(sid, sanitize_user_id(sid), pages, questions, dropped))
    return conversations


# ---------------------------------------------------------------------------------------------- baselines


def bm25_tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric runs without English stop words (see BM25_TOKENISATION).

    The stop list is scikit-learn's (a dependency of sentence-transformers); of the tokenisations tried it
    reproduces the reference BM25 figures of the LoCoMo split most closely.
    """
    stopwords = _stopwords()
    return [t for t in _WORD.findall(text.lower()) if t not in stopwords]


@functools.cache
def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def rank_by_scores(scores: np.ndarray) -> np.ndarray:
    """Indexes, best score first; ties keep page order."""
    return np.argsort(-scores, kind="stable")


def reciprocal_rank_fusion(
    rankings: Sequence[np.ndarray], constant: int = RRF_CONSTANT, depth: int = RRF_DEPTH
) -> np.ndarray:
    """Fuse rankings: score(d) = Σ 1 / (constant + rank(d)) over the rankings whose first `depth` pages
    hold d (ranks counted from 1; depth 0 = whole rankings). Pages no ranking holds that deep follow, in
    page order."""
    n = len(rankings[0])
    fused = np.zeros(n, dtype=np.float64)
    for ranking in rankings:
        head = ranking[:depth] if depth > 0 else ranking
        fused[head] += 1.0 / (constant + np.arange(1, len(head) + 1))
    return rank_by_scores(fused)


class FlatBaselines:
    """Dense, BM25 and fused flat search over one conversation's pages."""

    def __init__(self, pages: Sequence[BenchPage], embedder: Any, rrf_depth: int = RRF_DEPTH) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        texts = [p.search_text for p in pages]
        self._embedder = embedder
        self._rrf_depth = rrf_depth
        self._matrix = np.asarray(embedder.embed(texts), dtype=np.float32)
        self._bm25 = bm25s.BM25()
        self._bm25.index([bm25_tokenize(t) for t in texts], show_progress=False)

    def rankings(self, queries: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """For each query the full page ranking of each method: {"dense": ..., "bm25": ..., "hybrid": ...}."""
        query_matrix = np.asarray(self._embedder.embed(list(queries)), dtype=np.float32)
        dense_scores = query_matrix @ self._matrix.T  # vectors are normalised: cosine = dot
        out = []
        for i, query in enumerate(queries):
            dense = rank_by_scores(dense_scores[i])
            bm25 = rank_by_scores(np.asarray(self._bm25.get_scores(bm25_tokenize(query)), dtype=np.float64))
            out.append(
                {
                    "dense": dense,
                    "bm25": bm25,
                    "hybrid": reciprocal_rank_fusion([dense, bm25], depth=self._rrf_depth),
                }
            )
        return out


# ---------------------------------------------------------------------------------------------- scoring


def evidence_recall(evidence: Sequence[str], found_turns: Iterable[str]) -> float:
    """Share of the evidence dia_ids among the turns found."""
    if not evidence:
        return 0.0
    found = set(found_turns)
    return sum(1 for e in evidence if e in found) / len(evidence)


def page_turns(page: Mapping[str, Any]) -> list[str]:
    """The dia_ids a returned page carries in metadata["turns"]."""
    raw = (page.get("metadata") or {}).get("turns", "")
    return str(raw).split()


def normalize_answer(text: str) -> list[str]:
    """Answer tokens for F1 and BLEU-1: lower-case, punctuation and articles (a, an, the) removed, split on
    whitespace."""
    lowered = str(text).lower()
    no_punct = "".join(
        " " if ch.isspace() else ch
        for ch in lowered
        if ch not in string.punctuation and not unicodedata.category(ch).startswith("P")
    )
    return [t for t in no_punct.split() if t not in {"a", "an", "the"}]


def f1_score(pred: str, gold: Any) -> float:
    """Token-level F1 of normalised answers (1.0 when both are empty, 0.0 when only one is)."""
    p, g = normalize_answer(pred), normalize_answer(str(gold))
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def bleu1(pred: str, gold: Any) -> float:
    """BLEU-1 of normalised answers: clipped unigram precision times the brevity penalty
    exp(1 − |gold| / |pred|) when the prediction is shorter than the gold answer (1.0 when both are empty)."""
    p, g = normalize_answer(pred), normalize_answer(str(gold))
    if not p or not g:
        return float(p == g)
    clipped = sum((Counter(p) & Counter(g)).values())
    precision = clipped / len(p)
    brevity = 1.0 if len(p) > len(g) else math.exp(1.0 - len(g) / len(p))
    return precision * brevity


QA_SYSTEM_PROMPT = (
    "You answer questions about earlier conversations, using only the memory you are given. "
    "Answer with a short phrase (a few words), not a sentence. For questions about when something happened, "
    "give the date or period as precisely as the memory allows, counting from the dates shown. "
    "If the memory does not say, give your best short guess."
)


def qa_messages(question: str, context: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": QA_SYSTEM_PROMPT},
        {"role": "user", "content": f"Memory:\n{context}\n\nQuestion: {question}\nShort answer:"},
    ]


def generate_answer(client: OpenAI, model: str, question: str, context: str, max_tokens: int = 64) -> str:
    """One short answer to `question` from the memory `context` (chat completion, temperature 0).

    Errors of the OpenAI client (timeouts, HTTP errors) propagate to the caller.
    """
    response = client.chat.completions.create(
        model=model,
        messages=qa_messages(question, context),  # type: ignore[arg-type]
        temperature=0,
        max_tokens=max_tokens,
    )
    if not response.choices:
        return ""
    return (response.choices[0].message.content or "").strip()


def make_qa_client(base_url: str | None, api_key: str | None, timeout_s: float = QA_TIMEOUT_S) -> OpenAI:
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=1)


# ---------------------------------------------------------------------------------------------- running


@dataclass
class QuestionRecord:
    conversation: str
    question: str
    answer: str
    category: int
    evidence: list[str]
    recall: dict[str, float]
    pages_returned: dict[str, int]
    short_term_turns: list[str]
    mid_term_turns: list[list[str]]  # per returned mid-term page, best first
    latency_ms: float
    segment_pages_capped: bool = False  # the segment-stage ceiling call hit its top_k cap of 100
    text_chars: dict[str, int] = field(default_factory=dict)  # per text method: characters of the tool's text
    prediction: str | None = None
    f1: float | None = None
    bleu1: float | None = None
    qa_error: str | None = None


@dataclass
class IngestRecord:
    conversation: str
    pages: int
    questions: int
    seconds: float
    ms_per_add: float
    ms_per_add_p95: float
    llm_calls: int
    short_term_pages: int
    mid_term_pages: int
    segments: int


class ToolFailed(RuntimeError):
    pass


async def call_tool(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return (await call_tool_text(client, name, arguments))[0]


async def call_tool_text(client: Client, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(structured content, the text a model reads)."""
    result = await client.call_tool(name, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        raise ToolFailed(f"{name} failed: {text}")
    if not isinstance(result.structured_content, dict):
        raise ToolFailed(f"{name} returned no structured content")
    return result.structured_content, text


_SHORT_PAGE_ID = re.compile(r"pg_[0-9a-f]{8}")


def turns_read(text: str, turns_of: Mapping[str, Sequence[str]]) -> list[Sequence[str]]:
    """The pages a model reads in a tool's text — found by the short ids the text shows (a full id starts
    with its short one) — each as its dia_ids."""
    return [turns_of[short] for short in dict.fromkeys(_SHORT_PAGE_ID.findall(text)) if short in turns_of]


@dataclass
class RunOptions:
    diagnostics: bool
    default_top_k: int
    qa_model: str | None
    budgets: tuple[int, ...] = ()  # max_tokens of the extra calls whose text is scored


async def diagnostic_pages(
    client: Client, uid: str, query: str, short: list[list[str]]
) -> tuple[dict[str, Sequence[Sequence[str]]], bool]:
    """Where memoryos loses evidence: short-term alone, every page of the top-m segments (the ceiling of the
    page stage; capped at 100, flagged when the cap bites) and the page stage over up to 50 segments."""
    ceiling = await call_tool(
        client, "retrieve_memory", {"query": query, "user_id": uid, "top_k": 100, "include_short_term": False}
    )
    capped = sum(int(s["page_count"]) for s in ceiling["segments"]) > len(ceiling["mid_term"])
    ceiling_pages = [page_turns(p) for p in ceiling["mid_term"]]
    wide = await call_tool(
        client,
        "retrieve_memory",
        {"query": query, "user_id": uid, "top_k": 10, "top_m": 50, "include_short_term": False},
    )
    pages: dict[str, Sequence[Sequence[str]]] = {
        "diag: short-term only": short,
        "diag: all pages of top-m segments": ceiling_pages,
        "diag: same + short-term": short + ceiling_pages,
        "diag: mid-term @10, top_m=50": [page_turns(p) for p in wide["mid_term"]],
    }
    return pages, capped


async def run_conversation(
    client: Client,
    conv: Conversation,
    baselines: FlatBaselines,
    options: RunOptions,
    qa_client: OpenAI | None,
    progress: tqdm,
) -> tuple[IngestRecord, list[QuestionRecord]]:
    uid = conv.user_id
    progress.set_description(f"{conv.sample_id} ingest")
    add_seconds: list[float] = []
    llm_calls = 0
    started = time.perf_counter()
    turns_of: dict[str, Sequence[str]] = {}  # short page id -> dia_ids
    for page in conv.pages:
        t0 = time.perf_counter()
        added = await call_tool(
            client,
            "add_memory",
            {
                "user_input": page.user_input,
                "agent_response": page.agent_response,
                "user_id": uid,
                "timestamp": page.timestamp,
                "metadata": {"turns": " ".join(page.turns)},
            },
        )
        add_seconds.append(time.perf_counter() - t0)
        turns_of[str(added["page_id"])[:11]] = page.turns
        llm_calls += int(added.get("llm_calls", 0))
        progress.update(1)
    ingest_seconds = time.perf_counter() - started
    stats = await call_tool(client, "memory_stats", {"user_id": uid})
    ingest = IngestRecord(
        conversation=conv.sample_id,
        pages=len(conv.pages),
        questions=len(conv.questions),
        seconds=round(ingest_seconds, 2),
        ms_per_add=round(1000 * statistics.fmean(add_seconds), 1),
        ms_per_add_p95=round(1000 * percentile(add_seconds, 95), 1),
        llm_calls=llm_calls,
        short_term_pages=int(stats["short_term_pages"]),
        mid_term_pages=int(stats["mid_term_pages"]),
        segments=int(stats["segments"]),
    )

    progress.set_description(f"{conv.sample_id} retrieve")
    flat = baselines.rankings([q.question for q in conv.questions])
    k_call = max(max(MEMORYOS_KS), options.default_top_k)
    records: list[QuestionRecord] = []
    for question, ranking in zip(conv.questions, flat, strict=True):
        t0 = time.perf_counter()
        got, text = await call_tool_text(
            client, "retrieve_memory", {"query": question.question, "user_id": uid, "top_k": k_call}
        )
        latency_ms = 1000 * (time.perf_counter() - t0)
        texts = {"memoryos text, default": text}
        for budget in options.budgets:
            _, texts[f"memoryos text ≤{budget} tokens"] = await call_tool_text(
                client, "retrieve_memory", {"query": question.question, "user_id": uid, "max_tokens": budget}
            )
        short = [page_turns(p) for p in got["short_term"]]
        mid = [page_turns(p) for p in got["mid_term"]]

        # Method name -> the pages it returned, each as its list of dia_ids.
        pages: dict[str, Sequence[Sequence[str]]] = {"memoryos default": short + mid[: options.default_top_k]}
        for k in MEMORYOS_KS:
            pages[f"memoryos mid-term @{k}"] = mid[:k]
        for method, shown in texts.items():  # what the model reads, not only what the structure holds
            pages[method] = turns_read(shown, turns_of)
        for method in ("dense", "bm25", "hybrid"):
            for k in BASELINE_KS:
                pages[f"{method} @{k}"] = [conv.pages[i].turns for i in ranking[method][:k]]
        capped = False
        if options.diagnostics:
            diagnostic, capped = await diagnostic_pages(client, uid, question.question, short)
            pages.update(diagnostic)

        record = QuestionRecord(
            conversation=conv.sample_id,
            question=question.question,
            answer=question.answer,
            category=question.category,
            evidence=list(question.evidence),
            recall={
                name: evidence_recall(question.evidence, [t for turns in found for t in turns])
                for name, found in pages.items()
            },
            pages_returned={name: len(found) for name, found in pages.items()},
            short_term_turns=[t for turns in short for t in turns],
            mid_term_turns=mid,
            latency_ms=round(latency_ms, 2),
            segment_pages_capped=capped,
            text_chars={method: len(shown) for method, shown in texts.items()},
        )
        if qa_client is not None and options.qa_model is not None:
            try:
                prediction = await asyncio.to_thread(
                    generate_answer,
                    qa_client,
                    options.qa_model,
                    question.question,
                    str(got.get("context", "")),
                )
            except Exception as exc:  # one failed answer scores 0 and is counted, the run goes on
                record.qa_error = f"{type(exc).__name__}: {exc}"
                prediction = ""
            record.prediction = prediction
            record.f1 = f1_score(prediction, question.answer)
            record.bleu1 = bleu1(prediction, question.answer)
        records.append(record)
        progress.update(1)
    return ingest, records


# ---------------------------------------------------------------------------------------------- reporting


def method_names(records: Sequence[QuestionRecord]) -> list[str]:
    names: list[str] = []
    for record in records:
        names.extend(n for n in record.recall if n not in names)
    return names


Row = dict[str, float | int | None]


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def by_category(records: Sequence[QuestionRecord], value: Any) -> Row:
    """Mean of value(record) per category and overall (mean over questions), with counts; None when a
    category has no question."""
    row: Row = {}
    for cat in CATEGORIES:
        vals = [value(r) for r in records if r.category == cat]
        row[f"cat{cat}"] = _mean(vals)
        row[f"n_cat{cat}"] = len(vals)
    row["overall"] = _mean([value(r) for r in records])
    row["n"] = len(records)
    return row


def recall_table(records: Sequence[QuestionRecord]) -> dict[str, Row]:
    table = {}
    for name in method_names(records):
        row = by_category(records, lambda r, n=name: r.recall[n])
        row["mean_pages"] = round(statistics.fmean(r.pages_returned[name] for r in records), 1)
        table[name] = row
    return table


def _cell(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_table(title: str, rows: Mapping[str, Row], extra: str | None = None) -> str:
    headers = [f"cat{c} {n}" for c, n in CATEGORIES.items()] + ["overall"]
    keys = [f"cat{c}" for c in CATEGORIES] + ["overall"]
    width = max(len(name) for name in rows) + 2
    cols = [max(len(h), 7) for h in headers]
    lines = [title, " " * width + "  ".join(h.rjust(w) for h, w in zip(headers, cols, strict=True))]
    if extra:
        lines[1] += f"  {extra.rjust(6)}"
    for name, row in rows.items():
        cells = "  ".join(_cell(row[k]).rjust(w) for k, w in zip(keys, cols, strict=True))
        line = name.ljust(width) + cells
        if extra:
            line += f"  {row[extra]:>6}"
        lines.append(line)
    any_row = next(iter(rows.values()))
    counts = [str(any_row[f"n_cat{c}"]) for c in CATEGORIES] + [str(any_row["n"])]
    lines.append(
        "n questions".ljust(width) + "  ".join(c.rjust(w) for c, w in zip(counts, cols, strict=True))
    )
    return "\n".join(lines)


def text_table(records: Sequence[QuestionRecord]) -> dict[str, dict[str, float]]:
    """Per text method: characters and estimated tokens (characters / 4) of the text a model reads."""
    table: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(m for r in records for m in r.text_chars):
        chars = [r.text_chars[method] for r in records if method in r.text_chars]
        tokens = [math.ceil(c / 4) for c in chars]
        table[method] = {
            "chars_mean": round(statistics.fmean(chars), 1),
            "tokens_mean": round(statistics.fmean(tokens), 1),
            "tokens_p95": round(percentile(tokens, 95), 1),
        }
    return table


def format_text(table: Mapping[str, Mapping[str, float]], recall: Mapping[str, Row]) -> str:
    lines = [
        "what the model reads: retrieve_memory's text (tokens estimated as characters / 4), and evidence recall "
        "over the pages it shows",
        f"{'':<34}{'chars mean':>12}{'tokens mean':>13}{'tokens p95':>12}{'recall':>9}",
    ]
    for method, row in table.items():
        lines.append(
            f"{method:<34}{row['chars_mean']:>12.0f}{row['tokens_mean']:>13.0f}{row['tokens_p95']:>12.0f}"
            f"{_cell(recall.get(method, {}).get('overall')):>9}"
        )
    return "\n".join(lines)


def format_ingest(ingest: Sequence[IngestRecord], latencies: Sequence[float]) -> str:
    lines = [
        "ingestion (add_memory over MCP, in-process)",
        f"{'conversation':<14}{'pages':>6}{'seconds':>9}{'ms/add':>8}{'p95':>8}{'segments':>10}{'mid pages':>11}"
        f"{'stm':>5}{'llm calls':>11}",
    ]
    for r in ingest:
        lines.append(
            f"{r.conversation:<14}{r.pages:>6}{r.seconds:>9.1f}{r.ms_per_add:>8.1f}{r.ms_per_add_p95:>8.1f}"
            f"{r.segments:>10}{r.mid_term_pages:>11}{r.short_term_pages:>5}{r.llm_calls:>11}"
        )
    total_pages = sum(r.pages for r in ingest)
    total_s = sum(r.seconds for r in ingest)
    lines.append(f"{'total':<14}{total_pages:>6}{total_s:>9.1f}{1000 * total_s / max(total_pages, 1):>8.1f}")
    lines.append(
        f"retrieve_memory latency (default call, top_k={max(MEMORYOS_KS)}): median {statistics.median(latencies):.1f} ms, "
        f"p95 {percentile(latencies, 95):.1f} ms over {len(latencies)} calls"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="LoCoMo evidence recall of memoryos-mcp (via MCP tools) against flat dense/BM25/hybrid search.",
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"LoCoMo JSON (default {DEFAULT_DATA})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument(
        "--conversations", default="", help="comma-separated sample ids, e.g. conv-26,conv-30 (default: all)"
    )
    parser.add_argument(
        "--keep-dir", action="store_true", help="keep the temporary Chroma data directory and print its path"
    )
    parser.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="skip the two extra retrieve_memory calls per question that show where recall is lost",
    )
    parser.add_argument(
        "--budgets",
        default="500,1000,2000,4000",
        help="max_tokens of extra retrieve_memory calls whose text is scored (comma-separated; '' for none)",
    )
    parser.add_argument(
        "--rrf-depth",
        type=int,
        default=RRF_DEPTH,
        help=f"pages of each ranking fused by the hybrid baseline (default {RRF_DEPTH}; 0 = whole rankings)",
    )
    parser.add_argument(
        "--llm-base-url", default=None, help="OpenAI-compatible endpoint (else MEMORYOS_LLM_BASE_URL)"
    )
    parser.add_argument("--llm-model", default=None, help="model name (else MEMORYOS_LLM_MODEL)")
    parser.add_argument(
        "--llm-api-key", default=None, help="API key (else MEMORYOS_LLM_API_KEY / OPENAI_API_KEY)"
    )
    return parser.parse_args(argv)


def build_settings(data_dir: Path, args: argparse.Namespace) -> Settings:
    from memoryos_mcp.service.settings import load_settings

    return load_settings(
        data_dir=data_dir,
        log_level="WARNING",
        llm_base_url=args.llm_base_url,
        llm_model=args.llm_model,
        llm_api_key=args.llm_api_key,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client
    from tqdm import tqdm

    from memoryos_mcp.adapters.embedder import make_embedder
    from memoryos_mcp.mcp.server import build_server

    wanted = [c.strip() for c in args.conversations.split(",") if c.strip()]
    conversations = load_conversations(args.data, wanted or None)
    data_dir = Path(tempfile.mkdtemp(prefix="memoryos-locomo-"))
    settings = build_settings(data_dir, args)
    qa_client: OpenAI | None = None
    qa_model: str | None = None
    if settings.llm_configured:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        qa_client = make_qa_client(settings.llm_base_url, key)
        qa_model = settings.llm_model
    options = RunOptions(
        diagnostics=not args.no_diagnostics,
        default_top_k=settings.top_k,
        qa_model=qa_model,
        budgets=tuple(int(b) for b in args.budgets.split(",") if b.strip()),
    )

    print(f"loading the embedding model for the baselines ({settings.embedding_model})...", file=sys.stderr)
    # The server's own backend: torch and ONNX Runtime in one process fight over the cores.
    embedder = make_embedder(settings.embedding_model, settings.embedding_device, settings.embedding_backend)
    ingest: list[IngestRecord] = []
    records: list[QuestionRecord] = []
    started = time.perf_counter()
    try:
        async with Client(build_server(settings)) as client:
            await call_tool(client, "memory_stats", {})  # waits for the server's model and store to load
            total = sum(len(c.pages) + len(c.questions) for c in conversations)
            with tqdm(total=total, file=sys.stderr, unit="call", dynamic_ncols=True) as progress:
                for conv in conversations:
                    progress.set_description(f"{conv.sample_id} baselines")
                    baselines = FlatBaselines(conv.pages, embedder, args.rrf_depth)
                    conv_ingest, conv_records = await run_conversation(
                        client, conv, baselines, options, qa_client, progress
                    )
                    ingest.append(conv_ingest)
                    records.extend(conv_records)
    finally:
        if args.keep_dir:
            print(f"Chroma data kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    latencies = [r.latency_ms for r in records]
    qa: dict[str, Any] | None = None
    if qa_model is not None:
        qa = {
            "model": qa_model,
            "tokenisation": ANSWER_TOKENISATION,
            "errors": sum(1 for r in records if r.qa_error),
            "f1": by_category(records, lambda r: r.f1 or 0.0),
            "bleu1": by_category(records, lambda r: r.bleu1 or 0.0),
        }
    return {
        "benchmark": "locomo evidence recall",
        "data": str(args.data),
        "conversations": [c.sample_id for c in conversations],
        "dropped_evidence_ids": {
            c.sample_id: c.dropped_evidence for c in conversations if c.dropped_evidence
        },
        "settings": {
            "embedding_model": settings.embedding_model,
            "stm_capacity": settings.stm_capacity,
            "stm_evict_batch": settings.stm_evict_batch,
            "theta": settings.theta,
            "top_m": settings.top_m,
            "top_k": settings.top_k,
            "chain_threshold": settings.chain_threshold,
            "llm_configured": settings.llm_configured,
            "llm_model": settings.llm_model if settings.llm_configured else None,
        },
        "bm25_tokenisation": BM25_TOKENISATION,
        "rrf_constant": RRF_CONSTANT,
        "rrf_depth": args.rrf_depth,
        "recall": recall_table(records),
        "text": text_table(records),
        "qa": qa,
        "ingest": [asdict(r) for r in ingest],
        "retrieve_latency_ms": {
            "median": round(statistics.median(latencies), 2) if latencies else None,
            "p95": round(percentile(latencies, 95), 2) if latencies else None,
            "calls": len(latencies),
        },
        "segment_ceiling_capped_questions": sum(1 for r in records if r.segment_pages_capped),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "questions": [asdict(r) for r in records],
    }


def report(results: Mapping[str, Any]) -> str:
    parts = [
        format_table(
            f"LoCoMo evidence recall, categories 1-4 ({', '.join(results['conversations'])}); "
            "mean_pages = pages returned per question",
            results["recall"],
            extra="mean_pages",
        ),
        f"BM25 tokenisation: {results['bm25_tokenisation']}.\nHybrid = reciprocal-rank fusion (constant "
        f"{results['rrf_constant']}) of the top {results['rrf_depth'] or 'all'} pages of dense and of BM25.",
    ]
    parts.append(format_text(results["text"], results["recall"]))
    if results["segment_ceiling_capped_questions"]:
        parts.append(
            f"note: for {results['segment_ceiling_capped_questions']} question(s) the top-m segments held more "
            "than 100 pages, so 'all pages of top-m segments' is a lower bound there."
        )
    parts.append(
        format_ingest(
            [IngestRecord(**r) for r in results["ingest"]], [q["latency_ms"] for q in results["questions"]]
        )
    )
    qa = results.get("qa")
    if qa:
        parts.append(
            format_table(
                f"answers by {qa['model']} from retrieve_memory's context ({qa['errors']} failed calls scored 0)",
                {"F1": qa["f1"], "BLEU-1": qa["bleu1"]},
            )
        )
        parts.append(f"answer tokenisation: {qa['tokenisation']}.")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"no LoCoMo file at {args.data}; pass --data", file=sys.stderr)
        return 2
    results = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print(report(results))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
