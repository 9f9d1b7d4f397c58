"""What a request asks for, and what the emulator answers: pure functions, no I/O.

:func:`route` maps a request path to a provider :class:`Dialect`;
:func:`parse_request` reads that provider's JSON body into a dialect-neutral
:class:`Conversation` (the prompt, a partial answer to resume from, the tools,
the token limit); :func:`plan_answer` decides the answer as a :class:`Plan`:
tool calls, or the deterministic text of
:func:`~streamcore.adapters.emulator.text.answer_for` cut into tokens.
:mod:`~streamcore.adapters.emulator.wire` then writes the plan in the dialect's
wire format.

Resuming: a request whose last message is the assistant's partial answer (a
prefill, Anthropic style), or whose last two messages are the partial answer
and a user turn asking to continue (OpenAI style), gets the rest of the same
answer, so a test can prove that resuming after a drop loses nothing.
"""

from __future__ import annotations

import enum
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamcore._errors import RemoteProtocolError
from streamcore.adapters.emulator.text import (
    answer_for,
    continuation_offset,
    is_continue_instruction,
    split_tokens,
)

__all__ = [
    "ALNUM",
    "Conversation",
    "Dialect",
    "Plan",
    "ResumeMode",
    "Route",
    "StopKind",
    "ToolCallPlan",
    "ToolSpec",
    "parse_request",
    "plan_answer",
    "random_id",
    "route",
]


class Dialect(enum.Enum):
    """The provider APIs the emulator speaks."""

    OPENAI_CHAT = "openai_chat"
    OPENAI_RESPONSES = "openai_responses"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    OLLAMA = "ollama"


@dataclass(frozen=True, slots=True)
class Route:
    """Which dialect a request path selects (and, for Gemini, the model and framing)."""

    dialect: Dialect
    model: str | None = None
    sse: bool = True


_GEMINI_PATH = re.compile(r"/v1(?:beta|alpha)?/models/([^/:]+):streamGenerateContent")
_FIXED_ROUTES = {
    "/v1/chat/completions": Dialect.OPENAI_CHAT,
    "/v1/responses": Dialect.OPENAI_RESPONSES,
    "/v1/messages": Dialect.ANTHROPIC,
    "/api/chat": Dialect.OLLAMA,
}


def route(path: str, query: str) -> Route | None:
    """The :class:`Route` for a request path and query string, or ``None`` (404).

    >>> route("/v1/messages", "").dialect
    <Dialect.ANTHROPIC: 'anthropic'>
    >>> route("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "alt=sse")
    Route(dialect=<Dialect.GEMINI: 'gemini'>, model='gemini-2.5-flash', sse=True)
    """
    dialect = _FIXED_ROUTES.get(path)
    if dialect is not None:
        return Route(dialect)
    match = _GEMINI_PATH.fullmatch(path)
    if match is None:
        return None
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    return Route(Dialect.GEMINI, model=match.group(1), sse=params.get("alt") == "sse")


class ResumeMode(enum.Enum):
    """How a request asks to continue an earlier, cut-off answer."""

    NONE = "none"
    PREFILL = "prefill"
    """The last message is the assistant's partial answer (Anthropic's prefill)."""
    CONTINUE = "continue"
    """The assistant's partial answer, then a user turn asking to continue (OpenAI style)."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the request offers: its name and JSON Schema parameters."""

    name: str
    parameters: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a request asks for, whatever the dialect's field names."""

    dialect: Dialect
    model: str
    prompt: str
    partial: str
    resume: ResumeMode
    tools: tuple[ToolSpec, ...]
    after_tool_result: bool
    max_tokens: int | None
    include_usage: bool
    input_tokens: int
    sse: bool = True
    instructions: str | None = None


def _invalid(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, kind="invalid_request")


def _obj(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise _invalid(f"{where}: expected a JSON array, got {type(value).__name__}")
    return value


def _opt_int(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{where}: expected an integer, got {value!r}")
    return value


def _text_of(content: object) -> str:
    """The text of a message's content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    return ""


# A conversation reduced to (role, text); role is "user", "assistant", "tool"
# (a tool result) or "assistant_tool" (an assistant turn that only called tools).
Turn = tuple[str, str]


def _chat_turns(messages: list[object], where: str) -> tuple[list[Turn], str | None]:
    """OpenAI Chat Completions and Ollama ``messages``."""
    turns: list[Turn] = []
    system = []
    for i, raw in enumerate(messages):
        msg = _obj(raw, f"{where}[{i}]")
        role = msg.get("role")
        text = _text_of(msg.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            turns.append(("user", text))
        elif role == "assistant":
            turns.append(
                ("assistant_tool" if msg.get("tool_calls") and not text else "assistant", text)
            )
        elif role == "tool":
            turns.append(("tool", text))
        else:
            raise _invalid(f"{where}[{i}].role: unknown role {role!r}")
    return turns, "\n".join(system) or None


def _responses_turns(value: object) -> list[Turn]:
    if isinstance(value, str):
        return [("user", value)]
    turns: list[Turn] = []
    for i, raw in enumerate(_list(value, "input")):
        item = _obj(raw, f"input[{i}]")
        kind = item.get("type", "message")
        if kind == "function_call_output":
            turns.append(("tool", str(item.get("output", ""))))
        elif kind == "function_call":
            turns.append(("assistant_tool", ""))
        elif kind == "message":
            role = item.get("role")
            text = _text_of(item.get("content"))
            turns.append(("assistant" if role == "assistant" else "user", text))
    return turns


def _anthropic_turns(messages: list[object]) -> list[Turn]:
    turns: list[Turn] = []
    for i, raw in enumerate(messages):
        msg = _obj(raw, f"messages[{i}]")
        role = msg.get("role")
        content = msg.get("content")
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = content if isinstance(content, list) else []
        types = [b.get("type") for b in blocks if isinstance(b, dict)]
        if role == "user" and "tool_result" in types:
            turns.append(("tool", ""))
        elif role == "assistant" and "tool_use" in types:
            turns.append(("assistant_tool", _text_of(content)))
        else:
            turns.append((role, _text_of(content)))
    return turns


def _gemini_turns(contents: list[object]) -> list[Turn]:
    turns: list[Turn] = []
    for i, raw in enumerate(contents):
        item = _obj(raw, f"contents[{i}]")
        parts = [
            p for p in _list(item.get("parts", []), f"contents[{i}].parts") if isinstance(p, dict)
        ]
        if any("functionResponse" in p for p in parts):
            turns.append(("tool", ""))
        elif any("functionCall" in p for p in parts):
            turns.append(("assistant_tool", ""))
        else:
            role = "assistant" if item.get("role") == "model" else "user"
            turns.append((role, _text_of(parts)))
    return turns


def _tools(dialect: Dialect, raw: object) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    specs = []
    for i, item in enumerate(_list(raw, "tools")):
        tool = _obj(item, f"tools[{i}]")
        if dialect is Dialect.GEMINI:
            decls = tool.get("functionDeclarations", tool.get("function_declarations", []))
            for decl in _list(decls, f"tools[{i}].functionDeclarations"):
                d = _obj(decl, f"tools[{i}].functionDeclarations[]")
                specs.append(
                    ToolSpec(str(d.get("name", "")), _obj(d.get("parameters", {}), "parameters"))
                )
            continue
        if dialect is Dialect.ANTHROPIC:
            fn, params_key = tool, "input_schema"
        elif dialect is Dialect.OPENAI_RESPONSES:
            fn, params_key = tool, "parameters"
        else:
            fn, params_key = _obj(tool.get("function"), f"tools[{i}].function"), "parameters"
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(f"tools[{i}]: a tool needs a non-empty string 'name'")
        specs.append(ToolSpec(name, _obj(fn.get(params_key) or {}, f"tools[{i}].{params_key}")))
    return tuple(specs)


def _last_user(turns: list[Turn], before: int) -> str:
    for role, text in reversed(turns[:before]):
        if role == "user":
            return text
    return ""


def _analyse(turns: list[Turn]) -> tuple[str, str, ResumeMode, bool]:
    """(prompt, partial answer, resume mode, whether the last turn is a tool result)."""
    if not turns:
        return "", "", ResumeMode.NONE, False
    role, text = turns[-1]
    if role == "assistant":
        return _last_user(turns, len(turns) - 1), text, ResumeMode.PREFILL, False
    if (
        role == "user"
        and len(turns) >= 2
        and turns[-2][0] == "assistant"
        and turns[-2][1]
        and is_continue_instruction(text)
    ):
        return _last_user(turns, len(turns) - 2), turns[-2][1], ResumeMode.CONTINUE, False
    if role == "tool":
        return _last_user(turns, len(turns)), "", ResumeMode.NONE, True
    return text, "", ResumeMode.NONE, False


def _not_streaming() -> RemoteProtocolError:
    return _invalid(
        'the streamcore emulator serves streaming requests only: set "stream": true'
        " in the request body"
    )


def parse_request(body: object, rt: Route) -> Conversation:
    """Read a provider request body (parsed JSON) into a :class:`Conversation`.

    Raises :class:`~streamcore.RemoteProtocolError` (kind ``invalid_request``)
    for a body the provider would reject with HTTP 400; the message is the one
    the emulator sends back.

    >>> conv = parse_request({"model": "gpt-4o-mini", "stream": True,
    ...     "messages": [{"role": "user", "content": "Hi"}]}, Route(Dialect.OPENAI_CHAT))
    >>> (conv.prompt, conv.resume, conv.include_usage)
    ('Hi', <ResumeMode.NONE: 'none'>, False)
    """
    req = _obj(body, "request body")
    dialect = rt.dialect
    include_usage = False
    instructions = None
    if dialect is Dialect.OPENAI_CHAT:
        if req.get("stream") is not True:
            raise _not_streaming()
        turns, instructions = _chat_turns(_list(req.get("messages"), "messages"), "messages")
        max_tokens = _opt_int(req.get("max_completion_tokens"), "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _opt_int(req.get("max_tokens"), "max_tokens")
        options = req.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        model = req.get("model", "gpt-4o-mini")
    elif dialect is Dialect.OPENAI_RESPONSES:
        if req.get("stream") is not True:
            raise _not_streaming()
        turns = _responses_turns(req.get("input", ""))
        max_tokens = _opt_int(req.get("max_output_tokens"), "max_output_tokens")
        raw_instructions = req.get("instructions")
        instructions = raw_instructions if isinstance(raw_instructions, str) else None
        model = req.get("model", "gpt-4o-mini")
    elif dialect is Dialect.ANTHROPIC:
        if req.get("stream") is not True:
            raise _not_streaming()
        if "max_tokens" not in req:
            raise _invalid("max_tokens: Field required")
        max_tokens = _opt_int(req.get("max_tokens"), "max_tokens")
        turns = _anthropic_turns(_list(req.get("messages"), "messages"))
        if turns and turns[-1][0] == "assistant" and turns[-1][1] != turns[-1][1].rstrip():
            raise _invalid("messages: final assistant content cannot end with trailing whitespace")
        system = req.get("system")
        instructions = _text_of(system) or None
        model = req.get("model", "claude-sonnet-4-6")
    elif dialect is Dialect.GEMINI:
        turns = _gemini_turns(_list(req.get("contents"), "contents"))
        config = req.get("generationConfig")
        max_tokens = None
        if isinstance(config, dict):
            max_tokens = _opt_int(config.get("maxOutputTokens"), "generationConfig.maxOutputTokens")
        model = rt.model or "gemini-2.5-flash"
    else:
        if req.get("stream", True) is not True:
            raise _not_streaming()
        turns, instructions = _chat_turns(_list(req.get("messages"), "messages"), "messages")
        options = req.get("options")
        max_tokens = None
        if isinstance(options, dict):
            max_tokens = _opt_int(options.get("num_predict"), "options.num_predict")
            if max_tokens is not None and max_tokens < 0:
                max_tokens = None  # Ollama: -1 means no limit
        model = req.get("model", "llama3.2")
    if not isinstance(model, str):
        raise _invalid(f"model: expected a string, got {model!r}")
    if max_tokens is not None and max_tokens < 0:
        raise _invalid(f"max tokens must not be negative, got {max_tokens}")
    prompt, partial, resume, after_tool = _analyse(turns)
    chars = sum(len(text) for _, text in turns) + len(instructions or "")
    return Conversation(
        dialect=dialect,
        model=model,
        prompt=prompt,
        partial=partial,
        resume=resume,
        tools=_tools(dialect, req.get("tools")),
        after_tool_result=after_tool,
        max_tokens=max_tokens,
        include_usage=include_usage,
        input_tokens=max(1, chars // 4),  # about four characters per token
        sse=rt.sse,
        instructions=instructions,
    )


class StopKind(enum.Enum):
    """Why the planned answer ends."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True, slots=True)
class ToolCallPlan:
    """One tool call the emulator makes: its id, the tool and the JSON arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What the emulator answers: text pieces or tool calls, and why it stops.

    ``resumed_from`` is the offset in the full answer where a resumed request
    continued (``None`` for a fresh answer); ``repeated`` is how many characters
    of the partial answer were repeated first (the ``repeat`` fault).
    """

    pieces: tuple[str, ...]
    tool_calls: tuple[ToolCallPlan, ...]
    stop: StopKind
    resumed_from: int | None = None
    repeated: int = 0

    @property
    def text(self) -> str:
        """The text this plan streams (the pieces joined)."""
        return "".join(self.pieces)


CITIES = (
    "Paris", "Tokyo", "London", "Berlin", "New York", "San Francisco", "Toronto", "Sydney",
    "Madrid", "Rome", "Seoul", "Beijing", "Cairo", "Lisbon", "Amsterdam", "Mumbai", "São Paulo",
)  # fmt: skip
MAX_TOOL_CALLS = 4


def _tool_arguments(tool: ToolSpec, city: str) -> str:
    props = tool.parameters.get("properties")
    names = list(props) if isinstance(props, dict) else []
    required = tool.parameters.get("required")
    required_names = (
        [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    )
    key = next((k for k in ("location", "city") if k in names), None)
    if key is None:
        key = required_names[0] if required_names else names[0] if names else "location"
    args: dict[str, str] = {key: city}
    for extra in ("unit", "format"):
        if extra in required_names:
            args[extra] = "celsius"
    return json.dumps(args, ensure_ascii=False)


def _plan_tool_calls(conv: Conversation, ids: random.Random) -> tuple[ToolCallPlan, ...]:
    tool = next((t for t in conv.tools if "weather" in t.name.lower()), conv.tools[0])
    lowered = conv.prompt.lower()
    found = sorted((lowered.find(c.lower()), c) for c in CITIES if c.lower() in lowered)
    cities = [c for _, c in found][:MAX_TOOL_CALLS] or ["Paris"]
    calls = []
    for city in cities:
        if conv.dialect is Dialect.ANTHROPIC:
            call_id = "toolu_01" + random_id(ids, 22)
        else:
            call_id = "call_" + random_id(ids, 24)
        calls.append(ToolCallPlan(call_id, tool.name, _tool_arguments(tool, city)))
    return tuple(calls)


def plan_answer(
    conv: Conversation, *, length: int, repeat: int = 0, ids: random.Random | None = None
) -> Plan:
    """Decide what the emulator says to ``conv``; deterministic for a given request.

    Tool calls when the request offers tools, the prompt mentions the weather
    and no tool result came back yet (one call per city named, in order).
    Otherwise the text of ``answer_for(prompt, length=length)``: continued from
    the partial answer of a resumed request (after repeating its last
    ``repeat`` characters), cut into tokens, and cut short at the request's
    token limit (then ``stop`` is :attr:`StopKind.LENGTH`).

    >>> conv = parse_request({"model": "m", "stream": True, "max_tokens": 5,
    ...     "messages": [{"role": "user", "content": "Hi"}]}, Route(Dialect.ANTHROPIC))
    >>> plan = plan_answer(conv, length=100)
    >>> (len(plan.pieces), plan.stop)
    (5, <StopKind.LENGTH: 'length'>)
    """
    rng = ids if ids is not None else random.Random(0)
    if conv.tools and not conv.after_tool_result and "weather" in conv.prompt.lower():
        return Plan(pieces=(), tool_calls=_plan_tool_calls(conv, rng), stop=StopKind.TOOL_CALLS)
    answer = answer_for(conv.prompt, length=length)
    offset = None
    repeated = 0
    text = answer
    if conv.resume is not ResumeMode.NONE:
        offset = continuation_offset(answer, conv.partial)
        if offset is not None:
            overlap = conv.partial[:offset][-repeat:] if repeat else ""
            repeated = len(overlap)
            text = overlap + answer[offset:]
    # A fresh answer is cut as answer_tokens() cuts it; a continuation differently.
    pieces = split_tokens(
        text, seed=conv.prompt if offset is None else f"{conv.prompt}\x1f{offset}"
    )
    stop = StopKind.STOP
    if conv.max_tokens is not None and conv.max_tokens < len(pieces):
        pieces = pieces[: conv.max_tokens]
        stop = StopKind.LENGTH
    return Plan(tuple(pieces), (), stop, resumed_from=offset, repeated=repeated)


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def random_id(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """``n`` characters of ``alphabet`` from ``rng`` (the providers' id suffixes)."""
    return "".join(rng.choice(alphabet) for _ in range(n))
