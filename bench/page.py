"""The memory page's views at scale: overview, pages, search and facts of one user with 10k pages.

    .venv/bin/python bench/scale.py --sizes 10000 --no-users --keep-dir D --reuse   # once: D/imported-10000
    .venv/bin/python bench/page.py --data-dir D/imported-10000

Works on a copy of the data dir (the kept import stays as it was). An import is made without a model, so the
user has no facts: the copy is given `--facts` facts (default 150, each learned from three of the user's
pages, embedded like promoted ones) so that the facts view has something to show. The page is then served as
a stdio server serves it (a loopback listener in a thread of the process that holds the store), entered with
the address the memory_page tool gives (a single-use ticket), and each view is fetched over real HTTP
`--rounds` times (a warm-up first): the overview (counts, every segment's heat, pages per day), the newest
pages, a search (each query of the synthetic
benchmark and user turns of the history: ranked as retrieve_memory ranks, without recording visits, every
result explained) and the facts. retrieve_memory is timed in-process on the same queries, as the tool runs
it, for the issue's comparison (search ≤ retrieve + 30 ms). Targets: p95 ≤ 150 ms for every view.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import percentile, report_figures  # noqa: E402
from screen import queries  # noqa: E402

from memoryos_mcp.core.models import Fact  # noqa: E402
from memoryos_mcp.service.facade import MemoryService  # noqa: E402
from memoryos_mcp.service.settings import load_settings  # noqa: E402


def give_facts(service: MemoryService, user: str, wanted: int, seed: int = 0) -> int:
    """Facts learned from the user's pages (as promotions store them) until the user has `wanted`."""
    memory = service.memory
    have = sum(len(memory.store.list_facts(user, kind)) for kind in ("user_fact", "assistant_trait"))
    missing = max(0, wanted - have)
    if not missing:
        return have
    pages = [p.id for p in service.list_memories(user, "pages", limit=200).pages or []]
    rng = random.Random(seed)
    texts = [
        f"The user mentioned topic {i}: {rng.choice(['hiking', 'cooking', 'a trip', 'work'])}"
        for i in range(missing)
    ]
    vectors = memory.embedder.embed(texts)
    now = time.time()
    facts = [
        Fact(
            id=uuid.uuid4().hex,
            user_id=user,
            kind="user_fact" if i % 4 else "assistant_trait",
            text=text,
            created_at=now - i,
            embedding=vector,
            source_pages=rng.sample(pages, min(3, len(pages))),
        )
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]
    memory.store.add_facts(facts)
    memory.states.drop(user)  # written past the change log: the user's cached state is read again
    return have + missing


def timed(fetch: Callable[[], object], rounds: int, warm: bool = True) -> list[float]:
    if warm:
        fetch()  # the first call of a view reads what later ones find cached
    spent = []
    for _ in range(rounds):
        start = time.perf_counter()
        fetch()
        spent.append((time.perf_counter() - start) * 1000)
    return spent


def main() -> int:
    import httpx

    from memoryos_mcp.service.validation import MAX_TOKENS_CAP
    from memoryos_mcp.web.host import MemoryPage

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="a data dir kept by bench/scale.py")
    parser.add_argument("--user", default="bench")
    parser.add_argument("--rounds", type=int, default=60, help="fetches of each view (default 60)")
    parser.add_argument("--queries", type=int, default=60, help="search queries (default 60)")
    parser.add_argument("--facts", type=int, default=150)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    history = args.data_dir.parent / f"history-{args.data_dir.name.split('-')[-1]}.jsonl"

    with tempfile.TemporaryDirectory(prefix="memoryos-page-") as tmp:
        data_dir = Path(tmp) / "data"
        shutil.copytree(args.data_dir, data_dir)
        settings = load_settings(data_dir=data_dir, user_id=args.user, ui_port=0)
        service = MemoryService.create(settings)
        facts = give_facts(service, args.user, args.facts)
        page = MemoryPage(settings).listen_on_attach()
        page.attach(lambda: service)
        try:
            address = page.address(args.user)
            assert address is not None and page.url is not None
            client = httpx.Client(base_url=page.url, timeout=60)
            assert client.get(address, follow_redirects=True).status_code == 200

            def view(path: str, **params: str) -> Callable[[], object]:
                def fetch() -> object:
                    response = client.get(path, params={"user": args.user, **params})
                    response.raise_for_status()
                    return response

                return fetch

            # what is timed shows what it should: every fact, search results with why, the segments' heat
            shown = {
                path: view(path, **q)().text
                for path, q in (("/facts", {}), ("/pages", {"q": "hiking"}), ("/", {}))
            }  # type: ignore[attr-defined]
            assert shown["/facts"].count("<li") >= facts, "the facts view does not list every fact"
            assert 'class="why"' in shown["/pages"], "the search shows no result with why"
            assert "<svg" in shown["/"], "the overview has no heat picture"
            asked = queries(history, args.queries)
            figures: dict[str, object] = {"pages": len(service.memory.state(args.user).index), "facts": facts}
            view("/pages", q="warm-up")()
            searches: list[float] = []
            for query in asked:
                searches += timed(view("/pages", q=query), 1, warm=False)
            retrieves: list[float] = []
            for query in asked:
                retrieves += timed(lambda q=query: service.retrieve_memory(q, args.user), 1, warm=False)
            explained: list[float] = []
            for query in asked:
                explained += timed(
                    lambda q=query: service.retrieve_memory(
                        q,
                        args.user,
                        include_short_term=False,
                        max_tokens=MAX_TOKENS_CAP,
                        explain=True,
                        record_visits=False,
                    ),
                    1,
                    warm=False,
                )
            for name, path in (
                ("overview", "/"),
                ("pages", "/pages"),
                ("facts", "/facts"),
                ("segments", "/segments"),
            ):
                spent = timed(view(path), args.rounds)
                figures[f"{name} p50/p95 ms"] = f"{percentile(spent, 50):.1f} / {percentile(spent, 95):.1f}"
            for name, spent in (
                ("search (page) p50/p95 ms", searches),
                ("retrieve_memory (tool, in-process) p50/p95 ms", retrieves),
                ("retrieve_memory as the page asks it p50/p95 ms", explained),
            ):
                figures[name] = f"{percentile(spent, 50):.1f} / {percentile(spent, 95):.1f}"
            figures["search p95 - retrieve p95 ms"] = round(
                percentile(searches, 95) - percentile(retrieves, 95), 1
            )
            figures["active segments"] = len(service.memory.state(args.user).segments)
            report_figures(figures, args.json)
        finally:
            page.detach()
    return 0


if __name__ == "__main__":
    sys.exit(main())
