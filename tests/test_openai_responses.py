"""The OpenAI Responses dialect: transcripts in, events out; requests and resume requests out.

Transcripts live in tests/transcripts/openai_responses/ as the exact bytes of a
response body, written from the documented streaming events (``event:`` line
and JSON ``type``, ``sequence_number`` from 0, the full ``response`` object in
the lifecycle events). ``background_cut`` / ``background_resume`` are one
background response cut after event 7 and streamed again with
``starting_after=7``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from _cuts import pieces
from hypothesis import assume, given
from hypothesis import strategies as st

from streamcore import LocalProtocolError, RemoteProtocolError
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
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
from streamcore.providers.openai_responses import (
    MAX_OPEN_ITEMS,
    OpenAIResponsesDecoder,
    build_request,
    build_resume_request,
)
from streamcore.request import ChatRequest, Message, Tool, ToolCall

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "openai_responses"
COMPLETE = [
    "text_emoji_cjk",
    "function_calls_parallel",
    "reasoning_summary",
    "incomplete_max_tokens",
    "failed",
    "refusal",
    "web_search",
]
RESPONSE_ID = "resp_682d4910b1c28191c3b2a1f0e9d8c7b608e4d3c2b1a09f8e"


def body(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.txt").read_bytes()


def feed(
    decoder: OpenAIResponsesDecoder, data: bytes, cuts: Sequence[int] = ()
) -> tuple[list[Event], str | None]:
    """Feed ``data`` cut at ``cuts`` then end; the events and the error kind (or None)."""
    events: list[Event] = []
    try:
        for piece in pieces(data, cuts):
            events += decoder.feed(piece)
        events += decoder.end()
    except RemoteProtocolError as exc:
        return events, exc.kind
    return events, None


def decode(data: bytes, cuts: Sequence[int] = ()) -> tuple[list[Event], OpenAIResponsesDecoder]:
    decoder = OpenAIResponsesDecoder()
    events, kind = feed(decoder, data, cuts)
    if kind is not None:
        raise AssertionError(f"unexpected {kind} error")
    return events, decoder


def outcome(
    data: bytes, cuts: Sequence[int] = ()
) -> tuple[list[Event], str | None, bool, int | None]:
    decoder = OpenAIResponsesDecoder()
    events, kind = feed(decoder, data, cuts)
    return events, kind, decoder.complete, decoder.last_sequence_number


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


class Stream:
    """Builds events the way the API numbers them (``sequence_number`` from 0)."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **fields: object) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def created(self) -> bytes:
        return self(
            "response.created",
            response={"id": "resp_1", "object": "response", "model": "gpt-4.1", "output": []},
        )

    def message(self, index: int) -> bytes:
        item = {"id": f"msg_{index}", "type": "message", "role": "assistant", "content": []}
        return self("response.output_item.added", output_index=index, item=item)

    def call(self, index: int, call_id: str = "call_1", arguments: str = "") -> bytes:
        item = {
            "id": f"fc_{index}",
            "type": "function_call",
            "status": "in_progress",
            "arguments": arguments,
            "call_id": call_id,
            "name": "get_weather",
        }
        return self("response.output_item.added", output_index=index, item=item)

    def text(self, index: int, delta: str) -> bytes:
        return self(
            "response.output_text.delta",
            item_id=f"msg_{index}",
            output_index=index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    def arguments(self, index: int, delta: str) -> bytes:
        return self(
            "response.function_call_arguments.delta",
            item_id=f"fc_{index}",
            output_index=index,
            delta=delta,
        )

    def end(self, kind: str = "response.completed", **response: object) -> bytes:
        return self(kind, response={"id": "resp_1", "status": kind.split(".")[1], **response})


# --------------------------------------------------------------------------- transcripts


def test_text_with_emoji_and_cjk_gives_exact_events() -> None:
    events, decoder = decode(body("text_emoji_cjk"))
    assert events == [
        StreamStarted(
            "resp_682d3f8a9c4c8191b1e6a0c9f3d2e7b40f5a6c1d2e3f4a5b", "gpt-4.1-mini-2025-04-14"
        ),
        TextDelta("Bonjour 👋 ! En japonais on dit "),
        TextDelta("「こんにちは」, en chinois 「你好"),
        TextDelta("」. Développeuse : 👩"),
        TextDelta("\u200d💻"),
        TextDelta(" 🚀 été"),
        Finish(FinishReason.STOP, "completed"),
        Usage(input_tokens=21, output_tokens=31, cached_tokens=0, reasoning_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete
    assert decoder.last_sequence_number == 12


def test_parallel_function_calls_are_indexed_by_output_index() -> None:
    events, decoder = decode(body("function_calls_parallel"))
    assert [e for e in events if isinstance(e, ToolCallStart | ToolCallEnd)] == [
        ToolCallStart(0, "call_Zq2V8mWcYhB4kT1nLr7pXs3D", "get_weather"),
        ToolCallEnd(0),
        ToolCallStart(1, "call_4fJkP9sQwE2xRt6yUb8nMc1V", "get_weather"),
        ToolCallEnd(1),
    ]
    assert {i: json.loads(args) for i, (_, _, args) in tool_calls(events).items()} == {
        0: {"city": "Paris"},
        1: {"city": "東京"},
    }
    assert events[-3:] == [
        Finish(FinishReason.TOOL_CALLS, "completed"),
        Usage(input_tokens=1310, output_tokens=41, cached_tokens=1152, reasoning_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete


def test_reasoning_summary_streams_as_reasoning_before_the_answer() -> None:
    events, _ = decode(body("reasoning_summary"))
    kinds = [type(e).__name__ for e in events if isinstance(e, ReasoningDelta | TextDelta)]
    assert kinds == ["ReasoningDelta"] * 3 + ["TextDelta"] * 2
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == (
        "**Comparing decimals**\n\n9.11 vs 9.9: the tenths digit decides, 1 < 9, so 9.9 is larger."
    )
    assert text(events) == "9.9 is larger than 9.11."
    assert (
        Usage(input_tokens=2100, output_tokens=420, cached_tokens=2048, reasoning_tokens=384)
        in events
    )


def test_incomplete_for_max_output_tokens_is_a_complete_length_stop() -> None:
    events, decoder = decode(body("incomplete_max_tokens"))
    assert text(events) == "Once upon a time, in a village by the sea, there lived"
    assert events[-3:] == [
        Finish(FinishReason.LENGTH, "max_output_tokens"),
        Usage(input_tokens=24, output_tokens=16, cached_tokens=0, reasoning_tokens=0),
        StreamEnd(),
    ]
    assert decoder.complete


def test_failed_response_is_a_provider_error_then_a_complete_stream() -> None:
    events, decoder = decode(body("failed"))
    assert text(events) == "Here is the first part of the answer"
    error, end = events[-2:]
    assert isinstance(error, ProviderError)
    assert error.type == "server_error"
    assert error.message.startswith("An error occurred while processing your request.")
    assert end == StreamEnd()
    assert not any(isinstance(e, Finish) for e in events)
    assert decoder.complete


def test_refusal_deltas_become_refusal_events() -> None:
    events, _ = decode(body("refusal"))
    assert [e for e in events if isinstance(e, Refusal)] == [
        Refusal("I'm sorry, "),
        Refusal("I can't assist with that request."),
    ]
    assert text(events) == ""


def test_text_delta_for_an_item_never_added_is_unexpected_event() -> None:
    events, kind, _, _ = outcome(body("delta_without_item"))
    assert text(events) == "Hello"
    assert kind == "unexpected_event"


def test_built_in_tool_items_and_annotations_are_surfaced_raw() -> None:
    events, decoder = decode(body("web_search"))
    assert [e.name for e in events if isinstance(e, RawEvent)] == [
        "response.output_item.added:web_search_call",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
        "response.output_text.annotation.added",
    ]
    assert text(events) == "Python 3.14 was released on October 7, 2025."
    assert Finish(FinishReason.STOP, "completed") in events
    assert decoder.complete


# --------------------------------------------------------------------------- resuming


def test_resumed_decoder_continues_a_cut_background_stream() -> None:
    first, cut = decode(body("background_cut"))
    assert text(first) == "The Treaty of Westphalia (1648) ended the Thirty Years' War"
    assert (cut.response_id, cut.last_sequence_number, cut.complete) == (RESPONSE_ID, 7, False)

    resumed = cut.resumed()
    rest, kind = feed(resumed, body("background_resume"))
    assert kind is None
    assert text(first + rest) == (
        "The Treaty of Westphalia (1648) ended the Thirty Years' War and the Eighty Years' War."
    )
    assert not any(isinstance(e, StreamStarted) for e in rest)
    assert rest[-2:] == [
        Usage(input_tokens=27, output_tokens=19, cached_tokens=0, reasoning_tokens=0),
        StreamEnd(),
    ]
    assert resumed.complete
    assert resumed.last_sequence_number == 12


def test_resumed_decoder_skips_events_replayed_from_the_start() -> None:
    _, cut = decode(body("background_cut"))
    replay = body("background_cut").rsplit(b"\n\n", 1)[0] + b"\n\n" + body("background_resume")
    honoured, _ = feed(cut.resumed(), body("background_resume"))
    replayed, kind = feed(cut.resumed(), replay)
    assert kind is None
    assert replayed == honoured


def test_a_resumed_body_fed_to_a_fresh_decoder_is_unexpected_event() -> None:
    _, kind, _, _ = outcome(body("background_resume"))
    assert kind == "unexpected_event"


def test_resuming_before_response_created_has_no_resume_point() -> None:
    decoder = OpenAIResponsesDecoder()
    decoder.feed(body("background_cut")[:40])
    with pytest.raises(LocalProtocolError) as info:
        decoder.resumed()
    assert info.value.kind == "no_resume_point"


def test_resuming_a_complete_response_is_a_local_error() -> None:
    _, decoder = decode(body("text_emoji_cjk"))
    with pytest.raises(LocalProtocolError) as info:
        decoder.resumed()
    assert info.value.kind == "nothing_to_resume"


def test_resume_request_streams_the_response_again_after_the_cursor() -> None:
    request = build_resume_request(RESPONSE_ID, 7, api_key="sk-proj-secret")
    assert request.method == "GET"
    assert request.target == f"/v1/responses/{RESPONSE_ID}?stream=true&starting_after=7"
    assert request.headers == (
        ("accept", "text/event-stream"),
        ("authorization", "Bearer sk-proj-secret"),
    )
    assert request.body == b""
    assert "sk-proj-secret" not in repr(request)


@pytest.mark.parametrize("response_id", ["", "resp_1/../files", "resp 1", "resp_1?x=1"])
def test_resume_request_refuses_an_id_that_would_need_escaping(response_id: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        build_resume_request(response_id, 3)
    assert info.value.kind == "invalid_response_id"


def test_resume_request_refuses_a_negative_cursor() -> None:
    with pytest.raises(LocalProtocolError) as info:
        build_resume_request(RESPONSE_ID, -1)
    assert info.value.kind == "invalid_starting_after"


# --------------------------------------------------------------------------- grammar


def test_output_before_response_created_is_unexpected_event() -> None:
    s = Stream()
    _, kind, _, _ = outcome(s.message(0))
    assert kind == "unexpected_event"


def test_event_after_the_terminal_event_is_rejected() -> None:
    s = Stream()
    events, kind, complete, _ = outcome(s.created() + s.end() + s.message(0))
    assert events[-1] == StreamEnd()
    assert (kind, complete) == ("event_after_end", True)


def test_done_marker_after_the_terminal_event_is_ignored() -> None:
    s = Stream()
    events, kind, complete, _ = outcome(s.created() + s.end() + b"data: [DONE]\n\n")
    assert (events[-1], kind, complete) == (StreamEnd(), None, True)


def test_sequence_number_that_does_not_grow_is_unexpected_event() -> None:
    s = Stream()
    head = s.created() + s.message(0)
    s.seq -= 1
    _, kind, _, last = outcome(head + s.text(0, "Hi"))
    assert (kind, last) == ("unexpected_event", 1)


def test_events_without_sequence_numbers_are_accepted() -> None:
    s = Stream()
    stream = s.created() + s.message(0) + s.text(0, "Hi") + s.end()
    stripped = stream.replace(b'"sequence_number": ', b'"n": ')
    events, kind, complete, last = outcome(stripped)
    assert (text(events), kind, complete, last) == ("Hi", None, True, None)


def test_text_delta_into_a_function_call_is_unexpected_event() -> None:
    s = Stream()
    _, kind, _, _ = outcome(s.created() + s.call(0) + s.text(0, "oops"))
    assert kind == "unexpected_event"


def test_reusing_an_output_index_is_unexpected_event() -> None:
    s = Stream()
    _, kind, _, _ = outcome(s.created() + s.message(0) + s.message(0))
    assert kind == "unexpected_event"


def test_arguments_after_their_done_event_are_unexpected_event() -> None:
    s = Stream()
    stream = s.created() + s.call(0) + s.arguments(0, "{}")
    stream += s("response.function_call_arguments.done", output_index=0, arguments="{}")
    _, kind, _, _ = outcome(stream + s.arguments(0, " "))
    assert kind == "unexpected_event"


def test_arguments_that_only_arrive_whole_become_one_delta() -> None:
    s = Stream()
    stream = s.created() + s.call(0, "call_W")
    stream += s("response.function_call_arguments.done", output_index=0, arguments='{"a":1}')
    events, _ = decode(stream + s.end())
    assert [e for e in events if isinstance(e, ToolCallDelta | ToolCallEnd)] == [
        ToolCallDelta(0, '{"a":1}'),
        ToolCallEnd(0),
    ]


def test_item_done_closes_a_call_whose_arguments_done_never_came() -> None:
    s = Stream()
    done = {"type": "function_call", "call_id": "call_W", "name": "f", "arguments": "{}"}
    stream = s.created() + s.call(0, "call_W") + s.arguments(0, "{}")
    stream += s("response.output_item.done", output_index=0, item=done)
    events, _ = decode(stream + s.end())
    assert [e for e in events if isinstance(e, ToolCallDelta | ToolCallEnd)] == [
        ToolCallDelta(0, "{}"),
        ToolCallEnd(0),
    ]


def test_completed_closes_calls_still_open_and_reports_tool_calls() -> None:
    s = Stream()
    events, _ = decode(s.created() + s.call(2, "call_W", '{"city":"Oslo"}') + s.end())
    assert events[1:] == [
        ToolCallStart(2, "call_W", "get_weather"),
        ToolCallDelta(2, '{"city":"Oslo"}'),
        ToolCallEnd(2),
        Finish(FinishReason.TOOL_CALLS, "completed"),
        StreamEnd(),
    ]


def test_unknown_event_type_is_surfaced_raw() -> None:
    s = Stream()
    stream = s.created() + s("response.output_audio.delta", output_index=0, delta="UklGRiQ=")
    events, decoder = decode(stream + s.end())
    assert RawEvent("response.output_audio.delta", None) in events
    assert decoder.complete


def test_events_about_an_item_of_an_unknown_kind_are_surfaced_raw() -> None:
    s = Stream()
    stream = s.created()
    stream += s("response.output_item.added", output_index=0, item={"type": "mcp_call"})
    stream += s("response.function_call_arguments.delta", output_index=0, delta='{"q":')
    stream += s("response.output_text.delta", output_index=0, content_index=0, delta="x")
    events, _ = decode(stream)
    assert [e.name for e in events if isinstance(e, RawEvent)] == [
        "response.output_item.added:mcp_call",
        "response.function_call_arguments.delta",
        "response.output_text.delta",
    ]
    assert not any(isinstance(e, ToolCallDelta | TextDelta) for e in events)


def test_output_index_of_the_wrong_type_is_invalid_event() -> None:
    s = Stream()
    stream = s.created() + s.message(0)
    bad = s("response.output_text.delta", output_index="0", content_index=0, delta="x")
    _, kind, _, _ = outcome(stream + bad)
    assert kind == "invalid_event"


def test_error_event_with_a_nested_error_object_is_a_provider_error() -> None:
    s = Stream()
    stream = s.created()
    stream += s("error", error={"type": "invalid_request_error", "message": "Bad input"})
    events, _ = decode(stream)
    assert events[-1] == ProviderError("invalid_request_error", "Bad input")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("max_output_tokens", FinishReason.LENGTH),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("max_tool_calls", FinishReason.OTHER),
    ],
)
def test_incomplete_reason_maps_keeping_the_raw_value(raw: str, reason: FinishReason) -> None:
    s = Stream()
    events, _ = decode(
        s.created() + s.end("response.incomplete", incomplete_details={"reason": raw})
    )
    assert events[-2] == Finish(reason, raw)


def test_more_open_items_than_the_limit_is_too_many_items() -> None:
    s = Stream()
    stream = s.created() + b"".join(s.message(i) for i in range(MAX_OPEN_ITEMS + 1))
    _, kind, _, _ = outcome(stream)
    assert kind == "too_many_items"


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", [n for n in COMPLETE if n != "failed"])
@given(data=st.data())
def test_cut_anywhere_then_resume_gives_the_uninterrupted_events(
    name: str, data: st.DataObject
) -> None:
    full = body(name)
    full_events, _ = decode(full)
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1), label="cut")
    first = OpenAIResponsesDecoder()
    before, _ = feed(first, full[:cut])
    assume(first.response_id is not None and first.last_sequence_number is not None)
    # The server replays from the start; the resumed decoder skips what it already has.
    after, kind = feed(first.resumed(), full)
    assert kind is None
    assert before + after == full_events


# --------------------------------------------------------------------------- build_request

WEATHER = Tool(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

CONVERSATION = ChatRequest(
    model="gpt-4.1",
    system="You are a concise weather assistant.",
    messages=(
        Message("user", "Weather in Paris and Tokyo?"),
        Message(
            "assistant",
            "Checking both.",
            tool_calls=(
                ToolCall("call_Zq2V8mWcYhB4kT1nLr7pXs3D", "get_weather", '{"city":"Paris"}'),
                ToolCall("call_4fJkP9sQwE2xRt6yUb8nMc1V", "get_weather", '{"city":"東京"}'),
            ),
        ),
        Message("tool", "18°C, light rain", tool_call_id="call_Zq2V8mWcYhB4kT1nLr7pXs3D"),
        Message("tool", "24°C, clear", tool_call_id="call_4fJkP9sQwE2xRt6yUb8nMc1V"),
        Message("system", "Answer in French."),
        Message("user", "Answer in one line."),
        Message("assistant", "Paris : "),
    ),
    max_tokens=1024,
    temperature=0.2,
    tools=(WEATHER,),
)


def test_request_body_maps_instructions_items_tools_and_prefill() -> None:
    request = build_request(CONVERSATION, api_key="sk-proj-secret")
    expected = {
        "model": "gpt-4.1",
        "instructions": "You are a concise weather assistant.",
        "input": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": "Checking both."},
            {
                "type": "function_call",
                "call_id": "call_Zq2V8mWcYhB4kT1nLr7pXs3D",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_4fJkP9sQwE2xRt6yUb8nMc1V",
                "name": "get_weather",
                "arguments": '{"city":"東京"}',
            },
            {
                "type": "function_call_output",
                "call_id": "call_Zq2V8mWcYhB4kT1nLr7pXs3D",
                "output": "18°C, light rain",
            },
            {
                "type": "function_call_output",
                "call_id": "call_4fJkP9sQwE2xRt6yUb8nMc1V",
                "output": "24°C, clear",
            },
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Answer in one line."},
            {"role": "assistant", "content": "Paris : "},
        ],
        "max_output_tokens": 1024,
        "temperature": 0.2,
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
                "strict": False,
            }
        ],
        "stream": True,
    }
    assert request.body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def test_request_headers_carry_accept_and_bearer_key() -> None:
    request = build_request(CONVERSATION, api_key="sk-proj-secret")
    assert (request.method, request.target) == ("POST", "/v1/responses")
    assert request.headers == (
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("authorization", "Bearer sk-proj-secret"),
    )
    assert "sk-proj-secret" not in repr(request)


def test_stop_sequences_are_refused_rather_than_silently_dropped() -> None:
    request = ChatRequest("gpt-4.1", (Message("user", "Count to 9"),), stop=("5",))
    with pytest.raises(LocalProtocolError) as info:
        build_request(request)
    assert info.value.kind == "unsupported_parameter"


def test_extra_is_merged_last_for_background_and_reasoning_options() -> None:
    request = ChatRequest(
        "o4-mini",
        (Message("user", "Hi"),),
        extra={"background": True, "reasoning": {"effort": "high", "summary": "auto"}},
    )
    body_ = json.loads(build_request(request, base_path="/openai/v1/").body)
    assert body_["background"] is True
    assert body_["reasoning"] == {"effort": "high", "summary": "auto"}
