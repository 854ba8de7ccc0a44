"""`serve` with its memory page, and `memoryos-mcp ui`: the CLI is where the MCP server and the page meet
(mcp/ never imports web/)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import webbrowser
from typing import TextIO

from memoryos_mcp.core.errors import ConfigurationError
from memoryos_mcp.service.settings import Settings

logger = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """The MCP server on its transport, with the memory page unless `ui` is off: a loopback listener beside
    stdio, or mounted at /ui of the streamable HTTP app."""
    from memoryos_mcp.mcp.server import build_server
    from memoryos_mcp.web.host import MOUNT, HideTickets, MemoryPage

    page = MemoryPage(settings) if settings.ui else None
    stdio = settings.transport == "stdio"
    # build_server reads the token file: a bad one fails here, before serving
    server = build_server(settings, page=page.listen_on_attach() if page is not None and stdio else page)
    logger.info("serving on %s", settings.transport)
    if stdio:
        server.run("stdio")
        return
    import uvicorn
    from starlette.routing import Mount

    app = server.streamable_http_app(host=settings.host)
    if page is not None:
        app.router.routes.append(Mount(MOUNT, app=page.mounted()))
        logging.getLogger("uvicorn.access").addFilter(HideTickets())
    uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    ).run()


def ui(settings: Settings, user_id: str | None, open_browser: bool, out: TextIO = sys.stdout) -> int:
    """Print (and open) the page of the server that holds this data directory; with none, serve the store
    here until Ctrl-C."""
    from memoryos_mcp.web.host import MemoryPage, address_from_page_file, read_page_file

    running = read_page_file(settings.data_dir)
    if running is not None:
        address = address_from_page_file(running, user_id)
        out.write(f"{address}\n")
        out.flush()
        if open_browser:
            webbrowser.open(address)
        return 0
    from memoryos_mcp.service.facade import MemoryService

    stop = threading.Event()
    # SIGTERM (a service manager, a script) ends it as Ctrl-C does: page.json removed, snapshots saved. Set
    # before the address is printed: whoever reads it may stop this at once.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = MemoryService.create(settings)
    page = MemoryPage(settings).listen_on_attach()
    page.attach(lambda: service)
    try:
        address = page.address(user_id or settings.user_id)
        if address is None:
            raise ConfigurationError(
                f"the memory page could not listen on 127.0.0.1:{settings.ui_port} (see above); pass --ui-port "
                "with a free port"
            )
        out.write(f"{address}\n")
        out.flush()
        sys.stderr.write("serving the memory page of this data directory; Ctrl-C stops it\n")
        if open_browser:
            webbrowser.open(address)
        stop.wait()
    finally:
        page.detach()
        service.memory.save_snapshots()
    return 0
