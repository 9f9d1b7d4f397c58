"""The Anthropic Messages dialect: ``POST /v1/messages`` with ``"stream": true``.

Theory of operation
===================

The body is SSE; every event's ``data`` is a JSON object whose ``type`` names
it (the SSE ``event:`` line repeats it; the JSON ``type`` wins, the ``event:``
name is the fallback for data that has none). A stream reads::

    message_start
      (content_block_start  content_block_delta*  content_block_stop)*
      message_delta+
    message_stop

with ``ping`` and ``error`` allowed anywhere. Two small machines check it.

*The message machine* (:class:`_Phase`, :data:`_TRANSITIONS`): a table of
(phase, event type) -> next phase. An event type that the table lists for some
phase but not for the current one is an impossible order (``content_block_delta``
before ``message_start``) and raises ``RemoteProtocolError(kind="unexpected_event")``;
the decoder stays failed. ``message_stop`` is the terminal marker: it emits
:class:`~streamcore.events.StreamEnd`, and anything after it raises
``kind="event_after_end"``. Event types the table does not know at all
(new API features) become :class:`~streamcore.events.RawEvent`.

*The block machine*: each content block is opened by ``content_block_start``,
fed by deltas and closed by ``content_block_stop``. Only open blocks are
remembered, and block indexes must grow (the API numbers blocks by their
position in the final ``content`` array), so memory stays bounded by
:data:`MAX_OPEN_BLOCKS` whatever the stream length. A delta or stop for a block
that is not open, a reused index, a delta that does not fit the block's kind
(``text_delta`` into a ``tool_use`` block) or a ``message_stop`` while a block
is open is a grammar break (``kind="unexpected_event"``).

Translation:

* ``text`` blocks -> :class:`TextDelta`; ``thinking`` blocks ->
  :class:`ReasoningDelta` (``signature_delta`` -> ``ReasoningDelta("", signature=...)``).
* ``tool_use`` blocks -> :class:`ToolCallStart` / :class:`ToolCallDelta` (the
  ``partial_json`` pieces) / :class:`ToolCallEnd`. **Tool-call index scheme:**
  ``ToolCallStart.index`` counts the ``tool_use`` blocks of the message (0, 1,
  2, ...), not the content-block index, so a text block before the calls does
  not leave holes and the indexes match OpenAI's ``tool_calls[i].index``.
* Blocks streamcore does not model (``redacted_thinking``, ``server_tool_use``,
  ``web_search_tool_result``, future kinds) are surfaced whole as
  :class:`RawEvent` -- their start, every delta and their stop -- never dropped.
  The same goes for deltas streamcore does not model (``citations_delta``).
* ``message_delta.stop_reason`` -> :class:`Finish` (raw value kept).
* Usage: Anthropic counts ``input_tokens`` *without* the cached prompt, OpenAI
  and Gemini count it with. :class:`Usage` follows the latter so sums mean the
  same thing for every provider: ``input_tokens = input_tokens +
  cache_creation_input_tokens + cache_read_input_tokens`` and ``cached_tokens =
  cache_read_input_tokens``. ``message_delta`` counts are cumulative and only
  carry the keys that changed, so the decoder merges them onto ``message_start``'s.
* ``event: error`` -> :class:`ProviderError`. The stream is then over without
  ``message_stop``, so ``complete`` stays false.

A known event with a required field missing or of the wrong type (a
``content_block_delta`` whose ``index`` is a string, a ``text_delta`` without
``text``) is a grammar break too (``kind="invalid_event"``): surfacing it raw
would silently drop a piece of the answer.

Prefill and its seam
====================

A final ``assistant`` message is sent as a native prefill: Anthropic continues
it. The API rejects a prefill that ends in whitespace, so :func:`build_request`
strips trailing whitespace (and drops a prefill that is only whitespace). The
model then continues from the stripped text, and its first delta usually
*starts* with the whitespace that was stripped (``"The answer is"`` ->
``" 42."``). Join the answer onto :func:`sent_prefill`, not onto the original
prefill, or that whitespace appears twice.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import TypeVar

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
    KeepAlive,
    ProviderError,
    RawEvent,
    ReasoningDelta,
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
    arguments_object,
    check_header_value,
    encode_body,
    optional_str,
    parse_json,
    split_system,
    wrong_type,
)
from streamcore.request import ChatRequest, HTTPRequest
from streamcore.sse import SSEEvent

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_BASE_PATH",
    "DEFAULT_MAX_TOKENS",
    "MAX_OPEN_BLOCKS",
    "AnthropicDecoder",
    "build_request",
    "sent_prefill",
]

_T = TypeVar("_T")

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header value this dialect speaks."""

DEFAULT_BASE_PATH = "/v1"

DEFAULT_MAX_TOKENS = 4096
"""Sent when the request sets no ``max_tokens`` (the API requires one)."""

MAX_OPEN_BLOCKS = 256
"""Content blocks open at once; the API opens one at a time, so this only stops abuse."""


# --------------------------------------------------------------------------- request


def build_request(
    request: ChatRequest, *, api_key: str | None = None, base_path: str = DEFAULT_BASE_PATH
) -> HTTPRequest:
    """The streaming ``POST {base_path}/messages`` request for ``request``.

    System text (``request.system`` and any ``system`` messages, in order) goes
    in the top-level ``system``; tool results become ``tool_result`` blocks of a
    user turn (consecutive results share one turn); a final assistant message is
    a prefill with its trailing whitespace stripped (see :func:`sent_prefill`);
    an assistant turn with neither text nor tool calls is left out (the API
    rejects empty text).
    The key travels only in the ``x-api-key`` header, which ``repr`` redacts.

    >>> from streamcore.request import ChatRequest, Message
    >>> req = build_request(
    ...     ChatRequest("claude-sonnet-4-5", (Message("user", "Hi"),)), api_key="sk-ant-1"
    ... )
    >>> req.target
    '/v1/messages'
    >>> req.body.decode()
    '{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":"Hi"}],...'
    >>> "sk-ant-1" in repr(req)
    False
    """
    system_parts, messages = split_system(request)

    turns: list[dict[str, object]] = []
    # The turn holding tool_result blocks, while it may still take more of them.
    results_turn: list[dict[str, object]] | None = None
    last = len(messages) - 1
    for position, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id is None:
                raise LocalProtocolError(
                    f"messages[{position}] is a tool result without tool_call_id; "
                    "set it to the id of the ToolCall it answers",
                    kind="missing_tool_call_id",
                )
            block: dict[str, object] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if results_turn is None:
                results_turn = [block]
                turns.append({"role": "user", "content": results_turn})
            else:
                results_turn.append(block)
        elif message.role == "user":
            if results_turn is not None:
                # Text after tool results belongs to the same user turn, after them.
                results_turn.append({"type": "text", "text": message.content})
            else:
                turns.append({"role": "user", "content": message.content})
            results_turn = None
        else:  # assistant
            results_turn = None
            if message.tool_calls:
                blocks: list[dict[str, object]] = []
                if message.content:
                    blocks.append({"type": "text", "text": message.content})
                for call in message.tool_calls:
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": call.id,
                            "name": call.name,
                            "input": arguments_object(
                                call.arguments, call.name, "Anthropic's tool_use.input"
                            ),
                        }
                    )
                turns.append({"role": "assistant", "content": blocks})
            elif position == last:
                prefill = message.content.rstrip()
                if prefill:
                    turns.append({"role": "assistant", "content": prefill})
            elif message.content:
                # The API rejects empty text; an empty turn says nothing, so it is left out.
                turns.append({"role": "assistant", "content": message.content})

    body: dict[str, object] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system_parts:
        body["system"] = "\n\n".join(system_parts)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        tools: list[dict[str, object]] = []
        for tool in request.tools:
            spec: dict[str, object] = {"name": tool.name}
            if tool.description:
                spec["description"] = tool.description
            spec["input_schema"] = dict(tool.parameters)
            tools.append(spec)
        body["tools"] = tools
    body["stream"] = True
    body.update(request.extra)

    headers = [
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("anthropic-version", ANTHROPIC_VERSION),
    ]
    if api_key is not None:
        check_header_value(api_key, "api_key")
        headers.append(("x-api-key", api_key))
    return HTTPRequest(
        method="POST",
        target=base_path.rstrip("/") + "/messages",
        headers=tuple(headers),
        body=encode_body(body),
    )


def sent_prefill(request: ChatRequest) -> str | None:
    """The prefill exactly as :func:`build_request` sends it, or ``None`` if none is sent.

    The continuation streams on from this text, so the full answer is
    ``sent_prefill(request) + streamed_text``.

    >>> from streamcore.request import ChatRequest, Message
    >>> sent_prefill(ChatRequest("m", (Message("user", "2+2?"), Message("assistant", "It is "))))
    'It is'
    """
    messages = [m for m in request.messages if m.role != "system"]
    if not messages or messages[-1].role != "assistant" or messages[-1].tool_calls:
        return None
    return messages[-1].content.rstrip() or None


# --------------------------------------------------------------------------- decoder


class _Phase(enum.Enum):
    """Where the message stands."""

    AWAITING_START = "before message_start"
    IN_MESSAGE = "inside the message"
    DONE = "after message_stop"


_TRANSITIONS: dict[tuple[_Phase, str], _Phase] = {
    (_Phase.AWAITING_START, "message_start"): _Phase.IN_MESSAGE,
    (_Phase.IN_MESSAGE, "content_block_start"): _Phase.IN_MESSAGE,
    (_Phase.IN_MESSAGE, "content_block_delta"): _Phase.IN_MESSAGE,
    (_Phase.IN_MESSAGE, "content_block_stop"): _Phase.IN_MESSAGE,
    (_Phase.IN_MESSAGE, "message_delta"): _Phase.IN_MESSAGE,
    (_Phase.IN_MESSAGE, "message_stop"): _Phase.DONE,
}
"""The legal message-level moves; ``ping`` and ``error`` are legal in every phase before DONE."""

_SEQUENCED = frozenset(name for _, name in _TRANSITIONS)


class _Kind(enum.Enum):
    """What a content block holds, which decides the deltas it accepts."""

    TEXT = "text"
    TOOL_USE = "tool_use"
    THINKING = "thinking"
    OPAQUE = "opaque"
    """A block streamcore surfaces raw (redacted_thinking, server tools, future kinds)."""


_KINDS = {"text": _Kind.TEXT, "tool_use": _Kind.TOOL_USE, "thinking": _Kind.THINKING}

# The block kind each modelled delta type belongs to.
_DELTA_KINDS = {
    "text_delta": _Kind.TEXT,
    "input_json_delta": _Kind.TOOL_USE,
    "thinking_delta": _Kind.THINKING,
    "signature_delta": _Kind.THINKING,
}

_STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
    "pause_turn": FinishReason.OTHER,
}

_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


@dataclass(slots=True)
class _Block:
    kind: _Kind
    tool_index: int = -1


class AnthropicDecoder(SSEJSONDecoder):
    """Decode an Anthropic Messages stream body into streamcore events.

    >>> body = (
    ...     b'event: message_start\\ndata: {"type":"message_start","message":{"id":"msg_1",'
    ...     b'"model":"claude-sonnet-4-5","content":[],'
    ...     b'"usage":{"input_tokens":9,"output_tokens":1}}}\\n\\n'
    ...     b'event: content_block_start\\ndata: {"type":"content_block_start","index":0,'
    ...     b'"content_block":{"type":"text","text":""}}\\n\\n'
    ...     b'event: content_block_delta\\ndata: {"type":"content_block_delta","index":0,'
    ...     b'"delta":{"type":"text_delta","text":"Hi"}}\\n\\n'
    ...     b'event: content_block_stop\\ndata: {"type":"content_block_stop","index":0}\\n\\n'
    ...     b'event: message_delta\\ndata: {"type":"message_delta",'
    ...     b'"delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\\n\\n'
    ...     b'event: message_stop\\ndata: {"type":"message_stop"}\\n\\n'
    ... )
    >>> decoder = AnthropicDecoder()
    >>> [type(e).__name__ for e in decoder.feed(body) + decoder.end()]
    ['StreamStarted', 'Usage', 'TextDelta', 'Finish', 'Usage', 'StreamEnd']
    >>> decoder.complete
    True
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes=max_line_bytes)
        self._phase = _Phase.AWAITING_START
        self._blocks: dict[int, _Block] = {}
        self._last_index = -1
        self._tool_calls = 0
        self._usage: dict[str, int] = {}
        self._reasoning_tokens: int | None = None
        self._events = 0
        self._name = ""

    def _on_event(self, event: SSEEvent, out: list[Event]) -> None:
        self._events += 1
        self._name = event.event
        if self._phase is _Phase.DONE:
            self._check_open(self._where())
        try:
            payload = json.loads(event.data)
        except ValueError:
            payload = parse_json(event.data, f"data of {self._where()}")  # raises, saying where
        except RecursionError:
            raise _too_deep(f"data of {self._where()}") from None
        if type(payload) is dict:
            kind = payload.get("type")
            name = kind if type(kind) is str else event.event
            self._name = name
            if name == "content_block_delta" and self._phase is _Phase.IN_MESSAGE:
                # The hot path: nearly every event is one. This is the table's
                # (IN_MESSAGE, content_block_delta) -> IN_MESSAGE move, minus the lookup.
                self._on_block_delta(payload, out)
                return
        else:
            name = event.event

        if name == "ping":
            out.append(KeepAlive("ping"))
            return
        if name == "error":
            out.append(_provider_error(payload, event.data))
            return
        if name not in _SEQUENCED or type(payload) is not dict:
            out.append(RawEvent(name, payload))
            return
        next_phase = _TRANSITIONS.get((self._phase, name))
        if next_phase is None:
            raise RemoteProtocolError(
                f"{self._where()} cannot come {self._phase.value}; "
                "the stream is corrupt or was spliced -- retry the request",
                kind="unexpected_event",
            )
        if name == "content_block_start":
            self._on_block_start(payload, out)
        elif name == "content_block_stop":
            self._on_block_stop(payload, out)
        elif name == "message_start":
            self._on_message_start(payload, out)
        elif name == "message_delta":
            self._on_message_delta(payload, out)
        else:  # message_stop
            if self._blocks:
                open_ = ", ".join(str(i) for i in sorted(self._blocks))
                raise RemoteProtocolError(
                    f"{self._where()} came while content block(s) {open_} are still open; "
                    "the answer may be incomplete -- retry the request",
                    kind="unexpected_event",
                )
            self._phase = next_phase
            self._finish(out)
            return
        self._phase = next_phase

    def _where(self) -> str:
        """Where the current event is, for error messages (built only when one is raised)."""
        return f"{self._name!r} (SSE event #{self._events})"

    def _field(self, obj: dict[str, object], key: str, kind: type[_T], within: str = "") -> _T:
        value = obj.get(key)
        # type() rather than isinstance(): JSON true is not an index.
        if type(value) is not kind:
            raise wrong_type(
                f"{self._where()}: field {within}{key!r}",
                value,
                kind,
                "the provider's event format changed or the stream is corrupt",
            )
        return value

    # -- message level

    def _on_message_start(self, payload: dict[str, object], out: list[Event]) -> None:
        message = self._field(payload, "message", dict)
        out.append(StreamStarted(optional_str(message, "id"), optional_str(message, "model")))
        content = message.get("content")
        if isinstance(content, list) and content:
            # The API starts with empty content; anything else is surfaced, not dropped.
            out.append(RawEvent("message_start.content", content))
        usage = message.get("usage")
        if isinstance(usage, dict) and self._merge_usage(usage):
            out.append(self._current_usage())

    def _on_message_delta(self, payload: dict[str, object], out: list[Event]) -> None:
        delta = payload.get("delta")
        if isinstance(delta, dict):
            reason = delta.get("stop_reason")
            if isinstance(reason, str):
                out.append(Finish(_STOP_REASONS.get(reason, FinishReason.OTHER), reason))
        usage = payload.get("usage")
        if isinstance(usage, dict) and self._merge_usage(usage):
            out.append(self._current_usage())

    def _merge_usage(self, usage: dict[str, object]) -> bool:
        changed = False
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if type(value) is int:
                self._usage[key] = value
                changed = True
        details = usage.get("output_tokens_details")
        if isinstance(details, dict):
            thinking = details.get("thinking_tokens")
            if type(thinking) is int:
                self._reasoning_tokens = thinking
                changed = True
        return changed

    def _current_usage(self) -> Usage:
        u = self._usage
        inputs = [u[k] for k in _USAGE_KEYS[:3] if k in u]
        return Usage(
            input_tokens=sum(inputs) if inputs else None,
            output_tokens=u.get("output_tokens"),
            cached_tokens=u.get("cache_read_input_tokens"),
            reasoning_tokens=self._reasoning_tokens,
        )

    # -- block level

    def _on_block_start(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "index", int)
        block = self._field(payload, "content_block", dict)
        if index <= self._last_index:
            raise RemoteProtocolError(
                f"{self._where()} opens block {index}, but block {self._last_index} was already "
                "opened and indexes only grow; the stream is corrupt -- retry the request",
                kind="unexpected_event",
            )
        if len(self._blocks) >= MAX_OPEN_BLOCKS:
            raise RemoteProtocolError(
                f"{self._where()} would open more than {MAX_OPEN_BLOCKS} content blocks at once "
                "(MAX_OPEN_BLOCKS); the API opens one at a time -- check the upstream",
                kind="too_many_blocks",
            )
        self._last_index = index
        block_type = block.get("type")
        kind = _KINDS.get(block_type, _Kind.OPAQUE) if isinstance(block_type, str) else _Kind.OPAQUE
        state = _Block(kind)
        self._blocks[index] = state
        if kind is _Kind.TEXT:
            text = block.get("text")
            if isinstance(text, str) and text:
                out.append(TextDelta(text))
        elif kind is _Kind.TOOL_USE:
            call_id = self._field(block, "id", str, "content_block.")
            name = self._field(block, "name", str, "content_block.")
            state.tool_index = self._tool_calls
            self._tool_calls += 1
            out.append(ToolCallStart(state.tool_index, call_id, name))
            initial = block.get("input")
            if isinstance(initial, dict) and initial:
                # Normally {} with the JSON streamed after; a non-empty start is its arguments.
                out.append(
                    ToolCallDelta(
                        state.tool_index,
                        json.dumps(initial, ensure_ascii=False, separators=(",", ":")),
                    )
                )
        elif kind is _Kind.THINKING:
            thinking = block.get("thinking")
            if isinstance(thinking, str) and thinking:
                out.append(ReasoningDelta(thinking))
            signature = block.get("signature")
            if isinstance(signature, str) and signature:
                out.append(ReasoningDelta("", signature=signature))
        else:
            out.append(RawEvent(f"content_block_start:{block_type}", payload))

    def _on_block_delta(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "index", int)
        delta = self._field(payload, "delta", dict)
        state = self._open_block(index)
        delta_type = delta.get("type")
        if state.kind is _Kind.OPAQUE or not isinstance(delta_type, str):
            out.append(RawEvent(f"content_block_delta:{delta_type}", payload))
            return
        expected = _DELTA_KINDS.get(delta_type)
        if expected is None:
            # citations_delta and future delta types.
            out.append(RawEvent(f"content_block_delta:{delta_type}", payload))
            return
        if expected is not state.kind:
            raise RemoteProtocolError(
                f"{self._where()} sends a {delta_type} into block {index}, which is a "
                f"{state.kind.value} block; the stream is corrupt -- retry the request",
                kind="unexpected_event",
            )
        if delta_type == "text_delta":
            text = self._field(delta, "text", str)
            if text:
                out.append(TextDelta(text))
        elif delta_type == "input_json_delta":
            partial = self._field(delta, "partial_json", str)
            if partial:
                out.append(ToolCallDelta(state.tool_index, partial))
        elif delta_type == "thinking_delta":
            thinking = self._field(delta, "thinking", str)
            if thinking:
                out.append(ReasoningDelta(thinking))
        else:  # signature_delta
            out.append(ReasoningDelta("", signature=self._field(delta, "signature", str)))

    def _on_block_stop(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "index", int)
        state = self._open_block(index)
        del self._blocks[index]
        if state.kind is _Kind.TOOL_USE:
            out.append(ToolCallEnd(state.tool_index))
        elif state.kind is _Kind.OPAQUE:
            out.append(RawEvent("content_block_stop", payload))

    def _open_block(self, index: int) -> _Block:
        state = self._blocks.get(index)
        if state is None:
            status = "was already stopped" if index <= self._last_index else "was never started"
            raise RemoteProtocolError(
                f"{self._where()} refers to content block {index}, which {status}; "
                "the stream is corrupt -- retry the request",
                kind="unexpected_event",
            )
        return state


def _provider_error(payload: object, data: str) -> ProviderError:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            message = error.get("message")
            return ProviderError(
                kind if isinstance(kind, str) else "error",
                message if isinstance(message, str) else data,
                raw=payload,
            )
    return ProviderError("error", payload if isinstance(payload, str) else data, raw=payload)


def _too_deep(where: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"{where} nests JSON deeper than Python can parse; the stream is corrupt "
        "or hostile -- check the upstream",
        kind="invalid_json",
    )
