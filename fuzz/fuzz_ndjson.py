"""Fuzz NDJSONDecoder: any bytes, any chunking, any limit.

Input layout: byte 0 picks ``max_line_bytes`` (a small limit 1..64 when below
0x80, else the default), byte 1 seeds the chunk sizes, the rest is the body.

Invariants checked for every input:

* only :class:`~streamcore.RemoteProtocolError` escapes the decoder;
* feeding the body whole, in random chunks and byte by byte (random 1-3 byte
  chunks past 512 bytes) gives the same values, the same error kind (if any)
  and the same ``truncated`` flag;
* a decoder that raised keeps raising the same error;
* the result matches a deliberately naive reference (``bytes.split`` on LF).

Run: ``.venv/bin/python fuzz/fuzz_ndjson.py -max_total_time=20``
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
    from streamcore.ndjson import NDJSONDecoder

# Python's json parser recurses; the decoder calls it a few frames deeper than the
# reference does, so near the recursion limit the two may disagree. Past this many
# brackets the comparison with the reference is skipped (whole-vs-split still runs).
_DEEP = 400
# Byte-by-byte feeding costs one decoder call per byte; past this size the harness
# feeds random 1-3 byte chunks instead, to keep the execution rate up.
_BYTE_BY_BYTE_MAX = 512


@dataclass(frozen=True)
class Outcome:
    values: list[object]
    error_kind: str | None
    truncated: bool


def same_values(a: list[object], b: list[object]) -> bool:
    # repr() as a fallback makes NaN (which json.loads accepts) compare equal to itself.
    return a == b or repr(a) == repr(b)


def run(chunks: list[bytes], limit: int) -> Outcome:
    decoder = NDJSONDecoder(max_line_bytes=limit)
    values: list[object] = []
    try:
        for chunk in chunks:
            values += decoder.feed(chunk)
        eoi = decoder.end()
    except RemoteProtocolError as exc:
        for call in (lambda: decoder.feed(b"\n"), decoder.end):
            try:
                call()
            except RemoteProtocolError as again:
                assert again is exc, "a failed decoder must keep raising the same error"
            else:
                raise AssertionError("a failed decoder accepted another call")
        return Outcome(values, exc.kind, False)
    assert eoi.truncated == bool(eoi.detail), eoi
    return Outcome(values + list(eoi.items), None, eoi.truncated)


def parses(line: bytes) -> tuple[bool, object]:
    try:
        return True, json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False, None


def reference(body: bytes, limit: int) -> Outcome:
    """The spec, written the slow and obvious way."""
    *lines, rest = body.split(b"\n")
    values: list[object] = []
    for line in lines:
        content = line[:-1] if line.endswith(b"\r") else line
        if len(content) > limit:
            return Outcome(values, "line_too_long", False)
        if not content.strip(b" \t\r"):
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome(values, "invalid_utf8", False)
        try:
            values.append(json.loads(text))
        except (ValueError, RecursionError):
            return Outcome(values, "invalid_json", False)
    content = rest[:-1] if rest.endswith(b"\r") else rest
    if len(content) > limit:
        return Outcome(values, "line_too_long", False)
    if not rest.strip(b" \t\r"):
        return Outcome(values, None, False)
    ok, value = parses(rest)
    return Outcome([*values, value], None, False) if ok else Outcome(values, None, True)


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
        check_equal("reference", whole, reference(body, limit))


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
