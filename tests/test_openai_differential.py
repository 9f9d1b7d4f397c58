"""Differential: our OpenAI decoders against the official ``openai`` SDK, offline.

The same body bytes go through both. The SDK side is its real streaming stack
reading an in-memory ``httpx2.Response`` (no network is touched):

* Chat Completions: ``Stream[ChatCompletionChunk]`` (its SSE decoder, ``[DONE]``
  handling and chunk parsing) under ``ChatCompletionStream``, whose
  ``ChatCompletionStreamState`` accumulates the deltas into the final completion.
* Responses: ``Stream[ResponseStreamEvent]`` under ``ResponseStream``, whose
  ``ResponseStreamState`` accumulates text and arguments deltas into a snapshot
  and builds the final response from ``response.completed``.

Text (per choice), refusal, reasoning, tool calls (id, name, arguments),
finish reason and usage must agree. Two chat transcripts are left out because
the SDK itself cannot read them: Gemini's index-less tool calls (it raises,
openai/openai-python#2806) and Azure's content-filter annotation chunk without
``delta`` (openai/openai-python#1677); tests/test_openai_chat.py covers them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import openai
import pytest
from _cuts import pieces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai._streaming import Stream
from openai._types import omit
from openai.lib.streaming.chat import ChatCompletionStream
from openai.lib.streaming.responses import ResponseStream
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from streamcore.events import (
    Event,
    Finish,
    ReasoningDelta,
    Refusal,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streamcore.providers._base import DialectDecoder
from streamcore.providers.openai_chat import OpenAIChatDecoder
from streamcore.providers.openai_responses import OpenAIResponsesDecoder

TRANSCRIPTS = Path(__file__).parent / "transcripts"
# A client is only a factory for the SDK's decoder here: the base URL is never dialled.
CLIENT = openai.OpenAI(api_key="offline-test", base_url="http://127.0.0.1:9/v1", max_retries=0)


def response(body: bytes, path: str) -> httpx2.Response:
    return httpx2.Response(
        200,
        content=body,
        headers={"content-type": "text/event-stream"},
        request=httpx2.Request("POST", f"http://127.0.0.1:9/v1{path}"),
    )


@dataclass
class Choice:
    """What a caller ends up with for one choice, in a form both sides can produce."""

    text: str = ""
    refusal: str = ""
    reasoning: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    finish: str | None = None


@dataclass
class Final:
    choices: dict[int, Choice] = field(default_factory=dict)
    usage: tuple[int | None, int | None, int | None, int | None] | None = None


def ours(decoder: DialectDecoder, body: bytes, cuts: Sequence[int] = ()) -> Final:
    events: list[Event] = []
    for piece in pieces(body, cuts):
        events += decoder.feed(piece)
    events += decoder.end()
    assert decoder.complete
    final = Final()
    calls: dict[tuple[int, int], list[str]] = {}
    for event in events:
        if isinstance(event, TextDelta | Refusal | ReasoningDelta | Finish):
            choice = final.choices.setdefault(event.choice, Choice())
            if isinstance(event, TextDelta):
                choice.text += event.text
            elif isinstance(event, Refusal):
                choice.refusal += event.text
            elif isinstance(event, ReasoningDelta):
                choice.reasoning += event.text
            else:
                choice.finish = event.raw
        elif isinstance(event, ToolCallStart):
            final.choices.setdefault(event.choice, Choice())
            calls[event.choice, event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolCallDelta):
            calls[event.choice, event.index][2] += event.arguments
        elif isinstance(event, Usage):
            final.usage = (
                event.input_tokens,
                event.output_tokens,
                event.cached_tokens,
                event.reasoning_tokens,
            )
    for (choice, _), (call_id, name, arguments) in sorted(calls.items()):
        final.choices[choice].tool_calls.append((call_id, name, arguments))
    return final


# --------------------------------------------------------------------------- Chat Completions


def sdk_chat(body: bytes) -> Final:
    raw = Stream(
        cast_to=ChatCompletionChunk, response=response(body, "/chat/completions"), client=CLIENT
    )
    stream = ChatCompletionStream(raw_stream=raw, response_format=omit, input_tools=omit)
    # The accumulated snapshot: get_final_completion() would also refuse to *parse*
    # a completion cut by length or the content filter, which is beside the point here.
    completion = stream.until_done().current_completion_snapshot
    final = Final()
    for sdk_choice in completion.choices:
        message = sdk_choice.message
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
        final.choices[sdk_choice.index] = Choice(
            text=message.content or "",
            refusal=message.refusal or "",
            reasoning=reasoning,
            tool_calls=[
                (call.id, call.function.name, call.function.arguments)
                for call in message.tool_calls or []
            ],
            finish=sdk_choice.finish_reason,
        )
    usage = completion.usage
    if usage is not None:
        prompt_details = usage.prompt_tokens_details
        completion_details = usage.completion_tokens_details
        final.usage = (
            usage.prompt_tokens,
            usage.completion_tokens,
            prompt_details.cached_tokens if prompt_details else None,
            completion_details.reasoning_tokens if completion_details else None,
        )
    return final


CHAT_TRANSCRIPTS = [
    "text_emoji_cjk",
    "tool_calls_parallel",
    "length",
    "refusal",
    "n2_choices",
    "deepseek_reasoning",
    "openrouter_reasoning",
    "vllm_continuous_usage",
]


@pytest.mark.parametrize("name", CHAT_TRANSCRIPTS)
def test_chat_transcript_accumulates_like_the_official_sdk(name: str) -> None:
    body = (TRANSCRIPTS / "openai_chat" / f"{name}.txt").read_bytes()
    assert ours(OpenAIChatDecoder(), body) == sdk_chat(body)


# --------------------------------------------------------------------------- Responses


def sdk_responses(body: bytes) -> Final:
    raw = Stream(cast_to=ResponseStreamEvent, response=response(body, "/responses"), client=CLIENT)
    stream = ResponseStream(raw_stream=raw, text_format=omit, input_tools=omit, starting_after=None)
    result = stream.get_final_response()
    # What the SDK accumulated from the deltas, before response.completed replaced it.
    snapshot = stream._state._ResponseStreamState__current_snapshot  # type: ignore[attr-defined]
    streamed = Choice(finish=result.status)
    for item in snapshot.output:
        if item.type == "message":
            streamed.text += "".join(p.text for p in item.content if p.type == "output_text")
        elif item.type == "function_call":
            streamed.tool_calls.append((item.call_id, item.name, item.arguments))

    final = Choice(finish=result.status)
    for item in result.output:
        if item.type == "message":
            for part in item.content:
                if part.type == "output_text":
                    final.text += part.text
                else:
                    final.refusal += part.refusal
        elif item.type == "function_call":
            final.tool_calls.append((item.call_id, item.name, item.arguments))
        elif item.type == "reasoning":
            final.reasoning += "".join(s.text for s in item.summary)
    assert (streamed.text, streamed.tool_calls) == (final.text, final.tool_calls)

    usage = result.usage
    assert usage is not None
    return Final(
        {0: final},
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens_details.cached_tokens,
            usage.output_tokens_details.reasoning_tokens,
        ),
    )


@pytest.mark.parametrize(
    "name",
    ["text_emoji_cjk", "function_calls_parallel", "reasoning_summary", "refusal", "web_search"],
)
def test_responses_transcript_accumulates_like_the_official_sdk(name: str) -> None:
    body = (TRANSCRIPTS / "openai_responses" / f"{name}.txt").read_bytes()
    assert ours(OpenAIResponsesDecoder(), body) == sdk_responses(body)


# --------------------------------------------------------------------------- generated streams

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
TEXT_PIECES = st.lists(st.text(min_size=1, max_size=20), max_size=5)


def _pieces(draw: st.DrawFn, whole: str) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(whole)), max_size=6))))
    bounds = [0, *cuts, len(whole)]
    return [whole[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _arguments(draw: st.DrawFn, ascii_only: bool) -> str:
    value = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4))
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def chat_streams(draw: st.DrawFn) -> bytes:
    """A valid Chat Completions stream: n choices of text and/or tool calls, interleaved."""
    ascii_only = draw(st.booleans())
    n = draw(st.integers(1, 3))

    def chunk(choices: list[dict[str, object]], usage: object = None) -> str:
        data = {
            "id": "chatcmpl-" + "Q" * 29,
            "object": "chat.completion.chunk",
            "created": 1747825001,
            "model": "gpt-4.1-2025-04-14",
            "system_fingerprint": "fp_b42e6e5d38",
            "choices": choices,
            "usage": usage,
        }
        return f"data: {json.dumps(data, ensure_ascii=ascii_only)}\n\n"

    def entry(index: int, delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    lanes: list[list[str]] = []
    for index in range(n):
        lane = [chunk([entry(index, {"role": "assistant", "content": "", "refusal": None})])]
        for piece in draw(TEXT_PIECES):
            lane.append(chunk([entry(index, {"content": piece})]))
        calls = draw(st.integers(0, 3))
        for call in range(calls):
            first = {
                "index": call,
                "id": f"call_{index}{call}" + draw(st.text("abcXYZ019", min_size=6, max_size=6)),
                "type": "function",
                "function": {
                    "name": draw(st.sampled_from(["get_weather", "search_docs", "run_sql"])),
                    "arguments": "",
                },
            }
            lane.append(chunk([entry(index, {"tool_calls": [first]})]))
            for piece in _pieces(draw, _arguments(draw, ascii_only)):
                fragment = {"index": call, "function": {"arguments": piece}}
                lane.append(chunk([entry(index, {"tool_calls": [fragment]})]))
        reasons = ["tool_calls"] if calls else ["stop", "length", "content_filter"]
        lane.append(chunk([entry(index, {}, draw(st.sampled_from(reasons)))]))
        lanes.append(lane)

    # Every choice opens in index order (the SDK's accumulator relies on it); after
    # that their chunks interleave in any order.
    out = [lane.pop(0) for lane in lanes]
    while any(lanes):
        lane = draw(st.sampled_from([lane for lane in lanes if lane]))
        out.append(lane.pop(0))
    prompt, completion = draw(st.integers(1, 9000)), draw(st.integers(1, 9000))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt)), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    out.append(chunk([], usage))
    out.append("data: [DONE]\n\n")
    return "".join(out).encode("utf-8")


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(body=chat_streams(), data=st.data())
def test_generated_chat_streams_accumulate_like_the_official_sdk(
    body: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20), label="cuts")
    assert ours(OpenAIChatDecoder(), body, cuts) == sdk_chat(body)


@st.composite
def responses_streams(draw: st.DrawFn) -> bytes:
    """A valid Responses stream: reasoning?, then messages and function calls in any order."""
    ascii_only = draw(st.booleans())
    seq = itertools.count()
    out: list[str] = []

    def event(kind: str, **fields: object) -> None:
        data = {"type": kind, "sequence_number": next(seq), **fields}
        out.append(f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=ascii_only)}\n\n")

    base = {"id": "resp_" + "0a" * 24, "object": "response", "model": "gpt-4.1-2025-04-14"}
    event("response.created", response={**base, "status": "in_progress", "output": []})
    event("response.in_progress", response={**base, "status": "in_progress", "output": []})
    kinds = draw(st.lists(st.sampled_from(["message", "function_call"]), max_size=4))
    if draw(st.booleans()):
        kinds.insert(0, "reasoning")
    done_items: list[dict[str, object]] = []
    for index, kind in enumerate(kinds):
        item_id = f"{kind[:2]}_{index:02d}" + "f" * 40
        if kind == "message":
            item: dict[str, object] = {
                "id": item_id,
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            }
            event("response.output_item.added", output_index=index, item=item)
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            event("response.content_part.added", **where, part=part)
            pieces = draw(TEXT_PIECES)
            for piece in pieces:
                event("response.output_text.delta", **where, delta=piece, logprobs=[])
            whole = "".join(pieces)
            event("response.output_text.done", **where, text=whole, logprobs=[])
            part = {**part, "text": whole}
            event("response.content_part.done", **where, part=part)
            done = {**item, "status": "completed", "content": [part]}
        elif kind == "function_call":
            item = {
                "id": item_id,
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": f"call_{index}" + draw(st.text("abcXYZ019", min_size=8, max_size=8)),
                "name": draw(st.sampled_from(["get_weather", "search_docs", "run_sql"])),
            }
            event("response.output_item.added", output_index=index, item=item)
            arguments = _arguments(draw, ascii_only)
            for piece in _pieces(draw, arguments):
                event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=index,
                    delta=piece,
                )
            event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                arguments=arguments,
            )
            done = {**item, "status": "completed", "arguments": arguments}
        else:
            item = {"id": item_id, "type": "reasoning", "summary": []}
            event("response.output_item.added", output_index=index, item=item)
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            event(
                "response.reasoning_summary_part.added",
                **where,
                part={"type": "summary_text", "text": ""},
            )
            pieces = draw(TEXT_PIECES)
            for piece in pieces:
                event("response.reasoning_summary_text.delta", **where, delta=piece)
            summary = {"type": "summary_text", "text": "".join(pieces)}
            event("response.reasoning_summary_text.done", **where, text=summary["text"])
            event("response.reasoning_summary_part.done", **where, part=summary)
            done = {**item, "summary": [summary]}
        event("response.output_item.done", output_index=index, item=done)
        done_items.append(done)
    inputs, outputs = draw(st.integers(1, 9000)), draw(st.integers(1, 9000))
    usage = {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": draw(st.integers(0, inputs))},
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": draw(st.integers(0, outputs))},
        "total_tokens": inputs + outputs,
    }
    final = {**base, "status": "completed", "output": done_items, "usage": usage}
    event("response.completed", response=final)
    return "".join(out).encode("utf-8")


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(body=responses_streams(), data=st.data())
def test_generated_responses_streams_accumulate_like_the_official_sdk(
    body: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20), label="cuts")
    assert ours(OpenAIResponsesDecoder(), body, cuts) == sdk_responses(body)
