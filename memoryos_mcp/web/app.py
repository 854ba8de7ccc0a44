"""The memory page's routes: each view or action is one call of the same service the tools call.

Paths are relative to where the app is mounted (`base`: "" on the stdio listener, "/ui" on the HTTP app).
Every request passes the Guard (Host, security headers); every view needs a session; every change is a POST
from this page (Origin) with the session's CSRF token, answered by a redirect to a view (reload-safe).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlencode

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memoryos_mcp.core.errors import InvalidInputError, MemoryOSError
from memoryos_mcp.service.access import resolve_user, users_for
from memoryos_mcp.service.export import export_users
from memoryos_mcp.service.facade import MemoryService
from memoryos_mcp.service.schemas import (
    ForgetMemoryResult,
    ListedFactOut,
    ListedSegmentOut,
    ListMemoriesResult,
    PageOut,
    RetrieveMemoryResult,
)
from memoryos_mcp.service.validation import MAX_TOKENS_CAP
from memoryos_mcp.web import views
from memoryos_mcp.web.security import HEADERS, SECRET_HEADER, SESSION_TTL_S, PageAccess, Session

logger = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

# What a finished action says on the view it returns to (codes in the address, never text from it).
DONE = {
    "fact": "The fact was saved as you wrote it; promotions will not change it.",
    "profile": "The profile entry was saved.",
    "profile-replaced": "The profile entry was saved in place of the value it had.",
    "select": "Select pages first (tick them in the list), or choose a date or everything below.",
    "confirm": "The user id you typed did not match: nothing was forgotten.",
    "nothing": "Nothing was forgotten: those pages or facts were already gone.",
    "profile-removed": "The profile entry was removed.",
    "forgot": "Forgotten: {pages} page(s) and {facts} fact(s), with what was learned only from them.",
}


class Guard:
    """Host check and security headers on every response of the page (errors and redirects too)."""

    def __init__(self, app: ASGIApp, access: PageAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.access.host_ok(Headers(scope=scope).get("host")):
            refused = PlainTextResponse(
                "This page answers only at its own address (Host refused).", 421, headers=HEADERS
            )
            await refused(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class PageApp:
    """The routes over a service getter (it waits while the server starts) and the page's access rules."""

    def __init__(
        self,
        service: Callable[[], MemoryService],
        access: PageAccess,
        base: str,
        default_user: str,
        allowed_users: frozenset[str] | None,
    ) -> None:
        self.service = service
        self.access = access
        self.base = base
        self.default_user = default_user
        self.allowed = allowed_users
        self.css = resources.files("memoryos_mcp.web").joinpath("static/page.css").read_bytes()

    def asgi(self) -> ASGIApp:
        open_ = {"/enter": self.enter, "/login": self.login}
        viewing = {
            "/": self.overview,
            "/pages": self.pages,
            "/segments": self.segments,
            "/segments/{segment_id}": self.segment,
            "/facts": self.facts,
            "/forget": self.forget_preview,
            "/export": self.export,
        }
        changing = {"/facts": self.save_fact, "/profile": self.save_profile, "/forget": self.forget}
        routes = [
            Route("/static/page.css", self.stylesheet, methods=["GET"]),
            Route("/ticket", self.ticket, methods=["POST"]),
        ]
        routes += [Route(p, h, methods=["GET", "POST"]) for p, h in open_.items()]
        routes += [Route(p, self._viewing(h), methods=["GET"]) for p, h in viewing.items()]
        routes += [Route(p, self._changing(h), methods=["POST"]) for p, h in changing.items()]

        async def not_found(request: Request, exc: Exception) -> Response:
            return self._plain(404, "Not found", "There is no such view of the memory page.", home=True)

        return Guard(Starlette(routes=routes, exception_handlers={404: not_found}), self.access)

    # ------------------------------------------------------------------ sessions and errors

    def _session(self, request: Request) -> Session | None:
        return self.access.session(request.cookies.get(self.access.cookie))

    def _no_session(self) -> Response:
        if self.access.needs_login:
            return RedirectResponse(f"{self.base}/login", 303)
        return self._plain(
            401,
            "Open the page from its address",
            "This browser has no session. Ask your assistant for the memory page (the memory_page tool), or run "
            "`memoryos-mcp ui`, and open the address it gives: it lets this browser in once.",
        )

    def _plain(self, status: int, title: str, message: str, home: bool = False) -> Response:
        return HTMLResponse(views.plain(title, message, self.base, home), status)

    def _view(self, session: Session, requested: str | None) -> views.View:
        """The view of the user asked for, as the session may see it, with the users it may switch between
        (None: any — the page offers a field to name one)."""
        allowed = users_for(session.grant, self.allowed)
        users = None if allowed is None else sorted(allowed)
        if not requested and users and self.default_user not in users:
            requested = users[0]  # a token for other users than the server's default: its first one
        user = resolve_user(
            requested or None, default=self.default_user, grant=session.grant, allowed=self.allowed
        )
        return views.View(self.base, user, users, session.csrf)

    def _viewing(self, handler: Callable[[Request, views.View], Awaitable[Response]]) -> Handler:
        async def view(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                return self._no_session()
            try:
                return await handler(request, self._view(session, request.query_params.get("user")))
            except MemoryOSError as exc:
                return self._failed(exc)

        return view

    def _changing(self, handler: Callable[[Request, views.View, Any], Awaitable[Response]]) -> Handler:
        async def change(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                return self._no_session()
            if not self.access.origin_ok(request.headers.get("origin"), request.headers.get("host")):
                return self._plain(403, "Refused", "A change must come from this page (its Origin was not).")
            form = await request.form()
            if not self.access.csrf_ok(session, _one(form.get("csrf"))):
                return self._plain(
                    403, "Refused", "This form is stale or not from this page: reload and try again."
                )
            try:
                return await handler(request, self._view(session, _one(form.get("user"))), form)
            except MemoryOSError as exc:
                return self._failed(exc)

        return change

    def _failed(self, exc: MemoryOSError) -> Response:
        if isinstance(exc, InvalidInputError):
            return self._plain(400, "Not possible", str(exc), home=True)
        logger.warning("memory page: %s", exc)
        return self._plain(500, "The memory store failed", str(exc), home=True)

    async def _call(self, fn: Callable[[MemoryService], T]) -> T:
        # Service calls block (Chroma, the embedding model): off the event loop, like the tools.
        return await anyio.to_thread.run_sync(lambda: fn(self.service()))

    def _back(self, v: views.View, path: str, **query: object) -> Response:
        query = {"user": v.user, **query}
        return RedirectResponse(f"{self.base}{path}?{urlencode(query)}", 303)

    # ------------------------------------------------------------------ getting in

    async def ticket(self, request: Request) -> Response:
        """A ticket for `memoryos-mcp ui`, which read the secret from page.json. A web page cannot ask: the
        header needs a CORS preflight this server never answers, and a browser's request carries an Origin."""
        if request.headers.get("origin") is not None or not self.access.secret_ok(
            request.headers.get(SECRET_HEADER)
        ):
            return PlainTextResponse("refused", 403)
        return PlainTextResponse(self.access.ticket())

    async def enter(self, request: Request) -> Response:
        """A ticket, once: a session cookie, then on to the clean address."""
        if self.access.needs_login:
            return RedirectResponse(f"{self.base}/login", 303)
        session_id = self.access.enter(request.query_params.get("ticket", ""))
        if session_id is None:
            return self._plain(
                403,
                "This address is used up",
                "Each address opens the page once, within an hour of being given, and only while the server "
                "that gave it runs. Ask for the memory page again (the memory_page tool, or `memoryos-mcp ui`).",
            )
        user = request.query_params.get("user")
        target = f"{self.base}/" + (f"?{urlencode({'user': user})}" if user else "")
        # A page that moves on by itself rather than a redirect: the SameSite=Strict cookie then travels
        # with the next request even when the address was opened from another site.
        response = HTMLResponse(views.moving_on(target, self.base))
        self._set_cookie(request, response, session_id)
        return response

    async def login(self, request: Request) -> Response:
        if not self.access.needs_login:
            return self._no_session()
        if request.method == "GET":
            return HTMLResponse(views.login_form(self.base))
        if not self.access.origin_ok(request.headers.get("origin"), request.headers.get("host")):
            return self._plain(403, "Refused", "Sign in from this page.")
        form = await request.form()
        session_id = self.access.login(_one(form.get("token")) or "")
        if session_id is None:
            return HTMLResponse(views.login_form(self.base, "That token is not known to this server."), 401)
        response = RedirectResponse(f"{self.base}/", 303)
        self._set_cookie(request, response, session_id)
        return response

    def _set_cookie(self, request: Request, response: Response, session_id: str) -> None:
        # Secure when the browser came over TLS (a reverse proxy in front, its X-Forwarded-Proto trusted by
        # uvicorn from loopback): the cookie then never travels in clear
        response.set_cookie(
            self.access.cookie,
            session_id,
            secure=request.url.scheme == "https",
            max_age=SESSION_TTL_S,
            path=self.base or "/",
            httponly=True,
            samesite="strict",
        )

    async def stylesheet(self, request: Request) -> Response:
        return Response(self.css, media_type="text/css")

    # ------------------------------------------------------------------ views

    async def overview(self, request: Request, v: views.View) -> Response:
        def read(s: MemoryService) -> tuple[Any, list[ListedSegmentOut], dict[str, int]]:
            return s.stats(v.user), _all_segments(s, v.user), s.timeline(v.user)

        stats, segments, days = await self._call(read)
        return HTMLResponse(views.overview(v, stats, segments, days, _notice(request)))

    async def pages(self, request: Request, v: views.View) -> Response:
        q = request.query_params
        tier, since, until = q.get("tier") or "all", q.get("since") or None, q.get("until") or None
        ids = q.getlist("ids")
        if ids:
            listing = await self._call(lambda s: s.list_memories(v.user, page_ids=ids))
            return HTMLResponse(
                views.pages(v, listing, tier, since or "", until or "", None, "The pages asked for")
            )
        query = (q.get("q") or "").strip()
        if query:

            def look(s: MemoryService) -> tuple[RetrieveMemoryResult | None, list[PageOut]]:
                ranked = None
                if tier != "short_term":
                    ranked = s.retrieve_memory(
                        query,
                        v.user,
                        include_short_term=False,
                        since=since,
                        until=until,
                        max_tokens=MAX_TOKENS_CAP,  # the whole pages: a person reads them
                        explain=True,
                        record_visits=False,  # looking is not recalling: no segment gets hotter
                    )
                recent: list[PageOut] = []
                if tier != "mid_term":  # retrieve_memory returns these whole; the page shows those that match
                    newest = s.list_memories(v.user, "pages", "short_term", since, until, 200)
                    recent = [p for p in newest.pages or [] if views.shares_a_word(query, p)]
                return ranked, recent

            ranked, recent = await self._call(look)
            return HTMLResponse(views.search(v, query, ranked, recent, tier, since or "", until or ""))
        listing = await self._call(
            lambda s: s.list_memories(v.user, "pages", tier, since, until, 50, q.get("cursor") or None)
        )
        newer = bool(q.get("cursor"))
        return HTMLResponse(
            views.pages(
                v, listing, tier, since or "", until or "", listing.next_cursor, _notice(request), newer
            )
        )

    async def segments(self, request: Request, v: views.View) -> Response:
        start = request.query_params.get("start") or "0"
        listing = await self._call(lambda s: _all_segments(s, v.user))
        return HTMLResponse(views.segments(v, listing, int(start) if start.isdigit() else 0))

    async def segment(self, request: Request, v: views.View) -> Response:
        segment_id = request.path_params["segment_id"]
        cursor = request.query_params.get("cursor") or None

        def read(s: MemoryService) -> tuple[ListedSegmentOut | None, Any]:
            info = next((x for x in _all_segments(s, v.user) if x.id == segment_id), None)
            if info is None:
                return None, None
            return info, s.list_memories(v.user, segment_id=segment_id, limit=50, cursor=cursor)

        info, listing = await self._call(read)
        if info is None:
            return self._plain(
                404, "No such segment", "This user has no segment with that id (forgotten?).", home=True
            )
        return HTMLResponse(views.segment(v, info, listing, segment_id))

    async def facts(self, request: Request, v: views.View) -> Response:
        listing = await self._call(lambda s: _whole(s, v.user, "facts"))
        return HTMLResponse(views.facts(v, listing, _notice(request)))

    async def forget_preview(self, request: Request, v: views.View) -> Response:
        q = request.query_params
        pages, facts, before, everything = (
            q.getlist("page_id"),
            q.getlist("fact_id"),
            q.get("before") or "",
            bool(q.get("all")),
        )
        if not (pages or facts or before or everything):
            return self._back(v, "/pages", done="select")

        def read(s: MemoryService) -> tuple[ForgetMemoryResult, list[PageOut], list[ListedFactOut]]:
            preview = s.forget_memory(
                v.user, pages or None, facts or None, before or None, everything, dry_run=True
            )
            shown = s.list_memories(v.user, page_ids=pages[:50]).pages or [] if pages else []
            named = [f for f in _whole(s, v.user, "facts").facts or [] if f.id in facts] if facts else []
            return preview, shown, named

        preview, shown, named = await self._call(read)
        return HTMLResponse(
            views.forget_preview(v, preview, pages, facts, before, everything, shown, named, _notice(request))
        )

    async def export(self, request: Request, v: views.View) -> Response:
        def write(s: MemoryService) -> str:
            lines: list[str] = []
            export_users(s, [v.user], lines.append)
            return "".join(lines)

        body = await self._call(write)
        return Response(
            body,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="memoryos-{_file_safe(v.user)}.ndjson"'},
        )

    # ------------------------------------------------------------------ changes (the tools' calls)

    async def save_fact(self, request: Request, v: views.View, form: Any) -> Response:
        fact_id, text = _one(form.get("fact_id")), _one(form.get("text"))
        await self._call(lambda s: s.update_memory(v.user, fact_id=fact_id, text=text))
        return self._back(v, "/facts", done="fact")

    async def save_profile(self, request: Request, v: views.View, form: Any) -> Response:
        key, remove = _one(form.get("key")), bool(_one(form.get("remove")))
        value = None if remove else _one(form.get("value"))

        def save(s: MemoryService) -> bool:
            profile = s.get_user_profile(
                v.user, include_knowledge=False, include_assistant_traits=False
            ).profile
            had = (key or "").strip() in profile.static
            s.update_memory(v.user, profile_key=key, profile_value=value)
            return had

        had = await self._call(save)
        done = (
            "profile-removed"
            if remove or not (value or "").strip()
            else "profile-replaced"
            if had
            else "profile"
        )
        return self._back(v, "/facts", done=done)

    async def forget(self, request: Request, v: views.View, form: Any) -> Response:
        pages = [str(p) for p in form.getlist("page_id")]
        facts = [str(f) for f in form.getlist("fact_id")]
        before, everything = _one(form.get("before")) or None, bool(_one(form.get("all")))
        confirm = _one(form.get("confirm"))
        if everything and confirm != v.user:  # back to the preview, which says why: nothing was forgotten
            return self._back(v, "/forget", all="1", done="confirm")
        done = await self._call(
            lambda s: s.forget_memory(v.user, pages or None, facts or None, before, everything, confirm)
        )
        if not done.pages_removed and not done.facts_removed:  # e.g. the form again, from the browser's Back
            return self._back(v, "/pages", done="nothing")
        return self._back(v, "/pages", done="forgot", pages=done.pages_removed, facts=done.facts_removed)


def _one(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _notice(request: Request) -> str:
    q = request.query_params
    text = DONE.get(q.get("done") or "", "")
    if "{" in text:
        counts = {k: int(q.get(k) or 0) if (q.get(k) or "0").isdigit() else 0 for k in ("pages", "facts")}
        text = text.format(**counts)
    return text


def _file_safe(user: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in user)[:64] or "user"


def _whole(service: MemoryService, user: str, kind: str) -> ListMemoriesResult:
    """Every item of a listing (segments or facts), its pages of 200 joined."""
    whole = service.list_memories(user, kind, limit=200)
    cursor = whole.next_cursor
    while cursor:
        more = service.list_memories(user, kind, limit=200, cursor=cursor)
        whole.segments = None if whole.segments is None else [*whole.segments, *(more.segments or [])]
        whole.facts = None if whole.facts is None else [*whole.facts, *(more.facts or [])]
        cursor = more.next_cursor
    whole.next_cursor = None
    return whole


def _all_segments(service: MemoryService, user: str) -> list[ListedSegmentOut]:
    return list(_whole(service, user, "segments").segments or [])


def page_app(
    service: Callable[[], MemoryService],
    access: PageAccess,
    *,
    base: str = "",
    default_user: str = "default",
    allowed_users: frozenset[str] | None = None,
) -> ASGIApp:
    """The memory page as an ASGI app, to serve alone (stdio's listener) or to mount (`base`, e.g. /ui)."""
    return PageApp(service, access, base, default_user, allowed_users).asgi()
