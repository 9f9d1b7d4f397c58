"""Build the final message from a stream of events, complete or cut off.

Theory of operation
-------------------
An :class:`Accumulator` is fed every :mod:`streamcore.events` event of one
stream attempt, in order, and can say at any moment what has arrived so far as
a frozen :class:`FinalMessage`. It is the one place where deltas become a
message, so nothing received is ever lost: a stream that dropped, timed out or
failed still yields the text, reasoning and tool-call fragments that came.

State is kept per choice (``choice`` of the events; 0 unless the request
asked for several answers): lists of text parts joined only when a message is
asked for, so accumulation costs O(total) however small the deltas; tool calls
keyed by their ``index``, each with its argument fragments. Stream-wide facts
(usage, error, response id, model, whether :class:`~streamcore.events.StreamEnd`
came) are kept once.

The accumulator is lenient where providers are sloppy and the dialects let it
through: a tool-call fragment for an index never started creates the call (with
an empty id and name), and a repeated start only fills an id or name still
empty. It judges nothing: whether the stream was complete is
:attr:`FinalMessage.complete`; whether arguments are valid JSON is
:attr:`ToolCallResult.parsed`. The one thing it refuses is growing without bound:
past ``max_chars`` characters it raises
:class:`~streamcore.RemoteProtocolError` and keeps what it had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.events import (
    Event,
    Finish,
    FinishReason,
    KeepAlive,
    ProviderError,
    RawEvent,
    ReasoningDelta,
    Refusal,
    StreamEnd,
    StreamStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamcore.partial_json import parse_complete
from streamcore.request import Message, ToolCall

__all__ = [
    "DEFAULT_MAX_CHARS",
    "Accumulator",
    "ChoiceResult",
    "FinalMessage",
    "ToolCallResult",
    "merge_usage",
]

DEFAULT_MAX_CHARS = 64 << 20
"""64 Mi characters in all (text, reasoning, refusals, tool arguments, ids)."""

# What a new choice or tool call costs against max_chars, so that a stream of
# empty tool calls with fresh indexes is bounded too.
_ENTRY_COST = 64


@dataclass(frozen=True, slots=True)
class ToolCallResult:
    """One tool call as received: ``arguments`` is the concatenated JSON text.

    ``parsed`` is the decoded arguments when ``arguments`` is valid JSON, and
    ``None`` when it is incomplete or invalid (a cut-off stream) -- never an
    exception. ``ended`` says whether the provider marked the call finished
    (:class:`~streamcore.events.ToolCallEnd`).

    >>> call = ToolCallResult(0, "call_abc", "get_weather", '{"city": "Paris"}', {"city": "Paris"})
    >>> call.to_tool_call()
    ToolCall(id='call_abc', name='get_weather', arguments='{"city": "Paris"}')
    """

    index: int
    id: str
    name: str
    arguments: str
    parsed: object | None
    ended: bool = False

    def to_tool_call(self) -> ToolCall:
        """The call as a :class:`~streamcore.request.ToolCall`, to send back in the next turn."""
        return ToolCall(id=self.id, name=self.name, arguments=self.arguments)


@dataclass(frozen=True, slots=True)
class ChoiceResult:
    """Everything one choice (candidate answer) received."""

    index: int
    text: str = ""
    reasoning: str = ""
    signatures: tuple[str, ...] = ()
    """Reasoning signatures (Anthropic ``signature_delta``), in arrival order."""
    refusal: str = ""
    tool_calls: tuple[ToolCallResult, ...] = ()
    """In ``index`` order."""
    finish_reason: FinishReason | None = None
    finish_raw: str | None = None


@dataclass(frozen=True, slots=True)
class FinalMessage:
    """What a stream delivered, whether or not it completed.

    The answer fields (``text`` to ``finish_raw``) are those of choice 0;
    ``choices`` holds every choice, choice 0 first, when the request asked for
    several answers.

    >>> acc = Accumulator()
    >>> acc.add_many([TextDelta("Bonjour"), TextDelta(" !"), Finish(FinishReason.STOP, "stop")])
    >>> msg = acc.message()
    >>> (msg.text, msg.finish_reason, msg.complete)
    ('Bonjour !', <FinishReason.STOP: 'stop'>, False)
    """

    text: str = ""
    reasoning: str = ""
    signatures: tuple[str, ...] = ()
    refusal: str = ""
    tool_calls: tuple[ToolCallResult, ...] = ()
    finish_reason: FinishReason | None = None
    finish_raw: str | None = None
    usage: Usage | None = None
    """Latest value of each usage field reported (providers report cumulatively)."""
    error: ProviderError | None = None
    """The first error the provider reported in the stream."""
    response_id: str | None = None
    model: str | None = None
    complete: bool = False
    """Whether the provider's terminal marker (:class:`~streamcore.events.StreamEnd`) arrived."""
    choices: tuple[ChoiceResult, ...] = ()

    def as_message(self) -> Message:
        """Choice 0 as an assistant :class:`~streamcore.request.Message` for the next turn.

        A cut-off answer makes a prefill: send it as the last message to resume.

        >>> FinalMessage(text="The capital of France is").as_message()
        Message(role='assistant', content='The capital of France is', tool_calls=(), ...)
        """
        return Message(
            role="assistant",
            content=self.text,
            tool_calls=tuple(call.to_tool_call() for call in self.tool_calls),
        )


def merge_usage(old: Usage | None, new: Usage) -> Usage:
    """``new`` with each field it leaves ``None`` taken from ``old``.

    Providers report usage cumulatively and sometimes partially (Anthropic's
    ``message_start`` has the input tokens, its ``message_delta`` the output
    tokens), so the latest report wins field by field.

    >>> merge_usage(Usage(input_tokens=472, output_tokens=1), Usage(output_tokens=89))
    Usage(input_tokens=472, output_tokens=89, cached_tokens=None, reasoning_tokens=None)
    """
    if old is None:
        return new
    return Usage(
        input_tokens=old.input_tokens if new.input_tokens is None else new.input_tokens,
        output_tokens=old.output_tokens if new.output_tokens is None else new.output_tokens,
        cached_tokens=old.cached_tokens if new.cached_tokens is None else new.cached_tokens,
        reasoning_tokens=(
            old.reasoning_tokens if new.reasoning_tokens is None else new.reasoning_tokens
        ),
    )


def _joined(parts: list[str]) -> str:
    """Join ``parts`` and keep the result as the single part, so a later join starts there."""
    if len(parts) == 1:
        return parts[0]
    text = "".join(parts)
    parts[:] = [text]
    return text


class _ToolParts:
    __slots__ = ("arguments", "ended", "id", "name", "parsed", "parsed_for")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.arguments: list[str] = []
        self.ended = False
        self.parsed_for = -1  # length of the arguments `parsed` was computed for
        self.parsed: object | None = None

    def result(self, index: int) -> ToolCallResult:
        arguments = _joined(self.arguments) if self.arguments else ""
        if self.parsed_for != len(arguments):
            self.parsed = parse_complete(arguments)
            self.parsed_for = len(arguments)
        return ToolCallResult(index, self.id, self.name, arguments, self.parsed, self.ended)


# Deltas are a few characters each, and a str object costs about 50 bytes before its
# text: a long answer held as one str per delta would weigh several times its text.
# Every _COMPACT deltas the newest _COMPACT pieces become one (each character is copied
# once more, so the work stays linear and a piece list grows by one per _COMPACT deltas).
_COMPACT = 64


def _append(parts: list[str], text: str, loose: int) -> int:
    """Append ``text`` to ``parts``, which has ``loose`` pieces since it was last compacted;
    join the newest ``_COMPACT`` into one when there are that many. Returns the new count."""
    parts.append(text)
    if loose + 1 < _COMPACT:
        return loose + 1
    parts[-_COMPACT:] = ["".join(parts[-_COMPACT:])]
    return 0


class _ChoiceParts:
    __slots__ = (
        "finish",
        "loose_reasoning",
        "loose_text",
        "reasoning",
        "refusal",
        "signatures",
        "text",
        "tools",
    )

    def __init__(self) -> None:
        self.text: list[str] = []
        self.loose_text = 0  # pieces appended to text since it was last compacted
        self.reasoning: list[str] = []
        self.loose_reasoning = 0
        self.signatures: list[str] = []
        self.refusal: list[str] = []
        self.tools: dict[int, _ToolParts] = {}
        self.finish: Finish | None = None

    def result(self, index: int) -> ChoiceResult:
        finish = self.finish
        return ChoiceResult(
            index=index,
            text=_joined(self.text) if self.text else "",
            reasoning=_joined(self.reasoning) if self.reasoning else "",
            signatures=tuple(self.signatures),
            refusal=_joined(self.refusal) if self.refusal else "",
            tool_calls=tuple(self.tools[i].result(i) for i in sorted(self.tools)),
            finish_reason=None if finish is None else finish.reason,
            finish_raw=None if finish is None else finish.raw,
        )


class Accumulator:
    """Collects the events of one stream into a :class:`FinalMessage`.

    Feed every event with :meth:`add` (or :meth:`add_many`); ask for
    :meth:`message` whenever you like -- mid-stream, after a drop, at the end.

    >>> acc = Accumulator()
    >>> acc.add_many([
    ...     StreamStarted("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5"),
    ...     ToolCallStart(0, "toolu_01A09q90qw90lq917835lq9", "get_weather"),
    ...     ToolCallDelta(0, '{"location": "San Fra'),
    ...     ToolCallDelta(0, 'ncisco, CA"}'),
    ...     ToolCallEnd(0),
    ... ])
    >>> acc.message().tool_calls[0].parsed
    {'location': 'San Francisco, CA'}
    """

    def __init__(self, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if max_chars < 1:
            raise LocalProtocolError(
                f"max_chars must be at least 1, got {max_chars}", kind="bad_limit"
            )
        self._max_chars = max_chars
        self._chars = 0
        self._choices: dict[int, _ChoiceParts] = {0: _ChoiceParts()}
        self._usage: Usage | None = None
        self._error: ProviderError | None = None
        self._response_id: str | None = None
        self._model: str | None = None
        self._complete = False
        # Any: each handler takes its own event type; add() dispatches on type(event).
        self._handlers: dict[type, Callable[[Any], None]] = {
            TextDelta: self._on_text,
            ReasoningDelta: self._on_reasoning,
            Refusal: self._on_refusal,
            ToolCallStart: self._on_tool_start,
            ToolCallDelta: self._on_tool_delta,
            ToolCallEnd: self._on_tool_end,
            Usage: self._on_usage,
            Finish: self._on_finish,
            ProviderError: self._on_error,
            StreamStarted: self._on_started,
            StreamEnd: self._on_end,
            KeepAlive: _ignore,
            RawEvent: _ignore,
        }

    def add(self, event: Event) -> None:
        """Take one event into the message.

        Raises :class:`~streamcore.RemoteProtocolError` (``kind="message_too_large"``)
        if the event would take the message past ``max_chars``; the event is then
        not added and everything before it is kept. Raises
        :class:`~streamcore.LocalProtocolError` (``kind="not_an_event"``) for an
        object that is not a :mod:`streamcore.events` event.

        >>> acc = Accumulator()
        >>> acc.add(ReasoningDelta("The user asks about Paris."))
        >>> acc.message().reasoning
        'The user asks about Paris.'
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            raise LocalProtocolError(
                f"Accumulator.add() takes a streamcore event, got {type(event).__name__}",
                kind="not_an_event",
            )
        handler(event)

    def add_many(self, events: Iterable[Event]) -> None:
        """:meth:`add` each event in order.

        >>> acc = Accumulator()
        >>> acc.add_many([TextDelta("Hello"), TextDelta(", world")])
        >>> acc.message().text
        'Hello, world'
        """
        for event in events:
            self.add(event)

    def message(self) -> FinalMessage:
        """A frozen snapshot of everything added so far.

        Costs time proportional to what arrived since the last call for text
        (parts are joined once and kept joined) plus a ``json.loads`` of tool
        arguments that changed.

        >>> Accumulator().message().text
        ''
        """
        # Choice 0 first (it is the answer), then the others in index order.
        order = sorted(self._choices, key=lambda i: (i != 0, i))
        choices = tuple(self._choices[i].result(i) for i in order)
        first = choices[0]
        return FinalMessage(
            text=first.text,
            reasoning=first.reasoning,
            signatures=first.signatures,
            refusal=first.refusal,
            tool_calls=first.tool_calls,
            finish_reason=first.finish_reason,
            finish_raw=first.finish_raw,
            usage=self._usage,
            error=self._error,
            response_id=self._response_id,
            model=self._model,
            complete=self._complete,
            choices=choices,
        )

    # Handlers, one per event type.

    def _charge(self, chars: int) -> None:
        if self._chars + chars > self._max_chars:
            raise RemoteProtocolError(
                f"the streamed message would exceed {self._max_chars} characters "
                "(Accumulator max_chars); raise the limit or check the provider's output",
                kind="message_too_large",
            )
        self._chars += chars

    def _choice(self, index: int, chars: int) -> _ChoiceParts:
        """The choice at ``index``, created if new, after charging ``chars`` for the event."""
        parts = self._choices.get(index)
        self._charge(chars if parts is not None else chars + _ENTRY_COST)
        if parts is None:
            parts = self._choices[index] = _ChoiceParts()
        return parts

    def _tool(self, choice_index: int, index: int, chars: int) -> _ToolParts:
        """The tool call at ``index`` of a choice, created if new, after charging ``chars``."""
        choice = self._choices.get(choice_index)
        tool = None if choice is None else choice.tools.get(index)
        cost = chars
        if choice is None:
            cost += _ENTRY_COST
        if tool is None:
            cost += _ENTRY_COST
        self._charge(cost)
        if choice is None:
            choice = self._choices[choice_index] = _ChoiceParts()
        if tool is None:
            tool = choice.tools[index] = _ToolParts("", "")
        return tool

    def _on_text(self, event: TextDelta) -> None:
        if event.text:
            choice = self._choice(event.choice, len(event.text))
            choice.loose_text = _append(choice.text, event.text, choice.loose_text)

    def _on_reasoning(self, event: ReasoningDelta) -> None:
        if event.text or event.signature:
            choice = self._choice(event.choice, len(event.text) + len(event.signature))
            if event.text:
                choice.loose_reasoning = _append(
                    choice.reasoning, event.text, choice.loose_reasoning
                )
            if event.signature:
                choice.signatures.append(event.signature)

    def _on_refusal(self, event: Refusal) -> None:
        if event.text:
            self._choice(event.choice, len(event.text)).refusal.append(event.text)

    def _on_tool_start(self, event: ToolCallStart) -> None:
        tool = self._tool(event.choice, event.index, len(event.id) + len(event.name))
        if not tool.id:
            tool.id = event.id
        if not tool.name:
            tool.name = event.name

    def _on_tool_delta(self, event: ToolCallDelta) -> None:
        tool = self._tool(event.choice, event.index, len(event.arguments))
        if event.arguments:
            tool.arguments.append(event.arguments)

    def _on_tool_end(self, event: ToolCallEnd) -> None:
        self._tool(event.choice, event.index, 0).ended = True

    def _on_usage(self, event: Usage) -> None:
        self._usage = merge_usage(self._usage, event)

    def _on_finish(self, event: Finish) -> None:
        self._choice(event.choice, 0).finish = event

    def _on_error(self, event: ProviderError) -> None:
        if self._error is None:
            self._error = event

    def _on_started(self, event: StreamStarted) -> None:
        if self._response_id is None and event.response_id is not None:
            self._charge(len(event.response_id))
            self._response_id = event.response_id
        if self._model is None and event.model is not None:
            self._charge(len(event.model))
            self._model = event.model

    def _on_end(self, event: StreamEnd) -> None:
        self._complete = True


def _ignore(event: Event) -> None:
    pass
