"""What to do when a streamed answer fails: retry, resume, or stop gracefully.

Theory of operation
-------------------
An attempt ends in one state (``streamcore.machine``). When that state is a
failure, the driver describes it as a :class:`Failure` (plain data: what kind,
the HTTP status, the provider's error type, whether answer text had arrived,
the server's ``Retry-After``) and asks :func:`decide` what to do next, given a
:class:`RecoveryPolicy` and the attempt number. The answer is one of three
plans, each a frozen dataclass in the :data:`Decision` union:

* :class:`RetryFromScratch` -- send the same request again after ``delay``
  seconds (exponential backoff with full jitter, never sooner than the server
  asked: :meth:`RetryPolicy.delay`);
* :class:`ResumeWithContext` -- some answer text arrived and the policy
  resumes: build the continuation with :func:`plan_resume` and join its stream
  onto the partial text with a :class:`Stitcher`;
* :class:`FailGracefully` -- deliver the partial answer with an interruption
  marker and the reason.

Nothing here does I/O, sleeps, draws random numbers or reads a clock: the
jitter draw (``rng_value``) and the current time (``now``, to read an HTTP-date
``Retry-After``) are arguments, so every decision is reproducible in a test.
The trio side executes the plans.

Resuming has two mechanisms (:data:`ResumePlan`). OpenAI's Responses API can
replay a *background* response's stream from a sequence number
(:class:`ReplayFromSequence`: ``GET /v1/responses/{id}?stream=true&starting_after=N``),
which loses nothing and needs no stitching. Everywhere else the model is asked
again with the partial answer in context (:class:`ContinueWithContext`): as a
prefill the model continues (Anthropic, except models that reject prefill), or
as an assistant turn followed by a short "continue" instruction. Models often
start a continuation by repeating the last words they had written; the
:class:`Stitcher` removes such a repeat, and only a repeat (see its rule).

:class:`Attempts` keeps every attempt's usage, so the cost of the partial
generations a recovery threw away stays visible.
"""

from __future__ import annotations

import calendar
import enum
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from streamcore._errors import LocalProtocolError
from streamcore.events import Usage
from streamcore.request import ChatRequest, Message

__all__ = [
    "BACKGROUND",
    "CONTINUE_INSTRUCTION",
    "DEFAULT_RETRY_ERROR_TYPES",
    "DEFAULT_RETRY_STATUSES",
    "USER_FACING",
    "AttemptKind",
    "AttemptRecord",
    "Attempts",
    "ContinueWithContext",
    "Decision",
    "FailGracefully",
    "Failure",
    "FailureKind",
    "RecoveryPolicy",
    "ReplayFromSequence",
    "ResumePlan",
    "ResumeWithContext",
    "RetryFromScratch",
    "RetryPolicy",
    "Seam",
    "Stitcher",
    "anthropic_supports_prefill",
    "decide",
    "parse_retry_after",
    "plan_resume",
    "retry_after_from_headers",
]

# ---------------------------------------------------------------------------
# Failures


class FailureKind(enum.Enum):
    """How an attempt failed or stopped.

    The values are the names of the matching ``streamcore.machine.State``
    members, so ``FailureKind(outcome.state.value)`` converts a machine state.
    """

    CONNECT_FAILED = "connect_failed"
    """No connection (DNS, refused, TLS, reset before the response)."""
    HTTP_ERROR = "http_error"
    """An error status instead of a stream; see :attr:`Failure.status`."""
    PROVIDER_ERROR = "provider_error"
    """The provider reported an error mid-stream; see :attr:`Failure.error_type`."""
    INTERRUPTED = "interrupted"
    """The body ended before the provider's terminal marker (a drop)."""
    PROTOCOL_ERROR = "protocol_error"
    """The bytes broke the protocol (bad JSON, impossible event order)."""
    TIMED_OUT_CONNECT = "timed_out_connect"
    TIMED_OUT_FIRST_TOKEN = "timed_out_first_token"
    TIMED_OUT_IDLE = "timed_out_idle"
    TIMED_OUT_TOTAL = "timed_out_total"
    """The attempt's overall deadline passed: never retried (the time is spent)."""
    LENGTH_LIMIT = "length_limit"
    """Complete, but cut at the provider's max-tokens limit."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """Stopped by the caller's own token budget: deliberate, never retried."""
    CANCELLED = "cancelled"
    """Cancelled by the caller: never retried."""


_TIMEOUTS = frozenset(
    {FailureKind.TIMED_OUT_CONNECT, FailureKind.TIMED_OUT_FIRST_TOKEN, FailureKind.TIMED_OUT_IDLE}
)
_DELIBERATE = frozenset({FailureKind.BUDGET_EXCEEDED, FailureKind.CANCELLED})


def _check_seconds(owner: str, name: str, value: float | None, *, zero_ok: bool) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = "non-negative" if zero_ok else "positive"
        raise LocalProtocolError(
            f"{owner}.{name} must be a {bound} finite number of seconds, got {value!r}",
            kind="bad_seconds",
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed (or stopped) attempt, described in plain data for :func:`decide`.

    ``text_received``: whether any answer text reached the caller (a restart
    would then show it twice; a resume continues it). ``retry_after``: seconds
    the server asked to wait (:func:`retry_after_from_headers`). ``retryable``:
    leave it ``None`` to let the :class:`RetryPolicy` classify the failure, or
    force the answer. ``reason``: what happened, in words, for the marker.

    >>> Failure(FailureKind.HTTP_ERROR, status=529, retry_after=2.0).status
    529
    """

    kind: FailureKind
    text_received: bool = False
    status: int | None = None
    error_type: str | None = None
    retry_after: float | None = None
    retryable: bool | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        _check_seconds("Failure", "retry_after", self.retry_after, zero_ok=True)

    def describe(self) -> str:
        """The reason if given, else a phrase built from the kind, status and error type."""
        if self.reason:
            return self.reason
        if self.kind is FailureKind.HTTP_ERROR and self.status is not None:
            return f"HTTP {self.status}"
        if self.kind is FailureKind.PROVIDER_ERROR and self.error_type:
            return f"provider error {self.error_type}"
        return _PHRASES[self.kind]


_PHRASES = {
    FailureKind.CONNECT_FAILED: "could not connect",
    FailureKind.HTTP_ERROR: "HTTP error",
    FailureKind.PROVIDER_ERROR: "provider error",
    FailureKind.INTERRUPTED: "the connection dropped mid-answer",
    FailureKind.PROTOCOL_ERROR: "the stream was garbled",
    FailureKind.TIMED_OUT_CONNECT: "connecting timed out",
    FailureKind.TIMED_OUT_FIRST_TOKEN: "no answer started in time",
    FailureKind.TIMED_OUT_IDLE: "the stream went silent",
    FailureKind.TIMED_OUT_TOTAL: "the answer took too long",
    FailureKind.LENGTH_LIMIT: "the max-tokens limit was reached",
    FailureKind.BUDGET_EXCEEDED: "the token budget was reached",
    FailureKind.CANCELLED: "cancelled",
}


# ---------------------------------------------------------------------------
# Retrying from scratch

DEFAULT_RETRY_STATUSES = frozenset({408, 409, 429, *range(500, 600)})
"""408 Request Timeout, 409 Conflict, 429 Too Many Requests and every 5xx (529 Overloaded too)."""

DEFAULT_RETRY_ERROR_TYPES = frozenset(
    {
        # Anthropic (error.type)
        "overloaded_error",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        # OpenAI (error.type / error.code)
        "server_error",
        "rate_limit_exceeded",
        "internal_error",
        # Gemini (error.status)
        "unavailable",
        "resource_exhausted",
        "internal",
        "deadline_exceeded",
    }
)
"""Provider error types (compared lower-cased) that name a transient failure."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again, and how long to wait first.

    * ``max_attempts``: attempts in all, the first one included (resumes count).
    * ``base_delay``, ``multiplier``, ``max_delay``: the backoff ceiling before
      attempt ``n + 1`` is ``min(max_delay, base_delay * multiplier ** (n - 1))``
      seconds; the delay is drawn uniformly below it (full jitter).
    * ``max_retry_after``: a server that asks to wait longer than this is not
      waited for; the failure is delivered instead.
    * ``retry_statuses`` / ``retry_error_types``: which HTTP statuses and
      provider error types are transient.
    * ``retry_connect``, ``retry_timeouts``, ``retry_interrupted``,
      ``retry_protocol_errors``: whether connection failures, connect /
      first-token / idle timeouts, drops and garbled streams are retried.
    * ``before_first_token_only``: restart from scratch only while no answer
      text has arrived (after that, resume or stop -- a restart would show the
      text twice).

    >>> policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    >>> policy.delay(3, rng_value=0.5, retry_after=None)  # ceiling 4 s, jittered
    2.0
    >>> policy.delay(3, rng_value=0.5, retry_after=10.0)  # never sooner than asked
    10.0
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_error_types: frozenset[str] = DEFAULT_RETRY_ERROR_TYPES
    retry_connect: bool = True
    retry_timeouts: bool = True
    retry_interrupted: bool = True
    retry_protocol_errors: bool = True
    before_first_token_only: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise LocalProtocolError(
                f"RetryPolicy.max_attempts must be at least 1 (the first attempt), "
                f"got {self.max_attempts}",
                kind="bad_retry_policy",
            )
        _check_seconds("RetryPolicy", "base_delay", self.base_delay, zero_ok=True)
        _check_seconds("RetryPolicy", "max_delay", self.max_delay, zero_ok=True)
        _check_seconds("RetryPolicy", "max_retry_after", self.max_retry_after, zero_ok=True)
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise LocalProtocolError(
                f"RetryPolicy.multiplier must be a finite number >= 1, got {self.multiplier!r}",
                kind="bad_retry_policy",
            )

    def delay(self, attempt: int, rng_value: float, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``rng_value`` is a uniform draw in [0, 1) from the caller's random
        source; ``retry_after`` the server's request in seconds, honoured even
        above ``max_delay`` (:func:`decide` refuses to wait beyond
        ``max_retry_after``).
        """
        if attempt < 1:
            raise LocalProtocolError(
                f"attempt numbers start at 1, got {attempt}", kind="bad_attempt"
            )
        if not 0.0 <= rng_value < 1.0:
            raise LocalProtocolError(
                f"rng_value must be a uniform draw in [0, 1), got {rng_value!r}",
                kind="bad_rng_value",
            )
        _check_seconds("delay()", "retry_after", retry_after, zero_ok=True)
        try:
            ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        except OverflowError:
            ceiling = self.max_delay
        wait = rng_value * ceiling
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        return wait

    def is_retryable(self, failure: Failure) -> bool:
        """Whether ``failure`` is transient here; ``failure.retryable``, if set, wins."""
        if failure.retryable is not None:
            return failure.retryable
        kind = failure.kind
        if kind is FailureKind.HTTP_ERROR:
            return failure.status is not None and failure.status in self.retry_statuses
        if kind is FailureKind.PROVIDER_ERROR:
            name = (failure.error_type or "").strip().lower()
            if name.isdigit():
                return int(name) in self.retry_statuses
            return name in self.retry_error_types
        if kind is FailureKind.CONNECT_FAILED:
            return self.retry_connect
        if kind in _TIMEOUTS:
            return self.retry_timeouts
        if kind is FailureKind.INTERRUPTED:
            return self.retry_interrupted
        if kind is FailureKind.PROTOCOL_ERROR:
            return self.retry_protocol_errors
        # The total deadline, the length limit, the budget and a cancel: the
        # attempt did not fail in a way another attempt could fix.
        return False


# ---------------------------------------------------------------------------
# Retry-After

_MAX_HEADER_VALUE = 64
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_MON = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# RFC 9110 section 5.6.7: IMF-fixdate, and the two obsolete forms a recipient must accept.
_IMF_FIXDATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{{2}}) {_MON} ([0-9]{{4}}) {_TIME} GMT", re.I
)
_RFC850_DATE = re.compile(
    rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"([0-9]{{2}})-{_MON}-([0-9]{{2}}) {_TIME} GMT",
    re.I,
)
_ASCTIME_DATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MON} ([0-9 ][0-9]) {_TIME} ([0-9]{{4}})", re.I
)
_SECONDS_PER_YEAR = 31_556_952  # the mean Gregorian year


def _epoch(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    if not (1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def _parse_http_date(value: str, now: float) -> float | None:
    match = _IMF_FIXDATE.fullmatch(value)
    if match:
        day, mon, year, hh, mm, ss = match.groups()
        return _epoch(int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss))
    match = _RFC850_DATE.fullmatch(value)
    if match:
        day, mon, yy, hh, mm, ss = match.groups()
        # RFC 9110: a two-digit year that looks more than 50 years in the
        # future is in the past century.
        this_year = 1970 + int(now // _SECONDS_PER_YEAR)
        year = 2000 + int(yy)
        if year > this_year + 50:
            year -= 100
        return _epoch(year, _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss))
    match = _ASCTIME_DATE.fullmatch(value)
    if match:
        mon, day, hh, mm, ss, year = match.groups()
        return _epoch(int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss))
    return None


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if it is not one.

    Both forms of RFC 9110 are read: delta-seconds (``"120"``; a decimal
    fraction is accepted, as some servers send one) and an HTTP-date, which
    needs ``now`` as a Unix time (a date in the past means "now": 0.0). A value
    that is neither is ignored rather than raised on: it is a hint, not part of
    the grammar of the stream.

    >>> parse_retry_after("7", now=0.0)
    7.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0)
    30.0
    >>> parse_retry_after("soon", now=0.0) is None
    True
    """
    value = value.strip()
    if not value or len(value) > _MAX_HEADER_VALUE:
        return None
    if _NUMBER.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    when = _parse_http_date(value, now)
    if when is None:
        return None
    return max(0.0, when - now)


def retry_after_from_headers(
    headers: Iterable[tuple[str | bytes, str | bytes]], *, now: float
) -> float | None:
    """The wait a response's headers ask for, in seconds, or ``None``.

    ``retry-after-ms`` (milliseconds; sent by OpenAI and Azure) wins over
    ``retry-after`` (:func:`parse_retry_after`); names are case-insensitive and
    may be ``bytes`` (as h11 gives them).

    >>> retry_after_from_headers([("Retry-After", "2"), ("retry-after-ms", "1500")], now=0.0)
    1.5
    >>> retry_after_from_headers([(b"retry-after", b"3")], now=0.0)
    3.0
    """
    plain: str | None = None
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        name = name.strip().lower()
        if name == "retry-after-ms":
            value = value.strip()
            if len(value) <= _MAX_HEADER_VALUE and _NUMBER.fullmatch(value):
                millis = float(value)
                if math.isfinite(millis):
                    return millis / 1000.0
        elif name == "retry-after" and plain is None:
            plain = value
    return None if plain is None else parse_retry_after(plain, now=now)


# ---------------------------------------------------------------------------
# Policies and decisions


def _check_stitch_bounds(max_overlap: int, min_overlap: int) -> None:
    if not 1 <= min_overlap <= max_overlap:
        raise LocalProtocolError(
            f"stitch bounds need 1 <= min_overlap <= max_overlap, got "
            f"min_overlap={min_overlap}, max_overlap={max_overlap}",
            kind="bad_stitch_bounds",
        )


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """Everything that governs recovery: retries, resuming, deadlines, stitching.

    * ``retry``: the :class:`RetryPolicy` (attempts, backoff, what is transient).
    * ``resume``: after answer text arrived, continue it with the partial
      answer in context instead of giving up (or restarting).
    * ``continue_after_length``: treat a stop at the provider's max-tokens
      limit as something to resume (off by default: the caller set that limit).
    * ``connect_timeout``, ``first_token_timeout``, ``idle_timeout``,
      ``total_timeout``: the per-attempt deadlines in seconds (``None``: no
      limit), for the driver's stream machine.
    * ``stitch_max_overlap``, ``stitch_min_overlap``: the :class:`Stitcher`'s
      bounds.
    * ``marker``: the interruption marker shown after a partial answer;
      ``{reason}`` is replaced by the reason.
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    resume: bool = True
    continue_after_length: bool = False
    connect_timeout: float | None = 15.0
    first_token_timeout: float | None = 120.0
    idle_timeout: float | None = 60.0
    total_timeout: float | None = None
    stitch_max_overlap: int = 200
    stitch_min_overlap: int = 8
    marker: str = "[answer interrupted: {reason}]"

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "first_token_timeout", "idle_timeout", "total_timeout"):
            _check_seconds("RecoveryPolicy", name, getattr(self, name), zero_ok=False)
        _check_stitch_bounds(self.stitch_max_overlap, self.stitch_min_overlap)


USER_FACING = RecoveryPolicy(
    retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4.0, max_retry_after=10.0),
    resume=True,
    connect_timeout=15.0,
    first_token_timeout=120.0,
    idle_timeout=60.0,
    total_timeout=None,
)
"""Someone is watching the answer appear.

Generous deadlines (a reasoning model may think for two minutes before its
first token; a minute of silence mid-answer before giving up), and few, short
retries (at most 3 attempts, waits under 4 s, and no waiting on a server that
asks for more than 10 s: better to say so). A cut-off answer is *resumed*, so
what the user already read stays and the rest follows it.
"""

BACKGROUND = RecoveryPolicy(
    retry=RetryPolicy(
        max_attempts=6,
        base_delay=1.0,
        max_delay=60.0,
        max_retry_after=300.0,
        before_first_token_only=False,
    ),
    resume=False,
    connect_timeout=10.0,
    first_token_timeout=60.0,
    idle_timeout=20.0,
    total_timeout=600.0,
)
"""A batch job: nobody watches, a clean answer matters more than latency.

Deadlines that fail fast (a stalled stream is abandoned after 20 s of silence,
an attempt after 10 minutes) and patient retries with backoff (6 attempts,
waits up to a minute, honouring a server's ``Retry-After`` of up to 5 minutes).
A cut-off answer is *restarted* from scratch rather than stitched, since no one
saw the partial text; its tokens stay in the :class:`Attempts` ledger.
"""


@dataclass(frozen=True, slots=True)
class RetryFromScratch:
    """Send the original request again, as attempt ``attempt``, after ``delay`` seconds."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class ResumeWithContext:
    """Continue the partial answer (:func:`plan_resume`) as attempt ``attempt``, after ``delay``."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class FailGracefully:
    """Stop: deliver the partial answer (if any) followed by ``marker``, which gives the reason."""

    reason: str
    marker: str
    partial: bool
    """Whether answer text arrived (and is delivered with the marker)."""


Decision = RetryFromScratch | ResumeWithContext | FailGracefully
"""What :func:`decide` answers."""


def decide(policy: RecoveryPolicy, failure: Failure, *, attempt: int, rng_value: float) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) ended in ``failure``.

    In order: a deliberate stop (budget, cancel) is delivered; a length-limit
    stop is resumed only with ``continue_after_length``; anything not transient
    (:meth:`RetryPolicy.is_retryable`) is delivered; so is a failure once
    ``max_attempts`` are used up, or when the server asks to wait longer than
    ``max_retry_after``. Otherwise: no text yet -> retry from scratch; text ->
    resume if the policy resumes, else restart if ``before_first_token_only``
    allows it, else deliver. ``rng_value`` is the jitter draw in [0, 1).

    >>> failure = Failure(FailureKind.INTERRUPTED, text_received=True)
    >>> decide(USER_FACING, failure, attempt=1, rng_value=0.5)
    ResumeWithContext(attempt=2, delay=0.25, reason='the connection dropped mid-answer')
    >>> decide(USER_FACING, failure, attempt=3, rng_value=0.5).reason
    'the connection dropped mid-answer; gave up after 3 attempts'
    """
    reason = failure.describe()
    retry = policy.retry

    def give_up(why: str) -> FailGracefully:
        return FailGracefully(why, policy.marker.format(reason=why), failure.text_received)

    if failure.kind in _DELIBERATE:
        return give_up(reason)
    if failure.kind is FailureKind.LENGTH_LIMIT:
        if not (policy.continue_after_length and failure.text_received):
            return give_up(reason)
    elif not retry.is_retryable(failure):
        return give_up(reason)
    if attempt >= retry.max_attempts:
        return give_up(f"{reason}; gave up after {attempt} attempts")
    if failure.retry_after is not None and failure.retry_after > retry.max_retry_after:
        return give_up(
            f"{reason}; the server asked to wait {failure.retry_after:g} s "
            f"(more than {retry.max_retry_after:g} s)"
        )
    delay = retry.delay(attempt, rng_value, failure.retry_after)
    if not failure.text_received:
        return RetryFromScratch(attempt + 1, delay, reason)
    if policy.resume or failure.kind is FailureKind.LENGTH_LIMIT:
        return ResumeWithContext(attempt + 1, delay, reason)
    if not retry.before_first_token_only:
        return RetryFromScratch(attempt + 1, delay, reason)
    return give_up(reason)


# ---------------------------------------------------------------------------
# Resume plans

CONTINUE_INSTRUCTION = "Continue exactly where you left off, without repeating anything."
"""The user turn that asks a model to continue its cut-off answer."""

_PREFILL_DIALECTS = frozenset({"anthropic", "ollama", "gemini"})
_DIALECTS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openai_chat": "openai",
    "chat": "openai",
    "chat_completions": "openai",
    "compatible": "openai",
    "openai_compatible": "openai",
    "ollama": "ollama",
    "gemini": "gemini",
    "responses": "responses",
    "openai_responses": "responses",
}
_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-([0-9]+)(?:[-.]([0-9]+))?")


def anthropic_supports_prefill(model: str) -> bool:
    """Whether an Anthropic model accepts an assistant prefill (a final assistant turn).

    Claude Opus/Sonnet 4.6 and later reject it (HTTP 400, "This model does not
    support assistant message prefill"); earlier models accept it. Model names
    this rule cannot read are assumed to accept it.

    >>> [anthropic_supports_prefill(m) for m in ("claude-sonnet-4-5", "claude-opus-4-6")]
    [True, False]
    >>> anthropic_supports_prefill("claude-sonnet-4-20250514")
    True
    """
    match = _CLAUDE_VERSION.search(model)
    if match is None:
        return True
    major = int(match.group(1))
    minor_text = match.group(2)
    # "claude-sonnet-4-20250514": the number after the major is a date, not a minor.
    minor = int(minor_text) if minor_text is not None and len(minor_text) <= 2 else 0
    return (major, minor) < (4, 6)


@dataclass(frozen=True, slots=True)
class ReplayFromSequence:
    """Replay a Responses API background stream after event ``after`` (its ``sequence_number``).

    Nothing is generated again and nothing needs stitching: the server sends
    the events the client missed. Only responses created with
    ``"background": true`` (and stored) can be replayed.

    >>> ReplayFromSequence("resp_123", 41).target
    '/v1/responses/resp_123?stream=true&starting_after=41'
    """

    response_id: str
    after: int

    @property
    def target(self) -> str:
        """The request target of the ``GET`` that replays the stream."""
        return f"/v1/responses/{self.response_id}?stream=true&starting_after={self.after}"


@dataclass(frozen=True, slots=True)
class ContinueWithContext:
    """Ask the model again with its partial answer in context.

    ``request`` is the continuation request. ``partial_text`` is the answer so
    far (a prefill of the original request included) that the continuation's
    stream is stitched onto. ``prefill`` says whether the model continues the
    text itself (a prefill) or answers a "continue" instruction. ``stripped`` is
    the trailing whitespace cut from the prefill (Anthropic rejects a prefill
    that ends in whitespace); the stitcher uses it to join the seam.
    """

    request: ChatRequest
    partial_text: str
    prefill: bool
    stripped: str = ""

    def stitcher(self, *, max_overlap: int = 200, min_overlap: int = 8) -> Stitcher:
        """A :class:`Stitcher` that joins this continuation onto :attr:`partial_text`."""
        return Stitcher(
            self.partial_text,
            stripped=self.stripped,
            max_overlap=max_overlap,
            min_overlap=min_overlap,
        )


ResumePlan = ReplayFromSequence | ContinueWithContext
"""The two ways to resume a cut-off answer."""


def _thinking_enabled(request: ChatRequest) -> bool:
    thinking = request.extra.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")


def plan_resume(
    request: ChatRequest,
    partial_text: str,
    dialect: str,
    *,
    response_id: str | None = None,
    last_sequence_number: int | None = None,
    prefill: bool | None = None,
    output_tokens_used: int | None = None,
) -> ResumePlan:
    """The plan that continues ``request``'s answer after ``partial_text`` arrived.

    ``dialect`` names the provider API (``"anthropic"``, ``"openai"`` /
    ``"compatible"``, ``"ollama"``, ``"gemini"``, ``"responses"``).

    * Responses API with ``response_id`` and ``last_sequence_number``: replay
      (:class:`ReplayFromSequence`).
    * Anthropic: the partial answer as a prefill, trailing whitespace stripped
      and remembered -- unless the model rejects prefill
      (:func:`anthropic_supports_prefill`) or extended thinking is on (a
      prefill must then start with a thinking block).
    * Everything else -- and Anthropic when prefill is out: the partial answer
      as an assistant turn, then a user turn with :data:`CONTINUE_INSTRUCTION`.
      Gemini continues a trailing model turn on most models, but newer ones
      reject a request ending in a model turn (HTTP 400), so it is not the
      default; pass ``prefill=True`` to force a prefill on Anthropic, Ollama or
      Gemini.

    A final assistant message in ``request`` (the caller's own prefill) is
    merged with ``partial_text``. With ``output_tokens_used``, ``max_tokens``
    shrinks by what the partial answer already used.

    >>> from streamcore.request import ChatRequest, Message
    >>> req = ChatRequest("claude-sonnet-4-5", (Message("user", "Count to five."),))
    >>> plan = plan_resume(req, "One, two, ", "anthropic")
    >>> plan.request.messages[-1], plan.stripped
    (Message(role='assistant', content='One, two,', tool_calls=(), tool_call_id=None), ' ')
    >>> plan = plan_resume(req, "One, two, ", "openai")
    >>> [m.role for m in plan.request.messages], plan.prefill
    (['user', 'assistant', 'user'], False)
    """
    name = _DIALECTS.get(dialect.strip().lower().replace("-", "_"))
    if name is None:
        raise LocalProtocolError(
            f"unknown dialect {dialect!r}; use one of {', '.join(sorted(_DIALECTS))}",
            kind="unknown_dialect",
        )
    if name == "responses" and response_id is not None and last_sequence_number is not None:
        if last_sequence_number < 0:
            raise LocalProtocolError(
                f"last_sequence_number must be >= 0, got {last_sequence_number}",
                kind="bad_sequence_number",
            )
        return ReplayFromSequence(response_id, last_sequence_number)

    if prefill is None:
        prefill = (
            name == "anthropic"
            and anthropic_supports_prefill(request.model)
            and not _thinking_enabled(request)
        )
    elif prefill and name not in _PREFILL_DIALECTS:
        raise LocalProtocolError(
            f"the {dialect!r} dialect has no prefill (the model starts a new message after "
            "an assistant turn); leave prefill=None to resume with a continue instruction",
            kind="prefill_unsupported",
        )

    messages = list(request.messages)
    answer = partial_text
    if messages and messages[-1].role == "assistant" and not messages[-1].tool_calls:
        earlier = messages.pop().content
        # The Anthropic dialect sends its own prefill stripped; the answer
        # streamed on from the stripped text.
        answer = (earlier.rstrip() if name == "anthropic" else earlier) + partial_text

    max_tokens = request.max_tokens
    if output_tokens_used is not None and max_tokens is not None:
        max_tokens -= output_tokens_used
        if max_tokens < 1:
            raise LocalProtocolError(
                f"the partial answer already used {output_tokens_used} of max_tokens="
                f"{request.max_tokens}; nothing is left to resume with",
                kind="no_tokens_left",
            )

    stripped = ""
    if prefill:
        sent = answer
        if name == "anthropic":
            sent = answer.rstrip()
            stripped = answer[len(sent) :]
        if sent:
            messages.append(Message("assistant", sent))
    else:
        messages.append(Message("assistant", answer))
        messages.append(Message("user", CONTINUE_INSTRUCTION))
    continuation = replace(request, messages=tuple(messages), max_tokens=max_tokens)
    return ContinueWithContext(continuation, answer, prefill, stripped)


# ---------------------------------------------------------------------------
# Stitching


def _ideographic(char: str) -> bool:
    # Scripts written without spaces: every character starts a "word".
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0x20000 <= code <= 0x3FFFF  # CJK extensions B and later
    )


def _inside_word(before: str, after: str) -> bool:
    return (
        before.isalnum()
        and after.isalnum()
        and not _ideographic(before)
        and not _ideographic(after)
    )


def _candidates(text: str, whole: bool, max_overlap: int, min_overlap: int) -> list[int]:
    """Overlap lengths ``k`` the rule allows at the end of ``text`` (see :class:`Stitcher`)."""
    last_alnum = -1
    for index in range(len(text) - 1, -1, -1):
        if text[index].isalnum():
            last_alnum = index
            break
    out = []
    for k in range(min_overlap, min(len(text), max_overlap) + 1):
        start = len(text) - k
        if start > last_alnum:
            continue  # no letter or digit in the overlap
        if start == 0 and not whole:
            continue  # the window's edge is not the text's start
        if start > 0 and _inside_word(text[start - 1], text[start]):
            continue
        out.append(k)
    return out


class _SeamSpace(enum.Enum):
    """How the continuation's leading whitespace meets the whitespace already shown."""

    KEEP = "keep"
    MATCH_STRIPPED = "match_stripped"
    """Drop the characters that repeat the stripped prefill whitespace, in order."""
    DROP_ALL = "drop_all"
    """Drop all of it: the partial text already ends in whitespace."""


@dataclass(frozen=True, slots=True)
class Seam:
    """Where the continuation joined the partial text.

    ``offset`` is the position in the final text (partial + continuation)
    where the continuation's text begins; ``removed`` counts the characters of
    the continuation that were dropped there; ``overlap`` is the repeat that
    was removed (empty if none).
    """

    offset: int
    removed: int
    overlap: str


class Stitcher:
    """Joins a continuation's stream onto a partial answer, removing what it repeats.

    Feed the continuation's text deltas to :meth:`feed`; each call returns the
    text safe to show after what is already shown; :meth:`end` flushes. Until
    the overlap is decided, at most ``max_overlap`` characters are held back.

    **The repeat rule.** The continuation repeats the partial text when it
    starts with the last ``k`` characters of the partial text, where

    * ``min_overlap <= k <= max_overlap`` (defaults 8 and 200): shorter
      coincidences ("the ", "\\n\\n") are too common to remove safely;
    * those ``k`` characters start at a word boundary (not between two letters
      or digits, except in scripts written without spaces) and contain at
      least one letter or digit (a repeated rule of dashes is not a repeat).

    The longest such ``k`` is removed. If none matches exactly, the rule is
    tried once more ignoring whitespace at the seam (the continuation's leading
    whitespace, the partial's trailing whitespace); the continuation's
    whitespace after the repeat is then dropped when the partial text already
    ends in whitespace. Text that does not meet the rule is never removed: a
    continuation that does not repeat comes through unchanged (except, after a
    prefill, for the whitespace the prefill lost -- below). The rule's one
    blind spot is a text that truly says the same eight or more characters
    twice across the seam ("ha ha ha ha"): the second copy is taken for a repeat.

    **Prefill whitespace.** After an Anthropic prefill, pass the whitespace
    that was stripped from it as ``stripped``: the model continues from the
    stripped text, usually starting with that whitespace, which the user has
    already seen; the continuation's leading characters that repeat it are dropped.

    >>> stitch = Stitcher("The quick brown fox jumps over the")
    >>> stitch.feed("over the lazy") + stitch.feed(" dog.") + stitch.end()
    ' lazy dog.'
    >>> stitch.seam
    Seam(offset=34, removed=8, overlap='over the')
    """

    __slots__ = (
        "_buf",
        "_checked_exact",
        "_checked_relaxed",
        "_core",
        "_ended",
        "_exact",
        "_lead",
        "_max_overlap",
        "_offset",
        "_overlap",
        "_relaxed",
        "_removed",
        "_space",
        "_space_left",
        "_stripped",
        "_trailing_space",
        "_window",
    )

    def __init__(
        self,
        partial: str,
        *,
        stripped: str = "",
        max_overlap: int = 200,
        min_overlap: int = 8,
    ) -> None:
        _check_stitch_bounds(max_overlap, min_overlap)
        if stripped and (not stripped.isspace() or not partial.endswith(stripped)):
            raise LocalProtocolError(
                "stripped must be the whitespace at the end of the partial text that the "
                f"prefill lost; got {stripped!r} for a partial text ending {partial[-20:]!r}",
                kind="bad_stripped",
            )
        self._offset = len(partial)
        self._stripped = stripped
        self._max_overlap = max_overlap
        logical = partial[: len(partial) - len(stripped)]
        # Only the last max_overlap characters can repeat, plus one to see
        # whether the longest candidate starts at a word boundary.
        window = logical[-(max_overlap + 1) :]
        whole = len(window) == len(logical)
        self._window = window
        self._exact = _candidates(window, whole, max_overlap, min_overlap)
        core = window.rstrip()
        self._core = core
        self._relaxed = _candidates(core, whole, max_overlap, min_overlap)
        self._trailing_space = partial[-1:].isspace()
        self._buf = ""
        self._checked_exact = 0
        self._checked_relaxed = 0
        self._lead: int | None = None
        self._ended = False
        self._overlap: str | None = None  # None until decided
        self._removed = 0
        self._space = _SeamSpace.KEEP
        self._space_left = ""

    @property
    def decided(self) -> bool:
        """Whether the overlap is decided (from then on, text passes straight through)."""
        return self._overlap is not None

    @property
    def held(self) -> int:
        """Characters held back, waiting for the overlap to be decided."""
        return len(self._buf)

    @property
    def seam(self) -> Seam | None:
        """Where the continuation joined, once decided; ``None`` before."""
        if self._overlap is None:
            return None
        return Seam(self._offset, self._removed, self._overlap)

    def feed(self, delta: str) -> str:
        """Take the next piece of the continuation; return the text now safe to show."""
        if self._ended:
            raise LocalProtocolError("Stitcher.feed() called after end()", kind="feed_after_end")
        if self._overlap is not None:
            return self._space_filter(delta) if self._space is not _SeamSpace.KEEP else delta
        self._buf += delta
        return self._try_decide(final=False)

    def end(self) -> str:
        """The continuation ended: decide with what arrived and return the rest."""
        if self._ended:
            raise LocalProtocolError("Stitcher.end() called twice", kind="end_twice")
        self._ended = True
        if self._overlap is not None:
            return ""
        return self._try_decide(final=True)

    def _try_decide(self, *, final: bool) -> str:
        buf = self._buf
        n = len(buf)
        window = self._window
        # Exact candidates: the continuation starts with window[-k:]. Compare
        # only the characters that arrived since the last call.
        if self._exact:
            lo = self._checked_exact
            alive = []
            for k in self._exact:
                hi = min(n, k)
                if lo >= hi or buf[lo:hi] == window[len(window) - k + lo : len(window) - k + hi]:
                    alive.append(k)
            self._exact = alive
            self._checked_exact = n
            if not final and any(k > n for k in alive):
                return ""  # a longer repeat is still possible: hold back
            confirmed = [k for k in alive if k <= n]
            if confirmed:
                k = max(confirmed)
                return self._decide(k, buf[:k], self._stripped_space(), buf[k:])
        # Relaxed candidates: whitespace at the seam ignored.
        if self._relaxed:
            if self._lead is None:
                stripped = buf.lstrip()
                if not stripped:
                    if not final and n < self._max_overlap:
                        return ""
                    self._relaxed = []
                else:
                    self._lead = n - len(stripped)
            if self._lead is not None and self._relaxed:
                lead = self._lead
                body_len = n - lead
                lo = self._checked_relaxed
                core = self._core
                alive = []
                for k in self._relaxed:
                    if lead + k > self._max_overlap:
                        continue
                    hi = min(body_len, k)
                    start = len(core) - k
                    if lo >= hi or buf[lead + lo : lead + hi] == core[start + lo : start + hi]:
                        alive.append(k)
                self._relaxed = alive
                self._checked_relaxed = body_len
                if not final and any(k > body_len for k in alive):
                    return ""
                confirmed = [k for k in alive if k <= body_len]
                if confirmed:
                    k = max(confirmed)
                    space = _SeamSpace.DROP_ALL if self._trailing_space else _SeamSpace.KEEP
                    return self._decide(lead + k, buf[lead : lead + k], space, buf[lead + k :])
        return self._decide(0, "", self._stripped_space(), buf)

    def _stripped_space(self) -> _SeamSpace:
        return _SeamSpace.MATCH_STRIPPED if self._stripped else _SeamSpace.KEEP

    def _decide(self, removed: int, overlap: str, space: _SeamSpace, rest: str) -> str:
        self._overlap = overlap
        self._removed = removed
        self._space = space
        self._space_left = self._stripped
        self._buf = ""
        self._exact = self._relaxed = []
        if space is _SeamSpace.KEEP or not rest:
            return rest
        return self._space_filter(rest)

    def _space_filter(self, text: str) -> str:
        """Drop the seam's leading whitespace that is already shown; then pass text through."""
        index = 0
        if self._space is _SeamSpace.MATCH_STRIPPED:
            left = self._space_left
            while index < len(text) and index < len(left) and text[index] == left[index]:
                index += 1
            self._space_left = left[index:]
            done = index < len(text) or not self._space_left
        else:
            while index < len(text) and text[index].isspace():
                index += 1
            done = index < len(text)
        self._removed += index
        if done:
            self._space = _SeamSpace.KEEP
        return text[index:] if index else text


# ---------------------------------------------------------------------------
# The attempts ledger


class AttemptKind(enum.Enum):
    """Why an attempt was made."""

    INITIAL = "initial"
    RETRY = "retry"
    """The original request again, from scratch."""
    RESUME = "resume"
    """A continuation with the partial answer in context."""
    REPLAY = "replay"
    """A replay of a stored stream (no new generation)."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt and what it cost.

    ``outcome`` is how it ended (a machine state name such as
    ``"interrupted"``); ``usage`` is what the provider reported, if anything;
    ``estimated_output_tokens`` is the driver's own count
    (:class:`~streamcore.tokens.TokenCounter`), used when the provider reported
    no output tokens -- a dropped stream usually ends before its usage event.
    """

    number: int
    kind: AttemptKind
    outcome: str
    usage: Usage | None = None
    estimated_output_tokens: int | None = None
    text_chars: int = 0


def _add(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


class Attempts:
    """The ledger of every attempt at one answer, so that retries show their cost.

    >>> ledger = Attempts()
    >>> _ = ledger.record(AttemptKind.INITIAL, "interrupted", estimated_output_tokens=120)
    >>> _ = ledger.record(
    ...     AttemptKind.RESUME, "completed", usage=Usage(input_tokens=900, output_tokens=80)
    ... )
    >>> ledger.total_usage()
    Usage(input_tokens=900, output_tokens=80, cached_tokens=None, reasoning_tokens=None)
    >>> ledger.output_tokens()  # reported where known, estimated elsewhere
    200
    """

    __slots__ = ("_max", "_records")

    def __init__(self, *, max_records: int = 1000) -> None:
        self._records: list[AttemptRecord] = []
        self._max = max_records

    def record(
        self,
        kind: AttemptKind,
        outcome: str,
        *,
        usage: Usage | None = None,
        estimated_output_tokens: int | None = None,
        text_chars: int = 0,
    ) -> AttemptRecord:
        """Add the attempt that just ended; returns its record (numbered from 1)."""
        if len(self._records) >= self._max:
            raise LocalProtocolError(
                f"more than {self._max} attempts recorded for one answer; a retry loop "
                "is not bounded by its policy's max_attempts",
                kind="too_many_attempts",
            )
        entry = AttemptRecord(
            len(self._records) + 1, kind, outcome, usage, estimated_output_tokens, text_chars
        )
        self._records.append(entry)
        return entry

    @property
    def records(self) -> tuple[AttemptRecord, ...]:
        """Every attempt so far, in order."""
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def total_usage(self) -> Usage:
        """Provider-reported usage summed over attempts (``None`` where never reported)."""
        total = Usage()
        for entry in self._records:
            if entry.usage is not None:
                u = entry.usage
                total = Usage(
                    _add(total.input_tokens, u.input_tokens),
                    _add(total.output_tokens, u.output_tokens),
                    _add(total.cached_tokens, u.cached_tokens),
                    _add(total.reasoning_tokens, u.reasoning_tokens),
                )
        return total

    def output_tokens(self) -> int | None:
        """Output tokens over all attempts: reported where known, else the estimate."""
        total: int | None = None
        for entry in self._records:
            reported = entry.usage.output_tokens if entry.usage is not None else None
            total = _add(total, reported if reported is not None else entry.estimated_output_tokens)
        return total
