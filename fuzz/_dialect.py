"""What the dialect fuzz harnesses share: input layout, runs, the event-model invariants.

Not a harness itself (``run_all.py`` only runs ``fuzz_*.py``); each
``fuzz_dialect_<name>.py`` names its decoder, its vocabulary of real wire
pieces and any invariant only its dialect has, and leaves the rest here.

Input layout (every dialect): byte 0 picks the mode -- below 0x80 the rest is
the raw body; otherwise the rest drives a FuzzedDataProvider that builds a body
out of real pieces from ``tests/transcripts/<dialect>/`` (see :func:`body_from`),
which reaches the dialect's grammar far more often than random bytes do. Byte 1
seeds the chunk sizes.

Invariants every dialect gets:

* only :class:`~streamcore.RemoteProtocolError` escapes the decoder, and a
  decoder that raised keeps raising the same error (:func:`drive`);
* feeding the body whole, in random chunks and (up to 2 KiB) byte by byte
  gives the same events, the same error kind and the same
  ``complete``/``truncated`` flags (:func:`check_chunkings`);
* ``StreamEnd`` at most once, exactly when ``complete``, and last (or followed
  only by keep-alives) (:func:`check_stream_end`); a tool call's deltas and end
  follow its start and its key is never reused (:class:`ToolCalls`); no empty
  text pieces (:func:`check_not_empty`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import atheris
from _harness import assert_keeps_raising, bytewise, random_chunks

from streamcore import RemoteProtocolError
from streamcore.events import (
    Event,
    KeepAlive,
    ReasoningDelta,
    Refusal,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from streamcore.providers import DialectDecoder

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "transcripts"
# Byte-by-byte feeding costs a call per byte: only for bodies this small, so that
# the fuzzer keeps its pace (random chunks of 1..64 bytes cover the rest).
BYTEWISE_MAX = 2048


# --------------------------------------------------------------------------- inputs


def transcript_pieces(
    dialect: str, separator: bytes, *, skip_prefix: str | None = None
) -> list[list[bytes]]:
    """Each transcript of ``dialect`` as its pieces (SSE events, lines), separator kept.

    Transcripts whose file name starts with ``skip_prefix`` are left out.
    """
    return [
        [piece + separator for piece in path.read_bytes().split(separator) if piece.strip()]
        for path in sorted((TRANSCRIPTS / dialect).glob("*.txt"))
        if skip_prefix is None or not path.name.startswith(skip_prefix)
    ]


def vocabulary(transcripts: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Every distinct piece of every transcript, in a stable order."""
    return sorted({piece for pieces in transcripts for piece in pieces})


def concatenated(fdp: atheris.FuzzedDataProvider, pieces: Sequence[bytes], most: int) -> bytes:
    """Up to ``most`` pieces in any order, any number of times."""
    count = fdp.ConsumeIntInRange(0, most)
    return b"".join(pieces[fdp.ConsumeIntInRange(0, len(pieces) - 1)] for _ in range(count))


def edited(
    fdp: atheris.FuzzedDataProvider, bases: Sequence[Sequence[bytes]], pieces: Sequence[bytes]
) -> bytes:
    """One transcript with up to 4 edits: drop, duplicate or swap a piece, or insert one.

    Real pieces in almost-real orders reach a dialect's per-item machines far
    more often than shuffled pieces do.
    """
    events = list(bases[fdp.ConsumeIntInRange(0, len(bases) - 1)])
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        op = fdp.ConsumeIntInRange(0, 3)
        at = fdp.ConsumeIntInRange(0, max(len(events) - 1, 0))
        if op == 0 and events:
            del events[at]
        elif op == 1 and events:
            events.insert(at, events[at])
        elif op == 2 and events:
            other = fdp.ConsumeIntInRange(0, len(events) - 1)
            events[at], events[other] = events[other], events[at]
        else:
            events.insert(at, pieces[fdp.ConsumeIntInRange(0, len(pieces) - 1)])
    return b"".join(events)


def maybe_cut(fdp: atheris.FuzzedDataProvider, body: bytes) -> tuple[bytes, bool]:
    """A cut anywhere and garbage after it, or else the body as built; and whether cut."""
    if not fdp.ConsumeBool():
        return body, False
    return body[: fdp.ConsumeIntInRange(0, len(body))] + fdp.ConsumeBytes(
        fdp.remaining_bytes()
    ), True


def structured(data: bytes) -> atheris.FuzzedDataProvider | None:
    """The provider driving a structured body, or ``None`` when the body is raw."""
    return None if data[0] < 0x80 else atheris.FuzzedDataProvider(data[2:])


def body_from(data: bytes, build: Callable[[atheris.FuzzedDataProvider], bytes]) -> bytes:
    """The raw body, or one ``build`` makes of real pieces, maybe cut with garbage after."""
    fdp = structured(data)
    if fdp is None:
        return data[2:]
    return maybe_cut(fdp, build(fdp))[0]


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Outcome:
    events: str  # repr(): RawEvent/ProviderError payloads are excluded from ==
    error_kind: str | None
    complete: bool
    truncated: bool
    extra: object = None  # anything else a dialect exposes that chunking must not change


def drive(
    decoder: DialectDecoder, chunks: list[bytes], after_feed: Callable[[], None] | None = None
) -> tuple[list[Event], str | None]:
    """Feed ``chunks`` and end; the events and the error kind (a failure must stick)."""
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
            if after_feed is not None:
                after_feed()
        events += decoder.end()
    except RemoteProtocolError as exc:
        assert_keeps_raising(exc, (lambda: decoder.feed(b"\n"), decoder.end))
        return events, exc.kind
    return events, None


def run(
    decoder: DialectDecoder,
    chunks: list[bytes],
    check_model: Callable[[list[Event], bool], None],
) -> Outcome:
    """:func:`drive`, then the model check, as an :class:`Outcome`."""
    events, error = drive(decoder, chunks)
    check_model(events, decoder.complete)
    return Outcome(repr(events), error, decoder.complete, decoder.truncated)


def check_chunkings(body: bytes, seed: int, run: Callable[[list[bytes]], Outcome]) -> Outcome:
    """Whole, random chunks and (small bodies) byte by byte agree; returns the whole run."""
    whole = run([body])
    chunked = run(random_chunks(body, seed))
    assert chunked == whole, ("random chunks", chunked, whole)
    if len(body) <= BYTEWISE_MAX:
        each = run(bytewise(body))
        assert each == whole, ("byte by byte", each, whole)
    return whole


def check_input(
    data: bytes,
    build: Callable[[atheris.FuzzedDataProvider], bytes],
    make_decoder: Callable[[], DialectDecoder],
    check_model: Callable[[list[Event], bool], None],
) -> Outcome | None:
    """The whole check of one fuzz input: its body (:func:`body_from`), every chunking."""
    if len(data) < 2:
        return None
    body = body_from(data, build)
    return check_chunkings(body, data[1], lambda chunks: run(make_decoder(), chunks, check_model))


# --------------------------------------------------------------------------- model


def check_stream_end(events: list[Event], complete: bool, *, keepalives_after: bool) -> None:
    """``StreamEnd`` at most once and exactly when ``complete``; last, or then keep-alives."""
    ends = [i for i, e in enumerate(events) if type(e) is StreamEnd]
    assert len(ends) <= 1, events
    assert bool(ends) == complete, ("StreamEnd exactly when complete", events)
    if not ends:
        return
    if keepalives_after:
        # SSE comments after the marker still arrive as keep-alives (the base
        # decoder's rule; the stream machine absorbs them); nothing else may.
        after = events[ends[0] + 1 :]
        assert all(type(e) is KeepAlive for e in after), (
            "only keep-alives after StreamEnd",
            events,
        )
    else:
        assert ends[0] == len(events) - 1, ("StreamEnd is the last event", events)


def by_choice(event: ToolCallStart | ToolCallDelta | ToolCallEnd) -> Hashable:
    return (event.choice, event.index)


class ToolCalls:
    """A tool call's key is started once; its deltas and end only while it is open."""

    def __init__(
        self,
        key: Callable[[ToolCallStart | ToolCallDelta | ToolCallEnd], Hashable] = by_choice,
        *,
        nonempty_arguments: bool = False,
    ) -> None:
        self._key = key
        self._nonempty_arguments = nonempty_arguments
        self.open: set[Hashable] = set()
        self._seen: set[Hashable] = set()

    def check(self, event: Event) -> bool:
        """Check ``event`` if it is a tool-call event (then True)."""
        if type(event) is ToolCallStart:
            key = self._key(event)
            assert key not in self._seen, f"tool call index reused: {event}"
            self._seen.add(key)
            self.open.add(key)
        elif type(event) is ToolCallDelta:
            assert self._key(event) in self.open, f"delta of no open call: {event}"
            if self._nonempty_arguments:
                assert event.arguments, "empty ToolCallDelta"
        elif type(event) is ToolCallEnd:
            key = self._key(event)
            assert key in self.open, f"end of no open call: {event}"
            self.open.remove(key)
        else:
            return False
        return True


def check_not_empty(event: Event, *, signatures: bool) -> None:
    """No empty text pieces; with ``signatures`` a reasoning piece may be a bare signature."""
    if type(event) is ReasoningDelta and signatures:
        assert event.text or event.signature, "empty ReasoningDelta"
    elif isinstance(event, TextDelta | ReasoningDelta | Refusal):
        assert event.text, f"empty {type(event).__name__}"


def check_common_model(events: list[Event], complete: bool) -> None:
    """The model of a dialect with no invariant of its own (Anthropic, Gemini, Ollama)."""
    check_stream_end(events, complete, keepalives_after=False)
    calls = ToolCalls()
    for event in events:
        if not calls.check(event):
            check_not_empty(event, signatures=True)
