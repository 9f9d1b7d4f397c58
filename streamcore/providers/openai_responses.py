"""The OpenAI Responses dialect: ``POST /v1/responses`` with ``"stream": true``.

Theory of operation
===================

The body is SSE; every event's ``data`` is a JSON object whose ``type`` names
it (the SSE ``event:`` line repeats it; the JSON ``type`` wins, the ``event:``
name is the fallback) and whose ``sequence_number`` counts the events of the
response from 0. A stream reads::

    response.created  (response.queued | response.in_progress)*
      ( response.output_item.added
          <the item's own events: content parts, text, arguments, reasoning>
        response.output_item.done )*
    response.completed | response.incomplete | response.failed

with ``error`` allowed anywhere before the end. Two small machines check it.

*The response machine* (:class:`_Phase`, :data:`_TRANSITIONS`): a table of
(phase, event type) -> next phase. An event type the table knows but not for
the current phase (``response.output_text.delta`` before ``response.created``)
raises ``RemoteProtocolError(kind="unexpected_event")``; the decoder stays
failed. The three terminal events emit :class:`~streamcore.events.StreamEnd`
and anything after them raises ``kind="event_after_end"``. Event types the
table does not know (``response.output_text.annotation.added``, the built-in
tools' ``response.web_search_call.*``, future ones) become
:class:`~streamcore.events.RawEvent`.

*The item machine*: each output item is opened by ``output_item.added`` and
closed by ``output_item.done``; its ``output_index`` must grow. Only open items
are remembered (at most :data:`MAX_OPEN_ITEMS`). An event for an item that is
not open, or that does not fit the item's kind (``output_text.delta`` into a
``function_call``), is ``kind="unexpected_event"``. Items of kinds streamcore
does not model (``web_search_call``, ``mcp_call``, ``image_generation_call``...)
are surfaced whole as :class:`RawEvent` -- added, every event about them, done.

Translation:

* ``response.created`` -> :class:`StreamStarted` (response id, model).
* ``message`` items: ``output_text.delta`` -> :class:`TextDelta`,
  ``refusal.delta`` -> :class:`Refusal`.
* ``reasoning`` items: ``reasoning_summary_text.delta`` and
  ``reasoning_text.delta`` -> :class:`ReasoningDelta`.
* ``function_call`` items -> :class:`ToolCallStart` (``call_id``, ``name``);
  ``function_call_arguments.delta`` -> :class:`ToolCallDelta`;
  ``function_call_arguments.done`` (or, failing that, the item's
  ``output_item.done``) -> :class:`ToolCallEnd`. **Index scheme:** a tool call's
  ``index`` is its ``output_index``, so the indexes of one response's calls
  grow but may have holes (a reasoning or message item before them). A call
  whose arguments only arrive whole (in ``.done`` or the item itself) gets them
  as one :class:`ToolCallDelta`.
* ``response.completed`` -> :class:`ToolCallEnd` for calls still open,
  :class:`Finish` (``TOOL_CALLS`` if the response made function calls, else
  ``STOP``; raw = the response ``status``), :class:`Usage`, :class:`StreamEnd`.
* ``response.incomplete`` -> the same, with :class:`Finish` from
  ``incomplete_details.reason`` (``max_output_tokens`` -> ``LENGTH``,
  ``content_filter`` -> ``CONTENT_FILTER``, others -> ``OTHER``).
* ``response.failed`` -> :class:`ProviderError` from ``response.error``
  (``code`` as the type), :class:`Usage` if any, then :class:`StreamEnd`.
  **Decision:** a failed response is *complete*: the provider ended the stream
  by its own word, nothing was lost in transit, and resuming cannot help. The
  :class:`ProviderError` comes first, so a stream machine ends in its
  provider-error state, not in "completed".
* ``error`` -> :class:`ProviderError` (``code`` as the type). It is not a
  terminal event: ``complete`` stays false unless one follows.
* Usage from ``response.usage``: ``input_tokens``, ``output_tokens``,
  ``input_tokens_details.cached_tokens``,
  ``output_tokens_details.reasoning_tokens``.

Also: ``data: [DONE]`` is not part of this API, but proxies that speak Chat
Completions append it; after the terminal event it is ignored, before it it is
surfaced as ``RawEvent("[DONE]", ...)`` (the stream is not complete). A known
field of the wrong type (``"output_index": "0"``) is ``kind="invalid_event"``.
One SSE event is atomic: when it breaks the grammar halfway, none of the events
already built from it are returned.

Sequence numbers and resuming
=============================

``sequence_number`` must grow from event to event (``kind="unexpected_event"``
otherwise); an event without one (some compatible servers) is accepted.
:attr:`OpenAIResponsesDecoder.last_sequence_number` is the number of the last
event decoded. A *background* response (``"background": true``) keeps running
when the connection drops, and can be streamed again from where it was cut::

    request = build_resume_request(decoder.response_id, decoder.last_sequence_number)
    decoder = decoder.resumed()      # knows the open items; skips replayed events

The resumed body starts in the middle of the response, so it must go through
:meth:`~OpenAIResponsesDecoder.resumed`, not a fresh decoder. Events numbered
at or below the cursor are skipped silently (a server that replays from the
start gives the same events as one that honours ``starting_after``).

Prefill: the Responses API cannot continue a final assistant message, so
:func:`build_request` sends it as an ordinary assistant input item; the resume
logic adds its own instruction to continue.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

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
    encode_body,
    optional_int,
    parse_json,
    wrong_type,
)
from streamcore.providers.openai_chat import (
    _NO_MESSAGE,
    _headers,
    _show,
    provider_error,
)
from streamcore.request import ChatRequest, HTTPRequest
from streamcore.sse import SSEEvent

__all__ = [
    "DEFAULT_BASE_PATH",
    "MAX_OPEN_ITEMS",
    "OpenAIResponsesDecoder",
    "build_request",
    "build_resume_request",
    "responses_error",
    "responses_usage",
]

_T = TypeVar("_T")

DEFAULT_BASE_PATH = "/v1"

MAX_OPEN_ITEMS = 256
"""Output items open at once; the API opens them one after another, so this only stops abuse."""


# --------------------------------------------------------------------------- requests


def build_request(
    request: ChatRequest, *, api_key: str | None = None, base_path: str = DEFAULT_BASE_PATH
) -> HTTPRequest:
    """The streaming ``POST {base_path}/responses`` request for ``request``.

    ``request.system`` becomes ``instructions``; messages become ``input`` items
    (``system`` messages stay in place with role ``system``); an assistant turn's
    tool calls become ``function_call`` items after its text, and a tool result a
    ``function_call_output`` item. An assistant turn with neither text nor tool
    calls is left out. A final assistant message (a prefill) is sent as an
    ordinary assistant item: the API cannot continue it. Tools use the
    Responses function shape with ``"strict": false`` (strict mode rejects
    schemas that do not mark every property required).

    The Responses API has no stop sequences: a request with ``stop`` raises
    ``LocalProtocolError(kind="unsupported_parameter")`` rather than silently
    answering without them. The key travels only in the ``authorization``
    header, which ``repr`` redacts.

    >>> from streamcore.request import ChatRequest, Message
    >>> req = build_request(
    ...     ChatRequest("gpt-5-mini", (Message("user", "Hi"),), system="Be brief."), api_key="sk-1"
    ... )
    >>> (req.method, req.target)
    ('POST', '/v1/responses')
    >>> req.body.decode()
    '{"model":"gpt-5-mini","instructions":"Be brief.","input":[{"role":"user","content":"Hi"}],...'
    >>> "sk-1" in repr(req)
    False
    """
    if request.stop:
        raise LocalProtocolError(
            "the Responses API has no stop sequences; leave ChatRequest.stop empty, "
            "or use the openai-chat dialect (Chat Completions), which has them",
            kind="unsupported_parameter",
        )
    items: list[dict[str, object]] = []
    for position, message in enumerate(request.messages):
        if message.role == "tool":
            if message.tool_call_id is None:
                raise LocalProtocolError(
                    f"messages[{position}] is a tool result without tool_call_id; "
                    "set it to the id of the ToolCall it answers",
                    kind="missing_tool_call_id",
                )
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id,
                    "output": message.content,
                }
            )
            continue
        if message.content or message.role != "assistant":
            items.append({"role": message.role, "content": message.content})
        for call in message.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )

    body: dict[str, object] = {"model": request.model}
    if request.system:
        body["instructions"] = request.system
    body["input"] = items
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        tools: list[dict[str, object]] = []
        for tool in request.tools:
            spec: dict[str, object] = {"type": "function", "name": tool.name}
            if tool.description:
                spec["description"] = tool.description
            spec["parameters"] = dict(tool.parameters)
            spec["strict"] = False
            tools.append(spec)
        body["tools"] = tools
    body["stream"] = True
    body.update(request.extra)

    return HTTPRequest(
        method="POST",
        target=base_path.rstrip("/") + "/responses",
        headers=_headers(api_key, json_body=True),
        body=encode_body(body),
    )


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def build_resume_request(
    response_id: str,
    starting_after: int,
    *,
    api_key: str | None = None,
    base_path: str = DEFAULT_BASE_PATH,
) -> HTTPRequest:
    """``GET {base_path}/responses/{id}?stream=true&starting_after=N``: stream a response again.

    Works for *background* responses (created with ``"background": true``),
    which keep running when the connection drops. The body holds the events
    numbered after ``starting_after``; decode it with
    :meth:`OpenAIResponsesDecoder.resumed`.

    >>> req = build_resume_request("resp_68af4030592c81938ec0a5fbab4a3e9f", 41, api_key="sk-1")
    >>> (req.method, req.target)
    ('GET', '/v1/responses/resp_68af4030592c81938ec0a5fbab4a3e9f?stream=true&starting_after=41')
    """
    # A path segment needs no escaping when it only holds unreserved characters,
    # and OpenAI's ids (resp_ + hex) always do; anything else is refused.
    if not response_id or not _ID_CHARS.issuperset(response_id):
        raise LocalProtocolError(
            f"response id {response_id!r} is empty or holds characters other than letters, "
            "digits and -._~; pass the id from response.created (StreamStarted.response_id)",
            kind="invalid_response_id",
        )
    if type(starting_after) is not int or starting_after < 0:
        raise LocalProtocolError(
            f"starting_after must be an event's sequence number (an int >= 0), got "
            f"{starting_after!r}; pass OpenAIResponsesDecoder.last_sequence_number",
            kind="invalid_starting_after",
        )
    return HTTPRequest(
        method="GET",
        target=(
            f"{base_path.rstrip('/')}/responses/{response_id}"
            f"?stream=true&starting_after={starting_after}"
        ),
        headers=_headers(api_key, json_body=False),
        body=b"",
    )


# --------------------------------------------------------------------------- decoder


class _Phase(enum.Enum):
    """Where the response stands."""

    AWAITING_START = "before response.created"
    IN_PROGRESS = "while the response is in progress"
    DONE = "after the response's terminal event"


_ITEM_EVENTS = (
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.refusal.delta",
    "response.refusal.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
)

_TRANSITIONS: dict[tuple[_Phase, str], _Phase] = {
    (_Phase.AWAITING_START, "response.created"): _Phase.IN_PROGRESS,
    (_Phase.IN_PROGRESS, "response.queued"): _Phase.IN_PROGRESS,
    (_Phase.IN_PROGRESS, "response.in_progress"): _Phase.IN_PROGRESS,
    **{(_Phase.IN_PROGRESS, name): _Phase.IN_PROGRESS for name in _ITEM_EVENTS},
    (_Phase.IN_PROGRESS, "response.completed"): _Phase.DONE,
    (_Phase.IN_PROGRESS, "response.incomplete"): _Phase.DONE,
    (_Phase.IN_PROGRESS, "response.failed"): _Phase.DONE,
}
"""The legal moves of the response machine; ``error`` is legal in every phase but DONE."""

_SEQUENCED = frozenset(name for _, name in _TRANSITIONS)


class _Kind(enum.Enum):
    MESSAGE = "message"
    FUNCTION_CALL = "function_call"
    REASONING = "reasoning"
    OPAQUE = "opaque"


_KINDS = {
    "message": _Kind.MESSAGE,
    "function_call": _Kind.FUNCTION_CALL,
    "reasoning": _Kind.REASONING,
}

# Which item kinds each item-level event may refer to (output_item.done: any).
_FITS: dict[str, frozenset[_Kind]] = {
    "response.content_part.added": frozenset({_Kind.MESSAGE, _Kind.REASONING}),
    "response.content_part.done": frozenset({_Kind.MESSAGE, _Kind.REASONING}),
    "response.output_text.delta": frozenset({_Kind.MESSAGE}),
    "response.output_text.done": frozenset({_Kind.MESSAGE}),
    "response.refusal.delta": frozenset({_Kind.MESSAGE}),
    "response.refusal.done": frozenset({_Kind.MESSAGE}),
    "response.function_call_arguments.delta": frozenset({_Kind.FUNCTION_CALL}),
    "response.function_call_arguments.done": frozenset({_Kind.FUNCTION_CALL}),
    "response.reasoning_summary_part.added": frozenset({_Kind.REASONING}),
    "response.reasoning_summary_part.done": frozenset({_Kind.REASONING}),
    "response.reasoning_summary_text.delta": frozenset({_Kind.REASONING}),
    "response.reasoning_summary_text.done": frozenset({_Kind.REASONING}),
    "response.reasoning_text.delta": frozenset({_Kind.REASONING}),
    "response.reasoning_text.done": frozenset({_Kind.REASONING}),
}

_ANY_KIND = frozenset(_Kind)

_BROKEN_HINT = (
    "the stream is corrupt or the API's format changed -- retry the request, "
    "or report the server's output"
)

_INCOMPLETE_REASONS = {
    "max_output_tokens": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}


@dataclass(slots=True)
class _Item:
    kind: _Kind
    arguments_seen: bool = False
    """A function call received some arguments (so a whole copy later is not sent again)."""
    ended: bool = False
    """A function call's ToolCallEnd was emitted."""


class OpenAIResponsesDecoder(SSEJSONDecoder):
    """Decode a Responses API stream body into streamcore events.

    >>> def event(data: str) -> bytes:
    ...     return b"data: " + data.encode() + b"\\n\\n"
    >>> body = b"".join([
    ...     event('{"type":"response.created","sequence_number":0,"response":'
    ...           '{"id":"resp_1","model":"gpt-5-mini","status":"in_progress","output":[]}}'),
    ...     event('{"type":"response.output_item.added","sequence_number":1,"output_index":0,'
    ...           '"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}'),
    ...     event('{"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1",'
    ...           '"output_index":0,"content_index":0,"delta":"Hi"}'),
    ...     event('{"type":"response.output_item.done","sequence_number":3,"output_index":0,'
    ...           '"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}'),
    ...     event('{"type":"response.completed","sequence_number":4,"response":{"id":"resp_1",'
    ...           '"status":"completed","usage":{"input_tokens":9,"output_tokens":2}}}'),
    ... ])
    >>> decoder = OpenAIResponsesDecoder()
    >>> [type(e).__name__ for e in decoder.feed(body) + decoder.end()]
    ['StreamStarted', 'TextDelta', 'Finish', 'Usage', 'StreamEnd']
    >>> (decoder.complete, decoder.last_sequence_number)
    (True, 4)
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes=max_line_bytes)
        self._max_line_bytes = max_line_bytes
        self._phase = _Phase.AWAITING_START
        self._items: dict[int, _Item] = {}
        self._last_index = -1
        self._made_calls = False
        self._response_id: str | None = None
        self._last_sequence: int | None = None
        self._skip_through: int | None = None
        self._events = 0
        self._name = ""

    @property
    def response_id(self) -> str | None:
        """The response's id, once ``response.created`` has arrived."""
        return self._response_id

    @property
    def last_sequence_number(self) -> int | None:
        """The ``sequence_number`` of the last event decoded (``None`` before any).

        Pass it as ``starting_after`` to :func:`build_resume_request`.
        """
        return self._last_sequence

    def resumed(self) -> OpenAIResponsesDecoder:
        """A fresh decoder for the body of :func:`build_resume_request`, continuing this one.

        It knows which output items are open, so the resumed events (which
        start in the middle of the response) fit; it skips events numbered at
        or below :attr:`last_sequence_number`, and emits no second
        :class:`StreamStarted`. This decoder is left as it is.

        Raises ``LocalProtocolError`` when there is nothing to resume from: the
        response is already complete (``kind="nothing_to_resume"``), or no
        ``response.created`` or no sequence number has arrived yet
        (``kind="no_resume_point"``; send the original request again instead).
        """
        if self._complete:
            raise LocalProtocolError(
                "the response is complete: there is nothing left to stream",
                kind="nothing_to_resume",
            )
        if self._response_id is None or self._last_sequence is None:
            raise LocalProtocolError(
                "no response.created with an id, or no sequence number, arrived before the "
                "cut, so there is no point to resume from; send the original request again",
                kind="no_resume_point",
            )
        twin = OpenAIResponsesDecoder(max_line_bytes=self._max_line_bytes)
        twin._phase = _Phase.IN_PROGRESS
        twin._items = {index: replace(item) for index, item in self._items.items()}
        twin._last_index = self._last_index
        twin._made_calls = self._made_calls
        twin._response_id = self._response_id
        twin._last_sequence = self._last_sequence
        twin._skip_through = self._last_sequence
        return twin

    # -- dispatch

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
        self._name = event.event
        data = event.data
        if data.startswith("[DONE]"):
            # Not part of this API, but proxies that speak Chat Completions append it.
            if self._phase is not _Phase.DONE:
                out.append(RawEvent("[DONE]", data))
            return
        if self._phase is _Phase.DONE:
            self._check_open(self._where())
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
        if type(payload) is not dict:
            if event.event == "error":
                out.append(provider_error(payload, payload))
            else:
                out.append(RawEvent(event.event, payload))
            return
        kind = payload.get("type")
        name = kind if type(kind) is str else event.event
        self._name = name

        sequence = payload.get("sequence_number")
        if sequence is not None:
            if type(sequence) is not int:
                raise self._broken(f"'sequence_number' is {_show(sequence)}, expected an integer")
            if self._skip_through is not None and sequence <= self._skip_through:
                return  # replayed on resume: already decoded before the cut
            if self._last_sequence is not None and sequence <= self._last_sequence:
                raise self._broken(
                    f"sequence_number {sequence} does not follow {self._last_sequence}",
                    kind="unexpected_event",
                )

        if name == "response.output_text.delta" and self._phase is _Phase.IN_PROGRESS:
            # The hot path: nearly every event is one. This is the table's
            # (IN_PROGRESS, output_text.delta) -> IN_PROGRESS move, minus the lookup.
            item = self._item(payload, name)
            if item is None:
                out.append(RawEvent(name, payload))
            else:
                text = self._field(payload, "delta", str)
                if text:
                    out.append(TextDelta(text))
        elif name == "error":
            nested = payload.get("error")
            if isinstance(nested, dict):
                out.append(provider_error(nested, payload))
            else:
                out.append(responses_error(payload, payload))
        elif name not in _SEQUENCED:
            out.append(RawEvent(name, payload))
        else:
            next_phase = _TRANSITIONS.get((self._phase, name))
            if next_phase is None:
                raise self._broken(f"it cannot come {self._phase.value}", kind="unexpected_event")
            _HANDLERS[name](self, payload, out)
            self._phase = next_phase
        if sequence is not None:
            self._last_sequence = sequence

    def _where(self) -> str:
        """Where the current event is, for error messages (built only when one is raised)."""
        return f"{_show(self._name)} (SSE event #{self._events})"

    def _broken(self, what: str, kind: str = "invalid_event") -> RemoteProtocolError:
        return RemoteProtocolError(f"{self._where()}: {what}; {_BROKEN_HINT}", kind=kind)

    def _field(self, obj: dict[str, object], key: str, kind: type[_T]) -> _T:
        value = obj.get(key)
        # type() rather than isinstance(): JSON true is not an index.
        if type(value) is not kind:
            raise wrong_type(f"{self._where()}: field {key!r}", value, kind, _BROKEN_HINT)
        return value

    def _item(self, payload: dict[str, object], name: str) -> _Item | None:
        """The open item an item-level event refers to; ``None`` for an opaque one."""
        index = self._field(payload, "output_index", int)
        item = self._items.get(index)
        if item is None:
            status = "was already done" if index <= self._last_index else "was never added"
            raise self._broken(
                f"it refers to output item {index}, which {status}", kind="unexpected_event"
            )
        if item.kind is _Kind.OPAQUE:
            return None
        if item.kind not in _FITS.get(name, _ANY_KIND):
            raise self._broken(
                f"it does not fit output item {index}, which is a {item.kind.value}",
                kind="unexpected_event",
            )
        return item

    # -- response level

    def _on_created(self, payload: dict[str, object], out: list[Event]) -> None:
        response = self._field(payload, "response", dict)
        response_id = response.get("id")
        model = response.get("model")
        self._response_id = response_id if type(response_id) is str and response_id else None
        out.append(StreamStarted(self._response_id, model if type(model) is str else None))
        output = response.get("output")
        if isinstance(output, list) and output:
            # The API starts with an empty output; anything else is surfaced, not dropped.
            out.append(RawEvent("response.created.output", output))

    def _on_status(self, payload: dict[str, object], out: list[Event]) -> None:
        """``response.queued`` / ``response.in_progress``: progress reports, not content."""

    def _on_completed(self, payload: dict[str, object], out: list[Event]) -> None:
        response = self._field(payload, "response", dict)
        self._close_calls(out)
        status = response.get("status")
        raw = status if type(status) is str else "completed"
        out.append(Finish(FinishReason.TOOL_CALLS if self._made_calls else FinishReason.STOP, raw))
        self._end_response(response, out)

    def _on_incomplete(self, payload: dict[str, object], out: list[Event]) -> None:
        response = self._field(payload, "response", dict)
        self._close_calls(out)
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        raw = reason if type(reason) is str else None
        out.append(Finish(_INCOMPLETE_REASONS.get(raw or "", FinishReason.OTHER), raw))
        self._end_response(response, out)

    def _on_failed(self, payload: dict[str, object], out: list[Event]) -> None:
        response = self._field(payload, "response", dict)
        error = response.get("error")
        if not isinstance(error, dict):
            error = {"code": "response_failed", "message": "the response failed without an error"}
        out.append(responses_error(error, payload))
        self._end_response(response, out)

    def _end_response(self, response: dict[str, object], out: list[Event]) -> None:
        usage = response.get("usage")
        if isinstance(usage, dict):
            counts = responses_usage(usage)
            if counts is not None:
                out.append(counts)
        self._items.clear()
        self._finish(out)

    def _close_calls(self, out: list[Event]) -> None:
        for index in sorted(self._items):
            item = self._items[index]
            if item.kind is _Kind.FUNCTION_CALL and not item.ended:
                item.ended = True
                out.append(ToolCallEnd(index))

    # -- item level

    def _on_item_added(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "output_index", int)
        item = self._field(payload, "item", dict)
        if index <= self._last_index:
            raise self._broken(
                f"it adds output item {index}, but item {self._last_index} was already added "
                "and indexes only grow",
                kind="unexpected_event",
            )
        if len(self._items) >= MAX_OPEN_ITEMS:
            raise self._broken(
                f"it would open more than {MAX_OPEN_ITEMS} output items at once "
                "(MAX_OPEN_ITEMS); the API opens them one after another",
                kind="too_many_items",
            )
        item_type = item.get("type")
        kind = _KINDS.get(item_type, _Kind.OPAQUE) if type(item_type) is str else _Kind.OPAQUE
        state = _Item(kind)
        if kind is _Kind.FUNCTION_CALL:
            call_id = item.get("call_id")
            if not (type(call_id) is str and call_id):
                call_id = self._field(item, "id", str)
            name = self._field(item, "name", str)
            self._made_calls = True
            out.append(ToolCallStart(index, call_id, name))
            arguments = item.get("arguments")
            if type(arguments) is str and arguments:
                state.arguments_seen = True
                out.append(ToolCallDelta(index, arguments))
        elif kind is _Kind.OPAQUE:
            out.append(RawEvent(f"response.output_item.added:{item_type}", payload))
        else:
            content = item.get("content")
            if isinstance(content, list) and content:
                out.append(RawEvent("response.output_item.added.content", content))
        self._last_index = index
        self._items[index] = state

    def _on_item_done(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "output_index", int)
        item = self._item(payload, "response.output_item.done")
        del self._items[index]
        if item is None:
            out.append(RawEvent("response.output_item.done", payload))
        elif item.kind is _Kind.FUNCTION_CALL and not item.ended:
            done = payload.get("item")
            arguments = done.get("arguments") if isinstance(done, dict) else None
            if not item.arguments_seen and type(arguments) is str and arguments:
                out.append(ToolCallDelta(index, arguments))
            out.append(ToolCallEnd(index))

    def _on_part_added(self, payload: dict[str, object], out: list[Event]) -> None:
        if self._item(payload, "response.content_part.added") is None:
            out.append(RawEvent("response.content_part.added", payload))
            return
        part = self._field(payload, "part", dict)
        part_type = part.get("type")
        key, make = _PARTS.get(part_type, ("", None)) if type(part_type) is str else ("", None)
        if make is None:
            out.append(RawEvent(f"response.content_part.added:{part_type}", payload))
            return
        text = part.get(key)
        if type(text) is str and text:
            # Parts open empty and fill by deltas; a part that opens with text is surfaced.
            out.append(make(text))

    def _on_refusal(self, payload: dict[str, object], out: list[Event]) -> None:
        if self._item(payload, "response.refusal.delta") is None:
            out.append(RawEvent("response.refusal.delta", payload))
            return
        text = self._field(payload, "delta", str)
        if text:
            out.append(Refusal(text))

    def _on_reasoning(self, payload: dict[str, object], out: list[Event]) -> None:
        name = self._name
        if self._item(payload, name) is None:
            out.append(RawEvent(name, payload))
            return
        text = self._field(payload, "delta", str)
        if text:
            out.append(ReasoningDelta(text))

    def _on_arguments(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "output_index", int)
        item = self._item(payload, "response.function_call_arguments.delta")
        if item is None:
            out.append(RawEvent("response.function_call_arguments.delta", payload))
            return
        if item.ended:
            raise self._broken(
                f"it streams arguments into tool call {index} after they were done",
                kind="unexpected_event",
            )
        piece = self._field(payload, "delta", str)
        if piece:
            item.arguments_seen = True
            out.append(ToolCallDelta(index, piece))

    def _on_arguments_done(self, payload: dict[str, object], out: list[Event]) -> None:
        index = self._field(payload, "output_index", int)
        item = self._item(payload, "response.function_call_arguments.done")
        if item is None:
            out.append(RawEvent("response.function_call_arguments.done", payload))
            return
        if item.ended:
            raise self._broken(
                f"the arguments of tool call {index} are done twice", kind="unexpected_event"
            )
        arguments = payload.get("arguments")
        if not item.arguments_seen and type(arguments) is str and arguments:
            out.append(ToolCallDelta(index, arguments))
        item.ended = True
        out.append(ToolCallEnd(index))

    def _on_item_event(self, payload: dict[str, object], out: list[Event]) -> None:
        """The ``.done`` events of parts and texts: checked, but they repeat what streamed."""
        name = self._name
        if self._item(payload, name) is None:
            out.append(RawEvent(name, payload))


_Handler = Callable[[OpenAIResponsesDecoder, dict[str, object], list[Event]], None]
_D = OpenAIResponsesDecoder
_HANDLERS: dict[str, _Handler] = {
    "response.created": _D._on_created,
    "response.queued": _D._on_status,
    "response.in_progress": _D._on_status,
    "response.completed": _D._on_completed,
    "response.incomplete": _D._on_incomplete,
    "response.failed": _D._on_failed,
    "response.output_item.added": _D._on_item_added,
    "response.output_item.done": _D._on_item_done,
    "response.content_part.added": _D._on_part_added,
    "response.content_part.done": _D._on_item_event,
    "response.output_text.done": _D._on_item_event,
    "response.refusal.delta": _D._on_refusal,
    "response.refusal.done": _D._on_item_event,
    "response.function_call_arguments.delta": _D._on_arguments,
    "response.function_call_arguments.done": _D._on_arguments_done,
    "response.reasoning_summary_part.added": _D._on_item_event,
    "response.reasoning_summary_part.done": _D._on_item_event,
    "response.reasoning_summary_text.delta": _D._on_reasoning,
    "response.reasoning_summary_text.done": _D._on_item_event,
    "response.reasoning_text.delta": _D._on_reasoning,
    "response.reasoning_text.done": _D._on_item_event,
}
"""What each event of the table does (the output_text.delta hot path is inlined)."""


def _reasoning_part(text: str) -> Event:
    return ReasoningDelta(text)


# Content part type -> (the key holding its text, the event its text becomes).
_PARTS: dict[str, tuple[str, Callable[[str], Event]]] = {
    "output_text": ("text", TextDelta),
    "refusal": ("refusal", Refusal),
    "reasoning_text": ("text", _reasoning_part),
}


def responses_error(error: object, raw: object) -> ProviderError:
    """A Responses error (``{"code", "message"}``) as a :class:`ProviderError`.

    The type is the error's ``code`` (``server_error``, ``rate_limit_exceeded``),
    else its ``type`` unless that is just ``"error"``, else ``"error"``.

    >>> responses_error({"type": "error", "code": "server_error", "message": "Try again.",
    ...     "param": None, "sequence_number": 7}, None)
    ProviderError(type='server_error', message='Try again.', raw=None)
    """
    if not isinstance(error, dict):
        return provider_error(error, raw)
    code = error.get("code")
    kind = error.get("type")
    if not (isinstance(code, str) and code):
        code = kind if isinstance(kind, str) and kind and kind != "error" else "error"
    message = error.get("message")
    return ProviderError(code, message if isinstance(message, str) else _NO_MESSAGE, raw=raw)


def responses_usage(usage: dict[str, object]) -> Usage | None:
    """A Responses ``usage`` object as :class:`Usage`, or ``None`` if it has no counts.

    >>> responses_usage({"input_tokens": 2100, "input_tokens_details": {"cached_tokens": 2048},
    ...     "output_tokens": 420, "output_tokens_details": {"reasoning_tokens": 384},
    ...     "total_tokens": 2520})
    Usage(input_tokens=2100, output_tokens=420, cached_tokens=2048, reasoning_tokens=384)
    """
    counts = Usage(
        input_tokens=optional_int(usage, "input_tokens"),
        output_tokens=optional_int(usage, "output_tokens"),
        cached_tokens=optional_int(usage.get("input_tokens_details"), "cached_tokens"),
        reasoning_tokens=optional_int(usage.get("output_tokens_details"), "reasoning_tokens"),
    )
    return None if counts == Usage() else counts
