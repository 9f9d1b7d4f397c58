"""SSE decoder and encoder, rule by rule.

Each test is one rule of the WHATWG HTML standard, "Interpreting an event
stream", or one promise of streamcore.sse (limits, the error rule, end()).
"""

from __future__ import annotations

import sys

import pytest

from streamcore import LocalProtocolError, RemoteProtocolError
from streamcore.framing import EndOfInput
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent, encode_comment, encode_event

OPENAI_CHUNK = (
    '{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    '"created":1741570283,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306",'
    '"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}'
)
ANTHROPIC_DELTA = (
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}'
)
ANTHROPIC_PING = '{"type": "ping"}'


def decode(*chunks: bytes) -> list[SSEEvent | SSEComment]:
    decoder = SSEDecoder()
    out: list[SSEEvent | SSEComment] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def decode_to_end(*chunks: bytes) -> tuple[list[SSEEvent | SSEComment], EndOfInput[object]]:
    decoder = SSEDecoder()
    out: list[SSEEvent | SSEComment] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out, decoder.end()


def one_byte_at_a_time(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


# -- line endings -----------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_lf_crlf_and_cr_each_end_a_line(eol: bytes) -> None:
    stream = b"event: content_block_delta" + eol + b"data: " + ANTHROPIC_DELTA.encode() + eol * 2
    assert decode(stream) == [SSEEvent(ANTHROPIC_DELTA, event="content_block_delta")]


def test_mixed_line_endings_in_one_stream() -> None:
    stream = b"data: first\r\ndata: second\rdata: third\n\r\n: ping\r"
    assert decode(stream) == [SSEEvent("first\nsecond\nthird"), SSEComment("ping")]


def test_crlf_split_across_chunks_is_one_line_break() -> None:
    # Were the LF a second line break, "data: a" would be dispatched alone.
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent("a\nb")]


def test_cr_at_end_of_chunk_ends_the_line_without_waiting_for_the_next_byte() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]\r\r") == [SSEEvent("[DONE]")]


def test_cr_then_lf_in_a_later_chunk_after_other_bytes_is_two_line_breaks() -> None:
    # CR, then "x", then LF: the LF ends the line "x", it is not part of a CRLF.
    assert decode(b"data: a\r", b"data: b", b"\n\n") == [SSEEvent("a\nb")]


# -- byte order mark --------------------------------------------------------


def test_bom_at_stream_start_is_stripped() -> None:
    assert decode(b"\xef\xbb\xbfdata: " + OPENAI_CHUNK.encode() + b"\n\n") == [
        SSEEvent(OPENAI_CHUNK)
    ]


def test_bom_split_one_byte_per_chunk_is_stripped() -> None:
    stream = b"\xef\xbb\xbfdata: 1\n\ndata: 2\n\n"
    assert decode(*one_byte_at_a_time(stream)) == [SSEEvent("1"), SSEEvent("2")]


def test_bom_is_stripped_only_once() -> None:
    # The second BOM is content: the field name becomes "\ufeffdata", which is ignored.
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: 1\n\ndata: 2\n\n") == [SSEEvent("2")]


def test_bom_after_stream_start_is_not_stripped() -> None:
    assert decode(b"data: 1\n\n\xef\xbb\xbfdata: 2\n\ndata: 3\n\n") == [
        SSEEvent("1"),
        SSEEvent("3"),
    ]


def test_partial_bom_is_content_not_a_bom() -> None:
    # EF BB then "d" is invalid UTF-8: the field name is "\ufffddata", ignored.
    assert decode(b"\xef\xbb", b"data: 1\n\ndata: 2\n\n") == [SSEEvent("2")]


# -- fields -----------------------------------------------------------------


def test_only_one_leading_space_is_stripped_from_a_value() -> None:
    assert decode(b"data:  two spaces\n\n") == [SSEEvent(" two spaces")]


def test_value_without_space_after_colon() -> None:
    assert decode(b"data:" + OPENAI_CHUNK.encode() + b"\n\n") == [SSEEvent(OPENAI_CHUNK)]


def test_field_splits_at_first_colon_only() -> None:
    assert decode(b"data: https://api.openai.com:443/v1\n\n") == [
        SSEEvent("https://api.openai.com:443/v1")
    ]


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    assert decode(b"data\n\n") == [SSEEvent("")]


def test_data_lines_are_joined_with_lf() -> None:
    assert decode(b'data: {"a":\ndata: 1}\n\n') == [SSEEvent('{"a":\n1}')]


def test_empty_data_lines_keep_their_line_breaks() -> None:
    assert decode(b"data:\ndata: x\ndata:\n\n") == [SSEEvent("\nx\n")]


def test_blank_line_with_empty_data_buffer_dispatches_nothing() -> None:
    assert decode(b"event: ping\n\n\n\n") == []


def test_event_type_is_reset_by_a_blank_line_that_dispatches_nothing() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("x", event="message")]


def test_event_type_is_reset_after_each_dispatch() -> None:
    stream = b"event: ping\ndata: " + ANTHROPIC_PING.encode() + b"\n\ndata: x\n\n"
    assert decode(stream) == [SSEEvent(ANTHROPIC_PING, event="ping"), SSEEvent("x")]


def test_named_event_with_several_data_lines_joins_them() -> None:
    stream = b"event: message_delta\ndata: {\ndata: }\n\nevent: message_stop\ndata: {}\n\n"
    assert decode(stream) == [
        SSEEvent("{\n}", event="message_delta"),
        SSEEvent("{}", event="message_stop"),
    ]


def test_named_event_with_an_id_line_between_keeps_both() -> None:
    stream = b"event: message_delta\nid: 5\ndata: {}\n\nevent: ping\ndata: {}\n\n"
    assert decode(stream) == [
        SSEEvent("{}", event="message_delta", id="5"),
        SSEEvent("{}", event="ping", id="5"),
    ]


def test_empty_event_field_means_message() -> None:
    assert decode(b"event:\ndata: x\n\n") == [SSEEvent("x", event="message")]


def test_last_event_field_wins() -> None:
    assert decode(b"event: a\nevent: b\ndata: x\n\n") == [SSEEvent("x", event="b")]


def test_id_persists_across_later_events() -> None:
    stream = b"id: 41\ndata: a\n\ndata: b\n\nid: 42\ndata: c\n\n"
    assert decode(stream) == [
        SSEEvent("a", id="41"),
        SSEEvent("b", id="41"),
        SSEEvent("c", id="42"),
    ]


def test_empty_id_field_resets_the_last_event_id() -> None:
    assert decode(b"id: 41\ndata: a\n\nid\ndata: b\n\n") == [
        SSEEvent("a", id="41"),
        SSEEvent("b", id=""),
    ]


def test_id_containing_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n") == [
        SSEEvent("a", id="7"),
        SSEEvent("b", id="7"),
    ]
    assert decoder.last_event_id == "7"


def test_id_applies_to_the_event_it_is_in_whatever_the_line_order() -> None:
    assert decode(b"data: a\nid: 5\n\n") == [SSEEvent("a", id="5")]


def test_retry_with_ascii_digits_sets_the_reconnection_time() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 3000\n")
    assert decoder.retry == 3000


def test_retry_is_none_until_set() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: x\n\n")
    assert decoder.retry is None


@pytest.mark.parametrize(
    "value",
    [b"", b" 3000", b"-1", b"+5", b"1.5", b"3000ms", b"0x10", "１２".encode(), b"1_000"],
    ids=["empty", "second-space", "minus", "plus", "decimal", "unit", "hex", "fullwidth", "under"],
)
def test_retry_that_is_not_only_ascii_digits_is_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 1000\nretry: " + value + b"\n")
    assert decoder.retry == 1000


def test_retry_with_leading_zeros_is_decimal() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 0100\n")
    assert decoder.retry == 100


def test_retry_too_long_for_int_parsing_is_ignored() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 5\nretry: " + b"9" * 5000 + b"\n")
    assert decoder.retry == 5


@pytest.mark.parametrize("line", [b"Data: x", b"data : x", b"DATA: x", b"foo: bar", b"\x00: x"])
def test_unknown_field_names_are_ignored(line: bytes) -> None:
    assert decode(line + b"\ndata: kept\n\n") == [SSEEvent("kept")]


# -- comments ---------------------------------------------------------------


def test_comments_are_surfaced_in_stream_order() -> None:
    stream = b": OPENROUTER PROCESSING\n\ndata: " + OPENAI_CHUNK.encode() + b"\n\n:keep-alive\n"
    assert decode(stream) == [
        SSEComment("OPENROUTER PROCESSING"),
        SSEEvent(OPENAI_CHUNK),
        SSEComment("keep-alive"),
    ]


def test_comment_inside_an_event_does_not_end_it() -> None:
    assert decode(b"data: a\n: ping\ndata: b\n\n") == [SSEComment("ping"), SSEEvent("a\nb")]


def test_comment_has_one_leading_space_stripped() -> None:
    assert decode(b":  indented\n:\n") == [SSEComment(" indented"), SSEComment("")]


# -- UTF-8 ------------------------------------------------------------------


def test_invalid_utf8_decodes_to_replacement_characters() -> None:
    assert decode(b"data: caf\xe9 \xff\n\n") == [SSEEvent("caf\ufffd \ufffd")]


def test_truncated_utf8_sequence_before_line_end_is_one_replacement_character() -> None:
    assert decode(b"data: \xf0\x9f\x98\ndata: ok\n\n") == [SSEEvent("\ufffd\nok")]


def test_multibyte_character_split_across_chunks_decodes_whole() -> None:
    stream = 'data: {"text":"東京 👍🏽"}\n\n'.encode()
    assert decode(*one_byte_at_a_time(stream)) == [SSEEvent('{"text":"東京 👍🏽"}')]


def test_event_type_and_id_are_decoded_as_utf8() -> None:
    assert decode("event: ünïcode\nid: 😀\ndata: x\n\n".encode()) == [
        SSEEvent("x", event="ünïcode", id="😀")
    ]


# -- events as values ---------------------------------------------------------


def test_decoded_events_equal_hash_and_print_like_constructed_ones() -> None:
    decoded = decode(b"event: message_stop\nid: 9\ndata: {}\n\ndata: x\n\n")
    built = [SSEEvent("{}", event="message_stop", id="9"), SSEEvent("x", id="9")]
    assert decoded == built
    assert [hash(e) for e in decoded] == [hash(e) for e in built]
    assert [repr(e) for e in decoded] == [repr(e) for e in built]


def test_decoded_events_are_immutable() -> None:
    (event,) = decode(b"data: x\n\n")
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]
    assert event == SSEEvent("x")


# -- end of input -----------------------------------------------------------


def test_end_of_empty_stream_is_not_truncated() -> None:
    assert SSEDecoder().end() == EndOfInput()


def test_end_right_after_a_dispatch_is_not_truncated() -> None:
    _, eoi = decode_to_end(b"data: [DONE]\n\n")
    assert eoi == EndOfInput()


def test_end_after_only_comments_is_not_truncated() -> None:
    _, eoi = decode_to_end(b": keep-alive\n: keep-alive\n")
    assert eoi == EndOfInput()


def test_end_after_a_lone_bom_is_not_truncated() -> None:
    _, eoi = decode_to_end(b"\xef\xbb\xbf")
    assert eoi == EndOfInput()


def test_end_after_field_lines_without_blank_line_discards_the_event() -> None:
    items, eoi = decode_to_end(b"event: content_block_delta\ndata: " + ANTHROPIC_DELTA.encode())
    assert items == []
    assert eoi.items == ()
    assert eoi.truncated
    assert "before the blank line" in eoi.detail


def test_end_after_complete_data_line_but_no_blank_line_is_truncated() -> None:
    items, eoi = decode_to_end(b"data: [DONE]\n")
    assert (items, eoi.items, eoi.truncated) == ([], (), True)


def test_end_after_an_id_field_alone_is_truncated() -> None:
    _, eoi = decode_to_end(b"data: a\n\nid: 42\n")
    assert eoi.truncated


def test_end_inside_an_unterminated_line_is_truncated() -> None:
    _, eoi = decode_to_end(b"data: a\n\n: keep-al")
    assert eoi.truncated
    assert "unfinished line (9 bytes" in eoi.detail


def test_unterminated_last_line_is_not_processed() -> None:
    # The comment is never surfaced and the retry never applied: no line break came.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nretry: 10") == [SSEEvent("a")]
    decoder.end()
    assert decoder.retry is None


def test_end_twice_is_a_local_error() -> None:
    decoder = SSEDecoder()
    decoder.end()
    with pytest.raises(LocalProtocolError) as info:
        decoder.end()
    assert info.value.kind == "end_twice"


@pytest.mark.parametrize("chunk", [b"", b"data: x", b"data: x\n\n", b"\r"])
def test_feed_after_end_is_a_local_error(chunk: bytes) -> None:
    decoder = SSEDecoder()
    decoder.end()
    with pytest.raises(LocalProtocolError) as info:
        decoder.feed(chunk)
    assert info.value.kind == "feed_after_end"


def test_reconnect_id_lags_the_last_event_id_until_the_blank_line() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b")
    assert (decoder.last_event_id, decoder.reconnect_id) == ("2", "1")
    decoder.feed(b"\n\n")
    assert (decoder.last_event_id, decoder.reconnect_id) == ("2", "2")


def test_reconnect_id_advances_on_a_blank_line_that_dispatches_nothing() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 3\n\n")
    assert decoder.reconnect_id == "3"


# -- limits and the error rule ------------------------------------------------


def test_line_too_long_has_kind_and_names_the_limit() -> None:
    decoder = SSEDecoder(max_line_bytes=64)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"data: " + b"x" * 100 + b"\n\n")
    assert info.value.kind == "line_too_long"
    assert "exceeds 64 bytes (max_line_bytes)" in str(info.value)
    assert "raise the limit" in str(info.value)


def test_line_too_long_is_detected_before_its_line_break_arrives() -> None:
    decoder = SSEDecoder(max_line_bytes=64)
    decoder.feed(b"data: " + b"x" * 58)  # exactly 64 bytes: still allowed
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"x")
    assert info.value.kind == "line_too_long"
    assert "unfinished line" in str(info.value)


def test_line_of_exactly_the_limit_is_accepted() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    assert decoder.feed(b"data: 1234\n\n") == [SSEEvent("1234")]


def test_bom_does_not_count_toward_the_line_limit() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    assert decoder.feed(b"\xef\xbb\xbfdata: 1234") == []
    assert decoder.feed(b"\n\n") == [SSEEvent("1234")]


def test_events_before_a_long_line_are_returned_and_the_next_call_raises() -> None:
    decoder = SSEDecoder(max_line_bytes=64)
    chunk = b"data: ok\n\n: ping\ndata: " + b"x" * 100 + b"\n\n"
    assert decoder.feed(chunk) == [SSEEvent("ok"), SSEComment("ping")]
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"data: after\n\n")
    assert info.value.kind == "line_too_long"


def test_events_before_an_overlong_unfinished_line_are_returned_first() -> None:
    decoder = SSEDecoder(max_line_bytes=64)
    assert decoder.feed(b"data: ok\n\ndata: " + b"x" * 100) == [SSEEvent("ok")]
    with pytest.raises(RemoteProtocolError):
        decoder.end()


@pytest.mark.parametrize("call", ["feed_lf", "feed_plain", "feed_cr", "end"])
def test_failed_decoder_keeps_raising_the_same_error(call: str) -> None:
    decoder = SSEDecoder(max_line_bytes=8)
    with pytest.raises(RemoteProtocolError) as first:
        decoder.feed(b"data: too long\n")
    with pytest.raises(RemoteProtocolError) as again:
        if call == "end":
            decoder.end()
        else:
            decoder.feed({"feed_lf": b"data: x\n\n", "feed_plain": b"x", "feed_cr": b"\r"}[call])
    assert again.value is first.value


def test_event_data_over_max_event_bytes_has_its_own_kind() -> None:
    decoder = SSEDecoder(max_line_bytes=100, max_event_bytes=1000)
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(50):
            decoder.feed(b"data: " + b"x" * 50 + b"\n")
    assert info.value.kind == "event_too_large"
    assert "max_event_bytes" in str(info.value)


def test_event_data_limit_counts_across_chunks_and_resets_per_event() -> None:
    decoder = SSEDecoder(max_line_bytes=100, max_event_bytes=120)
    for _ in range(20):
        assert decoder.feed(b"data: " + b"x" * 50 + b"\ndata: " + b"y" * 50 + b"\n") == []
        assert decoder.feed(b"\n") == [SSEEvent("x" * 50 + "\n" + "y" * 50)]


@pytest.mark.parametrize("argument", ["max_line_bytes", "max_event_bytes"])
def test_limits_below_one_are_rejected(argument: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        SSEDecoder(**{argument: 0})
    assert info.value.kind == "invalid_argument"


# -- linear time --------------------------------------------------------------

SCANS = {"find", "rfind", "split", "count", "decode", "replace", "startswith", "endswith"}


def test_a_long_line_fed_in_small_pieces_is_never_rescanned() -> None:
    # Deterministic stand-in for a timing test: while a line has no line break,
    # feed() must not call any method that scans the buffered bytes.
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\ndata: ")
    piece = b'{"delta":"' + b"x" * 54
    seen: list[str] = []

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") in SCANS:
            seen.append(arg.__name__)  # type: ignore[attr-defined]

    sys.setprofile(profile)
    try:
        for _ in range(2000):  # 128 KB of one line
            decoder.feed(piece)
    finally:
        sys.setprofile(None)
    assert seen == []
    assert decoder.feed(b"\n\n") == [SSEEvent((piece * 2000).decode())]


# -- encoder ------------------------------------------------------------------


def test_encode_event_writes_fields_then_data_lines_then_a_blank_line() -> None:
    assert encode_event("a\nb", event="content_block_delta", id="7", retry=3000) == (
        b"event: content_block_delta\nid: 7\nretry: 3000\ndata: a\ndata: b\n\n"
    )


def test_encode_event_with_empty_id_writes_a_reset() -> None:
    assert encode_event("x", id="") == b"id: \ndata: x\n\n"


def test_encode_event_rejects_cr_in_data_and_says_why() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_event("line one\r\nline two")
    assert info.value.kind == "invalid_data"
    assert "would arrive as LF" in str(info.value)


@pytest.mark.parametrize("event", ["a\nb", "a\rb", "ping\n"])
def test_encode_event_rejects_line_breaks_in_event_type(event: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_event("x", event=event)
    assert info.value.kind == "invalid_event_type"


def test_encode_event_rejects_empty_event_type() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_event("x", event="")
    assert info.value.kind == "invalid_event_type"


@pytest.mark.parametrize("event_id", ["1\n2", "1\r2", "1\x002"])
def test_encode_event_rejects_line_breaks_and_nul_in_id(event_id: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_event("x", id=event_id)
    assert info.value.kind == "invalid_id"


@pytest.mark.parametrize("retry", [-1, True, 1.5])
def test_encode_event_rejects_a_retry_that_is_not_a_non_negative_int(retry: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_event("x", retry=retry)  # type: ignore[arg-type]
    assert info.value.kind == "invalid_retry"


@pytest.mark.parametrize("field", ["data", "event", "id"])
def test_encode_event_rejects_lone_surrogates(field: str) -> None:
    kwargs = {"data": "x", field: "bad \ud800"}
    with pytest.raises(LocalProtocolError) as info:
        encode_event(**kwargs)  # type: ignore[arg-type]
    assert info.value.kind == "unencodable_text"


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "\r\n"])
def test_encode_comment_rejects_line_breaks(text: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_comment(text)
    assert info.value.kind == "invalid_comment"


def test_encode_comment_writes_one_comment_line() -> None:
    assert (encode_comment("keep-alive"), encode_comment()) == (b": keep-alive\n", b":\n")


@pytest.mark.parametrize(
    "data",
    [
        "",
        "\n",
        "\n\n",
        " leading space",
        "  two",
        "a: b",
        ":colon first",
        "東京 👍🏽",
        OPENAI_CHUNK,
    ],
)
def test_encoded_event_decodes_to_itself(data: str) -> None:
    assert decode(encode_event(data, event="content_block_delta", id="msg_01")) == [
        SSEEvent(data, event="content_block_delta", id="msg_01")
    ]


@pytest.mark.parametrize("text", ["", " ", "keep-alive", ": nested", "👍"])
def test_encoded_comment_decodes_to_itself(text: str) -> None:
    assert decode(encode_comment(text)) == [SSEComment(text)]
