"""The Ollama dialect: ``POST /api/chat`` streaming newline-delimited JSON.

Theory of operation
===================

Every line of the body is one JSON object (:mod:`streamcore.ndjson`)::

    {"model":"llama3.2","created_at":"...","message":{"role":"assistant","content":"The"},"done":false}
    ...
    {"model":"llama3.2","created_at":"...","message":{"role":"assistant","content":""},
     "done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":282,...}

or ``{"error": "..."}`` when the model fails mid-stream. The decoder is a
two-phase machine (:data:`_TRANSITIONS`): STREAMING until the line with
``"done": true`` (the terminal marker), DONE after it. Any line after DONE
raises ``RemoteProtocolError(kind="event_after_end")``.

Translation of each line, in this order:

* the first line -> :class:`StreamStarted` (no response id; ``model``);
* ``message.thinking`` -> :class:`ReasoningDelta`;
* ``message.content`` -> :class:`TextDelta`;
* ``message.tool_calls`` -> per call :class:`ToolCallStart`, one
  :class:`ToolCallDelta` with the compact JSON of ``function.arguments`` (Ollama
  sends each call whole, with its arguments as an object) and
  :class:`ToolCallEnd`. ``index`` counts the calls of the stream (0, 1, ...);
  the id is the call's ``id`` when the server gives one (recent versions do),
  else ``"ollama-call-{index}"``;
* on ``done``: :class:`Finish` from ``done_reason`` (``stop`` -> STOP, or
  TOOL_CALLS when the answer called tools, since Ollama says ``stop`` then too;
  ``length`` -> LENGTH; ``load``/``unload`` and others -> OTHER; a missing
  ``done_reason``, as older servers send, -> STOP with ``raw=None``), then
  :class:`Usage` (``prompt_eval_count`` -> input, ``eval_count`` -> output), then
  :class:`StreamEnd`.
* ``{"error": ...}`` -> :class:`ProviderError` (the stream then ends without
  ``done``, so ``complete`` stays false).
* A line that is not an object, or has neither ``message`` nor ``done``, ->
  :class:`RawEvent`. A ``message`` field of the wrong type (``content`` not a
  string) is a grammar break: ``kind="invalid_event"``.
"""

from __future__ import annotations

import enum
import json
from typing import TypeVar

from streamcore.events import (
    Event,
    Finish,
    FinishReason,
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
from streamcore.ndjson import NDJSONDecoder
from streamcore.providers._base import (
    DialectDecoder,
    arguments_object,
    check_header_value,
    encode_body,
    function_tools,
    wrong_type,
)
from streamcore.request import ChatRequest, HTTPRequest, Message

__all__ = ["DEFAULT_BASE_PATH", "OllamaDecoder", "build_request"]

_T = TypeVar("_T")

DEFAULT_BASE_PATH = ""
"""Ollama serves ``/api/chat`` at the root (``http://localhost:11434/api/chat``)."""


# --------------------------------------------------------------------------- request


def build_request(
    request: ChatRequest, *, api_key: str | None = None, base_path: str = DEFAULT_BASE_PATH
) -> HTTPRequest:
    """The streaming ``POST {base_path}/api/chat`` request for ``request``.

    ``request.system`` becomes a leading ``system`` message; ``max_tokens``,
    ``temperature`` and ``stop`` go in ``options`` (``num_predict``,
    ``temperature``, ``stop``); tool results are ``tool`` messages carrying
    ``tool_call_id`` and the called function's ``tool_name``. A final assistant
    message is sent as is: Ollama continues it (native prefill, whitespace kept).
    A local server needs no key; for ollama.com the key goes in an
    ``authorization: Bearer`` header, which ``repr`` redacts.

    >>> from streamcore.request import ChatRequest, Message
    >>> req = build_request(ChatRequest("llama3.2", (Message("user", "Hi"),)))
    >>> req.target, req.body
    ('/api/chat', b'{"model":"llama3.2","messages":[{"role":"user","content":"Hi"}],"stream":true}')
    """
    messages: list[dict[str, object]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for position, message in enumerate(request.messages):
        entry: dict[str, object] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": call.id,
                    "function": {
                        "name": call.name,
                        "arguments": arguments_object(
                            call.arguments, call.name, "Ollama's function.arguments"
                        ),
                    },
                }
                for call in message.tool_calls
            ]
        if message.role == "tool" and message.tool_call_id is not None:
            entry["tool_call_id"] = message.tool_call_id
            name = _called_name(message.tool_call_id, request.messages[:position])
            if name is not None:
                entry["tool_name"] = name
        messages.append(entry)

    body: dict[str, object] = {"model": request.model, "messages": messages, "stream": True}
    options: dict[str, object] = {}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.stop:
        options["stop"] = list(request.stop)
    if options:
        body["options"] = options
    if request.tools:
        body["tools"] = function_tools(request.tools)
    body.update(request.extra)

    headers = [("content-type", "application/json"), ("accept", "application/x-ndjson")]
    if api_key is not None:
        check_header_value(api_key, "api_key")
        headers.append(("authorization", f"Bearer {api_key}"))
    return HTTPRequest(
        method="POST",
        target=base_path.rstrip("/") + "/api/chat",
        headers=tuple(headers),
        body=encode_body(body),
    )


def _called_name(call_id: str, earlier: tuple[Message, ...]) -> str | None:
    for previous in reversed(earlier):
        for call in previous.tool_calls:
            if call.id == call_id:
                return call.name
    return None


# --------------------------------------------------------------------------- decoder


class _Phase(enum.Enum):
    STREAMING = "streaming"
    DONE = "done"


_TRANSITIONS: dict[tuple[_Phase, str], _Phase] = {
    (_Phase.STREAMING, "chunk"): _Phase.STREAMING,
    (_Phase.STREAMING, "error"): _Phase.STREAMING,
    (_Phase.STREAMING, "done"): _Phase.DONE,
}
"""The legal moves; in DONE nothing is (content after ``done`` is ``event_after_end``)."""

_DONE_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
}


class OllamaDecoder(DialectDecoder):
    """Decode an Ollama ``/api/chat`` NDJSON body into streamcore events.

    >>> decoder = OllamaDecoder()
    >>> events = decoder.feed(
    ...     b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19Z",'
    ...     b'"message":{"role":"assistant","content":"Hi"},"done":false}\\n'
    ...     b'{"model":"llama3.2","created_at":"2025-07-07T20:22:20Z",'
    ...     b'"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
    ...     b'"prompt_eval_count":26,"eval_count":2}\\n'
    ... )
    >>> [type(e).__name__ for e in events], decoder.complete
    (['StreamStarted', 'TextDelta', 'Finish', 'Usage', 'StreamEnd'], True)
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__()
        self._ndjson = NDJSONDecoder(max_line_bytes=max_line_bytes)
        self._phase = _Phase.STREAMING
        self._started = False
        self._tool_calls = 0
        self._lines = 0

    def _feed(self, data: bytes, out: list[Event]) -> None:
        for line in self._ndjson.feed(data):
            self._on_line(line, out)

    def _end(self, out: list[Event]) -> None:
        eoi = self._ndjson.end()
        self.truncated = eoi.truncated
        for line in eoi.items:
            self._on_line(line, out)

    def _on_line(self, line: object, out: list[Event]) -> None:
        self._lines += 1
        if self._phase is _Phase.DONE:
            self._check_open(f"line {self._lines}")
        if not isinstance(line, dict):
            out.append(RawEvent("line", line))
            return
        if "error" in line:
            self._phase = _TRANSITIONS[(self._phase, "error")]
            error = line["error"]
            if isinstance(error, dict):
                message = error.get("message")
                text = message if isinstance(message, str) else json.dumps(error)
            else:
                text = error if isinstance(error, str) else json.dumps(error)
            out.append(ProviderError("error", text, raw=line))
            return
        message = line.get("message")
        done = line.get("done") is True
        if message is None and "done" not in line:
            out.append(RawEvent("line", line))
            return
        if not self._started:
            self._started = True
            model = line.get("model")
            out.append(StreamStarted(None, model if isinstance(model, str) else None))
        if message is not None:
            self._on_message(self._typed(message, dict, "message"), out)
        self._phase = _TRANSITIONS[(self._phase, "done" if done else "chunk")]
        if not done:
            return
        raw = line.get("done_reason")
        if isinstance(raw, str):
            reason = _DONE_REASONS.get(raw, FinishReason.OTHER)
        else:
            raw, reason = None, FinishReason.STOP
        if reason is FinishReason.STOP and self._tool_calls:
            reason = FinishReason.TOOL_CALLS
        out.append(Finish(reason, raw))
        prompt = line.get("prompt_eval_count")
        answer = line.get("eval_count")
        if type(prompt) is int or type(answer) is int:
            out.append(
                Usage(
                    input_tokens=prompt if type(prompt) is int else None,
                    output_tokens=answer if type(answer) is int else None,
                )
            )
        self._finish(out)

    def _typed(self, value: object, kind: type[_T], field: str) -> _T:
        if type(value) is not kind:
            raise wrong_type(
                f"line {self._lines}: {field}",
                value,
                kind,
                "the server's response format changed or the stream is corrupt",
            )
        return value

    def _on_message(self, message: dict[str, object], out: list[Event]) -> None:
        thinking = message.get("thinking")
        if thinking is not None:
            thinking = self._typed(thinking, str, "message.thinking")
            if thinking:
                out.append(ReasoningDelta(thinking))
        content = message.get("content")
        if content is not None:
            content = self._typed(content, str, "message.content")
            if content:
                out.append(TextDelta(content))
        calls = message.get("tool_calls")
        if calls is None:
            return
        for call in self._typed(calls, list, "message.tool_calls"):
            call = self._typed(call, dict, "message.tool_calls[i]")
            function = self._typed(call.get("function"), dict, "message.tool_calls[i].function")
            name = self._typed(function.get("name"), str, "message.tool_calls[i].function.name")
            arguments = function.get("arguments")
            if arguments is None:
                text = "{}"
            elif isinstance(arguments, str):
                # Some OpenAI-style servers behind the Ollama API send a JSON string.
                text = arguments
            else:
                text = json.dumps(
                    self._typed(arguments, dict, "message.tool_calls[i].function.arguments"),
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
            given_id = call.get("id")
            index = self._tool_calls
            self._tool_calls += 1
            call_id = given_id if isinstance(given_id, str) and given_id else f"ollama-call-{index}"
            out.append(ToolCallStart(index, call_id, name))
            out.append(ToolCallDelta(index, text))
            out.append(ToolCallEnd(index))
