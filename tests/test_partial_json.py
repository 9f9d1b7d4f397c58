"""parse_partial / PartialJSONParser: the best value for a JSON prefix, never an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import RemoteProtocolError
from streamcore.partial_json import PartialJSONParser, parse_complete, parse_partial

# OpenAI streams tool arguments in fragments like these (gpt-4o, get_weather).
OPENAI_WEATHER_FRAGMENTS = [
    '{"',
    "location",
    '":"',
    "San",
    " Francisco",
    ",",
    " CA",
    '","',
    "unit",
    '":"',
    "f",
    "ahrenheit",
    '"}',
]


def test_open_string_value_is_closed() -> None:
    assert parse_partial('{"city": "Par') == {"city": "Par"}


def test_empty_open_string_value_is_kept_as_empty_string() -> None:
    assert parse_partial('{"city": "') == {"city": ""}


@pytest.mark.parametrize(
    "text",
    [
        '{"city": "Paris", "u',
        '{"city": "Paris", "unit"',
        '{"city": "Paris", "unit":',
        '{"city": "Paris", "unit": ',
        '{"city": "Paris", ',
    ],
)
def test_dangling_key_is_dropped(text: str) -> None:
    assert parse_partial(text) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"strict": tr', {}),
        ('{"strict": true, "nullable": nu', {"strict": True}),
        ("[true, fal", [True]),
    ],
)
def test_half_written_literal_is_dropped(text: str, expected: object) -> None:
    assert parse_partial(text) == expected


@pytest.mark.parametrize("tail", ["-", "21.", "2e", "2e+", "-0."])
def test_number_that_is_not_valid_yet_is_dropped(tail: str) -> None:
    assert parse_partial('{"unit": "celsius", "temperature": ' + tail) == {"unit": "celsius"}


def test_trailing_number_valid_as_it_stands_is_kept() -> None:
    assert parse_partial('{"days": 12') == {"days": 12}
    assert parse_partial('{"temperature": 21.5') == {"temperature": 21.5}


def test_open_containers_are_closed_innermost_first() -> None:
    text = '{"todos": [{"title": "Buy bread", "tags": ["shop", "ur'
    assert parse_partial(text) == {"todos": [{"title": "Buy bread", "tags": ["shop", "ur"]}]}


def test_comma_after_last_array_element_is_dropped() -> None:
    assert parse_partial('{"days": [1, 2, ') == {"days": [1, 2]}


def test_empty_containers_just_opened_are_kept() -> None:
    assert parse_partial('{"filters": {') == {"filters": {}}
    assert parse_partial('{"ids": [') == {"ids": []}


@pytest.mark.parametrize(
    ("text", "expected"), [('"Caf\\', "Caf"), ('"Caf\\u00', "Caf"), ('"Caf\\u00e9', "Café")]
)
def test_escape_cut_in_half_is_dropped(text: str, expected: str) -> None:
    assert parse_partial(text) == expected


def test_half_of_a_surrogate_pair_waits_for_its_other_half() -> None:
    # \ud83d\ude00 is 😀; its first half alone cannot be printed or encoded.
    assert parse_partial('{"emoji": "hi \\ud83d') == {"emoji": "hi "}
    assert parse_partial('{"emoji": "hi \\ud83d\\ude') == {"emoji": "hi "}
    assert parse_partial('{"emoji": "hi \\ud83d\\ude00') == {"emoji": "hi 😀"}


@pytest.mark.parametrize("text", ["", "   \n", "-", "tr", "nul"])
def test_no_value_yet_gives_none(text: str) -> None:
    assert parse_partial(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "{]",
        '{"city": "Paris"}}',
        '{"city" "Paris"}',
        "[1, ]",
        "[01]",
        '{"a": 1} x',
        "NaN",
        "[Infinity]",
        '"tab\there"',
        "\ufeff{}",
    ],
)
def test_text_that_is_not_json_gives_none(text: str) -> None:
    assert parse_partial(text) is None


def test_parser_that_failed_stays_failed() -> None:
    parser = PartialJSONParser()
    parser.feed('{"city": "Paris"]')
    parser.feed(', "unit": "celsius"}')
    assert parser.failed
    assert parser.value() is None


def test_nesting_deeper_than_the_limit_gives_none() -> None:
    parser = PartialJSONParser(max_depth=8)
    parser.feed("[" * 9)
    assert parser.value() is None


def test_nesting_at_the_limit_is_fine() -> None:
    parser = PartialJSONParser(max_depth=8)
    parser.feed("[" * 8)
    assert parser.value() == [[[[[[[[]]]]]]]]


def test_text_beyond_max_chars_raises_remote_protocol_error() -> None:
    parser = PartialJSONParser(max_chars=16)
    parser.feed('{"city": "Paris"')
    with pytest.raises(RemoteProtocolError) as info:
        parser.feed("}")
    assert info.value.kind == "json_too_large"
    assert "max_chars" in str(info.value)
    assert parser.value() == {"city": "Paris"}


def test_complete_is_true_only_after_the_whole_value() -> None:
    parser = PartialJSONParser()
    parser.feed('{"city": "Paris"')
    assert not parser.complete
    parser.feed("}\n")
    assert parser.complete


def test_openai_tool_argument_fragments_show_a_growing_object() -> None:
    parser = PartialJSONParser()
    seen = []
    for fragment in OPENAI_WEATHER_FRAGMENTS:
        parser.feed(fragment)
        seen.append(parser.value())
    assert seen == [
        {},
        {},
        {"location": ""},
        {"location": "San"},
        {"location": "San Francisco"},
        {"location": "San Francisco,"},
        {"location": "San Francisco, CA"},
        {"location": "San Francisco, CA"},
        {"location": "San Francisco, CA"},
        {"location": "San Francisco, CA", "unit": ""},
        {"location": "San Francisco, CA", "unit": "f"},
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
    ]
    assert parser.complete


def test_parse_complete_gives_none_for_incomplete_or_invalid_text() -> None:
    assert parse_complete('{"location": "Paris"}') == {"location": "Paris"}
    assert parse_complete('{"location": "Par') is None
    assert parse_complete("") is None
    assert parse_complete("[NaN]") is None
    assert parse_complete("[" * 100_000 + "]" * 100_000) is None


# --- Properties ---------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def json_documents(draw: st.DrawFn, values: st.SearchStrategy[object] = json_values) -> str:
    value = draw(values)
    indent = draw(st.sampled_from([None, 0, 2]))
    ensure_ascii = draw(st.booleans())
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


@given(json_documents(), st.data())
def test_any_prefix_parses_without_error_and_the_whole_equals_json_loads(
    doc: str, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(doc)))
    parse_partial(doc[:cut])
    # Every other prefix too, through one parser fed a character at a time
    # (test_any_chunking_gives_same_value ties it to parse_partial).
    parser = PartialJSONParser()
    for char in doc:
        parser.feed(char)
        parser.value()
    assert parse_partial(doc) == json.loads(doc)


containers = st.one_of(
    st.lists(json_values, max_size=4), st.dictionaries(st.text(max_size=6), json_values, max_size=4)
)


@given(json_documents(containers))
def test_any_prefix_of_a_container_is_a_container_of_the_same_kind(doc: str) -> None:
    kind = dict if doc.lstrip().startswith("{") else list
    parser = PartialJSONParser()
    seen = ""
    for char in doc:
        parser.feed(char)
        seen += char
        if seen.strip():
            assert type(parser.value()) is kind, seen


@given(json_documents(), st.data())
def test_any_chunking_gives_same_value(doc: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(doc)), max_size=12)))
    parser = PartialJSONParser()
    start = 0
    for cut in [*cuts, len(doc)]:
        parser.feed(doc[start:cut])
        start = cut
        assert parser.value() == parse_partial(doc[:cut])
    # Only the end of input can tell that a top-level number is over.
    assert parser.complete or type(json.loads(doc)) in (int, float)


@given(st.text(max_size=60))
def test_any_text_gives_a_value_or_none_never_an_exception(text: str) -> None:
    value = parse_partial(text)
    if parse_complete(text) is not None:
        assert value == json.loads(text)
