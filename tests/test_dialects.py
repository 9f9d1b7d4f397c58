"""What every provider dialect promises, checked once for all of them.

Each test runs over (dialect, transcript) pairs: the dialects are the registry
names of :mod:`streamcore.providers` (Gemini twice, once per framing) and the
transcripts are the real response bodies in ``tests/transcripts/<dialect>/``.
What only one dialect does stays in its own file (``test_anthropic.py``, ...).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from _cuts import pieces
from hypothesis import given
from hypothesis import strategies as st

from streamcore import LocalProtocolError, RemoteProtocolError
from streamcore.events import Event, Finish, ProviderError, StreamEnd, TextDelta
from streamcore.providers import DIALECTS, DialectDecoder, decoder_for
from streamcore.request import ChatRequest, HTTPRequest, Message, Tool, ToolCall

TRANSCRIPTS = Path(__file__).parent / "transcripts"


@dataclass(frozen=True)
class Dialect:
    name: str
    """The registry name (``decoder_for(name)``)."""
    folder: str
    complete: tuple[str, ...]
    """Transcripts that end with the provider's terminal marker."""
    other: tuple[str, ...]
    """Transcripts that end otherwise (an error, a drop) but decode without raising."""
    cut_can_complete: bool
    """Whether cutting only the trailing framing bytes still completes the stream."""


DIALECT_TABLE = (
    Dialect(
        "anthropic",
        "anthropic",
        ("text_emoji_cjk", "tool_use_parallel", "thinking", "max_tokens"),
        ("error_overloaded", "dropped"),
        cut_can_complete=True,
    ),
    Dialect(
        "gemini",
        "gemini",
        (
            "text_emoji_cjk",
            "function_calls_parallel",
            "thinking",
            "max_tokens",
            "blocked_prompt",
            "two_candidates",
        ),
        ("error_unavailable", "dropped"),
        cut_can_complete=True,
    ),
    Dialect(
        "gemini-json-array",
        "gemini",
        ("array_text",),
        ("array_unclosed", "array_error"),
        cut_can_complete=False,
    ),
    Dialect(
        "ollama",
        "ollama",
        ("text_emoji_cjk", "tool_calls", "thinking", "length"),
        ("error", "dropped"),
        cut_can_complete=True,
    ),
    Dialect(
        "openai-chat",
        "openai_chat",
        (
            "text_emoji_cjk",
            "tool_calls_parallel",
            "length",
            "refusal",
            "n2_choices",
            "deepseek_reasoning",
            "openrouter_reasoning",
            "vllm_continuous_usage",
            "gemini_compat_tools",
            "azure_content_filter",
        ),
        (
            "error_midstream",
            "dropped",
            "finish_without_done",
            "invalid_json",
            "tool_fragment_without_start",
        ),
        cut_can_complete=False,
    ),
    Dialect(
        "openai-responses",
        "openai_responses",
        (
            "text_emoji_cjk",
            "function_calls_parallel",
            "reasoning_summary",
            "incomplete_max_tokens",
            "failed",
            "refusal",
            "web_search",
        ),
        ("error_event", "dropped", "invalid_json", "delta_without_item", "background_cut"),
        cut_can_complete=False,
    ),
)
BY_NAME = {d.name: d for d in DIALECT_TABLE}
ALL_TRANSCRIPTS = [(d.name, t) for d in DIALECT_TABLE for t in (*d.complete, *d.other)]
COMPLETE_TRANSCRIPTS = [(d.name, t) for d in DIALECT_TABLE for t in d.complete]


def body(dialect: str, transcript: str) -> bytes:
    return (TRANSCRIPTS / BY_NAME[dialect].folder / f"{transcript}.txt").read_bytes()


@dataclass(frozen=True)
class Outcome:
    """Everything observable about decoding one body."""

    events: list[Event]
    error_kind: str | None
    complete: bool
    truncated: bool
    resume_point: int | None
    """The Responses decoder's ``last_sequence_number`` (None for the other dialects)."""


def outcome(dialect: str, data: bytes, cuts: Sequence[int] = ()) -> Outcome:
    """Feed ``data`` cut at ``cuts``, then end; errors become their kind."""
    decoder = decoder_for(dialect)
    events: list[Event] = []
    kind = None
    try:
        for piece in pieces(data, cuts):
            events += decoder.feed(piece)
        events += decoder.end()
    except RemoteProtocolError as exc:
        kind = exc.kind
    resume_point = getattr(decoder, "last_sequence_number", None)
    return Outcome(events, kind, decoder.complete, decoder.truncated, resume_point)


def text(events: list[Event], choice: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.choice == choice)


# --------------------------------------------------------------------------- chunking


@pytest.mark.parametrize(("dialect", "transcript"), ALL_TRANSCRIPTS)
def test_byte_by_byte_feeding_gives_same_events(dialect: str, transcript: str) -> None:
    data = body(dialect, transcript)
    assert outcome(dialect, data, range(1, len(data))) == outcome(dialect, data)


@pytest.mark.parametrize(("dialect", "transcript"), ALL_TRANSCRIPTS)
@given(data=st.data())
def test_any_chunking_gives_same_events(dialect: str, transcript: str, data: st.DataObject) -> None:
    full = body(dialect, transcript)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(full)), max_size=40))
    assert outcome(dialect, full, cuts) == outcome(dialect, full)


@pytest.mark.parametrize(("dialect", "transcript"), COMPLETE_TRANSCRIPTS)
@given(data=st.data())
def test_truncation_at_any_byte_gives_a_text_prefix_and_incomplete(
    dialect: str, transcript: str, data: st.DataObject
) -> None:
    full = body(dialect, transcript)
    whole = outcome(dialect, full)
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1), label="cut")
    cut_off = outcome(dialect, full[:cut])
    assert cut_off.error_kind is None  # a cut only ever drops the unfinished item
    without_end = [e for e in cut_off.events if not isinstance(e, StreamEnd)]
    assert whole.events[: len(without_end)] == without_end
    for choice in (0, 1):
        assert text(whole.events, choice).startswith(text(cut_off.events, choice))
    if cut_off.complete:
        # Only trailing framing bytes (the last blank line) were cut: everything arrived.
        assert BY_NAME[dialect].cut_can_complete
        assert cut_off.events == whole.events


# --------------------------------------------------------------------------- broken bodies


@pytest.mark.parametrize(
    ("dialect", "where"),
    [
        ("anthropic", "SSE event #4"),
        ("gemini", "SSE event #2"),
        ("ollama", "line 2"),
        ("openai-chat", "SSE event #3"),
        ("openai-responses", "SSE event #6"),
    ],
)
def test_invalid_json_returns_earlier_events_then_raises_invalid_json(
    dialect: str, where: str
) -> None:
    decoder = decoder_for(dialect)
    events = decoder.feed(body(dialect, "invalid_json"))
    assert text(events) == "Hello"
    with pytest.raises(RemoteProtocolError) as info:
        decoder.end()
    assert info.value.kind == "invalid_json"
    assert where in str(info.value)


@pytest.mark.parametrize(
    ("dialect", "data"),
    [
        ("anthropic", b"event: message_start\ndata: " + b"[" * 100_000 + b"\n\n"),
        ("gemini", b"data: " + b"[" * 100_000 + b"\r\n\r\n"),
        ("gemini-json-array", b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]"),
        ("ollama", b"[" * 100_000 + b"\n"),
        ("openai-chat", b"data: " + b"[" * 100_000 + b"\n\n"),
        ("openai-responses", b"data: " + b"[" * 100_000 + b"\n\n"),
    ],
)
def test_json_nested_past_the_recursion_limit_is_invalid_json(dialect: str, data: bytes) -> None:
    assert outcome(dialect, data).error_kind == "invalid_json"


@pytest.mark.parametrize(
    ("dialect", "so_far", "resume_point"),
    [
        ("anthropic", "The three laws are: first, a robot may not injure", None),
        ("gemini", "The three laws are: first, ", None),
        ("ollama", "The three laws are: first, a robot", None),
        ("openai-chat", "The three laws are: first, a robot may not", None),
        ("openai-responses", "The three laws are: first, a robot may not", 5),
    ],
)
def test_drop_mid_event_keeps_the_text_so_far_and_the_resume_point(
    dialect: str, so_far: str, resume_point: int | None
) -> None:
    dropped = outcome(dialect, body(dialect, "dropped"))
    assert dropped.resume_point == resume_point
    assert dropped.error_kind is None
    assert text(dropped.events) == so_far
    assert not any(isinstance(e, StreamEnd | Finish) for e in dropped.events)
    assert not dropped.complete
    assert dropped.truncated


@pytest.mark.parametrize(
    ("dialect", "transcript", "so_far", "error", "resume_point"),
    [
        (
            "anthropic",
            "error_overloaded",
            "Here is the first part of the answer",
            ProviderError(
                "overloaded_error",
                "Overloaded",
                raw={
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                },
            ),
            None,
        ),
        (
            "gemini",
            "error_unavailable",
            "The first part of the answer",
            ProviderError("UNAVAILABLE", "The model is overloaded. Please try again later."),
            None,
        ),
        (
            "ollama",
            "error",
            "The first part",
            ProviderError(
                "error", "an error was encountered while running the model: unexpected EOF"
            ),
            None,
        ),
        (
            "openai-chat",
            "error_midstream",
            "Here is the first part of the answer",
            ProviderError(
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
                raw={
                    "error": {
                        "message": "The server had an error while processing your request. "
                        "Sorry about that!",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
            ),
            None,
        ),
        (
            "openai-responses",
            "error_event",
            "Here is the first part",
            ProviderError(
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
            ),
            5,
        ),
    ],
)
def test_error_mid_stream_becomes_provider_error_and_stream_stays_incomplete(
    dialect: str, transcript: str, so_far: str, error: ProviderError, resume_point: int | None
) -> None:
    result = outcome(dialect, body(dialect, transcript))
    assert result.error_kind is None
    assert text(result.events) == so_far
    assert result.events[-1] == error
    if error.raw is not None:  # raw is left out of ==; where the table gives it, check it
        last = result.events[-1]
        assert isinstance(last, ProviderError)
        assert last.raw == error.raw
    assert not result.complete
    assert result.resume_point == resume_point


@pytest.mark.parametrize(
    ("dialect", "garbage"),
    [
        ("anthropic", b"event: message_start\ndata: {not json\n\n"),
        ("gemini", b"data: {not json\r\n\r\n"),
        ("gemini-json-array", b'{"candidates": []}'),
        ("ollama", b"{not json\n"),
        ("openai-chat", b"data: {not json\n\n"),
        ("openai-responses", b"event: response.created\ndata: {not json\n\n"),
    ],
)
def test_decoder_stays_failed_after_garbage(dialect: str, garbage: bytes) -> None:
    decoder = decoder_for(dialect)
    with pytest.raises(RemoteProtocolError) as first:
        decoder.feed(garbage)
    with pytest.raises(RemoteProtocolError) as again:
        decoder.feed(b"\n")
    assert again.value is first.value
    with pytest.raises(RemoteProtocolError) as at_end:
        decoder.end()
    assert at_end.value is first.value


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_feeding_after_end_is_a_local_error(dialect: str) -> None:
    decoder = decoder_for(dialect)
    decoder.end()
    with pytest.raises(LocalProtocolError) as info:
        decoder.feed(b"")
    assert info.value.kind == "feed_after_end"


# --------------------------------------------------------------------------- registry

DECODER_CLASSES = {
    "anthropic": "anthropic.AnthropicDecoder",
    "gemini": "gemini.GeminiDecoder",
    "gemini-json-array": "gemini.GeminiDecoder",
    "ollama": "ollama.OllamaDecoder",
    "openai-chat": "openai_chat.OpenAIChatDecoder",
    "openai-responses": "openai_responses.OpenAIResponsesDecoder",
}


@pytest.mark.parametrize(("dialect", "path"), DECODER_CLASSES.items())
def test_registry_builds_the_dialects_decoder(dialect: str, path: str) -> None:
    module, name = path.split(".")
    cls = getattr(importlib.import_module(f"streamcore.providers.{module}"), name)
    decoder: DialectDecoder = decoder_for(dialect)
    assert type(decoder) is cls


# --------------------------------------------------------------------------- build_request

WEATHER = Tool(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

# Valid for every dialect: no stop sequences (the Responses API has none).
CONVERSATION = (
    Message("user", "Weather in Paris?"),
    Message("assistant", "", tool_calls=(ToolCall("call_01", "get_weather", '{"city": "Paris"}'),)),
    Message("tool", "18°C, light rain", tool_call_id="call_01"),
    Message("user", "Answer in one line."),
)

MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "ollama": "llama3.2",
    "openai_chat": "gpt-4.1",
    "openai_responses": "gpt-4.1",
}
BUILDERS = list(MODELS)


def builder(module: str) -> Callable[..., HTTPRequest]:
    built: Callable[..., HTTPRequest] = importlib.import_module(
        f"streamcore.providers.{module}"
    ).build_request
    return built


def request_for(module: str, messages: tuple[Message, ...] = CONVERSATION) -> ChatRequest:
    return ChatRequest(MODELS[module], messages, tools=(WEATHER,))


@pytest.mark.parametrize("module", BUILDERS)
def test_api_key_never_appears_in_repr_or_body(module: str) -> None:
    request = builder(module)(request_for(module), api_key="sk-test-secret-4242")
    assert any("sk-test-secret-4242" in value for _, value in request.headers)
    assert "sk-test-secret-4242" not in repr(request)
    assert b"sk-test-secret-4242" not in request.body


@pytest.mark.parametrize("module", BUILDERS)
def test_api_key_with_a_line_break_is_rejected_without_echoing_it(module: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        builder(module)(request_for(module), api_key="sk-test\r\nX-Injected: 1")
    assert info.value.kind == "invalid_header_value"
    assert "sk-test" not in str(info.value)


@pytest.mark.parametrize(
    ("module", "base_path", "target"),
    [
        ("anthropic", "/anthropic/v1/", "/anthropic/v1/messages"),
        ("ollama", "/ollama/", "/ollama/api/chat"),
        ("openai_chat", "/api/v1/", "/api/v1/chat/completions"),
        ("openai_responses", "/openai/v1/", "/openai/v1/responses"),
    ],
)
def test_base_path_prefixes_the_target(module: str, base_path: str, target: str) -> None:
    assert builder(module)(request_for(module), base_path=base_path).target == target


@pytest.mark.parametrize("module", ["anthropic", "openai_chat", "openai_responses"])
def test_tool_result_without_call_id_is_a_local_error(module: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        builder(module)(request_for(module, (Message("tool", "18°C"),)))
    assert info.value.kind == "missing_tool_call_id"


@pytest.mark.parametrize("module", ["anthropic", "gemini", "ollama"])
def test_tool_call_arguments_that_are_not_an_object_are_a_local_error(module: str) -> None:
    call = ToolCall("call_01", "get_weather", '["Paris"]')
    messages = (Message("user", "Hi"), Message("assistant", "", tool_calls=(call,)))
    with pytest.raises(LocalProtocolError) as info:
        builder(module)(request_for(module, messages))
    assert info.value.kind == "invalid_tool_arguments"
    assert "'get_weather'" in str(info.value)


@pytest.mark.parametrize("module", BUILDERS)
def test_extra_that_is_not_json_is_a_local_error(module: str) -> None:
    request = ChatRequest(MODELS[module], CONVERSATION, extra={"metadata": {1, 2}})
    with pytest.raises(LocalProtocolError) as info:
        builder(module)(request)
    assert info.value.kind == "invalid_body"
