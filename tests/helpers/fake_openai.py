"""Scriptable fake of an OpenAI-compatible chat-completions HTTP server, for tests.

The fake is stdlib-only and speaks enough of the OpenAI REST API that the real
``openai`` client can talk to it unchanged::

    with FakeOpenAIServer() as srv:
        srv.enqueue({"summary": "hi"})                 # JSON-dumped as content
        srv.enqueue(Fault.http(500))                   # then a server error
        client = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
        ...
        assert srv.request_count == 2

Each ``POST /v1/chat/completions`` pops the next scripted reply from a FIFO.
When the FIFO is empty, ``srv.default`` answers (a reply, or a callable taking
the parsed request JSON and returning a reply). With neither, the fake answers
HTTP 500 saying that it had no scripted reply, so a test that under-scripts
fails loudly instead of hanging.

A *reply* is one of:

* ``str`` -- the assistant message content, verbatim;
* ``dict`` / ``list`` -- ``json.dumps``'d and used as the content;
* a :class:`Fault` -- an HTTP error, a delay, malformed/truncated/huge
  content, or a dropped connection;
* a callable ``(request_json) -> reply`` -- resolved per request (handy for
  answers that depend on the prompt).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

__all__ = [
    "Fault",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "count_tokens",
    "free_port_refusing",
]

#: What a scripted reply may be (see module docstring).
Reply = Union[str, dict[str, Any], list[Any], "Fault", Callable[[dict[str, Any]], Any]]

FAKE_MODEL = "fake-model"

# Granularity of interruptible sleeps: small enough that stop() is prompt,
# large enough not to busy-wait.
_SLEEP_STEP_S = 0.02

_DEFAULT_MALFORMED = '{"summary": "this reply is cut off, "keywords": [unclosed'


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: the whitespace-split word count."""
    return len(text.split())


def _message_text(content: Any) -> str:
    """Flatten a chat message ``content`` (string or list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return str(content)


def _prompt_tokens(request_json: Mapping[str, Any]) -> int:
    """Count tokens over the contents of all messages in a request."""
    messages = request_json.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(count_tokens(_message_text(m.get("content"))) for m in messages if isinstance(m, dict))


def _error_body(message: str, err_type: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error envelope, which the client surfaces in exceptions."""
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour. Build instances with the factory classmethods.

    ``kind`` is one of ``"http"``, ``"delay"``, ``"content"``, ``"drop"``.
    The other fields are parameters for that kind; tests should not need to
    set them directly.
    """

    kind: str
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    then: Any = None
    content: str = ""
    finish_reason: str = "stop"

    # -- HTTP-level faults -------------------------------------------------

    @classmethod
    def http(
        cls,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with HTTP ``status``.

        ``body`` None gives an OpenAI-style error JSON; a dict/list is sent as
        JSON; a str/bytes is sent verbatim (e.g. a non-JSON 200 body). A 429
        gets ``Retry-After: 0`` unless ``headers`` overrides it, so clients
        with retries enabled do not wait on the server's say-so.
        """
        hdrs: dict[str, str] = {}
        if status == 429:
            hdrs["Retry-After"] = "0"
        hdrs.update(headers or {})
        if body is None:
            if status == 429:
                body = _error_body("Rate limit reached (fake).", "requests", "rate_limit_exceeded")
            elif status >= 500:
                body = _error_body(f"The fake server had an error (HTTP {status}).", "server_error")
            else:
                body = _error_body(f"Fake HTTP {status} error.", "invalid_request_error")
        return cls(kind="http", status=status, body=body, headers=hdrs)

    @classmethod
    def rate_limit(cls) -> Fault:
        """HTTP 429 with ``Retry-After: 0`` (shorthand for ``http(429)``)."""
        return cls.http(429)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """HTTP 5xx with an OpenAI-style error body (shorthand for ``http``)."""
        return cls.http(status)

    @classmethod
    def drop_connection(cls) -> Fault:
        """Close the socket without sending any response bytes."""
        return cls(kind="drop")

    # -- timing ------------------------------------------------------------

    @classmethod
    def delay(cls, seconds: float, then: Reply | None = None) -> Fault:
        """Sleep ``seconds`` before answering with ``then``.

        ``then`` is any reply (including another Fault). If None, the
        server's ``default`` answers after the delay -- the queue is *not*
        popped again, so one enqueued entry is always one request. The sleep
        is interruptible: ``stop()`` ends it and the connection is dropped.
        """
        return cls(kind="delay", seconds=float(seconds), then=then)

    # -- content faults (HTTP 200, bad payload) ----------------------------

    @classmethod
    def malformed(cls, text: str | None = None) -> Fault:
        """A 200 completion whose content is not valid JSON."""
        return cls(kind="content", content=_DEFAULT_MALFORMED if text is None else text)

    @classmethod
    def truncated(cls, json_text: Any, keep: float = 0.5) -> Fault:
        """Content cut off mid-way with ``finish_reason="length"``.

        ``json_text`` may be a str or a dict/list (dumped first); ``keep`` is
        the fraction of characters kept (at least one character is cut).
        """
        text = json_text if isinstance(json_text, str) else json.dumps(json_text)
        cut = min(max(int(len(text) * keep), 0), max(len(text) - 1, 0))
        return cls(kind="content", content=text[:cut], finish_reason="length")

    @classmethod
    def huge(cls, n_chars: int = 2_000_000) -> Fault:
        """A 200 completion with an enormous content string of ``n_chars``.

        Made of words rather than one run of a character so that token
        counting (and any word-based truncation in the code under test)
        behaves realistically.
        """
        unit = "lorem ipsum "
        text = (unit * (n_chars // len(unit) + 1))[:n_chars]
        return cls(kind="content", content=text)

    @classmethod
    def completion(cls, content: str, finish_reason: str = "stop") -> Fault:
        """A normal 200 completion with an explicit ``finish_reason``."""
        return cls(kind="content", content=content, finish_reason=finish_reason)


@dataclass(frozen=True)
class RecordedRequest:
    """One received HTTP request: method, path, headers (lower-cased names), parsed body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _lower_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """Request headers with lower-cased names, so lookups need not guess case."""
    return {k.lower(): v for k, v in handler.headers.items()}


class _NoScriptedReply(Exception):
    """Raised internally when neither the queue nor ``default`` has a reply."""


class _Stopped(Exception):
    """Raised internally when ``stop()`` interrupts a delayed reply."""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its fake and never prints tracebacks."""

    # Handler threads must not keep the test process alive or block close.
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAIServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; clients hanging up early
        # (timeouts, dropped connections) are expected here, so stay quiet.
        return


class _Handler(BaseHTTPRequestHandler):
    """Per-request handler; all state lives on ``self.server.fake``."""

    # HTTP/1.0: one request per connection, so no keep-alive sockets linger
    # across stop()/fault boundaries and confuse the client's pool.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Never write to stdout/stderr: tests capture output.
        return

    # -- routing -------------------------------------------------------------

    def do_GET(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        fake._record(RecordedRequest("GET", path, _lower_headers(self), None))
        if path in ("/v1/models", "/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": fake.model,
                            "object": "model",
                            "created": 0,
                            "owned_by": "fake-openai",
                        }
                    ],
                },
            )
        else:
            self._send_json(404, _error_body(f"No route GET {path}", "invalid_request_error"))

    def do_POST(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self._read_body()
        try:
            body: Any = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = {"_invalid_json": raw.decode("utf-8", "replace")}
        fake._record(RecordedRequest("POST", path, _lower_headers(self), body))

        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(f"No route POST {path}", "invalid_request_error"))
            return
        if not isinstance(body, dict) or "_invalid_json" in body:
            self._send_json(400, _error_body("Request body is not a JSON object.", "invalid_request_error"))
            return
        try:
            reply = fake._next_reply(body)
            self._answer(reply, body)
        except _NoScriptedReply:
            self._send_json(
                500,
                _error_body(
                    "FakeOpenAIServer had no scripted reply: the queue is empty "
                    f"and srv.default is None (request #{fake.request_count}).",
                    "fake_no_scripted_reply",
                    "fake_no_scripted_reply",
                ),
            )
        except _Stopped:
            self._drop()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # Client gave up (e.g. its timeout fired during a delay).
            return
        except Exception as exc:  # a test's default callable blew up
            self._send_json(
                500,
                _error_body(
                    f"FakeOpenAIServer reply callable raised {type(exc).__name__}: {exc}",
                    "fake_callable_error",
                ),
            )

    # -- reply rendering -----------------------------------------------------

    def _answer(self, reply: Any, request_json: dict[str, Any]) -> None:
        """Render a resolved reply (anything but a callable) to the socket."""
        fake = self.server.fake
        if isinstance(reply, Fault):
            if reply.kind == "http":
                self._send_raw(reply.status, reply.body, reply.headers)
                return
            if reply.kind == "drop":
                self._drop()
                return
            if reply.kind == "delay":
                fake._interruptible_sleep(reply.seconds)
                then = reply.then
                nxt = (
                    fake._resolve_default(request_json) if then is None else fake._resolve(then, request_json)
                )
                self._answer(nxt, request_json)
                return
            if reply.kind == "content":
                self._send_completion(reply.content, reply.finish_reason, request_json)
                return
            raise ValueError(f"unknown Fault kind {reply.kind!r}")
        if isinstance(reply, str):
            self._send_completion(reply, "stop", request_json)
            return
        if isinstance(reply, (dict, list)):
            self._send_completion(json.dumps(reply, ensure_ascii=False), "stop", request_json)
            return
        raise TypeError(f"unsupported scripted reply type {type(reply).__name__}")

    def _send_completion(self, content: str, finish_reason: str, request_json: dict[str, Any]) -> None:
        fake = self.server.fake
        model = request_json.get("model") or fake.model
        prompt_tokens = _prompt_tokens(request_json)
        completion_tokens = count_tokens(content)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        completion_id = f"chatcmpl-fake-{next(fake._ids)}"
        created = int(time.time())
        if request_json.get("stream"):
            self._send_stream(completion_id, created, model, content, finish_reason, usage, request_json)
            return
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            },
        )

    def _send_stream(
        self,
        completion_id: str,
        created: int,
        model: str,
        content: str,
        finish_reason: str,
        usage: dict[str, int],
        request_json: dict[str, Any],
    ) -> None:
        """Minimal SSE streaming: one content chunk, a finish chunk, [DONE]."""

        def chunk(delta: dict[str, Any], fr: str | None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fr}],
            }

        events: list[dict[str, Any]] = [
            chunk({"role": "assistant", "content": content}, None),
            chunk({}, finish_reason),
        ]
        opts = request_json.get("stream_options") or {}
        if isinstance(opts, dict) and opts.get("include_usage"):
            events.append({**chunk({}, None), "choices": [], "usage": usage})
        payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        payload += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # -- low-level I/O ---------------------------------------------------------

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # trailing CRLF after last chunk
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(chunks)
        return b""

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, obj, headers or {})

    def _send_raw(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        if isinstance(body, bytes):
            data, ctype = body, "application/octet-stream"
        elif isinstance(body, str):
            data, ctype = body.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode("utf-8"), "application/json"
        try:
            self.send_response(status)
            if not any(k.lower() == "content-type" for k in headers):
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client already hung up; nothing useful to do.
            pass

    def _drop(self) -> None:
        """Close the connection without writing a single response byte."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # Prevent finish() from flushing anything buffered onto the socket.
        try:
            self.connection.close()
        except OSError:
            pass


class FakeOpenAIServer:
    """Scriptable fake OpenAI chat-completions server on ``127.0.0.1:<free port>``.

    Use as a context manager or call :meth:`start` / :meth:`stop`. After
    ``start()``, :attr:`base_url` is ``http://127.0.0.1:PORT/v1``.

    Attributes:
        default: reply used when the queue is empty -- a reply or a callable
            ``(request_json) -> reply``; None means "answer HTTP 500".
        model: model id reported by ``/v1/models`` and used when a request
            names none.
        requests: parsed JSON bodies of chat-completion POSTs, in arrival
            order (recorded even when the reply is a fault).
        received: every HTTP request (any path/method) as
            :class:`RecordedRequest`, including headers.
    """

    def __init__(self, default: Reply | None = None, model: str = FAKE_MODEL) -> None:
        self.default: Reply | None = default
        self.model = model
        self.requests: list[Any] = []
        self.received: list[RecordedRequest] = []
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind a free port and serve in a daemon thread. Returns ``self``."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("FakeOpenAIServer can be started only once")
        self._httpd = _Server(self)
        self._port = int(self._httpd.server_address[1])
        # poll_interval bounds how long shutdown() waits for serve_forever.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeOpenAIServer:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port; interrupts pending delays. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        # Set first so sleeping handlers wake and drop their connections.
        self._stop_event.set()
        httpd = self._httpd
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (only valid after ``start()``)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAIServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` -- pass to ``openai.OpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting -------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> FakeOpenAIServer:
        """Append one or more replies to the FIFO; each request pops one."""
        with self._lock:
            self._queue.extend(replies)
        return self

    @property
    def pending(self) -> int:
        """Number of scripted replies not yet consumed."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget queued replies and recorded requests (``default`` is kept)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.received.clear()

    # -- recording ---------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Number of chat-completion requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def last_request(self) -> Any:
        """The most recent chat-completion request body (None if none yet)."""
        with self._lock:
            return self.requests[-1] if self.requests else None

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.received.append(rec)
            if rec.method == "POST" and rec.path.endswith("/chat/completions"):
                self.requests.append(rec.body)

    # -- internals used by the handler -------------------------------------------

    def _next_reply(self, request_json: dict[str, Any]) -> Any:
        """Pop the next scripted reply (or use ``default``) and resolve callables."""
        with self._lock:
            has_scripted = bool(self._queue)
            scripted = self._queue.popleft() if has_scripted else None
        if has_scripted:
            return self._resolve(scripted, request_json)
        return self._resolve_default(request_json)

    def _resolve_default(self, request_json: dict[str, Any]) -> Any:
        if self.default is None:
            raise _NoScriptedReply()
        return self._resolve(self.default, request_json)

    @staticmethod
    def _resolve(reply: Any, request_json: dict[str, Any]) -> Any:
        # Callables may return further callables only by mistake; one level
        # is enough and avoids accidental infinite loops.
        if callable(reply) and not isinstance(reply, Fault):
            reply = reply(request_json)
        if reply is None:
            raise _NoScriptedReply()
        return reply

    def _interruptible_sleep(self, seconds: float) -> None:
        """Sleep in small steps so ``stop()`` is never blocked by a delay."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._stop_event.wait(min(_SLEEP_STEP_S, remaining)):
                raise _Stopped()


def free_port_refusing() -> str:
    """Return a ``base_url`` on 127.0.0.1 where nothing listens (connection refused).

    A port is bound (port 0) and immediately released; the kernel does not
    hand it out again right away, so connecting there is refused.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"http://127.0.0.1:{port}/v1"
