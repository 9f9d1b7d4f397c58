"""The trio provider adapters: one streamed answer from any provider, recovered when it breaks.

Theory of operation
-------------------
Three layers, each thin:

* A :class:`Provider` says *where*: the dialect (``"openai-chat"``,
  ``"openai-responses"``, ``"anthropic"``, ``"gemini"``, ``"ollama"``), the base
  URL, the API key (a :class:`Secret`, never shown), the default model, extra
  headers. Its constructors read the usual environment variables.
* An :class:`Adapter` per dialect says *how*: it builds the provider's HTTP
  request with the core's ``build_request`` and makes the core's decoder
  (:data:`ADAPTERS`). Nothing else differs between providers.
* :class:`Stream` is the one generic driver. Rule 1 (after trio-websocket's
  ``_reader_task``): it decides nothing about the protocol. It moves bytes from
  the HTTP client (:mod:`streamcore.adapters.http`) into the dialect decoder,
  hands the events to a :class:`~streamcore.machine.StreamMachine` with
  ``trio.current_time()``, and reports what the socket did (headers, body
  end, a broken connection, an HTTP error) as machine inputs. Every wait runs
  under a cancel scope whose deadline is ``machine.next_deadline()`` (connect,
  first token, idle -- which every event, keep-alives and pings included,
  pushes back -- and total); when it fires the driver calls
  ``machine.check_deadlines``. Output is counted as it streams with the core's
  incremental :class:`~streamcore.tokens.TokenCounter`; past a hard
  :class:`~streamcore.tokens.TokenBudget` the driver calls
  ``machine.budget_exceeded`` and closes the connection. When an attempt ends,
  the :class:`~streamcore.adapters.recover.RecoveryExecutor` says what comes
  next (retry, resume and stitch, or stop with a marker).

The stream is pull-driven: each ``__anext__`` advances the attempt just far
enough to produce an event (one socket read, or one connect, or one backoff
sleep), so no task runs in the background and no cancel scope is open while an
event is handed to the caller. Its phases are a table (:data:`_PHASES`); a
move off the table raises :class:`~streamcore.LocalProtocolError`.

Cancellation is structural: a cancel scope around the ``async for`` (or
Ctrl-C, or ``break``) closes the connection at once -- the provider sees the
client leave and stops generating -- and the result records the attempt as
``CANCELLED`` with the text received so far.

Secrets: the key lives in a :class:`Secret` whose ``repr`` and ``str`` are
redacted and which refuses to be pickled; it is revealed only to build the
request headers, which :class:`~streamcore.request.HTTPRequest` redacts in turn,
and the HTTP client redacts it from every error.
"""

from __future__ import annotations

import enum
import hmac
import math
import os
import random
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import ClassVar, NoReturn, Protocol

import trio

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.adapters.encodings import load_encoding
from streamcore.adapters.errors import HTTPStatusError, TransportError, redact
from streamcore.adapters.http import DEFAULT_CONNECT_TIMEOUT, HTTPClient, Origin, Response
from streamcore.adapters.recover import (
    USER_FACING,
    AttemptPlan,
    RecoveryExecutor,
    StreamEvent,
    StreamResult,
)
from streamcore.events import (
    Event,
    Finish,
    ProviderError,
    ReasoningDelta,
    Refusal,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)
from streamcore.machine import Deadlines, State, StreamMachine
from streamcore.providers import DialectDecoder, decoder_for
from streamcore.providers import anthropic as anthropic_dialect
from streamcore.providers import gemini as gemini_dialect
from streamcore.providers import ollama as ollama_dialect
from streamcore.providers import openai_chat as openai_chat_dialect
from streamcore.providers import openai_responses as openai_responses_dialect
from streamcore.recovery import RecoveryPolicy
from streamcore.request import ChatRequest, HTTPRequest, Message, redact_headers
from streamcore.tokens import TokenBudget, TokenCounter, Tokenizer

__all__ = [
    "ADAPTERS",
    "Adapter",
    "AnthropicAdapter",
    "Client",
    "GeminiAdapter",
    "OllamaAdapter",
    "OpenAIChatAdapter",
    "OpenAIResponsesAdapter",
    "Provider",
    "Secret",
    "Stream",
    "Transport",
    "open_stream",
]


# --------------------------------------------------------------------------- secrets


class Secret:
    """A credential that never shows itself: ``repr`` and ``str`` are redacted.

    It compares in constant time, copies as itself, and refuses to be pickled
    (so it cannot end up in a saved file by accident); :meth:`reveal` is the
    only way to the value.

    >>> key = Secret("sk-proj-abc123")
    >>> key, f"{key}", key.reveal()
    (Secret('<redacted>'), "Secret('<redacted>')", 'sk-proj-abc123')
    >>> import pickle
    >>> pickle.dumps(key)
    Traceback (most recent call last):
    ...
    streamcore._errors.LocalProtocolError: a Secret cannot be pickled ...
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise LocalProtocolError(
                "an API key must be a non-empty string; check where it was read from",
                kind="bad_api_key",
            )
        self._value = value

    def reveal(self) -> str:
        """The credential itself. Put it in a request header, nowhere else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise LocalProtocolError(
            "a Secret cannot be pickled (it would write the key into the pickle); "
            "keep the key in the environment and read it again",
            kind="secret_not_serializable",
        )


# --------------------------------------------------------------------------- providers

_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    # google-genai's order: GOOGLE_API_KEY wins when both are set.
    "gemini": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "ollama": ("OLLAMA_API_KEY",),
}


def _key(
    given: str | Secret | None, family: str, env: dict[str, str] | None, *, required: bool
) -> Secret | None:
    if isinstance(given, Secret):
        return given
    if given is not None:
        return Secret(given)
    environ = os.environ if env is None else env
    names = _KEY_ENV[family]
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return Secret(value)
    if required:
        raise LocalProtocolError(
            f"no API key for {family}: set {' or '.join(names)} in the environment, "
            "or pass api_key=...",
            kind="missing_api_key",
        )
    return None


def _env_url(name: str, default: str, env: dict[str, str] | None) -> str:
    environ = os.environ if env is None else env
    return environ.get(name, "").strip() or default


@dataclass(frozen=True, slots=True, repr=False)
class Provider:
    """Where to send a chat request: a dialect, a base URL, a key, a default model.

    The base URL follows each official SDK: for the OpenAI dialects it
    includes the API version (``https://api.openai.com/v1``; an
    OpenAI-compatible server's ``http://localhost:8000/v1``); for Anthropic,
    Gemini and Ollama it is the server root (``https://api.anthropic.com``),
    and the dialect adds ``/v1``, ``/v1beta`` or nothing. ``headers`` are sent
    with every request. ``compat`` marks an OpenAI-compatible server (the
    token limit goes as ``max_tokens``).

    Build one with a constructor, which reads the key (and a base URL
    override) from the environment: :meth:`openai`, :meth:`openai_compatible`,
    :meth:`openai_responses`, :meth:`anthropic`, :meth:`gemini`,
    :meth:`ollama`. The key never appears in its ``repr``:

    >>> Provider.anthropic(api_key="sk-ant-api03-XYZ", model="claude-sonnet-4-5")
    Provider(name='anthropic', dialect='anthropic', base_url='https://api.anthropic.com', \
model='claude-sonnet-4-5', api_key=<redacted>)
    """

    dialect: str
    base_url: str
    api_key: Secret | None = None
    model: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    name: str = ""
    compat: bool = False

    def __post_init__(self) -> None:
        if self.dialect not in ADAPTERS:
            raise LocalProtocolError(
                f"unknown dialect {self.dialect!r}; use one of {', '.join(sorted(ADAPTERS))}",
                kind="unknown_dialect",
            )
        key: object = self.api_key
        if isinstance(key, str):  # a convenience the type does not advertise
            object.__setattr__(self, "api_key", Secret(key))
        headers = tuple((str(name), str(value)) for name, value in self.headers)
        object.__setattr__(self, "headers", headers)
        if not self.name:
            object.__setattr__(self, "name", self.dialect)
        self.endpoint()  # validates the URL now rather than at the first request

    def endpoint(self) -> tuple[Origin, str]:
        """The origin to connect to and the path prefix of every request target.

        >>> Provider.openai_compatible("http://127.0.0.1:8000/v1", model="m").endpoint()
        (Origin(scheme='http', host='127.0.0.1', port=8000), '/v1')
        """
        from streamcore.adapters.http import parse_origin

        try:
            parts = urllib.parse.urlsplit(self.base_url)
        except ValueError as exc:
            raise LocalProtocolError(
                f"base_url {redact(self.base_url)!r} is not a URL ({exc})", kind="bad_base_url"
            ) from None
        if parts.query or parts.fragment:
            raise LocalProtocolError(
                f"base_url {redact(self.base_url)!r} has a query or fragment; give "
                "scheme://host[:port][/path] (keys go in api_key, not the URL)",
                kind="bad_base_url",
            )
        origin = parse_origin(f"{parts.scheme}://{parts.netloc}")
        return origin, parts.path.rstrip("/")

    def __repr__(self) -> str:
        parts = [
            f"name={self.name!r}",
            f"dialect={self.dialect!r}",
            f"base_url={redact(self.base_url)!r}",
            f"model={self.model!r}",
            f"api_key={'<redacted>' if self.api_key is not None else None}",
        ]
        if self.headers:
            parts.append(f"headers={redact_headers(self.headers)!r}")
        if self.compat:
            parts.append("compat=True")
        return f"Provider({', '.join(parts)})"

    __str__ = __repr__

    # --- constructors

    @classmethod
    def openai(
        cls,
        model: str = "gpt-4.1-mini",
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        env: dict[str, str] | None = None,
    ) -> Provider:
        """OpenAI Chat Completions: key from ``OPENAI_API_KEY``, URL from ``OPENAI_BASE_URL``
        (default ``https://api.openai.com/v1``). ``env`` replaces ``os.environ`` (tests)."""
        return cls(
            "openai-chat",
            base_url or _env_url("OPENAI_BASE_URL", "https://api.openai.com/v1", env),
            _key(api_key, "openai", env, required=True),
            model,
            headers,
            "openai",
        )

    @classmethod
    def openai_compatible(
        cls,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | Secret | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        name: str = "openai-compatible",
    ) -> Provider:
        """An OpenAI-compatible server (vLLM, llama.cpp, LM Studio, Groq, OpenRouter...).

        ``base_url`` includes the version path (``http://localhost:8000/v1``);
        the key is optional and never read from the environment (it would send
        your OpenAI key to someone else's server).
        """
        return cls(
            "openai-chat",
            base_url,
            _key(api_key, "openai", {}, required=False),
            model,
            headers,
            name,
            compat=True,
        )

    @classmethod
    def openai_responses(
        cls,
        model: str = "gpt-5-mini",
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        env: dict[str, str] | None = None,
    ) -> Provider:
        """The OpenAI Responses API: same key and URL variables as :meth:`openai`."""
        return cls(
            "openai-responses",
            base_url or _env_url("OPENAI_BASE_URL", "https://api.openai.com/v1", env),
            _key(api_key, "openai", env, required=True),
            model,
            headers,
            "openai-responses",
        )

    @classmethod
    def anthropic(
        cls,
        model: str = "claude-sonnet-4-5",
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        env: dict[str, str] | None = None,
    ) -> Provider:
        """Anthropic Messages: key from ``ANTHROPIC_API_KEY``, URL from ``ANTHROPIC_BASE_URL``
        (default ``https://api.anthropic.com``)."""
        return cls(
            "anthropic",
            base_url or _env_url("ANTHROPIC_BASE_URL", "https://api.anthropic.com", env),
            _key(api_key, "anthropic", env, required=True),
            model,
            headers,
            "anthropic",
        )

    @classmethod
    def gemini(
        cls,
        model: str = "gemini-2.5-flash",
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        env: dict[str, str] | None = None,
    ) -> Provider:
        """Gemini: key from ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` (the former wins, as in
        Google's SDK), default URL ``https://generativelanguage.googleapis.com``."""
        return cls(
            "gemini",
            base_url or "https://generativelanguage.googleapis.com",
            _key(api_key, "gemini", env, required=True),
            model,
            headers,
            "gemini",
        )

    @classmethod
    def ollama(
        cls,
        model: str = "llama3.2",
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        env: dict[str, str] | None = None,
    ) -> Provider:
        """Ollama: URL from ``OLLAMA_HOST`` (default ``http://localhost:11434``; a bare
        ``host[:port]`` is read as Ollama does); key, for ollama.com only, from ``OLLAMA_API_KEY``.
        """
        url = base_url or _env_url("OLLAMA_HOST", "http://localhost:11434", env)
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "http" and parts.port is None and parts.hostname:
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc + ":11434"))
        return cls(
            "ollama", url, _key(api_key, "ollama", env, required=False), model, headers, "ollama"
        )


# --------------------------------------------------------------------------- adapters


class Adapter:
    """How one provider API is spoken: its request, its decoder, how it resumes.

    Subclasses set the class attributes and implement :meth:`build`; the
    generic driver (:class:`Stream`) does the rest.
    """

    dialect: ClassVar[str]
    """The name of the decoder in :data:`streamcore.providers.DIALECTS`."""
    resume_dialect: ClassVar[str]
    """The API's name for :func:`streamcore.recovery.plan_resume`."""
    default_base_path: ClassVar[str]
    """Appended to the base URL's path (empty when the base URL carries the version)."""
    event_stream: ClassVar[bool] = True
    """Whether the body is SSE (``text/event-stream``)."""

    def base_path(self, url_path: str) -> str:
        """The path prefix of request targets, given the base URL's path."""
        return url_path + self.default_base_path

    def build(
        self, request: ChatRequest, provider: Provider, api_key: str | None, base_path: str
    ) -> HTTPRequest:
        """The HTTP request for ``request`` (without the provider's extra headers)."""
        raise NotImplementedError

    def decoder(self) -> DialectDecoder:
        """A fresh decoder for one response body."""
        return decoder_for(self.dialect)

    def prepare(
        self,
        plan: AttemptPlan,
        provider: Provider,
        base_path: str,
        previous: DialectDecoder | None,
    ) -> tuple[HTTPRequest, DialectDecoder]:
        """The HTTP request and decoder of attempt ``plan``."""
        api_key = provider.api_key.reveal() if provider.api_key is not None else None
        if plan.replay is not None:
            raise LocalProtocolError(
                f"the {self.dialect} dialect cannot replay a stream", kind="replay_unsupported"
            )
        request = self.build(plan.request, provider, api_key, base_path)
        if provider.headers:
            request = replace(request, headers=request.headers + provider.headers)
        return request, self.decoder()

    def resume_point(self, decoder: DialectDecoder, request: ChatRequest) -> tuple[str, int] | None:
        """Where a stored stream can be replayed from, if this API can (Responses only)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OpenAIChatAdapter(Adapter):
    """OpenAI Chat Completions, and every OpenAI-compatible server (``Provider.compat``)."""

    dialect = "openai-chat"
    resume_dialect = "openai"
    default_base_path = ""

    def build(
        self, request: ChatRequest, provider: Provider, api_key: str | None, base_path: str
    ) -> HTTPRequest:
        return openai_chat_dialect.build_request(
            request, api_key=api_key, base_path=base_path, compat=provider.compat
        )


class OpenAIResponsesAdapter(Adapter):
    """The OpenAI Responses API. A *background* response (``extra={"background": True}``)
    is resumed by replaying its stored stream after the last ``sequence_number``."""

    dialect = "openai-responses"
    resume_dialect = "responses"
    default_base_path = ""

    def build(
        self, request: ChatRequest, provider: Provider, api_key: str | None, base_path: str
    ) -> HTTPRequest:
        return openai_responses_dialect.build_request(request, api_key=api_key, base_path=base_path)

    def prepare(
        self,
        plan: AttemptPlan,
        provider: Provider,
        base_path: str,
        previous: DialectDecoder | None,
    ) -> tuple[HTTPRequest, DialectDecoder]:
        replay = plan.replay
        if replay is None:
            return super().prepare(plan, provider, base_path, previous)
        if not isinstance(previous, openai_responses_dialect.OpenAIResponsesDecoder):
            raise LocalProtocolError(
                "a replay needs the decoder of the attempt it continues", kind="no_resume_point"
            )
        api_key = provider.api_key.reveal() if provider.api_key is not None else None
        request = openai_responses_dialect.build_resume_request(
            replay.response_id, replay.after, api_key=api_key, base_path=base_path
        )
        if provider.headers:
            request = replace(request, headers=request.headers + provider.headers)
        return request, previous.resumed()

    def resume_point(self, decoder: DialectDecoder, request: ChatRequest) -> tuple[str, int] | None:
        if request.extra.get("background") is not True:
            return None  # only a background response outlives its connection
        if not isinstance(decoder, openai_responses_dialect.OpenAIResponsesDecoder):
            return None
        response_id, after = decoder.response_id, decoder.last_sequence_number
        if decoder.complete or response_id is None or after is None:
            return None
        return response_id, after


class AnthropicAdapter(Adapter):
    """Anthropic Messages; a cut-off answer resumes as a prefill where the model allows it."""

    dialect = "anthropic"
    resume_dialect = "anthropic"
    default_base_path = anthropic_dialect.DEFAULT_BASE_PATH

    def build(
        self, request: ChatRequest, provider: Provider, api_key: str | None, base_path: str
    ) -> HTTPRequest:
        return anthropic_dialect.build_request(request, api_key=api_key, base_path=base_path)


class GeminiAdapter(Adapter):
    """Gemini ``streamGenerateContent`` with SSE framing (``alt=sse``)."""

    dialect = "gemini"
    resume_dialect = "gemini"
    default_base_path = gemini_dialect.DEFAULT_BASE_PATH

    def build(
        self, request: ChatRequest, provider: Provider, api_key: str | None, base_path: str
    ) -> HTTPRequest:
        return gemini_dialect.build_request(request, api_key=api_key, base_path=base_path)


class OllamaAdapter(Adapter):
    """Ollama's ``/api/chat`` (NDJSON; no keep-alives, so give it a generous idle deadline)."""

    dialect = "ollama"
    resume_dialect = "ollama"
    default_base_path = ollama_dialect.DEFAULT_BASE_PATH
    event_stream = False

    def build(
        self, request: ChatRequest, provider: Provider, api_key: str | None, base_path: str
    ) -> HTTPRequest:
        return ollama_dialect.build_request(request, api_key=api_key, base_path=base_path)


ADAPTERS: dict[str, Adapter] = {
    "openai-chat": OpenAIChatAdapter(),
    "openai-responses": OpenAIResponsesAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "ollama": OllamaAdapter(),
}
"""The adapter of each dialect a :class:`Provider` can name."""


# --------------------------------------------------------------------------- the driver


class Transport(Protocol):
    """What the driver needs from an HTTP client: :class:`~streamcore.adapters.http.HTTPClient`
    is one. ``stream`` raises the typed errors of :mod:`streamcore.adapters.errors`, and
    an :class:`~streamcore.adapters.errors.HTTPStatusError` for a non-2xx status."""

    def stream(
        self, url: Origin, request: HTTPRequest
    ) -> AbstractAsyncContextManager[Response]: ...


class _Phase(enum.Enum):
    """Where a :class:`Stream` is."""

    READY = "ready"
    """Opened; no attempt started yet."""
    CONNECTING = "connecting"
    """An attempt is connecting and waiting for the response head."""
    RECEIVING = "receiving"
    """An attempt is reading its body."""
    BETWEEN = "between"
    """An attempt ended and another one follows (after its delay)."""
    FINISHED = "finished"
    """The answer is over; :meth:`Stream.result` is ready."""
    CLOSED = "closed"
    """The ``async with`` block ended."""


_P = _Phase
_PHASES: dict[_Phase, frozenset[_Phase]] = {
    _P.READY: frozenset({_P.CONNECTING, _P.FINISHED, _P.CLOSED}),
    _P.CONNECTING: frozenset({_P.RECEIVING, _P.BETWEEN, _P.FINISHED}),
    _P.RECEIVING: frozenset({_P.BETWEEN, _P.FINISHED}),
    _P.BETWEEN: frozenset({_P.CONNECTING, _P.FINISHED}),
    _P.FINISHED: frozenset({_P.CLOSED}),
    _P.CLOSED: frozenset(),
}
"""The legal moves of a :class:`Stream`: ``_PHASES[phase]`` holds the phases it may go to."""

# States in which the response is still open and healthy: what is left of the
# body is read (boundedly) so the connection can go back to the pool.
_DRAIN_STATES = frozenset({State.COMPLETED, State.LENGTH_LIMIT, State.PROVIDER_ERROR})
_DRAIN_BYTES = 64 * 1024
_DRAIN_SECONDS = 1.0

# Events after which a choice-0 continuation has no more text to stitch.
_ENDS_TEXT = (Finish, ProviderError, StreamEnd)


def _why(exc: BaseException) -> str:
    # Read after "cancelled: " (the machine's outcome reason, and _abort's between attempts).
    if isinstance(exc, trio.Cancelled):
        return "the caller cancelled the stream"
    if isinstance(exc, KeyboardInterrupt):
        return "the user pressed Ctrl-C"
    return f"{type(exc).__name__} was raised in the caller's code"


class Stream:
    """One streamed answer, across every attempt recovery makes. Get it from :func:`open_stream`.

    ``async for event in stream`` yields :data:`~streamcore.adapters.recover.StreamEvent`:
    the provider's :mod:`streamcore.events` (text deltas of a continuation
    already stitched) and the recovery events (:class:`~streamcore.adapters.recover.Retrying`,
    :class:`~streamcore.adapters.recover.Resuming`, :class:`~streamcore.adapters.recover.Stitched`,
    :class:`~streamcore.adapters.recover.Interrupted`). It never raises for what the
    provider or the network did -- that is the result's ``state`` and
    ``interruption`` -- only for misuse (:class:`~streamcore.LocalProtocolError`)
    and for cancellation, which closes the connection first.

    :meth:`result` is ready once the iteration ended; :meth:`text` iterates
    the answer's text only; :meth:`final` reads everything and returns the result.
    """

    def __init__(
        self,
        provider: Provider,
        request: ChatRequest,
        *,
        transport: Transport,
        policy: RecoveryPolicy,
        budget: TokenBudget | None,
        tokenizer: Tokenizer | None,
        rng: random.Random | None,
    ) -> None:
        adapter = ADAPTERS[provider.dialect]
        self._adapter = adapter
        self._provider = provider
        self._origin, url_path = provider.endpoint()
        self._base_path = adapter.base_path(url_path)
        self._transport = transport
        self._deadlines = Deadlines(
            connect=policy.connect_timeout,
            first_token=policy.first_token_timeout,
            idle=policy.idle_timeout,
            total=policy.total_timeout,
        )
        self._budget = budget
        self._tokenizer = tokenizer
        self._executor = RecoveryExecutor(request, adapter.resume_dialect, policy, rng=rng)
        # Built now, so a request the dialect refuses raises at open_stream().
        self._next: tuple[HTTPRequest, DialectDecoder] | None = adapter.prepare(
            self._executor.plan, provider, self._base_path, None
        )
        self._pending: deque[StreamEvent] = deque()
        self._phase = _Phase.READY
        self._opened_at = trio.current_time()
        self._finished_at: float | None = None
        self._first_token_at: float | None = None
        self._spent = 0  # output tokens of finished attempts, for the budget
        self._result: StreamResult | None = None
        # The attempt in flight.
        self._machine: StreamMachine | None = None
        self._decoder: DialectDecoder | None = None
        self._counter: TokenCounter | None = None
        self._exit: AsyncExitStack | None = None
        self._body: AsyncIterator[bytes] | None = None
        self._attempt_open = False

    def __repr__(self) -> str:
        plan = self._executor.plan
        return (
            f"<Stream {self._provider.name} ({self._provider.dialect}) "
            f"attempt {plan.number} {self._phase.value}>"
        )

    # --- what the caller uses

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._phase is _Phase.CLOSED:
            raise LocalProtocolError(
                "the stream was read after its `async with` block ended; read it inside the block",
                kind="stream_closed",
            )
        pending = self._pending
        while not pending:
            phase = self._phase
            if phase is _Phase.FINISHED:
                raise StopAsyncIteration
            try:
                if phase is _Phase.RECEIVING:
                    await self._receive()
                else:
                    await self._start_attempt()
            except BaseException as exc:  # Cancelled, KeyboardInterrupt, a bug: close first
                await self._abort(_why(exc))
                raise
        return pending.popleft()

    def text(self) -> AsyncIterator[str]:
        """The answer's text as it arrives (choice 0), every other event skipped.

        Under a policy that restarts after text arrived (:data:`BACKGROUND`) a
        restart shows text twice; iterate the events to see
        :class:`~streamcore.adapters.recover.Retrying` instead.
        """
        return _TextIterator(self)

    async def final(self) -> StreamResult:
        """Read the stream to its end and return :meth:`result`."""
        async for _ in self:
            pass
        return self.result()

    def result(self) -> StreamResult:
        """The answer and how it ended; raises ``LocalProtocolError(kind="not_finished")``
        while the stream is still running."""
        if self._result is None:
            if self._phase is not _Phase.FINISHED and self._phase is not _Phase.CLOSED:
                raise LocalProtocolError(
                    f"the stream is still {self._phase.value}: read it to its end "
                    "(or await stream.final()) before asking for the result",
                    kind="not_finished",
                )
            end = self._finished_at if self._finished_at is not None else trio.current_time()
            ttft = None if self._first_token_at is None else self._first_token_at - self._opened_at
            self._result = self._executor.result(
                time_to_first_token=ttft, total_time=end - self._opened_at
            )
        return self._result

    async def aclose(self) -> None:
        """Close the stream: an attempt still running is cancelled and its connection closed."""
        if self._phase is _Phase.CLOSED:
            return
        if self._phase is not _Phase.FINISHED:
            await self._abort("the stream was closed before its end")
        self._pending.clear()
        self._move(_Phase.CLOSED)

    # --- phases

    def _move(self, phase: _Phase) -> None:
        if phase not in _PHASES[self._phase]:
            raise LocalProtocolError(
                f"a stream cannot go from {self._phase.value} to {phase.value}",
                kind="illegal_transition",
            )
        self._phase = phase
        if phase is _Phase.FINISHED:
            self._finished_at = trio.current_time()

    # --- one attempt

    async def _start_attempt(self) -> None:
        executor = self._executor
        plan = executor.plan
        if plan.delay > 0:
            await trio.sleep(plan.delay)
        if self._next is not None:
            http_request, decoder = self._next
            self._next = None
        else:
            http_request, decoder = self._adapter.prepare(
                plan, self._provider, self._base_path, self._decoder
            )
        now = trio.current_time()
        machine = self._machine = StreamMachine(now, self._deadlines)
        self._decoder = decoder
        self._counter = TokenCounter(self._tokenizer) if self._tokenizer is not None else None
        self._attempt_open = True
        self._move(_Phase.CONNECTING)
        exit_stack = self._exit = AsyncExitStack()
        response: Response | None = None
        deadline = machine.next_deadline()
        try:
            with trio.move_on_at(math.inf if deadline is None else deadline):
                response = await exit_stack.enter_async_context(
                    self._transport.stream(self._origin, http_request)
                )
        except HTTPStatusError as exc:
            machine.http_error(
                exc.status, trio.current_time(), error=exc.error, retry_after=exc.retry_after
            )
        except TransportError as exc:
            machine.transport_failed(exc, trio.current_time())
        except RemoteProtocolError as exc:  # the HTTP client's ResponseError
            machine.protocol_error(exc, trio.current_time())
        now = trio.current_time()
        if response is None:
            if not machine.terminal and not machine.check_deadlines(now):
                machine.transport_failed(TimeoutError("connect deadline"), now)
            await self._end_attempt()
            return
        machine.response_started(response.status, now)
        if self._adapter.event_stream:
            content_type = (response.header("content-type") or "").strip().lower()
            if content_type.startswith("application/json"):
                machine.protocol_error(
                    RemoteProtocolError(
                        f"{response.where} answered {content_type!r}, not an event stream; "
                        "does the server support streaming for this request?",
                        kind="not_an_event_stream",
                    ),
                    now,
                )
                await self._end_attempt()
                return
        self._body = response.aiter_bytes()
        self._move(_Phase.RECEIVING)

    async def _receive(self) -> None:
        machine = self._machine
        body = self._body
        assert machine is not None and body is not None
        deadline = machine.next_deadline()
        chunk: bytes | None = None
        try:
            with trio.move_on_at(math.inf if deadline is None else deadline):
                chunk = await body.__anext__()
        except StopAsyncIteration:
            self._body = None
            self._body_ended()
            await self._end_attempt()
            return
        except TransportError as exc:
            self._body = None
            machine.transport_failed(exc, trio.current_time())
        except RemoteProtocolError as exc:  # broken HTTP framing, body too large
            self._body = None
            machine.protocol_error(exc, trio.current_time())
        now = trio.current_time()
        if chunk is not None:
            decoder = self._decoder
            assert decoder is not None
            try:
                events = decoder.feed(chunk)
            except RemoteProtocolError as exc:
                machine.protocol_error(exc, now)
            else:
                if events:
                    self._dispatch(events, now)
        elif not machine.terminal and not machine.check_deadlines(now):
            return  # woken without a chunk or a deadline: read again
        if machine.terminal:
            await self._end_attempt()

    def _body_ended(self) -> None:
        machine = self._machine
        decoder = self._decoder
        assert machine is not None and decoder is not None
        now = trio.current_time()
        if not machine.terminal:
            try:
                events = decoder.end()
            except RemoteProtocolError as exc:
                machine.protocol_error(exc, now)
                return
            if events:
                self._dispatch(events, now)
        machine.body_ended(now)

    def _dispatch(self, events: list[Event], now: float) -> None:
        """Hand decoded events to the machine, count output, stitch, queue them for the caller."""
        machine = self._machine
        assert machine is not None
        pending = self._pending
        counter = self._counter
        executor = self._executor
        stitching = executor.stitching
        for event in events:
            if (
                stitching
                and isinstance(event, _ENDS_TEXT)
                and (not isinstance(event, Finish) or event.choice == 0)
            ):
                self._flush_stitcher()
                stitching = False
            machine.receive(event, now)
            if machine.state is State.PROTOCOL_ERROR:
                break  # refused (the message grew past max_chars): not shown either
            counted = None
            if type(event) is TextDelta:
                counted = event.text
                if stitching and event.choice == 0:
                    shown, seam = executor.stitch(counted)
                    if seam is not None:
                        pending.append(seam)
                    if shown:
                        pending.append(TextDelta(shown))
                else:
                    pending.append(event)
            else:
                if type(event) is ReasoningDelta or type(event) is Refusal:
                    counted = event.text
                elif type(event) is ToolCallDelta:
                    counted = event.arguments
                pending.append(event)
            if machine.terminal:
                break
            if counted and counter is not None:
                count = counter.add(counted)
                budget = self._budget
                if budget is not None and budget.exceeded(self._spent + count):
                    machine.set_output_tokens(count)
                    machine.budget_exceeded(now)
                    break

    def _flush_stitcher(self) -> None:
        shown, seam = self._executor.flush()
        if seam is not None:
            self._pending.append(seam)
        if shown:
            self._pending.append(TextDelta(shown))

    async def _end_attempt(self, *, drain: bool = True) -> None:
        """Close the attempt's response, record its outcome, queue what recovery says."""
        machine = self._machine
        assert machine is not None
        executor = self._executor
        if executor.stitching:
            self._flush_stitcher()
        if drain and self._body is not None and machine.state in _DRAIN_STATES:
            await self._drain()
        await self._close_response()
        counter = self._counter
        estimated = counter.count if counter is not None else None
        if estimated is not None:
            self._spent += estimated
            usage = machine.message().usage
            if usage is None or usage.output_tokens is None:
                machine.set_output_tokens(estimated)
        outcome = machine.outcome
        if self._first_token_at is None:
            self._first_token_at = outcome.timings.first_token
        decoder = self._decoder
        assert decoder is not None
        resume_point = self._adapter.resume_point(decoder, executor.plan.request)
        self._attempt_open = False
        event = executor.finish_attempt(
            outcome, estimated_output_tokens=estimated, resume_point=resume_point
        )
        if event is not None:
            self._pending.append(event)
        self._move(_Phase.FINISHED if executor.done else _Phase.BETWEEN)

    async def _drain(self) -> None:
        """Read what is left of a finished body (bounded), so the connection can be reused."""
        body = self._body
        assert body is not None
        received = 0
        with trio.move_on_after(_DRAIN_SECONDS):
            try:
                async for chunk in body:
                    received += len(chunk)
                    if received > _DRAIN_BYTES:
                        return  # not worth it: the connection is closed instead
            except (TransportError, RemoteProtocolError):
                return

    async def _close_response(self) -> None:
        exit_stack, self._exit, self._body = self._exit, None, None
        if exit_stack is not None:
            # Closing is synchronous underneath (the socket is aborted or pooled);
            # shielded so that a pending cancellation cannot skip it.
            with trio.CancelScope(shield=True):
                await exit_stack.aclose()

    async def _abort(self, reason: str) -> None:
        """Stop wherever the stream is: close the connection, record the cancel, finish."""
        with trio.CancelScope(shield=True):
            machine = self._machine
            if self._attempt_open and machine is not None:
                if not machine.terminal:
                    machine.cancel(trio.current_time(), reason)
                await self._end_attempt(drain=False)
            await self._close_response()
            if self._phase is not _Phase.FINISHED and self._phase is not _Phase.CLOSED:
                # Worded as the machine words a cancel mid-attempt, so the reason
                # does not depend on when the cancel came.
                self._executor.cancel(f"cancelled: {reason}")
                self._move(_Phase.FINISHED)


class _TextIterator:
    __slots__ = ("_stream",)

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def __aiter__(self) -> _TextIterator:
        return self

    async def __anext__(self) -> str:
        stream = self._stream
        while True:
            event = await stream.__anext__()
            if type(event) is TextDelta and event.choice == 0:
                return event.text


def _chat_request(provider: Provider, request: ChatRequest | str) -> ChatRequest:
    if isinstance(request, str):
        request = ChatRequest(provider.model or "", (Message("user", request),))
    elif not request.model and provider.model:
        request = replace(request, model=provider.model)
    if not request.model:
        raise LocalProtocolError(
            f"no model: set ChatRequest.model or the provider's default model ({provider!r})",
            kind="no_model",
        )
    return request


@asynccontextmanager
async def open_stream(
    provider: Provider,
    request: ChatRequest | str,
    *,
    policy: RecoveryPolicy = USER_FACING,
    http: Transport | None = None,
    budget: TokenBudget | int | None = None,
    count_tokens: bool = True,
    rng: random.Random | None = None,
) -> AsyncIterator[Stream]:
    """Stream one answer from ``provider``, recovering as ``policy`` says.

    ``request`` is a :class:`~streamcore.request.ChatRequest` (an empty
    ``model`` takes the provider's) or just the user's prompt. ``http`` is the
    connection pool to use (an :class:`~streamcore.adapters.http.HTTPClient`;
    by default one is opened for this stream and closed after it). ``budget``
    caps the output tokens generated over all attempts (the stream stops in
    ``BUDGET_EXCEEDED`` with the partial answer). ``count_tokens`` counts the
    output as it streams (with the model's tiktoken encoding, or an estimate),
    for the ledger when a provider reports no usage; a budget needs it.
    ``rng`` draws the backoff jitter.

    A request the dialect cannot express raises
    :class:`~streamcore.LocalProtocolError` here, before any I/O. Leaving the
    block -- normally, by ``break``, an exception or a cancellation -- closes
    the connection if the answer is still streaming::

        provider = Provider.anthropic()
        async with open_stream(provider, "Explain SSE in one paragraph.") as stream:
            async for text in stream.text():
                print(text, end="", flush=True)
        result = stream.result()
        if result.interruption is not None:
            print("\\n" + result.interruption.marker)
    """
    chat = _chat_request(provider, request)
    if isinstance(budget, int):
        budget = TokenBudget(budget)
    tokenizer: Tokenizer | None = None
    if count_tokens or budget is not None:
        tokenizer = load_encoding(chat.model)[0]
    async with AsyncExitStack() as resources:
        if http is None:
            connect = max(DEFAULT_CONNECT_TIMEOUT, 2 * (policy.connect_timeout or 0.0))
            http = await resources.enter_async_context(HTTPClient(connect_timeout=connect))
        stream = Stream(
            provider,
            chat,
            transport=http,
            policy=policy,
            budget=budget,
            tokenizer=tokenizer,
            rng=rng,
        )
        try:
            yield stream
        except BaseException as exc:
            await stream._abort(_why(exc))
            raise
        finally:
            await stream.aclose()


class Client:
    """A provider, a connection pool and a recovery policy, for many streams.

    Sequential and concurrent streams share the pool's keep-alive connections::

        async with Client(Provider.openai()) as client:
            for prompt in prompts:
                async with client.stream(prompt) as stream:
                    result = await stream.final()
    """

    def __init__(
        self,
        provider: Provider,
        *,
        policy: RecoveryPolicy = USER_FACING,
        http: HTTPClient | None = None,
        count_tokens: bool = True,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self._own_http = http is None
        self.http = http if http is not None else HTTPClient()
        self._count_tokens = count_tokens

    def __repr__(self) -> str:
        return f"Client({self.provider!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool's idle connections (if the client opened the pool)."""
        if self._own_http:
            await self.http.aclose()

    def stream(
        self,
        request: ChatRequest | str,
        *,
        policy: RecoveryPolicy | None = None,
        budget: TokenBudget | int | None = None,
        rng: random.Random | None = None,
    ) -> AbstractAsyncContextManager[Stream]:
        """:func:`open_stream` with this client's provider, pool and policy."""
        return open_stream(
            self.provider,
            request,
            policy=self.policy if policy is None else policy,
            http=self.http,
            budget=budget,
            count_tokens=self._count_tokens,
            rng=rng,
        )
