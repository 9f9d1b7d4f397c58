"""The providers' wire formats, as the emulator writes them: no I/O, just bytes.

Theory of operation
-------------------
A writer (:func:`writer_for`) turns a :class:`~.conversation.Plan` into one
dialect's body, one :class:`Frame` at a time: SSE events (OpenAI Chat
Completions and Responses, Anthropic, Gemini with ``alt=sse``), NDJSON lines
(Ollama) or the elements of a streamed JSON array (Gemini without ``alt=sse``),
with the providers' real paths' JSON shapes and field names.

Writers are stateful only because the wire formats are: the Responses API
numbers every event (``sequence_number``), a JSON array needs ``[`` before the
first element and a comma before the others. The server may call
:meth:`Writer.keepalive`, :meth:`Writer.error_event` and
:meth:`Writer.invalid_json` between pulling a frame and writing it; those use
the same state, so the bytes stay well formed (or break exactly where a fault
says).

Each frame has a :class:`FrameKind`, so the server can count tokens (faults
fire "after N tokens") without knowing any dialect. :func:`error_response`
gives each provider's JSON error body for an HTTP error status.
"""

from __future__ import annotations

import abc
import datetime
import enum
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from streamcore.adapters.emulator.conversation import (
    ALNUM,
    Conversation,
    Dialect,
    Plan,
    StopKind,
    random_id,
)
from streamcore.adapters.emulator.text import split_tokens
from streamcore.sse import encode_comment, encode_event

__all__ = ["Frame", "FrameKind", "Writer", "error_response", "writer_for"]


class FrameKind(enum.Enum):
    """Where a frame sits relative to the model's output, for token-counting faults."""

    OPENING = "opening"
    """Before any output: the response id, the role, the first block."""
    TOKEN = "token"
    """One piece of model output: a text piece, a tool call start or argument fragment."""
    BETWEEN = "between"
    """Structure between tokens (a content block closing before the next opens)."""
    CLOSING = "closing"
    """After the last token: the finish reason, usage, the terminal marker."""


@dataclass(frozen=True, slots=True)
class Frame:
    """Bytes to write, and what they are."""

    data: bytes
    kind: FrameKind


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


_EOL = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


class Writer(abc.ABC):
    """Turns a :class:`Plan` into one dialect's body bytes, frame by frame."""

    content_type: str = "text/event-stream; charset=utf-8"

    def __init__(
        self, conv: Conversation, plan: Plan, *, ids: random.Random, now: float, eol: str | None
    ) -> None:
        self.conv = conv
        self.plan = plan
        self._ids = ids
        self._now = now
        self._eol = _EOL[eol or self.default_eol]
        self._setup()

    default_eol = "lf"

    def _setup(self) -> None:  # noqa: B027 (an optional hook, not an abstract method)
        """Per-dialect state (ids, counters); runs at the end of ``__init__``."""

    @abc.abstractmethod
    def frames(self) -> Iterator[Frame]:
        """The body, frame by frame, for a stream that goes as planned."""

    @abc.abstractmethod
    def error_event(self, error_type: str) -> bytes:
        """The provider's own mid-stream error, sent instead of the frame just pulled.

        The server calls it between pulling a frame from :meth:`frames` and
        writing it; the error replaces that frame and ends the body.
        """

    @abc.abstractmethod
    def invalid_json(self) -> bytes:
        """One event of this framing whose JSON is cut short (sent before the pulled frame)."""

    def keepalive(self) -> bytes | None:
        """A keep-alive for this framing, or ``None`` if it has none."""
        return self._sse_comment("keep-alive")

    def _sse(self, obj: object, event: str | None = None) -> bytes:
        return self._sse_raw(_dumps(obj), event)

    def _sse_raw(self, data: str, event: str | None = None) -> bytes:
        encoded = encode_event(data, event=event)
        # JSON text holds no raw CR or LF, so every line ending here is framing.
        return encoded if self._eol == b"\n" else encoded.replace(b"\n", self._eol)

    def _sse_comment(self, text: str) -> bytes:
        encoded = encode_comment(text)
        return encoded if self._eol == b"\n" else encoded.replace(b"\n", self._eol)


_OPENAI_FINISH = {
    StopKind.STOP: "stop",
    StopKind.LENGTH: "length",
    StopKind.TOOL_CALLS: "tool_calls",
}
_OPENAI_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_MIDSTREAM_OPENAI = {
    "overloaded": ("server_error", "The server is overloaded. Please try again later."),
    "server": ("server_error", _OPENAI_SERVER_ERROR),
    "rate_limit": ("rate_limit_exceeded", "Rate limit reached. Please try again later."),
}


class OpenAIChatWriter(Writer):
    """``POST /v1/chat/completions``: ``chat.completion.chunk`` data events, then ``[DONE]``."""

    def _setup(self) -> None:
        self._id = "chatcmpl-" + random_id(self._ids, 29)
        self._fingerprint = "fp_" + random_id(self._ids, 10, "0123456789abcdef")

    def _chunk(self, delta: Mapping[str, object], finish: str | None = None) -> bytes:
        chunk: dict[str, object] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": int(self._now),
            "model": self.conv.model,
            "service_tier": "default",
            "system_fingerprint": self._fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.conv.include_usage:
            chunk["usage"] = None
        return self._sse(chunk)

    def frames(self) -> Iterator[Frame]:
        plan = self.plan
        if not plan.tool_calls:
            role = {"role": "assistant", "content": "", "refusal": None}
            yield Frame(self._chunk(role), FrameKind.OPENING)
            for piece in plan.pieces:
                yield Frame(self._chunk({"content": piece}), FrameKind.TOKEN)
        for i, call in enumerate(plan.tool_calls):
            start: dict[str, object] = {
                "tool_calls": [
                    {
                        "index": i,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
            if i == 0:
                start = {"role": "assistant", "content": None, **start, "refusal": None}
            yield Frame(self._chunk(start), FrameKind.TOKEN)
            for fragment in split_tokens(call.arguments, seed=call.id):
                delta = {"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}
                yield Frame(self._chunk(delta), FrameKind.TOKEN)
        yield Frame(self._chunk({}, _OPENAI_FINISH[plan.stop]), FrameKind.CLOSING)
        if self.conv.include_usage:
            completion = _output_tokens(plan)
            usage = {
                "prompt_tokens": self.conv.input_tokens,
                "completion_tokens": completion,
                "total_tokens": self.conv.input_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": int(self._now),
                "model": self.conv.model,
                "service_tier": "default",
                "system_fingerprint": self._fingerprint,
                "choices": [],
                "usage": usage,
            }
            yield Frame(self._sse(chunk), FrameKind.CLOSING)
        yield Frame(self._sse_raw("[DONE]"), FrameKind.CLOSING)

    def error_event(self, error_type: str) -> bytes:
        kind, message = _MIDSTREAM_OPENAI[error_type]
        code = kind if kind == "rate_limit_exceeded" else None
        return self._sse({"error": {"message": message, "type": kind, "param": None, "code": code}})

    def invalid_json(self) -> bytes:
        return self._sse_raw(f'{{"id":"{self._id}","object":"chat.completion.chunk","choices":[{{')


def _output_tokens(plan: Plan) -> int:
    if plan.tool_calls:
        return sum(1 + len(split_tokens(c.arguments, seed=c.id)) for c in plan.tool_calls)
    return len(plan.pieces)


class OpenAIResponsesWriter(Writer):
    """``POST /v1/responses``: typed events (``event: response.output_text.delta`` ...).

    Every event carries ``sequence_number``, counted from 0 across the whole
    stream, including injected error events.
    """

    def _setup(self) -> None:
        self._seq = 0
        self._id = "resp_" + random_id(self._ids, 48, "0123456789abcdef")
        self._msg_id = "msg_" + random_id(self._ids, 48, "0123456789abcdef")

    def _event(self, kind: str, **fields: object) -> bytes:
        data: dict[str, object] = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return self._sse(data, event=kind)

    def _response(self, status: str, output: list[object]) -> dict[str, object]:
        usage = None
        incomplete = None
        if status != "in_progress":
            out = _output_tokens(self.plan)
            usage = {
                "input_tokens": self.conv.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.conv.input_tokens + out,
            }
        if status == "incomplete":
            incomplete = {"reason": "max_output_tokens"}
        return {
            "id": self._id,
            "object": "response",
            "created_at": int(self._now),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": self.conv.instructions,
            "max_output_tokens": self.conv.max_tokens,
            "model": self.conv.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [
                {
                    "type": "function",
                    "name": t.name,
                    "parameters": dict(t.parameters),
                    "strict": True,
                }
                for t in self.conv.tools
            ],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def frames(self) -> Iterator[Frame]:
        plan = self.plan
        yield Frame(
            self._event("response.created", response=self._response("in_progress", [])),
            FrameKind.OPENING,
        )
        yield Frame(
            self._event("response.in_progress", response=self._response("in_progress", [])),
            FrameKind.OPENING,
        )
        if plan.tool_calls:
            yield from self._function_calls()
        else:
            yield from self._message()

    def _function_calls(self) -> Iterator[Frame]:
        output: list[object] = []
        for i, call in enumerate(self.plan.tool_calls):
            item_id = "fc_" + random_id(self._ids, 48, "0123456789abcdef")
            item: dict[str, object] = {
                "id": item_id,
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": call.id,
                "name": call.name,
            }
            yield Frame(
                self._event("response.output_item.added", output_index=i, item=item),
                FrameKind.TOKEN,
            )
            for fragment in split_tokens(call.arguments, seed=call.id):
                delta = self._event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=i,
                    delta=fragment,
                )
                yield Frame(delta, FrameKind.TOKEN)
            args_done = self._event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=i,
                arguments=call.arguments,
            )
            yield Frame(args_done, FrameKind.BETWEEN)
            done = {**item, "status": "completed", "arguments": call.arguments}
            output.append(done)
            yield Frame(
                self._event("response.output_item.done", output_index=i, item=done),
                FrameKind.BETWEEN,
            )
        completed = self._response("completed", output)
        yield Frame(self._event("response.completed", response=completed), FrameKind.CLOSING)

    def _message(self) -> Iterator[Frame]:
        plan = self.plan
        status = "incomplete" if plan.stop is StopKind.LENGTH else "completed"
        item: dict[str, object] = {
            "id": self._msg_id,
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }
        where: dict[str, object] = {
            "item_id": self._msg_id,
            "output_index": 0,
            "content_index": 0,
        }
        yield Frame(
            self._event("response.output_item.added", output_index=0, item=item), FrameKind.OPENING
        )
        empty: dict[str, object] = {
            "type": "output_text",
            "annotations": [],
            "logprobs": [],
            "text": "",
        }
        yield Frame(
            self._event("response.content_part.added", **where, part=empty), FrameKind.OPENING
        )
        for piece in plan.pieces:
            yield Frame(
                self._event("response.output_text.delta", **where, delta=piece, logprobs=[]),
                FrameKind.TOKEN,
            )
        text = plan.text
        part = {**empty, "text": text}
        yield Frame(
            self._event("response.output_text.done", **where, text=text, logprobs=[]),
            FrameKind.CLOSING,
        )
        yield Frame(
            self._event("response.content_part.done", **where, part=part), FrameKind.CLOSING
        )
        done = {**item, "status": status, "content": [part]}
        yield Frame(
            self._event("response.output_item.done", output_index=0, item=done), FrameKind.CLOSING
        )
        final = self._response(status, [done])
        yield Frame(self._event(f"response.{status}", response=final), FrameKind.CLOSING)

    def error_event(self, error_type: str) -> bytes:
        # It replaces the frame just pulled from frames() (see Writer), so it
        # takes that frame's sequence number and the numbering stays gapless.
        code, message = _MIDSTREAM_OPENAI[error_type]
        data = {
            "type": "error",
            "sequence_number": self._seq - 1,
            "code": code,
            "message": message,
            "param": None,
        }
        return self._sse(data, event="error")

    def invalid_json(self) -> bytes:
        seq = self._seq - 1
        return self._sse_raw(
            f'{{"type":"response.output_text.delta","sequence_number":{seq},"delta":"',
            event="response.output_text.delta",
        )


_ANTHROPIC_STOP = {
    StopKind.STOP: "end_turn",
    StopKind.LENGTH: "max_tokens",
    StopKind.TOOL_CALLS: "tool_use",
}
_MIDSTREAM_ANTHROPIC = {
    "overloaded": ("overloaded_error", "Overloaded"),
    "server": ("api_error", "Internal server error"),
    "rate_limit": (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
    ),
}


class AnthropicWriter(Writer):
    """``POST /v1/messages``: ``message_start``, content blocks, ``ping``, ``message_stop``."""

    def _setup(self) -> None:
        self._id = "msg_01" + random_id(self._ids, 22)

    def _event(self, kind: str, **fields: object) -> bytes:
        return self._sse({"type": kind, **fields}, event=kind)

    def frames(self) -> Iterator[Frame]:
        plan = self.plan
        message: dict[str, object] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.conv.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.conv.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
                "service_tier": "standard",
            },
        }
        yield Frame(self._event("message_start", message=message), FrameKind.OPENING)
        if not plan.tool_calls:
            text_block = {"type": "text", "text": ""}
            yield Frame(
                self._event("content_block_start", index=0, content_block=text_block),
                FrameKind.OPENING,
            )
            ping = self.keepalive()
            assert ping is not None
            yield Frame(ping, FrameKind.OPENING)
            for piece in plan.pieces:
                delta = {"type": "text_delta", "text": piece}
                yield Frame(
                    self._event("content_block_delta", index=0, delta=delta), FrameKind.TOKEN
                )
            yield Frame(self._event("content_block_stop", index=0), FrameKind.CLOSING)
        for i, call in enumerate(plan.tool_calls):
            block: dict[str, object] = {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": {},
            }
            yield Frame(
                self._event("content_block_start", index=i, content_block=block), FrameKind.TOKEN
            )
            for fragment in ["", *split_tokens(call.arguments, seed=call.id)]:
                delta = {"type": "input_json_delta", "partial_json": fragment}
                yield Frame(
                    self._event("content_block_delta", index=i, delta=delta), FrameKind.TOKEN
                )
            kind = FrameKind.CLOSING if i == len(plan.tool_calls) - 1 else FrameKind.BETWEEN
            yield Frame(self._event("content_block_stop", index=i), kind)
        yield Frame(
            self._event(
                "message_delta",
                delta={"stop_reason": _ANTHROPIC_STOP[plan.stop], "stop_sequence": None},
                usage={"output_tokens": _output_tokens(plan)},
            ),
            FrameKind.CLOSING,
        )
        yield Frame(self._event("message_stop"), FrameKind.CLOSING)

    def keepalive(self) -> bytes:
        # Anthropic's own ping is an event (its data has a space after the colon).
        return self._sse_raw('{"type": "ping"}', event="ping")

    def error_event(self, error_type: str) -> bytes:
        kind, message = _MIDSTREAM_ANTHROPIC[error_type]
        return self._event("error", error={"type": kind, "message": message})

    def invalid_json(self) -> bytes:
        return self._sse_raw(
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"',
            event="content_block_delta",
        )


_GEMINI_FINISH = {StopKind.STOP: "STOP", StopKind.LENGTH: "MAX_TOKENS", StopKind.TOOL_CALLS: "STOP"}
_GEMINI_OVERLOADED = "The model is overloaded. Please try again later."
_GEMINI_INTERNAL = (
    "An internal error has occurred. Please retry or report in"
    " https://developers.generativeai.google/guide/troubleshooting"
)
_GEMINI_EXHAUSTED = "Resource has been exhausted (e.g. check quota)."
_MIDSTREAM_GEMINI = {
    "overloaded": (503, _GEMINI_OVERLOADED, "UNAVAILABLE"),
    "server": (500, _GEMINI_INTERNAL, "INTERNAL"),
    "rate_limit": (429, _GEMINI_EXHAUSTED, "RESOURCE_EXHAUSTED"),
}


class GeminiWriter(Writer):
    """``:streamGenerateContent``: ``GenerateContentResponse`` chunks.

    With ``?alt=sse`` each chunk is an SSE ``data:`` event with CRLF line
    endings; without it the body is one JSON array whose pretty-printed
    elements arrive one by one, separated by ``\\n,\\r\\n`` and closed by ``\\n]``.
    """

    default_eol = "crlf"

    def _setup(self) -> None:
        self._response_id = random_id(self._ids, 22, ALNUM + "-_")
        self._elements = 0
        self._output = 0
        if not self.conv.sse:
            self.content_type = "application/json; charset=UTF-8"

    def _element(self, obj: object) -> bytes:
        if self.conv.sse:
            return self._sse_raw(json.dumps(obj, ensure_ascii=False, separators=(",", ": ")))
        prefix = "[" if self._elements == 0 else "\n,\r\n"
        self._elements += 1
        return (prefix + json.dumps(obj, ensure_ascii=False, indent=2)).encode()

    def _chunk(self, parts: list[object], finish: str | None = None) -> bytes:
        candidate: dict[str, object] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        usage = {
            "promptTokenCount": self.conv.input_tokens,
            "candidatesTokenCount": self._output,
            "totalTokenCount": self.conv.input_tokens + self._output,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.conv.input_tokens}],
        }
        return self._element(
            {
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": self.conv.model,
                "responseId": self._response_id,
            }
        )

    def frames(self) -> Iterator[Frame]:
        plan = self.plan
        for piece in plan.pieces:
            self._output += 1
            yield Frame(self._chunk([{"text": piece}]), FrameKind.TOKEN)
        if plan.tool_calls:
            self._output += _output_tokens(plan)
            parts: list[object] = [
                {"functionCall": {"name": c.name, "args": json.loads(c.arguments)}}
                for c in plan.tool_calls
            ]
            yield Frame(self._chunk(parts), FrameKind.TOKEN)
        yield Frame(self._chunk([{"text": ""}], _GEMINI_FINISH[plan.stop]), FrameKind.CLOSING)
        if not self.conv.sse:
            yield Frame(self._close_array(), FrameKind.CLOSING)

    def _close_array(self) -> bytes:
        return b"[]" if self._elements == 0 else b"\n]"

    def keepalive(self) -> bytes | None:
        return self._sse_comment("keep-alive") if self.conv.sse else None

    def error_event(self, error_type: str) -> bytes:
        code, message, status = _MIDSTREAM_GEMINI[error_type]
        element = self._element({"error": {"code": code, "message": message, "status": status}})
        return element if self.conv.sse else element + self._close_array()

    def invalid_json(self) -> bytes:
        broken = '{"candidates": [{"content": {"parts": [{"text": "}]'
        if self.conv.sse:
            return self._sse_raw(broken)
        prefix = "[" if self._elements == 0 else "\n,\r\n"
        self._elements += 1
        return (prefix + broken).encode()


_OLLAMA_DONE = {StopKind.STOP: "stop", StopKind.LENGTH: "length", StopKind.TOOL_CALLS: "stop"}
_MIDSTREAM_OLLAMA = {
    "overloaded": "server busy, please try again.  maximum pending requests exceeded",
    "server": "an error was encountered while running the model: unexpected EOF",
    "rate_limit": "too many requests",
}


class OllamaWriter(Writer):
    """``POST /api/chat``: NDJSON, one object per line, the last with ``"done": true``."""

    content_type = "application/x-ndjson"

    def _line(self, obj: object) -> bytes:
        return (_dumps(obj) + "\n").encode()

    def _created_at(self, step: int) -> str:
        moment = datetime.datetime.fromtimestamp(self._now + step * 0.02, datetime.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _message(self, step: int, message: dict[str, object]) -> bytes:
        return self._line(
            {
                "model": self.conv.model,
                "created_at": self._created_at(step),
                "message": {"role": "assistant", **message},
                "done": False,
            }
        )

    def frames(self) -> Iterator[Frame]:
        plan = self.plan
        for step, piece in enumerate(plan.pieces):
            yield Frame(self._message(step, {"content": piece}), FrameKind.TOKEN)
        if plan.tool_calls:
            calls = [
                {"function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                for c in plan.tool_calls
            ]
            yield Frame(self._message(0, {"content": "", "tool_calls": calls}), FrameKind.TOKEN)
        out = _output_tokens(plan)
        final = {
            "model": self.conv.model,
            "created_at": self._created_at(len(plan.pieces) + 1),
            "message": {"role": "assistant", "content": ""},
            "done_reason": _OLLAMA_DONE[plan.stop],
            "done": True,
            "total_duration": 20_000_000 * (out + 5),
            "load_duration": 1_200_000,
            "prompt_eval_count": self.conv.input_tokens,
            "prompt_eval_duration": 3_000_000,
            "eval_count": out,
            "eval_duration": 20_000_000 * out,
        }
        yield Frame(self._line(final), FrameKind.CLOSING)

    def keepalive(self) -> None:
        return None

    def error_event(self, error_type: str) -> bytes:
        return self._line({"error": _MIDSTREAM_OLLAMA[error_type]})

    def invalid_json(self) -> bytes:
        return (
            f'{{"model":"{self.conv.model}","message":{{"role":"assistant","content":"\n'.encode()
        )


_WRITERS: dict[Dialect, type[Writer]] = {
    Dialect.OPENAI_CHAT: OpenAIChatWriter,
    Dialect.OPENAI_RESPONSES: OpenAIResponsesWriter,
    Dialect.ANTHROPIC: AnthropicWriter,
    Dialect.GEMINI: GeminiWriter,
    Dialect.OLLAMA: OllamaWriter,
}


def writer_for(
    conv: Conversation, plan: Plan, *, ids: random.Random, now: float, eol: str | None = None
) -> Writer:
    """The writer for ``conv``'s dialect; ``now`` (Unix time) fills the ``created`` fields."""
    return _WRITERS[conv.dialect](conv, plan, ids=ids, now=now, eol=eol)


# --------------------------------------------------------------------------- HTTP errors

_OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request.", None),
    401: (
        "invalid_request_error",
        "Incorrect API key provided. You can find your API key at"
        " https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    403: ("invalid_request_error", "You are not allowed to sample from this model", None),
    404: (
        "invalid_request_error",
        "The model does not exist or you do not have access to it.",
        "model_not_found",
    ),
    429: (
        "requests",
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1."
        " Please try again in 20s.",
        "rate_limit_exceeded",
    ),
    500: ("server_error", _OPENAI_SERVER_ERROR, None),
    503: ("server_error", "The engine is currently overloaded, please try again later", None),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
_GEMINI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", _GEMINI_EXHAUSTED),
    500: ("INTERNAL", _GEMINI_INTERNAL),
    503: ("UNAVAILABLE", _GEMINI_OVERLOADED),
    529: ("UNAVAILABLE", _GEMINI_OVERLOADED),
}
_OLLAMA_ERRORS: dict[int, str] = {
    400: "invalid request",
    401: "unauthorized",
    404: "model not found, try pulling it first",
    429: "too many requests",
    500: "an error was encountered while running the model",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


def error_response(
    dialect: Dialect | None, status: int, *, message: str | None = None, request_id: str = ""
) -> bytes:
    """The JSON body ``dialect``'s provider sends with HTTP ``status``.

    ``message`` replaces the provider's stock message (used for the emulator's
    own 400s, which say what was wrong with the request).

    >>> error_response(Dialect.ANTHROPIC, 529)
    b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":""}'
    """
    generic = message or f"HTTP {status} (injected by the streamcore emulator)"
    if dialect is Dialect.ANTHROPIC:
        kind, stock = _ANTHROPIC_ERRORS.get(status, ("api_error", generic))
        body: object = {
            "type": "error",
            "error": {"type": kind, "message": message or stock},
            "request_id": request_id,
        }
    elif dialect is Dialect.GEMINI:
        kind, stock = _GEMINI_ERRORS.get(status, ("UNKNOWN", generic))
        body = {"error": {"code": status, "message": message or stock, "status": kind}}
    elif dialect is Dialect.OLLAMA:
        body = {"error": message or _OLLAMA_ERRORS.get(status, generic)}
    else:
        fallback = (
            ("invalid_request_error", generic, None)
            if status < 500
            else ("server_error", generic, None)
        )
        kind, stock, code = _OPENAI_ERRORS.get(status if status != 529 else 503, fallback)
        body = {"error": {"message": message or stock, "type": kind, "param": None, "code": code}}
    return _dumps(body).encode()
