"""The stream machine: one attempt at one streamed answer, from connect to its one ending.

Theory of operation
-------------------
Rule 1 (after h11's ``_state.py``): everything that decides how an attempt is
going, and how it ended, lives here. The driver (the trio adapter, a test, your
own loop) only reports what happened -- response headers arrived, an event was
decoded, the body ended, a deadline passed -- each as a method call carrying the
time ``now`` read from the driver's own monotonic clock. The machine reads no
clock and does no I/O.

States and inputs are enums; :data:`TRANSITIONS` is the whole behaviour as a
table (state x input -> next state). An input missing from a state's row raises
:class:`~streamcore.LocalProtocolError` (``kind="illegal_transition"``) and
changes nothing. The live states are::

    CONNECTING --response headers--> WAITING_FIRST_TOKEN --first token--> STREAMING

and every attempt ends in exactly one terminal state (:data:`TERMINAL_STATES`).
Once terminal, the machine never moves again. The reports that race with the
end of an attempt -- a keep-alive or the terminal marker still in the buffer,
the body closing, a cancel, a late protocol error, the driver's budget check --
are absorbed as no-ops (the first ending stands). Anything that carries content
after the end, or a second response, raises: feeding it would silently lose it.

What counts as a *token* (for the first-token deadline, time to first token and
inter-token gaps): an event that carries model output -- a non-empty
:class:`~streamcore.events.TextDelta`, :class:`~streamcore.events.ReasoningDelta`
text or :class:`~streamcore.events.Refusal`, a
:class:`~streamcore.events.ToolCallStart`, or a non-empty
:class:`~streamcore.events.ToolCallDelta`. Empty deltas (OpenAI's first chunk
``{"role": "assistant", "content": ""}``), reasoning signatures, usage, finish
reasons and stream metadata are events but not tokens. Every event, keep-alives
included, resets the idle deadline; bytes that complete no event do not.

The machine owns an :class:`~streamcore.accumulate.Accumulator` and feeds it
every event it accepts, so whatever the ending, :attr:`StreamMachine.outcome`
holds everything received until then. Deadlines are configuration
(:class:`Deadlines`); :meth:`StreamMachine.next_deadline` says when the driver
must next call :meth:`StreamMachine.check_deadlines`, so it can serve as a
cancel-scope deadline. Inputs do not check deadlines themselves: an event that
arrives is accepted; only ``check_deadlines`` times an attempt out.
"""

from __future__ import annotations

import enum
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.accumulate import DEFAULT_MAX_CHARS, Accumulator, FinalMessage
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
    KeepAlive,
    ProviderError,
    RawEvent,
    ReasoningDelta,
    Refusal,
    StreamEnd,
    StreamStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Deadlines",
    "Input",
    "Outcome",
    "State",
    "StreamMachine",
    "Timings",
    "TokenSource",
    "retryable_status",
    "transient_error_type",
]


class State(enum.Enum):
    """Where an attempt is. The first three are live; every other one is terminal."""

    CONNECTING = "connecting"
    """Connecting and sending the request; no response headers yet."""
    WAITING_FIRST_TOKEN = "waiting_first_token"
    """Response headers (2xx) arrived; no token yet."""
    STREAMING = "streaming"
    """At least one token arrived."""

    COMPLETED = "completed"
    """The provider's terminal marker arrived; the answer is whole."""
    LENGTH_LIMIT = "length_limit"
    """Complete, but a choice stopped at the provider's max-tokens limit."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """Stopped by the caller's own token budget."""
    PROVIDER_ERROR = "provider_error"
    """The provider reported an error mid-stream."""
    INTERRUPTED = "interrupted"
    """The body ended (or the connection broke) before the terminal marker."""
    HTTP_ERROR = "http_error"
    """The response had an error status; there was no stream."""
    CONNECT_FAILED = "connect_failed"
    """The connection failed before any response (DNS, refused, TLS, reset)."""
    PROTOCOL_ERROR = "protocol_error"
    """The bytes broke the protocol (bad JSON, impossible event order, bad HTTP)."""
    TIMED_OUT_CONNECT = "timed_out_connect"
    TIMED_OUT_FIRST_TOKEN = "timed_out_first_token"
    TIMED_OUT_IDLE = "timed_out_idle"
    TIMED_OUT_TOTAL = "timed_out_total"
    CANCELLED = "cancelled"
    """Cancelled by the caller."""


class Input(enum.Enum):
    """What the driver can report; each :class:`StreamMachine` method maps to one of these."""

    RESPONSE_STARTED = "response_started"
    HTTP_ERROR = "http_error"
    TOKEN = "token"
    """An event carrying model output (see the module docstring)."""
    EVENT = "event"
    """Any other event with data: stream metadata, usage, finish, tool-call end, raw."""
    KEEPALIVE = "keepalive"
    PROVIDER_ERROR = "provider_error"
    STREAM_END = "stream_end"
    STREAM_END_AFTER_LENGTH = "stream_end_after_length"
    """The terminal marker, after some choice finished for length."""
    BODY_ENDED = "body_ended"
    TRANSPORT_FAILED = "transport_failed"
    PROTOCOL_ERROR = "protocol_error"
    BUDGET_EXCEEDED = "budget_exceeded"
    CANCEL = "cancel"
    CONNECT_DEADLINE = "connect_deadline"
    FIRST_TOKEN_DEADLINE = "first_token_deadline"
    IDLE_DEADLINE = "idle_deadline"
    TOTAL_DEADLINE = "total_deadline"


_S = State
_I = Input

TERMINAL_STATES = frozenset(State) - {
    _S.CONNECTING,
    _S.WAITING_FIRST_TOKEN,
    _S.STREAMING,
}
"""Every state an attempt can end in."""

# After the end, these are reports that raced with it; they change nothing.
_ABSORBED_AFTER_END = (
    _I.KEEPALIVE,
    _I.STREAM_END,
    _I.STREAM_END_AFTER_LENGTH,
    _I.BODY_ENDED,
    _I.TRANSPORT_FAILED,
    _I.PROTOCOL_ERROR,
    _I.BUDGET_EXCEEDED,
    _I.CANCEL,
)

TRANSITIONS: dict[State, dict[Input, State]] = {
    _S.CONNECTING: {
        _I.RESPONSE_STARTED: _S.WAITING_FIRST_TOKEN,
        _I.HTTP_ERROR: _S.HTTP_ERROR,
        _I.TRANSPORT_FAILED: _S.CONNECT_FAILED,
        _I.PROTOCOL_ERROR: _S.PROTOCOL_ERROR,
        _I.CANCEL: _S.CANCELLED,
        _I.CONNECT_DEADLINE: _S.TIMED_OUT_CONNECT,
        _I.TOTAL_DEADLINE: _S.TIMED_OUT_TOTAL,
    },
    _S.WAITING_FIRST_TOKEN: {
        _I.TOKEN: _S.STREAMING,
        _I.EVENT: _S.WAITING_FIRST_TOKEN,
        _I.KEEPALIVE: _S.WAITING_FIRST_TOKEN,
        _I.STREAM_END: _S.COMPLETED,
        _I.STREAM_END_AFTER_LENGTH: _S.LENGTH_LIMIT,
        _I.PROVIDER_ERROR: _S.PROVIDER_ERROR,
        _I.BODY_ENDED: _S.INTERRUPTED,
        _I.TRANSPORT_FAILED: _S.INTERRUPTED,
        _I.PROTOCOL_ERROR: _S.PROTOCOL_ERROR,
        _I.BUDGET_EXCEEDED: _S.BUDGET_EXCEEDED,
        _I.CANCEL: _S.CANCELLED,
        _I.FIRST_TOKEN_DEADLINE: _S.TIMED_OUT_FIRST_TOKEN,
        _I.IDLE_DEADLINE: _S.TIMED_OUT_IDLE,
        _I.TOTAL_DEADLINE: _S.TIMED_OUT_TOTAL,
    },
    _S.STREAMING: {
        _I.TOKEN: _S.STREAMING,
        _I.EVENT: _S.STREAMING,
        _I.KEEPALIVE: _S.STREAMING,
        _I.STREAM_END: _S.COMPLETED,
        _I.STREAM_END_AFTER_LENGTH: _S.LENGTH_LIMIT,
        _I.PROVIDER_ERROR: _S.PROVIDER_ERROR,
        _I.BODY_ENDED: _S.INTERRUPTED,
        _I.TRANSPORT_FAILED: _S.INTERRUPTED,
        _I.PROTOCOL_ERROR: _S.PROTOCOL_ERROR,
        _I.BUDGET_EXCEEDED: _S.BUDGET_EXCEEDED,
        _I.CANCEL: _S.CANCELLED,
        _I.IDLE_DEADLINE: _S.TIMED_OUT_IDLE,
        _I.TOTAL_DEADLINE: _S.TIMED_OUT_TOTAL,
    },
    **{end: dict.fromkeys(_ABSORBED_AFTER_END, end) for end in State if end in TERMINAL_STATES},
}
"""The legal moves: ``TRANSITIONS[state][input]`` is the next state."""

# The deadlines that run in each live state; on a tie the earlier one in the
# tuple wins (the phase's own deadline is more telling than the total one).
_DEADLINES_OF: dict[State, tuple[Input, ...]] = {
    _S.CONNECTING: (_I.CONNECT_DEADLINE, _I.TOTAL_DEADLINE),
    _S.WAITING_FIRST_TOKEN: (_I.FIRST_TOKEN_DEADLINE, _I.IDLE_DEADLINE, _I.TOTAL_DEADLINE),
    _S.STREAMING: (_I.IDLE_DEADLINE, _I.TOTAL_DEADLINE),
}

# Events whose input kind does not depend on their content.
_FIXED_INPUT: dict[type, Input] = {
    ToolCallStart: _I.TOKEN,
    KeepAlive: _I.KEEPALIVE,
    ProviderError: _I.PROVIDER_ERROR,
    StreamStarted: _I.EVENT,
    Usage: _I.EVENT,
    Finish: _I.EVENT,
    ToolCallEnd: _I.EVENT,
    RawEvent: _I.EVENT,
}

_ALWAYS_RETRYABLE = frozenset(
    {
        _S.INTERRUPTED,
        _S.CONNECT_FAILED,
        _S.PROTOCOL_ERROR,
        _S.TIMED_OUT_CONNECT,
        _S.TIMED_OUT_FIRST_TOKEN,
        _S.TIMED_OUT_IDLE,
        _S.TIMED_OUT_TOTAL,
    }
)

# Error types providers use for a transient failure: Anthropic (api_error 500,
# timeout_error 504, overloaded_error 529, rate_limit_error 429), OpenAI
# (server_error, rate_limit_exceeded), Gemini statuses (lower-cased), servers
# that just say "overloaded".
_TRANSIENT_ERROR_TYPES = frozenset(
    {
        "overloaded_error",
        "overloaded",
        "rate_limit_error",
        "rate_limit_exceeded",
        "api_error",
        "server_error",
        "internal_server_error",
        "internal_error",
        "internal",
        "timeout_error",
        "timeout",
        "service_unavailable",
        "unavailable",
        "resource_exhausted",
        "deadline_exceeded",
    }
)


def retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth retrying: 408, 409, 429 and 5xx (529 included).

    >>> [s for s in (400, 401, 404, 408, 409, 429, 500, 503, 529) if retryable_status(s)]
    [408, 409, 429, 500, 503, 529]
    """
    return status in (408, 409, 429) or 500 <= status <= 599


def transient_error_type(error_type: str) -> bool:
    """Whether a provider's error type names a transient failure (retry later).

    Unknown types count as not transient: retrying a request the provider
    rejected for a reason we cannot read would fail the same way.

    >>> transient_error_type("overloaded_error"), transient_error_type("invalid_request_error")
    (True, False)
    >>> transient_error_type("RESOURCE_EXHAUSTED"), transient_error_type("503")
    (True, True)
    """
    name = error_type.strip().lower()
    if name.isdigit():
        return retryable_status(int(name))
    return name in _TRANSIENT_ERROR_TYPES


def _check_seconds(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise LocalProtocolError(
            f"Deadlines.{name} must be a positive number of seconds or None, got {value!r}",
            kind="bad_deadline",
        )


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long each phase of an attempt may take, in seconds; ``None`` for no limit.

    * ``connect``: from the start to the response headers (connecting, TLS,
      sending the request, the server's status line);
    * ``first_token``: from the response headers to the first token;
    * ``idle``: between two events once the body started (keep-alives count);
    * ``total``: from the start to the end of the attempt.

    >>> Deadlines(connect=10, idle=30).first_token is None
    True
    >>> Deadlines(idle=0)
    Traceback (most recent call last):
    ...
    streamcore._errors.LocalProtocolError: Deadlines.idle must be a positive number ...
    """

    connect: float | None = None
    first_token: float | None = None
    idle: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        _check_seconds("connect", self.connect)
        _check_seconds("first_token", self.first_token)
        _check_seconds("idle", self.idle)
        _check_seconds("total", self.total)


class TokenSource(enum.Enum):
    """Where :attr:`Timings.tokens` came from, best first."""

    DRIVER = "driver"
    """The driver's own count (:meth:`StreamMachine.set_output_tokens`)."""
    USAGE = "usage"
    """The provider's reported ``output_tokens``."""
    EVENTS = "events"
    """The number of token events: a rough stand-in when nothing better is known."""


@dataclass(frozen=True, slots=True)
class Timings:
    """The timing marks of one attempt, in the driver's clock (seconds).

    Absolute marks (``started``, ``response_started``, ``first_token``,
    ``ended``) are clock readings; the durations are differences of them.
    ``time_to_first_token`` is from ``started``. Gap statistics are over the
    intervals between consecutive token events (tokens decoded from one chunk
    share a time, so their gap is 0); p50/p99 come from a bounded, evenly
    thinned sample. ``tokens_per_second`` is ``tokens`` over the time from the
    first token to the end (or to ``now`` for a live snapshot).
    """

    started: float
    response_started: float | None
    first_token: float | None
    ended: float | None
    time_to_first_byte: float | None
    time_to_first_token: float | None
    total: float | None
    token_events: int
    gap_count: int
    gap_mean: float | None
    gap_max: float | None
    gap_p50: float | None
    gap_p99: float | None
    tokens: int
    tokens_source: TokenSource
    tokens_per_second: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, and everything it received.

    ``retryable``: a new attempt may succeed (a drop, a timeout, a garbled
    stream, a transient provider error, HTTP 408/409/429/5xx). ``resumable``: a
    retry can continue from the partial answer (as a prefill) rather than start
    over -- the attempt is retryable or stopped at the length limit, and some
    answer text arrived. ``reason`` says what happened in words.
    """

    state: State
    message: FinalMessage
    retryable: bool
    resumable: bool
    reason: str
    error: ProviderError | Exception | None
    """The provider's error, or the exception the driver or a decoder reported."""
    status: int | None
    """The HTTP status, if the response headers arrived."""
    retry_after: float | None
    """Seconds to wait before retrying, when the server said (``Retry-After``)."""
    timings: Timings


class _Gaps:
    """Running statistics of inter-token gaps in bounded memory."""

    __slots__ = ("count", "max", "samples", "seen", "stride", "total")

    CAPACITY = 512  # even, so thinning by half keeps the stride regular

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        # array('d'): 8 bytes a sample where a list of floats holds 32 (a float object each).
        self.samples = array("d")
        self.seen = 0
        self.stride = 1

    def add(self, gap: float) -> None:
        self.count += 1
        self.total += gap
        if gap > self.max:
            self.max = gap
        # Keep every stride-th gap; when full, drop every other sample and
        # double the stride: an even sample of the whole stream, deterministic.
        if self.seen % self.stride == 0:
            self.samples.append(gap)
            if len(self.samples) > self.CAPACITY:
                del self.samples[1::2]
                self.stride *= 2
        self.seen += 1

    def percentile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _describe(exc: ProviderError | BaseException) -> str:
    if isinstance(exc, ProviderError):
        return f"{exc.type}: {exc.message}"
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StreamMachine:
    """The state of one streamed attempt, driven by reports from the driver.

    Every method takes ``now``, a reading of the driver's monotonic clock in
    seconds; readings must never go backwards. A method whose input the
    current state does not allow raises :class:`~streamcore.LocalProtocolError`
    (``kind="illegal_transition"``) and changes nothing.

    >>> m = StreamMachine(now=0.0, deadlines=Deadlines(idle=30.0))
    >>> m.response_started(200, now=0.4)
    >>> m.receive_many([TextDelta("Paris is the capital"), TextDelta(" of France.")], now=0.9)
    2
    >>> m.receive_many([Finish(FinishReason.STOP, "stop"), StreamEnd()], now=1.0)
    2
    >>> m.state, m.outcome.message.text, m.outcome.retryable
    (<State.COMPLETED: 'completed'>, 'Paris is the capital of France.', False)
    """

    def __init__(
        self,
        now: float,
        deadlines: Deadlines | None = None,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if not math.isfinite(now):
            raise LocalProtocolError(
                f"now must be a finite clock reading, got {now!r}", kind="bad_time"
            )
        self._deadlines = Deadlines() if deadlines is None else deadlines
        self._accumulator = Accumulator(max_chars=max_chars)
        self._state = State.CONNECTING
        self._row = TRANSITIONS[State.CONNECTING]  # the table row of the current state
        self._terminal = False
        self._now = now
        self._started = now
        self._response_at: float | None = None
        self._last_event_at = now
        self._first_token_at: float | None = None
        self._last_token_at: float | None = None
        self._ended_at: float | None = None
        self._token_events = 0
        self._gaps = _Gaps()
        self._length_seen = False
        self._status: int | None = None
        self._error: ProviderError | Exception | None = None
        self._retry_after: float | None = None
        self._cancel_reason = ""
        self._driver_tokens: int | None = None
        self._usage_tokens: int | None = None  # the provider's latest output_tokens
        self._outcome: Outcome | None = None

    # --- What the driver can ask ---------------------------------------------

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def terminal(self) -> bool:
        """Whether the attempt has ended (the state is in :data:`TERMINAL_STATES`)."""
        return self._terminal

    @property
    def deadlines(self) -> Deadlines:
        """The deadlines this attempt runs under."""
        return self._deadlines

    def message(self) -> FinalMessage:
        """Everything received so far, live or ended, as a frozen snapshot.

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.1)
        >>> m.receive(TextDelta("Hel"), now=0.2)
        >>> m.message().text
        'Hel'
        """
        return self._accumulator.message()

    @property
    def outcome(self) -> Outcome:
        """How the attempt ended; raises ``LocalProtocolError(kind="not_terminal")`` before that.

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.2)
        >>> m.receive(TextDelta("The answer is"), now=0.5)
        >>> m.body_ended(now=0.6)
        >>> o = m.outcome
        >>> o.state, o.message.text, o.retryable, o.resumable
        (<State.INTERRUPTED: 'interrupted'>, 'The answer is', True, True)
        """
        if self._outcome is None:
            if not self._terminal:
                raise LocalProtocolError(
                    f"no outcome yet: the attempt is still {self._state.name}; "
                    "wait until `terminal` is true",
                    kind="not_terminal",
                )
            self._outcome = self._build_outcome()
        return self._outcome

    def next_deadline(self) -> float | None:
        """When the earliest deadline of the current state expires, or ``None`` if none runs.

        Call :meth:`check_deadlines` at (or after) that time; it moves as
        events arrive (the idle deadline) and as the state changes.

        >>> m = StreamMachine(now=100.0, deadlines=Deadlines(connect=10, first_token=20, idle=5))
        >>> m.next_deadline()
        110.0
        >>> m.response_started(200, now=101.0)
        >>> m.next_deadline()  # idle runs from the headers too, and comes first
        106.0
        """
        pending = self._pending_deadlines()
        return min(when for when, _ in pending) if pending else None

    def timings(self, now: float | None = None) -> Timings:
        """The timing marks so far. For a live attempt, pass ``now`` to get durations up to it.

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.3)
        >>> m.receive(TextDelta("Once"), now=0.5)
        >>> m.receive(TextDelta(" upon"), now=0.6)
        >>> m.receive(StreamEnd(), now=0.7)
        >>> t = m.timings()
        >>> t.time_to_first_byte, t.time_to_first_token, t.total, t.gap_count
        (0.3, 0.5, 0.7, 1)
        """
        end = self._ended_at
        if end is None and now is not None:
            self._check_time(now)
            end = now
        started = self._started
        first = self._first_token_at
        tokens, source = self._token_count()
        gaps = self._gaps
        rate = None
        if first is not None and end is not None and end > first:
            rate = tokens / (end - first)
        return Timings(
            started=started,
            response_started=self._response_at,
            first_token=first,
            ended=self._ended_at,
            time_to_first_byte=None if self._response_at is None else self._response_at - started,
            time_to_first_token=None if first is None else first - started,
            total=None if end is None else end - started,
            token_events=self._token_events,
            gap_count=gaps.count,
            gap_mean=gaps.total / gaps.count if gaps.count else None,
            gap_max=gaps.max if gaps.count else None,
            gap_p50=gaps.percentile(0.5),
            gap_p99=gaps.percentile(0.99),
            tokens=tokens,
            tokens_source=source,
            tokens_per_second=rate,
        )

    # --- What the driver reports ---------------------------------------------

    def response_started(self, status: int, now: float) -> None:
        """The response headers arrived with a success (2xx) status.

        For an error status call :meth:`http_error` instead (raises
        ``LocalProtocolError(kind="bad_status")`` otherwise).

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.25)
        >>> m.state
        <State.WAITING_FIRST_TOKEN: 'waiting_first_token'>
        """
        if not 200 <= status <= 299:
            raise LocalProtocolError(
                f"response_started() takes a 2xx status, got {status}; "
                "report an error status with http_error()",
                kind="bad_status",
            )
        nxt = self._next(_I.RESPONSE_STARTED, now)
        self._status = status
        self._response_at = now
        self._last_event_at = now
        self._move(nxt, now)

    def http_error(
        self,
        status: int,
        now: float,
        *,
        error: ProviderError | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The response had an error status (not 2xx); the attempt ends in ``HTTP_ERROR``.

        ``error`` is the provider's error from the response body, if the driver
        read it; ``retry_after`` the server's ``Retry-After`` in seconds.

        >>> m = StreamMachine(now=0.0)
        >>> m.http_error(529, now=0.3, error=ProviderError("overloaded_error", "Overloaded"))
        >>> m.outcome.retryable, m.outcome.reason
        (True, 'HTTP 529 before any body: overloaded_error: Overloaded')
        """
        if not 100 <= status <= 599 or 200 <= status <= 299:
            raise LocalProtocolError(
                f"http_error() takes an error status (not 2xx), got {status}; "
                "report a success with response_started()",
                kind="bad_status",
            )
        nxt = self._next(_I.HTTP_ERROR, now)
        self._status = status
        self._response_at = now
        self._error = error
        self._retry_after = retry_after
        self._move(nxt, now)

    def receive(self, event: Event, now: float) -> None:
        """One event decoded from the body.

        After the end of the attempt a :class:`~streamcore.events.KeepAlive` or
        :class:`~streamcore.events.StreamEnd` is absorbed; any other event
        raises (``kind="illegal_transition"``). If the event would take the
        message past ``max_chars``, the attempt ends in ``PROTOCOL_ERROR``
        (the event is not kept; everything before it is).

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.1)
        >>> m.receive(KeepAlive(), now=0.2)  # a ping: still waiting
        >>> m.state.name
        'WAITING_FIRST_TOKEN'
        >>> m.receive(TextDelta("Hi"), now=0.3)
        >>> m.state.name
        'STREAMING'
        """
        inp = self._classify(event)
        nxt = self._next(inp, now)
        if self._terminal:
            self._now = now  # a report racing with the end: absorbed
            return
        try:
            self._accumulator.add(event)
        except RemoteProtocolError as exc:
            self._error = exc
            self._move(self._row[_I.PROTOCOL_ERROR], now)
            return
        self._last_event_at = now
        if inp is _I.TOKEN:
            if self._first_token_at is None:
                self._first_token_at = now
            else:
                assert self._last_token_at is not None
                self._gaps.add(now - self._last_token_at)
            self._last_token_at = now
            self._token_events += 1
        elif type(event) is Finish:
            if event.reason is FinishReason.LENGTH:
                self._length_seen = True
        elif type(event) is ProviderError:
            self._error = event
        elif type(event) is Usage and event.output_tokens is not None:
            self._usage_tokens = event.output_tokens
        self._move(nxt, now)

    def receive_many(self, events: Iterable[Event], now: float) -> int:
        """:meth:`receive` each event in order; returns how many were fed.

        Stops after the event that ends the attempt (a provider error, the
        terminal marker): what follows it in the batch arrived after the end
        and is not fed. On a machine that had already ended, every event is
        fed (and absorbed or refused as :meth:`receive` says).

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.1)
        >>> m.receive_many([TextDelta("Hi"), ProviderError("overloaded_error", "Overloaded"),
        ...                 TextDelta(" there")], now=0.5)
        2
        >>> m.state.name, m.outcome.message.text
        ('PROVIDER_ERROR', 'Hi')
        """
        self._check_time(now)  # even for an empty batch: a bad clock is a bug to surface
        self._now = now
        already_ended = self._terminal
        fed = 0
        for event in events:
            self.receive(event, now)
            fed += 1
            if self._terminal and not already_ended:
                break
        return fed

    def body_ended(self, now: float) -> None:
        """The response body ended (EOF): ``INTERRUPTED`` unless the terminal marker came first.

        A no-op once the attempt has ended (after ``StreamEnd`` it is the normal close).

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.1)
        >>> m.receive(StreamEnd(), now=0.2)
        >>> m.body_ended(now=0.3)
        >>> m.state.name
        'COMPLETED'
        """
        self._move(self._next(_I.BODY_ENDED, now), now)

    def transport_failed(self, exc: Exception, now: float) -> None:
        """The connection failed (refused, reset, TLS, DNS): ``CONNECT_FAILED`` before the response
        headers, ``INTERRUPTED`` after them. A no-op once the attempt has ended.

        >>> m = StreamMachine(now=0.0)
        >>> m.transport_failed(ConnectionRefusedError(111, "Connection refused"), now=0.1)
        >>> m.state.name, m.outcome.retryable
        ('CONNECT_FAILED', True)
        """
        nxt = self._next(_I.TRANSPORT_FAILED, now)
        if not self._terminal:
            self._error = exc
        self._move(nxt, now)

    def protocol_error(self, exc: Exception, now: float) -> None:
        """The bytes broke the protocol: a dialect's :class:`~streamcore.RemoteProtocolError`,
        or an HTTP-level failure the driver saw. A no-op once the attempt has ended.

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.1)
        >>> m.protocol_error(RemoteProtocolError("data is not JSON", kind="invalid_json"), now=0.2)
        >>> m.state.name, m.outcome.retryable
        ('PROTOCOL_ERROR', True)
        """
        nxt = self._next(_I.PROTOCOL_ERROR, now)
        if not self._terminal:
            self._error = exc
        self._move(nxt, now)

    def budget_exceeded(self, now: float) -> None:
        """The driver's own output-token count passed its budget; the attempt stops here.

        Report the count first with :meth:`set_output_tokens`. A no-op once the attempt has ended.

        >>> m = StreamMachine(now=0.0)
        >>> m.response_started(200, now=0.1)
        >>> m.receive(TextDelta("A very long answer"), now=0.2)
        >>> m.set_output_tokens(4)
        >>> m.budget_exceeded(now=0.2)
        >>> print(m.outcome.reason)
        stopped by the caller's token budget after 4 output tokens
        """
        self._move(self._next(_I.BUDGET_EXCEEDED, now), now)

    def cancel(self, now: float, reason: str = "") -> None:
        """The caller cancelled the attempt. A no-op once it has ended.

        >>> m = StreamMachine(now=0.0)
        >>> m.cancel(now=1.5, reason="user pressed Ctrl-C")
        >>> m.outcome.reason
        'cancelled: user pressed Ctrl-C'
        """
        nxt = self._next(_I.CANCEL, now)
        if not self._terminal:
            self._cancel_reason = reason
        self._move(nxt, now)

    def check_deadlines(self, now: float) -> bool:
        """End the attempt if a deadline has passed at ``now``; returns whether it did.

        If several have passed, the one that expired first decides the state.
        Never raises for the state; a no-op (``False``) once the attempt has ended.

        >>> m = StreamMachine(now=0.0, deadlines=Deadlines(first_token=5.0))
        >>> m.response_started(200, now=1.0)
        >>> m.check_deadlines(now=5.9), m.check_deadlines(now=6.0)
        (False, True)
        >>> m.state.name
        'TIMED_OUT_FIRST_TOKEN'
        """
        self._check_time(now)
        expired = [
            (when, order, inp) for order, (when, inp) in enumerate(self._pending_deadlines())
        ]
        expired = [item for item in expired if now >= item[0]]
        if not expired:
            self._now = now
            return False
        _, _, inp = min(expired)
        self._move(self._row[inp], now)
        return True

    def set_output_tokens(self, count: int) -> None:
        """The driver's running count of output tokens (e.g. from a tokenizer).

        It takes precedence over the provider's usage for ``Timings.tokens``
        and tokens/s. Allowed in any state.

        >>> m = StreamMachine(now=0.0)
        >>> m.set_output_tokens(42)
        >>> m.timings().tokens, m.timings().tokens_source.value
        (42, 'driver')
        """
        if count < 0:
            raise LocalProtocolError(
                f"output token count must be >= 0, got {count}", kind="bad_token_count"
            )
        self._driver_tokens = count
        self._outcome = None  # timings in the outcome depend on it

    # --- The machinery --------------------------------------------------------

    def _check_time(self, now: float) -> None:
        if self._now <= now < math.inf:  # the common case, and False for NaN
            return
        if not math.isfinite(now):
            raise LocalProtocolError(
                f"now must be a finite clock reading, got {now!r}", kind="bad_time"
            )
        if now < self._now:
            raise LocalProtocolError(
                f"time went backwards: now={now!r} is before the last reading {self._now!r}; "
                "pass readings of one monotonic clock",
                kind="time_went_backwards",
            )

    def _next(self, inp: Input, now: float) -> State:
        """The state ``inp`` leads to; raises (changing nothing) if it is illegal now."""
        self._check_time(now)
        nxt = self._row.get(inp)
        if nxt is None:
            legal = ", ".join(i.value for i in self._row)
            raise LocalProtocolError(
                f"{inp.value} is not allowed in state {self._state.name} "
                f"(allowed: {legal}); check the driver's order of calls",
                kind="illegal_transition",
            )
        return nxt

    def _move(self, nxt: State, now: float) -> None:
        self._now = now
        if nxt is self._state:
            return
        self._state = nxt
        self._row = TRANSITIONS[nxt]
        if nxt in TERMINAL_STATES:
            self._terminal = True
            self._ended_at = now

    def _classify(self, event: Event) -> Input:
        if type(event) is TextDelta:  # by far the most frequent
            return _I.TOKEN if event.text else _I.EVENT
        if isinstance(event, (ReasoningDelta, Refusal)):
            return _I.TOKEN if event.text else _I.EVENT
        if isinstance(event, ToolCallDelta):
            return _I.TOKEN if event.arguments else _I.EVENT
        if isinstance(event, StreamEnd):
            return _I.STREAM_END_AFTER_LENGTH if self._length_seen else _I.STREAM_END
        inp = _FIXED_INPUT.get(type(event))
        if inp is None:
            raise LocalProtocolError(
                f"receive() takes a streamcore event, got {type(event).__name__}",
                kind="not_an_event",
            )
        return inp

    def _pending_deadlines(self) -> list[tuple[float, Input]]:
        """The deadlines running in the current state, as (expiry, input), in tie-break order."""
        d = self._deadlines
        pending: list[tuple[float, Input]] = []
        for inp in _DEADLINES_OF.get(self._state, ()):
            if inp is _I.CONNECT_DEADLINE and d.connect is not None:
                pending.append((self._started + d.connect, inp))
            elif inp is _I.FIRST_TOKEN_DEADLINE and d.first_token is not None:
                assert self._response_at is not None
                pending.append((self._response_at + d.first_token, inp))
            elif inp is _I.IDLE_DEADLINE and d.idle is not None:
                pending.append((self._last_event_at + d.idle, inp))
            elif inp is _I.TOTAL_DEADLINE and d.total is not None:
                pending.append((self._started + d.total, inp))
        return pending

    def _token_count(self) -> tuple[int, TokenSource]:
        if self._driver_tokens is not None:
            return self._driver_tokens, TokenSource.DRIVER
        if self._usage_tokens is not None:
            return self._usage_tokens, TokenSource.USAGE
        return self._token_events, TokenSource.EVENTS

    def _build_outcome(self) -> Outcome:
        state = self._state
        message = self._accumulator.message()
        error = self._error
        if state in _ALWAYS_RETRYABLE:
            retryable = True
        elif state is _S.PROVIDER_ERROR:
            retryable = isinstance(error, ProviderError) and transient_error_type(error.type)
        elif state is _S.HTTP_ERROR:
            retryable = self._status is not None and retryable_status(self._status)
        else:
            retryable = False
        resumable = (retryable or state is _S.LENGTH_LIMIT) and message.text != ""
        return Outcome(
            state=state,
            message=message,
            retryable=retryable,
            resumable=resumable,
            reason=self._reason(message),
            error=error,
            status=self._status,
            retry_after=self._retry_after,
            timings=self.timings(),
        )

    def _reason(self, message: FinalMessage) -> str:
        state = self._state
        d = self._deadlines
        error = self._error
        if state is _S.COMPLETED:
            raw = message.finish_raw
            return "the provider completed the answer" + (
                f" (finish reason {raw!r})" if raw else ""
            )
        if state is _S.LENGTH_LIMIT:
            return (
                "the provider stopped at its max-tokens limit; raise max_tokens, "
                "or resume from the partial text"
            )
        if state is _S.BUDGET_EXCEEDED:
            tokens, source = self._token_count()
            unit = "output tokens" if source is not TokenSource.EVENTS else "token events"
            return f"stopped by the caller's token budget after {tokens} {unit}"
        if state is _S.PROVIDER_ERROR:
            assert isinstance(error, ProviderError)
            return f"the provider reported an error mid-stream: {error.type}: {error.message}"
        if state is _S.INTERRUPTED:
            how = "the connection broke" if error is not None else "the body ended"
            detail = f" ({_describe(error)})" if error is not None else ""
            return (
                f"{how} before the provider's terminal marker, after {len(message.text)} "
                f"characters of text{detail}"
            )
        if state is _S.HTTP_ERROR:
            text = f"HTTP {self._status} before any body"
            if isinstance(error, ProviderError):
                text += f": {error.type}: {error.message}"
            return text
        if state is _S.CONNECT_FAILED:
            assert error is not None
            return f"the connection failed before any response: {_describe(error)}"
        if state is _S.PROTOCOL_ERROR:
            assert error is not None
            kind = getattr(error, "kind", None)
            where = f" ({kind})" if kind else ""
            return f"the stream broke its protocol{where}: {_describe(error)}"
        if state is _S.TIMED_OUT_CONNECT:
            return f"no response headers within {d.connect:g} s of the start (connect deadline)"
        if state is _S.TIMED_OUT_FIRST_TOKEN:
            return (
                f"no token within {d.first_token:g} s of the response headers "
                "(first_token deadline)"
            )
        if state is _S.TIMED_OUT_IDLE:
            return f"nothing received for {d.idle:g} s (idle deadline)"
        if state is _S.TIMED_OUT_TOTAL:
            return f"the attempt took longer than {d.total:g} s (total deadline)"
        assert state is _S.CANCELLED
        return f"cancelled: {self._cancel_reason}" if self._cancel_reason else "cancelled"
