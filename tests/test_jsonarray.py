"""JSONArrayDecoder: Gemini's streamed JSON array, element by element, however it is cut."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import RemoteProtocolError
from streamcore.framing import EndOfInput
from streamcore.jsonarray import JSONArrayDecoder


def gemini_chunk(text: str, *, finish: bool = False) -> dict[str, object]:
    """A GenerateContentResponse as streamGenerateContent sends it."""
    candidate: dict[str, object] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    usage: dict[str, object] = {"promptTokenCount": 9, "totalTokenCount": 9}
    if finish:
        candidate["finishReason"] = "STOP"
        usage = {"promptTokenCount": 9, "candidatesTokenCount": 21, "totalTokenCount": 30}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.0-flash",
        "responseId": "mJo3aKXvF9-sz7IPhqjwgQk",
    }


GEMINI_CHUNKS = [
    gemini_chunk("The sky looks blue"),
    gemini_chunk(' because air scatters short {"blue"} wavelengths [more] \\ than red 🌅'),
    gemini_chunk(" light.", finish=True),
]


def gemini_array(elements: list[object], *, indent: int | None = 2) -> bytes:
    """The body as Gemini lays it out: pretty-printed elements, CRLF around the commas."""
    parts = [json.dumps(e, indent=indent, ensure_ascii=False) for e in elements]
    return ("[" + "\r\n,\r\n".join(parts) + "\r\n]").encode()


GEMINI_BODY = gemini_array(GEMINI_CHUNKS)


def decode(chunks: list[bytes], **kwargs: int) -> tuple[list[object], EndOfInput[object]]:
    decoder = JSONArrayDecoder(**kwargs)
    values: list[object] = []
    for chunk in chunks:
        values += decoder.feed(chunk)
    return values, decoder.end()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def kind_of_error(body: bytes, **kwargs: int) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        decode([body], **kwargs)
    return info.value.kind


# --- elements -------------------------------------------------------------------------------


def test_gemini_body_yields_each_response_object() -> None:
    assert decode([GEMINI_BODY]) == (GEMINI_CHUNKS, EndOfInput())


def test_element_is_yielded_as_soon_as_its_closing_brace_arrives() -> None:
    decoder = JSONArrayDecoder()
    first_end = GEMINI_BODY.index(b"}\r\n,") + 1
    assert decoder.feed(GEMINI_BODY[: first_end - 1]) == []
    assert decoder.feed(GEMINI_BODY[first_end - 1 : first_end]) == GEMINI_CHUNKS[:1]


def test_compact_array_without_whitespace_decodes() -> None:
    body = json.dumps(GEMINI_CHUNKS, separators=(",", ":")).encode()
    assert decode([body]) == (GEMINI_CHUNKS, EndOfInput())


def test_empty_array_yields_nothing_and_is_complete() -> None:
    assert decode([b"[]"]) == ([], EndOfInput())


def test_whitespace_around_the_array_is_accepted() -> None:
    assert decode([b"\r\n [\n]\r\n "]) == ([], EndOfInput())


def test_scalar_elements_are_decoded() -> None:
    body = b'[42, -0.5e3, true, false, null, "done", {"a": []}, []]'
    assert decode([body])[0] == [42, -500.0, True, False, None, "done", {"a": []}, []]


def test_number_element_is_held_back_until_a_delimiter_shows_it_is_complete() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b"[12") == []
    assert decoder.feed(b"3") == []
    assert decoder.feed(b"\r\n,") == [123]


def test_brackets_braces_and_escaped_quotes_in_strings_do_not_end_the_element() -> None:
    element = {"text": 'a "]}" then \\"{[ and ,"', "n": 1}
    assert decode([gemini_array([element, element])])[0] == [element, element]


def test_escaped_backslash_before_a_quote_ends_the_string() -> None:
    # `"C:\\"` is the string C:\ ; the quote after the two backslashes closes it.
    body = b'[{"path":"C:\\\\"},"x\\\\"]'
    assert decode([body])[0] == [{"path": "C:\\"}, "x\\"]


def test_backslash_at_the_end_of_a_chunk_escapes_the_next_chunks_first_byte() -> None:
    decoder = JSONArrayDecoder()
    assert decoder.feed(b'[{"text":"say \\') == []
    assert decoder.feed(b'"]}\\" please"}]') == [{"text": 'say "]}" please'}]


def test_multibyte_character_split_across_chunks_decodes_whole() -> None:
    cut = GEMINI_BODY.index("🌅".encode()) + 1
    assert decode([GEMINI_BODY[:cut], GEMINI_BODY[cut:]])[0] == GEMINI_CHUNKS


def test_whitespace_between_elements_does_not_count_against_the_limit() -> None:
    element = b'{"candidates":[]}'
    body = b"[" + element + b"\r\n" * 5000 + b"," + b" " * 5000 + element + b"]"
    assert decode([body], max_element_bytes=len(element))[0] == [{"candidates": []}] * 2


# --- end of input ---------------------------------------------------------------------------


def test_array_cut_inside_an_element_is_truncated_naming_the_element() -> None:
    cut = GEMINI_BODY.index(b"light.")
    values, eoi = decode([GEMINI_BODY[:cut]])
    assert values == GEMINI_CHUNKS[:2]
    assert eoi.truncated
    assert "inside element 2" in eoi.detail


def test_array_cut_between_elements_is_truncated_before_the_closing_bracket() -> None:
    values, eoi = decode([GEMINI_BODY[:-3]])  # everything but "\r\n]"
    assert values == GEMINI_CHUNKS
    assert eoi.truncated
    assert "before the closing bracket" in eoi.detail


def test_array_cut_inside_a_number_is_truncated_without_the_number() -> None:
    assert decode([b"[1, 23"]) == (
        [1],
        EndOfInput(truncated=True, detail="input ended inside element 1 after 2 of its bytes"),
    )


def test_empty_body_is_truncated() -> None:
    values, eoi = decode([])
    assert (values, eoi.truncated) == ([], True)
    assert "before the array began" in eoi.detail


# --- grammar errors -------------------------------------------------------------------------


def test_body_not_starting_with_a_bracket_is_invalid_json() -> None:
    # What a proxy sends instead of the stream: a bare error object.
    body = b'{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}'
    assert kind_of_error(body) == "invalid_json"


def test_missing_comma_between_elements_is_invalid_json() -> None:
    body = GEMINI_BODY.replace(b"\r\n,\r\n", b"\r\n\r\n", 1)
    assert kind_of_error(body) == "invalid_json"


def test_trailing_comma_before_the_closing_bracket_is_invalid_json() -> None:
    assert kind_of_error(GEMINI_BODY[:-1] + b",\r\n]") == "invalid_json"


def test_leading_comma_is_invalid_json() -> None:
    assert kind_of_error(b"[," + GEMINI_BODY[1:]) == "invalid_json"


def test_content_after_the_closing_bracket_is_invalid_json() -> None:
    assert kind_of_error(GEMINI_BODY + b"\r\n[]") == "invalid_json"


def test_invalid_element_names_its_index() -> None:
    body = b"[" + json.dumps(GEMINI_CHUNKS[0]).encode() + b',{"candidates":[}]'
    with pytest.raises(RemoteProtocolError, match="element 1") as info:
        decode([body])
    assert info.value.kind == "invalid_json"


def test_mismatched_brackets_inside_an_element_are_invalid_json() -> None:
    assert kind_of_error(b'[{"parts":[{"text":"hi"}}]]') == "invalid_json"


def test_invalid_literal_is_invalid_json() -> None:
    assert kind_of_error(b"[True]") == "invalid_json"


# --- limits ---------------------------------------------------------------------------------


def test_element_over_limit_raises_before_it_completes() -> None:
    decoder = JSONArrayDecoder(max_element_bytes=100)
    decoder.feed(b'[{"candidates":[{"content":{"parts":[{"text":"' + b"a" * 40)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"a" * 40)
    assert info.value.kind == "element_too_long"


def test_complete_element_over_limit_raises_element_too_long() -> None:
    element_size = len(json.dumps(GEMINI_CHUNKS[0], indent=2).encode())
    assert kind_of_error(GEMINI_BODY, max_element_bytes=element_size - 1) == "element_too_long"


def test_element_exactly_at_limit_is_accepted() -> None:
    body = b"[12345,678]"
    assert decode([body[:4], body[4:]], max_element_bytes=5)[0] == [12345, 678]


def test_element_too_long_message_names_the_limit_and_the_parameter() -> None:
    with pytest.raises(RemoteProtocolError, match=r"64-byte limit \(max_element_bytes\)"):
        decode([b'["' + b"x" * 100 + b'"]'], max_element_bytes=64)


# --- properties -----------------------------------------------------------------------------

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

gemini_chunks = st.lists(tricky_text, max_size=5).map(
    lambda texts: [gemini_chunk(t) for t in texts]
)


@given(
    elements=st.lists(json_values, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
)
def test_any_json_values_round_trip_through_dumps_and_the_decoder(
    elements: list[object], indent: int | None
) -> None:
    assert decode([gemini_array(elements, indent=indent)]) == (elements, EndOfInput())


@given(elements=st.lists(json_values, max_size=6))
def test_decoder_agrees_with_json_loads_on_any_compact_array(elements: list[object]) -> None:
    body = json.dumps(elements, separators=(",", ":")).encode()
    assert decode([body])[0] == json.loads(body)


@given(data=st.data())
def test_any_chunking_gives_same_values(data: st.DataObject) -> None:
    elements = data.draw(st.lists(json_values, max_size=5))
    body = gemini_array(elements)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    assert decode(split_at(body, cuts)) == (elements, EndOfInput())


def test_byte_by_byte_feeding_gives_same_values() -> None:
    chunks = [GEMINI_BODY[i : i + 1] for i in range(len(GEMINI_BODY))]
    assert decode(chunks) == (GEMINI_CHUNKS, EndOfInput())


@given(data=st.data())
def test_truncation_at_any_byte_gives_a_prefix_and_a_correct_flag(data: st.DataObject) -> None:
    elements = data.draw(gemini_chunks)
    body = gemini_array(elements)
    cut = data.draw(st.integers(0, len(body)))
    prefix = body[:cut]
    # Where each element's closing brace ends, found from the serialized pieces.
    ends, offset = [], 1
    for element in elements:
        offset += len(json.dumps(element, indent=2, ensure_ascii=False).encode())
        ends.append(offset)
        offset += len(b"\r\n,\r\n")
    expected = [e for e, end in zip(elements, ends, strict=True) if end <= cut]
    values, eoi = decode(split_at(prefix, data.draw(st.lists(st.integers(0, cut), max_size=4))))
    assert values == expected
    assert eoi.items == ()
    assert eoi.truncated == (cut < len(body))
