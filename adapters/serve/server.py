"""``streamcore serve``: relay chat streams to browsers over SSE and WebSocket, with resume.

Theory of operation
-------------------
:func:`open_server` binds a socket and serves each connection in its own task,
one request per connection (every response says ``connection: close``; the
streaming endpoints hold their connection for the whole stream anyway). The
request head is bounded by h11 (``max_header_bytes``, else 431), the body by
``max_body_bytes`` (413), the time to send the head by ``head_timeout``.

``POST /v1/streams`` creates a :class:`_Relay`: a :class:`ReplayBuffer` and a
supervisor task in the server's nursery, which runs the upstream request
(:func:`~streamcore.adapters.client.open_stream`, user-facing recovery) and
appends every event it yields to the buffer as one-line JSON. Subscribers (SSE
responses, WebSocket connections) never talk to the upstream: each keeps a
cursor (the last id it sent), sends ``buffer.since(cursor)``, then waits on the
relay's ``changed`` event (a fresh ``trio.Event`` per change, so waking is
O(subscribers) per event and nothing is queued per subscriber). When idle for
``keepalive`` seconds an SSE subscriber writes ``: ping`` and a WebSocket one a
ping frame. A reader task on each subscriber's socket notices the browser
leaving (EOF, reset) and cancels that subscriber at once.

The supervisor owns the stream's life. Whenever the relay has no subscriber it
calls ``buffer.idle(now, grace)``, with grace ``replay_lifetime`` (or 0 once a
subscriber left when ``resume=False``), and sleeps until ``expires_at`` or a
subscriber arrives. At the deadline it cancels the upstream request (which
closes its connection, so the provider stops generating) and drops the relay;
its id is remembered (bounded) so a late resume gets 410 rather than 404.

The store (``store.py``) holds every stream's log, request and lease: this
process's memory by default, Redis with ``store="redis://..."`` so that several
processes behind a load balancer share them. The owner's ``_publish`` task moves
the records its upstream appended into the store, a batch per call, and only
then raises ``committed``: subscribers never see a record the store does not
hold, so a browser that reconnects to any process with ``Last-Event-ID`` finds
exactly what it saw, followed by what it missed. ``_publish`` also renews the
lease. With the default memory store no other process reads the log, so a
*local* relay skips that hop: a record is visible as soon as it is pushed, the
buffer is the only copy, and ``_publish`` wakes only to renew and release.
If the store fails, the relay is *degraded*: one ``degraded`` record, then it
serves from memory only.

A ``GET`` for a stream this process does not hold opens a *mirror* relay from
the shared store (``_open_mirror``): the records so far, then ``_mirror`` follows
the log with blocking reads and marks the stream watched, so the owner keeps it.
When the owner's lease lapses (it died) and the log has no ``end``, the first
mirror to acquire the lease takes over (``_take_over``): it rebuilds the partial
text from the stored ``text_delta`` records, asks the provider to continue
(:func:`~streamcore.recovery.plan_resume`), joins the continuation with the
:class:`~streamcore.recovery.Stitcher`, and appends ``takeover``, ``stitched``,
the de-overlapped deltas and ``end`` after the last stored id. The store refuses
a record id written twice, so two writers can never both extend one log.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import math
import mimetypes
import re
import secrets
import urllib.parse
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import h11
import trio
import wsproto
import wsproto.events as ws

from streamcore._errors import LocalProtocolError, StreamcoreError
from streamcore.adapters.client import ADAPTERS, Provider, open_stream
from streamcore.adapters.emulator import open_emulator
from streamcore.adapters.http import HTTPClient
from streamcore.adapters.recover import Interrupted, Resuming, Retrying, Stitched
from streamcore.adapters.serve.limits import RateLimiter
from streamcore.adapters.serve.replay import Record, ReplayBuffer
from streamcore.adapters.serve.store import END, StoreUnavailable, StreamStore, open_store
from streamcore.events import KeepAlive, StreamStarted, TextDelta, event_to_dict
from streamcore.recovery import ContinueWithContext, plan_resume
from streamcore.request import ChatRequest, Message
from streamcore.sse import encode_comment, encode_event

__all__ = ["ServeConfig", "Server", "client_address", "open_server", "record_for"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The demo page's files (written by another part of the project; may be absent)."""

_RECEIVE_SIZE = 65536
_ROLES = frozenset({"system", "user", "assistant"})
_MAX_MESSAGES = 1000
_MAX_WS_MESSAGE = 64 * 1024
_MAX_TOMBSTONES = 10_000


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """How the server behaves; every limit has a bound. Times are seconds.

    ``token`` (a bearer token) is required when ``host`` is not loopback.
    ``resume=False`` cancels the upstream request as soon as its last
    subscriber leaves; with ``resume`` (the default) a stream waits
    ``replay_lifetime`` for somebody to come back. ``rate`` / ``burst`` limit
    stream creation per client address; ``max_streams`` caps relays alive at once.

    ``store`` names where streams' events and leases live: ``None`` (this
    process's memory) or ``redis://HOST:PORT/DB`` to share them between several
    processes (scale-out, see ``store.py``). ``lease_ttl`` is how long an owner's
    lease on a stream's upstream lasts unrenewed (a dead owner's streams are taken
    over after about that long); ``store_timeout`` bounds every store call;
    ``node`` names this process in leases (default: random).

    ``trusted_proxies``: addresses of proxies in front of the server (nginx). A
    request from one of them is counted (rate limits, errors) against the client
    named by its ``X-Forwarded-For``: the rightmost address there that is not itself
    a trusted proxy. From anyone else the header is ignored, so it cannot be forged.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)
    keepalive: float = 15.0
    retry_ms: int = 3000
    resume: bool = True
    replay_lifetime: float = 60.0
    replay_max_events: int = 20_000
    replay_max_bytes: int = 8 << 20
    max_body_bytes: int = 256 * 1024
    max_header_bytes: int = 16 * 1024
    max_streams: int = 64
    max_connections: int = 512
    rate: float = 1.0
    burst: int = 10
    head_timeout: float = 10.0
    ws_hello_timeout: float = 0.5
    model: str | None = None
    default_max_tokens: int | None = None
    trusted_proxies: tuple[str, ...] = ()
    store: str | None = field(default=None, repr=False)
    lease_ttl: float = 5.0
    store_timeout: float = 2.0
    node: str | None = None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "192.0.2.1")]
    [True, True, True, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def record_for(event: object) -> tuple[str, dict[str, object]] | None:
    """The ``(type, payload)`` relayed for a stream event; ``None`` for keep-alives.

    >>> from streamcore.events import TextDelta
    >>> record_for(TextDelta("Hi"))
    ('text_delta', {'type': 'text_delta', 'text': 'Hi', 'choice': 0})
    """
    if isinstance(event, KeepAlive):
        return None  # the server sends its own keep-alives
    if isinstance(event, Retrying):
        payload: dict[str, object] = {
            "type": "retrying",
            "attempt": event.attempt,
            "delay": event.delay,
            "reason": event.reason,
            "discarded_chars": event.discarded_chars,
        }
    elif isinstance(event, Resuming):
        payload = {
            "type": "resuming",
            "attempt": event.attempt,
            "delay": event.delay,
            "reason": event.reason,
            "mode": event.mode.value,
            "partial_chars": event.partial_chars,
        }
    elif isinstance(event, Stitched):
        payload = {
            "type": "stitched",
            "attempt": event.attempt,
            "offset": event.seam.offset,
            "overlap": event.seam.overlap,
        }
    elif isinstance(event, Interrupted):
        payload = {
            "type": "interrupted",
            "state": event.state.value,
            "reason": event.reason,
            "marker": event.marker,
            "partial": event.partial,
        }
    else:
        payload = event_to_dict(event)  # type: ignore[arg-type]
    return str(payload["type"]), payload


def _dumps(payload: object) -> str:
    # default=str: a provider's raw payload is JSON already; anything else is shown, not fatal
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


def _ws_text(record: Record) -> str:
    """The WebSocket message for ``record``: its JSON object with ``id`` (and ``type``) first.

    >>> _ws_text(Record(3, "end", '{"state":"completed","text_chars":933}'))
    '{"id":3,"type":"end","state":"completed","text_chars":933}'
    """
    data = record.data  # a JSON object; splicing avoids decoding and re-encoding it
    if data.startswith('{"type":'):
        return f'{{"id":{record.id},{data[1:]}'
    rest = "}" if data == "{}" else "," + data[1:]
    return f'{{"id":{record.id},"type":{json.dumps(record.type)}{rest}'


def client_address(peer: str, forwarded_for: list[str], trusted: tuple[str, ...]) -> str:
    """The client a request counts against: ``peer``, or behind trusted proxies, who they name.

    ``forwarded_for`` holds the request's ``X-Forwarded-For`` values in order; each
    proxy appends the address it received the request from. Walking from the right,
    every hop that is a trusted proxy is skipped; the first that is not is the client.

    >>> client_address("10.0.0.2", ["203.0.113.7, 10.0.0.9"], ("10.0.0.2", "10.0.0.9"))
    '203.0.113.7'
    >>> client_address("198.51.100.4", ["203.0.113.7"], ("10.0.0.2",))  # not a proxy: ignored
    '198.51.100.4'
    """
    if peer not in trusted:
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if hop and hop not in trusted:
            return hop[:64]
    return peer


def _head_size(head: h11.Request) -> int:
    return len(head.target) + sum(len(k) + len(v) + 4 for k, v in head.headers)


_MAX_BATCH = 512
"""Records stored by one store call at most."""
_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a stream id looks like (``secrets.token_urlsafe``); anything else is never looked up."""


def _request_json(request: ChatRequest) -> str:
    """The request as stored, for a process that takes the stream over."""
    doc: dict[str, object] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.max_tokens is not None:
        doc["max_tokens"] = request.max_tokens
    return _dumps(doc)


def _request_from_json(text: str) -> ChatRequest | None:
    try:
        doc = json.loads(text)
        messages = tuple(Message(m["role"], m["content"]) for m in doc["messages"])
        return ChatRequest(model=doc["model"], messages=messages, max_tokens=doc.get("max_tokens"))
    except (ValueError, KeyError, TypeError):
        return None


def _delta(text: str) -> tuple[str, dict[str, object]]:
    return "text_delta", {"type": "text_delta", "text": text, "choice": 0}


def _mirror_into(buffer: ReplayBuffer, records: list[Record]) -> None:
    """Append records read from the store; their ids must be the buffer's next ones."""
    for r in records:
        if buffer.closed:
            return
        mine = buffer.close(r.type, r.data) if r.type == END else buffer.append(r.type, r.data)
        if mine.id != r.id:
            raise LocalProtocolError(
                f"stored record {r.id} arrived where record {mine.id} was expected",
                kind="id_conflict",
            )


def _partial_text(buffer: ReplayBuffer) -> str | None:
    """The answer text (choice 0) the stored records add up to; ``None`` if the first
    records are no longer held."""
    if buffer.first_id != 1:
        return None
    parts: list[str] = []
    size = 0
    for r in buffer.since(0):
        if r.type == "text_delta":
            doc = json.loads(r.data)
            if doc.get("choice", 0) == 0:
                parts.append(doc["text"])
                size += len(doc["text"])
        elif r.type == "retrying":
            drop = int(json.loads(r.data).get("discarded_chars", 0))
            text = "".join(parts)
            parts, size = [text[: max(0, size - drop)]], max(0, size - drop)
    return "".join(parts)


class _HTTPError(Exception):
    """Internal: answer the request with a JSON error (never a traceback)."""

    def __init__(
        self, status: int, type: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers

    @classmethod
    def store_unavailable(cls, exc: StoreUnavailable, doing: str) -> _HTTPError:
        """503 with ``retry-after``: the store is down (``doing`` says what failed)."""
        return cls(
            503,
            "store_unavailable",
            f"{doing}: the stream store is unavailable ({exc}); retry later",
            (("retry-after", "1"),),
        )


class _Relay:
    """One relayed stream: its buffer, its subscribers, and their wake-ups.

    ``changed`` fires on every new visible record and subscriber change (for
    subscribers); ``watchers_changed`` only when the subscriber count changes
    (for the supervisor, which must not wake per record); ``appended`` on every
    record pushed (for the publisher).

    ``committed`` is the newest id subscribers may see: one the store holds
    (so a reconnect to any process finds it), or, once ``degraded`` or when
    ``local`` (the store is this process's own: nobody else reads it), one this
    process holds. ``owned``: this process runs the upstream; otherwise the relay
    mirrors a stream another process owns, and ``lost`` says the store lost it.
    """

    def __init__(
        self,
        stream_id: str,
        request: ChatRequest,
        buffer: ReplayBuffer,
        *,
        owned: bool = True,
        local: bool = False,
    ) -> None:
        self.id = stream_id
        self.request = request
        self.buffer = buffer
        self.owned = owned
        self.local = local
        self.subscribers = 0
        self.ever_watched = False
        self.text_chars = 0
        self.committed = 0
        self.degraded = False
        self.lost = False
        self.changed = trio.Event()
        self.appended = trio.Event()
        self.watchers_changed = trio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def add_subscriber(self, delta: int) -> None:
        """Count a subscriber in (+1) or out (-1), and wake whoever waits on either event."""
        self.subscribers += delta
        if delta > 0:
            self.ever_watched = True
        self.watchers_changed.set()
        self.watchers_changed = trio.Event()
        self.notify()

    def push(self, type: str, payload: dict[str, object], *, last: bool = False) -> None:
        data = _dumps(payload)
        record = self.buffer.close(type, data) if last else self.buffer.append(type, data)
        if self.degraded or self.local:
            # Shown at once: no store to reach first. That saves the publisher a
            # wake-up per record; it only wakes for the end, to release the lease.
            self.committed = record.id
            self.notify()
            if not last:
                return
        # The publisher stores it, then shows it to subscribers.
        self.appended.set()
        self.appended = trio.Event()

    def commit(self, last_id: int) -> None:
        self.committed = last_id
        self.notify()

    def visible(self, cursor: int) -> list[Record]:
        """The records after ``cursor`` subscribers may see (raises as ``since`` does)."""
        records = self.buffer.since(cursor)
        keep = self.committed - cursor
        if keep < len(records):
            del records[max(0, keep) :]
        return records

    def finished(self, cursor: int) -> bool:
        return self.lost or (self.buffer.closed and cursor == self.buffer.last_id)


async def _run_to_end(relay: _Relay, answer: Callable[[], Awaitable[str]]) -> None:
    """Run ``answer`` (it pushes the records and returns the final state), then push the
    one ``end`` record, whatever broke: an error becomes ``state: error`` with its reason."""
    state = "error"
    error: dict[str, str] | None = None
    try:
        state = await answer()
    except StreamcoreError as exc:
        error = {"type": exc.kind, "message": str(exc)}
    except Exception as exc:  # a relay must end with `end`, whatever broke
        error = {"type": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
    payload: dict[str, object] = {"state": state, "text_chars": relay.text_chars}
    if error is not None:
        payload["error"] = error
    relay.push("end", payload, last=True)


class _Request:
    def __init__(self, head: h11.Request, client: str) -> None:
        self.method = head.method.decode("ascii", "replace")
        target = head.target.decode("latin-1")
        path, _, query = target.partition("?")
        self.path = urllib.parse.unquote(path)
        self.query = dict(urllib.parse.parse_qsl(query))
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers]
        self.raw_headers = head.headers
        self.client = client

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Server:
    """A running relay server; get one from :func:`open_server`.

    ``relays`` maps live stream ids to their relays (for tests and stats).
    """

    def __init__(
        self, config: ServeConfig, provider: Provider, http: HTTPClient, store: StreamStore
    ) -> None:
        self.config = config
        self.provider = provider
        self.store = store
        self.node = config.node or f"relay-{secrets.token_hex(4)}"
        self._http = http
        self._limiter = RateLimiter(rate=config.rate, burst=config.burst)
        self.relays: dict[str, _Relay] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._connections = 0
        self._nursery: trio.Nursery | None = None
        self.host = ""
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the listening socket."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ connections

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self._connections += 1
        try:
            peer = stream.socket.getpeername()
            client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            conn = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self.config.max_header_bytes
            )
            head: h11.Request | None = None
            try:
                with trio.fail_after(self.config.head_timeout):
                    head = await self._read_head(stream, conn)
                if head is None:
                    return
                if _head_size(head) > self.config.max_header_bytes:
                    # h11 bounds a head that arrives in pieces; one that came whole is checked here
                    raise h11.RemoteProtocolError("head too large", error_status_hint=431)
                if self._connections > self.config.max_connections:
                    raise _HTTPError(503, "overloaded", "too many connections; retry later")
                if self.config.trusted_proxies and client in self.config.trusted_proxies:
                    forwarded = [
                        v.decode("latin-1") for k, v in head.headers if k == b"x-forwarded-for"
                    ]
                    client = client_address(client, forwarded, self.config.trusted_proxies)
                await self._route(stream, conn, _Request(head, client))
            except _HTTPError as exc:
                await self._send_error(stream, conn, exc)
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                kind = "headers_too_large" if status == 431 else "bad_request"
                message = (
                    f"request head exceeds {self.config.max_header_bytes} bytes (max_header_bytes)"
                    if status == 431
                    else f"malformed HTTP request: {exc}"
                )
                await self._send_error(stream, conn, _HTTPError(status, kind, message))
            except trio.TooSlowError:
                await self._send_error(
                    stream, conn, _HTTPError(408, "timeout", "request head took too long")
                )
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            except Exception as exc:  # one broken request must not take the server down
                error = _HTTPError(500, "internal_error", f"internal error ({type(exc).__name__})")
                await self._send_error(stream, conn, error)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_head(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
            elif isinstance(event, h11.Request):
                return event
            else:
                return None

    async def _read_body(self, stream: trio.SocketStream, conn: h11.Connection) -> bytes:
        limit = self.config.max_body_bytes
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise _HTTPError(413, "body_too_large", self._body_message())
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise _HTTPError(400, "bad_request", "the request body was cut off")

    def _body_message(self) -> str:
        return (
            f"request body exceeds {self.config.max_body_bytes} bytes (max_body_bytes); "
            "send fewer or shorter messages"
        )

    async def _send(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        body: bytes,
        content_type: str,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            ("connection", "close"),
            *extra,
        ]
        try:
            data = (
                conn.send(
                    h11.Response(
                        status_code=status, headers=headers, reason=HTTPStatus(status).phrase
                    )
                )
                or b""
            )
            data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # a response already started; the connection just closes
        await stream.send_all(data)

    async def _send_json(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        payload: object,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        await self._send(stream, conn, status, body, "application/json", extra)

    async def _send_error(
        self, stream: trio.SocketStream, conn: h11.Connection, exc: _HTTPError
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        payload = {"error": {"type": exc.type, "message": exc.message}}
        await self._send_json(stream, conn, exc.status, payload, exc.headers)

    # ------------------------------------------------------------------ routing

    async def _route(self, stream: trio.SocketStream, conn: h11.Connection, req: _Request) -> None:
        path = req.path
        if path == "/healthz":
            self._only(req, "GET")
            await self._send_json(stream, conn, 200, {"ok": True})
        elif path == "/" or path.startswith("/static/"):
            self._only(req, "GET")
            await self._static(stream, conn, "index.html" if path == "/" else path[8:])
        elif path == "/v1/streams":
            self._only(req, "POST")
            self._authorize(req)
            await self._create(stream, conn, req)
        elif path.startswith("/v1/streams/"):
            stream_id, _, tail = path[len("/v1/streams/") :].partition("/")
            if tail == "events":
                self._only(req, "GET")
                self._authorize(req)
                await self._sse(stream, conn, req, stream_id)
            elif tail == "ws":
                self._only(req, "GET")
                await self._websocket(stream, conn, req, stream_id)
            else:
                raise _HTTPError(404, "not_found", f"no such endpoint: {path}")
        else:
            raise _HTTPError(
                404,
                "not_found",
                f"no such endpoint: {req.method} {path}; the server serves POST /v1/streams, "
                "GET /v1/streams/<id>/events, GET /v1/streams/<id>/ws, GET /healthz and /",
            )

    def _only(self, req: _Request, method: str) -> None:
        if req.method != method:
            raise _HTTPError(
                405,
                "method_not_allowed",
                f"{req.path} accepts {method} only, got {req.method}",
                (("allow", method),),
            )

    def _token_ok(self, req: _Request) -> bool:
        token = self.config.token
        if token is None:
            return True
        given = req.query.get("access_token", "")
        auth = req.header("authorization") or ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _authorize(self, req: _Request) -> None:
        if not self._token_ok(req):
            raise _HTTPError(
                401,
                "unauthorized",
                "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
                "(or ?access_token= where headers cannot be set)",
                (("www-authenticate", "Bearer"),),
            )

    async def _static(self, stream: trio.SocketStream, conn: h11.Connection, name: str) -> None:
        root = STATIC_DIR
        target = (root / name).resolve()
        if not name or root not in target.parents or not target.is_file():
            raise _HTTPError(404, "not_found", f"no static file {name!r}")
        body = await trio.Path(target).read_bytes()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/javascript":
            kind += "; charset=utf-8"
        await self._send(stream, conn, 200, body, kind)

    # ------------------------------------------------------------------ creating streams

    def _parse_chat(self, body: bytes) -> ChatRequest:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _HTTPError(400, "invalid_json", "request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _HTTPError(400, "invalid_request", "request body must be a JSON object")
        messages = doc.get("messages")
        if not isinstance(messages, list) or not messages or len(messages) > _MAX_MESSAGES:
            raise _HTTPError(
                400,
                "invalid_request",
                f"'messages' must be a non-empty list of at most {_MAX_MESSAGES} messages",
            )
        out: list[Message] = []
        for i, m in enumerate(messages):
            if (
                not isinstance(m, dict)
                or m.get("role") not in _ROLES
                or not isinstance(m.get("content"), str)
            ):
                raise _HTTPError(
                    400,
                    "invalid_request",
                    f"messages[{i}] must be {{'role': 'user'|'assistant'|'system', "
                    "'content': <string>}",
                )
            out.append(Message(m["role"], m["content"]))
        model = doc.get("model", self.config.model or self.provider.model or "")
        max_tokens = doc.get("max_tokens", self.config.default_max_tokens)
        if not isinstance(model, str):
            raise _HTTPError(400, "invalid_request", "'model' must be a string")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise _HTTPError(400, "invalid_request", "'max_tokens' must be a positive integer")
        return ChatRequest(model=model, messages=tuple(out), max_tokens=max_tokens)

    def _new_buffer(self) -> ReplayBuffer:
        return ReplayBuffer(
            max_events=self.config.replay_max_events, max_bytes=self.config.replay_max_bytes
        )

    async def _create(self, stream: trio.SocketStream, conn: h11.Connection, req: _Request) -> None:
        length = req.header("content-length")
        if length is not None and length.isdigit() and int(length) > self.config.max_body_bytes:
            raise _HTTPError(413, "body_too_large", self._body_message())
        body = await self._read_body(stream, conn)
        request = self._parse_chat(body)
        wait = self._limiter.take(req.client, now=trio.current_time())
        if wait > 0:
            raise _HTTPError(
                429,
                "rate_limited",
                f"too many streams from {req.client}; retry in {wait:.1f} s",
                (("retry-after", str(math.ceil(wait))),),
            )
        if len(self.relays) >= self.config.max_streams:
            raise _HTTPError(
                503,
                "too_many_streams",
                f"{self.config.max_streams} streams are open (max_streams); retry later",
                (("retry-after", "1"),),
            )
        stream_id = secrets.token_urlsafe(12)
        try:
            await self.store.create(
                stream_id, _request_json(request), owner=self.node, ttl=self.config.lease_ttl
            )
        except StoreUnavailable as exc:
            raise _HTTPError.store_unavailable(exc, "cannot open a stream") from None
        relay = _Relay(stream_id, request, self._new_buffer(), local=not self.store.shared)
        self.relays[stream_id] = relay
        assert self._nursery is not None
        self._nursery.start_soon(self._supervise, relay, self._run_owned)
        base = f"/v1/streams/{stream_id}"
        payload = {"id": stream_id, "events": base + "/events", "ws": base + "/ws"}
        await self._send_json(stream, conn, 201, payload, (("location", base),))

    # ------------------------------------------------------------------ upstream

    async def _supervise(self, relay: _Relay, work: Callable[[_Relay], Awaitable[None]]) -> None:
        """Run ``work`` (the upstream, or a mirror of a stream another process owns)
        until it ends or nobody watched for the grace period."""
        buffer = relay.buffer
        buffer.idle(trio.current_time(), self.config.replay_lifetime)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guarded, work, relay)
            while True:
                # Only a change in the subscriber count matters here (not every record).
                if relay.subscribers:
                    buffer.watched()
                    await relay.watchers_changed.wait()
                    continue
                deadline = buffer.expires_at
                if deadline is None:
                    grace = self.config.replay_lifetime
                    if relay.ever_watched and not self.config.resume and not buffer.closed:
                        grace = 0.0
                    buffer.idle(trio.current_time(), grace)
                    deadline = trio.current_time() + grace
                with trio.move_on_at(deadline):
                    await relay.watchers_changed.wait()
                    continue
                if relay.owned and not buffer.closed and await self._watched_elsewhere(relay):
                    # Subscribers on other processes follow it: look again in a while.
                    buffer.idle(trio.current_time(), self.config.lease_ttl)
                    continue
                break  # nobody came back in time
            nursery.cancel_scope.cancel()
        buffer.expire()
        if self.relays.get(relay.id) is relay:
            del self.relays[relay.id]
        if relay.owned:
            # An abandoned stream is gone for every process (nobody may take it over); an
            # ended one stays in a shared store for its TTL, for resumes elsewhere.
            if not buffer.closed or not self.store.shared:
                with trio.move_on_after(self.config.store_timeout) as scope:
                    scope.shield = True
                    with suppress(StoreUnavailable):
                        await self.store.expire(relay.id, 0)
            self._gone[relay.id] = None
            if len(self._gone) > _MAX_TOMBSTONES:
                self._gone.popitem(last=False)

    async def _guarded(self, work: Callable[[_Relay], Awaitable[None]], relay: _Relay) -> None:
        try:
            await work(relay)
        except Exception:  # a bug must cost one stream, never the server: end its subscribers
            relay.lost = True
            relay.notify()

    async def _watched_elsewhere(self, relay: _Relay) -> bool:
        if not self.store.shared:
            return False
        try:
            return await self.store.watched(relay.id)
        except StoreUnavailable:
            return False

    async def _run_owned(self, relay: _Relay) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish, relay)
            await self._upstream(relay)

    async def _upstream(self, relay: _Relay) -> None:
        async def relay_answer() -> str:
            async with open_stream(
                self.provider, relay.request, http=self._http, count_tokens=False
            ) as upstream:
                async for event in upstream:
                    item = record_for(event)
                    if item is not None:
                        relay.push(*item)
            result = upstream.result()
            relay.text_chars = len(result.text)
            return result.state.value

        await _run_to_end(relay, relay_answer)

    async def _publish(self, relay: _Relay) -> None:
        """Store the relay's new records (every batch in one call), then let subscribers
        see them; renew the lease meanwhile. Returns once the end record is stored."""
        store, config = self.store, self.config
        key_ttl = max(config.replay_lifetime, config.lease_ttl * 10)
        renew_every = config.lease_ttl / 3
        renew_at = trio.current_time() + renew_every
        cursor = relay.committed
        while True:
            buffer = relay.buffer
            if relay.local:
                cursor = relay.committed  # nothing to store: see _Relay.push
            if not relay.degraded and buffer.last_id > cursor:
                try:
                    batch = buffer.since(cursor)[:_MAX_BATCH]
                    await store.append(relay.id, batch, ttl=key_ttl)
                except (StoreUnavailable, LocalProtocolError) as exc:
                    self._degrade(relay, exc)
                else:
                    cursor = batch[-1].id
                    relay.commit(cursor)
                continue
            if buffer.closed and (relay.degraded or cursor == buffer.last_id):
                break
            if trio.current_time() >= renew_at:
                renew_at = trio.current_time() + renew_every
                await self._renew(relay)
                continue
            with trio.move_on_at(renew_at):
                await relay.appended.wait()
        if relay.degraded:
            return
        with trio.move_on_after(config.store_timeout), suppress(StoreUnavailable):
            # Late resumes on any process may replay it for the replay lifetime.
            await store.expire(relay.id, config.replay_lifetime + config.lease_ttl)
            await store.release(relay.id, self.node)

    async def _renew(self, relay: _Relay) -> None:
        try:
            kept = await self.store.renew(relay.id, self.node, ttl=self.config.lease_ttl)
        except StoreUnavailable as exc:
            self._degrade(relay, exc)
            return
        if not kept and not relay.degraded:
            lost = LocalProtocolError(
                "this process lost its lease on the stream (it paused longer than lease_ttl)",
                kind="lease_lost",
            )
            self._degrade(relay, lost)

    def _degrade(self, relay: _Relay, exc: StreamcoreError) -> None:
        """Keep serving ``relay`` from memory only, and say so once."""
        if relay.degraded:
            return
        relay.degraded = True
        relay.commit(relay.buffer.last_id)
        if not relay.buffer.closed:
            relay.push(
                "degraded",
                {
                    "type": "degraded",
                    "reason": exc.kind,
                    "message": "the stream store is unavailable: this connection keeps "
                    "streaming, but resuming it through another server may fail",
                },
            )

    # ------------------------------------------------------------------ other processes' streams

    async def _open_mirror(self, stream_id: str) -> _Relay | None:
        """A relay following ``stream_id`` from the shared store (``None``: unknown there)."""
        if not self.store.shared or not _STREAM_ID.fullmatch(stream_id):
            return None
        try:
            request_json = await self.store.request_of(stream_id)
            request = _request_from_json(request_json) if request_json else None
            if request is None:
                return None
            buffer = self._new_buffer()
            while not buffer.closed:
                records = await self.store.read(stream_id, buffer.last_id)
                if not records:
                    break
                _mirror_into(buffer, records)
        except StoreUnavailable as exc:
            raise _HTTPError.store_unavailable(exc, "cannot read the stream") from None
        except LocalProtocolError as exc:
            raise _HTTPError(410, "replay_expired", str(exc)) from None
        existing = self.relays.get(stream_id)
        if existing is not None and not existing.lost:
            return existing  # another request opened it while this one read the store
        relay = _Relay(stream_id, request, buffer, owned=False)
        relay.committed = buffer.last_id
        self.relays[stream_id] = relay
        assert self._nursery is not None
        self._nursery.start_soon(self._supervise, relay, self._mirror)
        return relay

    async def _mirror(self, relay: _Relay) -> None:
        """Follow a stream another process owns; take it over when its lease lapses."""
        store, config = self.store, self.config
        poll = config.lease_ttl / 2
        mark_at = 0.0
        failures = 0
        while not relay.buffer.closed:
            try:
                if relay.subscribers and trio.current_time() >= mark_at:
                    await store.mark_watched(relay.id, ttl=config.lease_ttl * 2)
                    mark_at = trio.current_time() + poll
                records = await store.wait(relay.id, relay.buffer.last_id, timeout=poll)
                failures = 0
                if records:
                    _mirror_into(relay.buffer, records)
                    relay.commit(relay.buffer.last_id)
                    continue
                if await store.owner_of(relay.id) is None:
                    if await store.request_of(relay.id) is None:
                        break  # the store lost it (expired, or restarted empty)
                    if await store.acquire(relay.id, self.node, ttl=config.lease_ttl):
                        await self._take_over(relay)
                        return
            except StoreUnavailable:
                failures += 1  # the store is down: keep the subscribers, try again
                await trio.sleep(min(poll, 0.05 * failures))
            except LocalProtocolError:
                break  # trimmed past what we hold: this mirror cannot go on
        if not relay.buffer.closed:
            relay.lost = True
            relay.notify()

    async def _take_over(self, relay: _Relay) -> None:
        """This process won the lapsed lease: finish the answer from the text stored so far."""
        with suppress(StoreUnavailable):  # what the old owner stored after our last read
            _mirror_into(relay.buffer, await self.store.read(relay.id, relay.buffer.last_id))
        relay.commit(relay.buffer.last_id)
        relay.owned = True
        if relay.buffer.closed:  # the old owner finished after all
            with suppress(StoreUnavailable):
                await self.store.release(relay.id, self.node)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish, relay)
            await self._continue(relay)

    async def _continue(self, relay: _Relay) -> None:
        """Resume the answer with context (the partial text), stitched at the seam."""
        relay.text_chars = 0

        async def continue_answer() -> str:
            partial = _partial_text(relay.buffer)
            if partial is None:
                raise LocalProtocolError(
                    "cannot take the stream over: its first events are no longer stored "
                    "(replay_max_events); start a new stream",
                    kind="takeover_impossible",
                )
            relay.text_chars = len(partial)
            dialect = ADAPTERS[self.provider.dialect].resume_dialect
            plan = plan_resume(relay.request, partial, dialect)
            if not isinstance(plan, ContinueWithContext):
                raise LocalProtocolError(
                    f"cannot take over a {dialect} stream by replay", kind="takeover_impossible"
                )
            relay.push(
                "takeover",
                {
                    "type": "takeover",
                    "node": self.node,
                    "partial_chars": len(partial),
                    "mode": "prefill" if plan.prefill else "continue",
                },
            )
            stitcher = plan.stitcher()
            shift = len(plan.partial_text) - len(partial)
            seam_sent = False

            def show(text: str) -> None:
                nonlocal seam_sent
                seam = stitcher.seam
                if seam is not None and not seam_sent:
                    seam_sent = True
                    relay.push(
                        "stitched",
                        {
                            "type": "stitched",
                            "attempt": 0,
                            "offset": seam.offset - shift,
                            "overlap": seam.overlap,
                        },
                    )
                if text:
                    relay.text_chars += len(text)
                    relay.push(*_delta(text))

            async with open_stream(
                self.provider, plan.request, http=self._http, count_tokens=False
            ) as upstream:
                async for event in upstream:
                    if isinstance(event, TextDelta) and event.choice == 0:
                        show(stitcher.feed(event.text))
                    elif not isinstance(event, StreamStarted):
                        item = record_for(event)
                        if item is not None:
                            relay.push(*item)
            show("" if stitcher.decided else stitcher.end())
            return upstream.result().state.value

        await _run_to_end(relay, continue_answer)

    # ------------------------------------------------------------------ subscribers

    def _cursor(self, req: _Request, header: str | None) -> int:
        raw = header if header is not None else req.query.get("last_event_id")
        if raw is None or raw == "":
            return 0
        if not raw.isdigit() or len(raw) > 18:
            raise _HTTPError(
                400, "bad_event_id", f"last event id {raw[:40]!r} is not a non-negative integer"
            )
        return int(raw)

    async def _lookup(self, stream_id: str, cursor: int) -> tuple[_Relay, list[Record]]:
        relay = self.relays.get(stream_id)
        if relay is None or relay.lost:
            # A shared store may still hold a stream this process dropped (it ended here)
            relay = await self._open_mirror(stream_id)
            if relay is None and stream_id in self._gone:
                raise _HTTPError(
                    410, "stream_expired", "this stream ended and its replay buffer expired"
                )
            if relay is None:
                raise _HTTPError(404, "unknown_stream", f"no stream with id {stream_id[:40]!r}")
        try:
            return relay, relay.visible(cursor)
        except LocalProtocolError as exc:
            status = 410 if exc.kind == "replay_expired" else 400
            raise _HTTPError(status, exc.kind, str(exc)) from None

    async def _follow(
        self,
        relay: _Relay,
        cursor: int,
        first: list[Record],
        send: Callable[[list[Record]], Awaitable[None]],
        ping: Callable[[], Awaitable[None]],
    ) -> None:
        """Send ``first``, then every new record, pinging when idle; returns after ``end``."""
        relay.add_subscriber(+1)
        try:
            records = first
            while True:
                if records:
                    await send(records)
                    cursor = records[-1].id
                if relay.finished(cursor):
                    return
                # Wait only if nothing came while we were sending: `changed` is a fresh
                # event per change, so one set during `send` would never wake us.
                if relay.committed == cursor:
                    with trio.move_on_after(self.config.keepalive) as idle:
                        await relay.changed.wait()
                    if idle.cancelled_caught:
                        await ping()
                try:
                    records = relay.visible(cursor)
                except LocalProtocolError:
                    # This subscriber fell behind the buffer's bound: its next events are
                    # gone. End its response; a reconnect gets 410 and starts over.
                    return
        finally:
            relay.add_subscriber(-1)

    async def _watch_peer(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the client closes its end (EOF or reset)."""
        read = 0
        try:
            while True:
                data = await stream.receive_some(_RECEIVE_SIZE)
                read += len(data)
                if not data or read > self.config.max_body_bytes:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    async def _sse(
        self, stream: trio.SocketStream, conn: h11.Connection, req: _Request, stream_id: str
    ) -> None:
        cursor = self._cursor(req, req.header("last-event-id"))
        relay, first = await self._lookup(stream_id, cursor)
        head = h11.Response(
            status_code=200,
            reason=b"OK",
            headers=[
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache"),
                ("x-accel-buffering", "no"),
                ("connection", "close"),
            ],
        )
        await stream.send_all(conn.send(head) or b"")
        retry: list[int | None] = [self.config.retry_ms]

        async def send(records: list[Record]) -> None:
            parts = []
            for r in records:
                parts.append(encode_event(r.data, event=r.type, id=str(r.id), retry=retry[0]))
                retry[0] = None
            await stream.send_all(conn.send(h11.Data(data=b"".join(parts))) or b"")

        async def ping() -> None:
            await stream.send_all(conn.send(h11.Data(data=encode_comment("ping"))) or b"")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_peer, stream, nursery.cancel_scope)
            try:
                await self._follow(relay, cursor, first, send, ping)
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            finally:
                nursery.cancel_scope.cancel()

    async def _websocket(
        self, stream: trio.SocketStream, conn: h11.Connection, req: _Request, stream_id: str
    ) -> None:
        if (req.header("upgrade") or "").lower() != "websocket":
            raise _HTTPError(
                400, "upgrade_required", "this endpoint speaks WebSocket; send Upgrade: websocket"
            )
        wsc = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        try:
            wsc.initiate_upgrade_connection(list(req.raw_headers), req.path)
            data = b""
            for event in wsc.events():
                if isinstance(event, ws.Request):
                    data = wsc.send(ws.AcceptConnection())
        except wsproto.utilities.ProtocolError as exc:
            raise _HTTPError(400, "bad_websocket_handshake", str(exc)) from None
        if not data:
            raise _HTTPError(400, "bad_websocket_handshake", "not a WebSocket handshake")
        await stream.send_all(data)
        trailing, _ = conn.trailing_data
        session = _WebSocket(self, stream, wsc, bytes(trailing))
        await session.run(req, stream_id)


class _WebSocket:
    """One WebSocket subscriber: a reader task for frames, the relay follower for writes."""

    def __init__(
        self, server: Server, stream: trio.SocketStream, wsc: wsproto.WSConnection, pending: bytes
    ) -> None:
        self._server = server
        self._stream = stream
        self._wsc = wsc
        self._pending = pending
        self._messages: trio.MemorySendChannel[str]
        self._messages, self._inbox = trio.open_memory_channel[str](1)
        self._closed = False
        self._heard = False

    async def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        with suppress(
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            wsproto.utilities.LocalProtocolError,
        ):
            await self._stream.send_all(self._wsc.send(ws.CloseConnection(code, reason[:120])))

    async def _reader(self, scope: trio.CancelScope) -> None:
        """Feed frames to wsproto; text goes to the inbox; close/EOF cancels ``scope``."""
        text: list[str] = []
        size = 0
        data = self._pending
        try:
            while True:
                if data:
                    self._wsc.receive_data(data)
                for event in self._wsc.events():
                    if isinstance(event, ws.Ping):
                        await self._stream.send_all(self._wsc.send(event.response()))
                    elif isinstance(event, ws.CloseConnection):
                        if not self._closed:
                            self._closed = True
                            await self._stream.send_all(self._wsc.send(event.response()))
                        scope.cancel()
                        return
                    elif isinstance(event, ws.TextMessage):
                        size += len(event.data)
                        if size > _MAX_WS_MESSAGE:
                            await self._close(1009, "message too big")
                            scope.cancel()
                            return
                        text.append(event.data)
                        if event.message_finished:
                            message, text, size = "".join(text), [], 0
                            if not self._heard:  # only the first message (the hello) matters
                                self._heard = True
                                self._messages.send_nowait(message)
                    elif isinstance(event, ws.BytesMessage):
                        await self._close(1003, "text messages only")
                        scope.cancel()
                        return
                data = await self._stream.receive_some(_RECEIVE_SIZE)
                if not data:
                    break  # EOF: the browser went away without a close frame
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            wsproto.utilities.RemoteProtocolError,
        ):
            pass
        scope.cancel()

    async def run(self, req: _Request, stream_id: str) -> None:
        server = self._server
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader, nursery.cancel_scope)
            try:
                await self._session(req, stream_id)
            except _HTTPError as exc:
                code = {401: 1008, 404: 4404, 410: 4410}.get(exc.status, 1008)
                await self._close(code, exc.message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except Exception:  # never a traceback to the peer; 1011 says "server error"
                await self._close(1011, "internal error")
            finally:
                nursery.cancel_scope.cancel()
        del server

    async def _session(self, req: _Request, stream_id: str) -> None:
        server = self._server
        if not server._token_ok(req):
            raise _HTTPError(401, "unauthorized", "missing or wrong bearer token")
        cursor = server._cursor(req, None)
        if "last_event_id" not in req.query:
            with trio.move_on_after(server.config.ws_hello_timeout):
                cursor = self._hello(await self._inbox.receive())
        relay, first = await server._lookup(stream_id, cursor)

        async def send(records: list[Record]) -> None:
            wire = b"".join(self._wsc.send(ws.TextMessage(data=_ws_text(r))) for r in records)
            await self._stream.send_all(wire)

        async def ping() -> None:
            await self._stream.send_all(self._wsc.send(ws.Ping(b"keepalive")))

        await server._follow(relay, cursor, first, send, ping)
        await self._close(1000, "end of stream")

    @staticmethod
    def _hello(message: str) -> int:
        try:
            doc = json.loads(message)
        except ValueError:
            doc = None
        value = doc.get("resume_from") if isinstance(doc, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _HTTPError(
                400, "bad_hello", 'the first message must be {"resume_from": <last id or 0>}'
            )
        return value


@asynccontextmanager
async def open_server(
    config: ServeConfig | None = None,
    *,
    provider: Provider | None = None,
    emulator_faults: str | None = None,
) -> AsyncIterator[Server]:
    """Serve the relay for the duration of the ``async with`` block.

    ``provider`` is where chat requests go; ``None`` starts the built-in
    emulator in-process (with ``emulator_faults``) and relays to it. ``port=0``
    in ``config`` binds an ephemeral port (``server.port``). Raises
    :class:`~streamcore.LocalProtocolError` (``kind="token_required"``) before
    binding anything if ``config.host`` is not loopback and no token is set.
    On exit every connection is closed and every upstream request cancelled::

        async with open_server(ServeConfig(port=0)) as server:
            url = server.base_url + "/v1/streams"
            ...
    """
    config = config or ServeConfig()
    if config.token is not None and not config.token.strip():
        raise LocalProtocolError("the bearer token is empty", kind="token_required")
    if not is_loopback(config.host) and config.token is None:
        raise LocalProtocolError(
            f"refusing to serve on {config.host} without a bearer token: anyone who can reach "
            "it could spend your API key; pass --token (or set STREAMCORE_SERVE_TOKEN), or "
            "bind 127.0.0.1",
            kind="token_required",
        )
    async with HTTPClient() as http:
        if provider is None:
            async with open_emulator(faults=emulator_faults or None) as emu:
                emulated = Provider(
                    "openai-chat", emu.base_url + "/v1", None, "streamcore-emulator"
                )
                async with _serve(config, emulated, http) as server:
                    yield server
        else:
            async with _serve(config, provider, http) as server:
                yield server


@asynccontextmanager
async def _serve(
    config: ServeConfig, provider: Provider, http: HTTPClient
) -> AsyncIterator[Server]:
    async with (
        open_store(
            config.store, max_events=config.replay_max_events, timeout=config.store_timeout
        ) as store,
        _listen(Server(config, provider, http, store)) as server,
    ):
        yield server


@asynccontextmanager
async def _listen(server: Server) -> AsyncIterator[Server]:
    config = server.config
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    sockname = listeners[0].socket.getsockname()
    server.host, server.port = sockname[0], sockname[1]
    async with trio.open_nursery() as nursery:
        server._nursery = nursery
        serve = functools.partial(trio.serve_listeners, server._serve_connection, listeners)
        await nursery.start(serve)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
