"""The OpenAI Chat Completions dialect: ``POST /v1/chat/completions`` with ``"stream": true``.

Also spoken by most OpenAI-compatible servers (vLLM, llama.cpp, DeepSeek,
OpenRouter, Groq, Azure OpenAI, Gemini's compatibility endpoint); their quirks
are listed below and tolerated on purpose.

Theory of operation
===================

The body is SSE. Every event's ``data`` is one of three things:

* ``[DONE]`` -- the terminal marker: :class:`~streamcore.events.StreamEnd`.
  Anything after it raises ``RemoteProtocolError(kind="event_after_end")``.
* an error object, ``{"error": {"message", "type", "code", "param"}}`` (also
  sent as ``event: error``) -- :class:`~streamcore.events.ProviderError`. The
  stream normally ends there without ``[DONE]``, so ``complete`` stays false.
* a ``chat.completion.chunk``: ``{"id", "model", "choices": [...], "usage"}``.

A chunk is recognised by its shape (a ``choices`` list or a ``usage`` object),
not by the SSE event name; any other JSON becomes a
:class:`~streamcore.events.RawEvent`, never an error and never dropped.

Each entry of ``choices`` carries its ``index`` (the choice, for ``n > 1``; kept
apart in every event's ``choice``), a ``delta`` and a ``finish_reason``. Per
choice the decoder keeps a small machine (:class:`_Choice`):

* ``delta.reasoning_content`` / ``delta.reasoning`` -> :class:`ReasoningDelta`;
  ``delta.content`` -> :class:`TextDelta`; ``delta.refusal`` -> :class:`Refusal`.
  A value that is not a string (Mistral streams ``content`` as a list of typed
  parts) is surfaced as ``RawEvent("delta.<key>", value)``; so is every delta key
  streamcore does not know, when it carries something (``delta.audio``,
  OpenRouter's ``reasoning_details``...). ``role`` is not an event.
* ``delta.tool_calls`` fragments, by ``index``: the first fragment of a call
  carries ``id``, ``type`` and ``function.name`` -> :class:`ToolCallStart`; every
  non-empty ``function.arguments`` piece -> :class:`ToolCallDelta`. Calls may
  interleave. A later fragment that repeats the call's own id or name is a
  continuation; one that names a *different* id or name for an open index, or a
  fragment for an index never started that names neither, is a grammar break
  (``kind="unexpected_event"``). A fragment whose ``type`` is not ``function``
  (custom tools) is surfaced raw, and so are that index's later fragments.
* ``finish_reason`` -> :class:`ToolCallEnd` for every open call of the choice,
  in index order, then :class:`Finish`. After it the choice is closed: a delta
  that carries content is ``kind="unexpected_event"``; empty deltas and a
  repeat of the same reason (some servers send it twice) are accepted.

Usage: the ``usage`` object (``stream_options.include_usage``; OpenAI sends it
in a last chunk whose ``choices`` is empty) -> :class:`Usage` with
``prompt_tokens``, ``completion_tokens``, ``prompt_tokens_details.cached_tokens``
and ``completion_tokens_details.reasoning_tokens``. Servers that repeat usage
in every chunk (vLLM's ``continuous_usage_stats``, DeepSeek on its last content
chunk) get a :class:`Usage` event **each time the counts change**, never twice
in a row with the same values; the latest one is the total.

Completeness: ``complete`` is true only after ``[DONE]``. A body that ends after
a ``finish_reason`` but without ``[DONE]`` is **not** complete: OpenAI sends the
usage chunk after the finish chunk, so such a body may have lost it, and
OpenAI, vLLM, llama.cpp, Ollama and the other common servers all send
``[DONE]``. The :class:`Finish` events already delivered still say how each
choice ended. At ``[DONE]``, calls of a choice that never got a
``finish_reason`` are closed with :class:`ToolCallEnd` (their arguments are whole).

Quirks tolerated, and how:

* ``id`` missing, or empty with ``model`` empty (Azure's first chunk, which only
  carries ``prompt_filter_results``): :class:`StreamStarted` is emitted once, at
  the first chunk that names an id or a model.
* ``choices: []`` without usage, empty deltas, ``"delta": null``, a missing
  choice ``index`` (taken as 0) and ``"finish_reason": ""`` (taken as null).
* Tool-call fragments without ``index`` (Gemini's compatibility endpoint): a
  fragment that names a new ``id``, or a name without an id, starts the next
  call (index = calls started so far in the choice); any other continues the
  latest call. Gemini's ``extra_content`` (thought signatures) on a fragment is
  surfaced as ``RawEvent("delta.tool_calls.extra_content", fragment)``.
* A choice that made tool calls but finished with ``"stop"`` (Gemini; OpenAI
  when ``tool_choice`` forces a function) is ``FinishReason.TOOL_CALLS``; the
  raw ``"stop"`` is kept in :attr:`Finish.raw`.
* ``reasoning_content`` and ``reasoning`` both present (vLLM while it renamed
  the field): one :class:`ReasoningDelta`, from ``reasoning_content``.

Errors: a wrong type where the format has a known field (``"index": true``,
``"choices": {}``) is ``kind="invalid_event"``; an impossible order is
``kind="unexpected_event"``; bad JSON is ``kind="invalid_json"``. One SSE event
is atomic: when it breaks the grammar halfway, none of the events already built
from it are returned (the ones from earlier SSE events are, by the base rule).

Memory is bounded: at most :data:`MAX_CHOICES` choices and
:data:`MAX_TOOL_CALLS` tool calls per stream, and only calls still open keep
their id and name; past that the stream raises (``kind="too_many_choices"`` /
``"too_many_tool_calls"``).

Prefill: Chat Completions cannot continue a final assistant message, so
:func:`build_request` sends it as an ordinary assistant turn; the resume logic
adds its own instruction to continue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
    ProviderError,
    RawEvent,
    ReasoningDelta,
    Refusal,
    StreamStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamcore.framing import DEFAULT_MAX_LINE_BYTES
from streamcore.providers._base import (
    SSEJSONDecoder,
    check_header_value,
    encode_body,
    function_tools,
    optional_int,
    parse_json,
)
from streamcore.request import ChatRequest, HTTPRequest
from streamcore.sse import SSEEvent

__all__ = [
    "DEFAULT_BASE_PATH",
    "MAX_CHOICES",
    "MAX_TOOL_CALLS",
    "OpenAIChatDecoder",
    "build_request",
]

DEFAULT_BASE_PATH = "/v1"

MAX_CHOICES = 128
"""Choices remembered per stream: OpenAI's own ceiling for ``n``."""

MAX_TOOL_CALLS = 256
"""Tool calls per stream, over all choices; far above what a model makes."""


# --------------------------------------------------------------------------- request


def build_request(
    request: ChatRequest,
    *,
    api_key: str | None = None,
    base_path: str = DEFAULT_BASE_PATH,
    compat: bool = False,
    include_usage: bool = True,
) -> HTTPRequest:
    """The streaming ``POST {base_path}/chat/completions`` request for ``request``.

    ``request.system`` becomes a leading ``system`` message; ``system`` messages
    stay where they are; an assistant turn with tool calls carries them as
    ``tool_calls`` (``content`` null when it has no text); a tool result is a
    ``tool`` message naming its ``tool_call_id``. An assistant turn with neither
    text nor tool calls says nothing and is left out. A final assistant message
    (a prefill) is sent as an ordinary assistant turn: the API cannot continue it.

    ``compat=True`` is for OpenAI-compatible servers: the limit is sent as
    ``max_tokens`` (OpenAI itself wants ``max_completion_tokens``).
    ``include_usage=False`` leaves out ``stream_options`` for servers that
    reject it. The key travels only in the ``authorization`` header, which
    ``repr`` redacts.

    >>> from streamcore.request import ChatRequest, Message
    >>> req = build_request(
    ...     ChatRequest("gpt-4.1-mini", (Message("user", "Hi"),), max_tokens=64), api_key="sk-1"
    ... )
    >>> req.target
    '/v1/chat/completions'
    >>> req.body.decode()
    '{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":64,...'
    >>> "sk-1" in repr(req)
    False
    """
    messages: list[dict[str, object]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for position, message in enumerate(request.messages):
        if message.role == "tool":
            if message.tool_call_id is None:
                raise LocalProtocolError(
                    f"messages[{position}] is a tool result without tool_call_id; "
                    "set it to the id of the ToolCall it answers",
                    kind="missing_tool_call_id",
                )
            messages.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
        elif message.role == "assistant" and message.tool_calls:
            messages.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        elif message.role == "assistant" and not message.content:
            continue
        else:
            messages.append({"role": message.role, "content": message.content})

    body: dict[str, object] = {"model": request.model, "messages": messages}
    if request.max_tokens is not None:
        body["max_tokens" if compat else "max_completion_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = function_tools(request.tools)
    body["stream"] = True
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    body.update(request.extra)

    return HTTPRequest(
        method="POST",
        target=base_path.rstrip("/") + "/chat/completions",
        headers=_headers(api_key, json_body=True),
        body=encode_body(body),
    )


def _headers(api_key: str | None, *, json_body: bool) -> tuple[tuple[str, str], ...]:
    headers = [("content-type", "application/json")] if json_body else []
    headers.append(("accept", "text/event-stream"))
    if api_key is not None:
        check_header_value(api_key, "api_key")
        headers.append(("authorization", f"Bearer {api_key}"))
    return tuple(headers)


# --------------------------------------------------------------------------- decoder

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": FinishReason.STOP,
    "eos": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}

# Delta keys with a meaning here; any other key that carries a value is surfaced raw.
_KNOWN_DELTA_KEYS = frozenset(
    {"role", "content", "refusal", "reasoning_content", "reasoning", "tool_calls"}
)


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    opaque: bool = False
    """A non-function tool call (``type: custom``...): its fragments are surfaced raw."""


@dataclass(slots=True)
class _Choice:
    """What one choice has said so far."""

    calls: dict[int, _Call] = field(default_factory=dict)
    latest: int = -1
    """The call started last, which an index-less fragment continues."""
    next_index: int = 0
    """The index an index-less fragment that starts a call gets."""
    made_calls: bool = False
    finish: str | None = None


class OpenAIChatDecoder(SSEJSONDecoder):
    """Decode a Chat Completions stream body into streamcore events.

    >>> body = (
    ...     b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4.1-mini",'
    ...     b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    ...     b'"finish_reason":null}],"usage":null}\\n\\n'
    ...     b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4.1-mini",'
    ...     b'"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],'
    ...     b'"usage":null}\\n\\n'
    ...     b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4.1-mini",'
    ...     b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\\n\\n'
    ...     b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4.1-mini",'
    ...     b'"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":2}}\\n\\n'
    ...     b"data: [DONE]\\n\\n"
    ... )
    >>> decoder = OpenAIChatDecoder()
    >>> [type(e).__name__ for e in decoder.feed(body) + decoder.end()]
    ['StreamStarted', 'TextDelta', 'Finish', 'Usage', 'StreamEnd']
    >>> decoder.complete
    True
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes=max_line_bytes)
        self._events = 0
        self._started = False
        self._choices: dict[int, _Choice] = {}
        self._tool_calls = 0
        self._usage: Usage | None = None

    def _on_event(self, event: SSEEvent, out: list[Event]) -> None:
        # One SSE event is atomic: if it breaks the grammar halfway, the events
        # already built from it are taken back, so callers never see half of it.
        mark = len(out)
        try:
            self._decode(event, out)
        except RemoteProtocolError:
            del out[mark:]
            raise

    def _decode(self, event: SSEEvent, out: list[Event]) -> None:
        self._events += 1
        data = event.data
        if self._complete:
            self._check_open(self._where())
        if data.startswith("[DONE]"):
            self._on_done(out)
            return
        try:
            payload = json.loads(data)
        except ValueError:
            payload = parse_json(data, f"data of {self._where()}")  # raises, saying where
        except RecursionError:
            raise RemoteProtocolError(
                f"data of {self._where()} nests JSON deeper than Python can parse; "
                "the stream is corrupt or hostile -- check the upstream",
                kind="invalid_json",
            ) from None
        if type(payload) is dict:
            error = payload.get("error")
            if error:
                out.append(provider_error(error, payload))
                return
            if event.event == "error":
                out.append(provider_error(payload, payload))
                return
            choices = payload.get("choices")
            if type(choices) is list or type(payload.get("usage")) is dict:
                self._on_chunk(payload, choices, out)
                return
        elif event.event == "error":
            out.append(provider_error(payload, payload))
            return
        out.append(RawEvent(event.event, payload))

    def _where(self) -> str:
        """Where the current event is, for error messages (built only when one is raised)."""
        return f"chunk (SSE event #{self._events})"

    def _broken(self, what: str, kind: str = "invalid_event") -> RemoteProtocolError:
        return RemoteProtocolError(
            f"{self._where()}: {what}; the stream is corrupt or the server's format "
            "changed -- retry the request, or report the server's output",
            kind=kind,
        )

    # -- chunk level

    def _on_chunk(self, chunk: dict[str, object], choices: object, out: list[Event]) -> None:
        if not self._started:
            response_id = chunk.get("id")
            model = chunk.get("model")
            response_id = response_id if type(response_id) is str and response_id else None
            model = model if type(model) is str and model else None
            if response_id is not None or model is not None:
                self._started = True
                out.append(StreamStarted(response_id, model))
        if type(choices) is list:
            for choice in choices:
                self._on_choice(choice, out)
        elif choices is not None:
            raise self._broken(f"'choices' is a {type(choices).__name__}, expected a list")
        usage = chunk.get("usage")
        if type(usage) is dict:
            counts = chat_usage(usage)
            if counts is not None and counts != self._usage:
                self._usage = counts
                out.append(counts)
        elif usage is not None:
            raise self._broken(f"'usage' is a {type(usage).__name__}, expected an object")

    def _on_choice(self, choice: object, out: list[Event]) -> None:
        if type(choice) is not dict:
            raise self._broken(f"a choice is a {type(choice).__name__}, expected an object")
        index = choice.get("index", 0)
        # type() rather than isinstance(): JSON true is not an index.
        if type(index) is not int or index < 0:
            raise self._broken(f"choice 'index' is {_show(index)}, expected an integer >= 0")
        state = self._choices.get(index)
        if state is None:
            if len(self._choices) >= MAX_CHOICES:
                raise self._broken(
                    f"choice {index} would be choice number {MAX_CHOICES + 1}; at most "
                    f"{MAX_CHOICES} are kept (MAX_CHOICES, OpenAI's limit for n)",
                    kind="too_many_choices",
                )
            state = self._choices[index] = _Choice()
        delta = choice.get("delta")
        if type(delta) is dict:
            if delta:
                self._on_delta(index, state, delta, out)
        elif delta is not None:
            raise self._broken(f"choice {index} 'delta' is a {type(delta).__name__}")
        reason = choice.get("finish_reason")
        if type(reason) is str:
            if reason:
                self._on_finish(index, state, reason, out)
        elif reason is not None:
            raise self._broken(
                f"choice {index} 'finish_reason' is {_show(reason)}, expected a string"
            )

    def _on_delta(
        self, choice: int, state: _Choice, delta: dict[str, object], out: list[Event]
    ) -> None:
        start = len(out)
        reasoning = delta.get("reasoning_content")
        if reasoning is None or reasoning == "":
            reasoning = delta.get("reasoning")
            key = "reasoning"
        else:
            key = "reasoning_content"
        if type(reasoning) is str:
            if reasoning:
                out.append(ReasoningDelta(reasoning, choice=choice))
        elif reasoning is not None:
            out.append(RawEvent(f"delta.{key}", reasoning))
        content = delta.get("content")
        if type(content) is str:
            if content:
                out.append(TextDelta(content, choice))
        elif content is not None:
            out.append(RawEvent("delta.content", content))
        refusal = delta.get("refusal")
        if type(refusal) is str:
            if refusal:
                out.append(Refusal(refusal, choice))
        elif refusal is not None:
            out.append(RawEvent("delta.refusal", refusal))
        fragments = delta.get("tool_calls")
        if type(fragments) is list:
            for fragment in fragments:
                self._on_fragment(choice, state, fragment, out)
        elif fragments is not None:
            out.append(RawEvent("delta.tool_calls", fragments))
        if not delta.keys() <= _KNOWN_DELTA_KEYS:
            for name, value in delta.items():
                if name not in _KNOWN_DELTA_KEYS and value not in (None, "", [], {}):
                    out.append(RawEvent(f"delta.{name}", value))
        if state.finish is not None and len(out) > start:
            raise self._after_finish(choice, state)

    def _after_finish(self, choice: int, state: _Choice) -> RemoteProtocolError:
        return self._broken(
            f"choice {choice} sends content after its finish_reason {_show(state.finish)}",
            kind="unexpected_event",
        )

    def _on_fragment(self, choice: int, state: _Choice, fragment: object, out: list[Event]) -> None:
        if type(fragment) is not dict:
            raise self._broken(f"a tool_calls entry is a {type(fragment).__name__}")
        if state.finish is not None:
            raise self._after_finish(choice, state)
        function = fragment.get("function")
        if function is None:
            function = {}
        elif type(function) is not dict:
            raise self._broken(f"tool_calls[].function is a {type(function).__name__}")
        call_id = self._string(fragment, "id")
        name = self._string(function, "name")
        arguments = self._string(function, "arguments")
        kind = fragment.get("type")

        index = fragment.get("index")
        if index is None:
            index = self._indexless(state, call_id, name)
        elif type(index) is not int or index < 0:
            raise self._broken(f"tool_calls[].index is {_show(index)}, expected an integer >= 0")

        call = state.calls.get(index)
        if call is None:
            # "" counts as function: Gemini sends it on calls of its own.
            opaque = type(kind) is str and kind not in ("function", "")
            if not (call_id or name or opaque):
                raise self._broken(
                    f"choice {choice} continues tool call {index}, which was never started "
                    "(its first fragment carries an id and a name)",
                    kind="unexpected_event",
                )
            if self._tool_calls >= MAX_TOOL_CALLS:
                raise self._broken(
                    f"tool call {index} would be call number {MAX_TOOL_CALLS + 1}; at most "
                    f"{MAX_TOOL_CALLS} are kept (MAX_TOOL_CALLS)",
                    kind="too_many_tool_calls",
                )
            self._tool_calls += 1
            call = state.calls[index] = _Call(call_id or "", name or "", opaque)
            state.latest = index
            state.next_index = max(state.next_index, index + 1)
            if opaque:
                out.append(RawEvent(f"delta.tool_calls:{kind}", fragment))
                return
            state.made_calls = True
            out.append(ToolCallStart(index, call.id, call.name, choice))
        elif call.opaque:
            out.append(RawEvent("delta.tool_calls", fragment))
            return
        else:
            if call_id and call_id != call.id:
                raise self._broken(
                    f"choice {choice} tool call {index} was started as {_show(call.id)} and is "
                    f"now given the id {_show(call_id)}",
                    kind="unexpected_event",
                )
            if name and name != call.name:
                raise self._broken(
                    f"choice {choice} tool call {index} was started as {_show(call.name)} and "
                    f"is now given the name {_show(name)}",
                    kind="unexpected_event",
                )
        if arguments:
            out.append(ToolCallDelta(index, arguments, choice))
        if fragment.get("extra_content") is not None:
            out.append(RawEvent("delta.tool_calls.extra_content", fragment))

    def _string(self, obj: dict[str, object], key: str) -> str | None:
        value = obj.get(key)
        if value is None or type(value) is str:
            return value
        raise self._broken(
            f"tool call field {key!r} is a {type(value).__name__}, expected a string"
        )

    @staticmethod
    def _indexless(state: _Choice, call_id: str | None, name: str | None) -> int:
        """The index of a fragment that has none (Gemini): see the module docstring."""
        latest = state.calls.get(state.latest)
        if latest is None:
            return state.next_index
        if call_id:
            return state.latest if call_id == latest.id else state.next_index
        return state.next_index if name else state.latest

    def _on_finish(self, choice: int, state: _Choice, reason: str, out: list[Event]) -> None:
        if state.finish is not None:
            if reason == state.finish:
                return
            raise self._broken(
                f"choice {choice} finishes again with {_show(reason)} after {_show(state.finish)}",
                kind="unexpected_event",
            )
        state.finish = reason
        self._close_calls(choice, state, out)
        mapped = _FINISH_REASONS.get(reason, FinishReason.OTHER)
        if mapped is FinishReason.STOP and state.made_calls:
            mapped = FinishReason.TOOL_CALLS
        out.append(Finish(mapped, reason, choice))

    def _on_done(self, out: list[Event]) -> None:
        for choice, state in self._choices.items():
            self._close_calls(choice, state, out)
        self._finish(out)

    @staticmethod
    def _close_calls(choice: int, state: _Choice, out: list[Event]) -> None:
        for index in sorted(state.calls):
            if not state.calls[index].opaque:
                out.append(ToolCallEnd(index, choice))
        # The ids are only needed while a call can still receive fragments.
        state.calls.clear()
        state.latest = -1


def _show(value: object) -> str:
    """A short, safe rendering of a value from the wire for an error message.

    Never ``repr`` of a container: JSON nested deep enough breaks ``repr``, and a
    1 MiB string does not belong in a message.
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= _SHOW else repr(value[:_SHOW]) + "..."
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"


_SHOW = 60


def chat_usage(usage: Mapping[str, object]) -> Usage | None:
    """A Chat Completions ``usage`` object as :class:`Usage`, or ``None`` if it has no counts.

    >>> chat_usage({"prompt_tokens": 1200, "completion_tokens": 310, "total_tokens": 1510,
    ...     "prompt_tokens_details": {"cached_tokens": 1024},
    ...     "completion_tokens_details": {"reasoning_tokens": 256}})
    Usage(input_tokens=1200, output_tokens=310, cached_tokens=1024, reasoning_tokens=256)
    """
    counts = Usage(
        input_tokens=optional_int(usage, "prompt_tokens"),
        output_tokens=optional_int(usage, "completion_tokens"),
        cached_tokens=optional_int(usage.get("prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=optional_int(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )
    return None if counts == _NO_COUNTS else counts


_NO_COUNTS = Usage()


def provider_error(error: object, raw: object) -> ProviderError:
    """An OpenAI error object (``{"message", "type", "code"}``) as a :class:`ProviderError`.

    The type is the error's ``type``, else its ``code``, else ``"error"``; a
    bare string is the message.

    >>> provider_error({"message": "The server had an error", "type": "server_error",
    ...     "param": None, "code": None}, None)
    ProviderError(type='server_error', message='The server had an error', raw=None)
    """
    if isinstance(error, Mapping):
        kind = error.get("type")
        if not (isinstance(kind, str) and kind):
            kind = error.get("code")
        message = error.get("message")
        return ProviderError(
            kind if isinstance(kind, str) and kind else "error",
            message if isinstance(message, str) else _NO_MESSAGE,
            raw=raw,
        )
    return ProviderError("error", error if isinstance(error, str) else _NO_MESSAGE, raw=raw)


_NO_MESSAGE = "the provider reported an error without a message (see raw)"
