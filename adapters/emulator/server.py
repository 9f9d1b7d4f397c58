"""The emulator's HTTP/1.1 server: trio sockets, h11 framing, fault injection, a request log.

Theory of operation
-------------------
:func:`open_emulator` binds a listening socket (port 0: the kernel picks one)
and serves each connection in its own task, one request after another
(HTTP/1.1 keep-alive). A request is read whole (head bounded by h11, body by
``max_body_bytes``), then answered in four steps:

1. Route and parse (:mod:`~streamcore.adapters.emulator.wire`): an unknown
   path is a 404, a body the provider would reject a 400 in the provider's
   error shape; a bad ``x-streamcore-fault`` header is a 400 naming the key.
2. Decide the faults: the server's, overridden key by key by the header's;
   ``fail_first`` counts requests per key and serves clean once used up.
3. An injected HTTP error (``status=``) is answered at once, with the
   provider's error body and ``retry-after``.
4. Otherwise the response head goes out and the writer's frames follow, each
   preceded by the waits (ttft, pace, stall, with pings while waiting) and
   checks (drop, mid-stream error, invalid JSON) the faults ask for. Frames
   are cut into ``split``-sized writes when asked.

While the body streams, a second task reads the socket: the client closing
its end (EOF or reset) cancels the generation at once, even in the middle of a
long wait, so a cancelled stream never keeps generating. A failed write means
the same. Time is trio's clock (``trio.sleep_until``), so tests run every
timing fault under ``MockClock(autojump_threshold=0)`` without sleeping.

Every request ends as one frozen :class:`ServedRequest` appended to
:attr:`Emulator.requests` (headers with credentials redacted), recording how
it ended and how many tokens and bytes went out. It is appended just before
the response's last byte is written (or its connection closed), so a client
that has read a response to its end always finds it in the log; a client that
hangs up is logged once the emulator notices (:meth:`Emulator.wait_for_requests`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import h11
import trio

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.adapters.emulator.conversation import (
    Dialect,
    Plan,
    parse_request,
    plan_answer,
    route,
)
from streamcore.adapters.emulator.faults import (
    FAULT_HEADER,
    REQUEST_KEY_HEADER,
    Faults,
    parse_faults,
)
from streamcore.adapters.emulator.text import DEFAULT_LENGTH
from streamcore.adapters.emulator.wire import FrameKind, Writer, error_response, writer_for
from streamcore.request import redact_headers

__all__ = ["Emulator", "Outcome", "ServedRequest", "open_emulator", "serve_forever"]

MAX_HEAD_BYTES = 64 * 1024
"""Bound on a request line plus headers (h11's ``max_incomplete_event_size``)."""
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Bound on a request body; larger bodies get 413."""
MAX_PIPELINED_BYTES = 1024 * 1024
"""Bound on bytes a client may send while its response is streaming."""
MAX_FAIL_FIRST_KEYS = 10_000
"""Bound on the number of ``fail_first`` counters kept (oldest forgotten first)."""
_RECEIVE_SIZE = 65536
_SECRET_QUERY = re.compile(r"(?i)(^|&)(key|api_key|api-key)=[^&]*")


class Outcome(enum.Enum):
    """How the emulator ended a request."""

    COMPLETED = "completed"
    """The whole body went out, terminal marker included."""
    HTTP_ERROR = "http_error"
    """An injected HTTP error status (``status=`` / ``fail_first``)."""
    REJECTED = "rejected"
    """The emulator's own 4xx: unknown path, bad JSON, bad fault header, non-streaming request."""
    ERROR_EVENT = "error_event"
    """A mid-stream error event ended the body (``error_after=``)."""
    DROPPED = "dropped"
    """The emulator closed the connection mid-body (``drop_after_tokens/bytes=``)."""
    CLIENT_DISCONNECTED = "client_disconnected"
    """The client closed the connection before the body was complete."""


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """One request as the emulator saw and answered it.

    ``headers`` have credential values replaced by ``<redacted>`` and
    ``target`` has ``key=`` query parameters redacted. ``body`` is the parsed
    JSON (``None`` if it was not JSON). ``tokens_sent`` counts the token frames
    fully written; ``text`` is the text they carried. Times are trio's clock.
    """

    index: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: object
    dialect: Dialect | None
    faults: Faults
    status: int
    outcome: Outcome
    tokens_sent: int = 0
    bytes_sent: int = 0
    text: str = ""
    prompt: str = ""
    resumed_from: int | None = None
    tool_calls: tuple[str, ...] = ()
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def client_disconnected(self) -> bool:
        """Whether the client went away before the body was complete."""
        return self.outcome is Outcome.CLIENT_DISCONNECTED

    @property
    def path(self) -> str:
        """The request path, without the query string."""
        return self.target.partition("?")[0]


class _Drop(Exception):
    """Internal: a drop fault fired; the connection must close now."""


class _Request:
    """A request read whole off the wire."""

    def __init__(self, head: h11.Request, body: bytes, *, too_large: bool = False) -> None:
        self.too_large = too_large
        self.method = head.method.decode("ascii", "replace")
        self.target = head.target.decode("latin-1")
        self.headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
        )
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:  # h11 lower-cases header names
                return value
        return None


@dataclass(slots=True)
class _Progress:
    """Mutable state of one response while it streams (folded into a ServedRequest)."""

    tokens: int = 0
    bytes: int = 0
    last_write: float = 0.0
    client_gone: bool = False
    finished: bool = False
    """Set once every frame (or the error event) was written; only the terminator is left."""


_FAILURE_KEYS = (
    "status",
    "error_after",
    "drop_after_tokens",
    "drop_after_bytes",
    "invalid_json_after",
    "stall",
    "ttft",
)


def _due(after: int | None, tokens: int, at_end: bool) -> bool:
    """Whether a fault set for "after N tokens" fires now (or at the end, if N is past it)."""
    return after is not None and (after == tokens or (at_end and after > tokens))


def _retry_headers(faults: Faults, status: int) -> list[tuple[str, str]]:
    seconds = faults.retry_after
    if seconds is None:
        if status not in (429, 503, 529):
            return []
        seconds = 1.0
    return [
        ("retry-after", str(math.ceil(seconds))),
        ("retry-after-ms", str(round(seconds * 1000))),
    ]


class Emulator:
    """A running provider emulator; get one from :func:`open_emulator`.

    ``requests`` is the log of every request answered so far, oldest first.
    """

    def __init__(
        self,
        *,
        faults: Faults,
        length: int,
        max_body_bytes: int,
        wall_clock: Callable[[], float],
    ) -> None:
        self.faults = faults
        self.length = length
        self._max_body_bytes = max_body_bytes
        self._wall_clock = wall_clock
        self._log: list[ServedRequest] = []
        self._logged = trio.Event()
        self._next_index = 0
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self.host = ""
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the listening socket (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> tuple[ServedRequest, ...]:
        """Every request answered so far, oldest first (a snapshot)."""
        return tuple(self._log)

    async def wait_for_requests(self, count: int) -> tuple[ServedRequest, ...]:
        """Wait until at least ``count`` requests have been answered; return the log.

        A request is logged when its response is over (completed, failed,
        dropped, or the client went away), so this is how a test waits for
        the emulator to notice a disconnect.
        """
        while len(self._log) < count:
            await self._logged.wait()
        return self.requests

    def _record(self, entry: ServedRequest) -> None:
        self._log.append(entry)
        self._logged.set()
        self._logged = trio.Event()

    # ------------------------------------------------------------------ connections

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while True:
                request = await self._receive_request(stream, conn)
                if request is None:
                    return
                keep_open = await self._respond(stream, conn, request)
                if not keep_open or conn.our_state is not h11.DONE:
                    return
                if conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await stream.aclose()

    async def _receive_request(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> _Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_plain_error(stream, conn, exc.error_status_hint, str(exc))
                return None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_RECEIVE_SIZE)
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body_bytes:
                    assert head is not None
                    # Answered with 413 without reading the rest; the connection then closes.
                    return _Request(head, b"", too_large=True)
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _Request(head, bytes(body))
            else:  # ConnectionClosed (or PAUSED, which cannot happen before EndOfMessage)
                return None

    async def _send_plain_error(
        self, stream: trio.SocketStream, conn: h11.Connection, status: int, message: str
    ) -> None:
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
        try:
            data = (
                conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            ("content-type", "application/json"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                    )
                )
                or b""
            )
            data += conn.send(h11.Data(data=body.encode())) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # too late for a response (h11 says so); just close
        await stream.send_all(data)

    # ------------------------------------------------------------------ one request

    async def _respond(
        self, stream: trio.SocketStream, conn: h11.Connection, request: _Request
    ) -> bool:
        """Answer one request; returns whether the connection may be reused.

        The request is logged before the last byte of its response is written
        (or its connection closed), so a client that has read a response to
        its end finds it in :attr:`requests`.
        """
        index = self._next_index
        self._next_index += 1
        path, _, query = request.target.partition("?")
        rt = route(path, query)
        body: object = None
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = None
        ex = _Exchange(
            self,
            stream,
            conn,
            ServedRequest(
                index=index,
                method=request.method,
                target=path + ("?" + _SECRET_QUERY.sub(r"\1\2=<redacted>", query) if query else ""),
                headers=redact_headers(request.headers),
                body=body,
                dialect=rt.dialect if rt is not None else None,
                faults=self.faults,
                status=0,
                outcome=Outcome.REJECTED,
                started_at=trio.current_time(),
            ),
        )
        if rt is None:
            return await ex.reject(
                404,
                f"no such endpoint: {request.method} {path}. The emulator serves POST"
                " /v1/chat/completions, /v1/responses, /v1/messages,"
                " /v1beta/models/{model}:streamGenerateContent and /api/chat",
            )
        if request.method != "POST":
            return await ex.reject(405, f"{path} accepts POST only, got {request.method}")
        if request.too_large:
            return await ex.reject(
                413,
                f"request body exceeds {self._max_body_bytes} bytes (max_body_bytes);"
                " send less or start the emulator with a larger max_body_bytes",
            )
        try:
            header_faults = parse_faults(request.header(FAULT_HEADER) or "")
        except LocalProtocolError as exc:
            return await ex.reject(400, str(exc))
        faults = self._effective_faults(self.faults.merged(header_faults), request, rt.dialect)
        ex.update(faults=faults)
        if request.body and body is None:
            return await ex.reject(400, "request body is not valid JSON")
        try:
            conv = parse_request(body, rt)
        except RemoteProtocolError as exc:
            return await ex.reject(400, str(exc))
        ex.update(prompt=conv.prompt)
        if faults.status is not None:
            return await ex.http_error(faults.status, _retry_headers(faults, faults.status))
        seed = hashlib.sha256(f"{index}\x1f{conv.prompt}".encode("utf-8", "surrogatepass"))
        ids = random.Random(int.from_bytes(seed.digest()[:8], "big"))
        plan = plan_answer(
            conv,
            length=faults.length if faults.length is not None else self.length,
            repeat=faults.repeat or 0,
            ids=ids,
        )
        writer = writer_for(conv, plan, ids=ids, now=self._wall_clock(), eol=faults.eol)
        ex.update(
            status=200,
            resumed_from=plan.resumed_from,
            tool_calls=tuple(call.name for call in plan.tool_calls),
        )
        return await ex.stream(writer, plan, faults)

    def _effective_faults(
        self, faults: Faults, request: _Request, dialect: Dialect | None
    ) -> Faults:
        """Apply ``fail_first``: count this request under its key; serve clean once used up."""
        if faults.fail_first is None:
            return faults
        key = request.header(REQUEST_KEY_HEADER) or str(faults)
        seen = self._attempts.pop(key, 0)
        self._attempts[key] = seen + 1
        while len(self._attempts) > MAX_FAIL_FIRST_KEYS:
            self._attempts.popitem(last=False)
        if seen >= faults.fail_first:
            return faults.without_failures()
        if all(getattr(faults, name) is None for name in _FAILURE_KEYS):
            overloaded = 529 if dialect is Dialect.ANTHROPIC else 503
            return dataclasses.replace(faults, status=overloaded)
        return faults


class _Exchange:
    """One request being answered: the socket, its log entry, and the streaming state."""

    def __init__(
        self,
        emulator: Emulator,
        stream: trio.SocketStream,
        conn: h11.Connection,
        entry: ServedRequest,
    ) -> None:
        self._emulator = emulator
        self._stream = stream
        self._conn = conn
        self._entry = entry
        self._logged = False
        self._request_id = "req_" + hashlib.sha256(f"{entry.index}".encode()).hexdigest()[:24]
        self._plan: Plan | None = None
        self._faults = entry.faults
        self._split_rng = random.Random(0)
        self.progress = _Progress()

    def update(self, **changes: object) -> None:
        self._entry = dataclasses.replace(self._entry, **changes)  # type: ignore[arg-type]

    def log(self, outcome: Outcome) -> None:
        """Append this request to the emulator's log (once)."""
        if self._logged:
            return
        self._logged = True
        progress = self.progress
        pieces = self._plan.pieces if self._plan is not None else ()
        self._emulator._record(
            dataclasses.replace(
                self._entry,
                outcome=outcome,
                tokens_sent=progress.tokens,
                bytes_sent=progress.bytes,
                text="".join(pieces[: progress.tokens]),
                finished_at=trio.current_time(),
            )
        )

    def _id_headers(self) -> list[tuple[str, str]]:
        name = "request-id" if self._entry.dialect is Dialect.ANTHROPIC else "x-request-id"
        return [(name, self._request_id), ("server", "streamcore-emulator")]

    async def reject(self, status: int, message: str) -> bool:
        """The emulator's own 4xx, in the dialect's error shape, saying what was wrong."""
        payload = error_response(
            self._entry.dialect, status, message=message, request_id=self._request_id
        )
        self.update(status=status)
        self.log(Outcome.REJECTED)
        await self._send_json(status, payload, [])
        return True

    async def http_error(self, status: int, extra: list[tuple[str, str]]) -> bool:
        """An injected HTTP error with the provider's stock error body."""
        payload = error_response(self._entry.dialect, status, request_id=self._request_id)
        self.update(status=status)
        self.log(Outcome.HTTP_ERROR)
        await self._send_json(status, payload, extra)
        return True

    async def _send_json(self, status: int, payload: bytes, extra: list[tuple[str, str]]) -> None:
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
            *self._id_headers(),
            *extra,
        ]
        conn = self._conn
        data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        data += conn.send(h11.Data(data=payload)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await self._stream.send_all(data)

    # ------------------------------------------------------------------ streaming

    async def stream(self, writer: Writer, plan: Plan, faults: Faults) -> bool:
        """Send the streaming response; returns whether the connection may be reused."""
        self._plan = plan
        self._faults = faults
        self._split_rng = random.Random(faults.seed or 0)
        progress = self.progress
        head = [
            ("content-type", writer.content_type),
            ("cache-control", "no-cache"),
            *self._id_headers(),
        ]
        data = self._conn.send(h11.Response(status_code=200, headers=head)) or b""
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.log(Outcome.CLIENT_DISCONNECTED)
            return False
        progress.last_write = trio.current_time()
        dropped = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_peer, nursery.cancel_scope)
            try:
                await self._send_frames(writer)
            except _Drop:
                dropped = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                progress.client_gone = True
            finally:
                nursery.cancel_scope.cancel()
        if dropped:
            self.log(Outcome.DROPPED)  # before the caller closes the socket
            return False
        # Not logged yet: cancelled by the watcher, or a write failed mid-body.
        self.log(Outcome.CLIENT_DISCONNECTED)
        return not progress.client_gone and progress.finished

    async def _watch_peer(self, scope: trio.CancelScope) -> None:
        """Read the socket while the body streams: EOF or a reset means the client left."""
        pending = 0
        try:
            while True:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
                if not data:
                    break
                pending += len(data)
                if pending > MAX_PIPELINED_BYTES:
                    break  # a client that floods us mid-response is treated as gone
                self._conn.receive_data(data)  # a pipelined next request; h11 keeps it
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.progress.client_gone = True
        scope.cancel()

    async def _end_body(self, outcome: Outcome) -> None:
        """Log ``outcome``, then write the end of the body (the chunked terminator)."""
        self.progress.finished = True
        self.log(outcome)
        await self._stream.send_all(self._conn.send(h11.EndOfMessage()) or b"")

    async def _send_frames(self, writer: Writer) -> None:
        faults = self._faults
        progress = self.progress
        sent_invalid = False
        closing = False
        for frame in writer.frames():
            # Faults fire before a token, or at the first closing frame (then a
            # count past the last token fires just before the end marker).
            if frame.kind is FrameKind.TOKEN or (frame.kind is FrameKind.CLOSING and not closing):
                at_end = closing = frame.kind is FrameKind.CLOSING
                tokens = progress.tokens
                if _due(faults.drop_after_tokens, tokens, at_end):
                    raise _Drop
                if _due(faults.error_after, tokens, at_end):
                    await self._write(writer.error_event(faults.error_type or "overloaded"))
                    await self._end_body(Outcome.ERROR_EVENT)
                    return
                if not sent_invalid and _due(faults.invalid_json_after, tokens, at_end):
                    sent_invalid = True
                    await self._write(writer.invalid_json())
                if faults.stall and _due(faults.stall_after or 0, tokens, at_end):
                    await self._wait(faults.stall, writer)
                if frame.kind is FrameKind.TOKEN or tokens == 0:
                    await self._wait((faults.ttft if tokens == 0 else faults.pace) or 0.0, writer)
            await self._write(frame.data)
            if frame.kind is FrameKind.TOKEN:
                progress.tokens += 1
        await self._end_body(Outcome.COMPLETED)

    async def _wait(self, seconds: float, writer: Writer) -> None:
        """Wait ``seconds`` of trio time, sending keep-alives when idle for ``ping`` seconds."""
        if seconds <= 0:
            return
        deadline = trio.current_time() + seconds
        every = self._faults.ping
        while every:
            due = self.progress.last_write + every
            if due >= deadline:
                break
            await trio.sleep_until(due)
            ping = writer.keepalive()
            if ping is None:
                break
            await self._write(ping)
        await trio.sleep_until(deadline)

    async def _write(self, data: bytes) -> None:
        """Write body bytes (cut into ``split`` sizes; cut off at ``drop_after_bytes``).

        Each ``split`` piece is its own HTTP/1.1 chunk, so an HTTP client hands
        it over as its own read; the pieces of one write still go out in one
        system call (per-piece sends cost 50x more and add nothing: pieces
        that arrive together are separated by their chunk framing anyway).
        """
        faults = self._faults
        progress = self.progress
        drop = False
        limit = faults.drop_after_bytes
        if limit is not None and progress.bytes + len(data) > limit:
            data = data[: max(0, limit - progress.bytes)]
            drop = True
        if data:
            conn = self._conn
            if faults.split is None:
                wire = conn.send(h11.Data(data=data)) or b""
            else:
                framed, start = [], 0
                while start < len(data):
                    size = self._split_rng.randint(*faults.split)
                    framed.append(conn.send(h11.Data(data=data[start : start + size])) or b"")
                    start += size
                wire = b"".join(framed)
            await self._stream.send_all(wire)
            progress.bytes += len(data)
            progress.last_write = trio.current_time()
        if drop:
            raise _Drop


def _coerce_faults(faults: Faults | str | None) -> Faults:
    if faults is None:
        return Faults()
    if isinstance(faults, str):
        return parse_faults(faults)
    return faults


@asynccontextmanager
async def open_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    faults: Faults | str | None = None,
    length: int = DEFAULT_LENGTH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Emulator]:
    """Serve the emulator on ``host:port`` for the duration of the ``async with`` block.

    ``port=0`` binds an ephemeral port; read it from ``emu.port`` (or use
    ``emu.base_url``). ``faults`` (a :class:`Faults` or its text form) apply to
    every request; a request's ``x-streamcore-fault`` header overrides them key
    by key. ``length`` is the answer length (see ``answer_for``);
    ``wall_clock`` fills the providers' ``created`` timestamps.

    On exit every connection is closed and every task cancelled::

        async with open_emulator(faults="pace=0.01") as emu:
            url = emu.base_url + "/v1/chat/completions"
            ...
        assert emu.requests[0].outcome is Outcome.COMPLETED
    """
    emulator = Emulator(
        faults=_coerce_faults(faults),
        length=length,
        max_body_bytes=max_body_bytes,
        wall_clock=wall_clock,
    )
    # Bind before the nursery opens, so a busy port raises a plain OSError.
    listeners = await trio.open_tcp_listeners(port, host=host)
    sockname = listeners[0].socket.getsockname()
    emulator.host, emulator.port = sockname[0], sockname[1]
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_listeners, emulator._serve_connection, listeners)
        await nursery.start(serve)
        try:
            yield emulator
        finally:
            nursery.cancel_scope.cancel()


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    faults: Faults | str | None = None,
    length: int = DEFAULT_LENGTH,
    on_ready: Callable[[Emulator], None] | None = None,
    task_status: trio.TaskStatus[Emulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the emulator until cancelled (the ``streamcore mock`` command).

    ``on_ready`` is called once the socket is bound (with the emulator, whose
    ``base_url`` is then known); ``nursery.start(serve_forever, ...)`` also
    returns the emulator. Cancellation closes the socket and every connection.
    """
    async with open_emulator(host, port, faults=faults, length=length) as emulator:
        if on_ready is not None:
            on_ready(emulator)
        task_status.started(emulator)
        await trio.sleep_forever()
