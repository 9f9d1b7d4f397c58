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
import sys

import atheris

# The shared harness code is not instrumented: only streamcore's coverage guides the fuzzer.
with atheris.instrument_imports(exclude=["_dialect", "_harness"]):
    from _harness import (
        FramingOutcome,
        check_equal,
        check_framing_chunkings,
        run_framing,
        small_limit,
    )

    from streamcore.ndjson import NDJSONDecoder

# Python's json parser recurses; the decoder calls it a few frames deeper than the
# reference does, so near the recursion limit the two may disagree. Past this many
# brackets the comparison with the reference is skipped (whole-vs-split still runs).
_DEEP = 400


def parses(line: bytes) -> tuple[bool, object]:
    try:
        return True, json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False, None


def reference(body: bytes, limit: int) -> FramingOutcome:
    """The spec, written the slow and obvious way."""
    *lines, rest = body.split(b"\n")
    values: list[object] = []
    for line in lines:
        content = line[:-1] if line.endswith(b"\r") else line
        if len(content) > limit:
            return FramingOutcome(values, "line_too_long", False)
        if not content.strip(b" \t\r"):
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return FramingOutcome(values, "invalid_utf8", False)
        try:
            values.append(json.loads(text))
        except (ValueError, RecursionError):
            return FramingOutcome(values, "invalid_json", False)
    content = rest[:-1] if rest.endswith(b"\r") else rest
    if len(content) > limit:
        return FramingOutcome(values, "line_too_long", False)
    if not rest.strip(b" \t\r"):
        return FramingOutcome(values, None, False)
    ok, value = parses(rest)
    return (
        FramingOutcome([*values, value], None, False) if ok else FramingOutcome(values, None, True)
    )


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    limit = small_limit(data)
    body = data[2:]

    def run(chunks: list[bytes]) -> FramingOutcome:
        decoder = NDJSONDecoder(max_line_bytes=limit)
        return run_framing(decoder, chunks, poke=b"\n", end_items=True)

    whole = check_framing_chunkings(body, data[1], run)
    if body.count(b"[") + body.count(b"{") < _DEEP:
        check_equal("reference", whole, reference(body, limit))


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
