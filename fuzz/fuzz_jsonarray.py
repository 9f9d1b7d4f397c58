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
import sys

import atheris

# The shared harness code is not instrumented: only streamcore's coverage guides the fuzzer.
with atheris.instrument_imports(exclude=["_dialect", "_harness"]):
    from _harness import (
        FramingOutcome,
        check_framing_chunkings,
        run_framing,
        same_values,
        small_limit,
    )

    from streamcore.jsonarray import JSONArrayDecoder

# Python's json parser recurses; the decoder calls it a few frames deeper than this
# harness does, so near the recursion limit the two may disagree. Past this many
# brackets the differential check is skipped (whole-vs-split still runs).
_DEEP = 400
_NOT_JSON = object()
_TOO_DEEP = object()


def loads_whole(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON
    except RecursionError:
        return _TOO_DEEP


def check_against_json_loads(body: bytes, got: FramingOutcome) -> None:
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
    limit = small_limit(data)
    body = data[2:]

    def run(chunks: list[bytes]) -> FramingOutcome:
        decoder = JSONArrayDecoder(max_element_bytes=limit)
        return run_framing(decoder, chunks, poke=b"]", end_items=False)

    whole = check_framing_chunkings(body, data[1], run)
    if body.count(b"[") + body.count(b"{") < _DEEP:
        check_against_json_loads(body, whole)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
