"""Fuzz the Anthropic Messages decoder: any body, any chunking.

Input layout: byte 0 picks the mode -- below 0x80 the rest is the raw body;
otherwise the rest drives a FuzzedDataProvider that strings together real SSE
events taken from tests/transcripts/anthropic/ (in any order, any number), and
may cut the result anywhere and append raw bytes; that reaches the dialect's
grammar far more often than random bytes do. Byte 1 seeds the chunk sizes.

Invariants checked for every input:

* only :class:`~streamcore.RemoteProtocolError` escapes the decoder, and a
  decoder that raised keeps raising the same error;
* feeding the body whole, in random chunks and (up to 2 KiB) byte by byte
  gives the same events, the same error kind and the same
  ``complete``/``truncated`` flags;
* the events obey the model: ``StreamEnd`` at most once, last, and exactly
  when ``complete``; a tool call's deltas and end follow its start and its
  index is never reused; no empty text deltas.

Run: ``.venv/bin/python fuzz/fuzz_dialect_anthropic.py -max_total_time=20``
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
        ReasoningDelta,
        StreamEnd,
        TextDelta,
        ToolCallDelta,
        ToolCallEnd,
        ToolCallStart,
    )
    from streamcore.providers.anthropic import AnthropicDecoder

_TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "transcripts" / "anthropic"
# Every SSE event of every transcript, as the vocabulary of the structured mode.
_EVENTS = sorted(
    {
        block + b"\n\n"
        for path in sorted(_TRANSCRIPTS.glob("*.txt"))
        for block in path.read_bytes().split(b"\n\n")
        if block.strip()
    }
)
_MAX_LINE = 512  # small, so the line limit is reached too


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
    decoder = AnthropicDecoder(max_line_bytes=_MAX_LINE)
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
        events += decoder.end()
    except RemoteProtocolError as exc:
        for call in (lambda: decoder.feed(b"\n"), decoder.end):
            try:
                call()
            except RemoteProtocolError as again:
                assert again is exc, "a failed decoder must keep raising the same error"
            else:
                raise AssertionError("a failed decoder accepted another call") from None
        check_model(events, complete=decoder.complete)
        return Outcome(repr(events), exc.kind, decoder.complete, decoder.truncated)
    check_model(events, complete=decoder.complete)
    return Outcome(repr(events), None, decoder.complete, decoder.truncated)


def check_model(events: list[Event], *, complete: bool) -> None:
    ends = [i for i, e in enumerate(events) if type(e) is StreamEnd]
    assert len(ends) <= 1, events
    assert bool(ends) == complete, ("StreamEnd exactly when complete", events)
    if ends:
        assert ends[0] == len(events) - 1, ("StreamEnd is the last event", events)
    open_calls: set[tuple[int, int]] = set()
    seen_calls: set[tuple[int, int]] = set()
    for event in events:
        if type(event) is ToolCallStart:
            key = (event.choice, event.index)
            assert key not in seen_calls, f"tool call index reused: {event}"
            seen_calls.add(key)
            open_calls.add(key)
        elif type(event) is ToolCallDelta:
            assert (event.choice, event.index) in open_calls, f"delta of no open call: {event}"
        elif type(event) is ToolCallEnd:
            assert (event.choice, event.index) in open_calls, f"end of no open call: {event}"
            open_calls.remove((event.choice, event.index))
        elif type(event) is TextDelta:
            assert event.text, "empty TextDelta"
        elif type(event) is ReasoningDelta:
            assert event.text or event.signature, "empty ReasoningDelta"


def body_from(data: bytes) -> bytes:
    if data[0] < 0x80:
        return data[2:]
    fdp = atheris.FuzzedDataProvider(data[2:])
    count = fdp.ConsumeIntInRange(0, 24)
    body = b"".join(_EVENTS[fdp.ConsumeIntInRange(0, len(_EVENTS) - 1)] for _ in range(count))
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
