"""streamcore's SSE decoder against the one in the official ``openai`` package.

Where both follow the WHATWG standard they must agree event for event, under
the same chunking: the generated streams below mix LF/CR/CRLF, comments, ids,
retry, several data lines, unknown fields and non-ASCII text.

Where they differ, the standard decides, and each known difference is a named
test that pins down what openai does and what streamcore does. If openai
changes, these tests say exactly which behaviour moved.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai._streaming import SSEDecoder as OpenAIDecoder

from streamcore.sse import SSEComment, SSEDecoder, SSEEvent


def openai_events(chunks: list[bytes]) -> list[tuple[str | None, str, str | None, int | None]]:
    """openai's events as (event, data, id, retry), driven as openai's Stream drives it."""
    return [(e.event, e.data, e.id, e.retry) for e in OpenAIDecoder().iter_bytes(iter(chunks))]


def openai_as_ours(chunks: list[bytes]) -> list[SSEEvent]:
    """openai's events in streamcore's terms: no event type is "message", no id is ""."""
    return [
        SSEEvent(data, event or "message", event_id or "")
        for event, data, event_id, _ in openai_events(chunks)
    ]


def ours(chunks: list[bytes]) -> tuple[list[SSEEvent | SSEComment], SSEDecoder]:
    decoder = SSEDecoder()
    items: list[SSEEvent | SSEComment] = []
    for chunk in chunks:
        items += decoder.feed(chunk)
    return items, decoder


def our_events(chunks: list[bytes]) -> list[SSEEvent]:
    return [item for item in ours(chunks)[0] if isinstance(item, SSEEvent)]


# -- generated streams on which both must agree -------------------------------

value = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=15
) | st.sampled_from(['{"choices":[{"delta":{"content":"Hi"}}]}', " two", ":", "東京 👍🏽", ""])
data_line = st.builds(lambda prefix, v: prefix + v, st.sampled_from(["data: ", "data:"]), value)
other_line = st.one_of(
    st.just("data"),
    st.builds(lambda v: "event: " + v, value),
    st.just("event:"),
    st.builds(lambda v: "id: " + v, value),  # may hold NUL: both ignore such an id
    st.builds(lambda n: f"retry: {n}", st.integers(0, 10**6)),
    st.builds(lambda v: ": " + v, value),
    st.sampled_from(["foo: bar", "Data: x", "retry: soon"]),
)
# An event block has at least one data line: openai dispatches blocks without
# one (see the named differences), the standard does not.
block = st.builds(
    lambda first, rest: [*rest[: len(rest) // 2], first, *rest[len(rest) // 2 :], ""],
    data_line,
    st.lists(other_line | data_line, max_size=4),
)
comment = st.builds(lambda v: [": " + v], value)
stream_lines = st.lists(block | comment, max_size=6).map(
    lambda parts: list(itertools.chain.from_iterable(parts))
)


def join_lines(lines: list[str], eols: list[bytes]) -> bytes:
    out = b""
    previous = b""
    for line, eol in zip(lines, itertools.cycle(eols)):
        if previous == b"\r" and not line and eol == b"\n":
            eol = b"\r"  # CR + an empty line ended by LF would read as one CRLF
        out += line.encode() + eol
        previous = eol
    return out


@given(
    lines=stream_lines,
    eols=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1, max_size=5),
    data=st.data(),
)
def test_streamcore_agrees_with_openai_on_standard_streams(
    lines: list[str], eols: list[bytes], data: st.DataObject
) -> None:
    stream = join_lines(lines, eols)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert our_events(chunks) == openai_as_ours(chunks)
    # openai attaches retry to the event; streamcore keeps the latest on the decoder.
    retries = [retry for *_, retry in openai_events(chunks) if retry is not None]
    assert ours(chunks)[1].retry == (retries[-1] if retries else None)


# -- where they agree, pinned -------------------------------------------------


def test_both_handle_cr_crlf_and_a_crlf_split_across_chunks() -> None:
    chunks = [b"data: a\r\rdata: b\r\n\r\n", b"data: c\r", b"\n\r\n"]
    assert (
        our_events(chunks)
        == openai_as_ours(chunks)
        == [
            SSEEvent("a"),
            SSEEvent("b"),
            SSEEvent("c"),
        ]
    )


def test_both_ignore_an_id_containing_nul() -> None:
    chunks = [b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n"]
    assert (
        our_events(chunks)
        == openai_as_ours(chunks)
        == [
            SSEEvent("a", id="1"),
            SSEEvent("b", id="1"),
        ]
    )


def test_both_discard_an_event_cut_off_before_its_blank_line() -> None:
    chunks = [b"data: a\n\ndata: b"]
    assert our_events(chunks) == openai_as_ours(chunks) == [SSEEvent("a")]


def test_both_decode_a_character_split_across_chunks() -> None:
    chunks = [b"data: \xe6\x9d", b"\xb1\n\n"]
    assert our_events(chunks) == openai_as_ours(chunks) == [SSEEvent("東")]


# -- known differences: the standard decides ------------------------------------


def test_bom_streamcore_strips_it_openai_loses_the_first_event() -> None:
    # Standard: the stream is UTF-8 decoded, which drops a leading BOM.
    chunks = [b"\xef\xbb\xbfdata: 1\n\ndata: 2\n\n"]
    assert openai_events(chunks) == [(None, "2", None, None)]
    assert our_events(chunks) == [SSEEvent("1"), SSEEvent("2")]


def test_block_without_data_openai_dispatches_an_empty_event_streamcore_does_not() -> None:
    # Standard: "If the data buffer is an empty string, ... return" (nothing dispatched).
    chunks = [b"event: ping\n\n"]
    assert openai_events(chunks) == [("ping", "", None, None)]
    assert our_events(chunks) == []


def test_blank_lines_after_an_id_openai_dispatches_empty_events_streamcore_does_not() -> None:
    # openai dispatches on any blank line once a last event ID is set.
    chunks = [b"id: 1\ndata: a\n\n\n\n"]
    assert openai_events(chunks) == [
        (None, "a", "1", None),
        (None, "", "1", None),
        (None, "", "1", None),
    ]
    assert our_events(chunks) == [SSEEvent("a", id="1")]


@pytest.mark.parametrize(
    ("line", "openai_retry"),
    [(b"retry: -5", -5), (b"retry: +5", 5), (b"retry:  12", 12), ("retry: １２".encode(), 12)],
    ids=["minus", "plus", "second-space", "fullwidth-digits"],
)
def test_retry_that_is_not_ascii_digits_openai_accepts_streamcore_ignores(
    line: bytes, openai_retry: int
) -> None:
    # Standard: "If the field value consists of only ASCII digits" -- else ignore it.
    chunks = [line + b"\ndata: x\n\n"]
    assert openai_events(chunks) == [(None, "x", None, openai_retry)]
    _, decoder = ours(chunks)
    assert decoder.retry is None


def test_invalid_utf8_openai_raises_streamcore_replaces() -> None:
    # Standard: UTF-8 decode with replacement (U+FFFD), as browsers do.
    chunks = [b"data: caf\xe9\n\n"]
    with pytest.raises(UnicodeDecodeError):
        openai_events(chunks)
    assert our_events(chunks) == [SSEEvent("caf\ufffd")]


def test_comments_openai_drops_them_streamcore_surfaces_them() -> None:
    # A comment is a keep-alive: surfacing it lets a driver reset its idle timeout.
    chunks = [b": OPENROUTER PROCESSING\n\ndata: x\n\n"]
    assert openai_events(chunks) == [(None, "x", None, None)]
    assert ours(chunks)[0] == [SSEComment("OPENROUTER PROCESSING"), SSEEvent("x")]


def test_no_event_type_or_id_openai_says_none_streamcore_message_and_empty() -> None:
    # Standard: the type defaults to "message"; the last event ID starts as "".
    chunks = [b"event:\ndata: x\n\n"]
    assert openai_events(chunks) == [(None, "x", None, None)]
    assert our_events(chunks) == [SSEEvent("x", event="message", id="")]


def test_cut_off_stream_openai_is_silent_streamcore_reports_truncation() -> None:
    chunks = [b"data: a\n\ndata: b\n"]
    assert openai_events(chunks) == [(None, "a", None, None)]
    _, decoder = ours(chunks)
    assert decoder.end().truncated
