"""The Ollama ``/api/chat`` dialect: NDJSON transcripts in, events out; the request builder.

Transcripts live in tests/transcripts/ollama/ as exact response bodies, written
from Ollama's API documentation (docs/api.md): ``model``, ``created_at``,
``message``, ``done``, and on the last line ``done_reason`` and the counters.
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
from streamcore.providers.ollama import OllamaDecoder, build_request
from streamcore.request import ChatRequest, Message, Tool, ToolCall

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "ollama"


def body(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.txt").read_bytes()


def decode(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Event], OllamaDecoder]:
    decoder = OllamaDecoder()
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


def line(**fields: object) -> bytes:
    return json.dumps({"model": "llama3.2", **fields}).encode() + b"\n"


# --------------------------------------------------------------------------- transcripts


def test_text_with_emoji_and_cjk_gives_exact_events() -> None:
    events, decoder = decode(body("text_emoji_cjk"))
    assert events == [
        StreamStarted(None, "llama3.2"),
        TextDelta("Bonjour 👋 ! En japonais : "),
        TextDelta("「こんにちは」"),
        TextDelta("，中文：你好"),
        TextDelta("！👩‍💻"),
        Finish(FinishReason.STOP, "stop"),
        Usage(input_tokens=26, output_tokens=11),
        StreamEnd(),
    ]
    assert decoder.complete


def test_tool_calls_arrive_whole_and_stop_after_them_is_tool_calls() -> None:
    events, decoder = decode(body("tool_calls"))
    assert events == [
        StreamStarted(None, "llama3.2"),
        ToolCallStart(0, "call_k3x0v3c9", "get_weather"),
        ToolCallDelta(0, '{"city":"Paris","unit":"celsius"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "call_9b1qz7ew", "get_weather"),
        ToolCallDelta(1, '{"city":"東京","unit":"celsius"}'),
        ToolCallEnd(1),
        Finish(FinishReason.TOOL_CALLS, "stop"),
        Usage(input_tokens=169, output_tokens=31),
        StreamEnd(),
    ]
    assert decoder.complete


def test_thinking_becomes_reasoning_before_the_answer() -> None:
    events, _ = decode(body("thinking"))
    assert [e for e in events if isinstance(e, ReasoningDelta | TextDelta)] == [
        ReasoningDelta("The user wants 27 × 453. "),
        ReasoningDelta("27 × 453 = 12231."),
        TextDelta("27 × 453 = "),
        TextDelta("**12 231**."),
    ]
    assert events[0] == StreamStarted(None, "qwen3:8b")


def test_length_done_reason_maps_to_length() -> None:
    events, decoder = decode(body("length"))
    assert text(events) == "Il était une fois, dans un village"
    assert Finish(FinishReason.LENGTH, "length") in events
    assert decoder.complete


# --------------------------------------------------------------------------- grammar


def test_line_after_done_is_rejected() -> None:
    decoder = OllamaDecoder()
    decoder.feed(line(message={"role": "assistant", "content": ""}, done=True, done_reason="stop"))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(line(message={"role": "assistant", "content": "late"}, done=False))
    assert info.value.kind == "event_after_end"


def test_missing_done_reason_is_a_stop_without_raw_value() -> None:
    events, decoder = decode(line(message={"role": "assistant", "content": "Hi"}, done=True))
    assert Finish(FinishReason.STOP, None) in events
    assert decoder.complete


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("load", FinishReason.OTHER),
        ("unload", FinishReason.OTHER),
    ],
)
def test_done_reason_maps_keeping_the_raw_value(raw: str, reason: FinishReason) -> None:
    events, _ = decode(
        line(message={"role": "assistant", "content": ""}, done=True, done_reason=raw)
    )
    assert Finish(reason, raw) in events


def test_tool_calls_without_ids_get_numbered_ids_across_lines() -> None:
    call = {"function": {"name": "get_time", "arguments": {}}}
    events, _ = decode(
        line(message={"role": "assistant", "content": "", "tool_calls": [call]}, done=False)
        + line(message={"role": "assistant", "content": "", "tool_calls": [call]}, done=False)
    )
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [
        ToolCallStart(0, "ollama-call-0", "get_time"),
        ToolCallStart(1, "ollama-call-1", "get_time"),
    ]


def test_content_that_is_not_a_string_is_invalid_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(line(message={"role": "assistant", "content": ["Hi"]}, done=False))
    assert info.value.kind == "invalid_event"
    assert "message.content is a list, expected a str" in str(info.value)


def test_line_without_message_or_done_is_surfaced_raw() -> None:
    events, _ = decode(b'{"status":"pulling manifest"}\n')
    assert events == [RawEvent("line", None)]


def test_structured_error_message_is_used() -> None:
    events, _ = decode(b'{"error":{"message":"model \\"llama9\\" not found","code":404}}\n')
    assert events == [ProviderError("error", 'model "llama9" not found')]


# --------------------------------------------------------------------------- build_request

WEATHER = Tool(
    "get_weather",
    "Get the weather in a given city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

CONVERSATION = ChatRequest(
    model="llama3.2",
    system="You are a concise weather assistant.",
    messages=(
        Message("user", "What is the weather in Toronto?"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("call_k3x0v3c9", "get_weather", '{"city": "Toronto"}'),),
        ),
        Message("tool", "11 degrees celsius", tool_call_id="call_k3x0v3c9"),
        Message("assistant", "In Toronto it is "),
    ),
    max_tokens=256,
    temperature=0.0,
    tools=(WEATHER,),
    stop=("<|eot_id|>",),
)


def test_request_body_maps_system_tools_tool_turns_options_and_prefill() -> None:
    request = build_request(CONVERSATION)
    expected = {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are a concise weather assistant."},
            {"role": "user", "content": "What is the weather in Toronto?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_k3x0v3c9",
                        "function": {"name": "get_weather", "arguments": {"city": "Toronto"}},
                    }
                ],
            },
            {
                "role": "tool",
                "content": "11 degrees celsius",
                "tool_call_id": "call_k3x0v3c9",
                "tool_name": "get_weather",
            },
            {"role": "assistant", "content": "In Toronto it is "},
        ],
        "stream": True,
        "options": {"num_predict": 256, "temperature": 0.0, "stop": ["<|eot_id|>"]},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the weather in a given city",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
    }
    assert request.body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def test_local_request_has_no_credentials() -> None:
    request = build_request(CONVERSATION)
    assert request.method == "POST"
    assert request.target == "/api/chat"
    assert request.headers == (
        ("content-type", "application/json"),
        ("accept", "application/x-ndjson"),
    )


def test_cloud_key_goes_in_a_bearer_header_and_never_in_repr() -> None:
    request = build_request(CONVERSATION, api_key="ollama-cloud-secret", base_path="/ollama/")
    assert ("authorization", "Bearer ollama-cloud-secret") in request.headers
    assert "ollama-cloud-secret" not in repr(request)
    assert request.target == "/ollama/api/chat"


def test_extra_is_merged_last() -> None:
    request = ChatRequest(
        "qwen3:8b", (Message("user", "Hi"),), extra={"think": True, "keep_alive": "10m"}
    )
    body_ = json.loads(build_request(request).body)
    assert body_["think"] is True
    assert body_["keep_alive"] == "10m"
