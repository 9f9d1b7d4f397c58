"""The Gemini dialect: both framings (SSE and the streamed JSON array) and the request builder.

Transcripts live in tests/transcripts/gemini/ as exact response bodies, written
from the documented ``GenerateContentResponse`` shape (``candidates``,
``usageMetadata``, ``modelVersion``, ``responseId``) and the framings the API
uses: ``data: ...\\r\\n\\r\\n`` with ``alt=sse``, a pretty-printed array otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from streamcore import LocalProtocolError, RemoteProtocolError
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
from streamcore.providers.gemini import Framing, GeminiDecoder, build_request
from streamcore.request import ChatRequest, Message, Tool, ToolCall

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "gemini"


def body(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.txt").read_bytes()


def decode(
    data: bytes, cuts: Sequence[int] = (), framing: Framing = "sse"
) -> tuple[list[Event], GeminiDecoder]:
    decoder = GeminiDecoder(framing=framing)
    events: list[Event] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed(data[start:])
    events += decoder.end()
    return events, decoder


def text(events: list[Event], choice: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.choice == choice)


def sse(*responses: object) -> bytes:
    return b"".join(
        b"data: " + json.dumps(r, ensure_ascii=False).encode() + b"\r\n\r\n" for r in responses
    )


def response(*parts: object, finish: str | None = None, rid: str = "r-1") -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": rid}


# --------------------------------------------------------------------------- transcripts


def test_text_with_emoji_and_cjk_gives_exact_events() -> None:
    events, decoder = decode(body("text_emoji_cjk"))
    assert events == [
        StreamStarted("mD9xaOqWCJuxz7IPgvSe0Qs", "gemini-2.5-flash"),
        TextDelta("Bonjour 👋 ! En japonais : 「こんにちは」"),
        Usage(input_tokens=9),
        TextDelta("、中文：你好，世界！👩‍💻"),
        TextDelta(" Fin 🚀"),
        Finish(FinishReason.STOP, "STOP"),
        Usage(input_tokens=9, output_tokens=27),
        StreamEnd(),
    ]
    assert decoder.complete


def test_parallel_function_calls_get_stable_ids_and_finish_as_tool_calls() -> None:
    events, decoder = decode(body("function_calls_parallel"))
    rid = "nE9xaLbXB5Gl7M8Pzsqe-QE"
    assert events == [
        StreamStarted(rid, "gemini-2.5-flash"),
        ToolCallStart(0, f"gemini-call-{rid}-0-0", "get_weather"),
        ToolCallDelta(0, '{"city":"Paris","unit":"celsius"}'),
        ToolCallEnd(0),
        ReasoningDelta("", signature="CiQB0e2Kb7nJ3Y8x0Hq3dRk1ZxW9sZkq3p1nqZP0m6T5o6QmX7ga"),
        ToolCallStart(1, f"gemini-call-{rid}-0-1", "get_weather"),
        ToolCallDelta(1, '{"city":"東京","unit":"celsius"}'),
        ToolCallEnd(1),
        Usage(input_tokens=118),
        Finish(FinishReason.TOOL_CALLS, "STOP"),
        Usage(input_tokens=118, output_tokens=36 + 54, reasoning_tokens=54),
        StreamEnd(),
    ]
    assert decoder.complete


def test_thought_parts_become_reasoning_and_thoughts_count_as_output() -> None:
    events, _ = decode(body("thinking"))
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == [
        "**Calculating the product**\n\nI need 27 × 453. ",
        "27 × 400 = 10 800 and 27 × 53 = 1 431.",
    ]
    assert text(events) == "27 × 453 = **12 231**."
    assert [e for e in events if isinstance(e, Usage)][-1] == Usage(
        input_tokens=16, output_tokens=12 + 187, cached_tokens=0, reasoning_tokens=187
    )


def test_max_tokens_finish_maps_to_length() -> None:
    events, decoder = decode(body("max_tokens"))
    assert text(events) == "Il était une fois, dans un village au bord de la mer,"
    assert Finish(FinishReason.LENGTH, "MAX_TOKENS") in events
    assert decoder.complete


def test_blocked_prompt_finishes_with_content_filter_and_completes() -> None:
    events, decoder = decode(body("blocked_prompt"))
    assert events == [
        StreamStarted("qH9xaNnfK9ut7M8P2f6E0Qs", "gemini-2.5-flash"),
        Finish(FinishReason.CONTENT_FILTER, "PROHIBITED_CONTENT"),
        Usage(input_tokens=31),
        StreamEnd(),
    ]
    assert decoder.complete


def test_two_candidates_are_told_apart_by_choice() -> None:
    events, decoder = decode(body("two_candidates"))
    assert text(events, choice=0) == "Roses are red, violets are blue."
    assert text(events, choice=1) == "The sky is wide, the sea is deep."
    assert [e for e in events if isinstance(e, Finish)] == [
        Finish(FinishReason.STOP, "STOP", 0),
        Finish(FinishReason.STOP, "STOP", 1),
    ]
    assert decoder.complete


def test_stream_is_incomplete_while_any_candidate_has_not_finished() -> None:
    first = {
        "candidates": [
            {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "B"}]}, "index": 1},
        ]
    }
    events, decoder = decode(sse(first))
    assert not decoder.complete
    assert StreamEnd() not in events


# --------------------------------------------------------------------------- JSON-array framing


def test_json_array_framing_gives_the_same_events_as_sse() -> None:
    data = body("array_text")
    as_sse = sse(*json.loads(data))
    array_events, array_decoder = decode(data, framing="json-array")
    sse_events, _ = decode(as_sse)
    assert array_events == sse_events
    assert text(array_events) == "Bonjour 👋 ! 「こんにちは」 et 你好！"
    assert array_decoder.complete


def test_unclosed_json_array_is_incomplete_even_after_a_finish() -> None:
    events, decoder = decode(body("array_unclosed"), framing="json-array")
    assert Finish(FinishReason.STOP, "STOP") in events
    assert StreamEnd() not in events
    assert not decoder.complete
    assert decoder.truncated


def test_error_element_in_json_array_is_a_provider_error() -> None:
    events, decoder = decode(body("array_error"), framing="json-array")
    assert text(events) == "The first part"
    assert isinstance(events[-1], ProviderError)
    assert events[-1].type == "INTERNAL"
    assert not decoder.complete


def test_unknown_framing_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError) as info:
        GeminiDecoder(framing="ndjson")  # type: ignore[arg-type]
    assert info.value.kind == "invalid_framing"


# --------------------------------------------------------------------------- grammar


def test_content_after_a_candidate_finished_is_unexpected_event() -> None:
    data = sse(response({"text": "Done."}, finish="STOP"), response({"text": " More?"}))
    decoder = GeminiDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(data)
        decoder.end()
    assert info.value.kind == "unexpected_event"
    assert "already finished with 'STOP'" in str(info.value)


def test_content_after_finish_is_not_emitted_before_the_error() -> None:
    decoder = GeminiDecoder()
    events = decoder.feed(sse(response({"text": "Done."}, finish="STOP"), response({"text": "X"})))
    assert "X" not in text(events)


def test_repeated_identical_finish_reason_is_ignored() -> None:
    events, decoder = decode(
        sse(response({"text": "Hi"}, finish="STOP"), response({"text": ""}, finish="STOP"))
    )
    assert [e for e in events if isinstance(e, Finish)] == [Finish(FinishReason.STOP, "STOP")]
    assert decoder.complete


def test_function_call_id_given_by_the_server_is_kept() -> None:
    call = {"functionCall": {"id": "fc_7f3a", "name": "get_weather", "args": {"city": "Oslo"}}}
    events, _ = decode(sse(response(call, finish="STOP")))
    assert ToolCallStart(0, "fc_7f3a", "get_weather") in events


def test_function_call_ids_without_response_id_use_choice_and_index() -> None:
    call = {"functionCall": {"name": "list_files"}}
    payload = {"candidates": [{"content": {"parts": [call, call]}, "finishReason": "STOP"}]}
    events, _ = decode(sse(payload))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.id for s in starts] == ["gemini-call-0-0", "gemini-call-0-1"]
    assert ToolCallDelta(0, "{}") in events


def test_unknown_part_kind_is_surfaced_raw() -> None:
    part = {"executableCode": {"language": "PYTHON", "code": "print(27 * 453)"}}
    events, _ = decode(sse(response(part)))
    raw = [e for e in events if isinstance(e, RawEvent)]
    assert [e.name for e in raw] == ["part:executableCode"]
    assert raw[0].payload == part


def test_response_without_known_fields_is_surfaced_raw() -> None:
    events, decoder = decode(sse({"sdkHttpResponse": {"headers": {}}}))
    assert events == [RawEvent("response", None)]
    assert not decoder.complete


def test_candidates_that_are_not_a_list_are_invalid_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(sse({"candidates": {"0": {}}, "responseId": "r-1"}))
    assert info.value.kind == "invalid_event"
    assert "candidates is a dict, expected a list" in str(info.value)


def test_text_that_is_not_a_string_is_invalid_event() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(sse(response({"text": 42})))
    assert info.value.kind == "invalid_event"


def test_empty_body_is_incomplete() -> None:
    events, decoder = decode(b"")
    assert events == []
    assert not decoder.complete


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("STOP", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("BLOCKLIST", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
        ("SPII", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.OTHER),
        ("LANGUAGE", FinishReason.OTHER),
        ("FINISH_REASON_UNSPECIFIED", FinishReason.OTHER),
    ],
)
def test_finish_reason_maps_keeping_the_raw_value(raw: str, reason: FinishReason) -> None:
    events, _ = decode(sse(response({"text": "x"}, finish=raw)))
    assert Finish(reason, raw) in events


# --------------------------------------------------------------------------- build_request

WEATHER = Tool(
    "get_weather",
    "Current weather for a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
RID = "nE9xaLbXB5Gl7M8Pzsqe-QE"

CONVERSATION = ChatRequest(
    model="gemini-2.5-flash",
    system="You are a concise weather assistant.",
    messages=(
        Message("user", "Weather in Paris and Tokyo?"),
        Message(
            "assistant",
            "",
            tool_calls=(
                ToolCall(f"gemini-call-{RID}-0-0", "get_weather", '{"city":"Paris"}'),
                ToolCall(f"gemini-call-{RID}-0-1", "get_weather", '{"city":"東京"}'),
            ),
        ),
        Message(
            "tool", '{"temp_c": 18, "sky": "light rain"}', tool_call_id=f"gemini-call-{RID}-0-0"
        ),
        Message("tool", "24°C, clear", tool_call_id=f"gemini-call-{RID}-0-1"),
        Message("user", "Answer in one line."),
        Message("assistant", "Paris: "),
    ),
    max_tokens=1024,
    temperature=0.2,
    tools=(WEATHER,),
    stop=("\n\n",),
)


def test_request_body_maps_system_tools_function_turns_stop_and_prefill() -> None:
    request = build_request(CONVERSATION, api_key="AIzaSy-secret")
    expected = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and Tokyo?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "東京"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"temp_c": 18, "sky": "light rain"},
                        }
                    },
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"output": "24°C, clear"},
                        }
                    },
                    {"text": "Answer in one line."},
                ],
            },
            {"role": "model", "parts": [{"text": "Paris: "}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are a concise weather assistant."}]},
        "generationConfig": {
            "maxOutputTokens": 1024,
            "temperature": 0.2,
            "stopSequences": ["\n\n"],
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather for a city.",
                        "parametersJsonSchema": WEATHER.parameters,
                    }
                ]
            }
        ],
    }
    assert request.body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def test_request_target_and_headers_for_sse() -> None:
    request = build_request(CONVERSATION, api_key="AIzaSy-secret")
    assert request.method == "POST"
    assert request.target == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.headers == (
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("x-goog-api-key", "AIzaSy-secret"),
    )


def test_request_target_for_the_json_array_framing_has_no_alt() -> None:
    request = build_request(CONVERSATION, sse=False)
    assert request.target == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert ("accept", "application/json") in request.headers


def test_models_prefix_is_not_doubled() -> None:
    request = ChatRequest("models/gemini-2.5-pro", (Message("user", "Hi"),))
    assert build_request(request, base_path="/v1").target == (
        "/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )


def test_model_name_unsafe_for_a_url_is_a_local_error() -> None:
    request = ChatRequest("gemini-2.5-flash?key=x", (Message("user", "Hi"),))
    with pytest.raises(LocalProtocolError) as info:
        build_request(request)
    assert info.value.kind == "invalid_model"


def test_server_given_call_ids_are_sent_back() -> None:
    request = ChatRequest(
        "gemini-2.5-flash",
        (
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", tool_calls=(ToolCall("fc_7f3a", "get_weather", "{}"),)),
            Message("tool", "3°C", tool_call_id="fc_7f3a"),
        ),
    )
    contents = json.loads(build_request(request).body)["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc_7f3a"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "fc_7f3a"


def test_tool_result_for_an_unknown_call_is_a_local_error() -> None:
    request = ChatRequest("gemini-2.5-flash", (Message("tool", "3°C", tool_call_id="fc_404"),))
    with pytest.raises(LocalProtocolError) as info:
        build_request(request)
    assert info.value.kind == "unknown_tool_call_id"


def test_empty_assistant_turn_is_left_out() -> None:
    request = ChatRequest(
        "gemini-2.5-flash",
        (Message("user", "Hi"), Message("assistant", ""), Message("user", "Still there?")),
    )
    assert json.loads(build_request(request).body)["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "user", "parts": [{"text": "Still there?"}]},
    ]
