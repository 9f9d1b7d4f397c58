"""The OpenAI Chat Completions dialect: transcripts in, events out; requests out.

Transcripts live in tests/transcripts/openai_chat/ as the exact bytes of a
response body, written from the documented chunk format (``chat.completion.chunk``
field names, ``stream_options.include_usage``'s last chunk, ``[DONE]``) and from
what OpenAI-compatible servers are known to send (DeepSeek, OpenRouter, vLLM,
Gemini's compatibility endpoint, Azure OpenAI).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from _cuts import pieces

from streamcore import RemoteProtocolError
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
from streamcore.providers.openai_chat import (
    MAX_CHOICES,
    MAX_TOOL_CALLS,
    OpenAIChatDecoder,
    build_request,
)
from streamcore.request import ChatRequest, Message, Tool, ToolCall

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "openai_chat"


def body(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.txt").read_bytes()


def decode(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Event], OpenAIChatDecoder]:
    decoder = OpenAIChatDecoder()
    events: list[Event] = []
    for piece in pieces(data, cuts):
        events += decoder.feed(piece)
    events += decoder.end()
    return events, decoder


def decode_or_error(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Event], str | None, bool]:
    """Events, the error kind (or None) and ``complete``, feeding ``data`` cut at ``cuts``."""
    decoder = OpenAIChatDecoder()
    events: list[Event] = []
    try:
        for piece in pieces(data, cuts):
            events += decoder.feed(piece)
        events += decoder.end()
    except RemoteProtocolError as exc:
        return events, exc.kind, decoder.complete
    return events, None, decoder.complete


def text(events: list[Event], choice: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.choice == choice)


def tool_calls(events: list[Event]) -> dict[int, tuple[str, str, str]]:
    calls: dict[int, tuple[str, str, str]] = {}
    for e in events:
        if isinstance(e, ToolCallStart):
            calls[e.index] = (e.id, e.name, "")
        elif isinstance(e, ToolCallDelta):
            call_id, name, args = calls[e.index]
            calls[e.index] = (call_id, name, args + e.arguments)
    return calls


def chunk(delta: dict[str, object] | None, finish: str | None = None, index: int = 0) -> bytes:
    """One chunk as OpenAI sends it (compact JSON, usage null because include_usage is on)."""
    data = {
        "id": "chatcmpl-BYT1kQ9vXm2LsP7wTn4HdJc8ZaRe3",
        "object": "chat.completion.chunk",
        "created": 1747825001,
        "model": "gpt-4.1-2025-04-14",
        "system_fingerprint": "fp_b42e6e5d38",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


ROLE = chunk({"role": "assistant", "content": None, "refusal": None})
DONE = b"data: [DONE]\n\n"


def fragment(index: int | None, arguments: str = "", **first: str) -> dict[str, object]:
    """A tool_calls entry; ``first`` (id=, name=) makes it the first fragment of its call."""
    out: dict[str, object] = {} if index is None else {"index": index}
    function: dict[str, object] = {"arguments": arguments}
    if "id" in first:
        out.update(id=first["id"], type="function")
    if "name" in first:
        function["name"] = first["name"]
    out["function"] = function
    return out


# --------------------------------------------------------------------------- transcripts


def test_text_with_emoji_and_cjk_gives_exact_events() -> None:
    events, decoder = decode(body("text_emoji_cjk"))
    assert events == [
        StreamStarted("chatcmpl-BYQmN2pXW0rTqk3hF8dLx1oVZsEaJ", "gpt-4o-mini-2024-07-18"),
        TextDelta("Bonjour 👋 ! En japonais on dit "),
        TextDelta("「こんにちは」, en chinois 「你好"),
        TextDelta("」. Développeuse : 👩"),
        TextDelta("\u200d💻"),
        TextDelta(" 🚀 été"),
        Finish(FinishReason.STOP, "stop"),
        Usage(input_tokens=19, output_tokens=31, cached_tokens=0, reasoning_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete


def test_parallel_tool_calls_stream_start_arguments_and_end_per_index() -> None:
    events, decoder = decode(body("tool_calls_parallel"))
    assert [e for e in events if isinstance(e, ToolCallStart | ToolCallEnd)] == [
        ToolCallStart(0, "call_Zq2V8mWcYhB4kT1nLr7pXs3D", "get_weather"),
        ToolCallStart(1, "call_4fJkP9sQwE2xRt6yUb8nMc1V", "get_weather"),
        ToolCallEnd(0),
        ToolCallEnd(1),
    ]
    assert {i: json.loads(args) for i, (_, _, args) in tool_calls(events).items()} == {
        0: {"city": "Paris", "unit": "celsius"},
        1: {"city": "東京", "unit": "celsius"},
    }
    assert text(events) == ""
    assert events[-3:] == [
        Finish(FinishReason.TOOL_CALLS, "tool_calls"),
        Usage(input_tokens=1310, output_tokens=58, cached_tokens=1152, reasoning_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete


def test_interleaved_tool_call_fragments_are_kept_apart_by_index() -> None:
    stream = (
        ROLE
        + chunk({"tool_calls": [fragment(0, id="call_A", name="get_weather")]})
        + chunk({"tool_calls": [fragment(1, id="call_B", name="get_time")]})
        + chunk({"tool_calls": [fragment(0, '{"city": "Par')]})
        + chunk({"tool_calls": [fragment(1, '{"tz": "Asia/'), fragment(0, 'is"}')]})
        + chunk({"tool_calls": [fragment(1, 'Tokyo"}')]})
        + chunk({}, "tool_calls")
        + DONE
    )
    events, _ = decode(stream)
    assert tool_calls(events) == {
        0: ("call_A", "get_weather", '{"city": "Paris"}'),
        1: ("call_B", "get_time", '{"tz": "Asia/Tokyo"}'),
    }
    assert events[-4:] == [
        ToolCallEnd(0),
        ToolCallEnd(1),
        Finish(FinishReason.TOOL_CALLS, "tool_calls"),
        StreamEnd(),
    ]


def test_length_stop_maps_to_length_and_usage_keeps_reasoning_tokens() -> None:
    events, decoder = decode(body("length"))
    assert text(events) == "Once upon a time, in a village by the sea, there lived"
    assert events[-3:] == [
        Finish(FinishReason.LENGTH, "length"),
        Usage(input_tokens=24, output_tokens=320, cached_tokens=0, reasoning_tokens=307),
        StreamEnd(),
    ]
    assert decoder.complete


def test_refusal_deltas_become_refusal_events() -> None:
    events, _ = decode(body("refusal"))
    assert [e for e in events if isinstance(e, Refusal)] == [
        Refusal("I'm sorry, "),
        Refusal("I can't assist with that request."),
    ]
    assert text(events) == ""


def test_n_choices_are_kept_apart_by_choice_index() -> None:
    events, decoder = decode(body("n2_choices"))
    assert text(events, 0) == "Paris."
    assert text(events, 1) == "The capital is Paris."
    assert [e for e in events if isinstance(e, Finish)] == [
        Finish(FinishReason.STOP, "stop", choice=1),
        Finish(FinishReason.STOP, "stop", choice=0),
    ]
    assert decoder.complete


def test_error_sse_event_becomes_provider_error_named_by_its_code() -> None:
    error = {
        "message": "Rate limit reached for gpt-4.1",
        "type": None,
        "code": "rate_limit_exceeded",
    }
    events, _ = decode(ROLE + b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n")
    assert events[-1] == ProviderError("rate_limit_exceeded", "Rate limit reached for gpt-4.1")


def test_finish_reason_and_usage_without_done_is_not_complete() -> None:
    events, decoder = decode(body("finish_without_done"))
    assert events[-2:] == [
        Finish(FinishReason.STOP, "stop"),
        Usage(input_tokens=12, output_tokens=4, cached_tokens=0, reasoning_tokens=0),
    ]
    assert not decoder.complete
    assert not decoder.truncated


def test_tool_fragment_for_a_call_never_started_is_unexpected_event() -> None:
    decoder = OpenAIChatDecoder()
    assert text(decoder.feed(body("tool_fragment_without_start"))) == "Checking"
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"")
    assert info.value.kind == "unexpected_event"
    assert "tool call 0, which was never started" in str(info.value)


def test_deepseek_reasoning_content_is_reasoning_and_keepalives_are_kept() -> None:
    events, decoder = decode(body("deepseek_reasoning"))
    assert [e for e in events if isinstance(e, ReasoningDelta | KeepAlive)] == [
        KeepAlive("keep-alive"),
        ReasoningDelta("9.11 and 9.9: compare the tenths. "),
        KeepAlive("keep-alive"),
        ReasoningDelta("1 < 9, so 9.9 is larger."),
    ]
    assert text(events) == "9.9 is larger than 9.11."
    # DeepSeek puts usage on the finish chunk itself.
    assert events[-3:] == [
        Finish(FinishReason.STOP, "stop"),
        Usage(input_tokens=17, output_tokens=96, cached_tokens=0, reasoning_tokens=78),
        StreamEnd(),
    ]
    assert decoder.complete


def test_openrouter_reasoning_field_is_reasoning_and_its_details_are_surfaced_raw() -> None:
    events, decoder = decode(body("openrouter_reasoning"))
    assert events[:2] == [KeepAlive("OPENROUTER PROCESSING"), KeepAlive("OPENROUTER PROCESSING")]
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == (
        "**Estimating the sum**\n\n17 + 25 = 42."
    )
    assert [e.name for e in events if isinstance(e, RawEvent)] == ["delta.reasoning_details"] * 2
    assert text(events) == "17 + 25 = 42."
    # The usage rides on a chunk after the finish whose delta is empty: accepted.
    assert events[-2:] == [
        Usage(input_tokens=11, output_tokens=58, cached_tokens=0, reasoning_tokens=45),
        StreamEnd(),
    ]
    assert decoder.complete


def test_reasoning_in_both_fields_gives_one_delta_and_an_empty_one_defers_to_the_other() -> None:
    # vLLM sent the same text under both names while renaming reasoning_content.
    both = chunk({"reasoning_content": "Think.", "reasoning": "Think."})
    empty_first = chunk({"reasoning_content": "", "reasoning": " Again."})
    events, _ = decode(both + empty_first)
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [
        ReasoningDelta("Think."),
        ReasoningDelta(" Again."),
    ]


def test_usage_in_every_chunk_is_emitted_only_when_it_changes() -> None:
    events, _ = decode(body("vllm_continuous_usage"))
    assert [e.output_tokens for e in events if isinstance(e, Usage)] == [0, 1, 2, 3, 6, 7]
    assert text(events) == "Hello! How can I help?"


def test_gemini_indexless_tool_calls_get_indexes_and_stop_after_calls_is_tool_calls() -> None:
    events, decoder = decode(body("gemini_compat_tools"))
    assert events[0] == StreamStarted(None, "gemini-2.5-flash")
    assert text(events) == "Let me look both up."
    assert tool_calls(events) == {
        0: ("", "get_weather", '{"city":"Paris"}'),
        1: ("", "get_weather", '{"city":"東京"}'),
    }
    raw = [e for e in events if isinstance(e, RawEvent)]
    assert [e.name for e in raw] == ["delta.tool_calls.extra_content"]
    assert raw[0].payload["extra_content"] == {  # type: ignore[index]
        "google": {"thought_signature": "CiQB0e2Kb3Jv7lT9w6XqPmR2sZ1c"}
    }
    assert Finish(FinishReason.TOOL_CALLS, "stop") in events
    assert decoder.complete


def test_azure_filter_chunk_with_empty_id_does_not_start_the_stream() -> None:
    events, decoder = decode(body("azure_content_filter"))
    assert events == [
        StreamStarted("chatcmpl-BYRK7mTq2Xs9VnL4wPk1HdJc8ZaRe", "gpt-4o-2024-11-20"),
        TextDelta("Bonjour"),
        TextDelta(" !"),
        Finish(FinishReason.STOP, "stop"),
        StreamEnd(),
    ]
    assert decoder.complete


# --------------------------------------------------------------------------- grammar and quirks


def test_event_after_done_is_rejected() -> None:
    decoder = OpenAIChatDecoder()
    decoder.feed(ROLE + DONE)
    assert decoder.complete
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(chunk({"content": "late"}))
    assert info.value.kind == "event_after_end"


def test_content_after_the_finish_reason_is_unexpected_event_and_none_of_it_is_returned() -> None:
    decoder = OpenAIChatDecoder()
    late = chunk({"reasoning_content": "Wait,", "content": "more"})
    events = decoder.feed(ROLE + chunk({"content": "Done."}, "stop") + late)
    assert events[-2:] == [TextDelta("Done."), Finish(FinishReason.STOP, "stop")]
    with pytest.raises(RemoteProtocolError) as info:
        decoder.end()
    assert info.value.kind == "unexpected_event"
    assert "after its finish_reason 'stop'" in str(info.value)


def test_tool_fragment_after_the_finish_reason_is_unexpected_event() -> None:
    start = chunk({"tool_calls": [fragment(0, id="call_A", name="get_weather")]})
    late = chunk({"tool_calls": [fragment(0, "{}")]})
    with pytest.raises(RemoteProtocolError) as info:
        decode(start + chunk({}, "tool_calls") + late)
    assert "after its finish_reason 'tool_calls'" in str(info.value)


def test_a_repeated_identical_finish_reason_gives_one_finish() -> None:
    events, _ = decode(ROLE + chunk({"content": "Hi"}, "stop") + chunk({}, "stop") + DONE)
    assert [e for e in events if isinstance(e, Finish)] == [Finish(FinishReason.STOP, "stop")]


def test_a_second_different_finish_reason_is_unexpected_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(ROLE + chunk({}, "stop") + chunk({}, "length"))
    assert info.value.kind == "unexpected_event"


def test_empty_string_finish_reason_counts_as_null() -> None:
    events, _ = decode(ROLE + chunk({"content": "Hi"}, "") + chunk({"content": "!"}, "stop"))
    assert text(events) == "Hi!"
    assert [e for e in events if isinstance(e, Finish)] == [Finish(FinishReason.STOP, "stop")]


def test_a_different_id_for_an_open_tool_call_index_is_unexpected_event() -> None:
    stream = chunk({"tool_calls": [fragment(0, id="call_A", name="get_weather")]}) + chunk(
        {"tool_calls": [fragment(0, "{}", id="call_B", name="get_weather")]}
    )
    with pytest.raises(RemoteProtocolError) as info:
        decode(stream)
    assert info.value.kind == "unexpected_event"
    assert "'call_A' and is now given the id 'call_B'" in str(info.value)


def test_later_fragments_repeating_the_id_and_name_continue_the_call() -> None:
    stream = (
        chunk({"tool_calls": [fragment(0, '{"city":', id="call_A", name="get_weather")]})
        + chunk({"tool_calls": [fragment(0, '"Oslo"}', id="call_A", name="get_weather")]})
        + chunk({}, "tool_calls")
    )
    events, _ = decode(stream)
    assert tool_calls(events) == {0: ("call_A", "get_weather", '{"city":"Oslo"}')}
    assert len([e for e in events if isinstance(e, ToolCallStart)]) == 1


def test_done_closes_the_calls_of_a_choice_that_sent_no_finish_reason() -> None:
    stream = chunk({"tool_calls": [fragment(0, "{}", id="call_A", name="list_files")]}) + DONE
    events, decoder = decode(stream)
    assert events[-2:] == [ToolCallEnd(0), StreamEnd()]
    assert decoder.complete


def test_indexless_fragment_with_a_new_id_starts_the_next_call() -> None:
    stream = chunk(
        {
            "tool_calls": [
                fragment(None, '{"q": "trio"}', id="function-call-1", name="search_docs"),
                fragment(None, '{"q": "h11"}', id="function-call-2", name="search_docs"),
            ]
        }
    )
    events, _ = decode(stream)
    assert tool_calls(events) == {
        0: ("function-call-1", "search_docs", '{"q": "trio"}'),
        1: ("function-call-2", "search_docs", '{"q": "h11"}'),
    }


def test_non_string_content_is_surfaced_raw_not_dropped() -> None:
    # Mistral's reasoning models stream content as a list of typed parts.
    parts = [{"type": "thinking", "thinking": [{"type": "text", "text": "Let me add."}]}]
    events, _ = decode(chunk({"content": parts}))
    assert events[-1] == RawEvent("delta.content", None)
    assert events[-1].payload == parts


def test_unknown_delta_keys_with_a_value_are_surfaced_raw() -> None:
    audio = {"id": "audio_682d", "data": "UklGRiQAAABXQVZF", "transcript": "Hi"}
    events, _ = decode(chunk({"content": None, "audio": audio, "annotations": []}))
    assert [(e.name, e.payload) for e in events if isinstance(e, RawEvent)] == [
        ("delta.audio", audio)
    ]


def test_custom_tool_call_fragments_are_surfaced_raw_with_their_continuations() -> None:
    first = {"index": 0, "id": "call_C", "type": "custom", "custom": {"name": "sql", "input": ""}}
    later = {"index": 0, "custom": {"input": "SELECT 1"}}
    events, _ = decode(
        chunk({"tool_calls": [first]}) + chunk({"tool_calls": [later]}) + chunk({}, "stop")
    )
    raw = [e for e in events if isinstance(e, RawEvent)]
    assert [(e.name, e.payload) for e in raw] == [
        ("delta.tool_calls:custom", first),
        ("delta.tool_calls", later),
    ]
    assert not any(isinstance(e, ToolCallStart | ToolCallEnd) for e in events)
    assert Finish(FinishReason.STOP, "stop") in events


def test_json_that_is_not_a_chunk_is_surfaced_raw() -> None:
    events, decoder = decode(b'data: {"object":"heartbeat","ts":1747825001}\n\n' + DONE)
    assert events == [RawEvent("message", None), StreamEnd()]
    assert events[0].payload == {"object": "heartbeat", "ts": 1747825001}  # type: ignore[union-attr]
    assert decoder.complete


def test_choice_index_of_the_wrong_type_is_invalid_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(b'data: {"choices":[{"index":true,"delta":{"content":"x"}}]}\n\n')
    assert info.value.kind == "invalid_event"


def test_more_choices_than_the_limit_is_too_many_choices() -> None:
    chunks = b"".join(chunk({"content": "x"}, index=i) for i in range(MAX_CHOICES + 1))
    events, kind, _ = decode_or_error(chunks)
    assert kind == "too_many_choices"
    assert len([e for e in events if isinstance(e, TextDelta)]) == MAX_CHOICES


def test_more_tool_calls_than_the_limit_is_too_many_tool_calls() -> None:
    fragments = [fragment(i, id=f"call_{i}", name="f") for i in range(MAX_TOOL_CALLS + 1)]
    _, kind, _ = decode_or_error(chunk({"tool_calls": fragments}))
    assert kind == "too_many_tool_calls"


def test_decoder_stays_failed_after_a_grammar_break() -> None:
    decoder = OpenAIChatDecoder()
    with pytest.raises(RemoteProtocolError) as first:
        decoder.feed(b"data: {broken\n\n")
    with pytest.raises(RemoteProtocolError) as again:
        decoder.feed(ROLE)
    assert again.value is first.value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("function_call", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("abort", FinishReason.OTHER),
    ],
)
def test_finish_reason_maps_keeping_the_raw_value(raw: str, reason: FinishReason) -> None:
    events, _ = decode(ROLE + chunk({}, raw))
    assert events[-1] == Finish(reason, raw)


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
    model="gpt-4.1",
    system="You are a concise weather assistant.",
    messages=(
        Message("user", "Weather in Paris and Tokyo?"),
        Message(
            "assistant",
            "",
            tool_calls=(
                ToolCall("call_Zq2V8mWcYhB4kT1nLr7pXs3D", "get_weather", '{"city": "Paris"}'),
                ToolCall("call_4fJkP9sQwE2xRt6yUb8nMc1V", "get_weather", '{"city": "東京"}'),
            ),
        ),
        Message("tool", "18°C, light rain", tool_call_id="call_Zq2V8mWcYhB4kT1nLr7pXs3D"),
        Message("tool", "24°C, clear", tool_call_id="call_4fJkP9sQwE2xRt6yUb8nMc1V"),
        Message("user", "Answer in one line."),
        Message("assistant", "Paris: "),
    ),
    max_tokens=1024,
    temperature=0.2,
    tools=(WEATHER,),
    stop=("\n\n", "END"),
)


def test_request_body_maps_system_tools_tool_turns_stop_and_prefill() -> None:
    request = build_request(CONVERSATION, api_key="sk-proj-secret")
    expected = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "You are a concise weather assistant."},
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_Zq2V8mWcYhB4kT1nLr7pXs3D",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_4fJkP9sQwE2xRt6yUb8nMc1V",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "東京"}'},
                    },
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_Zq2V8mWcYhB4kT1nLr7pXs3D",
                "content": "18°C, light rain",
            },
            {
                "role": "tool",
                "tool_call_id": "call_4fJkP9sQwE2xRt6yUb8nMc1V",
                "content": "24°C, clear",
            },
            {"role": "user", "content": "Answer in one line."},
            {"role": "assistant", "content": "Paris: "},
        ],
        "max_completion_tokens": 1024,
        "temperature": 0.2,
        "stop": ["\n\n", "END"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request.body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def test_request_headers_carry_accept_and_bearer_key() -> None:
    request = build_request(CONVERSATION, api_key="sk-proj-secret")
    assert request.method == "POST"
    assert request.target == "/v1/chat/completions"
    assert request.headers == (
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("authorization", "Bearer sk-proj-secret"),
    )


def test_no_api_key_sends_no_authorization_header() -> None:
    names = [name for name, _ in build_request(CONVERSATION).headers]
    assert names == ["content-type", "accept"]


def test_compat_servers_get_max_tokens() -> None:
    body_ = json.loads(build_request(CONVERSATION, compat=True).body)
    assert body_["max_tokens"] == 1024
    assert "max_completion_tokens" not in body_


def test_include_usage_false_leaves_out_stream_options() -> None:
    body_ = json.loads(build_request(CONVERSATION, include_usage=False).body)
    assert "stream_options" not in body_
    assert body_["stream"] is True


def test_extra_is_merged_last_and_wins() -> None:
    request = ChatRequest(
        "deepseek-reasoner",
        (Message("user", "Hi"),),
        extra={"stream_options": {"include_usage": False}, "top_p": 0.9},
    )
    body_ = json.loads(build_request(request).body)
    assert body_["stream_options"] == {"include_usage": False}
    assert body_["top_p"] == 0.9


def test_assistant_text_with_tool_calls_keeps_its_content() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
    request = ChatRequest(
        "gpt-4.1",
        (Message("user", "Oslo?"), Message("assistant", "Checking.", tool_calls=(call,))),
    )
    turn = json.loads(build_request(request).body)["messages"][-1]
    assert turn["content"] == "Checking."
    assert turn["tool_calls"][0]["id"] == "call_1"


def test_empty_assistant_turn_is_left_out() -> None:
    request = ChatRequest(
        "gpt-4.1",
        (Message("user", "Hi"), Message("assistant", ""), Message("user", "Still there?")),
    )
    assert json.loads(build_request(request).body)["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Still there?"},
    ]
