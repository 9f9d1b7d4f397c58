"""Invariants of the SSE decoder and encoder, checked with hypothesis.

* Chunking never matters: any split of the same bytes gives the same events,
  comments, end-of-input report, ``retry``/``last_event_id`` and error.
* The encoder and decoder are inverse: decoding what was encoded gives it back.
* A stream cut at any byte decodes to a prefix of its items, and ``end()``
  reports it truncated exactly when the cut is not at an item boundary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from streamcore import RemoteProtocolError
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent, encode_comment, encode_event

# Pieces of SSE, realistic and hostile, that random streams are built from.
FRAGMENTS = [
    b"data: ",
    b"data:",
    b"data",
    b"event: ",
    b"event:",
    b"id: ",
    b"id:",
    b"retry: ",
    b"retry:",
    b":",
    b": ",
    b" ",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\xef\xbb\xbf",
    b"\xef",
    b"\xbb\xbf",
    "👍".encode(),
    "東".encode(),
    b"\xf0\x9f",
    b"\x00",
    b"\xff",
    b"x",
    b"1500",
    b"[DONE]",
    b"ping",
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}',
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
    b"event: content_block_delta\n",
    b"event: message_delta\ndata: {}\n\n",
    b"\ndata: more",
    b'event: ping\ndata: {"type": "ping"}\n\n',
    b": OPENROUTER PROCESSING\n",
]

sse_like = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join),
    st.binary(max_size=80),
)


@dataclass(frozen=True)
class Outcome:
    items: list[SSEEvent | SSEComment]
    error: str | None
    end: object
    retry: int | None
    last_event_id: str
    reconnect_id: str


def run(chunks: list[bytes], max_line_bytes: int = 1 << 20) -> Outcome:
    """Feed ``chunks`` then end(); record everything observable, errors included."""
    decoder = SSEDecoder(max_line_bytes=max_line_bytes, max_event_bytes=4 * max_line_bytes)
    items: list[SSEEvent | SSEComment] = []
    error = None
    end: object = None
    try:
        for chunk in chunks:
            items += decoder.feed(chunk)
        end = decoder.end()
    except RemoteProtocolError as exc:
        error = exc.kind
    return Outcome(items, error, end, decoder.retry, decoder.last_event_id, decoder.reconnect_id)


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@given(stream=sse_like, data=st.data(), limit=st.sampled_from([8, 40, 1 << 20]))
def test_any_chunking_gives_same_events(stream: bytes, data: st.DataObject, limit: int) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert run(split_at(stream, cuts), limit) == run([stream], limit)


@given(stream=sse_like, limit=st.sampled_from([8, 40, 1 << 20]))
def test_byte_at_a_time_equals_whole(stream: bytes, limit: int) -> None:
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    assert run(one_by_one, limit) == run([stream], limit)


# -- encoded streams --------------------------------------------------------

# The encoder rejects CR in data, line breaks in names and ids, NUL in ids,
# empty event types and lone surrogates; everything else must round-trip.
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
# Line breaks, spaces and colons are what SSE framing is made of: draw them often.
data_text = (unicode_text | st.text(" :\nab👍", max_size=12)).map(lambda s: s.replace("\r", ""))
one_line = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12
)
event_item = st.tuples(
    st.just("event"),
    data_text,
    st.none() | one_line.filter(bool),
    st.none() | one_line,
    st.none() | st.integers(0, 2**40),
)
comment_item = st.tuples(st.just("comment"), one_line)
streams = st.lists(event_item | comment_item, max_size=8)


@dataclass
class Encoded:
    body: bytes
    ends: list[int]  # byte offset just after each item
    expected: list[SSEEvent | SSEComment]
    retry: int | None


def encode(items: list[tuple[object, ...]], eol: bytes = b"\n") -> Encoded:
    body = b""
    ends: list[int] = []
    expected: list[SSEEvent | SSEComment] = []
    last_id = ""
    retry = None
    for item in items:
        if item[0] == "comment":
            (text,) = item[1:]
            assert isinstance(text, str)
            body += encode_comment(text).replace(b"\n", eol)
            expected.append(SSEComment(text))
        else:
            data, event, event_id, retry_ms = item[1:]
            assert isinstance(data, str)
            body += encode_event(data, event=event, id=event_id, retry=retry_ms).replace(  # type: ignore[arg-type]
                b"\n", eol
            )
            last_id = last_id if event_id is None else str(event_id)
            retry = retry if retry_ms is None else int(retry_ms)  # type: ignore[call-overload]
            expected.append(SSEEvent(data, event=str(event or "message"), id=last_id))
        ends.append(len(body))
    return Encoded(body, ends, expected, retry)


@given(items=streams, eol=st.sampled_from([b"\n", b"\r\n", b"\r"]), data=st.data())
def test_decode_of_encoded_stream_round_trips(
    items: list[tuple[object, ...]], eol: bytes, data: st.DataObject
) -> None:
    encoded = encode(items, eol)
    # Chunks cut at item boundaries put each item at the start of a region.
    cuts = data.draw(st.lists(st.sampled_from([0, *encoded.ends]), max_size=4))
    outcome = run(split_at(encoded.body, cuts))
    assert outcome.items == encoded.expected
    assert outcome.retry == encoded.retry
    assert outcome.end is not None and not outcome.end.truncated  # type: ignore[attr-defined]


@given(items=streams, eols=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1))
def test_mixed_line_endings_decode_like_lf(
    items: list[tuple[object, ...]], eols: list[bytes]
) -> None:
    encoded = encode(items)
    lines = encoded.body.split(b"\n")
    mixed = b""
    previous = b""
    for n, line in enumerate(lines[:-1]):
        eol = eols[n % len(eols)]
        if previous == b"\r" and not line and eol == b"\n":
            eol = b"\r"  # CR then an empty line ended by LF would read as one CRLF
        mixed += line + eol
        previous = eol
    assert run([mixed]).items == encoded.expected


@given(items=streams, eol=st.sampled_from([b"\n", b"\r"]), data=st.data())
def test_cut_stream_gives_a_prefix_and_is_truncated_iff_cut_inside_an_item(
    items: list[tuple[object, ...]], eol: bytes, data: st.DataObject
) -> None:
    # With single-byte line endings every item ends at one exact byte, so the
    # invariant is precise: cutting at k yields the items ending at or before
    # k, and end() reports truncation iff k is not 0 or an item's end.
    encoded = encode(items, eol)
    k = data.draw(st.integers(0, len(encoded.body)))
    outcome = run([encoded.body[:k]])
    complete = sum(1 for end in encoded.ends if end <= k)
    assert outcome.items == encoded.expected[:complete]
    assert outcome.end.truncated == (k not in {0, *encoded.ends})  # type: ignore[attr-defined]
