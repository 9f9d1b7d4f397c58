"""A blocking driver: one streamed chat answer over a plain socket, for threads and sync code.

Theory of operation
-------------------
Three sans-IO objects do all the work; a driver only moves bytes and reads a clock:

* ``h11.Connection`` frames HTTP/1.1: the request, the response head, chunked
  or content-length bodies, a connection closed too early;
* the dialect decoder (:func:`streamcore.providers.decoder_for`) turns body
  bytes into :mod:`streamcore.events`;
* :class:`~streamcore.machine.StreamMachine` decides how the attempt is going
  and how it ended, deadlines included.

:class:`Exchange` joins the three for one request on one connection, still
without I/O: it takes what the socket read and the time, and hands back the
events the machine accepted. It has no states of its own beyond "started" and
"reading an error body"; everything else is the machine's state and h11's.
The asyncio driver (:mod:`streamcore.adapters.aio`) runs the same
:class:`Exchange`; :func:`stream_chat` here is the blocking loop around it::

    connect (TLS), send the request    socket timeout: the time left to the next deadline
    recv -> Exchange.receive_data      yields the accepted events
    recv timed out -> Exchange.check_deadlines
    ... until the machine is terminal; then the socket is closed

One request per connection (``connection: close``), and no retries: the
:class:`~streamcore.machine.Outcome` says whether another attempt may help
(:mod:`streamcore.recovery` decides how). Copy this module's loop to drive the
core from any runtime whose sockets you can read with a timeout.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType

import h11

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.adapters.errors import secrets_in_header_value, status_error
from streamcore.events import Event
from streamcore.machine import Deadlines, Outcome, State, StreamMachine
from streamcore.providers import DIALECTS, decoder_for
from streamcore.recovery import USER_FACING
from streamcore.request import SECRET_HEADERS, ChatRequest, HTTPRequest

__all__ = [
    "DEFAULT_DEADLINES",
    "MAX_ERROR_BODY",
    "MIN_WAIT",
    "READ_SIZE",
    "ChatStream",
    "Exchange",
    "Origin",
    "build_http_request",
    "parse_base_url",
    "stream_chat",
]

DEFAULT_DEADLINES = Deadlines(
    connect=USER_FACING.connect_timeout,
    first_token=USER_FACING.first_token_timeout,
    idle=USER_FACING.idle_timeout,
    total=USER_FACING.total_timeout,
)
"""The deadlines when none are given: those of ``streamcore.recovery.USER_FACING``."""

MAX_ERROR_BODY = 64 * 1024
"""Bytes of an error response's body kept to read the provider's error from."""

MIN_WAIT = 0.001
"""The shortest read timeout, in seconds (see :meth:`Exchange.read_timeout`)."""

READ_SIZE = 64 * 1024
"""The most bytes asked of one read."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the requests go: host, port, TLS, and a path prefix put before the dialect's path."""

    host: str
    port: int
    tls: bool
    prefix: str = ""

    @property
    def host_header(self) -> str:
        """The ``host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.tls else 80) else f"{host}:{self.port}"


def _bad_url(message: str) -> LocalProtocolError:
    return LocalProtocolError(f"base URL {message}", kind="bad_url")


def parse_base_url(base_url: str) -> Origin:
    """The :class:`Origin` of a base URL: ``scheme://host[:port][/prefix]``.

    The prefix is for servers mounted under a path (``https://openrouter.ai/api``
    serves ``/api/v1/chat/completions``); the dialect adds its own path
    (``/v1/...``). Credentials, a query or a fragment in the URL are refused:
    the key goes in ``api_key``, where it is kept out of logs.

    >>> parse_base_url("https://openrouter.ai/api")
    Origin(host='openrouter.ai', port=443, tls=True, prefix='/api')
    >>> parse_base_url("http://127.0.0.1:8000").host_header
    '127.0.0.1:8000'
    """
    parts = urllib.parse.urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _bad_url(
            f"must start with http:// or https:// (got scheme {parts.scheme!r}), "
            "e.g. https://api.anthropic.com"
        )
    if "@" in parts.netloc:
        raise _bad_url("must not carry credentials (user:password@); pass the key as api_key")
    if parts.query or parts.fragment:
        raise _bad_url("must not have a query or a fragment; give scheme, host, port and path")
    try:
        port = parts.port
    except ValueError:
        raise _bad_url(f"has an invalid port in {parts.netloc!r}") from None
    if not parts.hostname:
        raise _bad_url("has no host; e.g. http://127.0.0.1:8000")
    tls = scheme == "https"
    return Origin(
        host=parts.hostname,
        port=port if port is not None else (443 if tls else 80),
        tls=tls,
        prefix=parts.path.rstrip("/"),
    )


def build_http_request(
    dialect: str, request: ChatRequest, *, api_key: str | None = None, prefix: str = ""
) -> HTTPRequest:
    """The HTTP request the dialect called ``dialect`` sends for ``request``, under ``prefix``.

    >>> from streamcore.request import ChatRequest, Message
    >>> req = ChatRequest("gemini-2.5-flash", (Message("user", "Hi"),))
    >>> build_http_request("gemini-json-array", req).target
    '/v1beta/models/gemini-2.5-flash:streamGenerateContent'
    >>> build_http_request("openai-chat", req, prefix="/api").target
    '/api/v1/chat/completions'
    """
    try:
        module_name, _, options = DIALECTS[dialect]
    except KeyError:
        raise LocalProtocolError(
            f"unknown dialect {dialect!r}; known: {', '.join(sorted(DIALECTS))}",
            kind="unknown_dialect",
        ) from None
    module = importlib.import_module(f"streamcore.providers.{module_name}")
    build: Callable[..., HTTPRequest] = module.build_request
    kwargs: dict[str, object] = {"api_key": api_key, "base_path": prefix + module.DEFAULT_BASE_PATH}
    if options.get("framing") == "json-array":  # the one dialect whose request names its framing
        kwargs["sse"] = False
    return build(request, **kwargs)


class Exchange:
    """One streamed chat request on one HTTP/1.1 connection, without I/O.

    Build it (nothing is sent; a bad URL, dialect or header raises
    :class:`~streamcore.LocalProtocolError` here), :meth:`start` it for the
    bytes to send, then give it every read with :meth:`receive_data` (``b""``
    at end of file) until :attr:`done`. Every method takes ``now``, a reading
    of one monotonic clock. ``headers`` are extra request headers; credential
    headers (and ``api_key``) are redacted from every error.

    >>> from streamcore.request import ChatRequest, Message
    >>> ex = Exchange("http://127.0.0.1:8000", "ollama",
    ...               ChatRequest("llama3.2", (Message("user", "Hi"),)))
    >>> ex.start(now=0.0).split(b"\\r\\n")[:2]
    [b'POST /api/chat HTTP/1.1', b'host: 127.0.0.1:8000']
    >>> ex.receive_data(b"HTTP/1.1 200 OK\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n", now=0.1)
    []
    >>> ex.receive_data(b'5a\\r\\n{"model":"llama3.2","message":{"role":"assistant",'
    ...                 b'"content":"Hello"},"done":false}\\n\\r\\n', now=0.2)
    [StreamStarted(response_id=None, model='llama3.2'), TextDelta(text='Hello', choice=0)]
    >>> ex.receive_data(b"", now=0.3)  # the server hung up mid-body
    []
    >>> ex.done, ex.outcome.state.name, ex.outcome.message.text
    (True, 'INTERRUPTED', 'Hello')
    """

    def __init__(
        self,
        base_url: str,
        dialect: str,
        request: ChatRequest,
        *,
        api_key: str | None = None,
        deadlines: Deadlines | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.origin = parse_base_url(base_url)
        self._decoder = decoder_for(dialect)
        http = build_http_request(dialect, request, api_key=api_key, prefix=self.origin.prefix)
        extra = tuple(headers)
        self._secrets = tuple(
            secret
            for name, value in (*http.headers, *extra)
            if name.lower() in SECRET_HEADERS
            for secret in secrets_in_header_value(value)
        )
        scheme = "https" if self.origin.tls else "http"
        self._where = (
            f"{http.method} {scheme}://{self.origin.host_header}"
            + (
                http.target.partition("?")[0]  # a query may carry a key
            )
        )
        self._deadlines = DEFAULT_DEADLINES if deadlines is None else deadlines
        self._conn = h11.Connection(h11.CLIENT)
        try:
            head = h11.Request(
                method=http.method,
                target=http.target,
                headers=[
                    ("host", self.origin.host_header),
                    *http.headers,
                    *extra,
                    ("content-length", str(len(http.body))),
                    ("accept-encoding", "identity"),
                    ("connection", "close"),
                ],
            )
            self._request_bytes = b"".join(
                self._conn.send(event) or b""
                for event in (head, h11.Data(data=http.body), h11.EndOfMessage())
            )
        except h11.LocalProtocolError:
            # h11's message quotes the header, which may be a key: say less.
            raise LocalProtocolError(
                "a request header is not valid HTTP/1.1 (a name with spaces or a value "
                "with CR/LF?); check the headers given to the request",
                kind="bad_header",
            ) from None
        self._machine: StreamMachine | None = None
        self._error_head: h11.Response | None = None  # an error status: reading its body
        self._error_body = bytearray()
        self._body_bytes = 0

    # --- What the driver asks --------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._machine is not None

    @property
    def machine(self) -> StreamMachine:
        """The attempt's stream machine (after :meth:`start`)."""
        if self._machine is None:
            raise LocalProtocolError(
                "the exchange has not started; call start(now) first", kind="not_started"
            )
        return self._machine

    @property
    def done(self) -> bool:
        """Whether the attempt has ended; the driver then closes the connection."""
        return self.machine.terminal

    @property
    def outcome(self) -> Outcome:
        """How the attempt ended (see :attr:`StreamMachine.outcome`)."""
        return self.machine.outcome

    def read_timeout(self, now: float) -> float | None:
        """How long the next read may wait, in seconds; ``None`` when no deadline runs.

        Never less than :data:`MIN_WAIT`: when a deadline passed while the
        caller was busy with earlier events, bytes that already arrived are
        still read (a read of waiting bytes returns at once) before a read
        that times out ends the attempt.
        """
        deadline = self.machine.next_deadline()
        return None if deadline is None else max(deadline - now, MIN_WAIT)

    # --- What the driver reports -----------------------------------------------

    def start(self, now: float) -> bytes:
        """Start the attempt's clock at ``now``; returns the request bytes to send."""
        if self._machine is not None:
            raise LocalProtocolError("start() called twice", kind="already_started")
        self._machine = StreamMachine(now, self._deadlines)
        return self._request_bytes

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Bytes read from the connection (``b""``: the peer closed it); returns new events.

        The events are those the machine accepted (none after its end). After
        the bytes, deadlines are checked, so a total deadline ends an attempt
        whose bytes keep coming. Once :attr:`done`, returns ``[]``.
        """
        machine = self.machine
        out: list[Event] = []
        if machine.terminal:
            return out
        conn = self._conn
        conn.receive_data(data)
        # Servers send an HTTP chunk per SSE event: the body pieces of one read
        # are fed to the decoder at once, which costs a join but saves a decoder
        # and a machine call per piece (measured: 25% less time per stream).
        body: list[bytes] = []
        while not machine.terminal:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._feed(body, now, out)
                if not machine.terminal:
                    self._http_broke(exc, eof=not data, now=now, out=out)
                break
            if type(event) is h11.Data:  # the common case first
                self._body_bytes += len(event.data)
                if self._error_head is None:
                    body.append(event.data)
                else:
                    self._keep_error_body(event.data, now)
                continue
            self._feed(body, now, out)
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if type(event) is h11.Response:
                if 200 <= event.status_code <= 299:
                    machine.response_started(event.status_code, now)
                else:
                    self._error_head = event
            elif type(event) is h11.EndOfMessage and not machine.terminal:
                self._body_ended(now, out)
            # Otherwise an InformationalResponse (100, 103) before the real head.
        self.check_deadlines(now)
        return out

    def check_deadlines(self, now: float) -> bool:
        """End the attempt if a deadline passed (a read timed out); returns whether it did.

        While an error response's body is being read, a passed deadline ends
        the attempt as that HTTP error, with the body read so far.
        """
        machine = self.machine
        if self._error_head is not None and not machine.terminal:
            deadline = machine.next_deadline()
            if deadline is not None and now >= deadline:
                self._finish_error(now)
                return True
            return False
        return machine.check_deadlines(now)

    def connection_failed(self, exc: Exception, now: float) -> None:
        """Connecting, sending or reading failed with ``exc`` (refused, reset, TLS...)."""
        if self._error_head is not None:
            self._finish_error(now)
        else:
            self.machine.transport_failed(exc, now)

    def cancel(self, now: float, reason: str = "") -> None:
        """The caller gave up on the attempt (a no-op once it has ended)."""
        self.machine.cancel(now, reason)

    # --- The machinery ---------------------------------------------------------

    def _accept(self, events: list[Event], now: float, out: list[Event]) -> None:
        fed = self.machine.receive_many(events, now)
        out.extend(events if fed == len(events) else events[:fed])

    def _feed(self, body: list[bytes], now: float, out: list[Event]) -> None:
        """Decode the body pieces in ``body`` (emptying it) and give the events to the machine."""
        if not body:
            return
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        try:
            events = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            self.machine.protocol_error(exc, now)
            return
        self._accept(events, now, out)

    def _body_ended(self, now: float, out: list[Event]) -> None:
        if self._error_head is not None:
            self._finish_error(now)
            return
        try:
            events = self._decoder.end()
        except RemoteProtocolError as exc:
            self.machine.protocol_error(exc, now)
            return
        self._accept(events, now, out)
        self.machine.body_ended(now)

    def _http_broke(
        self, exc: h11.RemoteProtocolError, *, eof: bool, now: float, out: list[Event]
    ) -> None:
        machine = self.machine
        if self._error_head is not None:
            self._finish_error(now)
        elif not eof:
            machine.protocol_error(
                RemoteProtocolError(
                    f"{self._where}: the response is not valid HTTP/1.1 ({exc})", kind="bad_http"
                ),
                now,
            )
        elif machine.state is State.CONNECTING:  # no response head yet
            machine.transport_failed(
                RemoteProtocolError(
                    f"{self._where}: the server closed the connection without a response",
                    kind="no_response",
                ),
                now,
            )
        else:
            # Cut mid-body: what the framing can still complete is kept, and an
            # error the cut causes is the cut, not garbage from the server.
            with contextlib.suppress(RemoteProtocolError):
                self._accept(self._decoder.end(), now, out)
            machine.transport_failed(
                RemoteProtocolError(
                    f"{self._where}: the server closed the connection "
                    f"{self._body_bytes} bytes into the response body, before its end",
                    kind="incomplete_body",
                ),
                now,
            )

    def _keep_error_body(self, data: bytes, now: float) -> None:
        room = MAX_ERROR_BODY - len(self._error_body)
        self._error_body += data[:room]
        if len(data) >= room:
            self._finish_error(now)

    def _finish_error(self, now: float) -> None:
        head = self._error_head
        assert head is not None
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers)
        error = status_error(
            head.status_code,
            head.reason.decode("latin-1"),
            headers,
            bytes(self._error_body),
            secrets=self._secrets,
            where=self._where,
            now=time.time(),  # wall time, only to read a Retry-After given as a date
        )
        self.machine.http_error(
            head.status_code, now, error=error.error, retry_after=error.retry_after
        )


class ChatStream:
    """One streamed answer: iterate for its events, then read :attr:`outcome`.

    Iterating connects, sends the request and yields each event as it is
    decoded, until the attempt ends -- completed, cut off, timed out, refused:
    the iteration itself raises only for a bug or a ``KeyboardInterrupt``.
    Stopping early and :meth:`close` (or leaving a ``with`` block) close the
    socket; the outcome is then ``CANCELLED``, with everything received so far.
    """

    def __init__(self, exchange: Exchange, ssl_context: ssl.SSLContext | None = None) -> None:
        self._exchange = exchange
        self._ssl_context = ssl_context
        self._events = self._run()

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def outcome(self) -> Outcome:
        """How the attempt ended; raises ``LocalProtocolError`` while it is still going."""
        return self._exchange.outcome

    def close(self) -> None:
        """Stop reading and close the socket; a no-op once the stream is over."""
        if not self._exchange.started:  # never iterated: nothing to close but the attempt
            self._exchange.start(time.monotonic())
            self._exchange.cancel(time.monotonic(), "closed before it started")
        self._events.close()

    def _run(self) -> Generator[Event, None, None]:
        ex = self._exchange
        payload = ex.start(time.monotonic())
        sock: socket.socket | None = None
        reason = "the caller closed the stream"
        try:
            sock = self._connect_and_send(payload)
            while sock is not None and not ex.done:
                sock.settimeout(ex.read_timeout(time.monotonic()))
                try:
                    data = sock.recv(READ_SIZE)
                except TimeoutError:  # socket.timeout is TimeoutError since 3.10
                    ex.check_deadlines(time.monotonic())
                    continue
                except OSError as exc:
                    ex.connection_failed(exc, time.monotonic())
                    break
                yield from ex.receive_data(data, time.monotonic())
        except GeneratorExit:
            raise
        except BaseException as exc:  # KeyboardInterrupt, or a bug: end the attempt, re-raise
            reason = f"stopped by {type(exc).__name__}"
            raise
        finally:
            if sock is not None:
                sock.close()
            if not ex.done:
                ex.cancel(time.monotonic(), reason)

    def _connect_and_send(self, payload: bytes) -> socket.socket | None:
        """A connected socket with the request sent, or ``None`` (the attempt has then ended)."""
        ex = self._exchange
        origin = ex.origin
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection(
                (origin.host, origin.port), timeout=ex.read_timeout(time.monotonic())
            )
            if origin.tls:
                context = self._ssl_context or ssl.create_default_context()
                sock.settimeout(ex.read_timeout(time.monotonic()))
                sock = context.wrap_socket(sock, server_hostname=origin.host)
            sock.settimeout(ex.read_timeout(time.monotonic()))
            sock.sendall(payload)
            return sock
        except TimeoutError as exc:
            if not ex.check_deadlines(time.monotonic()):
                ex.connection_failed(exc, time.monotonic())
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError), reset
            ex.connection_failed(exc, time.monotonic())
        if sock is not None:
            sock.close()
        return None


def stream_chat(
    base_url: str,
    dialect: str,
    request: ChatRequest,
    *,
    api_key: str | None = None,
    deadlines: Deadlines | None = None,
    headers: Iterable[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> ChatStream:
    """Stream ``request`` from the provider at ``base_url`` speaking ``dialect``, blocking.

    Nothing happens until the stream is iterated. ``dialect`` is a name of
    :data:`streamcore.providers.DIALECTS` (``"openai-chat"``, ``"anthropic"``,
    ``"ollama"``...); ``deadlines`` default to :data:`DEFAULT_DEADLINES`
    (``Deadlines()`` for none); ``headers`` are extra request headers;
    ``ssl_context`` defaults to ``ssl.create_default_context()`` for https.
    Name resolution is not bounded by the connect deadline (``getaddrinfo``
    cannot be interrupted); everything after it is.

    >>> from streamcore.events import TextDelta
    >>> from streamcore.request import ChatRequest, Message
    >>> request = ChatRequest("claude-sonnet-4-5", (Message("user", "Explain SSE"),))
    >>> with stream_chat("http://127.0.0.1:8000", "anthropic", request) as stream:  # doctest: +SKIP
    ...     for event in stream:
    ...         if isinstance(event, TextDelta):
    ...             print(event.text, end="", flush=True)
    >>> stream.outcome.state  # doctest: +SKIP
    <State.COMPLETED: 'completed'>
    """
    exchange = Exchange(
        base_url, dialect, request, api_key=api_key, deadlines=deadlines, headers=headers
    )
    return ChatStream(exchange, ssl_context)
