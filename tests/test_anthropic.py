"""The Anthropic Messages dialect: transcripts in, events out; ChatRequest in, HTTP request out.

Transcripts live in tests/transcripts/anthropic/ as the exact bytes of a
response body, written from Anthropic's documented event stream (field names,
ids and event order as the API and the official SDK's fixtures show them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from streamcore import RemoteProtocolError
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
    KeepAlive,
    ProviderError,
    RawEvent,
    ReasoningDelta,
    StreamEnd,
    StreamStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamcore.providers.anthropic import (
    AnthropicDecoder,
    build_request,
    sent_prefill,
)
from streamcore.request import ChatRequest, Message, Tool, ToolCall

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "anthropic"


def body(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.txt").read_bytes()


def decode(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Event], AnthropicDecoder]:
    decoder = AnthropicDecoder()
    events: list[Event] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed(data[start:])
    events += decoder.end()
    return events, decoder


def text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def tool_calls(events: list[Event]) -> dict[int, tuple[str, str, str]]:
    calls: dict[int, tuple[str, str, str]] = {}
    for e in events:
        if isinstance(e, ToolCallStart):
            calls[e.index] = (e.id, e.name, "")
        elif isinstance(e, ToolCallDelta):
            call_id, name, args = calls[e.index]
            calls[e.index] = (call_id, name, args + e.arguments)
    return calls


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
    },
)
TEXT_START = sse(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
TOOL_START = sse(
    "content_block_start",
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
    },
)
TEXT_STOP = sse("content_block_stop", {"type": "content_block_stop", "index": 0})
MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})


def text_delta(index: int, value: str) -> bytes:
    return sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": value},
        },
    )


def stop_reason(reason: str) -> bytes:
    return sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    )


# --------------------------------------------------------------------------- transcripts


def test_text_with_emoji_and_cjk_gives_exact_events() -> None:
    events, decoder = decode(body("text_emoji_cjk"))
    assert events == [
        StreamStarted("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5-20250929"),
        Usage(input_tokens=21, output_tokens=2, cached_tokens=0),
        KeepAlive("ping"),
        TextDelta("Bonjour 👋 ! En japonais on dit "),
        TextDelta("「こんにちは」, en chinois 「你好"),
        TextDelta("」. Développeuse : 👩"),
        TextDelta("\u200d💻"),
        TextDelta(" 🚀 été"),
        Finish(FinishReason.STOP, "end_turn"),
        Usage(input_tokens=21, output_tokens=38, cached_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete


def test_parallel_tool_calls_are_indexed_by_tool_use_block_count() -> None:
    events, decoder = decode(body("tool_use_parallel"))
    assert text(events) == "I'll check the weather in both cities."
    calls = [e for e in events if isinstance(e, ToolCallStart | ToolCallDelta | ToolCallEnd)]
    assert calls == [
        ToolCallStart(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        ToolCallDelta(0, '{"city": "Pa'),
        ToolCallDelta(0, 'ris", "unit": "c'),
        ToolCallDelta(0, 'elsius"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather"),
        ToolCallDelta(1, '{"city": "東'),
        ToolCallDelta(1, '京", "unit": "celsius"}'),
        ToolCallEnd(1),
    ]
    assert {i: json.loads(args) for i, (_, _, args) in tool_calls(events).items()} == {
        0: {"city": "Paris", "unit": "celsius"},
        1: {"city": "東京", "unit": "celsius"},
    }
    assert events[-3:] == [
        Finish(FinishReason.TOOL_CALLS, "tool_use"),
        Usage(input_tokens=612, output_tokens=104, cached_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete


def test_thinking_block_streams_reasoning_then_its_signature() -> None:
    events, _ = decode(body("thinking"))
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning == [
        ReasoningDelta("The user asks for 27 * 453. "),
        ReasoningDelta("27 * 453 = 27 * 400 + 27 * 53 = 10800 + 1431 = 12231."),
        ReasoningDelta(
            "",
            signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds8j4xZ9oLm3RM6PuM5b1mJe7MiQzOPB04Y3pg3oPOQ==",
        ),
    ]
    assert text(events) == "27 × 453 = **12 231**."


def test_redacted_thinking_block_is_surfaced_raw_not_dropped() -> None:
    events, _ = decode(body("thinking"))
    raw = [e for e in events if isinstance(e, RawEvent)]
    assert [e.name for e in raw] == [
        "content_block_start:redacted_thinking",
        "content_block_stop",
    ]
    start = raw[0].payload
    assert isinstance(start, dict)
    assert start["content_block"]["data"].startswith("EmwKAhgBEgy3va3pzix")


def test_usage_counts_the_cached_prompt_as_input_and_merges_deltas() -> None:
    events, _ = decode(body("thinking"))
    assert [e for e in events if isinstance(e, Usage)] == [
        Usage(input_tokens=37 + 2048, output_tokens=1, cached_tokens=2048),
        Usage(input_tokens=37 + 2048, output_tokens=211, cached_tokens=2048),
    ]


def test_max_tokens_stop_maps_to_length() -> None:
    events, decoder = decode(body("max_tokens"))
    assert text(events) == "Once upon a time, in a village by the sea, there lived"
    assert Finish(FinishReason.LENGTH, "max_tokens") in events
    assert decoder.complete


def test_delta_for_a_block_never_started_is_unexpected_event() -> None:
    decoder = AnthropicDecoder()
    assert text(decoder.feed(body("delta_without_start"))) == "Hello"
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"")
    assert info.value.kind == "unexpected_event"
    assert "block 1, which was never started" in str(info.value)


def test_decoder_stays_failed_after_a_grammar_break() -> None:
    decoder = AnthropicDecoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(TEXT_START)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(MESSAGE_START)
    assert info.value.kind == "unexpected_event"


# --------------------------------------------------------------------------- grammar


def test_content_block_before_message_start_is_unexpected_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(TEXT_START)
    assert info.value.kind == "unexpected_event"
    assert "before message_start" in str(info.value)


def test_event_after_message_stop_is_rejected() -> None:
    decoder = AnthropicDecoder()
    decoder.feed(MESSAGE_START + MESSAGE_STOP)
    assert decoder.complete
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(TEXT_START)
    assert info.value.kind == "event_after_end"


def test_text_delta_into_a_tool_use_block_is_unexpected_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(MESSAGE_START + TOOL_START + text_delta(0, "oops"))
    assert info.value.kind == "unexpected_event"
    assert "text_delta into block 0, which is a tool_use block" in str(info.value)


def test_reopening_a_block_index_is_unexpected_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(MESSAGE_START + TEXT_START + TEXT_STOP + TEXT_START)
    assert info.value.kind == "unexpected_event"


def test_delta_after_its_block_stopped_is_unexpected_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(MESSAGE_START + TEXT_START + TEXT_STOP + text_delta(0, "late"))
    assert "which was already stopped" in str(info.value)


def test_message_stop_with_an_open_block_is_unexpected_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(MESSAGE_START + TOOL_START + MESSAGE_STOP)
    assert info.value.kind == "unexpected_event"
    assert "still open" in str(info.value)


def test_delta_with_a_string_index_is_invalid_event() -> None:
    bad = sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": "0", "delta": {"type": "text_delta", "text": "x"}},
    )
    with pytest.raises(RemoteProtocolError) as info:
        decode(MESSAGE_START + TEXT_START + bad)
    assert info.value.kind == "invalid_event"
    assert "'index' is a str, expected a int" in str(info.value)


def test_unknown_event_type_is_surfaced_raw() -> None:
    future = {"type": "message_annotation", "annotation": {"kind": "audit", "id": "an_01"}}
    events, decoder = decode(MESSAGE_START + sse("message_annotation", future) + MESSAGE_STOP)
    assert RawEvent("message_annotation", None) in events
    assert decoder.complete


def test_citations_delta_is_surfaced_raw_inside_a_text_block() -> None:
    citation = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {
            "type": "citations_delta",
            "citation": {"type": "char_location", "cited_text": "Paris", "document_index": 0},
        },
    }
    events, _ = decode(MESSAGE_START + TEXT_START + sse("content_block_delta", citation))
    raw = [e for e in events if isinstance(e, RawEvent)]
    assert [e.name for e in raw] == ["content_block_delta:citations_delta"]
    assert raw[0].payload == citation


def test_data_without_type_falls_back_to_the_sse_event_name() -> None:
    events, _ = decode(b"event: ping\ndata: {}\n\n")
    assert events == [KeepAlive("ping")]


def test_error_event_without_the_usual_shape_is_still_a_provider_error() -> None:
    events, _ = decode(b'event: error\ndata: "upstream connect error"\n\n')
    assert events == [ProviderError("error", "upstream connect error")]


def test_message_delta_usage_keeps_the_input_tokens_of_message_start() -> None:
    delta = sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9, "cache_read_input_tokens": 4},
        },
    )
    events, _ = decode(MESSAGE_START + delta)
    assert events[-1] == Usage(input_tokens=14, output_tokens=9, cached_tokens=4)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("model_context_window_exceeded", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("pause_turn", FinishReason.OTHER),
        ("a_future_reason", FinishReason.OTHER),
    ],
)
def test_stop_reason_maps_to_finish_reason_keeping_the_raw_value(
    raw: str, reason: FinishReason
) -> None:
    events, _ = decode(MESSAGE_START + stop_reason(raw))
    assert Finish(reason, raw) in events


# --------------------------------------------------------------------------- build_request

WEATHER = Tool(
    "get_weather",
    "Current weather for a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
)

CONVERSATION = ChatRequest(
    model="claude-sonnet-4-5",
    system="You are a concise weather assistant.",
    messages=(
        Message("user", "Weather in Paris and Tokyo?"),
        Message(
            "assistant",
            "Checking both.",
            tool_calls=(
                ToolCall("toolu_01A", "get_weather", '{"city": "Paris"}'),
                ToolCall("toolu_01B", "get_weather", '{"city": "東京"}'),
            ),
        ),
        Message("tool", "18°C, light rain", tool_call_id="toolu_01A"),
        Message("tool", "24°C, clear", tool_call_id="toolu_01B"),
        Message("user", "Answer in one line."),
        Message("assistant", "Paris: "),
    ),
    max_tokens=1024,
    temperature=0.2,
    tools=(WEATHER,),
    stop=("\n\n",),
)


def test_request_body_maps_system_tools_tool_turns_stop_and_prefill() -> None:
    request = build_request(CONVERSATION, api_key="sk-ant-api03-secret")
    expected = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking both."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01B",
                        "name": "get_weather",
                        "input": {"city": "東京"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01A",
                        "content": "18°C, light rain",
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "24°C, clear"},
                    {"type": "text", "text": "Answer in one line."},
                ],
            },
            {"role": "assistant", "content": "Paris:"},
        ],
        "system": "You are a concise weather assistant.",
        "temperature": 0.2,
        "stop_sequences": ["\n\n"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "input_schema": WEATHER.parameters,
            }
        ],
        "stream": True,
    }
    assert request.body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def test_request_headers_carry_version_accept_and_key() -> None:
    request = build_request(CONVERSATION, api_key="sk-ant-api03-secret")
    assert request.method == "POST"
    assert request.target == "/v1/messages"
    assert request.headers == (
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-ant-api03-secret"),
    )


def test_prefill_is_sent_without_trailing_whitespace_and_sent_prefill_says_so() -> None:
    request = ChatRequest(
        "claude-sonnet-4-5", (Message("user", "2+2?"), Message("assistant", "It is \n"))
    )
    turns = json.loads(build_request(request).body)["messages"]
    assert turns[-1] == {"role": "assistant", "content": "It is"}
    assert sent_prefill(request) == "It is"


def test_whitespace_only_prefill_is_not_sent() -> None:
    request = ChatRequest("claude-sonnet-4-5", (Message("user", "Hi"), Message("assistant", "  ")))
    assert json.loads(build_request(request).body)["messages"] == [
        {"role": "user", "content": "Hi"}
    ]
    assert sent_prefill(request) is None


def test_system_messages_join_the_top_level_system_in_order() -> None:
    request = ChatRequest(
        "claude-sonnet-4-5",
        (Message("system", "Answer in French."), Message("user", "Hi")),
        system="Be brief.",
    )
    body_ = json.loads(build_request(request).body)
    assert body_["system"] == "Be brief.\n\nAnswer in French."
    assert body_["messages"] == [{"role": "user", "content": "Hi"}]


def test_max_tokens_defaults_when_the_request_sets_none() -> None:
    request = ChatRequest("claude-sonnet-4-5", (Message("user", "Hi"),))
    assert json.loads(build_request(request).body)["max_tokens"] == 4096


def test_extra_is_merged_last_and_wins() -> None:
    request = ChatRequest(
        "claude-sonnet-4-5",
        (Message("user", "Hi"),),
        extra={"max_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 2048}},
    )
    body_ = json.loads(build_request(request).body)
    assert body_["max_tokens"] == 64000
    assert body_["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_empty_assistant_turn_is_left_out() -> None:
    request = ChatRequest(
        "claude-sonnet-4-5",
        (Message("user", "Hi"), Message("assistant", ""), Message("user", "Still there?")),
    )
    assert json.loads(build_request(request).body)["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Still there?"},
    ]
