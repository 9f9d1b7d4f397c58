"""Fuzz the Anthropic Messages decoder: any body, any chunking.

The structured mode strings together real SSE events taken from
tests/transcripts/anthropic/ (in any order, any number), and may cut the
result anywhere and append raw bytes. Input layout and the invariants every
dialect is held to (chunking never matters, only typed errors, the event
model): see ``fuzz/_dialect.py``. Anthropic adds none of its own.

Run: ``.venv/bin/python fuzz/fuzz_dialect_anthropic.py -max_total_time=20``
"""

from __future__ import annotations

import sys

import atheris

# The shared harness code is not instrumented: only streamcore's coverage guides the fuzzer.
with atheris.instrument_imports(exclude=["_dialect", "_harness"]):
    import _dialect

    from streamcore.providers.anthropic import AnthropicDecoder

_EVENTS = _dialect.vocabulary(_dialect.transcript_pieces("anthropic", b"\n\n"))
_MAX_LINE = 512  # small, so the line limit is reached too


def TestOneInput(data: bytes) -> None:
    _dialect.check_input(
        data,
        lambda fdp: _dialect.concatenated(fdp, _EVENTS, 24),
        lambda: AnthropicDecoder(max_line_bytes=_MAX_LINE),
        _dialect.check_common_model,
    )


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
