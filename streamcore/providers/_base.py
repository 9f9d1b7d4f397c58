"""The plumbing every dialect decoder shares.

A dialect decoder turns a provider's response body into :mod:`streamcore.events`.
Its API mirrors the framing decoders (:mod:`streamcore.framing`):

* ``feed(data: bytes) -> list[Event]``;
* ``end() -> list[Event]`` once the body is over;
* ``complete`` -- whether the provider's terminal marker (:class:`StreamEnd`)
  was seen. A body that ended with ``complete`` false was cut off.

Error rule (same as framing): a chunk that holds good events and then garbage
returns the good events; the next call raises the stored
:class:`~streamcore.RemoteProtocolError`, and every call after it too.

Besides the decoder bases, this module holds the small helpers more than one
dialect needs, so each behaves the same everywhere: the request side
(:func:`encode_body`, :func:`check_header_value`, :func:`arguments_object`,
:func:`function_tools`, :func:`split_system`) and the reading side (:func:`optional_str`,
:func:`optional_int`, :func:`wrong_type`).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.events import Event, KeepAlive, StreamEnd
from streamcore.framing import DEFAULT_MAX_LINE_BYTES, FramingDecoder
from streamcore.request import ChatRequest, Message, Tool
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

__all__ = [
    "DialectDecoder",
    "SSEJSONDecoder",
    "arguments_object",
    "check_header_value",
    "encode_body",
    "function_tools",
    "optional_int",
    "optional_str",
    "parse_json",
    "split_system",
    "wrong_type",
]

_SNIPPET = 80


def parse_json(text: str, where: str) -> object:
    """``json.loads`` that fails with a :class:`RemoteProtocolError` naming ``where``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than Python's parser allows is garbage too.
        snippet = text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."
        raise RemoteProtocolError(
            f"{where} is not valid JSON ({exc}): {snippet!r}", kind="invalid_json"
        ) from None


class DialectDecoder(FramingDecoder[Event]):
    """Base of every dialect decoder: the error rule, end-of-input and completion.

    ``feed`` and the lifecycle (end once; a failed decoder keeps raising) are
    :class:`~streamcore.framing.FramingDecoder`'s.
    """

    def __init__(self) -> None:
        super().__init__()
        self._complete = False
        self.truncated = False
        """True when the body ended inside a framing item (a drop mid-event)."""

    @property
    def complete(self) -> bool:
        """Whether the provider's terminal marker has been seen."""
        return self._complete

    def end(self) -> list[Event]:
        """Signal the end of the body; returns the events only the end completes."""
        self._begin_end()
        return self._collect(lambda _, out: self._end(out), b"")

    def _finish(self, out: list[Event]) -> None:
        """Emit the terminal marker (once)."""
        if not self._complete:
            self._complete = True
            out.append(StreamEnd())

    def _check_open(self, what: str) -> None:
        """Raise if content arrives after the terminal marker."""
        if self._complete:
            raise RemoteProtocolError(
                f"{what} arrived after the stream's terminal marker", kind="event_after_end"
            )

    @abc.abstractmethod
    def _end(self, out: list[Event]) -> None: ...


class SSEJSONDecoder(DialectDecoder):
    """A dialect framed as SSE whose events carry JSON in ``data``.

    Subclasses implement :meth:`_on_event`; comments become :class:`KeepAlive`.
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__()
        self._sse = SSEDecoder(max_line_bytes=max_line_bytes)

    def _feed(self, data: bytes, out: list[Event]) -> None:
        for item in self._sse.feed(data):
            if type(item) is SSEComment:
                out.append(KeepAlive(item.text))
            else:
                assert type(item) is SSEEvent
                self._on_event(item, out)

    def _end(self, out: list[Event]) -> None:
        eoi = self._sse.end()
        self.truncated = eoi.truncated
        for item in eoi.items:
            if type(item) is SSEEvent:
                self._on_event(item, out)

    @abc.abstractmethod
    def _on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """Translate one SSE event (``event.data`` usually holds JSON) into events."""


# --------------------------------------------------------------------------- request side


def encode_body(body: Mapping[str, object]) -> bytes:
    """A request body as compact UTF-8 JSON; :class:`LocalProtocolError` if it is not JSON.

    >>> encode_body({"model": "gpt-4o", "stream": True, "messages": [{"content": "héllo"}]})
    b'{"model":"gpt-4o","stream":true,"messages":[{"content":"h\\xc3\\xa9llo"}]}'
    """
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(
            f"request body cannot be encoded as JSON ({exc}); check request.extra and tool "
            "parameters for values that are not JSON (sets, bytes, NaN) or lone surrogates",
            kind="invalid_body",
        ) from None


def split_system(request: ChatRequest) -> tuple[list[str], list[Message]]:
    """The system texts (``request.system``, then ``system`` messages in order) and the rest.

    For the APIs that take the system prompt apart from the turns (Anthropic, Gemini).

    >>> split_system(ChatRequest("m", (Message("system", "Be brief."), Message("user", "Hi")),
    ...     system="You are terse."))
    (['You are terse.', 'Be brief.'], [Message(role='user', content='Hi', tool_calls=(), \
tool_call_id=None)])
    """
    system_parts = [request.system] if request.system else []
    messages: list[Message] = []
    for message in request.messages:
        if message.role == "system":
            system_parts.append(message.content)
        else:
            messages.append(message)
    return system_parts, messages


def check_header_value(value: str, what: str) -> None:
    """Refuse a header value (an API key) that would split the HTTP header.

    The message names ``what`` but never echoes the value: it is a credential.

    >>> check_header_value("sk-test\\n", "api_key")
    Traceback (most recent call last):
    ...
    streamcore._errors.LocalProtocolError: api_key contains a line break or NUL, ...
    """
    if any(c in value for c in "\r\n\0"):
        raise LocalProtocolError(
            f"{what} contains a line break or NUL, which would split the HTTP header; "
            "check where the key was read from",
            kind="invalid_header_value",
        )


def arguments_object(arguments: str, name: str, field: str) -> object:
    """A tool call's streamed ``arguments`` as the JSON object ``field`` must hold.

    Blank arguments are ``{}``; anything but a JSON object raises
    :class:`LocalProtocolError` (``field`` names where the provider wants it).

    >>> arguments_object('{"city": "Paris"}', "get_weather", "Gemini's functionCall.args")
    {'city': 'Paris'}
    >>> arguments_object("", "get_time", "Gemini's functionCall.args")
    {}
    """
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise LocalProtocolError(
            f"arguments of the {name!r} tool call are not a JSON object; {field} must be "
            "one: pass the arguments exactly as the model sent them",
            kind="invalid_tool_arguments",
        )
    return value


def function_tools(tools: Sequence[Tool]) -> list[dict[str, object]]:
    """``tools`` in the ``{"type": "function", "function": {...}}`` form (OpenAI, Ollama).

    >>> function_tools([Tool("get_time", parameters={"type": "object"})])
    [{'type': 'function', 'function': {'name': 'get_time', 'parameters': {'type': 'object'}}}]
    """
    specs: list[dict[str, object]] = []
    for tool in tools:
        function: dict[str, object] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = dict(tool.parameters)
        specs.append({"type": "function", "function": function})
    return specs


# --------------------------------------------------------------------------- reading side


def optional_str(obj: Mapping[str, object], key: str) -> str | None:
    """``obj[key]`` if it is a string, else ``None`` (missing or of another type)."""
    value = obj.get(key)
    return value if isinstance(value, str) else None


def optional_int(obj: object, key: str) -> int | None:
    """``obj[key]`` if ``obj`` is a mapping and the value an int (not a bool), else ``None``.

    >>> optional_int({"prompt_tokens": 12, "cached": True}, "prompt_tokens")
    12
    >>> optional_int({"cached": True}, "cached"), optional_int(None, "prompt_tokens")
    (None, None)
    """
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    return value if type(value) is int else None


def wrong_type(what: str, value: object, expected: type, hint: str) -> RemoteProtocolError:
    """The error for a field of the wrong type: ``what`` is it, ``hint`` what to suspect.

    >>> str(wrong_type("line 3: message", None, dict, "check the server"))
    'line 3: message is missing, expected a dict; check the server'
    """
    got = "missing" if value is None else f"a {type(value).__name__}"
    return RemoteProtocolError(
        f"{what} is {got}, expected a {expected.__name__}; {hint}", kind="invalid_event"
    )
