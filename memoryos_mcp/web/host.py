"""Where the memory page is served from the process that holds the store.

stdio: a loopback listener (127.0.0.1:ui_port) in a thread beside the stdio loop, started and stopped by the
MCP server's lifespan. Streamable HTTP: the same app mounted at /ui of the MCP app, on its port. Either way the
page's root and its start secret go to <data_dir>/page.json (mode 0600, removed at exit), from which
`memoryos-mcp ui` gets a ticket into the running server's page.
A busy ui_port is a warning on stderr and the page takes any free port (its address is found the same ways);
never a failed server: memory works without its page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from memoryos_mcp.core.errors import StorageError
from memoryos_mcp.service.access import TokenTable
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.settings import Settings, is_loopback
from memoryos_mcp.web.app import page_app
from memoryos_mcp.web.security import SECRET_HEADER, PageAccess, loopback_hosts

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

logger = logging.getLogger(__name__)
PAGE_FILE = "page.json"
MOUNT = "/ui"


class MemoryPage:
    """The page of one server: its access rules, its listener (stdio) or mount (HTTP), its address."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = TokenTable.load(settings.auth_tokens_file) if settings.auth_tokens_file else None
        self._service: Callable[[], MemoryService] | None = None
        self.access: PageAccess | None = None
        self.url: str | None = None  # the page's root once it is served
        self._listen = False
        self._server: uvicorn.Server | None = None  # the loopback listener
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the two ways to serve it

    def mounted(self) -> ASGIApp:
        """The ASGI app to mount at /ui of the streamable HTTP app (same host and port as MCP)."""
        s = self.settings
        local = is_loopback(s.host)
        self.access = PageAccess(self.tokens, loopback_hosts(s.port, s.host) if local else None, s.port)
        host = f"[{s.host}]" if ":" in s.host else s.host
        self.url = f"http://{'127.0.0.1' if s.host in ('0.0.0.0', '::') else host}:{s.port}{MOUNT}"
        return self._app(MOUNT)

    def listen_on_attach(self) -> MemoryPage:
        """stdio: listen on 127.0.0.1:ui_port when the server's lifespan attaches the service."""
        self._listen = True
        return self

    def _app(self, base: str) -> ASGIApp:
        assert self.access is not None
        allowed = self.settings.allowed_users
        return page_app(
            self._get_service,
            self.access,
            base=base,
            default_user=self.settings.user_id,
            allowed_users=None if allowed is None else frozenset(allowed),
        )

    def _get_service(self) -> MemoryService:
        if self._service is None:
            raise StorageError("the memory server is not running; start it and open the page again")
        return self._service()

    # ------------------------------------------------------------------ the server's lifespan

    def attach(self, service: Callable[[], MemoryService]) -> None:
        """The service getter (it waits while the service starts); on stdio, start listening."""
        self._service = service
        if self._listen:
            self._start_listener()
        elif self.url is not None:
            self._write_page_file()  # mounted on the HTTP app: already reachable

    def detach(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._server = None
        self._remove_page_file()
        self._service = None

    def address(self, user_id: str) -> str | None:
        """Where a person opens the page for `user_id`: with a fresh single-use ticket (no tokens), or the login
        form."""
        if self.url is None or self.access is None:
            return None
        if self.access.needs_login:
            return f"{self.url}/login"
        return f"{self.url}/enter?{urlencode({'ticket': self.access.ticket(), 'user': user_id})}"

    # ------------------------------------------------------------------ the loopback listener (stdio)

    def _start_listener(self) -> None:
        import uvicorn

        wanted = self.settings.ui_port
        sock = _bound(wanted)
        if sock is None and wanted:  # e.g. a second client's server on the same machine: any free port
            sock = _bound(0)
            if sock is not None:
                logger.warning(
                    "127.0.0.1:%d is busy: the memory page is at http://127.0.0.1:%d instead (the memory_page "
                    "tool and `memoryos-mcp ui` give its address; ui_port / MEMORYOS_UI_PORT picks another)",
                    wanted,
                    sock.getsockname()[1],
                )
        if sock is None:
            logger.warning(
                "memory page not served: no port on 127.0.0.1 could be bound (tried %d). Memory works as before; "
                "to see it, set ui_port (MEMORYOS_UI_PORT) to a free port, or turn the page off with --no-ui",
                wanted,
            )
            return
        port = sock.getsockname()[1]
        self.access = PageAccess(self.tokens, loopback_hosts(port), port)
        self.url = f"http://127.0.0.1:{port}"
        # log_config=None: uvicorn's own config would log access lines to stdout, which is the stdio protocol.
        config = uvicorn.Config(
            self._app(""), log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=3
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="memoryos-page", daemon=True
        )
        self._thread.start()
        self._write_page_file()
        logger.info("memory page at %s (memoryos-mcp ui opens it)", self.url)

    def _page_file(self) -> Path:
        return self.settings.data_dir / PAGE_FILE

    def _write_page_file(self) -> None:
        path = self._page_file()
        assert self.access is not None
        secret = None if self.access.needs_login else self.access.secret
        record = {"url": self.url, "secret": secret, "pid": os.getpid()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # created anew: 0600 from the start, never readable by others for a moment
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({**record, "written": time.time()}, out)
        except OSError as exc:
            logger.warning("could not write %s (%s): `memoryos-mcp ui` will not find this page", path, exc)

    def _remove_page_file(self) -> None:
        path = self._page_file()
        found = read_page_file(self.settings.data_dir)
        if found is not None and found.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()


class HideTickets(logging.Filter):
    """Access-log lines show `/ui/enter?ticket=…` without the ticket: a log is read by more than the person."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TICKET.sub("ticket=…", a) if isinstance(a, str) else a for a in record.args)
        return True


_TICKET = re.compile(r"ticket=[^&\s\"]*")


def _bound(port: int) -> socket.socket | None:
    """A listening socket on 127.0.0.1:port (0: any free port), or None when it is taken. Listening from here,
    not from uvicorn's thread: the address is handed out at once, and the kernel queues whoever comes first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError:
        sock.close()
        return None
    return sock


def read_page_file(data_dir: Path) -> dict[str, Any] | None:
    """The running server's page record of this data directory, if its process is alive."""
    try:
        record = json.loads((data_dir / PAGE_FILE).read_text(encoding="utf-8"))
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # left by a server that was killed
        except PermissionError:
            pass  # alive, another account's
    return record if isinstance(record.get("url"), str) else None


def address_from_page_file(record: dict[str, Any], user_id: str | None) -> str:
    """An address into the running server's page (from its page.json): a ticket asked of it with the secret,
    or its login form when it takes bearer tokens. No user_id: the server's default user."""
    url, secret = str(record["url"]), record.get("secret")
    if not isinstance(secret, str):
        return f"{url}/login"
    request = urllib.request.Request(f"{url}/ticket", method="POST", headers={SECRET_HEADER: secret})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            ticket = answer.read().decode("ascii").strip()
    except urllib.error.HTTPError as exc:
        raise StorageError(
            f"the memory page at {url} refused the secret in page.json (HTTP {exc.code}): another server took "
            "its port after the one that wrote the file stopped; start the memory server again"
        ) from exc
    except (OSError, ValueError) as exc:
        raise StorageError(
            f"the memory server (pid {record.get('pid')}) did not answer at {url} ({exc}); if it is stuck, stop "
            "it, then run `memoryos-mcp ui` again"
        ) from exc
    query = {"ticket": ticket, **({"user": user_id} if user_id else {})}
    return f"{url}/enter?{urlencode(query)}"
