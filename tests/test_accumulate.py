"""Accumulator: a FinalMessage from any stream of events, complete or cut off."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import LocalProtocolError, RemoteProtocolError
from streamcore.accumulate import Accumulator, ToolCallResult, merge_usage
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
    KeepAlive,
    ProviderError,
    RawEvent,
    ReasoningDelta,
    Refusal,
    StreamEnd,
    StreamStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamcore.request import Message, ToolCall

# An Anthropic Messages stream with extended thinking, as the dialect renders it.
ANTHROPIC_THINKING = [
    StreamStarted("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5-20250929"),
    Usage(input_tokens=472, output_tokens=3, cached_tokens=0),
    KeepAlive("ping"),
    ReasoningDelta("The user wants the weather in Paris. "),
    ReasoningDelta("I should answer briefly."),
    ReasoningDelta("", signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"),
    TextDelta("It is "),
    TextDelta("sunny in Paris."),
    Finish(FinishReason.STOP, "end_turn"),
    Usage(output_tokens=89),
    StreamEnd(),
]

# OpenAI Chat Completions, gpt-4o, two parallel tool calls whose fragments interleave.
OPENAI_PARALLEL_TOOLS = [
    StreamStarted("chatcmpl-9mQ1bXq4JZ2LrRr9kqQ0zv1o", "gpt-4o-2024-08-06"),
    TextDelta(""),
    ToolCallStart(0, "call_Dn2RJJSxzDm49vlVTehseJ0k", "get_weather"),
    ToolCallDelta(0, ""),
    ToolCallStart(1, "call_bMK2wj3v7e9Ha2sWf8JsFzGx", "get_weather"),
    ToolCallDelta(0, '{"loc'),
    ToolCallDelta(1, '{"location": "To'),
    ToolCallDelta(0, 'ation": "Paris, France"}'),
    ToolCallDelta(1, 'kyo, Japan"}'),
    Finish(FinishReason.TOOL_CALLS, "tool_calls"),
    Usage(input_tokens=82, output_tokens=48),
    StreamEnd(),
]


def accumulate(events: list[Event]) -> Accumulator:
    acc = Accumulator()
    acc.add_many(events)
    return acc


def test_text_deltas_are_joined_in_order() -> None:
    msg = accumulate(ANTHROPIC_THINKING).message()
    assert msg.text == "It is sunny in Paris."


def test_reasoning_and_its_signature_are_kept_apart_from_the_text() -> None:
    msg = accumulate(ANTHROPIC_THINKING).message()
    assert msg.reasoning == "The user wants the weather in Paris. I should answer briefly."
    assert msg.signatures == ("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",)


def test_each_thinking_block_signature_is_kept() -> None:
    msg = accumulate(
        [
            ReasoningDelta("First, look up the weather."),
            ReasoningDelta("", signature="sig-block-1"),
            ReasoningDelta("Now compare the two cities."),
            ReasoningDelta("", signature="sig-block-2"),
        ]
    ).message()
    assert msg.signatures == ("sig-block-1", "sig-block-2")


def test_refusal_is_kept_apart_from_the_text() -> None:
    msg = accumulate(
        [
            TextDelta(""),
            Refusal("I'm sorry, "),
            Refusal("I can't help with that."),
            Finish(FinishReason.STOP, "stop"),
        ]
    ).message()
    assert (msg.text, msg.refusal) == ("", "I'm sorry, I can't help with that.")


def test_parallel_tool_calls_with_interleaved_fragments_are_kept_apart() -> None:
    calls = accumulate(OPENAI_PARALLEL_TOOLS).message().tool_calls
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "call_Dn2RJJSxzDm49vlVTehseJ0k", "get_weather", '{"location": "Paris, France"}'),
        (1, "call_bMK2wj3v7e9Ha2sWf8JsFzGx", "get_weather", '{"location": "Tokyo, Japan"}'),
    ]
    assert [c.parsed for c in calls] == [
        {"location": "Paris, France"},
        {"location": "Tokyo, Japan"},
    ]


def test_tool_calls_come_out_in_index_order_whatever_the_arrival_order() -> None:
    calls = accumulate(
        [
            ToolCallStart(2, "toolu_c", "get_time"),
            ToolCallStart(0, "toolu_a", "get_weather"),
            ToolCallStart(1, "toolu_b", "get_news"),
        ]
    ).message()
    assert [c.index for c in calls.tool_calls] == [0, 1, 2]


def test_incomplete_tool_arguments_parse_to_none() -> None:
    call = accumulate(OPENAI_PARALLEL_TOOLS[:6]).message().tool_calls[0]
    assert (call.arguments, call.parsed) == ('{"loc', None)


def test_invalid_tool_arguments_parse_to_none() -> None:
    msg = accumulate([ToolCallStart(0, "call_1", "search"), ToolCallDelta(0, "{'q': NaN}")])
    assert msg.message().tool_calls[0].parsed is None


def test_tool_call_without_arguments_has_empty_arguments_and_no_parsed_value() -> None:
    call = accumulate([ToolCallStart(0, "toolu_01", "get_time"), ToolCallEnd(0)]).message()
    assert call.tool_calls[0] == ToolCallResult(0, "toolu_01", "get_time", "", None, ended=True)


def test_tool_call_end_marks_only_its_call_ended() -> None:
    calls = accumulate([*OPENAI_PARALLEL_TOOLS[:9], ToolCallEnd(1)]).message().tool_calls
    assert [c.ended for c in calls] == [False, True]


def test_fragment_for_a_call_never_started_creates_it() -> None:
    call = accumulate([ToolCallDelta(3, '{"x": 1}')]).message().tool_calls[0]
    assert (call.index, call.id, call.name, call.parsed) == (3, "", "", {"x": 1})


def test_repeated_tool_start_only_fills_what_is_missing() -> None:
    calls = accumulate(
        [
            ToolCallDelta(0, "{}"),
            ToolCallStart(0, "call_1", "get_weather"),
            ToolCallStart(0, "call_2", "other_name"),
        ]
    ).message()
    assert (calls.tool_calls[0].id, calls.tool_calls[0].name) == ("call_1", "get_weather")


def test_latest_usage_fields_replace_earlier_ones() -> None:
    usage = accumulate(ANTHROPIC_THINKING).message().usage
    assert usage == Usage(input_tokens=472, output_tokens=89, cached_tokens=0)


def test_usage_field_left_none_does_not_erase_an_earlier_value() -> None:
    merged = merge_usage(Usage(input_tokens=10, reasoning_tokens=64), Usage(output_tokens=5))
    assert merged == Usage(input_tokens=10, output_tokens=5, reasoning_tokens=64)


def test_no_usage_event_gives_no_usage() -> None:
    assert accumulate([TextDelta("Hi")]).message().usage is None


def test_finish_reason_and_raw_value_are_kept() -> None:
    msg = accumulate([TextDelta("Once upon"), Finish(FinishReason.LENGTH, "max_tokens")]).message()
    assert (msg.finish_reason, msg.finish_raw) == (FinishReason.LENGTH, "max_tokens")


def test_first_provider_error_is_kept() -> None:
    msg = accumulate(
        [
            TextDelta("Par"),
            ProviderError("overloaded_error", "Overloaded"),
            ProviderError("api_error", "Internal server error"),
        ]
    ).message()
    assert msg.error == ProviderError("overloaded_error", "Overloaded")
    assert msg.text == "Par"


def test_response_id_and_model_come_from_stream_started() -> None:
    msg = accumulate(OPENAI_PARALLEL_TOOLS).message()
    assert (msg.response_id, msg.model) == (
        "chatcmpl-9mQ1bXq4JZ2LrRr9kqQ0zv1o",
        "gpt-4o-2024-08-06",
    )


def test_stream_end_marks_the_message_complete() -> None:
    assert accumulate(ANTHROPIC_THINKING).message().complete
    assert not accumulate(ANTHROPIC_THINKING[:-1]).message().complete


def test_cut_off_stream_keeps_everything_that_arrived() -> None:
    msg = accumulate(ANTHROPIC_THINKING[:7]).message()
    assert (msg.reasoning, msg.text, msg.complete, msg.finish_reason) == (
        "The user wants the weather in Paris. I should answer briefly.",
        "It is ",
        False,
        None,
    )


def test_keepalive_and_raw_events_change_nothing() -> None:
    acc = accumulate([TextDelta("Hi")])
    before = acc.message()
    acc.add_many([KeepAlive("ping"), RawEvent("response.in_progress", {"type": "x"})])
    assert acc.message() == before


# OpenAI n=2: the chunks of the two choices interleave.
OPENAI_TWO_CHOICES = [
    StreamStarted("chatcmpl-AbC123", "gpt-4o-mini-2024-07-18"),
    TextDelta("", choice=0),
    TextDelta("", choice=1),
    TextDelta("Red", choice=0),
    TextDelta("Blue", choice=1),
    TextDelta(" apples", choice=0),
    TextDelta(" skies", choice=1),
    Finish(FinishReason.STOP, "stop", choice=1),
    Finish(FinishReason.LENGTH, "length", choice=0),
    StreamEnd(),
]


def test_choices_are_kept_apart_when_n_is_greater_than_one() -> None:
    msg = accumulate(OPENAI_TWO_CHOICES).message()
    assert [(c.index, c.text, c.finish_raw) for c in msg.choices] == [
        (0, "Red apples", "length"),
        (1, "Blue skies", "stop"),
    ]


def test_top_level_answer_fields_are_those_of_choice_zero() -> None:
    msg = accumulate(OPENAI_TWO_CHOICES).message()
    first = msg.choices[0]
    assert (msg.text, msg.finish_reason, msg.finish_raw) == (
        first.text,
        first.finish_reason,
        first.finish_raw,
    )


def test_choice_zero_is_present_even_when_only_other_choices_arrived() -> None:
    msg = accumulate([TextDelta("Blue", choice=1)]).message()
    assert [c.index for c in msg.choices] == [0, 1]
    assert msg.text == ""


def test_tool_calls_of_different_choices_are_kept_apart() -> None:
    msg = accumulate(
        [
            ToolCallStart(0, "call_a", "get_weather", choice=0),
            ToolCallStart(0, "call_b", "get_weather", choice=1),
            ToolCallDelta(0, '{"city": "Oslo"}', choice=1),
            ToolCallDelta(0, '{"city": "Rome"}', choice=0),
        ]
    ).message()
    assert [c.tool_calls[0].parsed for c in msg.choices] == [{"city": "Rome"}, {"city": "Oslo"}]


def test_message_is_a_frozen_snapshot_unaffected_by_later_events() -> None:
    acc = accumulate([TextDelta("Hello")])
    snapshot = acc.message()
    acc.add(TextDelta(", world"))
    assert snapshot.text == "Hello"
    assert acc.message().text == "Hello, world"
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.text = "changed"  # type: ignore[misc]


def test_message_past_max_chars_raises_and_keeps_what_came_before() -> None:
    acc = Accumulator(max_chars=200)
    acc.add(TextDelta("a" * 100))
    with pytest.raises(RemoteProtocolError) as info:
        acc.add(TextDelta("b" * 101))
    assert info.value.kind == "message_too_large"
    assert acc.message().text == "a" * 100


def test_new_tool_calls_count_against_max_chars() -> None:
    acc = Accumulator(max_chars=1000)
    with pytest.raises(RemoteProtocolError) as info:
        for index in range(1000):
            acc.add(ToolCallEnd(index))
    assert info.value.kind == "message_too_large"
    assert len(acc.message().tool_calls) < 1000


def test_an_object_that_is_not_an_event_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Accumulator().add({"type": "text_delta", "text": "Hi"})  # type: ignore[arg-type]
    assert info.value.kind == "not_an_event"


def test_as_message_gives_the_assistant_turn_with_its_tool_calls() -> None:
    turn = accumulate(OPENAI_PARALLEL_TOOLS).message().as_message()
    assert turn == Message(
        role="assistant",
        content="",
        tool_calls=(
            ToolCall(
                "call_Dn2RJJSxzDm49vlVTehseJ0k", "get_weather", '{"location": "Paris, France"}'
            ),
            ToolCall(
                "call_bMK2wj3v7e9Ha2sWf8JsFzGx", "get_weather", '{"location": "Tokyo, Japan"}'
            ),
        ),
    )


# --- Properties ---------------------------------------------------------------


@given(st.lists(st.text(max_size=8), max_size=40), st.data())
def test_any_split_into_deltas_gives_the_same_text(pieces: list[str], data: st.DataObject) -> None:
    acc = Accumulator()
    for i, piece in enumerate(pieces):
        acc.add(TextDelta(piece))
        if data.draw(st.booleans(), label=f"snapshot after {i}"):
            assert acc.message().text == "".join(pieces[: i + 1])
    assert acc.message().text == "".join(pieces)


@given(st.lists(st.tuples(st.integers(0, 3), st.text(max_size=6)), max_size=40))
def test_any_interleaving_of_choices_keeps_each_choice_text(
    deltas: list[tuple[int, str]],
) -> None:
    acc = Accumulator()
    acc.add_many(TextDelta(text, choice=choice) for choice, text in deltas)
    by_choice = {c.index: c.text for c in acc.message().choices}
    for choice in range(4):
        assert by_choice.get(choice, "") == "".join(t for c, t in deltas if c == choice)


@given(st.lists(st.tuples(st.integers(0, 2), st.text(max_size=6)), max_size=40))
def test_any_interleaving_of_tool_fragments_keeps_each_call_arguments(
    fragments: list[tuple[int, str]],
) -> None:
    acc = Accumulator()
    acc.add_many(ToolCallDelta(index, text) for index, text in fragments)
    arguments = {c.index: c.arguments for c in acc.message().tool_calls}
    for index in range(3):
        expected = "".join(t for i, t in fragments if i == index)
        assert arguments.get(index, "") == expected


def test_a_long_answer_of_small_deltas_reads_the_same_at_every_point() -> None:
    # Thousands of 1-3 character deltas (held compactly, in joined runs) with the
    # message read in between, as a UI reading the text so far does.
    deltas = [("Ünïcødé 語 🎉 text"[i % 17 : i % 17 + 1 + i % 3]) for i in range(5000)]
    acc = Accumulator()
    so_far = ""
    for i, piece in enumerate(deltas):
        acc.add(TextDelta(piece))
        acc.add(ReasoningDelta(piece))
        so_far += piece
        if i % 97 == 0:
            assert acc.message().text == so_far
    message = acc.message()
    assert message.text == message.reasoning == "".join(deltas)
