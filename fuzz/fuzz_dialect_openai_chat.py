"""Fuzz the OpenAI Chat Completions decoder: any body, any chunking.

The structured mode takes one transcript from tests/transcripts/openai_chat/
and edits it at the SSE-event level (drop, duplicate or swap events, insert one
from any transcript), then may cut the result anywhere and append raw bytes.
Real chunks in almost-real orders reach the per-choice and tool-call machines
far more often than random bytes do. Input layout and the invariants every
dialect is held to: see ``fuzz/_dialect.py``. This dialect's own:

* keep-alives may follow ``StreamEnd`` (SSE comments after ``[DONE]``);
* per choice, at most one ``Finish``, no content after it, and no tool call
  still open when it arrives;
* no empty argument pieces; never two equal ``Usage`` events in a row.

Run: ``.venv/bin/python fuzz/fuzz_dialect_openai_chat.py -max_total_time=20``
"""

from __future__ import annotations

import sys

import atheris

# The shared harness code is not instrumented: only streamcore's coverage guides the fuzzer.
with atheris.instrument_imports(exclude=["_dialect", "_harness"]):
    import _dialect

    from streamcore.events import (
        Event,
        Finish,
        ReasoningDelta,
        Refusal,
        TextDelta,
        ToolCallDelta,
        ToolCallStart,
        Usage,
    )
    from streamcore.providers.openai_chat import OpenAIChatDecoder

_BASES = _dialect.transcript_pieces("openai_chat", b"\n\n")
_VOCABULARY = _dialect.vocabulary(_BASES)
_MAX_LINE = 1024  # small, so the line limit is reached too


def check_model(events: list[Event], complete: bool) -> None:
    _dialect.check_stream_end(events, complete, keepalives_after=True)
    calls = _dialect.ToolCalls(nonempty_arguments=True)
    finished: set[int] = set()
    last_usage: Usage | None = None
    for event in events:
        if type(event) is Usage:
            assert event != last_usage, ("the same usage twice in a row", events)
            last_usage = event
            continue
        if isinstance(event, TextDelta | ReasoningDelta | Refusal | ToolCallStart | ToolCallDelta):
            assert event.choice not in finished, ("content after the choice's Finish", event)
        if calls.check(event):
            continue
        if type(event) is Finish:
            assert event.choice not in finished, ("a second Finish for the choice", events)
            assert all(c != event.choice for c, _ in calls.open), ("Finish with calls open", events)
            finished.add(event.choice)
        else:
            _dialect.check_not_empty(event, signatures=False)


def TestOneInput(data: bytes) -> None:
    _dialect.check_input(
        data,
        lambda fdp: _dialect.edited(fdp, _BASES, _VOCABULARY),
        lambda: OpenAIChatDecoder(max_line_bytes=_MAX_LINE),
        check_model,
    )


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
