"""Console script `memoryos-mcp`: serve (default) over stdio or streamable HTTP, run a terminal demo, import
JSON Lines or a memory export, export a memory, and list / forget / stats for operators.

Logging goes to stderr only: on stdio, stdout is the MCP protocol channel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import TextIO

from memoryos_mcp import __version__
from memoryos_mcp.core.errors import ConfigurationError, MemoryOSError
from memoryos_mcp.service.settings import Settings, load_settings


def _configure_logging(verbosity: int) -> None:
    level = {0: "WARNING", 1: "INFO"}.get(verbosity, "DEBUG")
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # Chroma and transformers are chatty at INFO; keep them quiet unless -vv.
    for noisy in ("chromadb", "httpx", "sentence_transformers", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (also MEMORYOS_CONFIG)")
    parser.add_argument("--data-dir", dest="data_dir", help="embedded Chroma directory (default ~/.memoryos)")
    parser.add_argument("--chroma-host", dest="chroma_host", help="use a Chroma server at this host instead")
    parser.add_argument(
        "--chroma-port", dest="chroma_port", type=int, help="Chroma server port (default 8000)"
    )
    parser.add_argument("--user-id", dest="user_id", help="default user_id for calls that give none")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memoryos-mcp", description="MemoryOS-style long-term memory as an MCP server"
    )
    parser.add_argument("--version", action="version", version=f"memoryos-mcp {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the MCP server (default command)")
    _add_common(serve)
    serve.add_argument("--transport", choices=["stdio", "streamable-http"], help="default stdio")
    serve.add_argument("--host", help="bind address for streamable HTTP (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port for streamable HTTP (default 8765)")
    serve.add_argument(
        "--no-ui", dest="ui", action="store_false", default=None, help="do not serve the memory page"
    )
    serve.add_argument("--ui-port", type=int, help="loopback port of the memory page on stdio (default 8766)")
    page = sub.add_parser(
        "ui",
        help="print (and open) the memory page of a data directory",
        description="Print the address of the memory page of the server that holds this data directory (found in "
        "<data_dir>/page.json); when no server holds it, serve the store's page here until Ctrl-C.",
    )
    _add_common(page)
    page.add_argument("--open", action="store_true", help="open the address in the default browser")
    page.add_argument(
        "--ui-port", type=int, help="port to serve on when no server holds the store (default 8766)"
    )
    demo = sub.add_parser("demo", help="store a short conversation and search it, in this terminal")
    _add_common(demo)
    bulk = sub.add_parser(
        "import",
        help="import JSON Lines (one add_memory-shaped object per line) through the memory model, batched",
        description="Import JSON Lines: one object per line with user_input, agent_response and optionally "
        "timestamp, metadata, user_id, idempotency_key. Re-running imports nothing twice. Exit status: 0 when "
        "every line was imported or already present, 1 when some lines failed (the rest are imported), 2 on "
        "an error that stopped the import.",
    )
    _add_common(bulk)
    bulk.add_argument("file", help="JSON Lines file, or - for standard input")
    bulk.add_argument(
        "--chunk-size", type=int, default=256, help="pages per embedding call and write (default 256)"
    )
    bulk.add_argument(
        "--sentences",
        choices=["later", "now"],
        default="later",
        help="embed each page's sentences now (~2.5x the time), or later: the server fills them in in the "
        "background while every page is already retrievable (default later)",
    )
    bulk.description += (
        " A file written by `memoryos-mcp export` is recognised by its first line and restored exactly (every "
        "tier, with its vectors); a user who already has different memory here is refused, not merged."
    )
    export = sub.add_parser(
        "export",
        help="write the memory of one user (or all) as JSON Lines that `import` restores exactly",
        description="Export every tier of a user's memory — pages, segments, chain, facts with provenance, profile, "
        "with their vectors — as versioned JSON Lines. Progress and the summary go to stderr. Exit status: 0 "
        "when done, 1 when a user was written to while being exported, 2 on an error.",
    )
    _add_common(export)
    export.add_argument("--all-users", action="store_true", help="export every user in the store")
    export.add_argument("--out", "-o", help="file to write (default: standard output)")
    backfill = sub.add_parser(
        "embed-sentences",
        help="embed the sentences of pages stored by an older version (retrieval ranks by them)",
        description="Give every page of a user (or all) that has no sentence vectors — pages stored before "
        "memoryos-mcp embedded them — its sentence vectors: both tiers, archived segments too. Running servers "
        "take the new vectors on their next call. Stopping and running it again embeds nothing twice. "
        "Embedded store: with the server stopped; or against a Chroma server.",
    )
    _add_common(backfill)
    backfill.add_argument("--all-users", action="store_true", help="every user in the store")
    _add_control(sub)
    return parser


def _add_control(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """list / forget / stats: the list_memories, forget_memory and memory_stats tools for operators."""
    listing = sub.add_parser(
        "list",
        help="list a user's memories, newest first (JSON Lines on stdout)",
        description="List pages, segments or facts of a user, newest first, one JSON object per line (the "
        "list_memories tool's items). Embedded store: with the server stopped; or against a Chroma server.",
    )
    _add_common(listing)
    listing.add_argument("--kind", choices=["pages", "segments", "facts"], default="pages")
    listing.add_argument("--tier", choices=["short_term", "mid_term", "all"], default="all")
    listing.add_argument("--since", help="only items dated on or after this ISO date or datetime")
    listing.add_argument("--until", help="only items dated on or before this ISO date or datetime")
    listing.add_argument("--limit", type=int, default=0, help="at most this many items (default: all)")
    forget = sub.add_parser(
        "forget",
        help="forget pages, facts, a period or everything of a user (prints what was removed as JSON)",
        description="The forget_memory tool: removes pages from every tier with what was learned only from "
        "them. Embedded store: with the server stopped; or against a Chroma server.",
    )
    _add_common(forget)
    forget.add_argument(
        "--page-id", dest="page_ids", action="append", default=[], help="a page id (repeatable)"
    )
    forget.add_argument(
        "--fact-id", dest="fact_ids", action="append", default=[], help="a fact id (repeatable)"
    )
    forget.add_argument("--before", help="forget every page dated before this ISO date or datetime")
    forget.add_argument("--all", dest="everything", action="store_true", help="forget everything of the user")
    forget.add_argument("--confirm", help="with --all: the user id again")
    forget.add_argument(
        "--dry-run", action="store_true", help="print what would be forgotten (the cascade), change nothing"
    )
    update = sub.add_parser(
        "update",
        help="correct a fact's text or set / remove a profile entry (prints the result as JSON)",
        description="The update_memory tool: the person's correction, which later learning never overwrites. "
        "Embedded store: with the server stopped; or against a Chroma server.",
    )
    _add_common(update)
    update.add_argument("--fact-id", help="the fact to correct (with --text)")
    update.add_argument("--text", help="with --fact-id: what the fact says now")
    update.add_argument("--profile-key", help="a profile entry to set (with --profile-value) or remove")
    update.add_argument("--profile-value", help="with --profile-key: its value; leave it out to remove it")
    stats = sub.add_parser("stats", help="counts per memory tier for a user (JSON)")
    _add_common(stats)


def list_memories(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from memoryos_mcp.service.facade import MemoryService

    if args.limit < 0:
        raise ConfigurationError("--limit must be 0 (all) or more")
    service = MemoryService.create(_settings(args))
    cursor, shown = None, 0
    while True:
        step = 200 if not args.limit else min(200, args.limit - shown)
        page = service.list_memories(None, args.kind, args.tier, args.since, args.until, step, cursor)
        items = page.pages or page.segments or page.facts or []
        for item in items:
            out.write(item.model_dump_json() + "\n")
        shown += len(items)
        cursor = page.next_cursor
        if cursor is None or (args.limit and shown >= args.limit):
            break
    if args.kind == "facts" and page.profile is not None and (page.profile.static or page.profile.traits):
        out.write(json.dumps({"profile": page.profile.model_dump()}, ensure_ascii=False) + "\n")
    return 0


def forget(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from memoryos_mcp.service.facade import MemoryService

    service = MemoryService.create(_settings(args))
    result = service.forget_memory(
        None, args.page_ids, args.fact_ids, args.before, args.everything, args.confirm, args.dry_run
    )
    out.write(result.model_dump_json(indent=2) + "\n")
    return 0


def update(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from memoryos_mcp.service.facade import MemoryService

    service = MemoryService.create(_settings(args))
    result = service.update_memory(None, args.fact_id, args.text, args.profile_key, args.profile_value)
    out.write(result.model_dump_json(indent=2) + "\n")
    return 0


def stats(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from memoryos_mcp.service.facade import MemoryService

    service = MemoryService.create(_settings(args))
    out.write(service.stats().model_dump_json(indent=2) + "\n")
    return 0


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    fields = {k: getattr(args, k, None) for k in ("data_dir", "chroma_host", "chroma_port", "user_id")}
    return load_settings(args.config, **fields, **extra)


def serve(args: argparse.Namespace) -> int:
    settings = _settings(
        args, transport=args.transport, host=args.host, port=args.port, ui=args.ui, ui_port=args.ui_port
    )
    from memoryos_mcp.cli import page
    from memoryos_mcp.service.wiring import prepare_to_serve

    prepare_to_serve(settings)
    page.serve(settings)
    return 0


def ui(args: argparse.Namespace) -> int:
    from memoryos_mcp.cli import page

    return page.ui(_settings(args, ui_port=args.ui_port), args.user_id, args.open)


def demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from tqdm import tqdm

    from memoryos_mcp.cli.demo import CONVERSATION, QUESTIONS

    tmp = None
    if args.data_dir is None and args.chroma_host is None:
        tmp = tempfile.TemporaryDirectory(prefix="memoryos-demo-")
        args.data_dir = tmp.name
    settings = _settings(args)
    from memoryos_mcp.service.facade import MemoryService

    out.write(f"memoryos-mcp demo — data in {settings.chroma_host or settings.data_dir}\n")
    started = time.monotonic()
    out.write("loading Chroma and the embedding model…\n")
    out.flush()
    service = MemoryService.create(settings)
    out.write(f"ready in {time.monotonic() - started:.1f} s\n\n")
    user = "demo-user"
    moved = 0
    for i, (said, answered) in enumerate(
        tqdm(CONVERSATION, desc="storing pages", unit="page", file=sys.stderr)
    ):
        result = service.add_memory(
            said, answered, user_id=user, timestamp=f"2025-06-{i + 1:02d} 19:00:00", metadata={"turn": i + 1}
        )
        moved += len(result.moved_to_mid_term)
    stats = service.stats(user)
    out.write(
        f"\nstored {len(CONVERSATION)} pages: {stats.short_term_pages} in short-term, "
        f"{stats.mid_term_pages} in mid-term across {stats.segments} segments\n"
    )
    for question in QUESTIONS:
        started = time.monotonic()
        found = service.retrieve_memory(question, user_id=user, top_k=3, include_short_term=False)
        ms = (time.monotonic() - started) * 1000
        out.write(f"\nQ: {question}   ({ms:.0f} ms)\n")
        for page in found.mid_term:
            out.write(f"  [{page.score:.2f}] turn {page.metadata.get('turn')}: {page.user_input}\n")
    out.write("\nThe context block the host model would read for the last question:\n\n")
    out.write(found.context + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


def import_file(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from tqdm import tqdm

    from memoryos_mcp.service.bulk import import_lines
    from memoryos_mcp.service.facade import MemoryService

    if args.chunk_size < 1:
        raise ConfigurationError("--chunk-size must be at least 1")
    settings = _settings(args)
    source = sys.stdin if args.file == "-" else None
    if source is None and not os.path.isfile(args.file):
        raise ConfigurationError(f"{args.file} is not a file")
    total = None
    if source is None:
        with open(args.file, "rb") as counting:
            total = sum(1 for line in counting if line.strip())
    with open(args.file, encoding="utf-8") if source is None else contextlib.nullcontext(source) as peeked:
        from memoryos_mcp.service.export_format import is_export, peek

        first, stream = peek(peeked)
        if is_export(first):
            return _restore(args, settings, stream, total, out)
    service = MemoryService.create(settings)
    with (
        open(args.file, encoding="utf-8") if source is None else contextlib.nullcontext(stream) as lines,
        tqdm(total=total, desc="importing", unit="line", file=sys.stderr, smoothing=0.05) as bar,
    ):
        report = import_lines(
            service,
            lines,
            default_user=settings.user_id,
            chunk_size=args.chunk_size,
            progress=bar.update,
            sentences=args.sentences == "now",
        )
    # The users just imported are cached here: save their indexes so that the server starts them fast.
    saved = service.memory.save_snapshots()
    out.write(report.summary() + "\n")
    if saved:
        out.write(
            f"saved the retrieval index of {saved} user(s) with many pages, for a fast first retrieval\n"
        )
    waiting = sum(service.store.count_waiting_for_sentences(user) for user in sorted(report.users))
    if waiting:
        out.write(
            f"{waiting} page(s) wait for their sentence vectors: the server fills them in in the background "
            "(memory_stats shows how many still wait), or run `memoryos-mcp embed-sentences` now\n"
        )
    return 1 if report.failed else 0


def _restore(
    args: argparse.Namespace, settings: Settings, lines: Iterable[str], total: int | None, out: TextIO
) -> int:
    """Import of an export file: records restored as they are (no embedding model is loaded)."""
    from tqdm import tqdm

    from memoryos_mcp.service.export import StoredVectorsOnly
    from memoryos_mcp.service.facade import MemoryService
    from memoryos_mcp.service.restore import import_export

    if args.user_id is not None:
        raise ConfigurationError("--user-id does not apply to an export file: it restores the users it holds")
    service = MemoryService.create(settings, embedder=StoredVectorsOnly())
    with tqdm(total=total, desc="restoring", unit="line", file=sys.stderr, smoothing=0.05) as bar:
        report = import_export(service, lines, chunk_size=args.chunk_size, progress=bar.update)
    out.write(report.summary() + "\n")
    # Load the big users restored here and save their indexes, so that the server starts them fast.
    memory = service.memory
    if memory.snapshots is not None:
        for user in report.restored:
            if (memory.store.read_version(user).mid_term_pages or 0) >= memory.keeper.min_pages:
                memory.state(user)
        saved = memory.save_snapshots()
        if saved:
            out.write(
                f"saved the retrieval index of {saved} user(s) with many pages, for a fast first retrieval\n"
            )
    return 0 if report.ok else 1


def embed_sentences(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from memoryos_mcp.service.backfill import embed_missing_sentences
    from memoryos_mcp.service.export import has_memory
    from memoryos_mcp.service.facade import MemoryService

    if args.all_users and args.user_id is not None:
        raise ConfigurationError("give --user-id or --all-users, not both")
    settings = _settings(args)
    service = MemoryService.create(settings)
    users = service.store.user_ids() if args.all_users else [settings.user_id]
    if not args.all_users and not has_memory(service.store, settings.user_id):
        known = service.store.user_ids()
        raise ConfigurationError(
            f"user {settings.user_id!r} has no memory here; users with memory: {', '.join(known) or 'none'} "
            "(or pass --all-users)"
        )
    with tqdm(desc="embedding sentences", unit="page", file=sys.stderr, smoothing=0.05) as bar:
        report = embed_missing_sentences(service, users, progress=bar.update)
    sys.stderr.write(report.summary() + "\n")
    return 0


def export_file(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from memoryos_mcp.service.export import StoredVectorsOnly, export_users, has_memory
    from memoryos_mcp.service.facade import MemoryService

    if args.all_users and args.user_id is not None:
        raise ConfigurationError("give --user-id or --all-users, not both")
    settings = _settings(args)
    service = MemoryService.create(settings, embedder=StoredVectorsOnly())
    store = service.store
    if args.all_users:
        users = store.user_ids()
    else:
        users = [settings.user_id]
        if not has_memory(store, settings.user_id):
            known = store.user_ids()
            raise ConfigurationError(
                f"user {settings.user_id!r} has no memory here; users with memory: {', '.join(known) or 'none'} "
                "(or pass --all-users)"
            )
    target = None if args.out in (None, "-") else os.path.abspath(args.out)
    temporary = f"{target}.partial-{os.getpid()}" if target else None
    sink = open(temporary, "wb") if temporary else sys.stdout.buffer  # noqa: SIM115 - closed below
    try:
        with tqdm(desc="exporting", unit="page", file=sys.stderr, smoothing=0.05) as bar:
            report = export_users(
                service, users, lambda text: sink.write(text.encode("utf-8")), progress=bar.update
            )
        sink.flush()
        if temporary and target:
            sink.close()
            os.replace(temporary, target)  # whole or not at all: a half-written file never takes the name
    finally:
        if temporary:
            sink.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    sys.stderr.write(report.summary() + (f" to {target}" if target else "") + "\n")
    return 1 if report.changed else 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["serve", *argv]  # desktop clients launch the bare command: serve on stdio
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        if args.command == "demo":
            code = demo(args)
        elif args.command == "import":
            code = import_file(args)
        elif args.command == "export":
            code = export_file(args)
        elif args.command == "ui":
            code = ui(args)
        elif args.command == "embed-sentences":
            code = embed_sentences(args)
        elif args.command in ("list", "forget", "update", "stats"):
            code = {"list": list_memories, "forget": forget, "update": update, "stats": stats}[args.command](
                args
            )
        else:
            code = serve(args)
    except MemoryOSError as exc:
        # One line a person (or a desktop client's log pane) can act on; no traceback for a known failure.
        sys.stderr.write(f"memoryos-mcp: error: {exc}\n")
        sys.stderr.flush()
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
