"""What every fuzz harness shares: chunkings, the failed-decoder rule, framing runs.

Not a harness itself (``run_all.py`` only runs ``fuzz_*.py``). Harnesses import
it inside their ``atheris.instrument_imports()`` block, after the streamcore
module they fuzz, so the streamcore code this module reaches is instrumented.

The framing half (:func:`run_framing`, :func:`check_framing_chunkings`) serves
``fuzz_ndjson.py`` and ``fuzz_jsonarray.py``: their decoders share the
``feed``/``end() -> EndOfInput`` contract of :mod:`streamcore.framing`, so one
run and one set of chunking checks cover both.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamcore import RemoteProtocolError
from streamcore.framing import DEFAULT_MAX_LINE_BYTES, EndOfInput

# Byte-by-byte feeding costs one decoder call per byte; past this size the framing
# checks feed random 1-3 byte chunks instead, to keep the execution rate up.
FRAMING_BYTEWISE_MAX = 512


def random_chunks(body: bytes, seed: int, largest: int = 64) -> list[bytes]:
    """``body`` cut into pieces of 1..``largest`` bytes, the sizes drawn from ``seed``."""
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(body):
        n = rng.randint(1, largest)
        chunks.append(body[i : i + n])
        i += n
    return chunks


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def assert_keeps_raising(exc: RemoteProtocolError, calls: Sequence[Callable[[], object]]) -> None:
    """Every call on a decoder that raised ``exc`` must raise ``exc`` again."""
    for call in calls:
        try:
            call()
        except RemoteProtocolError as again:
            assert again is exc, "a failed decoder must keep raising the same error"
        else:
            raise AssertionError("a failed decoder accepted another call") from None


def small_limit(data: bytes) -> int:
    """The size limit byte 0 picks: 1..64 when below 0x80, else the default."""
    return data[0] % 64 + 1 if data[0] < 0x80 else DEFAULT_MAX_LINE_BYTES


# --------------------------------------------------------------------------- framing


class FramingDecoder(Protocol):
    def feed(self, data: bytes) -> list[object]: ...

    def end(self) -> EndOfInput[object]: ...


@dataclass(frozen=True)
class FramingOutcome:
    values: list[object]
    error_kind: str | None
    truncated: bool


def same_values(a: list[object], b: list[object]) -> bool:
    # repr() as a fallback makes NaN (which json.loads accepts) compare equal to itself.
    return a == b or repr(a) == repr(b)


def run_framing(
    decoder: FramingDecoder, chunks: list[bytes], *, poke: bytes, end_items: bool
) -> FramingOutcome:
    """Feed ``chunks`` and end; a failure is checked to stick (``poke`` is fed to try it).

    ``end_items`` false: the decoder promises to complete every item in ``feed``.
    """
    values: list[object] = []
    try:
        for chunk in chunks:
            values += decoder.feed(chunk)
        eoi = decoder.end()
    except RemoteProtocolError as exc:
        assert_keeps_raising(exc, (lambda: decoder.feed(poke), decoder.end))
        return FramingOutcome(values, exc.kind, False)
    if not end_items:
        assert eoi.items == (), "the decoder completes every item in feed()"
    assert eoi.truncated == bool(eoi.detail), eoi
    return FramingOutcome(values + list(eoi.items), None, eoi.truncated)


def check_equal(name: str, got: FramingOutcome, want: FramingOutcome) -> None:
    assert got.error_kind == want.error_kind, (name, got, want)
    assert got.truncated == want.truncated, (name, got, want)
    assert same_values(got.values, want.values), (name, got, want)


def check_framing_chunkings(
    body: bytes, seed: int, run: Callable[[list[bytes]], FramingOutcome]
) -> FramingOutcome:
    """Whole, random chunks and byte by byte (tiny chunks when long) agree; returns whole."""
    whole = run([body])
    check_equal("random chunks", run(random_chunks(body, seed, 16)), whole)
    if len(body) <= FRAMING_BYTEWISE_MAX:
        check_equal("byte by byte", run(bytewise(body)), whole)
    else:
        check_equal("tiny chunks", run(random_chunks(body, seed, 3)), whole)
    return whole
