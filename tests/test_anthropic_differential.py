"""Differential: our Anthropic decoder against the official ``anthropic`` SDK, offline.

The same body bytes go through both. The SDK side is its real streaming stack
-- ``Stream`` (its SSE decoder and event parsing) under ``MessageStream`` (its
``accumulate_event``) -- reading an in-memory ``httpx2.Response``; no network
is touched. The final text, thinking, tool calls (id, name, parsed input),
stop reason and output tokens must agree.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import httpx2
import pytest
from anthropic._streaming import Stream
from anthropic._types import not_given
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamcore.events import (
    Event,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streamcore.providers.anthropic import AnthropicDecoder

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "anthropic"
# A client is only a factory for the SDK's decoder here: the base URL is never dialled.
CLIENT = anthropic.Anthropic(api_key="offline-test", base_url="http://127.0.0.1:9", max_retries=0)


@dataclass
class Final:
    """What a caller ends up with, in a form both sides can produce."""

    text: str = ""
    thinking: str = ""
    signature: str = ""
    tool_calls: list[tuple[str, str, object]] = field(default_factory=list)
    stop_reason: str | None = None
    output_tokens: int | None = None


def sdk_final(body: bytes) -> Final:
    response = httpx2.Response(
        200,
        content=body,
        headers={"content-type": "text/event-stream"},
        request=httpx2.Request("POST", "http://127.0.0.1:9/v1/messages"),
    )
    raw = Stream(cast_to=RawMessageStreamEvent, response=response, client=CLIENT)
    message = MessageStream(raw, output_format=not_given).get_final_message()
    final = Final(stop_reason=message.stop_reason, output_tokens=message.usage.output_tokens)
    for block in message.content:
        if block.type == "text":
            final.text += block.text
        elif block.type == "thinking":
            final.thinking += block.thinking
            final.signature = block.signature
        elif block.type == "tool_use":
            final.tool_calls.append((block.id, block.name, block.input))
    return final


def our_final(body: bytes, cuts: Sequence[int] = ()) -> Final:
    decoder = AnthropicDecoder()
    events: list[Event] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(body[start:cut])
        start = cut
    events += decoder.feed(body[start:])
    events += decoder.end()
    assert decoder.complete
    final = Final()
    calls: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, TextDelta):
            final.text += event.text
        elif isinstance(event, ReasoningDelta):
            final.thinking += event.text
            final.signature = event.signature or final.signature
        elif isinstance(event, ToolCallStart):
            calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolCallDelta):
            calls[event.index][2] += event.arguments
        elif isinstance(event, Finish):
            final.stop_reason = event.raw
        elif isinstance(event, Usage):
            final.output_tokens = event.output_tokens
    for index in sorted(calls):
        call_id, name, arguments = calls[index]
        final.tool_calls.append((call_id, name, json.loads(arguments) if arguments else {}))
    return final


@pytest.mark.parametrize("name", ["text_emoji_cjk", "tool_use_parallel", "thinking", "max_tokens"])
def test_transcript_accumulates_like_the_official_sdk(name: str) -> None:
    body = (TRANSCRIPTS / f"{name}.txt").read_bytes()
    assert our_final(body) == sdk_final(body)


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


def _pieces(draw: st.DrawFn, whole: str) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(whole)), max_size=6))))
    bounds = [0, *cuts, len(whole)]
    return [whole[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def anthropic_streams(draw: st.DrawFn) -> bytes:
    """A valid Messages stream: thinking?, then text and tool_use blocks in any order."""
    ascii_only = draw(st.booleans())

    def event(name: str, data: object) -> str:
        return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=ascii_only)}\n\n"

    def delta(index: int, value: dict[str, object]) -> str:
        return event(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": value},
        )

    out = [
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_" + draw(st.text("abcdefXYZ0123456789", min_size=8, max_size=8)),
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": draw(st.integers(1, 5000)), "output_tokens": 1},
                },
            },
        )
    ]
    kinds = draw(st.lists(st.sampled_from(["text", "tool_use"]), max_size=4))
    if draw(st.booleans()):
        kinds.insert(0, "thinking")
    for index, kind in enumerate(kinds):
        if draw(st.booleans()):
            out.append(event("ping", {"type": "ping"}))
        if kind == "text":
            block: dict[str, object] = {"type": "text", "text": ""}
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            block = {
                "type": "tool_use",
                "id": f"toolu_{index:02d}" + draw(st.text("abcXYZ019", min_size=6, max_size=6)),
                "name": draw(st.sampled_from(["get_weather", "search_docs", "run_sql"])),
                "input": {},
            }
        out.append(
            event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        if kind == "text":
            for piece in draw(st.lists(st.text(min_size=1, max_size=20), max_size=5)):
                out.append(delta(index, {"type": "text_delta", "text": piece}))
        elif kind == "thinking":
            for piece in draw(st.lists(st.text(min_size=1, max_size=20), max_size=4)):
                out.append(delta(index, {"type": "thinking_delta", "thinking": piece}))
            signature = draw(st.text("ABCDEFabcdef0123456789+/=", min_size=8, max_size=40))
            out.append(delta(index, {"type": "signature_delta", "signature": signature}))
        else:
            arguments = json.dumps(
                draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)),
                ensure_ascii=ascii_only,
            )
            for piece in _pieces(draw, arguments):
                out.append(delta(index, {"type": "input_json_delta", "partial_json": piece}))
        out.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    reason = draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence"]))
    out.append(
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": draw(st.integers(1, 9000))},
            },
        )
    )
    out.append(event("message_stop", {"type": "message_stop"}))
    return "".join(out).encode("utf-8")


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(body=anthropic_streams(), data=st.data())
def test_generated_streams_accumulate_like_the_official_sdk(
    body: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20), label="cuts")
    assert our_final(body, cuts) == sdk_final(body)
