"""The recovery executor: carries out the core's plans for one answer, attempt after attempt.

Theory of operation
-------------------
:mod:`streamcore.recovery` decides; this module executes. One
:class:`RecoveryExecutor` follows one answer -- everything the user sees between
opening a stream and its end -- across as many attempts as the policy allows.
The transport driver (:mod:`streamcore.adapters.client`) runs each attempt and
reports its :class:`~streamcore.machine.Outcome` to :meth:`RecoveryExecutor.finish_attempt`,
which records the attempt in the usage ledger
(:class:`~streamcore.recovery.Attempts`), describes the failure to
:func:`~streamcore.recovery.decide`, and turns the decision into the next
:class:`AttemptPlan` plus one event for the user:

* :class:`Retrying` -- the original request again, after a backoff with full
  jitter (the server's ``Retry-After`` is a floor). Before the first token this
  loses nothing; after it (only a policy with ``before_first_token_only=False``,
  such as :data:`BACKGROUND`, does that) the text delivered so far is
  discarded, and ``discarded_chars`` says how much.
* :class:`Resuming` -- a continuation: the partial answer goes back to the model
  as context (:func:`~streamcore.recovery.plan_resume`: an Anthropic prefill, or
  an assistant turn plus a "continue" instruction), and its stream is joined
  onto what the user already has by a :class:`~streamcore.recovery.Stitcher`,
  which removes the words the model repeats. Once the stitcher has decided, a
  :class:`Stitched` event says where the seam is. A Responses API *background*
  response is replayed from the last ``sequence_number`` instead: nothing is
  generated twice and there is nothing to stitch.
* :class:`Interrupted` -- no further attempt (the failure is not transient,
  attempts are used up, the server asks to wait too long, the caller's budget
  or cancel): the answer so far is final, to be shown with ``marker``, which
  says why.

So the user-facing text is one uninterrupted answer: the concatenation of every
:class:`~streamcore.events.TextDelta` of choice 0 the stream yields (after a
:class:`Retrying` with ``discarded_chars``, start again from there).

The executor does no I/O: the driver sleeps ``AttemptPlan.delay`` (with
``trio.sleep``, so tests run under ``MockClock``), and the only randomness is
the jitter draw from the ``rng`` given to it.

Policies
--------
Two presets from :mod:`streamcore.recovery`, re-exported here:

* :data:`USER_FACING` (the default of :func:`~streamcore.adapters.client.open_stream`):
  someone watches the answer appear. Generous deadlines (connect 15 s, first
  token 120 s for reasoning models, 60 s of silence mid-answer), at most 3
  attempts with short waits (under 4 s; a ``Retry-After`` above 10 s is not
  waited for), and a cut-off answer is *resumed*, so what the user read stays.
* :data:`BACKGROUND`: a batch job. Deadlines that fail fast (20 s of silence,
  10 minutes per attempt), patient retries (6 attempts, waits up to a minute,
  ``Retry-After`` honoured up to 5 minutes), and a cut-off answer is
  *restarted* from scratch (a clean answer, no seam), its cost kept in the ledger.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace

from streamcore._errors import LocalProtocolError
from streamcore.accumulate import ChoiceResult, FinalMessage
from streamcore.events import Event, ProviderError, Usage
from streamcore.machine import Outcome, State
from streamcore.recovery import (
    BACKGROUND,
    USER_FACING,
    AttemptKind,
    AttemptRecord,
    Attempts,
    ContinueWithContext,
    FailGracefully,
    Failure,
    FailureKind,
    RecoveryPolicy,
    ReplayFromSequence,
    ResumeWithContext,
    RetryFromScratch,
    Seam,
    Stitcher,
    decide,
    plan_resume,
)
from streamcore.request import ChatRequest

__all__ = [
    "BACKGROUND",
    "USER_FACING",
    "AttemptPlan",
    "Interrupted",
    "RecoveryEvent",
    "RecoveryExecutor",
    "ResumeMode",
    "Resuming",
    "Retrying",
    "Stitched",
    "StreamEvent",
    "StreamResult",
]

# One generator for every executor that is not given its own: jitter needs no
# independent streams, and a Random's state weighs about 2.5 KB per stream.
_SHARED_RNG = random.Random()


# --------------------------------------------------------------------------- events


class ResumeMode(enum.Enum):
    """How a continuation carries the partial answer."""

    PREFILL = "prefill"
    """The partial answer is the start of the model's own turn (Anthropic prefill)."""
    CONTINUE = "continue"
    """The partial answer as an assistant turn, then a user turn asking to continue."""
    REPLAY = "replay"
    """The stored stream is sent again after the last event received (Responses API)."""


@dataclass(frozen=True, slots=True)
class Retrying:
    """Attempt ``attempt - 1`` failed; attempt ``attempt`` sends the original request again.

    It starts after ``delay`` seconds. ``discarded_chars`` is how much of the
    text already delivered the new attempt replaces (0 before the first token):
    drop that much from what you show. Partial tool calls and reasoning of the
    failed attempt are discarded too.
    """

    attempt: int
    delay: float
    reason: str
    failed_state: State
    discarded_chars: int = 0


@dataclass(frozen=True, slots=True)
class Resuming:
    """Attempt ``attempt - 1`` was cut off after ``partial_chars`` characters of text;
    attempt ``attempt`` continues it (see :class:`ResumeMode`) after ``delay`` seconds.

    Keep what you show: the continuation's text follows it seamlessly.
    """

    attempt: int
    delay: float
    reason: str
    failed_state: State
    mode: ResumeMode
    partial_chars: int


@dataclass(frozen=True, slots=True)
class Stitched:
    """The continuation of attempt ``attempt`` joined the answer at ``seam``.

    ``seam.offset`` is a position in the text delivered so far (everything
    before it came from earlier attempts); ``seam.overlap`` is the repeat
    that was removed there (empty when the model did not repeat itself).
    """

    attempt: int
    seam: Seam


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The answer stops here, incomplete: nothing more will come.

    ``partial`` says whether any answer text was delivered; show ``marker``
    after it (it contains ``reason``). ``state`` is how the last attempt ended.
    """

    state: State
    reason: str
    marker: str
    partial: bool


RecoveryEvent = Retrying | Resuming | Stitched | Interrupted
"""What the executor tells the user between (and across) attempts."""

StreamEvent = Event | RecoveryEvent
"""Everything a stream yields: the provider's events, and the recovery events."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class StreamResult:
    """The whole answer, however it ended, and what it cost.

    ``message`` is the answer: ``text`` is every attempt's delivered text
    joined (seams stitched); tool calls, finish reason and the rest come from
    the last attempt; ``usage`` is summed over every attempt the provider
    reported usage for. ``state`` is how the last attempt ended, ``completed``
    whether the answer is whole, ``interruption`` why not. ``attempts`` is the
    ledger (one record per attempt, with the driver's token estimate where
    the provider reported none); ``outcomes`` every attempt's
    :class:`~streamcore.machine.Outcome`, with its timings. Times are seconds
    of the driver's clock: ``time_to_first_token`` from opening the stream to
    the first token of any attempt, ``total_time`` to the end.
    """

    message: FinalMessage
    state: State
    completed: bool
    interruption: Interrupted | None
    attempts: tuple[AttemptRecord, ...]
    usage: Usage
    output_tokens: int | None
    """Output tokens over every attempt: reported where known, estimated elsewhere."""
    seams: tuple[Seam, ...]
    outcomes: tuple[Outcome, ...]
    time_to_first_token: float | None
    total_time: float

    @property
    def text(self) -> str:
        """The answer text (choice 0)."""
        return self.message.text

    def display_text(self) -> str:
        """The text to show: the answer, followed by the interruption marker if it was cut.

        >>> from streamcore.accumulate import FinalMessage
        >>> cut = Interrupted(State.INTERRUPTED, "the connection dropped mid-answer",
        ...                   "[answer interrupted: the connection dropped mid-answer]", True)
        >>> result = StreamResult(FinalMessage(text="The capital of France is"),
        ...     State.INTERRUPTED, False, cut, (), Usage(), None, (), (), None, 1.0)
        >>> print(result.display_text())
        The capital of France is
        [answer interrupted: the connection dropped mid-answer]
        """
        if self.interruption is None:
            return self.text
        if not self.text:
            return self.interruption.marker
        sep = "" if self.text.endswith("\n") else "\n"
        return f"{self.text}{sep}{self.interruption.marker}"


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    """The attempt to make next: its number, why, when, and what to send.

    ``request`` is the chat request (the original, or a continuation that
    carries the partial answer); ``replay`` is set instead when the stored
    stream is to be streamed again (the driver then sends a ``GET`` and
    decodes with the previous decoder's ``resumed()`` twin).
    """

    number: int
    kind: AttemptKind
    delay: float
    request: ChatRequest
    replay: ReplayFromSequence | None = None


# --------------------------------------------------------------------------- executor


class RecoveryExecutor:
    """Runs the core's recovery decisions for one answer (see the module docstring).

    The driver's loop::

        executor = RecoveryExecutor(request, "anthropic", USER_FACING)
        while not executor.done:
            plan = executor.plan            # sleep plan.delay, then send plan.request
            ...                             # text deltas of choice 0 go through
            ...                             # executor.stitch() while executor.stitching
            executor.flush()                # at the attempt's end (leftover text, seam)
            event = executor.finish_attempt(outcome, estimated_output_tokens=n)

    ``dialect`` names the provider API as :func:`~streamcore.recovery.plan_resume`
    knows it (``"anthropic"``, ``"openai"``, ``"responses"``, ``"gemini"``,
    ``"ollama"``). ``rng`` draws the backoff jitter (pass a seeded
    ``random.Random`` for reproducible waits).

    >>> from streamcore.events import TextDelta
    >>> from streamcore.machine import StreamMachine
    >>> from streamcore.request import ChatRequest, Message
    >>> request = ChatRequest("claude-sonnet-4-5", (Message("user", "Write a pangram."),))
    >>> executor = RecoveryExecutor(request, "anthropic", USER_FACING, rng=random.Random(7))
    >>> m = StreamMachine(now=0.0)
    >>> m.response_started(200, now=0.1)
    >>> m.receive(TextDelta("The quick brown fox jumps over the "), now=0.2)
    >>> m.body_ended(now=0.3)  # dropped mid-answer
    >>> event = executor.finish_attempt(m.outcome)
    >>> type(event).__name__, event.mode.value, executor.plan.request.messages[-1].content
    ('Resuming', 'prefill', 'The quick brown fox jumps over the')
    >>> executor.stitch(" jumps over the")  # the model repeats itself: held, then removed
    ('', Stitched(attempt=2, seam=Seam(offset=35, removed=15, overlap=' jumps over the')))
    >>> executor.stitch(" lazy dog.")
    ('lazy dog.', None)
    >>> executor.text()
    'The quick brown fox jumps over the lazy dog.'
    """

    __slots__ = (
        "_chars",
        "_dialect",
        "_done",
        "_interruption",
        "_ledger",
        "_outcomes",
        "_parts",
        "_plan",
        "_policy",
        "_request",
        "_rng",
        "_seam_reported",
        "_seams",
        "_shift",
        "_stitcher",
        "_tokens_delivered",
    )

    def __init__(
        self,
        request: ChatRequest,
        dialect: str,
        policy: RecoveryPolicy = USER_FACING,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._request = request
        self._dialect = dialect
        self._policy = policy
        self._rng = rng if rng is not None else _SHARED_RNG
        self._ledger = Attempts(max_records=policy.retry.max_attempts)
        self._plan = AttemptPlan(1, AttemptKind.INITIAL, 0.0, request)
        self._parts: list[str] = []  # the text delivered, by the attempts whose text counts
        self._chars = 0
        self._tokens_delivered = 0  # output tokens behind the delivered text
        self._stitcher: Stitcher | None = None
        self._shift = 0  # partial_text of the resume plan minus the delivered text
        self._seam_reported = True
        self._seams: list[Seam] = []
        self._outcomes: list[Outcome] = []
        self._interruption: Interrupted | None = None
        self._done = False

    # --- what the driver reads

    @property
    def plan(self) -> AttemptPlan:
        """The attempt to make now (or the last one made, once :attr:`done`)."""
        return self._plan

    @property
    def done(self) -> bool:
        """Whether the answer is over: completed, or interrupted for good."""
        return self._done

    @property
    def stitching(self) -> bool:
        """Whether the current attempt's text must go through :meth:`stitch`."""
        return self._stitcher is not None

    @property
    def delivered_chars(self) -> int:
        """Characters of answer text delivered by finished attempts (since the last restart)."""
        return self._chars

    @property
    def ledger(self) -> Attempts:
        """Every finished attempt and its usage."""
        return self._ledger

    # --- the text of a resumed attempt

    def stitch(self, text: str) -> tuple[str, Stitched | None]:
        """Join a text delta of the continuation; returns the text to show now, and the
        :class:`Stitched` event the moment the seam is decided (show it before the text)."""
        stitcher = self._stitcher
        if stitcher is None:
            raise LocalProtocolError(
                "stitch() called while no continuation is being joined; check `stitching` first",
                kind="not_stitching",
            )
        shown = stitcher.feed(text)
        if shown:
            self._parts.append(shown)
            self._chars += len(shown)
        return shown, self._seam_event()

    def flush(self) -> tuple[str, Stitched | None]:
        """The continuation's text is over (its choice finished, or the attempt ended):
        the text the stitcher still held, and the seam if it was decided only now."""
        stitcher = self._stitcher
        if stitcher is None:
            return "", None
        self._stitcher = None
        shown = stitcher.end() if not stitcher.decided else ""
        if shown:
            self._parts.append(shown)
            self._chars += len(shown)
        seam_event = self._seam_event(stitcher)
        return shown, seam_event

    def _seam_event(self, stitcher: Stitcher | None = None) -> Stitched | None:
        stitcher = stitcher or self._stitcher
        if self._seam_reported or stitcher is None:
            return None
        seam = stitcher.seam
        if seam is None:
            return None
        self._seam_reported = True
        seam = Seam(seam.offset - self._shift, seam.removed, seam.overlap)
        self._seams.append(seam)
        return Stitched(self._plan.number, seam)

    # --- the end of an attempt

    def finish_attempt(
        self,
        outcome: Outcome,
        *,
        estimated_output_tokens: int | None = None,
        resume_point: tuple[str, int] | None = None,
    ) -> RecoveryEvent | None:
        """Record the attempt that just ended and decide what follows.

        Returns the event to show the user -- :class:`Retrying`,
        :class:`Resuming` (then :attr:`plan` is the next attempt) or
        :class:`Interrupted` -- or ``None`` when the answer completed.
        ``estimated_output_tokens`` is the driver's count of the attempt's
        output; ``resume_point`` the ``(response_id, last_sequence_number)``
        of a Responses API *background* stream that can be replayed.
        Call :meth:`flush` first when the attempt was a continuation.
        """
        if self._done:
            raise LocalProtocolError(
                "finish_attempt() called after the answer was over", kind="answer_over"
            )
        if self._stitcher is not None:
            self.flush()
        plan = self._plan
        message = outcome.message
        if plan.kind is not AttemptKind.RESUME and message.text:
            # Not stitched: the attempt's own text is what the user got.
            self._parts.append(message.text)
            self._chars += len(message.text)
        self._outcomes.append(outcome)
        usage = message.usage
        self._ledger.record(
            plan.kind,
            outcome.state.value,
            usage=usage,
            estimated_output_tokens=estimated_output_tokens,
            text_chars=len(message.text),
        )
        reported = usage.output_tokens if usage is not None else None
        used = reported if reported is not None else estimated_output_tokens
        self._tokens_delivered += used or 0
        if outcome.state is State.COMPLETED:
            self._done = True
            return None
        failure = Failure(
            FailureKind(outcome.state.value),
            text_received=self._chars > 0,
            status=outcome.status,
            error_type=outcome.error.type if isinstance(outcome.error, ProviderError) else None,
            retry_after=outcome.retry_after,
            reason=outcome.reason,
        )
        decision = decide(self._policy, failure, attempt=plan.number, rng_value=self._rng.random())
        if isinstance(decision, RetryFromScratch):
            discarded = self._chars
            self._parts.clear()
            self._chars = 0
            self._tokens_delivered = 0
            self._plan = AttemptPlan(
                decision.attempt, AttemptKind.RETRY, decision.delay, self._request
            )
            return Retrying(
                decision.attempt, decision.delay, decision.reason, outcome.state, discarded
            )
        if isinstance(decision, ResumeWithContext):
            return self._resume(decision, outcome.state, resume_point)
        return self._interrupt(decision, outcome.state)

    def _resume(
        self, decision: ResumeWithContext, state: State, resume_point: tuple[str, int] | None
    ) -> RecoveryEvent:
        partial = self.text()
        request = self._request
        try:
            plan = plan_resume(
                request,
                partial,
                self._dialect,
                response_id=resume_point[0] if resume_point else None,
                last_sequence_number=resume_point[1] if resume_point else None,
                output_tokens_used=self._tokens_delivered if request.max_tokens else None,
            )
        except LocalProtocolError as exc:
            policy = self._policy
            why = f"{decision.reason}; cannot resume: {exc}"
            return self._interrupt(
                FailGracefully(why, policy.marker.format(reason=why), bool(partial)), state
            )
        if isinstance(plan, ReplayFromSequence):
            self._plan = AttemptPlan(
                decision.attempt, AttemptKind.REPLAY, decision.delay, request, replay=plan
            )
            mode = ResumeMode.REPLAY
        else:
            assert isinstance(plan, ContinueWithContext)
            policy = self._policy
            self._stitcher = plan.stitcher(
                max_overlap=policy.stitch_max_overlap, min_overlap=policy.stitch_min_overlap
            )
            self._seam_reported = False
            self._shift = len(plan.partial_text) - len(partial)
            self._plan = AttemptPlan(
                decision.attempt, AttemptKind.RESUME, decision.delay, plan.request
            )
            mode = ResumeMode.PREFILL if plan.prefill else ResumeMode.CONTINUE
        return Resuming(
            decision.attempt, decision.delay, decision.reason, state, mode, len(partial)
        )

    def cancel(self, reason: str) -> Interrupted:
        """The caller stopped the answer outside an attempt (before the first, or while
        waiting for the next): the answer is over, as it stands."""
        if self._interruption is not None:
            return self._interruption
        self._stitcher = None
        marker = self._policy.marker.format(reason=reason)
        return self._interrupt(FailGracefully(reason, marker, self._chars > 0), State.CANCELLED)

    def _interrupt(self, decision: FailGracefully, state: State) -> Interrupted:
        self._done = True
        self._interruption = Interrupted(state, decision.reason, decision.marker, decision.partial)
        return self._interruption

    # --- the answer

    def text(self) -> str:
        """The answer text delivered so far (finished attempts, then the current stitched one)."""
        parts = self._parts
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    def result(self, *, time_to_first_token: float | None, total_time: float) -> StreamResult:
        """The :class:`StreamResult` of the answer; call once :attr:`done`."""
        if not self._done:
            raise LocalProtocolError(
                "the answer is not over yet: read the stream to its end first",
                kind="not_finished",
            )
        text = self.text()
        usage = self._ledger.total_usage()
        if self._outcomes:
            last_state, message = self._outcomes[-1].state, self._outcomes[-1].message
        else:
            last_state, message = State.CANCELLED, FinalMessage()
        if self._interruption is not None:
            last_state = self._interruption.state
        choices = message.choices
        if choices and choices[0].index == 0:
            choices = (replace(choices[0], text=text), *choices[1:])
        elif choices:
            choices = (ChoiceResult(0, text=text), *choices)
        message = replace(message, text=text, usage=usage, choices=choices)
        return StreamResult(
            message=message,
            state=last_state,
            completed=last_state is State.COMPLETED,
            interruption=self._interruption,
            attempts=self._ledger.records,
            usage=usage,
            output_tokens=self._ledger.output_tokens(),
            seams=tuple(self._seams),
            outcomes=tuple(self._outcomes),
            time_to_first_token=time_to_first_token,
            total_time=total_time,
        )
