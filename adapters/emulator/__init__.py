"""A local provider emulator: OpenAI, Anthropic, Gemini and Ollama wire formats, with faults.

A trio + h11 HTTP/1.1 server on loopback that answers streaming chat requests
the way the real providers do -- same paths, headers, framing and JSON shapes
-- with deterministic text, and breaks them on request (latency, byte-level
splits, pings, HTTP errors, mid-stream errors, drops, stalls, invalid JSON).

* :func:`open_emulator` -- ``async with open_emulator() as emu:`` in tests;
  :func:`serve_forever` -- the ``streamcore mock`` command.
* :func:`answer_for` -- the text any prompt gets, computable without a socket.
* :class:`Faults` / :func:`parse_faults` -- what to break; per request with the
  ``x-streamcore-fault: key=value; ...`` header (see
  :mod:`streamcore.adapters.emulator.faults` for every key).
* :attr:`Emulator.requests` -- what was served: one :class:`ServedRequest` each.
"""

from __future__ import annotations

from streamcore.adapters.emulator.conversation import Dialect
from streamcore.adapters.emulator.faults import (
    FAULT_HEADER,
    REQUEST_KEY_HEADER,
    Faults,
    parse_faults,
)
from streamcore.adapters.emulator.server import (
    Emulator,
    Outcome,
    ServedRequest,
    open_emulator,
    serve_forever,
)
from streamcore.adapters.emulator.text import (
    DEFAULT_LENGTH,
    answer_for,
    answer_tokens,
    continuation_offset,
    split_tokens,
)

__all__ = [
    "DEFAULT_LENGTH",
    "FAULT_HEADER",
    "REQUEST_KEY_HEADER",
    "Dialect",
    "Emulator",
    "Faults",
    "Outcome",
    "ServedRequest",
    "answer_for",
    "answer_tokens",
    "continuation_offset",
    "open_emulator",
    "parse_faults",
    "serve_forever",
    "split_tokens",
]
