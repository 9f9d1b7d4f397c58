"""One event model for every provider.

Every dialect (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages,
Gemini, Ollama) turns its wire format into these events, so everything above
the dialects -- the stream machine, accumulation, the chat -- is written once.

Events are small frozen dataclasses gathered in the :data:`Event` union. Match
on them and end with ``assert_never`` so mypy flags an event you forgot::

    match event:
        case TextDelta(text=text):
            print(text, end="")
        case ...:
            ...
        case _:
            assert_never(event)

Design rules:

* If the provider *said* something (an error event, a stop reason) it is an
  event here. If the bytes break the grammar, the dialect raises
  :class:`~streamcore.RemoteProtocolError` instead.
* ``choice`` is the candidate index for providers that stream several answers
  at once (OpenAI ``n > 1``, Gemini candidates); it is 0 otherwise.
* Nothing the provider sends is dropped: an event streamcore does not know is
  surfaced as :class:`RawEvent`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, fields

__all__ = [
    "Event",
    "Finish",
    "FinishReason",
    "KeepAlive",
    "ProviderError",
    "RawEvent",
    "ReasoningDelta",
    "Refusal",
    "StreamEnd",
    "StreamStarted",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
    "event_to_dict",
]


class FinishReason(enum.Enum):
    """Why the model stopped, normalized across providers (the raw value is kept too)."""

    STOP = "stop"
    """Natural end of the answer, or a stop sequence matched."""
    LENGTH = "length"
    """The provider's max-tokens limit (or the context window) was reached."""
    TOOL_CALLS = "tool_calls"
    """The model stopped to call one or more tools."""
    CONTENT_FILTER = "content_filter"
    """The provider withheld or cut the answer (safety, recitation, refusal)."""
    OTHER = "other"
    """A reason streamcore does not map; look at :attr:`Finish.raw`."""


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The provider acknowledged the request: its response id and the model serving it."""

    response_id: str | None
    model: str | None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer text."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning ("thinking"), kept apart from the answer.

    ``signature`` carries Anthropic's ``signature_delta`` (an opaque token that
    must be sent back with the thinking block); it is empty for plain text pieces.
    """

    text: str
    signature: str = ""
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A piece of a refusal message (OpenAI ``delta.refusal``)."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """The model began a tool call. ``index`` orders parallel calls within a choice."""

    index: int
    id: str
    name: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments; concatenate them in order."""

    index: int
    arguments: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """The tool call at ``index`` has received all of its arguments."""

    index: int
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as reported by the provider; ``None`` where it did not say.

    Providers report usage cumulatively (Anthropic's ``message_delta``, Ollama's
    final line, OpenAI-compatible servers that repeat it on every chunk), so the
    latest :class:`Usage` event of a stream replaces earlier ones.

    One convention across providers: ``input_tokens`` includes cached tokens
    (``cached_tokens`` says how many of them were cache reads) and
    ``output_tokens`` includes reasoning tokens (``reasoning_tokens``).
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The model finished a choice; ``raw`` is the provider's own value."""

    reason: FinishReason
    raw: str | None
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The provider reported an error in the stream (e.g. Anthropic ``overloaded_error``)."""

    type: str
    message: str
    raw: object = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A keep-alive: an SSE comment or a provider ping. Resets idle timeouts."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A provider event streamcore does not interpret, surfaced rather than dropped."""

    name: str
    payload: object = field(compare=False)


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The provider's terminal marker (``[DONE]``, ``message_stop``, ...): the answer is complete.

    A body that ends without this event was cut off.
    """


Event = (
    StreamStarted
    | TextDelta
    | ReasoningDelta
    | Refusal
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | Usage
    | Finish
    | ProviderError
    | KeepAlive
    | RawEvent
    | StreamEnd
)
"""Every event a dialect can produce."""


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TYPE_NAMES: dict[type, str] = {}


def event_to_dict(event: Event) -> dict[str, object]:
    """A JSON-ready dict for ``event``: ``{"type": "text_delta", "text": ..., ...}``.

    Field names are kept; enums become their values; ``raw``/``payload`` fields are
    included as received (they came from JSON, so they serialize back to JSON).

    >>> event_to_dict(TextDelta("Hi"))
    {'type': 'text_delta', 'text': 'Hi', 'choice': 0}
    >>> event_to_dict(Finish(FinishReason.LENGTH, "max_tokens"))
    {'type': 'finish', 'reason': 'length', 'raw': 'max_tokens', 'choice': 0}
    """
    cls = type(event)
    name = _TYPE_NAMES.get(cls)
    if name is None:
        name = _TYPE_NAMES[cls] = _CAMEL.sub("_", cls.__name__).lower()
    out: dict[str, object] = {"type": name}
    for f in fields(event):
        value = getattr(event, f.name)
        out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out
