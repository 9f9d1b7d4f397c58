"""Fuzz the OpenAI Chat Completions decoder: any body, any chunking.

Input layout: byte 0 picks the mode -- below 0x80 the rest is the raw body;
otherwise the rest drives a FuzzedDataProvider that takes one transcript from
tests/transcripts/openai_chat/ and edits it at the SSE-event level (drop,
duplicate or swap events, insert one from any transcript), then may cut the
result anywhere and append raw bytes. Real chunks in almost-real orders reach
the per-choice and tool-call machines far more often than random bytes do.
Byte 1 seeds the chunk sizes.

Invariants checked for every input:

* only :class:`~streamcore.RemoteProtocolError` escapes the decoder, and a
  decoder that raised keeps raising the same error;
* feeding the body whole, in random chunks and (up to 2 KiB) byte by byte
  gives the same events, the same error kind and the same
  ``complete``/``truncated`` flags;
* the events obey the model: ``StreamEnd`` at most once, exactly when
  ``complete``, followed by nothing but keep-alives; per choice, a tool
  call's deltas and end follow its start, its index is never reused, at most
  one ``Finish`` and no content after it; no empty text, reasoning, refusal
  or argument pieces; never two equal ``Usage`` events in a row.

Run: ``.venv/bin/python fuzz/fuzz_dialect_openai_chat.py -max_total_time=20``
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from streamcore import RemoteProtocolError
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
        Usage,
    )
    from streamcore.providers.openai_chat import OpenAIChatDecoder

_TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "transcripts" / "openai_chat"


def _events_of(data: bytes) -> list[bytes]:
    return [block + b"\n\n" for block in data.split(b"\n\n") if block.strip()]


_BASES = [_events_of(p.read_bytes()) for p in sorted(_TRANSCRIPTS.glob("*.txt"))]
_VOCABULARY = sorted({event for base in _BASES for event in base})
_MAX_LINE = 1024  # small, so the line limit is reached too
# Byte-by-byte feeding costs a call per byte: only for bodies this small, so that
# the fuzzer keeps its pace (random chunks of 1..64 bytes cover the rest).
_BYTEWISE_MAX = 2048


@dataclass(frozen=True)
class Outcome:
    events: str  # repr(): RawEvent/ProviderError payloads are excluded from ==
    error_kind: str | None
    complete: bool
    truncated: bool


def run(chunks: list[bytes]) -> Outcome:
    decoder = OpenAIChatDecoder(max_line_bytes=_MAX_LINE)
    events: list[Event] = []
    error: str | None = None
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
        events += decoder.end()
    except RemoteProtocolError as exc:
        error = exc.kind
        for call in (lambda: decoder.feed(b"\n"), decoder.end):
            try:
                call()
            except RemoteProtocolError as again:
                assert again is exc, "a failed decoder must keep raising the same error"
            else:
                raise AssertionError("a failed decoder accepted another call") from None
    check_model(events, complete=decoder.complete)
    return Outcome(repr(events), error, decoder.complete, decoder.truncated)


def check_model(events: list[Event], *, complete: bool) -> None:
    ends = [i for i, e in enumerate(events) if type(e) is StreamEnd]
    assert len(ends) <= 1, events
    assert bool(ends) == complete, ("StreamEnd exactly when complete", events)
    if ends:
        # SSE comments after the marker still arrive as keep-alives (the base
        # decoder's rule; the stream machine absorbs them); nothing else may.
        after = events[ends[0] + 1 :]
        assert all(type(e) is KeepAlive for e in after), (
            "only keep-alives after StreamEnd",
            events,
        )
    open_calls: set[tuple[int, int]] = set()
    seen_calls: set[tuple[int, int]] = set()
    finished: set[int] = set()
    last_usage: Usage | None = None
    for event in events:
        if type(event) is Usage:
            assert event != last_usage, ("the same usage twice in a row", events)
            last_usage = event
            continue
        if isinstance(event, TextDelta | ReasoningDelta | Refusal | ToolCallStart | ToolCallDelta):
            assert event.choice not in finished, ("content after the choice's Finish", event)
        if type(event) is ToolCallStart:
            key = (event.choice, event.index)
            assert key not in seen_calls, f"tool call index reused: {event}"
            seen_calls.add(key)
            open_calls.add(key)
        elif type(event) is ToolCallDelta:
            assert (event.choice, event.index) in open_calls, f"delta of no open call: {event}"
            assert event.arguments, "empty ToolCallDelta"
        elif type(event) is ToolCallEnd:
            assert (event.choice, event.index) in open_calls, f"end of no open call: {event}"
            open_calls.remove((event.choice, event.index))
        elif type(event) is Finish:
            assert event.choice not in finished, ("a second Finish for the choice", events)
            assert all(c != event.choice for c, _ in open_calls), ("Finish with calls open", events)
            finished.add(event.choice)
        elif isinstance(event, TextDelta | ReasoningDelta | Refusal):
            assert event.text, f"empty {type(event).__name__}"


def body_from(data: bytes) -> bytes:
    if data[0] < 0x80:
        return data[2:]
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
    body = b"".join(events)
    if fdp.ConsumeBool():  # a cut and garbage, or else the body as built
        body = body[: fdp.ConsumeIntInRange(0, len(body))] + fdp.ConsumeBytes(fdp.remaining_bytes())
    return body


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
    body = body_from(data)
    whole = run([body])
    chunked = run(random_chunks(body, data[1]))
    assert chunked == whole, ("random chunks", chunked, whole)
    if len(body) > _BYTEWISE_MAX:
        return
    bytewise = run([body[i : i + 1] for i in range(len(body))])
    assert bytewise == whole, ("byte by byte", bytewise, whole)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
