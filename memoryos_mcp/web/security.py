"""Who may open the memory page, and the checks every request passes.

Loopback without tokens: a random secret per start, known to this process and to page.json (mode 0600) only.
An address given out (the memory_page tool, `memoryos-mcp ui`) carries a ticket instead (`/enter?ticket=`):
single use, valid an hour, exchanged for a session cookie (HttpOnly, SameSite=Strict, named for the port:
browsers share cookies across a host's ports) and the browser is sent on to a clean address — so an address
in a chat, a log or the browser's history opens nothing once used. `memoryos-mcp ui` gets its ticket from the
running server with the secret (POST /ticket, the secret in a header, which no other web page can send).
With an auth_tokens_file: a login form takes a bearer token, and the session shows only that token's users.
Every request's Host must be this server's when it listens on loopback (a rebound DNS name is refused);
every change (POST) must come from this page (Origin) and carry the session's CSRF token. Responses never
carry CORS headers, forbid framing and caching, and allow no script at all.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from memoryos_mcp.service.access import Grant, TokenTable

SESSION_TTL_S = 8 * 3600
TICKET_TTL_S = 3600
SECRET_HEADER = "x-memoryos-page-secret"
HEADERS = {
    # Nothing is loaded from elsewhere and nothing runs: styles from this server, pictures inline (SVG).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with a form's POST,
    # and the Origin check below could not tell this page from any other. Nothing leaves for another site.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Session:
    """A browser that got in: which users it may see (None: any the server allows), its CSRF token."""

    grant: Grant
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    expires: float = field(default_factory=lambda: time.time() + SESSION_TTL_S)


class PageAccess:
    """The start secret and its tickets, or the token table; the sessions; the request checks."""

    def __init__(self, tokens: TokenTable | None, allowed_hosts: frozenset[str] | None, port: int) -> None:
        self.tokens = tokens
        # None: any Host (a bind beyond loopback, where tokens are required anyway)
        self.allowed_hosts = allowed_hosts
        self.cookie = f"memoryos_page_{port}"
        self.secret = secrets.token_urlsafe(32)
        self._tickets: dict[str, float] = {}  # ticket -> when it expires
        self._sessions: dict[str, Session] = {}
        self._guard = threading.Lock()

    @property
    def needs_login(self) -> bool:
        return self.tokens is not None

    def secret_ok(self, given: str | None) -> bool:
        return (
            self.tokens is None
            and bool(given)
            and hmac.compare_digest((given or "").encode(), self.secret.encode())
        )

    def ticket(self) -> str:
        """A single-use ticket into the page, valid TICKET_TTL_S (loopback without tokens)."""
        ticket = secrets.token_urlsafe(32)
        with self._guard:
            now = time.time()
            for stale in [t for t, until in self._tickets.items() if until < now]:
                del self._tickets[stale]
            self._tickets[ticket] = now + TICKET_TTL_S
        return ticket

    def enter(self, ticket: str) -> str | None:
        """A new session id for a ticket, which is used up; None when it is unknown, used or expired (or tokens
        are required)."""
        if self.tokens is not None or not ticket:
            return None
        with self._guard:
            # dict lookup by the ticket: its hash, not a byte-by-byte comparison an attacker could time
            until = self._tickets.pop(ticket, None)
        if until is None or until < time.time():
            return None
        return self._open(Grant(name="this machine", users=None))

    def login(self, token: str) -> str | None:
        """A new session id for a bearer token of the token file; None when it is unknown."""
        grant = self.tokens.lookup(token.strip()) if self.tokens is not None and token.strip() else None
        return None if grant is None else self._open(grant)

    def session(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._guard:
            found = self._sessions.get(session_id)
            if found is not None and found.expires < time.time():
                del self._sessions[session_id]
                return None
            return found

    def _open(self, grant: Grant) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._guard:
            now = time.time()
            for stale in [k for k, s in self._sessions.items() if s.expires < now]:
                del self._sessions[stale]
            self._sessions[session_id] = Session(grant)
        return session_id

    def host_ok(self, host: str | None) -> bool:
        return self.allowed_hosts is None or (host or "").lower() in self.allowed_hosts

    @staticmethod
    def origin_ok(origin: str | None, host: str | None) -> bool:
        """A change must come from a page of this server: its Origin is this Host (no Origin: refused)."""
        return bool(origin) and bool(host) and origin in (f"http://{host}", f"https://{host}")

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())


def loopback_hosts(port: int, bound: str = "127.0.0.1") -> frozenset[str]:
    """The Host headers a browser sends to this machine's loopback on `port` (and to the address bound)."""
    names = {"127.0.0.1", "localhost", "[::1]", f"[{bound}]" if ":" in bound else bound.lower()}
    return frozenset(f"{name}:{port}" for name in names)
