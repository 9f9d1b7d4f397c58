"""Fuzz the Gemini decoder, both framings: any body, any chunking.

Byte 0's low bit picks the framing (SSE or JSON array). The structured mode
strings together real responses taken from tests/transcripts/gemini/ (as SSE
events, or as array elements with or without the closing bracket), and may cut
the result anywhere and append raw bytes. Input layout and the invariants every
dialect is held to (chunking never matters, only typed errors, the event
model): see ``fuzz/_dialect.py``. Gemini adds none of its own.

Run: ``.venv/bin/python fuzz/fuzz_dialect_gemini.py -max_total_time=20``
"""

from __future__ import annotations

import json
import sys

import atheris

# The shared harness code is not instrumented: only streamcore's coverage guides the fuzzer.
with atheris.instrument_imports(exclude=["_dialect", "_harness"]):
    import _dialect

    from streamcore.providers.gemini import Framing, GeminiDecoder

# Every SSE event of every SSE transcript (array_*.txt hold the other framing).
_EVENTS = _dialect.vocabulary(
    _dialect.transcript_pieces("gemini", b"\r\n\r\n", skip_prefix="array_")
)


def _as_element(event: bytes) -> bytes | None:
    try:
        value = json.loads(event.removeprefix(b"data: "))
    except ValueError:
        return None
    return json.dumps(value, ensure_ascii=False, indent=2).encode()


# The same responses as JSON-array elements, pretty-printed as the API sends them.
_ELEMENTS = sorted({e for e in map(_as_element, _EVENTS) if e is not None})
_MAX_LINE = 2048  # small, so the size limit is reached too


def build(fdp: atheris.FuzzedDataProvider, framing: Framing) -> bytes:
    if framing == "sse":
        return _dialect.concatenated(fdp, _EVENTS, 12)
    count = fdp.ConsumeIntInRange(0, 12)
    chosen = [_ELEMENTS[fdp.ConsumeIntInRange(0, len(_ELEMENTS) - 1)] for _ in range(count)]
    return b"[" + b"\n,\r\n".join(chosen) + (b"]" if fdp.ConsumeBool() else b"")


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    framing: Framing = "sse" if data[0] & 1 else "json-array"
    _dialect.check_input(
        data,
        lambda fdp: build(fdp, framing),
        lambda: GeminiDecoder(framing=framing, max_line_bytes=_MAX_LINE),
        _dialect.check_common_model,
    )


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
