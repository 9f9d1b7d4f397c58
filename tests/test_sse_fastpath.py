"""The SSE decoder's fast path: the stream shapes LLM APIs send, split at any byte.

:class:`~streamcore.sse.SSEDecoder` decodes whole regions of ``data: X`` blocks
(OpenAI) and ``event: N`` + ``data: X`` blocks (Anthropic) at once instead of
line by line. Random streams rarely have that exact shape, so these properties
build it on purpose -- with multi-byte UTF-8 (cut mid-character by the chunking),
invalid UTF-8 and limits close to the block size -- and check the events against
the blocks they were made from, and against byte-at-a-time feeding (which only
ever takes the line-by-line path). One deviation from the shape in the middle of
such a stream must not change anything either.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from streamcore import RemoteProtocolError
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

# Field values: JSON-like text with multi-byte characters (2, 3 and 4 bytes in
# UTF-8), or raw bytes that may be invalid UTF-8. Never CR or LF: those end a line.
_TEXT = st.text('{}[]":, abxé東👍\u2028\\', max_size=24).map(str.encode)
_RAW = st.binary(max_size=16).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_CHUNK = '{"choices":[{"index":0,"delta":{"content":"東京"},"finish_reason":null}]}'.encode()
values = st.one_of(_TEXT, _TEXT, _RAW, st.just(_CHUNK))
names = st.sampled_from([b"content_block_delta", b"message_delta", b"ping", b"", b"\xe6\x9d"])

# Lines that break the shape when they turn up between blocks.
DEVIATIONS = [
    b": OPENROUTER PROCESSING\n",
    b"id: 42\n",
    b"retry: 1500\n",
    b"data: first\ndata: second\n\n",
    b"data:no-space\n\n",
    b"data: crlf\r\n\r\n",
    b"data: cr\r\r",
    b"\n",
    b"event: only-a-type\n",
    b"event: content_block_delta\nid: 7\ndata: {}\n\n",
    b"event: message_delta\ndata: a\ndata: b\n\n",
    b"event: ping\n: comment\ndata: {}\n\n",
    b"data: [DONE]\n\n",
]


@dataclass(frozen=True)
class Outcome:
    items: list[SSEEvent | SSEComment]
    error: str | None
    truncated: bool | None
    last_event_id: str
    reconnect_id: str


def run(chunks: list[bytes], max_line_bytes: int = 1 << 20) -> Outcome:
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    items: list[SSEEvent | SSEComment] = []
    error = None
    truncated = None
    try:
        for chunk in chunks:
            items += decoder.feed(chunk)
        truncated = decoder.end().truncated
    except RemoteProtocolError as exc:
        error = exc.kind
    return Outcome(items, error, truncated, decoder.last_event_id, decoder.reconnect_id)


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def cuts_for(stream: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(stream)), max_size=16)


@given(blocks=st.lists(values, min_size=1, max_size=12), data=st.data())
def test_data_blocks_split_anywhere_give_one_event_each(
    blocks: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(b"data: " + value + b"\n\n" for value in blocks)
    chunks = split_at(stream, data.draw(cuts_for(stream)))
    expected: list[SSEEvent | SSEComment] = [
        SSEEvent(value.decode("utf-8", "replace")) for value in blocks
    ]
    assert run(chunks) == Outcome(expected, None, False, "", "")


@given(blocks=st.lists(st.tuples(names, values), min_size=1, max_size=10), data=st.data())
def test_event_and_data_blocks_split_anywhere_give_one_event_each(
    blocks: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(b"event: " + name + b"\ndata: " + value + b"\n\n" for name, value in blocks)
    chunks = split_at(stream, data.draw(cuts_for(stream)))
    expected: list[SSEEvent | SSEComment] = [
        SSEEvent(value.decode("utf-8", "replace"), name.decode("utf-8", "replace") or "message")
        for name, value in blocks
    ]
    assert run(chunks) == Outcome(expected, None, False, "", "")


data_blocks = values.map(lambda value: b"data: " + value + b"\n\n")
typed_blocks = st.tuples(names, values).map(
    lambda nv: b"event: " + nv[0] + b"\ndata: " + nv[1] + b"\n\n"
)


@given(
    shape=st.sampled_from([data_blocks, typed_blocks]),
    deviation=st.sampled_from(DEVIATIONS),
    data=st.data(),
)
def test_a_deviation_among_fast_blocks_decodes_as_byte_at_a_time(
    shape: st.SearchStrategy[bytes], deviation: bytes, data: st.DataObject
) -> None:
    before = data.draw(st.lists(shape, max_size=6))
    after = data.draw(st.lists(shape, max_size=6))
    stream = b"".join([*before, deviation, *after])
    # Cutting right around the deviation puts it alone in a read, next to fast regions.
    edges = [len(b"".join(before)), len(b"".join(before)) + len(deviation)]
    cuts = data.draw(st.lists(st.integers(0, len(stream)) | st.sampled_from(edges), max_size=16))
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    assert run(split_at(stream, cuts)) == run(one_by_one)


@given(
    blocks=st.lists(values, min_size=1, max_size=8),
    limit=st.integers(6, 40),
    data=st.data(),
)
def test_line_limit_near_block_size_acts_as_byte_at_a_time(
    blocks: list[bytes], limit: int, data: st.DataObject
) -> None:
    # The fast path skips per-line checks only where no line can reach the
    # limit; around it, the outcome (events, then line_too_long) must not move.
    stream = b"".join(b"data: " + value + b"\n\n" for value in blocks)
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    chunks = split_at(stream, data.draw(cuts_for(stream)))
    assert run(chunks, limit) == run(one_by_one, limit)


def test_invalid_utf8_in_a_data_block_becomes_replacement_characters() -> None:
    stream = b'data: {"text":"\xe6\x9d"}\n\ndata: \xff ok\n\n'
    assert run([stream]).items == [SSEEvent('{"text":"\ufffd"}'), SSEEvent("\ufffd ok")]


def test_character_cut_between_reads_is_decoded_whole() -> None:
    stream = 'data: {"content":"東京👍"}\n\n'.encode()
    cut = stream.index("京".encode()) + 1  # inside the 3-byte character
    assert run([stream[:cut], stream[cut:]]).items == [SSEEvent('{"content":"東京👍"}')]


def test_id_from_an_earlier_read_is_the_id_of_the_fast_blocks_after_it() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: resp_42\n") == []
    assert decoder.feed(b'data: {"a":1}\n\ndata: {"b":2}\n\n') == [
        SSEEvent('{"a":1}', id="resp_42"),
        SSEEvent('{"b":2}', id="resp_42"),
    ]
    assert decoder.reconnect_id == "resp_42"
