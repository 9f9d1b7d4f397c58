"""Fuzz the OpenAI Responses decoder: any body, any chunking, any cut then resume.

The structured mode takes one transcript from tests/transcripts/openai_responses/
and edits it at the SSE-event level (drop, duplicate or swap events, insert one
from any transcript), renumbers the ``sequence_number`` fields so they grow
again (else nearly every edit would only test the sequence check), and may then
cut the result anywhere and append raw bytes. Input layout and the invariants
every dialect is held to: see ``fuzz/_dialect.py``. This dialect's own:

* every chunking also gives the same ``last_sequence_number``, and it never
  goes back while the body is fed;
* keep-alives may follow ``StreamEnd``; tool calls are keyed by their index
  alone; at most one ``Finish``, with no tool call open; no empty argument pieces;
* resuming (edited transcripts without appended garbage): cut the body at a
  point the input picks, decode the part before the cut, then feed the *whole*
  body to :meth:`~OpenAIResponsesDecoder.resumed` (a server that replays from
  the start): the two runs together give exactly the events and error kind of
  the uncut run.

Run: ``.venv/bin/python fuzz/fuzz_dialect_openai_responses.py -max_total_time=20``
"""

from __future__ import annotations

import re
import sys

import atheris

# The shared harness code is not instrumented: only streamcore's coverage guides the fuzzer.
with atheris.instrument_imports(exclude=["_dialect", "_harness"]):
    import _dialect

    from streamcore import LocalProtocolError
    from streamcore.events import Event, Finish
    from streamcore.providers.openai_responses import OpenAIResponsesDecoder

_BASES = _dialect.transcript_pieces("openai_responses", b"\n\n")
_VOCABULARY = _dialect.vocabulary(_BASES)
_SEQUENCE = re.compile(rb'"sequence_number":\d+')
_MAX_LINE = 2048  # small, so the line limit is reached too


def feed(decoder: OpenAIResponsesDecoder, chunks: list[bytes]) -> tuple[list[Event], str | None]:
    """:func:`_dialect.drive`, checking that the resume cursor never goes back."""
    last = decoder.last_sequence_number

    def cursor_moves_on() -> None:
        nonlocal last
        now = decoder.last_sequence_number
        assert last is None or (now is not None and now >= last), "cursor went back"
        last = now

    return _dialect.drive(decoder, chunks, cursor_moves_on)


def run(chunks: list[bytes]) -> _dialect.Outcome:
    decoder = OpenAIResponsesDecoder(max_line_bytes=_MAX_LINE)
    events, error = feed(decoder, chunks)
    check_model(events, decoder.complete)
    return _dialect.Outcome(
        repr(events), error, decoder.complete, decoder.truncated, decoder.last_sequence_number
    )


def check_model(events: list[Event], complete: bool) -> None:
    _dialect.check_stream_end(events, complete, keepalives_after=True)
    calls = _dialect.ToolCalls(lambda event: event.index, nonempty_arguments=True)
    finishes = 0
    for event in events:
        if calls.check(event):
            continue
        if type(event) is Finish:
            finishes += 1
            assert finishes == 1, ("a second Finish", events)
            assert not calls.open, ("Finish with calls open", events)
        else:
            _dialect.check_not_empty(event, signatures=False)


def renumber(body: bytes) -> bytes:
    counter = iter(range(1 << 30))
    return _SEQUENCE.sub(lambda _: b'"sequence_number":%d' % next(counter), body)


def body_from(data: bytes) -> tuple[bytes, int | None]:
    """The body, and where to cut it for the resume check (None: no check)."""
    fdp = _dialect.structured(data)
    if fdp is None:
        return data[2:], None
    body, cut = _dialect.maybe_cut(fdp, renumber(_dialect.edited(fdp, _BASES, _VOCABULARY)))
    if cut:
        return body, None
    return body, fdp.ConsumeIntInRange(0, len(body))


def check_resume(body: bytes, cut: int, whole: _dialect.Outcome) -> None:
    first = OpenAIResponsesDecoder(max_line_bytes=_MAX_LINE)
    before, error = feed(first, [body[:cut]])
    if error is not None:
        # The cut part already broke the grammar: the uncut body breaks it the same way.
        assert error == whole.error_kind, (error, whole)
        return
    try:
        resumed = first.resumed()
    except LocalProtocolError:
        return  # complete already, or cut before response.created / any sequence number
    after, error = feed(resumed, [body])
    assert (repr(before + after), error) == (whole.events, whole.error_kind), (
        "cut + resume differs from the uncut run",
        before,
        after,
        whole,
    )


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    body, resume_cut = body_from(data)
    whole = _dialect.check_chunkings(body, data[1], run)
    if resume_cut is not None:
        check_resume(body, resume_cut, whole)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
