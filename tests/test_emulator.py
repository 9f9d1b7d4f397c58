"""The provider emulator: real wire formats over loopback sockets, deterministic text, faults.

Every socket test talks to a live emulator through a small h11 client written
here (not streamcore's own HTTP client: the emulator is what that client is
tested against). Responses are decoded with streamcore's framing decoders.
Timing faults run under trio's ``MockClock`` (pytest-trio's ``autojump_clock``),
so a 10-second stall takes no real time.
"""

from __future__ import annotations

import doctest
import functools
import itertools
import json
import queue
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from streamcore import LocalProtocolError, RemoteProtocolError
from streamcore.adapters.emulator import (
    FAULT_HEADER,
    REQUEST_KEY_HEADER,
    Dialect,
    Emulator,
    Faults,
    Outcome,
    answer_for,
    answer_tokens,
    continuation_offset,
    open_emulator,
    parse_faults,
    serve_forever,
    split_tokens,
)
from streamcore.adapters.emulator import conversation as conversation_module
from streamcore.adapters.emulator import faults as faults_module
from streamcore.adapters.emulator import text as text_module
from streamcore.adapters.emulator import wire as wire_module
from streamcore.adapters.emulator.conversation import parse_request, plan_answer, route
from streamcore.adapters.emulator.wire import writer_for
from streamcore.jsonarray import JSONArrayDecoder
from streamcore.ndjson import NDJSONDecoder
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

PROMPT = "Explain how server-sent events carry an LLM answer"
LENGTH = 400
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}

# ---------------------------------------------------------------- requests, per dialect

GEMINI_SSE = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
GEMINI_ARRAY = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
PATHS = {
    "openai_chat": "/v1/chat/completions",
    "openai_responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini_sse": GEMINI_SSE,
    "gemini_array": GEMINI_ARRAY,
    "ollama": "/api/chat",
}
ALL = list(PATHS)


def request_body(
    kind: str,
    prompt: str = PROMPT,
    *,
    assistant: str | None = None,
    then_user: str | None = None,
    tools: bool = False,
    max_tokens: int | None = None,
) -> dict[str, object]:
    """A realistic streaming request of dialect ``kind`` (real field names)."""
    turns: list[tuple[str, str]] = [("user", prompt)]
    if assistant is not None:
        turns.append(("assistant", assistant))
    if then_user is not None:
        turns.append(("user", then_user))
    if kind in ("openai_chat", "ollama"):
        messages = [{"role": "system", "content": "You are a concise assistant."}]
        messages += [{"role": r, "content": t} for r, t in turns]
        body: dict[str, object] = {"model": "gpt-4o-mini", "messages": messages, "stream": True}
        if kind == "ollama":
            body["model"] = "llama3.2"
            if max_tokens is not None:
                body["options"] = {"num_predict": max_tokens, "temperature": 0}
        elif max_tokens is not None:
            body["max_completion_tokens"] = max_tokens
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Current weather for a city",
                        "parameters": WEATHER_TOOL_SCHEMA,
                    },
                }
            ]
        return body
    if kind == "openai_responses":
        body = {
            "model": "gpt-4.1-mini",
            "instructions": "You are a concise assistant.",
            "input": [
                {"role": r, "content": [{"type": "input_text", "text": t}]}
                if r == "user"
                else {"type": "message", "role": r, "content": [{"type": "output_text", "text": t}]}
                for r, t in turns
            ],
            "stream": True,
        }
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
        if tools:
            body["tools"] = [
                {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}
            ]
        return body
    if kind == "anthropic":
        body = {
            "model": "claude-sonnet-4-6",
            "max_tokens": max_tokens if max_tokens is not None else 1024,
            "system": "You are a concise assistant.",
            "messages": [{"role": r, "content": t} for r, t in turns],
            "stream": True,
        }
        if tools:
            body["tools"] = [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "input_schema": WEATHER_TOOL_SCHEMA,
                }
            ]
        return body
    assert kind in ("gemini_sse", "gemini_array")
    body = {
        "systemInstruction": {"parts": [{"text": "You are a concise assistant."}]},
        "contents": [
            {"role": "model" if r == "assistant" else "user", "parts": [{"text": t}]}
            for r, t in turns
        ],
    }
    if max_tokens is not None:
        body["generationConfig"] = {"maxOutputTokens": max_tokens}
    if tools:
        body["tools"] = [
            {"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}]}
        ]
    return body


# ---------------------------------------------------------------- a tiny h11 client


@dataclass
class Reply:
    """What the client saw: status, headers, body pieces with their (trio) arrival time."""

    status: int
    headers: dict[str, str]
    pieces: list[tuple[float, bytes]] = field(default_factory=list)
    complete: bool = False
    """The body ended properly (chunked terminator / content-length reached)."""
    sent_at: float = 0.0

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.pieces)


class Client:
    """One HTTP/1.1 connection to the emulator, driven with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, emu: Emulator) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", emu.port))

    async def send(
        self, target: str, body: object, headers: Sequence[tuple[str, str]] = ()
    ) -> Reply:
        payload = json.dumps(body).encode()
        head = [
            ("host", "127.0.0.1"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("content-length", str(len(payload))),
            *headers,
        ]
        data = self.conn.send(h11.Request(method="POST", target=target, headers=head))
        data += self.conn.send(h11.Data(data=payload)) + self.conn.send(h11.EndOfMessage())
        sent_at = trio.current_time()
        await self.stream.send_all(data)
        event = await self._next()
        assert isinstance(event, h11.Response), event
        headers_out = {k.decode(): v.decode() for k, v in event.headers}
        return Reply(event.status_code, headers_out, sent_at=sent_at)

    async def _next(self) -> object:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.receive_some(65536))

    async def read_piece(self, reply: Reply) -> bool:
        """Read the next body piece into ``reply``; False once the body is over."""
        try:
            event = await self._next()
        except h11.RemoteProtocolError:  # the server closed mid-body
            return False
        if isinstance(event, h11.Data):
            reply.pieces.append((trio.current_time(), bytes(event.data)))
            return True
        reply.complete = isinstance(event, h11.EndOfMessage)
        return False

    async def read_all(self, reply: Reply) -> Reply:
        while await self.read_piece(reply):
            pass
        return reply

    def reuse(self) -> None:
        self.conn.start_next_cycle()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def post(
    emu: Emulator, kind_or_path: str, body: object, *, fault: str | None = None
) -> Reply:
    """One request on a fresh connection, read to the end."""
    client = await Client.connect(emu)
    headers = [("authorization", "Bearer sk-test-0123456789")]
    if fault is not None:
        headers.append((FAULT_HEADER, fault))
    try:
        reply = await client.send(PATHS.get(kind_or_path, kind_or_path), body, headers)
        return await client.read_all(reply)
    finally:
        await client.aclose()


# ---------------------------------------------------------------- decoding replies


def decode(kind: str, data: bytes) -> list[tuple[str, object]]:
    """(event name, payload) for each item of a body: JSON-decoded where it is JSON."""
    out: list[tuple[str, object]] = []
    if kind in ("ollama", "gemini_array"):
        decoder: NDJSONDecoder | JSONArrayDecoder = (
            NDJSONDecoder() if kind == "ollama" else JSONArrayDecoder()
        )
        items = decoder.feed(data)
        end = decoder.end()
        assert not end.truncated, end.detail
        return [("", item) for item in [*items, *end.items]]
    sse = SSEDecoder()
    sse_items = [*sse.feed(data), *sse.end().items]
    for item in sse_items:
        if isinstance(item, SSEComment):
            out.append((":", item.text))
        else:
            assert isinstance(item, SSEEvent)
            payload = item.data if item.data == "[DONE]" else json.loads(item.data)
            out.append((item.event, payload))
    return out


def text_of(kind: str, items: list[tuple[str, object]]) -> str:
    """The answer text carried by decoded items, the way each provider carries it."""
    texts = []
    for name, payload in items:
        if not isinstance(payload, dict):
            continue
        if kind == "openai_chat":
            for choice in payload.get("choices", []):
                texts.append(choice["delta"].get("content") or "")
        elif kind == "openai_responses":
            if name == "response.output_text.delta":
                texts.append(payload["delta"])
        elif kind == "anthropic":
            if name == "content_block_delta" and payload["delta"]["type"] == "text_delta":
                texts.append(payload["delta"]["text"])
        elif kind in ("gemini_sse", "gemini_array"):
            for candidate in payload.get("candidates", []):
                texts += [p.get("text", "") for p in candidate["content"]["parts"]]
        else:
            texts.append(payload.get("message", {}).get("content", ""))
    return "".join(texts)


def is_terminal(kind: str, items: list[tuple[str, object]]) -> bool:
    """Whether the provider's own end-of-answer marker is the last item."""
    if not items:
        return False
    name, payload = items[-1]
    if kind == "openai_chat":
        return payload == "[DONE]"
    if kind == "openai_responses":
        return name in ("response.completed", "response.incomplete")
    if kind == "anthropic":
        return name == "message_stop"
    if kind == "ollama":
        return isinstance(payload, dict) and payload.get("done") is True
    assert isinstance(payload, dict)
    return any("finishReason" in c for c in payload.get("candidates", []))


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with open_emulator(length=LENGTH) as emulator:
        yield emulator


# ================================================================ the text, without sockets


def test_same_prompt_gives_the_same_answer() -> None:
    assert answer_for(PROMPT) == answer_for(PROMPT)


def test_different_prompts_give_different_answers() -> None:
    assert answer_for(PROMPT) != answer_for("What is the capital of Japan?")


def test_answer_has_heading_list_code_block_emoji_and_cjk() -> None:
    text = answer_for(PROMPT)
    assert re.search(r"^## \S", text, re.M)
    assert re.search(r"^- \S", text, re.M)
    assert re.search(r"^```\w+\n.+\n```$", text, re.M | re.S)
    assert re.search("[\U0001f300-\U0001faff]", text)
    assert re.search("[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", text)


@pytest.mark.parametrize("length", [0, 400, 5000])
def test_answer_has_at_least_the_requested_length(length: int) -> None:
    assert len(answer_for(PROMPT, length=length)) >= length


@given(st.text(max_size=300), st.text(max_size=10))
def test_any_text_splits_into_pieces_that_join_back(text: str, seed: str) -> None:
    pieces = split_tokens(text, seed=seed)
    assert "".join(pieces) == text
    assert all(1 <= len(p) <= 4 for p in pieces)


def test_splitting_the_same_text_twice_gives_the_same_pieces() -> None:
    text = answer_for(PROMPT)
    assert split_tokens(text, seed="a") == split_tokens(text, seed="a")


def test_continuation_accepts_a_prefix_with_trailing_whitespace_stripped() -> None:
    answer = answer_for(PROMPT)
    cut = answer.index("\n\n") + 2  # the prefix ends in whitespace; clients strip it
    assert continuation_offset(answer, answer[:cut].rstrip()) == cut - 2
    assert continuation_offset(answer, "Something else entirely") is None


# ================================================================ fault strings


def test_parse_faults_reads_every_kind_of_value() -> None:
    faults = parse_faults(
        "ttft=0.5; pace=0.02; split=1-7; ping=15; status=429; retry_after=2;"
        " drop_after_tokens=40; error_type=rate_limit; eol=CRLF; fail_first=2"
    )
    assert (faults.ttft, faults.pace, faults.split, faults.ping) == (0.5, 0.02, (1, 7), 15.0)
    assert (faults.status, faults.retry_after, faults.drop_after_tokens) == (429, 2.0, 40)
    assert (faults.error_type, faults.eol, faults.fail_first) == ("rate_limit", "crlf", 2)


def test_fault_text_form_round_trips() -> None:
    text = "ttft=0.5; split=3; status=503; drop_after_bytes=100"
    assert str(parse_faults(text)) == text
    assert parse_faults(str(parse_faults(text))) == parse_faults(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus=1", "unknown key 'bogus'; known keys: ttft"),
        ("ttft=soon", "ttft='soon' is not a number of seconds"),
        ("split=7-1", "need 1 <= A <= B"),
        ("status=200", "must be an HTTP error status"),
        ("pace", "'pace' needs a value"),
        ("ttft=1; ttft=2", "'ttft' is given twice"),
        ("length=2000000", "exceeds the limit 1000000"),
    ],
)
def test_bad_fault_string_says_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_faults(text)
    assert info.value.kind == "bad_fault"
    assert needle in str(info.value)


def test_header_faults_override_server_faults_key_by_key() -> None:
    merged = parse_faults("ttft=1; pace=0.5").merged(parse_faults("pace=0; split=2"))
    assert merged == Faults(ttft=1.0, pace=0.0, split=(2, 2))


# ================================================================ request parsing, without sockets

FIELD_NAMES = ["model", "messages", "role", "content", "text", "type", "stream", "tools", "parts"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.sampled_from(["user", "model", ""]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every place in a JSON value where a subtree can be swapped out."""
    out = [prefix]
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        out += _paths(child, (*prefix, key))
    return out


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[str, object]:
    """A realistic request of some dialect with one to three subtrees replaced or removed."""
    kind = draw(st.sampled_from(ALL))
    original = request_body(
        kind,
        draw(st.sampled_from([PROMPT, WEATHER, "Continue", ""])),
        assistant=draw(st.none() | st.sampled_from(["## Explain", "Hello"])),
        then_user=draw(st.none() | st.just("Continue where you left off.")),
        tools=draw(st.booleans()),
        max_tokens=draw(st.none() | st.integers(0, 5)),
    )
    body: object = json.loads(json.dumps(original))  # a deep copy: mutate this one only
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        replacement = draw(json_values)
        if not path:
            body = replacement
            continue
        parent: Any = body
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return PATHS[kind], body


@given(mutated_requests())
def test_any_request_body_is_answered_or_rejected_as_invalid_request(
    request: tuple[str, object],
) -> None:
    target, body = request
    rt = route(*target.partition("?")[::2])
    assert rt is not None
    try:
        conv = parse_request(body, rt)
    except RemoteProtocolError as exc:
        assert exc.kind == "invalid_request"
        return
    plan = plan_answer(conv, length=50)
    writer = writer_for(conv, plan, ids=random.Random(0), now=1.7e9)
    assert all(frame.data for frame in writer.frames())


def test_emulator_docstring_examples_run() -> None:
    for module in (text_module, faults_module, conversation_module, wire_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__


# ================================================================ dialects on the wire


CONTENT_TYPES = {
    "openai_chat": "text/event-stream",
    "openai_responses": "text/event-stream",
    "anthropic": "text/event-stream",
    "gemini_sse": "text/event-stream",
    "gemini_array": "application/json",
    "ollama": "application/x-ndjson",
}


@pytest.mark.parametrize("kind", ALL)
async def test_each_dialect_answers_with_its_content_type(emu: Emulator, kind: str) -> None:
    reply = await post(emu, kind, request_body(kind))
    assert reply.status == 200
    assert reply.headers["content-type"].startswith(CONTENT_TYPES[kind])
    assert reply.complete


@pytest.mark.parametrize("kind", ALL)
async def test_each_dialect_streams_the_deterministic_answer_to_its_end_marker(
    emu: Emulator, kind: str
) -> None:
    reply = await post(emu, kind, request_body(kind))
    items = decode(kind, reply.body)
    assert text_of(kind, items) == answer_for(PROMPT, length=LENGTH)
    assert is_terminal(kind, items)


async def test_openai_chat_sends_role_first_and_done_last(emu: Emulator) -> None:
    items = decode(
        "openai_chat", (await post(emu, "openai_chat", request_body("openai_chat"))).body
    )
    first = items[0][1]
    assert isinstance(first, dict)
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert items[-1] == ("message", "[DONE]")
    finish = items[-2][1]
    assert isinstance(finish, dict)
    assert finish["choices"][0]["finish_reason"] == "stop"


async def test_openai_chat_sends_a_usage_chunk_when_include_usage(emu: Emulator) -> None:
    body = request_body("openai_chat") | {"stream_options": {"include_usage": True}}
    items = decode("openai_chat", (await post(emu, "openai_chat", body)).body)
    usage_chunk = items[-2][1]
    assert isinstance(usage_chunk, dict)
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == len(answer_tokens(PROMPT, length=LENGTH))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_openai_responses_numbers_every_event_from_zero(emu: Emulator) -> None:
    items = decode(
        "openai_responses",
        (await post(emu, "openai_responses", request_body("openai_responses"))).body,
    )
    names = [name for name, _ in items]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-1] == "response.completed"
    assert [p["sequence_number"] for _, p in items] == list(range(len(items)))  # type: ignore[index]
    assert all(p["type"] == name for name, p in items)  # type: ignore[index]


async def test_anthropic_sends_message_start_ping_deltas_and_message_stop(emu: Emulator) -> None:
    items = decode("anthropic", (await post(emu, "anthropic", request_body("anthropic"))).body)
    names = [name for name, _ in items]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = items[-2][1]
    assert isinstance(delta, dict)
    assert delta["delta"]["stop_reason"] == "end_turn"


async def test_gemini_sse_events_end_lines_with_crlf(emu: Emulator) -> None:
    body = (await post(emu, GEMINI_SSE, request_body("gemini_sse"))).body
    assert body.startswith(b"data: {")
    assert body.count(b"\r\n\r\n") == len(decode("gemini_sse", body))
    assert b"\n" not in body.replace(b"\r\n", b"")


async def test_gemini_without_alt_sse_streams_one_json_array(emu: Emulator) -> None:
    body = (await post(emu, GEMINI_ARRAY, request_body("gemini_array"))).body
    assert body.startswith(b"[{\n")
    assert b"\n,\r\n{" in body
    assert body.endswith(b"\n]")
    assert isinstance(json.loads(body), list)


async def test_ollama_streams_ndjson_ending_with_done_true(emu: Emulator) -> None:
    items = decode("ollama", (await post(emu, "ollama", request_body("ollama"))).body)
    assert all(p["done"] is False for _, p in items[:-1])  # type: ignore[index]
    last = items[-1][1]
    assert isinstance(last, dict)
    assert (last["done"], last["done_reason"]) == (True, "stop")
    assert last["eval_count"] == len(items) - 1


LENGTH_REASONS = {
    "openai_chat": ("choices", "length"),
    "openai_responses": ("status", "incomplete"),
    "anthropic": ("stop_reason", "max_tokens"),
    "gemini_sse": ("finishReason", "MAX_TOKENS"),
    "gemini_array": ("finishReason", "MAX_TOKENS"),
    "ollama": ("done_reason", "length"),
}


@pytest.mark.parametrize("kind", ALL)
async def test_max_tokens_cuts_the_answer_with_the_dialects_length_reason(
    emu: Emulator, kind: str
) -> None:
    reply = await post(emu, kind, request_body(kind, max_tokens=7))
    items = decode(kind, reply.body)
    expected = "".join(answer_tokens(PROMPT, length=LENGTH)[:7])
    assert text_of(kind, items) == expected
    assert LENGTH_REASONS[kind][1] in reply.body.decode()
    assert emu.requests[-1].tokens_sent == 7


WEATHER = "What's the weather like in Paris and in Tokyo right now?"


def tool_calls_of(
    kind: str, items: list[tuple[str, object]]
) -> list[tuple[str, dict[str, object]]]:
    """(tool name, parsed arguments) for each tool call in decoded items."""
    calls: dict[int, list[str]] = {}
    whole: list[tuple[str, dict[str, object]]] = []
    for name, p in items:
        if not isinstance(p, dict):
            continue
        if kind == "openai_chat":
            for choice in p["choices"]:
                for tc in choice["delta"].get("tool_calls") or []:
                    entry = calls.setdefault(tc["index"], ["", ""])
                    entry[0] += tc["function"].get("name", "")
                    entry[1] += tc["function"].get("arguments", "")
        elif kind == "openai_responses" and name == "response.output_item.done":
            whole.append((p["item"]["name"], json.loads(p["item"]["arguments"])))
        elif kind == "anthropic" and name == "content_block_start":
            calls[p["index"]] = [p["content_block"]["name"], ""]
        elif kind == "anthropic" and name == "content_block_delta":
            calls[p["index"]][1] += p["delta"]["partial_json"]
        elif kind.startswith("gemini"):
            for c in p["candidates"]:
                for part in c["content"]["parts"]:
                    if "functionCall" in part:
                        whole.append((part["functionCall"]["name"], part["functionCall"]["args"]))
        elif kind == "ollama":
            for tc in p["message"].get("tool_calls", []):
                whole.append((tc["function"]["name"], tc["function"]["arguments"]))
    return whole + [(n, json.loads(a)) for _, (n, a) in sorted(calls.items())]


@pytest.mark.parametrize("kind", ALL)
async def test_weather_prompt_with_tools_makes_one_tool_call_per_city(
    emu: Emulator, kind: str
) -> None:
    reply = await post(emu, kind, request_body(kind, WEATHER, tools=True))
    calls = tool_calls_of(kind, decode(kind, reply.body))
    assert calls == [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Tokyo"})]
    assert emu.requests[-1].tool_calls == ("get_weather", "get_weather")


TOOL_FINISH = {
    "openai_chat": '"finish_reason":"tool_calls"',
    "openai_responses": '"type":"response.completed"',
    "anthropic": '"stop_reason":"tool_use"',
    "ollama": '"done_reason":"stop"',
}


@pytest.mark.parametrize("kind", list(TOOL_FINISH))
async def test_tool_calls_finish_with_the_dialects_tool_reason(emu: Emulator, kind: str) -> None:
    reply = await post(emu, kind, request_body(kind, WEATHER, tools=True))
    assert TOOL_FINISH[kind] in reply.body.decode()


async def test_a_tool_result_turn_gets_a_text_answer(emu: Emulator) -> None:
    body = request_body("openai_chat", WEATHER, tools=True)
    body["messages"] += [  # type: ignore[operator]
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 18}'},
    ]
    items = decode("openai_chat", (await post(emu, "openai_chat", body)).body)
    assert text_of("openai_chat", items) == answer_for(WEATHER, length=LENGTH)


async def test_weather_prompt_without_tools_gets_text(emu: Emulator) -> None:
    items = decode(
        "anthropic", (await post(emu, "anthropic", request_body("anthropic", WEATHER))).body
    )
    assert text_of("anthropic", items) == answer_for(WEATHER, length=LENGTH)


# ================================================================ requests the emulator refuses


async def test_unknown_path_is_404_naming_the_endpoints(emu: Emulator) -> None:
    reply = await post(emu, "/v1/completions", {"model": "gpt-3.5-turbo-instruct"})
    assert reply.status == 404
    assert "/v1/chat/completions" in json.loads(reply.body)["error"]["message"]
    assert emu.requests[-1].outcome is Outcome.REJECTED


async def test_non_streaming_request_is_400_in_the_providers_error_shape(emu: Emulator) -> None:
    body = request_body("anthropic") | {"stream": False}
    reply = await post(emu, "anthropic", body)
    assert reply.status == 400
    error = json.loads(reply.body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "streaming requests only" in error["error"]["message"]


async def test_anthropic_prefill_ending_in_whitespace_is_rejected_like_the_real_api(
    emu: Emulator,
) -> None:
    body = request_body("anthropic", assistant="## Explain \n")
    reply = await post(emu, "anthropic", body)
    assert reply.status == 400
    assert "cannot end with trailing whitespace" in reply.body.decode()


async def test_bad_fault_header_is_400_naming_the_key(emu: Emulator) -> None:
    reply = await post(emu, "openai_chat", request_body("openai_chat"), fault="dorp_after_tokens=3")
    assert reply.status == 400
    assert "unknown key 'dorp_after_tokens'" in json.loads(reply.body)["error"]["message"]


async def test_body_over_the_limit_is_413() -> None:
    async with open_emulator(max_body_bytes=1000) as small:
        reply = await post(small, "openai_chat", request_body("openai_chat", "x" * 2000))
    assert reply.status == 413
    error = json.loads(reply.body)["error"]
    assert "max_body_bytes" in error["message"]
    assert small.requests[-1].status == 413


# ================================================================ resuming a cut-off answer


async def test_anthropic_prefill_continues_the_same_answer(emu: Emulator) -> None:
    full = answer_for(PROMPT, length=LENGTH)
    partial = full[:150].rstrip()
    reply = await post(emu, "anthropic", request_body("anthropic", assistant=partial))
    rest = text_of("anthropic", decode("anthropic", reply.body))
    assert partial + rest == full
    assert emu.requests[-1].resumed_from == len(partial)


@pytest.mark.parametrize("kind", ["openai_chat", "openai_responses", "ollama", "gemini_sse"])
async def test_continue_instruction_continues_after_the_partial_text(
    emu: Emulator, kind: str
) -> None:
    full = answer_for(PROMPT, length=LENGTH)
    partial = full[:123]
    body = request_body(
        kind, assistant=partial, then_user="Continue exactly where you left off, no repetition."
    )
    rest = text_of(kind, decode(kind, (await post(emu, kind, body)).body))
    assert partial + rest == full


async def test_repeat_fault_makes_the_continuation_repeat_the_partial_tail(emu: Emulator) -> None:
    full = answer_for(PROMPT, length=LENGTH)
    partial = full[:200].rstrip()
    body = request_body("anthropic", assistant=partial)
    reply = await post(emu, "anthropic", body, fault="repeat=25")
    rest = text_of("anthropic", decode("anthropic", reply.body))
    assert rest == partial[-25:] + full[len(partial) :]


async def test_resume_after_a_drop_is_lossless(emu: Emulator) -> None:
    first = await post(emu, "anthropic", request_body("anthropic"), fault="drop_after_tokens=30")
    assert not first.complete
    # A client keeps what it received; events cut mid-way are simply not decoded.
    sse = SSEDecoder()
    events = [e for e in sse.feed(first.body) if isinstance(e, SSEEvent)]
    received = text_of("anthropic", [(e.event, json.loads(e.data)) for e in events])
    assert received
    second = await post(emu, "anthropic", request_body("anthropic", assistant=received.rstrip()))
    rest = text_of("anthropic", decode("anthropic", second.body))
    assert received.rstrip() + rest == answer_for(PROMPT, length=LENGTH)


# ================================================================ faults: HTTP errors


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("openai_chat", 429, lambda e: e["error"]["code"] == "rate_limit_exceeded"),
        ("openai_responses", 500, lambda e: e["error"]["type"] == "server_error"),
        ("anthropic", 529, lambda e: e["error"]["type"] == "overloaded_error"),
        ("anthropic", 401, lambda e: e["error"]["type"] == "authentication_error"),
        ("gemini_sse", 503, lambda e: e["error"]["status"] == "UNAVAILABLE"),
        ("gemini_array", 429, lambda e: e["error"]["status"] == "RESOURCE_EXHAUSTED"),
        ("ollama", 503, lambda e: "server busy" in e["error"]),
    ],
)
async def test_status_fault_answers_with_the_providers_error_body(
    emu: Emulator, kind: str, status: int, check: Callable[[Any], bool]
) -> None:
    reply = await post(emu, kind, request_body(kind), fault=f"status={status}")
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    assert check(json.loads(reply.body))
    assert emu.requests[-1].outcome is Outcome.HTTP_ERROR


async def test_rate_limit_error_carries_retry_after(emu: Emulator) -> None:
    reply = await post(
        emu, "openai_chat", request_body("openai_chat"), fault="status=429; retry_after=2.5"
    )
    assert (reply.headers["retry-after"], reply.headers["retry-after-ms"]) == ("3", "2500")


async def test_fail_first_fails_that_many_times_then_succeeds(emu: Emulator) -> None:
    statuses = []
    for _ in range(3):
        reply = await post(emu, "anthropic", request_body("anthropic"), fault="fail_first=2")
        statuses.append(reply.status)
    assert statuses == [529, 529, 200]


async def test_fail_first_counts_per_request_key(emu: Emulator) -> None:
    async def attempt(key: str) -> int:
        client = await Client.connect(emu)
        headers = [(FAULT_HEADER, "fail_first=1; status=500"), (REQUEST_KEY_HEADER, key)]
        reply = await client.send("/v1/chat/completions", request_body("openai_chat"), headers)
        await client.read_all(reply)
        await client.aclose()
        return reply.status

    assert [await attempt("a"), await attempt("b"), await attempt("a")] == [500, 500, 200]


async def test_fail_first_applies_any_failure_then_serves_clean(emu: Emulator) -> None:
    fault = "fail_first=1; drop_after_tokens=5"
    first = await post(emu, "ollama", request_body("ollama"), fault=fault)
    second = await post(emu, "ollama", request_body("ollama"), fault=fault)
    assert (first.complete, second.complete) == (False, True)
    assert [r.outcome for r in emu.requests] == [Outcome.DROPPED, Outcome.COMPLETED]


# ================================================================ faults: mid-stream


MIDSTREAM_ERRORS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "openai_chat": ("message", lambda p: p["error"]["type"] == "server_error"),
    "openai_responses": ("error", lambda p: p["type"] == "error" and p["code"] == "server_error"),
    "anthropic": ("error", lambda p: p["error"]["type"] == "overloaded_error"),
    "gemini_sse": ("message", lambda p: p["error"]["status"] == "UNAVAILABLE"),
    "gemini_array": ("", lambda p: p["error"]["code"] == 503),
    "ollama": ("", lambda p: p["error"].startswith("server busy")),
}


@pytest.mark.parametrize("kind", ALL)
async def test_error_after_sends_the_providers_error_event_after_n_tokens(
    emu: Emulator, kind: str
) -> None:
    reply = await post(emu, kind, request_body(kind), fault="error_after=5")
    items = decode(kind, reply.body)
    name, payload = items[-1]
    event_name, check = MIDSTREAM_ERRORS[kind]
    assert name == event_name
    assert check(payload)
    expected = "".join(answer_tokens(PROMPT, length=LENGTH)[:5])
    assert text_of(kind, items[:-1]) == expected
    assert reply.complete  # the provider said it: the HTTP body itself ends properly
    assert emu.requests[-1].outcome is Outcome.ERROR_EVENT


async def test_error_type_picks_the_providers_error(emu: Emulator) -> None:
    fault = "error_after=2; error_type=rate_limit"
    reply = await post(emu, "anthropic", request_body("anthropic"), fault=fault)
    name, payload = decode("anthropic", reply.body)[-1]
    assert name == "error"
    assert payload == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Number of request tokens has exceeded your per-minute rate limit",
        },
    }


async def test_responses_error_event_continues_the_sequence_numbers(emu: Emulator) -> None:
    reply = await post(
        emu, "openai_responses", request_body("openai_responses"), fault="error_after=3"
    )
    numbers = [p["sequence_number"] for _, p in decode("openai_responses", reply.body)]  # type: ignore[index]
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("kind", ALL)
async def test_drop_after_tokens_closes_without_the_end_marker(emu: Emulator, kind: str) -> None:
    reply = await post(emu, kind, request_body(kind), fault="drop_after_tokens=12")
    assert not reply.complete  # no chunked terminator: the connection just closed
    decoder = SSEDecoder() if kind not in ("ollama", "gemini_array") else None
    if decoder is not None:
        items = [
            (e.event, json.loads(e.data))
            for e in decoder.feed(reply.body)
            if isinstance(e, SSEEvent)
        ]
        assert not is_terminal(kind, items)
    served = emu.requests[-1]
    assert (served.outcome, served.tokens_sent) == (Outcome.DROPPED, 12)


async def test_drop_at_the_token_count_drops_just_before_the_end_marker(emu: Emulator) -> None:
    tokens = len(answer_tokens(PROMPT, length=LENGTH))
    reply = await post(
        emu, "openai_chat", request_body("openai_chat"), fault="drop_after_tokens=100000"
    )
    items = decode("openai_chat", reply.body)
    assert text_of("openai_chat", items) == answer_for(PROMPT, length=LENGTH)
    assert b"[DONE]" not in reply.body
    assert b'"finish_reason":"stop"' not in reply.body
    assert emu.requests[-1].tokens_sent == tokens


async def test_drop_after_bytes_cuts_the_body_at_that_byte(emu: Emulator) -> None:
    reply = await post(
        emu, "openai_chat", request_body("openai_chat"), fault="drop_after_bytes=777"
    )
    assert len(reply.body) == 777
    assert not reply.complete
    assert emu.requests[-1].bytes_sent == 777


@pytest.mark.parametrize("kind", ALL)
async def test_invalid_json_after_makes_the_decoder_fail_there(emu: Emulator, kind: str) -> None:
    reply = await post(emu, kind, request_body(kind), fault="invalid_json_after=4")
    with pytest.raises((RemoteProtocolError, ValueError)):
        decode(kind, reply.body)


async def test_invalid_json_comes_after_exactly_n_good_tokens(emu: Emulator) -> None:
    reply = await post(emu, "ollama", request_body("ollama"), fault="invalid_json_after=4")
    lines = reply.body.split(b"\n")
    assert [json.loads(line)["message"]["content"] for line in lines[:4]]
    with pytest.raises(ValueError):
        json.loads(lines[4])


@pytest.mark.parametrize("kind", ["openai_chat", "anthropic", "gemini_array", "ollama"])
async def test_split_writes_the_body_in_pieces_within_the_range(emu: Emulator, kind: str) -> None:
    reply = await post(emu, kind, request_body(kind, max_tokens=40), fault="split=1-7")
    sizes = [len(data) for _, data in reply.pieces]
    assert max(sizes) <= 7
    expected = "".join(answer_tokens(PROMPT, length=LENGTH)[:40])
    assert text_of(kind, decode(kind, reply.body)) == expected


async def test_split_lands_inside_utf8_sequences_and_crlf(emu: Emulator) -> None:
    body = request_body("gemini_sse", "東京の天気は？ Réponds en français 🙂", max_tokens=25)
    reply = await post(emu, GEMINI_SSE, body, fault="split=1-3")
    pieces = [data for _, data in reply.pieces]
    inside_utf8 = [p for p in pieces if 0x80 <= p[0] < 0xC0]  # starts with a continuation byte
    inside_crlf = [
        i for i in range(1, len(pieces)) if pieces[i - 1][-1:] == b"\r" and pieces[i][:1] == b"\n"
    ]
    assert inside_utf8
    assert inside_crlf


async def test_eol_fault_changes_sse_line_endings(emu: Emulator) -> None:
    reply = await post(emu, "openai_chat", request_body("openai_chat"), fault="eol=cr")
    assert b"\n" not in reply.body
    assert text_of("openai_chat", decode("openai_chat", reply.body)) == answer_for(
        PROMPT, length=LENGTH
    )


# ================================================================ faults: time (MockClock)


async def test_ttft_delays_the_first_token(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await post(emu, "anthropic", request_body("anthropic"), fault="ttft=2.5")
    first_token = next(t for t, data in reply.pieces if b"text_delta" in data)
    assert first_token - reply.sent_at == pytest.approx(2.5)
    assert reply.pieces[0][0] - reply.sent_at == pytest.approx(0.0)  # message_start is at once


async def test_pace_spaces_the_tokens(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await post(emu, "ollama", request_body("ollama", max_tokens=5), fault="pace=0.25")
    times = [t - reply.sent_at for t, data in reply.pieces if b'"done":false' in data]
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


async def test_stall_sends_nothing_for_that_long(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await post(
        emu, "openai_chat", request_body("openai_chat"), fault="stall=30; stall_after=3"
    )
    times = [t for t, _ in reply.pieces]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(30.0)
    assert sorted(gaps)[-2] == pytest.approx(0.0)


async def test_pings_keep_a_stalled_stream_alive(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await post(
        emu, "openai_chat", request_body("openai_chat"), fault="stall=10; stall_after=2; ping=3"
    )
    comments = [t - reply.sent_at for t, data in reply.pieces if data.startswith(b":")]
    assert comments == pytest.approx([3.0, 6.0, 9.0])
    items = decode("openai_chat", reply.body)
    assert [text for name, text in items if name == ":"] == ["keep-alive"] * 3


async def test_anthropic_keepalive_is_a_ping_event(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await post(emu, "anthropic", request_body("anthropic"), fault="ttft=7; ping=2")
    names = [name for name, _ in decode("anthropic", reply.body)]
    assert names[:6] == ["message_start", "content_block_start", "ping", "ping", "ping", "ping"]


@pytest.mark.parametrize("kind", ["ollama", "gemini_array"])
async def test_bodies_without_a_comment_syntax_get_no_keepalives(
    emu: Emulator, kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    reply = await post(emu, kind, request_body(kind, max_tokens=3), fault="ttft=10; ping=1")
    items = decode(kind, reply.body)
    assert len(items) == 4  # three tokens and the final object, nothing else
    assert reply.pieces[-1][0] - reply.sent_at == pytest.approx(10.0)


# ================================================================ disconnects and the log


async def test_client_disconnect_stops_generation_at_once(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    client = await Client.connect(emu)
    reply = await client.send(
        "/v1/chat/completions", request_body("openai_chat"), [(FAULT_HEADER, "pace=1")]
    )
    while sum(b'"content"' in data for _, data in reply.pieces) < 6:  # role chunk + 5 tokens
        assert await client.read_piece(reply)
    await client.aclose()
    closed_at = trio.current_time()
    (served,) = await emu.wait_for_requests(1)
    assert served.outcome is Outcome.CLIENT_DISCONNECTED
    assert served.client_disconnected
    assert served.tokens_sent == 5
    assert served.finished_at == pytest.approx(closed_at)


async def test_disconnect_during_a_stall_is_noticed_without_waiting_it_out(
    emu: Emulator, autojump_clock: trio.testing.MockClock
) -> None:
    client = await Client.connect(emu)
    reply = await client.send(
        "/v1/messages", request_body("anthropic"), [(FAULT_HEADER, "stall=3600; stall_after=2")]
    )
    while sum(b"text_delta" in data for _, data in reply.pieces) < 2:
        assert await client.read_piece(reply)
    await client.aclose()
    (served,) = await emu.wait_for_requests(1)
    assert served.finished_at - served.started_at < 1.0
    assert (served.outcome, served.tokens_sent) == (Outcome.CLIENT_DISCONNECTED, 2)


async def test_log_records_what_was_served(emu: Emulator) -> None:
    await post(emu, "openai_chat", request_body("openai_chat", max_tokens=9), fault="pace=0")
    (served,) = emu.requests
    assert served.path == "/v1/chat/completions"
    assert served.dialect is Dialect.OPENAI_CHAT
    assert served.body == request_body("openai_chat", max_tokens=9)
    assert served.prompt == PROMPT
    assert served.faults == Faults(pace=0.0)
    assert (served.status, served.outcome, served.tokens_sent) == (200, Outcome.COMPLETED, 9)
    assert served.text == answer_for(PROMPT, length=LENGTH)[: len(served.text)]


async def test_log_redacts_credentials(emu: Emulator) -> None:
    client = await Client.connect(emu)
    secret_headers = [("x-api-key", "sk-ant-secret"), ("x-goog-api-key", "AIza-secret")]
    target = GEMINI_SSE + "&key=AIza-query-secret"
    reply = await client.send(target, request_body("gemini_sse"), secret_headers)
    await client.read_all(reply)
    await client.aclose()
    served = emu.requests[-1]
    assert "secret" not in repr(served)
    assert dict(served.headers)["x-api-key"] == "<redacted>"
    assert served.target.endswith("key=<redacted>")


async def test_one_connection_serves_requests_one_after_another(emu: Emulator) -> None:
    client = await Client.connect(emu)
    replies = []
    for kind in ("openai_chat", "anthropic"):
        reply = await client.send(PATHS[kind], request_body(kind, max_tokens=3))
        replies.append(await client.read_all(reply))
        client.reuse()
    await client.aclose()
    assert [r.complete for r in replies] == [True, True]
    assert [r.dialect for r in emu.requests] == [Dialect.OPENAI_CHAT, Dialect.ANTHROPIC]


async def test_length_fault_sets_the_answer_length(emu: Emulator) -> None:
    reply = await post(emu, "ollama", request_body("ollama"), fault="length=2000")
    text = text_of("ollama", decode("ollama", reply.body))
    assert text == answer_for(PROMPT, length=2000)
    assert len(text) >= 2000


async def test_serve_forever_serves_until_cancelled() -> None:
    async with trio.open_nursery() as nursery:
        emulator = await nursery.start(functools.partial(serve_forever, length=100))
        reply = await post(emulator, "openai_chat", request_body("openai_chat"))
        nursery.cancel_scope.cancel()
    assert reply.complete
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", emulator.port)


async def test_server_faults_apply_to_every_request() -> None:
    async with open_emulator(faults="status=503") as emulator:
        replies = [
            await post(emulator, kind, request_body(kind)) for kind in ("openai_chat", "ollama")
        ]
    assert [r.status for r in replies] == [503, 503]


# ================================================================ the official SDKs read it
# The emulator runs in a thread of its own (trio.run there); the SDKs are synchronous.


@pytest.fixture
def threaded_emulator() -> Iterator[Emulator]:
    ready: queue.Queue[tuple[Emulator, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    async def serve() -> None:
        with trio.CancelScope() as scope:
            async with open_emulator(length=LENGTH) as emulator:
                ready.put((emulator, trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    emulator, token, scope = ready.get(timeout=10)
    yield emulator
    trio.from_thread.run_sync(scope.cancel, trio_token=token)
    thread.join(timeout=10)


def test_openai_sdk_reads_the_chat_stream_and_its_usage(threaded_emulator: Emulator) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=threaded_emulator.base_url + "/v1", api_key="sk-test")
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_for(PROMPT, length=LENGTH)
    assert chunks[-1].usage.completion_tokens == len(answer_tokens(PROMPT, length=LENGTH))


def test_openai_sdk_assembles_the_responses_stream_and_tool_calls(
    threaded_emulator: Emulator,
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=threaded_emulator.base_url + "/v1", api_key="sk-test")
    with client.responses.stream(model="gpt-4.1-mini", input=PROMPT) as stream:
        final = stream.get_final_response()
    assert final.output_text == answer_for(PROMPT, length=LENGTH)
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}]
    with client.responses.stream(model="gpt-4.1-mini", input=WEATHER, tools=tools) as stream:
        calls = stream.get_final_response().output
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"location": "Paris"}),
        ("get_weather", {"location": "Tokyo"}),
    ]


def test_openai_sdk_retries_through_fail_first(threaded_emulator: Emulator) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(
        base_url=threaded_emulator.base_url + "/v1", api_key="sk-test", max_retries=2
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers={FAULT_HEADER: "fail_first=2; status=429; retry_after=0.01"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == answer_for(PROMPT, length=LENGTH)
    assert [r.status for r in threaded_emulator.requests] == [429, 429, 200]


def test_anthropic_sdk_reads_the_stream_tool_calls_and_errors(threaded_emulator: Emulator) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(
        base_url=threaded_emulator.base_url, api_key="sk-ant-test", max_retries=0
    )
    messages = [{"role": "user", "content": PROMPT}]
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=1024, messages=messages) as s:
        assert "".join(s.text_stream) == answer_for(PROMPT, length=LENGTH)
    tools = [{"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}]
    weather = [{"role": "user", "content": WEATHER}]
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=1024, messages=weather, tools=tools
    ) as s:
        message = s.get_final_message()
    assert message.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in message.content] == [
        ("get_weather", {"location": "Paris"}),
        ("get_weather", {"location": "Tokyo"}),
    ]
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            messages=messages,
            stream=True,
            extra_headers={FAULT_HEADER: "status=529"},
        )
    assert info.value.status_code == 529


# ================================================================ the CLI


def _mock_command(*args: str) -> list[str]:
    # The subcommand as cli/main.py will wire it: add_parser() + run().
    code = (
        "import argparse, sys\n"
        "from streamcore.cli import mock\n"
        "parser = argparse.ArgumentParser(prog='streamcore')\n"
        "mock.add_parser(parser.add_subparsers(dest='command'))\n"
        "sys.exit(mock.run(parser.parse_args(sys.argv[1:])))\n"
    )
    return [sys.executable, "-P", "-c", code, "mock", *args]


@pytest.mark.slow
def test_mock_command_prints_its_url_serves_and_exits_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        _mock_command("--port", "0", "--fault", "ttft=0", "--length", "100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(r"streamcore mock: serving on (http://127\.0\.0\.1:(\d+))\n", first)
        assert match, first
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(2)), timeout=10)
        conn.request("POST", "/api/chat", json.dumps(request_body("ollama", "Hi")))
        response = conn.getresponse()
        lines = response.read().splitlines()
        assert json.loads(lines[-1])["done"] is True
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out.rstrip().endswith("streamcore mock: stopped")


@pytest.mark.slow
def test_mock_command_rejects_a_bad_fault_with_exit_code_2() -> None:
    result = subprocess.run(
        _mock_command("--fault", "ttft=-1"), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "ttft='-1'" in result.stderr
