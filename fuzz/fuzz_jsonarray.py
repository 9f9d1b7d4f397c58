"""Fuzz JSONArrayDecoder: any bytes, any chunking, any element limit.

Input layout: byte 0 picks ``max_element_bytes`` (a small limit 1..64 when below
0x80, else the default), byte 1 seeds the chunk sizes, the rest is the body.

Invariants checked for every input:

* only :class:`~streamcore.RemoteProtocolError` escapes the decoder;
* feeding the body whole, in random chunks and byte by byte (random 1-3 byte
  chunks past 512 bytes) gives the same elements, the same error kind (if any)
  and the same ``truncated`` flag;
* a decoder that raised keeps raising the same error;
* differential against ``json.loads`` of the whole body: when the body is a
  valid JSON array the decoder returns exactly its elements, complete (unless
  an element is over the limit); when it is not, the decoder raises or
  reports the input as truncated.

Run: ``.venv/bin/python fuzz/fuzz_jsonarray.py -max_total_time=20``
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass

import atheris

with atheris.instrument_imports():
    from streamcore import RemoteProtocolError
    from streamcore.framing import DEFAULT_MAX_LINE_BYTES
    from streamcore.jsonarray import JSONArrayDecoder

# Python's json parser recurses; the decoder calls it a few frames deeper than this
# harness does, so near the recursion limit the two may disagree. Past this many
# brackets the differential check is skipped (whole-vs-split still runs).
_DEEP = 400
# Byte-by-byte feeding costs one decoder call per byte; past this size the harness
# feeds random 1-3 byte chunks instead, to keep the execution rate up.
_BYTE_BY_BYTE_MAX = 512
_NOT_JSON = object()
_TOO_DEEP = object()


@dataclass(frozen=True)
class Outcome:
    values: list[object]
    error_kind: str | None
    truncated: bool


def same_values(a: list[object], b: list[object]) -> bool:
    # repr() as a fallback makes NaN (which json.loads accepts) compare equal to itself.
    return a == b or repr(a) == repr(b)


def run(chunks: list[bytes], limit: int) -> Outcome:
    decoder = JSONArrayDecoder(max_element_bytes=limit)
    values: list[object] = []
    try:
        for chunk in chunks:
            values += decoder.feed(chunk)
        eoi = decoder.end()
    except RemoteProtocolError as exc:
        for call in (lambda: decoder.feed(b"]"), decoder.end):
            try:
                call()
            except RemoteProtocolError as again:
                assert again is exc, "a failed decoder must keep raising the same error"
            else:
                raise AssertionError("a failed decoder accepted another call")
        return Outcome(values, exc.kind, False)
    assert eoi.items == (), "the array decoder completes every element in feed()"
    assert eoi.truncated == bool(eoi.detail), eoi
    return Outcome(values, None, eoi.truncated)


def random_chunks(body: bytes, seed: int, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(body):
        n = rng.randint(1, largest)
        chunks.append(body[i : i + n])
        i += n
    return chunks


def check_equal(name: str, got: Outcome, want: Outcome) -> None:
    assert got.error_kind == want.error_kind, (name, got, want)
    assert got.truncated == want.truncated, (name, got, want)
    assert same_values(got.values, want.values), (name, got, want)


def loads_whole(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON
    except RecursionError:
        return _TOO_DEEP


def check_against_json_loads(body: bytes, got: Outcome) -> None:
    expected = loads_whole(body)
    if expected is _TOO_DEEP:
        return
    if isinstance(expected, list):
        if got.error_kind == "element_too_long":
            assert same_values(got.values, expected[: len(got.values)]), (got, expected)
            return
        assert got.error_kind is None and not got.truncated, (got, expected)
        assert same_values(got.values, expected), (got, expected)
    else:
        assert got.error_kind is not None or got.truncated, ("not a JSON array", got)


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    limit = data[0] % 64 + 1 if data[0] < 0x80 else DEFAULT_MAX_LINE_BYTES
    body = data[2:]
    whole = run([body], limit)
    check_equal("random chunks", run(random_chunks(body, data[1], 16), limit), whole)
    if len(body) <= _BYTE_BY_BYTE_MAX:
        check_equal("byte by byte", run([body[i : i + 1] for i in range(len(body))], limit), whole)
    else:
        check_equal("tiny chunks", run(random_chunks(body, data[1], 3), limit), whole)
    if body.count(b"[") + body.count(b"{") < _DEEP:
        check_against_json_loads(body, whole)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
