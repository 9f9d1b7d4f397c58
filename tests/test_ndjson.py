"""NDJSONDecoder: Ollama-style NDJSON bodies, however they are chunked or cut."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import RemoteProtocolError
from streamcore.framing import EndOfInput
from streamcore.ndjson import NDJSONDecoder

# An Ollama /api/chat stream (stream=true), as the server writes it.
CHAT_LINES = [
    {
        "model": "llama3.2",
        "created_at": "2024-11-19T15:52:03.117351Z",
        "message": {"role": "assistant", "content": "The"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2024-11-19T15:52:03.134928Z",
        "message": {"role": "assistant", "content": " sky is blue 🌤️ because"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2024-11-19T15:52:03.152477Z",
        "message": {"role": "assistant", "content": " of Rayleigh scattering."},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2024-11-19T15:52:07.939453Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342546000,
        "eval_count": 298,
        "eval_duration": 4535599000,
    },
]


def ndjson(values: list[object], newline: str = "\n") -> bytes:
    """Serialize like Ollama's Go server: compact JSON, non-ASCII kept as UTF-8."""
    return b"".join(
        (json.dumps(v, ensure_ascii=False, separators=(",", ":")) + newline).encode()
        for v in values
    )


CHAT_BODY = ndjson(CHAT_LINES)


def decode(chunks: list[bytes], **kwargs: int) -> tuple[list[object], EndOfInput[object]]:
    decoder = NDJSONDecoder(**kwargs)
    values: list[object] = []
    for chunk in chunks:
        values += decoder.feed(chunk)
    return values, decoder.end()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- line framing ---------------------------------------------------------------------------


def test_each_line_yields_its_parsed_value() -> None:
    assert decode([CHAT_BODY]) == (CHAT_LINES, EndOfInput())


def test_value_is_held_back_until_its_newline_arrives() -> None:
    decoder = NDJSONDecoder()
    line = ndjson(CHAT_LINES[:1])
    assert decoder.feed(line[:-1]) == []
    assert decoder.feed(b"\n") == CHAT_LINES[:1]


def test_crlf_line_endings_are_accepted() -> None:
    assert decode([ndjson(CHAT_LINES, "\r\n")]) == (CHAT_LINES, EndOfInput())


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    body = ndjson(CHAT_LINES[:1], "\r\n")
    assert decode([body[:-1], body[-1:]]) == (CHAT_LINES[:1], EndOfInput())


def test_blank_and_whitespace_only_lines_are_skipped() -> None:
    first, last = ndjson(CHAT_LINES[:1]), ndjson(CHAT_LINES[-1:])
    values, _ = decode([first + b"\n  \t\n\r\n" + last])
    assert values == [CHAT_LINES[0], CHAT_LINES[-1]]


def test_multibyte_character_split_across_chunks_decodes_whole() -> None:
    body = ndjson(CHAT_LINES[1:2])
    cut = body.index("🌤".encode()) + 2  # inside the 4-byte emoji
    assert decode([body[:cut], body[cut:]]) == (CHAT_LINES[1:2], EndOfInput())


def test_ollama_error_line_is_passed_through_as_a_value() -> None:
    # The framing layer does not interpret payloads; the Ollama dialect turns this into an event.
    body = (
        ndjson(CHAT_LINES[:1]) + b'{"error":"model \\"llama9\\" not found, try pulling it first"}\n'
    )
    values, _ = decode([body])
    assert values[1] == {"error": 'model "llama9" not found, try pulling it first'}


# --- end of input ---------------------------------------------------------------------------


def test_unterminated_last_line_with_complete_json_is_returned_by_end() -> None:
    values, eoi = decode([CHAT_BODY[:-1]])
    assert values == CHAT_LINES[:-1]
    assert eoi == EndOfInput(items=(CHAT_LINES[-1],), truncated=False)


def test_unterminated_last_line_with_incomplete_json_is_truncated() -> None:
    body = CHAT_BODY[:-40]
    _, eoi = decode([body])
    partial = len(body) - (body.rindex(b"\n") + 1)
    assert (eoi.items, eoi.truncated) == ((), True)
    assert f"line 4 after {partial} bytes" in eoi.detail


def test_body_ending_with_newline_is_not_truncated() -> None:
    assert decode([CHAT_BODY])[1] == EndOfInput()


def test_whitespace_only_remainder_is_not_truncated() -> None:
    assert decode([CHAT_BODY + b"  \r"])[1] == EndOfInput()


def test_empty_body_is_not_truncated() -> None:
    assert decode([]) == ([], EndOfInput())


def test_unterminated_last_line_with_invalid_utf8_is_truncated_not_raised() -> None:
    # A cut can only leave half a character at the very end; that is a drop, not garbage.
    body = ndjson(CHAT_LINES[1:2])
    cut = body.index("🌤".encode()) + 2
    assert decode([body[:cut]])[1].truncated


# --- limits ---------------------------------------------------------------------------------


def test_line_over_limit_raises_before_its_newline_arrives() -> None:
    decoder = NDJSONDecoder(max_line_bytes=64)
    decoder.feed(b'{"message":{"content":"' + b"a" * 40)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"a" * 10)
    assert info.value.kind == "line_too_long"


def test_complete_line_over_limit_raises_line_too_long() -> None:
    line = ndjson(CHAT_LINES[:1])
    with pytest.raises(RemoteProtocolError) as info:
        decode([line], max_line_bytes=len(line) - 2)
    assert info.value.kind == "line_too_long"


def test_line_exactly_at_limit_is_accepted_even_with_a_split_crlf() -> None:
    body = ndjson(CHAT_LINES[:1], "\r\n")
    limit = len(body) - 2  # the line without its CRLF
    assert decode([body[:-1], body[-1:]], max_line_bytes=limit)[0] == CHAT_LINES[:1]


def test_line_too_long_message_names_the_limit_and_the_parameter() -> None:
    with pytest.raises(RemoteProtocolError, match=r"1000-byte limit \(max_line_bytes\)"):
        decode([b"x" * 1001], max_line_bytes=1000)


def test_blank_line_over_limit_still_raises() -> None:
    # Otherwise a stream of spaces with no newline could grow the buffer without bound.
    with pytest.raises(RemoteProtocolError) as info:
        decode([b" " * 100], max_line_bytes=50)
    assert info.value.kind == "line_too_long"


# --- errors ---------------------------------------------------------------------------------


def test_invalid_json_names_the_line_number_counting_blank_lines() -> None:
    body = ndjson(CHAT_LINES[:1]) + b"\n" + b'{"model":"llama3.2","message":{"role":"assis\n'
    with pytest.raises(RemoteProtocolError, match="line 3 is not valid JSON") as info:
        decode([body])
    assert info.value.kind == "invalid_json"


def test_invalid_json_message_quotes_a_short_snippet() -> None:
    line = b"<html><head><title>502 Bad Gateway</title></head>" + b" " * 200 + b"</html>\n"
    with pytest.raises(RemoteProtocolError) as info:
        decode([line])
    message = str(info.value)
    assert "502 Bad Gateway" in message
    assert "</html>" not in message


# --- properties -----------------------------------------------------------------------------

# Text that stresses every layer: JSON syntax, escapes, line breaks inside strings, emoji.
tricky_text = st.text(
    alphabet=st.sampled_from([*'[]{}",:\\/\n\r\t ', "é", "😀", "\u2028", "\x00", "a"]),
    max_size=30,
) | st.text(max_size=30)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=12,
)

chat_like_lines = st.lists(
    st.fixed_dictionaries(
        {
            "model": st.just("llama3.2"),
            "message": st.fixed_dictionaries(
                {"role": st.just("assistant"), "content": tricky_text}
            ),
            "done": st.booleans(),
        }
    ),
    max_size=6,
)


@given(values=st.lists(json_values, max_size=6), newline=st.sampled_from(["\n", "\r\n"]))
def test_any_json_values_round_trip_through_dumps_and_the_decoder(
    values: list[object], newline: str
) -> None:
    assert decode([ndjson(values, newline)]) == (values, EndOfInput())


@given(data=st.data(), newline=st.sampled_from(["\n", "\r\n"]))
def test_any_chunking_gives_same_values(data: st.DataObject, newline: str) -> None:
    values = data.draw(chat_like_lines)
    body = ndjson(values, newline)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    assert decode(split_at(body, cuts)) == (values, EndOfInput())


def test_byte_by_byte_feeding_gives_same_values() -> None:
    body = ndjson(CHAT_LINES, "\r\n")
    assert decode([body[i : i + 1] for i in range(len(body))]) == (CHAT_LINES, EndOfInput())


@given(data=st.data(), newline=st.sampled_from(["\n", "\r\n"]))
def test_truncation_at_any_byte_gives_a_prefix_and_a_correct_flag(
    data: st.DataObject, newline: str
) -> None:
    values = data.draw(chat_like_lines.filter(bool))
    body = ndjson(values, newline)
    cut = data.draw(st.integers(0, len(body)))
    prefix = body[:cut]
    complete = prefix.count(b"\n")
    rest = prefix[prefix.rfind(b"\n") + 1 :].rstrip(b"\r")
    # Every line is an object, so its text is valid JSON only once its closing brace is in.
    whole_last = complete < len(values) and rest == ndjson(values[complete : complete + 1], "")
    expected = values[: complete + 1] if whole_last else values[:complete]
    decoded, eoi = decode(split_at(prefix, data.draw(st.lists(st.integers(0, cut), max_size=4))))
    assert decoded + list(eoi.items) == expected
    assert eoi.truncated == (rest != b"" and not whole_last)
