"""The HTTP client's errors: one family, each with a ``kind``, none showing a secret.

Every error :mod:`streamcore.adapters.http` raises on purpose is an
:class:`HTTPError` (itself a :class:`~streamcore.StreamcoreError`), with a
machine-readable ``kind`` and ``retryable`` (whether sending the same request
again may succeed). The family, by what went wrong::

    HTTPError
    ├── TransportError            the connection failed; the peer said nothing useful
    │   ├── ConnectError          no connection (DNS, refused, unreachable); nothing was sent
    │   │   ├── ConnectTimeout    connect_timeout passed (TCP + proxy CONNECT + TLS handshake)
    │   │   ├── TLSError          the TLS handshake failed (certificate, hostname, not TLS)
    │   │   └── ProxyError        the proxy was unreachable or refused the tunnel (407, 403...)
    │   ├── WriteError            sending the request failed and no response came back
    │   └── ReadError             the connection broke while reading the response
    ├── ResponseError             the response broke HTTP (also a RemoteProtocolError)
    │   └── BodyTooLarge          the body passed the client's size limit
    └── HTTPStatusError           the server answered with an error status
        ├── ClientError           other 4xx (400, 404, 413, 422...)
        │   └── AuthenticationError   401 / 403
        ├── RateLimited           429 (``retry_after``)
        └── ServerError           5xx
            └── Overloaded        529 (Anthropic's "overloaded_error")

How a stream driver reports them to :class:`~streamcore.machine.StreamMachine`:
``TransportError`` -> ``transport_failed`` (``CONNECT_FAILED`` before the
response head, ``INTERRUPTED`` after it); ``ResponseError`` ->
``protocol_error``; ``HTTPStatusError`` -> ``http_error(status,
error=exc.error, retry_after=exc.retry_after)``.

Secrets: the client passes every credential it sent (API key headers, proxy
password) to these errors, and :func:`redact` removes them -- and anything
shaped like an OpenAI, Anthropic or Google key -- from messages and from the
error body *before* it is parsed, so ``str()``, ``repr()``, ``body`` and
``error.raw`` are all clean. A 401 that echoes the key stays readable::

    >>> err = status_error(401, "Unauthorized", (), b'{"error": {"message": '
    ...     b'"Incorrect API key provided: sk-proj-abc123XYZ.", "type": "invalid_request_error", '
    ...     b'"code": "invalid_api_key"}}', secrets=("sk-proj-abc123XYZ",))
    >>> print(err)
    HTTP 401 Unauthorized: invalid_request_error: Incorrect API key provided: <redacted>. \
(check the API key and its permissions; retrying will not help)
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
from collections.abc import Iterable, Mapping

from streamcore._errors import RemoteProtocolError, StreamcoreError
from streamcore.events import ProviderError
from streamcore.machine import retryable_status
from streamcore.request import redact_headers

__all__ = [
    "AuthenticationError",
    "BodyTooLarge",
    "ClientError",
    "ConnectError",
    "ConnectTimeout",
    "HTTPError",
    "HTTPStatusError",
    "Overloaded",
    "ProxyError",
    "RateLimited",
    "ReadError",
    "ResponseError",
    "ServerError",
    "TLSError",
    "TransportError",
    "WriteError",
    "parse_error_body",
    "parse_retry_after",
    "redact",
    "status_error",
]

REDACTED = "<redacted>"

# Key shapes redacted even when the client did not send them (a server echoing
# another key, a key pasted into a prompt): OpenAI `sk-`/`sk-proj-`, Anthropic
# `sk-ant-...`, Google `AIza...`; bearer tokens; `key=` query parameters. The
# replacement holds no quote or backslash, so redacting JSON text keeps it JSON.
_KEY_SHAPES = re.compile(
    r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_*-]{4,}"
    r"|(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{8,}"
    r"|(?<=Bearer )[A-Za-z0-9._~+/=-]{8,}"
    r"|(?<=[?&]key=)[^&\s\"'<>]+"
    r"|(?<=[?&]api_key=)[^&\s\"'<>]+"
)
_MIN_SECRET = 4
"""Shorter "secrets" are not redacted: replacing every ``abc`` would garble messages."""
_SNIPPET = 300
"""Characters of a non-JSON error body quoted in a message."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret in ``secrets`` and every key-shaped string replaced.

    >>> redact("key sk-ant-api03-AbCdEf and token tok_live_9f8e7d6c", ["tok_live_9f8e7d6c"])
    'key <redacted> and token <redacted>'
    """
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def secrets_in_header_value(value: str) -> list[str]:
    """The strings of a credential header's value to redact: the value, and its token.

    ``"Bearer sk-123"`` yields the whole value and ``"sk-123"``, so an error
    quoting either form is redacted.

    >>> secrets_in_header_value("Bearer sk-abcdef123456")
    ['Bearer sk-abcdef123456', 'sk-abcdef123456']
    """
    found = [value]
    scheme, _, token = value.strip().partition(" ")
    if token and scheme.isalpha():
        found.append(token.strip())
    return found


class HTTPError(StreamcoreError):
    """Base of every error the HTTP client raises; ``retryable`` says whether to try again.

    ``where`` names the request (``"POST https://api.openai.com/v1/chat/completions"``,
    without query string) and starts the message.
    """

    retryable: bool
    where: str

    def __init__(self, message: str, *, kind: str, retryable: bool, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message, kind=kind)
        self.retryable = retryable
        self.where = where


class TransportError(HTTPError):
    """The connection failed: nothing (or not enough) came back from the peer."""


class ConnectError(TransportError):
    """No connection could be made; the request was not sent, so retrying is safe."""


class ConnectTimeout(ConnectError):
    """Connecting (TCP, proxy tunnel and TLS handshake together) took longer than allowed."""


class TLSError(ConnectError):
    """The TLS handshake failed: an untrusted certificate, a wrong hostname, not a TLS server."""


class ProxyError(ConnectError):
    """The proxy could not be reached, or refused to open the tunnel (``status`` if it answered)."""

    status: int | None

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool,
        where: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message, kind=kind, retryable=retryable, where=where)
        self.status = status


class WriteError(TransportError):
    """Sending the request failed and the server sent no response."""


class ReadError(TransportError):
    """The connection broke while the response was being read.

    ``bytes_received`` counts the response body bytes that arrived (0 when
    the head itself never came); ``head_received`` says whether it did.
    """

    bytes_received: int
    head_received: bool

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        where: str = "",
        bytes_received: int = 0,
        head_received: bool = False,
    ) -> None:
        super().__init__(message, kind=kind, retryable=True, where=where)
        self.bytes_received = bytes_received
        self.head_received = head_received


class ResponseError(HTTPError, RemoteProtocolError):
    """The server's response broke HTTP/1.1 or its content encoding."""


class BodyTooLarge(ResponseError):
    """The response body passed ``limit`` bytes (after decompression)."""

    limit: int

    def __init__(self, message: str, *, limit: int, where: str = "") -> None:
        super().__init__(message, kind="body_too_large", retryable=False, where=where)
        self.limit = limit


class HTTPStatusError(HTTPError):
    """The server answered with a status that is not 2xx.

    ``error`` is the provider's error parsed from the body (``None`` when the
    body was not a provider error shape; ``body`` then holds its text, at most
    the client's error-body limit). ``retry_after`` is in seconds (from
    ``retry-after-ms`` or ``retry-after``), ``request_id`` from
    ``x-request-id`` / ``request-id`` or the body. Everything is redacted.
    """

    status: int
    reason: str
    error: ProviderError | None
    body: str
    retry_after: float | None
    request_id: str | None
    headers: tuple[tuple[str, str], ...]

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool,
        status: int,
        reason: str = "",
        error: ProviderError | None = None,
        body: str = "",
        retry_after: float | None = None,
        request_id: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        where: str = "",
    ) -> None:
        super().__init__(message, kind=kind, retryable=retryable, where=where)
        self.status = status
        self.reason = reason
        self.error = error
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id
        self.headers = headers


class ClientError(HTTPStatusError):
    """A 4xx other than 401, 403 and 429: the request itself was rejected."""


class AuthenticationError(ClientError):
    """401 (``kind="authentication_failed"``) or 403 (``kind="permission_denied"``)."""


class RateLimited(HTTPStatusError):
    """429: too many requests or tokens; wait ``retry_after`` seconds.

    ``retryable`` is false for a quota that is used up (OpenAI's
    ``insufficient_quota``, ``kind="quota_exceeded"``): waiting will not help.
    """


class ServerError(HTTPStatusError):
    """5xx: the provider failed; retrying may help."""


class Overloaded(ServerError):
    """529: the provider is overloaded (Anthropic); retry later, with backoff."""


# --- Parsing what the server said -------------------------------------------------


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def parse_retry_after(headers: Iterable[tuple[str, str]], *, now: float) -> float | None:
    """Seconds to wait before retrying, from the response headers, or ``None``.

    ``retry-after-ms`` (milliseconds, sent by OpenAI) wins over ``retry-after``,
    which is delta seconds or an HTTP-date. A date counts from the response's
    ``Date`` header when there is one (so a skewed local clock does not
    matter), else from ``now`` (Unix time). Past dates give 0; garbage ``None``.

    >>> parse_retry_after([("retry-after", "20")], now=0.0)
    20.0
    >>> parse_retry_after([("retry-after-ms", "1500"), ("retry-after", "2")], now=0.0)
    1.5
    >>> parse_retry_after([("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ...                    ("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")], now=0.0)
    30.0
    """
    headers = tuple(headers)
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        seconds = _number(millis)
        if seconds is not None:
            return seconds / 1000.0
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    when = _http_date(value)
    if when is None:
        return None
    date = _header(headers, "date")
    reference = _http_date(date) if date is not None else None
    return max(0.0, when - (now if reference is None else reference))


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _http_date(text: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_error_body(text: str) -> ProviderError | None:
    """The provider's error in an error response body, or ``None`` if it has none.

    Knows OpenAI's ``{"error": {"message", "type", "code"}}``, Anthropic's
    ``{"type": "error", "error": {"type", "message"}}``, Gemini's
    ``{"error": {"code", "message", "status"}}`` (also inside a JSON array, as
    its streaming endpoint sends it), Ollama's ``{"error": "..."}`` and
    ``{"detail": "..."}`` servers. ``raw`` is the parsed JSON.

    >>> parse_error_body('{"type": "error", '
    ...                  '"error": {"type": "overloaded_error", "message": "Overloaded"}}')
    ProviderError(type='overloaded_error', message='Overloaded', raw={...})
    >>> parse_error_body('<html>502 Bad Gateway</html>') is None
    True
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = _str(error.get("message")) or ""
        kind = (
            _str(error.get("type"))
            or _str(error.get("status"))
            or _str(error.get("code"))
            or (str(error["code"]) if isinstance(error.get("code"), int) else None)
            or "error"
        )
        return ProviderError(kind, message, raw=data)
    if isinstance(error, str):
        return ProviderError("error", error, raw=data)
    detail = data.get("detail") or data.get("message")
    if isinstance(detail, str):
        return ProviderError(_str(data.get("type")) or "error", detail, raw=data)
    return None


def _redact_tree(value: object, secrets: tuple[str, ...]) -> object:
    """Parsed JSON with every string (keys too) redacted."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [_redact_tree(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(k, secrets): _redact_tree(v, secrets) for k, v in value.items()}
    return value


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _request_id(headers: Iterable[tuple[str, str]], error: ProviderError | None) -> str | None:
    for name in ("x-request-id", "request-id"):
        value = _header(headers, name)
        if value:
            return value
    if error is not None and isinstance(error.raw, Mapping):
        return _str(error.raw.get("request_id"))
    return None


_ADVICE = {
    "authentication_failed": "check the API key and its permissions; retrying will not help",
    "permission_denied": "check the API key and its permissions; retrying will not help",
    "rate_limited": "slow down, then retry",
    "quota_exceeded": "the account's quota or credit is used up; retrying will not help",
    "overloaded": "the provider is overloaded; retry later with backoff",
    "server_error": "the provider failed; retrying may help",
    "client_error": "the request was rejected; fix it before retrying",
    "unexpected_status": "redirects are not followed: point the client at the final URL",
}


def status_error(
    status: int,
    reason: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    *,
    secrets: Iterable[str] = (),
    where: str = "",
    now: float = 0.0,
) -> HTTPStatusError:
    """The :class:`HTTPStatusError` subclass for a non-2xx response, body parsed and redacted.

    ``body`` is the (already bounded) error body; ``secrets`` every credential
    the request carried; ``now`` the Unix time, for ``Retry-After`` dates.
    ``retryable`` follows the status (408, 409, 429, 5xx) unless the server
    says otherwise with ``x-should-retry: true|false`` (as OpenAI and
    Anthropic do), or the quota is used up.

    >>> err = status_error(429, "Too Many Requests", (("retry-after", "3"),), b"slow down")
    >>> type(err).__name__, err.retry_after, err.retryable, err.error
    ('RateLimited', 3.0, True, None)
    """
    secrets = tuple(secrets)
    text = redact(body.decode("utf-8", "replace"), secrets)
    error = parse_error_body(text)
    if error is not None:
        # JSON escapes (``\u0073k-...``) hide a key from the text pass; the parsed
        # strings show it. Redact them too, and if that found anything, show
        # the redacted JSON instead of the text.
        try:
            raw = _redact_tree(error.raw, secrets)
        except RecursionError:  # nested nearly as deep as json allows: keep no raw
            raw = None
        if raw != error.raw:
            text = json.dumps(raw, ensure_ascii=False)
        error = ProviderError(redact(error.type, secrets), redact(error.message, secrets), raw)
    retry_after = parse_retry_after(headers, now=now)
    request_id = _request_id(headers, error)
    retryable = retryable_status(status)
    cls: type[HTTPStatusError]
    if status == 429:
        cls, kind = RateLimited, "rate_limited"
        code = None
        if error is not None and isinstance(error.raw, Mapping):
            inner = error.raw.get("error")
            code = inner.get("code") if isinstance(inner, Mapping) else None
        if "insufficient_quota" in (code, error.type if error else None):
            kind, retryable = "quota_exceeded", False
    elif status == 529:
        cls, kind = Overloaded, "overloaded"
    elif 500 <= status <= 599:
        cls, kind = ServerError, "server_error"
    elif status == 401:
        cls, kind = AuthenticationError, "authentication_failed"
    elif status == 403:
        cls, kind = AuthenticationError, "permission_denied"
    elif 400 <= status <= 499:
        cls, kind = ClientError, "client_error"
    else:
        cls, kind = HTTPStatusError, "unexpected_status"
    should_retry = (_header(headers, "x-should-retry") or "").strip().lower()
    if should_retry in ("true", "false") and kind != "quota_exceeded":
        retryable = should_retry == "true"

    said = f"{error.type}: {error.message}" if error is not None else _snippet(text) or "no body"
    parts = [f"HTTP {status} {reason}".rstrip() + f": {said}"]
    if request_id:
        parts.append(f"(request id {request_id})")
    if retry_after is not None:
        parts.append(f"(retry after {retry_after:g} s)")
    advice = _ADVICE[kind]
    if kind == "unexpected_status":
        location = _header(headers, "location")
        if location:
            advice += f" ({redact(location, secrets)})"
    parts.append(f"({advice})")
    return cls(
        " ".join(parts),
        kind=kind,
        retryable=retryable,
        status=status,
        reason=reason,
        error=error,
        body=text,
        retry_after=retry_after,
        request_id=request_id,
        headers=redact_headers(headers),
        where=where,
    )
