"""A small HTTP/1.1 client for streamed responses, on trio streams and h11.

Theory of operation
-------------------
:class:`HTTPClient` owns a pool of keep-alive connections, one list of idle
connections per *route* (the origin, plus the proxy if one is used). A request
is one ``async with client.stream(url, request) as response:`` block:

1. **Route.** ``url`` gives only scheme, host and port (``https://api.openai.com``);
   the path is ``request.target``. The proxy is the client's ``proxy=`` if
   given, else ``https_proxy``/``HTTPS_PROXY`` for https and
   ``http_proxy``/``HTTP_PROXY`` for http, unless ``no_proxy``/``NO_PROXY``
   matches the host or the host is loopback (see :func:`proxy_from_env`).
   https goes through a proxy in a ``CONNECT`` tunnel (the proxy sees only the
   host name); plain http is sent to the proxy in absolute form
   (``GET http://host/path``), which every proxy accepts, where many refuse
   ``CONNECT`` to ports other than 443. Proxy credentials from the URL go in
   ``Proxy-Authorization`` and are never shown in an error or a ``repr``.
2. **Connection.** The newest idle connection of the route is reused unless
   it has been idle longer than ``idle_expiry`` (trio's clock) or its socket
   is readable -- an idle HTTP/1.1 connection has nothing to say, so readable
   means the server closed it (or broke the protocol). Otherwise a new one is
   opened: TCP, then the proxy tunnel, then TLS (certificates verified and the
   host name checked unless ``verify=False``), all within ``connect_timeout``.
3. **Exchange.** h11 frames the request and parses the response head (bounded
   by ``max_header_bytes``). **The stale-connection rule:** if a connection
   taken *from the pool* fails -- the write fails, or the socket reports EOF or
   a reset -- before a single byte of the response arrived, it is closed and
   the request is sent once more on a *new* connection. The usual cause is a
   server closing an idle keep-alive connection at the moment our request went
   out; such a server never read the request (it had closed), so even a POST
   is safe to send again. Never retried: a failure on a new connection, a
   failure after any response byte, a second failure, a cancellation. (A server
   that read the request and then died without a byte of answer looks the same
   from here; like browsers and Go's net/http, we accept that residual risk.)
4. **Status.** With ``raise_for_status=True`` (the default) a non-2xx status
   raises before the block runs: the error body is read (at most
   ``max_error_body_bytes``), parsed for the provider's error and redacted
   (:func:`~streamcore.adapters.errors.status_error`). Redirects are not
   followed (they would carry the API key to another place).
5. **Body.** ``response.aiter_bytes()`` yields the body as it arrives, one
   chunk per read from the socket: no line buffering (the sans-IO decoders do
   that). ``gzip``/``deflate`` bodies are decompressed incrementally, at most
   :data:`DECOMPRESS_STEP` bytes per chunk, and at most ``max_body_bytes``
   bytes are ever delivered (:class:`~streamcore.adapters.errors.BodyTooLarge`).
   Compression is not asked for by default (``Accept-Encoding: identity``):
   a compressing server or proxy may hold tokens back to fill its compression
   blocks, which delays a streamed answer; ``accept_compression=True`` asks for
   it when bandwidth matters more than latency.
6. **Release.** When the block exits, a response read to its end, whose
   connection h11 says can carry another request (both sides ``DONE``: no
   ``Connection: close``, no HTTP/1.0), goes back to the pool (at most
   ``max_idle_per_origin`` per route, the oldest closed first). Anything else
   -- the block exited before the body ended, an error, a cancellation -- closes
   the socket at once, without waiting for anything, so a stream the caller
   abandoned or timed out stops the provider generating (and billing) tokens.

Deadlines are the caller's: wrap the ``async with`` or the ``async for`` in
trio cancel scopes (first-token, idle and total deadlines come from
:class:`~streamcore.machine.StreamMachine`). Cancellation at any point closes
the connection before the exception leaves the block. The only timeout the
client keeps itself is ``connect_timeout``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import ssl
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import trio

from streamcore import __version__
from streamcore._errors import LocalProtocolError
from streamcore.adapters.errors import (
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    HTTPError,
    ProxyError,
    ReadError,
    ResponseError,
    TLSError,
    TransportError,
    WriteError,
    redact,
    secrets_in_header_value,
    status_error,
)
from streamcore.request import SECRET_HEADERS, HTTPRequest

__all__ = [
    "DECOMPRESS_STEP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_EXPIRY",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ERROR_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_IDLE_PER_ORIGIN",
    "HTTPClient",
    "Origin",
    "Proxy",
    "Response",
    "parse_origin",
    "parse_proxy",
    "proxy_from_env",
]

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds for TCP connect + proxy tunnel + TLS handshake, per connection attempt."""
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""64 MiB: far above any streamed answer, small enough to bound memory."""
DEFAULT_MAX_ERROR_BODY_BYTES = 64 * 1024
"""64 KiB of an error response body are read and parsed; the rest is dropped."""
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
"""Bound on a response head (status line plus headers): h11's ``max_incomplete_event_size``."""
DEFAULT_MAX_IDLE_PER_ORIGIN = 8
"""Idle keep-alive connections kept per origin."""
DEFAULT_IDLE_EXPIRY = 15.0
"""Seconds an idle connection is kept. Servers drop idle connections after 5 to 120 s;
reusing one they already dropped costs a retry, so stay on the short side."""
DECOMPRESS_STEP = 256 * 1024
"""The most bytes one chunk of a compressed body decompresses to (the rest waits its turn)."""

_RECEIVE_SIZE = 65536
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Headers the client writes itself: the caller setting them would break framing or routing.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade"}
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SECRET_QUERY = frozenset({"key", "api_key", "api-key"})


# --- Where requests go ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port: where a connection goes. ``host`` is lower case, IDNA-encoded,
    an IPv6 address without brackets.

    >>> origin = parse_origin("https://API.openai.com")
    >>> origin, str(origin), origin.authority
    (Origin(scheme='https', host='api.openai.com', port=443), 'https://api.openai.com', \
'api.openai.com:443')
    """

    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        """``host:port``, as a ``CONNECT`` target names it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def _safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # Everything up to the last "@" may be credentials: a raw password can hold "/" or "?".
    rest = rest.rpartition("@")[2]
    return f"{scheme}{sep}{redact(rest)}"


def _split_url(url: str, what: str) -> tuple[urllib.parse.SplitResult, str, int]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        # Not quoting the ValueError: urllib's messages repeat the netloc, password included.
        raise LocalProtocolError(
            f"{what} {_safe_url(url)!r} is not a valid URL (bad host, port or characters)",
            kind="bad_url",
        ) from None
    if not host:
        raise LocalProtocolError(
            f"{what} {_safe_url(url)!r} has no host; write it as scheme://host[:port]",
            kind="bad_url",
        )
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise LocalProtocolError(
                f"{what} host {host!r} is not a valid international domain name", kind="bad_url"
            ) from None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    return parts, host, port


def parse_origin(url: str) -> Origin:
    """The :class:`Origin` of ``url``, which must be ``http(s)://host[:port]`` and no more.

    A path is refused rather than dropped: ``https://host/v1`` would silently
    lose ``/v1``. Put the whole path in ``HTTPRequest.target``.

    >>> parse_origin("http://127.0.0.1:11434/")
    Origin(scheme='http', host='127.0.0.1', port=11434)
    >>> parse_origin("https://api.anthropic.com/v1")
    Traceback (most recent call last):
    ...
    streamcore._errors.LocalProtocolError: ...path belongs in HTTPRequest.target...
    """
    parts, host, port = _split_url(url, "URL")
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise LocalProtocolError(
            f"URL {_safe_url(url)!r}: scheme {scheme!r} is not supported; use http:// or https://",
            kind="unsupported_scheme",
        )
    if parts.username is not None or parts.password is not None:
        raise LocalProtocolError(
            f"URL {_safe_url(url)!r} carries credentials; send API keys in a header",
            kind="credentials_in_url",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise LocalProtocolError(
            f"URL {_safe_url(url)!r} has a path or query; give only scheme://host[:port] "
            "(the path belongs in HTTPRequest.target)",
            kind="url_has_path",
        )
    return Origin(scheme, host, port)


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP(S) proxy, with optional credentials that never appear in its ``repr``.

    >>> parse_proxy("http://alice:s3cret@proxy.internal:3128")
    Proxy('http://proxy.internal:3128', credentials=<redacted>)
    """

    origin: Origin
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (Basic), or ``None`` without credentials."""
        if not self.username and not self.password:
            return None
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def secrets(self) -> tuple[str, ...]:
        """Every form of the credentials an error could quote."""
        auth = self.authorization
        if auth is None:
            return ()
        return (auth, auth.partition(" ")[2], self.password, f"{self.username}:{self.password}")

    def __repr__(self) -> str:
        creds = ", credentials=<redacted>" if self.authorization else ""
        return f"Proxy({str(self.origin)!r}{creds})"


def parse_proxy(url: str) -> Proxy:
    """A :class:`Proxy` from ``http://[user:password@]host[:port]`` (``http://`` is assumed
    when the scheme is missing, as curl does). Percent-escapes in the credentials are decoded.

    >>> parse_proxy("proxy.internal:3128").origin
    Origin(scheme='http', host='proxy.internal', port=3128)
    """
    if "://" not in url:
        url = "http://" + url
    parts, host, port = _split_url(url, "proxy URL")
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise LocalProtocolError(
            f"proxy URL {_safe_url(url)!r}: {scheme}:// proxies are not supported; "
            "use an http:// or https:// proxy (or unset the proxy variable)",
            kind="unsupported_proxy",
        )
    if parts.path not in ("", "/") or parts.query:
        raise LocalProtocolError(
            f"proxy URL {_safe_url(url)!r} has a path; give http://[user:password@]host[:port]",
            kind="bad_url",
        )
    return Proxy(
        Origin(scheme, host, port),
        username=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
    )


def _env_value(env: Mapping[str, str], name: str) -> str:
    # Lower case first, as curl and requests do; an empty value means unset.
    return env.get(name) or env.get(name.upper()) or ""


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy_matches(origin: Origin, no_proxy: str) -> bool:
    host = origin.host
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("["):
            name, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            name, _, port = entry.partition(":")
        else:
            name, port = entry, ""
        if port and port != str(origin.port):
            continue
        if "/" in name:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_from_env(origin: Origin, env: Mapping[str, str]) -> Proxy | None:
    """The proxy the environment ``env`` asks for to reach ``origin``, or ``None``.

    ``https_proxy`` for https, ``http_proxy`` for http (lower case wins over
    upper case; empty means unset). No proxy for a host ``no_proxy`` matches:
    ``*``, a name (``example.com`` also covers ``api.example.com``; a leading
    ``.`` or ``*.`` is allowed), an IP address or CIDR block, each optionally
    with ``:port``. Loopback hosts never use the environment's proxy (as in
    Go's net/http): a local model server or the emulator must not be sent to a
    corporate proxy.

    >>> env = {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "internal.example.com"}
    >>> proxy_from_env(parse_origin("https://api.openai.com"), env)
    Proxy('http://proxy.internal:3128')
    >>> proxy_from_env(parse_origin("https://llm.internal.example.com"), env) is None
    True
    """
    if _is_loopback(origin.host):
        return None
    no_proxy = _env_value(env, "no_proxy")
    if no_proxy and _no_proxy_matches(origin, no_proxy):
        return None
    url = _env_value(env, "https_proxy" if origin.scheme == "https" else "http_proxy")
    return parse_proxy(url) if url else None


@dataclass(frozen=True, slots=True)
class _Route:
    """How to reach an origin; the pool key. ``tunnel``: https through a proxy (CONNECT)."""

    origin: Origin
    proxy: Proxy | None

    @property
    def tunnel(self) -> bool:
        return self.proxy is not None and self.origin.scheme == "https"


# --- Content decoding -----------------------------------------------------------------


def _bad_encoding(message: str, where: str) -> ResponseError:
    return ResponseError(message, kind="bad_encoding", retryable=True, where=where)


class _Decompressor:
    """Incremental gzip/deflate decoding whose every step is bounded by DECOMPRESS_STEP.

    ``push`` compressed bytes, then ``pull`` until it returns ``b""``; ``finish``
    at the end of the body checks the compressed stream ended too. ``deflate``
    is zlib-wrapped by the spec, raw in some servers: the first two bytes tell.
    """

    __slots__ = ("_encoding", "_input", "_pending", "_started", "_where", "_z")

    def __init__(self, encoding: str, where: str) -> None:
        self._encoding = encoding
        self._where = where
        self._z: zlib._Decompress | None = None
        self._input = b""
        self._pending = False  # the last pull filled its step: zlib may hold more output
        self._started = False  # any input at all

    def push(self, data: bytes) -> None:
        if data:
            self._started = True
            self._input = self._input + data if self._input else data

    def pull(self) -> bytes:
        if not self._input and not self._pending:
            return b""
        z = self._z
        if z is None:
            if self._encoding == "deflate" and len(self._input) < 2:
                return b""  # not enough to tell zlib from raw deflate yet
            z = self._z = zlib.decompressobj(self._wbits())
        if z.eof:
            return self._next_member()
        try:
            out = z.decompress(self._input, DECOMPRESS_STEP)
        except zlib.error as exc:
            raise _bad_encoding(
                f"the {self._encoding} body is corrupt ({exc}); the server or a proxy "
                "garbled it: retry, or leave accept_compression off",
                self._where,
            ) from None
        self._input = z.unconsumed_tail
        self._pending = len(out) == DECOMPRESS_STEP
        self._keep_unused(z)
        return out

    def _keep_unused(self, z: zlib._Decompress) -> None:
        # Input past the end of the compressed stream waits for _next_member.
        if z.eof and z.unused_data:
            self._input = z.unused_data + self._input

    def _wbits(self) -> int:
        if self._encoding == "gzip":
            return 16 + zlib.MAX_WBITS
        cmf, flg = self._input[0], self._input[1]
        is_zlib = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
        return zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS

    def _next_member(self) -> bytes:
        # Bytes after the end of the compressed stream: a second gzip member, or garbage.
        if self._encoding == "gzip" and self._input[:2] == b"\x1f\x8b":
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return self.pull()
        if self._input == b"\x1f" and self._encoding == "gzip":
            self._pending = False
            return b""  # maybe the start of a next member: wait for its second byte
        if not self._input:
            self._pending = False
            return b""
        raise _bad_encoding(
            f"{len(self._input)} bytes follow the end of the {self._encoding} stream",
            self._where,
        )

    def finish(self) -> None:
        if not self._started:
            return  # an empty body is an empty body, whatever its encoding says
        if self._z is None or not self._z.eof:
            raise _bad_encoding(
                f"the {self._encoding} body ended before the end of its compressed stream "
                "(truncated by the server or a proxy); retry the request",
                self._where,
            )


# --- One connection -------------------------------------------------------------------


class _Connection:
    """A socket, the TLS layers over it, and the h11 state of the exchange on it."""

    __slots__ = ("h11", "idle_since", "reused", "route", "socket", "stream")

    def __init__(
        self, stream: trio.abc.Stream, socket: trio.socket.SocketType, route: _Route, max_head: int
    ) -> None:
        self.stream = stream
        self.socket = socket
        self.route = route
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self.reused = False
        self.idle_since = 0.0

    def abort(self) -> None:
        """Close the socket now (FIN), skipping TLS close_notify: nothing here waits."""
        self.socket.close()

    def looks_alive(self) -> bool:
        """Whether an idle connection can take a request: nothing is waiting to be read."""
        if self.socket.fileno() < 0 or self.socket.is_readable():
            return False
        return not (isinstance(self.stream, trio.SSLStream) and self.stream.pending())


def _classify_connect_error(exc: OSError) -> tuple[str, str]:
    if isinstance(exc, trio.socket.gaierror):
        return "dns_failed", f"the host name did not resolve ({exc.strerror or exc})"
    causes: list[BaseException] = [exc]
    if exc.__cause__ is not None:
        causes.extend(getattr(exc.__cause__, "exceptions", (exc.__cause__,)))
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection_refused", "connection refused (nothing listens on that port?)"
    return "connect_failed", str(exc)


# --- Responses ------------------------------------------------------------------------


class Response:
    """A response whose head has arrived; its body streams through :meth:`aiter_bytes`.

    Valid only inside the ``async with client.stream(...)`` block that made it.
    ``headers`` are ``(name, value)`` pairs, names in lower case.
    """

    def __init__(
        self,
        head: h11.Response,
        conn: _Connection,
        *,
        where: str,
        secrets: tuple[str, ...],
        max_body_bytes: int,
        max_error_body_bytes: int,
    ) -> None:
        self.status: int = head.status_code
        self.reason: str = head.reason.decode("latin-1")
        self.http_version: str = head.http_version.decode("ascii", "replace")
        self.headers: tuple[tuple[str, str], ...] = tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
        )
        self.where = where
        """The request this answers: method and URL without the query string."""
        self._conn = conn
        self._secrets = secrets
        self._max_body = max_body_bytes
        self._max_error_body = max_error_body_bytes
        self._decompressor: _Decompressor | None = None
        self._started = False
        self._done = False  # h11 delivered EndOfMessage
        self._ended = False  # ... and the decompressor finished: the body is complete
        self._eof = False
        self._closed = False
        self._error: HTTPError | None = None
        self.bytes_received = 0
        """Body bytes received from the wire so far (compressed, if the body is)."""
        self.bytes_delivered = 0
        """Body bytes handed to the caller so far (decompressed)."""

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status <= 299

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read."""
        return self._ended

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives (decompressed if it was compressed).

        Each chunk is what one read from the socket produced (at most
        :data:`DECOMPRESS_STEP` bytes when decompressing); empty chunks are never
        yielded. Raises :class:`ReadError` if the connection breaks before the
        end, :class:`BodyTooLarge` past ``max_body_bytes``. Iterating again
        continues where the last iteration stopped.
        """
        return _BodyIterator(self)

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body as one ``bytes``; :class:`BodyTooLarge` past ``limit``
        (default: the client's ``max_body_bytes``)."""
        limit = self._max_body if limit is None else limit
        chunks: list[bytes] = []
        size = 0
        while (chunk := await self._next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise self._fail(self._too_large(limit))
            chunks.append(chunk)
        return b"".join(chunks)

    async def raise_for_status(self) -> None:
        """Raise the :class:`HTTPStatusError` subclass for a non-2xx status; no-op for 2xx.

        Reads at most ``max_error_body_bytes`` of the body to parse the
        provider's error; if the connection breaks meanwhile, what arrived is used.
        """
        if self.is_success:
            return
        chunks: list[bytes] = []
        size = 0
        try:
            while size < self._max_error_body and (chunk := await self._next_chunk()) is not None:
                chunks.append(chunk)
                size += len(chunk)
        except HTTPError:
            pass  # the status is the news; a broken error body is not
        body = b"".join(chunks)[: self._max_error_body]
        raise status_error(
            self.status,
            self.reason,
            self.headers,
            body,
            secrets=self._secrets,
            where=self.where,
            now=time.time(),
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} {self.where}>"

    # --- the body pump ---

    def _fail(self, error: HTTPError) -> HTTPError:
        self._error = error
        return error

    def _too_large(self, limit: int) -> BodyTooLarge:
        return BodyTooLarge(
            f"the response body passed the {limit}-byte limit (max_body_bytes); "
            "raise the limit if the answer is legitimately this large",
            limit=limit,
            where=self.where,
        )

    def _start(self) -> None:
        self._started = True
        encoding = (self.header("content-encoding") or "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decompressor = _Decompressor("gzip", self.where)
        elif encoding == "deflate":
            self._decompressor = _Decompressor("deflate", self.where)
        elif encoding not in ("", "identity"):
            raise self._fail(
                ResponseError(
                    f"the body is encoded as {encoding!r}, which this client cannot decode "
                    "(it asked for identity or gzip/deflate only)",
                    kind="unsupported_encoding",
                    retryable=False,
                    where=self.where,
                )
            )
        length = self.header("content-length")
        too_long = length is not None and length.strip().isdigit() and int(length) > self._max_body
        if self._decompressor is None and too_long:
            raise self._fail(self._too_large(self._max_body))

    async def _next_chunk(self) -> bytes | None:
        """The next non-empty chunk of the body, or ``None`` at its end."""
        if self._closed:
            raise LocalProtocolError(
                f"the response to {self.where} was read after its `async with` block ended; "
                "read the body inside the block",
                kind="response_closed",
            )
        if self._error is not None:
            raise self._error
        if not self._started:
            self._start()
        conn = self._conn
        decompressor = self._decompressor
        while True:
            if decompressor is not None:
                piece = decompressor.pull()
                if piece:
                    return self._deliver(piece)
                if self._done:
                    if not self._ended:
                        try:
                            decompressor.finish()
                        except HTTPError as exc:
                            raise self._fail(exc) from None
                        self._ended = True
                    return None
            elif self._done:
                self._ended = True
                return None
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._fail(self._broken_body(exc)) from None
            if event is h11.NEED_DATA:
                await self._receive()
            elif type(event) is h11.Data:
                raw = event.data
                self.bytes_received += len(raw)
                if self.bytes_received > self._max_body:
                    raise self._fail(self._too_large(self._max_body))
                if decompressor is None:
                    return self._deliver(raw if type(raw) is bytes else bytes(raw))
                try:
                    decompressor.push(raw)
                except HTTPError as exc:
                    raise self._fail(exc) from None
            elif type(event) is h11.EndOfMessage:
                self._done = True
            else:  # ConnectionClosed or PAUSED cannot come before EndOfMessage
                raise self._fail(
                    ResponseError(
                        f"unexpected {event!r} in the response body",
                        kind="bad_http",
                        retryable=True,
                        where=self.where,
                    )
                )

    def _deliver(self, chunk: bytes) -> bytes:
        self.bytes_delivered += len(chunk)
        if self.bytes_delivered > self._max_body:
            raise self._fail(self._too_large(self._max_body))
        return chunk

    async def _receive(self) -> None:
        try:
            data = await self._conn.stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._fail(
                ReadError(
                    f"the connection broke after {self.bytes_received} bytes of the response "
                    f"body ({exc.__cause__ or exc}); the answer is incomplete: retry",
                    kind="connection_reset",
                    where=self.where,
                    bytes_received=self.bytes_received,
                    head_received=True,
                )
            ) from None
        if not data:
            self._eof = True
        self._conn.h11.receive_data(bytes(data) if type(data) is not bytes else data)

    def _broken_body(self, exc: h11.RemoteProtocolError) -> HTTPError:
        if self._eof:
            return ReadError(
                f"the server closed the connection after {self.bytes_received} bytes of the "
                f"response body, before its end ({exc}); the answer is incomplete: retry",
                kind="incomplete_body",
                where=self.where,
                bytes_received=self.bytes_received,
                head_received=True,
            )
        return ResponseError(
            f"the response body breaks HTTP/1.1 framing after {self.bytes_received} bytes ({exc})",
            kind="bad_http",
            retryable=True,
            where=self.where,
        )


class _BodyIterator:
    __slots__ = ("_response",)

    def __init__(self, response: Response) -> None:
        self._response = response

    def __aiter__(self) -> _BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        # Chunks may come from buffers without touching the socket: check for
        # cancellation anyway, so a deadline stops a stream at once.
        await trio.lowlevel.checkpoint_if_cancelled()
        chunk = await self._response._next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


# --- The client -----------------------------------------------------------------------


class _Stale(Exception):
    """Internal: a connection failed before any response byte; ``error`` if not retried."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0) or value != value:
        raise LocalProtocolError(
            f"HTTPClient({name}=...) must be {'>= 0' if allow_zero else '> 0'}, got {value!r}",
            kind="bad_option",
        )


class HTTPClient:
    """An HTTP/1.1 client for streamed responses, with a keep-alive pool per origin.

    Use it as an async context manager; leaving it closes every idle connection::

        async with HTTPClient() as client:
            request = HTTPRequest("POST", "/v1/messages", headers, body)
            async with client.stream("https://api.anthropic.com", request) as response:
                async for chunk in response.aiter_bytes():
                    events = decoder.feed(chunk)

    Options: ``connect_timeout`` (seconds per connection attempt: TCP, proxy
    tunnel and TLS handshake); ``verify`` (``False`` turns certificate checks
    off: testing only) and ``ca_bundle`` (a PEM file of CAs to trust instead of
    the system's); ``proxy`` (a URL used for every origin; default: the
    environment's, read when the client is made, see :func:`proxy_from_env`,
    unless ``trust_env=False``);
    ``accept_compression`` (ask for gzip/deflate; off by default, see the
    module docstring); the bounds ``max_body_bytes``, ``max_error_body_bytes``,
    ``max_header_bytes``; the pool's ``max_idle_per_origin`` and
    ``idle_expiry`` (seconds, trio's clock).

    >>> HTTPClient(proxy="http://bob:hunter2@proxy.internal:3128")
    HTTPClient(proxy=Proxy('http://proxy.internal:3128', credentials=<redacted>), verify=True)
    """

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        verify: bool = True,
        ca_bundle: str | os.PathLike[str] | None = None,
        proxy: str | Proxy | None = None,
        trust_env: bool = True,
        accept_compression: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_error_body_bytes: int = DEFAULT_MAX_ERROR_BODY_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_idle_per_origin: int = DEFAULT_MAX_IDLE_PER_ORIGIN,
        idle_expiry: float = DEFAULT_IDLE_EXPIRY,
        user_agent: str = f"streamcore/{__version__}",
    ) -> None:
        _check_positive("connect_timeout", connect_timeout)
        _check_positive("max_body_bytes", max_body_bytes)
        _check_positive("max_error_body_bytes", max_error_body_bytes)
        _check_positive("max_header_bytes", max_header_bytes)
        _check_positive("max_idle_per_origin", max_idle_per_origin, allow_zero=True)
        _check_positive("idle_expiry", idle_expiry, allow_zero=True)
        if ca_bundle is not None and not verify:
            raise LocalProtocolError(
                "HTTPClient(ca_bundle=..., verify=False): the bundle would be ignored; "
                "drop one of the two",
                kind="bad_option",
            )
        self._connect_timeout = connect_timeout
        self._verify = verify
        self._ca_bundle = ca_bundle
        self._ssl_context: ssl.SSLContext | None = None
        self._proxy = parse_proxy(proxy) if isinstance(proxy, str) else proxy
        self._env: dict[str, str] = {}
        if proxy is None and trust_env:
            names = {"http_proxy", "https_proxy", "no_proxy"}
            self._env = {k: v for k, v in os.environ.items() if k.lower() in names}
        self._accept_encoding = "gzip, deflate" if accept_compression else "identity"
        self._max_body = max_body_bytes
        self._max_error_body = max_error_body_bytes
        self._max_head = max_header_bytes
        self._max_idle = max_idle_per_origin
        self._idle_expiry = idle_expiry
        self._user_agent = user_agent
        self._idle: dict[_Route, list[_Connection]] = {}
        self._closed = False

    def __repr__(self) -> str:
        proxy = f"proxy={self._proxy!r}, " if self._proxy is not None else ""
        return f"HTTPClient({proxy}verify={self._verify})"

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every idle connection; the client refuses new requests afterwards.

        Responses still open close their connections when their blocks end.
        """
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()
        await trio.lowlevel.checkpoint()

    def idle_connections(self, url: str | Origin) -> int:
        """How many idle connections the pool holds for ``url``'s origin (direct or proxied)."""
        origin = url if isinstance(url, Origin) else parse_origin(url)
        return sum(len(idle) for route, idle in self._idle.items() if route.origin == origin)

    @asynccontextmanager
    async def stream(
        self, url: str | Origin, request: HTTPRequest, *, raise_for_status: bool = True
    ) -> AsyncIterator[Response]:
        """Send ``request`` to ``url``'s origin; the block gets the :class:`Response` once
        its head has arrived, and reads the body with ``aiter_bytes()`` or ``read()``.

        With ``raise_for_status`` a non-2xx status raises its
        :class:`~streamcore.adapters.errors.HTTPStatusError` before the block runs.
        Raises :class:`~streamcore.adapters.errors.ConnectError` (and its
        subclasses), :class:`WriteError`, :class:`ReadError`, :class:`ResponseError`.
        On exit the connection returns to the pool if the body was read to its
        end, and is closed at once otherwise -- on cancellation too.
        """
        if self._closed:
            raise LocalProtocolError(
                "HTTPClient.stream() called after the client was closed", kind="client_closed"
            )
        origin = url if isinstance(url, Origin) else parse_origin(url)
        proxy = self._proxy if self._proxy is not None else proxy_from_env(origin, self._env)
        route = _Route(origin, proxy)
        where = f"{request.method} {origin}{request.target.partition('?')[0]}"
        secrets = self._secrets(request, proxy)
        head = self._h11_request(route, request)
        conn, response_head = await self._send(route, head, request.body, where, secrets)
        response = Response(
            response_head,
            conn,
            where=where,
            secrets=secrets,
            max_body_bytes=self._max_body,
            max_error_body_bytes=self._max_error_body,
        )
        try:
            if raise_for_status and not response.is_success:
                await response.raise_for_status()
            yield response
        finally:
            self._release(response)

    # --- building the request ---

    @staticmethod
    def _secrets(request: HTTPRequest, proxy: Proxy | None) -> tuple[str, ...]:
        found: list[str] = []
        for name, value in request.headers:
            if name.lower() in SECRET_HEADERS:
                found.extend(secrets_in_header_value(value))
        query = request.target.partition("?")[2]
        for name, value in urllib.parse.parse_qsl(query, keep_blank_values=False):
            if name.lower() in _SECRET_QUERY:
                found.append(value)
        if proxy is not None:
            found.extend(proxy.secrets())
        return tuple(found)

    def _h11_request(self, route: _Route, request: HTTPRequest) -> h11.Request:
        if not request.target.startswith("/"):
            raise LocalProtocolError(
                f"HTTPRequest.target must be a path starting with '/', got "
                f"{redact(request.target[:80])!r}; the origin goes in the url argument",
                kind="bad_target",
            )
        if not _TOKEN.fullmatch(request.method):
            raise LocalProtocolError(
                f"HTTP method {request.method[:40]!r} is not a token", kind="bad_request"
            )
        names = set()
        for name, value in request.headers:
            lower = name.lower()
            if not _TOKEN.fullmatch(name):
                raise LocalProtocolError(
                    f"header name {name[:40]!r} is not a valid HTTP token", kind="bad_header"
                )
            if lower in _RESERVED_HEADERS:
                raise LocalProtocolError(
                    f"header {name!r} is set by the client itself (framing and connection "
                    "management); remove it from the request",
                    kind="reserved_header",
                )
            # Never quote the value: it may be an API key.
            if not value.isascii() or any(c in value for c in "\r\n\0"):
                raise LocalProtocolError(
                    f"header {name!r} has a value with non-ASCII, CR, LF or NUL characters",
                    kind="bad_header",
                )
            names.add(lower)
        origin = route.origin
        headers = [("Host", origin.host_header), *request.headers]
        if "user-agent" not in names:
            headers.append(("User-Agent", self._user_agent))
        if "accept-encoding" not in names:
            headers.append(("Accept-Encoding", self._accept_encoding))
        if request.body or request.method in _BODY_METHODS:
            headers.append(("Content-Length", str(len(request.body))))
        target = request.target
        if route.proxy is not None and not route.tunnel:
            target = f"{origin}{target}"  # absolute form, for a plain-http proxy
            auth = route.proxy.authorization
            if auth is not None and "proxy-authorization" not in names:
                headers.append(("Proxy-Authorization", auth))
        try:
            return h11.Request(method=request.method, target=target, headers=headers)
        except (h11.LocalProtocolError, ValueError):
            raise LocalProtocolError(
                f"h11 refused the request line or headers of {request.method} "
                f"{redact(request.target.partition('?')[0][:80])!r}",
                kind="bad_request",
            ) from None

    # --- sending it ---

    async def _send(
        self,
        route: _Route,
        head: h11.Request,
        body: bytes,
        where: str,
        secrets: tuple[str, ...],
    ) -> tuple[_Connection, h11.Response]:
        fresh = False
        while True:
            conn = None if fresh else self._checkout(route)
            if conn is None:
                conn = await self._connect(route, where)
            try:
                return conn, await self._exchange(conn, head, body, where)
            except _Stale as stale:
                conn.abort()
                if conn.reused and not fresh:
                    fresh = True  # the stale-connection rule: once, on a new connection
                    continue
                raise stale.error from None
            except BaseException:
                conn.abort()
                raise

    def _checkout(self, route: _Route) -> _Connection | None:
        idle = self._idle.get(route)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since <= self._idle_expiry and conn.looks_alive():
                conn.reused = True
                return conn
            conn.abort()
        return None

    async def _exchange(
        self, conn: _Connection, head: h11.Request, body: bytes, where: str
    ) -> h11.Response:
        parts = [conn.h11.send(head)]
        if body:
            parts.append(conn.h11.send(h11.Data(data=body)))
        parts.append(conn.h11.send(h11.EndOfMessage()))
        write_error: BaseException | None = None
        try:
            await conn.stream.send_all(b"".join(p for p in parts if p))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # The server may have answered (413, 400) and closed before reading
            # the whole request: look for its response before giving up.
            write_error = exc.__cause__ or exc
        received = 0
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                too_big = exc.error_status_hint == 431
                raise ResponseError(
                    f"the response head passed the {self._max_head}-byte limit (max_header_bytes)"
                    if too_big
                    else f"the response head is not valid HTTP/1.1 ({exc})",
                    kind="headers_too_large" if too_big else "bad_http",
                    retryable=not too_big,
                    where=where,
                ) from None
            if event is h11.NEED_DATA:
                try:
                    data = await conn.stream.receive_some(_RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    error = ReadError(
                        f"the connection was reset before the response head arrived "
                        f"({exc.__cause__ or exc}, {received} bytes received); retry",
                        kind="connection_reset",
                        where=where,
                    )
                    if received == 0:
                        raise _Stale(error) from None
                    raise error from None
                if not data:
                    if received:
                        raise ReadError(
                            f"the server closed the connection in the middle of the "
                            f"response head ({received} bytes received); retry",
                            kind="incomplete_head",
                            where=where,
                        )
                    if write_error is not None:
                        raise _Stale(
                            WriteError(
                                f"sending the request failed ({write_error}) and the server "
                                "closed the connection without a response; retry",
                                kind="write_failed",
                                retryable=True,
                                where=where,
                            )
                        )
                    raise _Stale(
                        ReadError(
                            "the server closed the connection without sending a response "
                            "(0 bytes received); retry",
                            kind="connection_closed",
                            where=where,
                        )
                    )
                received += len(data)
                conn.h11.receive_data(data if type(data) is bytes else bytes(data))
            elif type(event) is h11.Response:
                # h11 bounds only a head still incomplete; one that arrived whole in a
                # single read is measured here.
                size = len(event.reason) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                if size > self._max_head:
                    raise ResponseError(
                        f"the response head passed the {self._max_head}-byte limit "
                        "(max_header_bytes)",
                        kind="headers_too_large",
                        retryable=False,
                        where=where,
                    )
                return event
            elif type(event) is not h11.InformationalResponse:  # 100 Continue etc.: skip
                raise ResponseError(
                    f"expected a response head, got {type(event).__name__}",
                    kind="bad_http",
                    retryable=True,
                    where=where,
                )

    def _release(self, response: Response) -> None:
        conn = response._conn
        response._closed = True
        if (
            response._ended
            and response._error is None
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
            and not self._closed
            and self._max_idle > 0
        ):
            conn.h11.start_next_cycle()
            if not conn.h11.trailing_data[0]:  # bytes after the response: not reusable
                idle = self._idle.setdefault(conn.route, [])
                if len(idle) >= self._max_idle:
                    idle.pop(0).abort()
                conn.idle_since = trio.current_time()
                idle.append(conn)
                return
        conn.abort()

    # --- connecting ---

    async def _connect(self, route: _Route, where: str) -> _Connection:
        with trio.move_on_after(self._connect_timeout):
            return await self._open(route, where)
        # If the caller's own deadline passed at the same moment, it wins.
        await trio.lowlevel.checkpoint_if_cancelled()
        target = route.proxy.origin if route.proxy is not None else route.origin
        via = f" through the proxy {route.proxy!r}" if route.proxy is not None else ""
        raise ConnectTimeout(
            f"no connection to {target.authority}{via} within connect_timeout="
            f"{self._connect_timeout:g} s (TCP connect, proxy tunnel and TLS handshake); "
            "check the network, or raise connect_timeout",
            kind="connect_timeout",
            retryable=True,
            where=where,
        )

    async def _open(self, route: _Route, where: str) -> _Connection:
        proxy = route.proxy
        target = proxy.origin if proxy is not None else route.origin
        try:
            tcp = await trio.open_tcp_stream(target.host, target.port)
        except OSError as exc:
            kind, detail = _classify_connect_error(exc)
            if proxy is not None:
                raise ProxyError(
                    f"cannot reach the proxy {proxy!r}: {detail}; check the proxy "
                    "setting (proxy= or the https_proxy/http_proxy variables)",
                    kind="proxy_unreachable",
                    retryable=True,
                    where=where,
                ) from exc
            raise ConnectError(
                f"cannot connect to {target.authority}: {detail}",
                kind=kind,
                retryable=True,
                where=where,
            ) from exc
        socket = tcp.socket
        try:
            stream: trio.abc.Stream = tcp
            if proxy is not None:
                if proxy.origin.scheme == "https":
                    stream = await self._tls(stream, proxy.origin.host, where, proxy=proxy)
                if route.tunnel:
                    await self._tunnel(stream, route, where)
            if route.origin.scheme == "https":
                stream = await self._tls(stream, route.origin.host, where)
        except BaseException:
            socket.close()
            raise
        return _Connection(stream, socket, route, self._max_head)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            if self._verify:
                ctx = ssl.create_default_context(
                    cafile=os.fspath(self._ca_bundle) if self._ca_bundle is not None else None
                )
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = ctx
        return self._ssl_context

    async def _tls(
        self, stream: trio.abc.Stream, hostname: str, where: str, *, proxy: Proxy | None = None
    ) -> trio.SSLStream[trio.abc.Stream]:
        try:
            context = self._context()
        except (OSError, ssl.SSLError) as exc:
            raise LocalProtocolError(
                f"cannot load ca_bundle {os.fspath(self._ca_bundle or '')!r}: {exc}",
                kind="bad_ca_bundle",
            ) from None
        tls = trio.SSLStream(stream, context, server_hostname=hostname, https_compatible=True)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            cause = exc.__cause__
            retryable = True
            if isinstance(cause, ssl.SSLCertVerificationError):
                kind, retryable = "certificate_verify_failed", False
                detail = (
                    f"the certificate of {hostname} was rejected ({cause.verify_message}); "
                    "if the server uses a private CA pass ca_bundle='ca.pem' "
                    "(verify=False turns checking off: for testing only)"
                )
            elif isinstance(cause, ssl.SSLError):
                kind = "tls_handshake_failed"
                detail = (
                    f"the TLS handshake with {hostname} failed ({cause.reason or cause}); "
                    "is it a TLS server (https://) or plain HTTP (http://)?"
                )
            else:
                kind = "tls_handshake_failed"
                detail = f"{hostname} closed the connection during the TLS handshake"
            if proxy is not None:
                raise ProxyError(
                    f"TLS to the proxy {proxy!r}: {detail}",
                    kind=kind,
                    retryable=retryable,
                    where=where,
                ) from None
            raise TLSError(detail, kind=kind, retryable=retryable, where=where) from None
        return tls

    async def _tunnel(self, stream: trio.abc.Stream, route: _Route, where: str) -> None:
        proxy = route.proxy
        assert proxy is not None
        authority = route.origin.authority
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head)
        headers = [("Host", authority), ("User-Agent", self._user_agent)]
        auth = proxy.authorization
        if auth is not None:
            headers.append(("Proxy-Authorization", auth))
        request = h11.Request(method="CONNECT", target=authority, headers=headers)
        data = (conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b"")

        def refused(message: str, kind: str, status: int | None = None) -> ProxyError:
            return ProxyError(
                f"the proxy {proxy!r} {message} (CONNECT {authority})",
                kind=kind,
                retryable=status is None or status in (502, 503, 504),
                where=where,
                status=status,
            )

        try:
            await stream.send_all(data)
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise refused(f"sent an invalid answer ({exc})", "bad_proxy_response") from None
                if event is h11.NEED_DATA:
                    chunk = await stream.receive_some(_RECEIVE_SIZE)
                    if not chunk:
                        raise refused("closed the connection before answering", "proxy_closed")
                    conn.receive_data(bytes(chunk))
                elif type(event) is h11.Response:
                    break
                elif type(event) is not h11.InformationalResponse:
                    raise refused(f"sent {type(event).__name__}", "bad_proxy_response")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise refused(
                f"broke the connection ({exc.__cause__ or exc})", "proxy_closed"
            ) from None
        status = event.status_code
        if status == 407:
            raise refused(
                "requires authentication (407): put the credentials in the proxy URL "
                "(http://user:password@host:port)"
                if auth is None
                else "rejected the credentials in the proxy URL (407)",
                "proxy_auth_required",
                status,
            )
        if not 200 <= status <= 299:
            raise refused(
                f"refused the tunnel with HTTP {status} {event.reason.decode('latin-1')}",
                "proxy_refused",
                status,
            )
        if conn.trailing_data[0]:
            raise refused("sent bytes after accepting the tunnel", "bad_proxy_response")
