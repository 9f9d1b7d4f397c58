"""The Gemini dialect: ``POST /v1beta/models/{model}:streamGenerateContent``.

Theory of operation
===================

Gemini streams a sequence of ``GenerateContentResponse`` objects in one of two
framings, and one translator serves both:

* ``framing="sse"`` (the request carries ``?alt=sse``): each SSE ``data`` is
  one response object (:mod:`streamcore.sse`);
* ``framing="json-array"`` (no ``alt``): the body is one JSON array streamed
  element by element (:mod:`streamcore.jsonarray`).

Each response may carry ``candidates`` (the answers; ``n > 1`` gives several,
told apart by ``index`` -> ``choice``), ``usageMetadata``, ``promptFeedback``,
``responseId`` and ``modelVersion``, or an ``error`` object.

Translation:

* The first response -> :class:`StreamStarted` (``responseId``, ``modelVersion``).
* ``parts[].text`` -> :class:`TextDelta`; a part with ``"thought": true`` ->
  :class:`ReasoningDelta`; a part's ``thoughtSignature`` -> ``ReasoningDelta("",
  signature=...)`` right *after* the events of the part that carries it (for a
  ``functionCall`` part: after its :class:`ToolCallEnd`). Gemini 3 requires these
  signatures back with the function calls of later turns.
* ``functionCall`` parts arrive whole (``{name, args}``) -> :class:`ToolCallStart`,
  one :class:`ToolCallDelta` with the compact JSON of ``args``, :class:`ToolCallEnd`.
  ``index`` counts the calls of the candidate (0, 1, ...). **Call ids:** the
  Gemini API gives none (Vertex sometimes does; a given ``id`` is kept), so the
  decoder makes a stable one from what the stream says:
  ``"gemini-call-{responseId}-{choice}-{index}"`` (``"gemini-call-{choice}-{index}"``
  when there is no ``responseId``). :func:`build_request` recognizes the prefix
  and does not send a made-up id back; the tool result is matched to its call's
  function *name* instead, which is what the API reads.
* ``finishReason`` -> :class:`Finish` (raw value kept). Gemini says ``STOP`` also
  when the model stopped to call functions; a candidate that made function
  calls and stopped with ``STOP`` is reported as ``FinishReason.TOOL_CALLS`` (raw
  ``"STOP"``), as OpenAI and Anthropic report it.
* ``promptFeedback.blockReason`` (the prompt itself was blocked: no candidates
  follow) -> ``Finish(CONTENT_FILTER, raw=blockReason)``: the provider answered,
  with a refusal, so it is a finish rather than an error, and the stream counts
  as complete.
* ``usageMetadata`` (repeated, cumulative, on many chunks) -> :class:`Usage`
  when it changes. Gemini's ``candidatesTokenCount`` excludes the thinking
  tokens; :class:`Usage` counts them in ``output_tokens`` as OpenAI and
  Anthropic do (``output = candidates + thoughts``), with ``reasoning_tokens =
  thoughtsTokenCount``, ``input_tokens = promptTokenCount`` (cached included)
  and ``cached_tokens = cachedContentTokenCount``.
* An ``error`` object -> :class:`ProviderError`.
* Part kinds streamcore does not model (``inlineData``, ``executableCode``,
  ``codeExecutionResult``, ...) and responses with none of the known fields ->
  :class:`RawEvent`.

Completion: Gemini has no terminal marker. The stream is complete -- and
:meth:`end` emits :class:`StreamEnd` -- when the body ended cleanly (for the
JSON array: the array was closed), no ``error`` came, and either the prompt was
blocked or every candidate seen carried a ``finishReason``.

Each candidate runs a two-state machine (:data:`_CANDIDATE_TRANSITIONS`):
STREAMING -> FINISHED on its ``finishReason``. Content for a FINISHED candidate,
or a second, different ``finishReason``, is a grammar break
(``RemoteProtocolError(kind="unexpected_event")``); a repeated identical
``finishReason`` is ignored. A known field of the wrong type (``candidates``
not a list, a ``text`` that is not a string) raises ``kind="invalid_event"``.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Literal, TypeVar

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
from streamcore.jsonarray import JSONArrayDecoder
from streamcore.providers._base import (
    DialectDecoder,
    arguments_object,
    check_header_value,
    encode_body,
    optional_int,
    optional_str,
    parse_json,
    split_system,
    wrong_type,
)
from streamcore.request import ChatRequest, HTTPRequest, Message
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

__all__ = [
    "DEFAULT_BASE_PATH",
    "MAX_CANDIDATES",
    "SYNTHETIC_ID_PREFIX",
    "Framing",
    "GeminiDecoder",
    "build_request",
]

_T = TypeVar("_T")

Framing = Literal["sse", "json-array"]

DEFAULT_BASE_PATH = "/v1beta"

SYNTHETIC_ID_PREFIX = "gemini-call-"
"""Tool-call ids the decoder made up start with this; they are never sent to Gemini."""

MAX_CANDIDATES = 64
"""Distinct candidates one stream may carry (the API allows a handful)."""

_MODEL = re.compile(r"(?:models/|tunedModels/)?[A-Za-z0-9][A-Za-z0-9._-]*")


# --------------------------------------------------------------------------- request


def build_request(
    request: ChatRequest,
    *,
    api_key: str | None = None,
    base_path: str = DEFAULT_BASE_PATH,
    sse: bool = True,
) -> HTTPRequest:
    """The ``streamGenerateContent`` request for ``request``.

    ``sse=True`` asks for SSE framing (``?alt=sse``; decode with
    ``GeminiDecoder(framing="sse")``), ``sse=False`` for the streamed JSON array
    (``framing="json-array"``). Assistant turns become ``model`` turns with
    ``functionCall`` parts; tool results become ``functionResponse`` parts of a
    user turn (consecutive results share one turn, as parallel calls require),
    named after the call they answer. A result whose text is a JSON object is
    sent as that object, anything else as ``{"output": text}``. Tools are
    declared with ``parametersJsonSchema`` (full JSON Schema, not the OpenAPI
    subset of ``parameters``). A final assistant message is sent as a trailing
    ``model`` turn, unchanged: Gemini documents no prefill, and current models
    continue such a turn, but the API does not promise it. An assistant turn
    with neither text nor tool calls is left out (the API rejects empty text).

    >>> from streamcore.request import ChatRequest, Message
    >>> req = build_request(
    ...     ChatRequest("gemini-2.5-flash", (Message("user", "Hi"),)), api_key="AIza-1"
    ... )
    >>> req.target
    '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse'
    >>> req.body
    b'{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}'
    >>> "AIza-1" in repr(req)
    False
    """
    if not _MODEL.fullmatch(request.model):
        raise LocalProtocolError(
            f"model name {request.model!r} cannot go in a URL path as is; use a Gemini model "
            "id such as 'gemini-2.5-flash' (optionally prefixed 'models/')",
            kind="invalid_model",
        )
    model_path = request.model if "/" in request.model else "models/" + request.model

    system_parts, messages = split_system(request)

    contents: list[dict[str, object]] = []
    results_turn: list[dict[str, object]] | None = None
    for position, message in enumerate(messages):
        if message.role == "tool":
            part: dict[str, object] = {
                "functionResponse": _function_response(message, messages[:position])
            }
            if results_turn is None:
                results_turn = [part]
                contents.append({"role": "user", "parts": results_turn})
            else:
                results_turn.append(part)
        elif message.role == "user":
            if results_turn is not None:
                results_turn.append({"text": message.content})
            else:
                contents.append({"role": "user", "parts": [{"text": message.content}]})
            results_turn = None
        else:  # assistant
            results_turn = None
            if not message.content and not message.tool_calls:
                continue  # the API rejects an empty text part; an empty turn says nothing
            parts: list[dict[str, object]] = []
            if message.content:
                parts.append({"text": message.content})
            for call in message.tool_calls:
                function: dict[str, object] = {
                    "name": call.name,
                    "args": arguments_object(
                        call.arguments, call.name, "Gemini's functionCall.args"
                    ),
                }
                if not call.id.startswith(SYNTHETIC_ID_PREFIX):
                    function["id"] = call.id
                parts.append({"functionCall": function})
            contents.append({"role": "model", "parts": parts})

    body: dict[str, object] = {"contents": contents}
    if system_parts:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system_parts)}]}
    config: dict[str, object] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if config:
        body["generationConfig"] = config
    if request.tools:
        declarations: list[dict[str, object]] = []
        for tool in request.tools:
            declaration: dict[str, object] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            declaration["parametersJsonSchema"] = dict(tool.parameters)
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    body.update(request.extra)

    headers = [
        ("content-type", "application/json"),
        ("accept", "text/event-stream" if sse else "application/json"),
    ]
    if api_key is not None:
        check_header_value(api_key, "api_key")
        headers.append(("x-goog-api-key", api_key))
    target = f"{base_path.rstrip('/')}/{model_path}:streamGenerateContent"
    return HTTPRequest(
        method="POST",
        target=target + "?alt=sse" if sse else target,
        headers=tuple(headers),
        body=encode_body(body),
    )


def _function_response(message: Message, earlier: list[Message]) -> dict[str, object]:
    call_id = message.tool_call_id
    if call_id is None:
        raise LocalProtocolError(
            "a tool result has no tool_call_id; Gemini needs the name of the function it "
            "answers, found through the id: set it to the id of the ToolCall",
            kind="missing_tool_call_id",
        )
    name = None
    for previous in reversed(earlier):
        for call in previous.tool_calls:
            if call.id == call_id:
                name = call.name
                break
        if name is not None:
            break
    if name is None:
        raise LocalProtocolError(
            f"tool result for call {call_id!r} answers no earlier assistant tool call; "
            "Gemini needs the function's name -- keep the assistant turn with that call",
            kind="unknown_tool_call_id",
        )
    try:
        value = json.loads(message.content)
    except ValueError:
        value = None
    response = value if isinstance(value, dict) else {"output": message.content}
    out: dict[str, object] = {"name": name, "response": response}
    if not call_id.startswith(SYNTHETIC_ID_PREFIX):
        out["id"] = call_id
    return out


# --------------------------------------------------------------------------- decoder


class _CandidateState(enum.Enum):
    STREAMING = "streaming"
    FINISHED = "finished"


_CANDIDATE_TRANSITIONS: dict[tuple[_CandidateState, str], _CandidateState] = {
    (_CandidateState.STREAMING, "content"): _CandidateState.STREAMING,
    (_CandidateState.STREAMING, "finishReason"): _CandidateState.FINISHED,
}
"""The legal moves of one candidate; anything else for a candidate is a grammar break."""

_FINISH_REASONS = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "IMAGE_RECITATION": FinishReason.CONTENT_FILTER,
}
"""Everything else (MALFORMED_FUNCTION_CALL, LANGUAGE, OTHER, ...) is FinishReason.OTHER."""

_RESPONSE_KEYS = frozenset(
    {"candidates", "usageMetadata", "promptFeedback", "responseId", "modelVersion"}
)
# Part keys that qualify a part rather than being its content.
_PART_QUALIFIERS = frozenset({"thought", "thoughtSignature", "partMetadata", "videoMetadata"})


@dataclass(slots=True)
class _Candidate:
    state: _CandidateState = _CandidateState.STREAMING
    finish_raw: str | None = None
    tool_calls: int = 0


class GeminiDecoder(DialectDecoder):
    """Decode a ``streamGenerateContent`` body (SSE or JSON array) into streamcore events.

    >>> body = (
    ...     b'data: {"candidates":[{"content":{"parts":[{"text":"Bonjour"}],"role":"model"},'
    ...     b'"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r1"}\\r\\n\\r\\n'
    ...     b'data: {"candidates":[{"content":{"parts":[{"text":" !"}],"role":"model"},'
    ...     b'"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,'
    ...     b'"candidatesTokenCount":3,"totalTokenCount":7},"modelVersion":"gemini-2.5-flash",'
    ...     b'"responseId":"r1"}\\r\\n\\r\\n'
    ... )
    >>> decoder = GeminiDecoder(framing="sse")
    >>> events = decoder.feed(body)
    >>> [type(e).__name__ for e in events]
    ['StreamStarted', 'TextDelta', 'TextDelta', 'Finish', 'Usage']
    >>> decoder.complete, decoder.end(), decoder.complete
    (False, [StreamEnd()], True)
    """

    def __init__(
        self, *, framing: Framing = "sse", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        super().__init__()
        self._sse: SSEDecoder | None = None
        self._array: JSONArrayDecoder | None = None
        if framing == "sse":
            self._sse = SSEDecoder(max_line_bytes=max_line_bytes)
        elif framing == "json-array":
            self._array = JSONArrayDecoder(max_element_bytes=max_line_bytes)
        else:
            raise LocalProtocolError(
                f"framing must be 'sse' or 'json-array', not {framing!r}",
                kind="invalid_framing",
            )
        self._started = False
        self._response_id: str | None = None
        self._candidates: dict[int, _Candidate] = {}
        self._prompt_blocked = False
        self._errored = False
        self._last_usage: Usage | None = None
        self._last_usage_raw: dict[str, object] | None = None
        self._responses = 0

    # -- framing

    def _feed(self, data: bytes, out: list[Event]) -> None:
        if self._sse is not None:
            for item in self._sse.feed(data):
                if type(item) is SSEComment:
                    out.append(KeepAlive(item.text))
                else:
                    assert type(item) is SSEEvent
                    self._on_sse(item, out)
        else:
            assert self._array is not None
            for element in self._array.feed(data):
                self._on_response(element, out)

    def _end(self, out: list[Event]) -> None:
        if self._sse is not None:
            sse_end = self._sse.end()
            self.truncated = sse_end.truncated
            for item in sse_end.items:
                if type(item) is SSEEvent:
                    self._on_sse(item, out)
        else:
            assert self._array is not None
            array_end = self._array.end()
            self.truncated = array_end.truncated
            for element in array_end.items:
                self._on_response(element, out)
        if self.truncated or self._errored:
            return
        candidates = self._candidates.values()
        if self._prompt_blocked or (
            candidates and all(c.state is _CandidateState.FINISHED for c in candidates)
        ):
            self._finish(out)

    def _on_sse(self, event: SSEEvent, out: list[Event]) -> None:
        try:
            payload = json.loads(event.data)
        except ValueError:
            payload = parse_json(event.data, f"data of SSE event #{self._responses + 1}")
        except RecursionError:
            raise RemoteProtocolError(
                f"data of SSE event #{self._responses + 1} nests JSON deeper than Python can "
                "parse; the stream is corrupt or hostile -- check the upstream",
                kind="invalid_json",
            ) from None
        self._on_response(payload, out)

    # -- responses

    def _on_response(self, payload: object, out: list[Event]) -> None:
        self._responses += 1
        if not isinstance(payload, dict):
            out.append(RawEvent("response", payload))
            return
        error = payload.get("error")
        if error is not None:
            self._errored = True
            out.append(_provider_error(error, payload))
            return
        if "candidates" not in payload and _RESPONSE_KEYS.isdisjoint(payload):
            out.append(RawEvent("response", payload))
            return
        if not self._started:
            self._started = True
            self._response_id = optional_str(payload, "responseId")
            out.append(StreamStarted(self._response_id, optional_str(payload, "modelVersion")))
        candidates = payload.get("candidates")
        if candidates is not None:
            for position, candidate in enumerate(self._typed(candidates, list, "candidates")):
                self._on_candidate(self._typed(candidate, dict, "candidates[i]"), position, out)
        feedback = payload.get("promptFeedback")
        if isinstance(feedback, dict):
            reason = feedback.get("blockReason")
            if isinstance(reason, str) and not self._prompt_blocked:
                self._prompt_blocked = True
                out.append(Finish(FinishReason.CONTENT_FILTER, reason))
        usage = payload.get("usageMetadata")
        # Most chunks repeat the previous usage unchanged: skip those cheaply.
        if type(usage) is dict and usage != self._last_usage_raw:
            self._last_usage_raw = usage
            self._on_usage(usage, out)

    def _on_candidate(self, candidate: dict[str, object], position: int, out: list[Event]) -> None:
        index = candidate.get("index")
        # proto3 JSON leaves out a zero index, so fall back to the position in the list.
        choice = index if type(index) is int else position
        state = self._candidates.get(choice)
        if state is None:
            if len(self._candidates) >= MAX_CANDIDATES:
                raise RemoteProtocolError(
                    f"response #{self._responses} has candidate {choice}, beyond "
                    f"{MAX_CANDIDATES} distinct candidates (MAX_CANDIDATES); check the upstream",
                    kind="too_many_candidates",
                )
            state = self._candidates[choice] = _Candidate()
        content = candidate.get("content")
        if content is not None:
            parts = self._typed(content, dict, "candidates[i].content").get("parts")
            if parts is not None:
                produced: list[Event] = []
                for part in self._typed(parts, list, "candidates[i].content.parts"):
                    part = self._typed(part, dict, "candidates[i].content.parts[j]")
                    self._on_part(part, state, choice, produced)
                if produced:
                    # Checked before anything is emitted: no content escapes after a finish.
                    self._move(state, "content", choice)
                    out += produced
        reason = candidate.get("finishReason")
        if isinstance(reason, str):
            if state.state is _CandidateState.FINISHED and reason == state.finish_raw:
                return
            self._move(state, "finishReason", choice)
            state.finish_raw = reason
            mapped = _FINISH_REASONS.get(reason, FinishReason.OTHER)
            if mapped is FinishReason.STOP and state.tool_calls:
                mapped = FinishReason.TOOL_CALLS
            out.append(Finish(mapped, reason, choice))

    def _move(self, state: _Candidate, what: str, choice: int) -> None:
        next_state = _CANDIDATE_TRANSITIONS.get((state.state, what))
        if next_state is None:
            raise RemoteProtocolError(
                f"response #{self._responses} carries {what} for candidate {choice}, which "
                f"already finished with {state.finish_raw!r}; the stream is corrupt -- retry",
                kind="unexpected_event",
            )
        state.state = next_state

    def _on_part(
        self,
        part: dict[str, object],
        state: _Candidate,
        choice: int,
        out: list[Event],
    ) -> None:
        if "text" in part:
            text = self._typed(part.get("text"), str, "a part's text")
            if text:
                if part.get("thought") is True:
                    out.append(ReasoningDelta(text, choice=choice))
                else:
                    out.append(TextDelta(text, choice))
        elif "functionCall" in part:
            call = self._typed(part.get("functionCall"), dict, "functionCall")
            name = self._typed(call.get("name"), str, "functionCall.name")
            args = call.get("args")
            args = {} if args is None else self._typed(args, dict, "functionCall.args")
            given_id = call.get("id")
            index = state.tool_calls
            state.tool_calls += 1
            if isinstance(given_id, str) and given_id:
                call_id = given_id
            elif self._response_id:
                call_id = f"{SYNTHETIC_ID_PREFIX}{self._response_id}-{choice}-{index}"
            else:
                call_id = f"{SYNTHETIC_ID_PREFIX}{choice}-{index}"
            out.append(ToolCallStart(index, call_id, name, choice))
            out.append(
                ToolCallDelta(
                    index, json.dumps(args, ensure_ascii=False, separators=(",", ":")), choice
                )
            )
            out.append(ToolCallEnd(index, choice))
        else:
            kinds = [key for key in part if key not in _PART_QUALIFIERS]
            if kinds:
                out.append(RawEvent(f"part:{kinds[0]}", part))
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            out.append(ReasoningDelta("", signature=signature, choice=choice))

    def _typed(self, value: object, kind: type[_T], field: str) -> _T:
        if type(value) is not kind:
            raise wrong_type(
                f"response #{self._responses}: {field}",
                value,
                kind,
                "the provider's response format changed or the stream is corrupt",
            )
        return value

    def _on_usage(self, usage: dict[str, object], out: list[Event]) -> None:
        prompt = optional_int(usage, "promptTokenCount")
        answer = optional_int(usage, "candidatesTokenCount")
        thoughts = optional_int(usage, "thoughtsTokenCount")
        cached = optional_int(usage, "cachedContentTokenCount")
        output = None if answer is None and thoughts is None else (answer or 0) + (thoughts or 0)
        current = Usage(prompt, output, cached, thoughts)
        if current != self._last_usage and current != Usage():
            self._last_usage = current
            out.append(current)


def _provider_error(error: object, payload: dict[str, object]) -> ProviderError:
    if isinstance(error, dict):
        status = error.get("status")
        code = error.get("code")
        message = error.get("message")
        kind = status if isinstance(status, str) else str(code) if code is not None else "error"
        return ProviderError(
            kind, message if isinstance(message, str) else json.dumps(error), raw=payload
        )
    return ProviderError("error", str(error), raw=payload)
