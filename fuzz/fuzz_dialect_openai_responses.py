"""Fuzz the OpenAI Responses decoder: any body, any chunking, any cut then resume.

Input layout: byte 0 picks the mode -- below 0x80 the rest is the raw body;
otherwise the rest drives a FuzzedDataProvider that takes one transcript from
tests/transcripts/openai_responses/ and edits it at the SSE-event level (drop,
duplicate or swap events, insert one from any transcript), renumbers the
``sequence_number`` fields so they grow again (else nearly every edit would
only test the sequence check), and may then cut the result anywhere and
append raw bytes. Byte 1 seeds the chunk sizes.

Invariants checked for every input:

* only :class:`~streamcore.RemoteProtocolError` escapes the decoder, and a
  decoder that raised keeps raising the same error;
* feeding the body whole, in random chunks and (up to 2 KiB) byte by byte
  gives the same events, the same error kind, the same
  ``complete``/``truncated`` flags and the same ``last_sequence_number``;
* the events obey the model: ``StreamEnd`` at most once, exactly when
  ``complete``, followed by nothing but keep-alives; a tool call's deltas and
  end follow its start and its index is never reused; at most one ``Finish``;
  no empty text, reasoning, refusal or argument pieces;
* resuming (edited transcripts without appended garbage): cut the body at a
  point the input picks, decode the part before the cut, then feed the *whole*
  body to :meth:`~OpenAIResponsesDecoder.resumed` (a server that replays from
  the start): the two runs together give exactly the events and error kind of
  the uncut run.

Run: ``.venv/bin/python fuzz/fuzz_dialect_openai_responses.py -max_total_time=20``
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from streamcore import LocalProtocolError, RemoteProtocolError
    from streamcore.events import (
        Event,
        Finish,
        KeepAlive,
        ReasoningDelta,
        Refusal,
        StreamEnd,
        TextDelta,
        ToolCallDelta,
        ToolCallEnd,
        ToolCallStart,
    )
    from streamcore.providers.openai_responses import OpenAIResponsesDecoder

_TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "transcripts" / "openai_responses"


def _events_of(data: bytes) -> list[bytes]:
    return [block + b"\n\n" for block in data.split(b"\n\n") if block.strip()]


_BASES = [_events_of(p.read_bytes()) for p in sorted(_TRANSCRIPTS.glob("*.txt"))]
_VOCABULARY = sorted({event for base in _BASES for event in base})
_SEQUENCE = re.compile(rb'"sequence_number":\d+')
_MAX_LINE = 2048  # small, so the line limit is reached too
_BYTEWISE_MAX = 2048


@dataclass(frozen=True)
class Outcome:
    events: str  # repr(): RawEvent/ProviderError payloads are excluded from ==
    error_kind: str | None
    complete: bool
    truncated: bool
    last_sequence_number: int | None


def feed(decoder: OpenAIResponsesDecoder, chunks: list[bytes]) -> tuple[list[Event], str | None]:
    events: list[Event] = []
    last = decoder.last_sequence_number
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
            now = decoder.last_sequence_number
            assert last is None or (now is not None and now >= last), "cursor went back"
            last = now
        events += decoder.end()
    except RemoteProtocolError as exc:
        for call in (lambda: decoder.feed(b"\n"), decoder.end):
            try:
                call()
            except RemoteProtocolError as again:
                assert again is exc, "a failed decoder must keep raising the same error"
            else:
                raise AssertionError("a failed decoder accepted another call") from None
        return events, exc.kind
    return events, None


def run(chunks: list[bytes]) -> Outcome:
    decoder = OpenAIResponsesDecoder(max_line_bytes=_MAX_LINE)
    events, error = feed(decoder, chunks)
    check_model(events, complete=decoder.complete)
    return Outcome(
        repr(events), error, decoder.complete, decoder.truncated, decoder.last_sequence_number
    )


def check_model(events: list[Event], *, complete: bool) -> None:
    ends = [i for i, e in enumerate(events) if type(e) is StreamEnd]
    assert len(ends) <= 1, events
    assert bool(ends) == complete, ("StreamEnd exactly when complete", events)
    if ends:
        after = events[ends[0] + 1 :]
        assert all(type(e) is KeepAlive for e in after), (
            "only keep-alives after StreamEnd",
            events,
        )
    open_calls: set[int] = set()
    seen_calls: set[int] = set()
    finishes = 0
    for event in events:
        if type(event) is ToolCallStart:
            assert event.index not in seen_calls, f"tool call index reused: {event}"
            seen_calls.add(event.index)
            open_calls.add(event.index)
        elif type(event) is ToolCallDelta:
            assert event.index in open_calls, f"delta of no open call: {event}"
            assert event.arguments, "empty ToolCallDelta"
        elif type(event) is ToolCallEnd:
            assert event.index in open_calls, f"end of no open call: {event}"
            open_calls.remove(event.index)
        elif type(event) is Finish:
            finishes += 1
            assert finishes == 1, ("a second Finish", events)
            assert not open_calls, ("Finish with calls open", events)
        elif isinstance(event, TextDelta | ReasoningDelta | Refusal):
            assert event.text, f"empty {type(event).__name__}"


def renumber(body: bytes) -> bytes:
    counter = iter(range(1 << 30))
    return _SEQUENCE.sub(lambda _: b'"sequence_number":%d' % next(counter), body)


def body_from(data: bytes) -> tuple[bytes, int | None]:
    """The body, and where to cut it for the resume check (None: no check)."""
    if data[0] < 0x80:
        return data[2:], None
    fdp = atheris.FuzzedDataProvider(data[2:])
    events = list(_BASES[fdp.ConsumeIntInRange(0, len(_BASES) - 1)])
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
            events.insert(at, _VOCABULARY[fdp.ConsumeIntInRange(0, len(_VOCABULARY) - 1)])
    body = renumber(b"".join(events))
    if fdp.ConsumeBool():  # a cut and garbage, or else the body as built
        cut = fdp.ConsumeIntInRange(0, len(body))
        return body[:cut] + fdp.ConsumeBytes(fdp.remaining_bytes()), None
    return body, fdp.ConsumeIntInRange(0, len(body))


def check_resume(body: bytes, cut: int, whole: Outcome) -> None:
    first = OpenAIResponsesDecoder(max_line_bytes=_MAX_LINE)
    before, error = feed(first, [body[:cut]])
    if error is not None:
        # The cut part already broke the grammar: the uncut body breaks it the same way.
        assert error == whole.error_kind, (error, whole)
        return
    try:
        resumed = first.resumed()
    except LocalProtocolError:
        return  # complete already, or cut before response.created / any sequence number
    after, error = feed(resumed, [body])
    assert (repr(before + after), error) == (whole.events, whole.error_kind), (
        "cut + resume differs from the uncut run",
        before,
        after,
        whole,
    )


def random_chunks(body: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(body):
        n = rng.randint(1, 64)
        chunks.append(body[i : i + n])
        i += n
    return chunks


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    body, resume_cut = body_from(data)
    whole = run([body])
    chunked = run(random_chunks(body, data[1]))
    assert chunked == whole, ("random chunks", chunked, whole)
    if resume_cut is not None:
        check_resume(body, resume_cut, whole)
    if len(body) > _BYTEWISE_MAX:
        return
    bytewise = run([body[i : i + 1] for i in range(len(body))])
    assert bytewise == whole, ("byte by byte", bytewise, whole)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
