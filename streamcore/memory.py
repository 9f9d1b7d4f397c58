"""Conversation memory: the turns of a chat, and the window of them that fits a model.

Theory of operation
-------------------
A :class:`Conversation` is the history of one chat: an optional system prompt,
then :class:`Turn` records in order -- a :class:`~streamcore.request.Message`
with what the message itself cannot say (the answer was interrupted and why,
the usage the provider reported, when it happened). Everything that changes
the history goes through a handful of methods; which one is legal depends only
on the last turn, and :data:`TRANSITIONS` says it as a table
(:class:`State` x :class:`Step` -> next state). A step missing from a state's
row raises :class:`~streamcore.LocalProtocolError`
(``kind="illegal_transition"``) and changes nothing. The table is what keeps a
history sendable: tool calls are answered before anything else, every tool
result answers a call of the turn just before it, and a reply answers
something. ``/retry`` (:meth:`Conversation.replace_last_reply`) and
``/continue`` (:meth:`Conversation.continue_reply`) take the last reply off and
put its replacement on through the same table.

Each turn's token count is taken once, when the turn is added, and kept beside
it; so are the system prompt's and the summary's. Building a request sums
cached numbers and never tokenizes the history again. The counter is any
``count(text) -> int`` (``len(encoding.encode_ordinary(text))``) or a
:class:`~streamcore.tokens.Tokenizer`; :meth:`Conversation.set_counter`
recounts everything once when the model (and so the tokenizer) changes.

The window
~~~~~~~~~~
A model sees at most its context window; :func:`prompt_budget` is that window
(:func:`context_window`) minus the tokens kept free for the answer.
:meth:`Conversation.window` picks what to send within a budget:

* the system prompt and the tool definitions always go (if they alone do not
  fit, ``kind="context_too_small"``);
* then the longest *suffix* of the history that fits. It may only start at a
  *cut point*: never inside a unit -- an assistant turn that called tools and
  its tool results are one unit, kept or dropped together -- and, by default
  (``start_with_user=True``), only at a user turn, because Anthropic rejects a
  request whose first message is the assistant's and a reply without its
  question is noise anyway. The start of the history is always a cut point;
* the newest turn is always in: if the newest cut segment alone does not fit,
  the window raises ``kind="context_too_small"`` rather than truncate a
  message the user wrote -- shortening it is their call.

A turn is sent as it was, except an interrupted reply: it goes as text only,
because its tool calls were cut off mid-arguments and are not calls a provider
would accept back. An interrupted reply that is the last turn is therefore a
prefill, which is how ``/continue`` resumes it.

Token counts are estimates of what the provider will count: each message
costs its text plus :data:`MESSAGE_OVERHEAD_TOKENS` for the role and format
tokens around it, and providers other than OpenAI use tokenizers of their own.
The window guarantees the sum of these counts stays within the budget.

Summaries
~~~~~~~~~
Turns that fall out of the window can be condensed instead of forgotten. The
core does no I/O, so the caller runs the summary: :class:`Window` lists the
turns it ``dropped``; :meth:`Conversation.summary_request` turns them (and any
earlier summary) into a :class:`~streamcore.request.ChatRequest` asking the
same model for a summary; the caller streams it and hands the text back with
:meth:`Conversation.set_summary` (``covering=window.start``). From then on the
turns it covers are never sent again; the summary is, appended to the system
prompt under :data:`SUMMARY_HEADING`, and it counts against the budget.

Why the system prompt rather than a first user message: every provider has a
system slot, so nothing else moves; a fake first user message would sit next
to the real first user turn (two user messages in a row, which some providers
merge and others reject) and could be answered as if it were a question. To
the window the summary is simply the oldest unit: it is kept only when every
turn it does not cover fits too, otherwise it is dropped with the oldest turns
and the window says so (:attr:`Window.needs_summary`), so the caller can fold
the old summary and the newly dropped turns into a new one::

    window = chat.window(prompt_budget(model, max_tokens=1024))
    if summarize and window.needs_summary:
        text = run(chat.summary_request(model, window.dropped))  # the driver streams it
        chat.set_summary(text, covering=window.start)
    request = chat.to_request(model, max_tokens=1024)
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from streamcore._errors import LocalProtocolError
from streamcore.events import Usage
from streamcore.request import ChatRequest, Message, Role, Tool, ToolCall
from streamcore.tokens import Tokenizer

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_MAX_TURNS",
    "DEFAULT_REPLY_RESERVE",
    "DEFAULT_SUMMARY_TOKENS",
    "KNOWN_CONTEXT_WINDOWS",
    "MESSAGE_OVERHEAD_TOKENS",
    "REPLACEABLE_STATES",
    "SUMMARY_HEADING",
    "TRANSITIONS",
    "Conversation",
    "State",
    "Step",
    "Summary",
    "Turn",
    "Window",
    "context_window",
    "prompt_budget",
]

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens a message costs beyond its text: an estimate of the role and format tokens.

OpenAI's chat format wraps every message in about three tokens plus the role
name (``<|start|>user<|message|>...<|end|>``); Anthropic and Gemini do not
publish theirs, so the same estimate stands for them. Each tool call and each
tool definition is charged the same overhead besides its id, name and JSON.
"""

DEFAULT_CONTEXT_WINDOW = 8_192
"""The context window assumed for a model not in :data:`KNOWN_CONTEXT_WINDOWS`.

Small on purpose: most unknown models are local ones, served with a few
thousand tokens of context unless told otherwise. Pass ``context_tokens`` for more.
"""

DEFAULT_REPLY_RESERVE = 4_096
"""Tokens kept free for the answer when the request sets no ``max_tokens``
(at most a quarter of the context window)."""

DEFAULT_SUMMARY_TOKENS = 1_024
"""The ``max_tokens`` of a :meth:`Conversation.summary_request`."""

DEFAULT_MAX_TURNS = 100_000
"""The most turns a :class:`Conversation` holds; past it, start a new one or clear it."""

SUMMARY_HEADING = (
    "Summary of the earlier conversation (older turns were condensed to fit the context window):"
)
"""The line that introduces the summary where it is appended to the system prompt."""

# Context windows in tokens, by model-name prefix (the longest matching prefix
# wins), from the providers' model pages. Local models (Ollama tags) list the
# model's trained context; a server may be configured with less.
KNOWN_CONTEXT_WINDOWS: Mapping[str, int] = MappingProxyType(
    {
        # OpenAI
        "gpt-3.5-turbo": 16_385,
        "gpt-4": 8_192,
        "gpt-4-32k": 32_768,
        "gpt-4-turbo": 128_000,
        "gpt-4o": 128_000,
        "chatgpt-4o": 128_000,
        "gpt-4.1": 1_047_576,
        "gpt-4.5": 128_000,
        "gpt-5": 400_000,
        "o1": 200_000,
        "o1-mini": 128_000,
        "o1-preview": 128_000,
        "o3": 200_000,
        "o4-mini": 200_000,
        # Anthropic: every Claude 3 and later model
        "claude": 200_000,
        # Google
        "gemini": 1_048_576,
        "gemini-1.5-pro": 2_097_152,
        # Open models as Ollama names them
        "llama3": 8_192,
        "llama3.1": 131_072,
        "llama3.2": 131_072,
        "llama3.3": 131_072,
        "qwen2.5": 32_768,
        "mistral": 32_768,
        "gemma3": 131_072,
    }
)

_PREFIXES_LONGEST_FIRST = sorted(KNOWN_CONTEXT_WINDOWS, key=len, reverse=True)


def context_window(model: str, override: int | None = None) -> int:
    """The context window of ``model`` in tokens: ``override`` if given, else the table's.

    Provider prefixes (``models/``, ``openai/``) and Ollama tags (``:3b``) are
    ignored; a model the table does not know gets :data:`DEFAULT_CONTEXT_WINDOW`.

    >>> context_window("gpt-4o-mini"), context_window("models/gemini-2.5-pro")
    (128000, 1048576)
    >>> context_window("llama3.2:3b"), context_window("my-local-model")
    (131072, 8192)
    >>> context_window("my-local-model", override=32_768)
    32768
    """
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override <= 0:
            raise LocalProtocolError(
                f"context window override must be a positive int, got {override!r}",
                kind="bad_context_window",
            )
        return override
    name = model.lower().rsplit("/", 1)[-1]
    for prefix in _PREFIXES_LONGEST_FIRST:
        if name.startswith(prefix):
            return KNOWN_CONTEXT_WINDOWS[prefix]
    return DEFAULT_CONTEXT_WINDOW


def prompt_budget(
    model: str, *, context_tokens: int | None = None, max_tokens: int | None = None
) -> int:
    """Tokens the prompt may use: the context window minus what is kept for the answer.

    The answer gets ``max_tokens`` when the request sets it, otherwise
    :data:`DEFAULT_REPLY_RESERVE` (at most a quarter of the window).

    >>> prompt_budget("gpt-4o"), prompt_budget("gpt-4o", max_tokens=1_000)
    (123904, 127000)
    >>> prompt_budget("my-local-model")
    6144
    """
    window = context_window(model, context_tokens)
    reserve = max_tokens if max_tokens is not None else min(DEFAULT_REPLY_RESERVE, window // 4)
    if reserve < 0 or reserve >= window:
        raise LocalProtocolError(
            f"max_tokens={reserve} leaves no room for a prompt in {model!r}'s context window "
            f"of {window} tokens; lower max_tokens or raise the context size (context_tokens)",
            kind="context_too_small",
        )
    return window - reserve


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the history, with what the message itself cannot say.

    ``interrupted`` marks an assistant reply whose stream ended early (dropped,
    timed out, cancelled, over budget); ``reason`` says why, in words.
    ``usage`` is what the provider reported for the request that produced a
    reply; ``at`` is when the turn was added, in seconds since the epoch as
    the caller's clock said (memory reads no clock).

    >>> Turn(Message("assistant", "The capital of France is"), interrupted=True,
    ...      reason="connection dropped").interrupted
    True
    """

    message: Message
    interrupted: bool = False
    reason: str | None = None
    usage: Usage | None = None
    at: float | None = None

    def __post_init__(self) -> None:
        message = self.message
        if message.role == "system":
            raise LocalProtocolError(
                "a system message is not a turn; set the conversation's system prompt instead",
                kind="system_turn",
            )
        if message.role != "assistant" and (self.interrupted or message.tool_calls):
            raise LocalProtocolError(
                f"a {message.role} turn cannot be interrupted or carry tool calls; "
                "only assistant replies can",
                kind="bad_turn",
            )
        if self.reason is not None and not self.interrupted:
            raise LocalProtocolError(
                "a turn has a reason only when it is interrupted; set interrupted=True",
                kind="bad_turn",
            )
        if (message.role == "tool") != bool(message.tool_call_id):
            raise LocalProtocolError(
                "a tool turn needs the tool_call_id of the call it answers, and only a "
                f"tool turn has one (role {message.role!r}, "
                f"tool_call_id {message.tool_call_id!r})",
                kind="bad_turn",
            )

    @property
    def role(self) -> Role:
        """The message's role: ``"user"``, ``"assistant"`` or ``"tool"``."""
        return self.message.role

    def sent_message(self) -> Message:
        """The message as a request carries it: an interrupted reply goes as its text only.

        >>> call = ToolCall("call_1", "get_weather", '{"ci')
        >>> cut = Message("assistant", "Let me check.", (call,))
        >>> Turn(cut, interrupted=True, reason="timed out").sent_message().tool_calls
        ()
        """
        if self.interrupted and self.message.tool_calls:
            return Message("assistant", self.message.content)
        return self.message


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary standing in for the first ``covering`` turns of the history."""

    text: str
    covering: int


@dataclass(frozen=True, slots=True)
class Window:
    """What a request carries: the part of the history that fits the budget.

    ``messages`` are the turns ``start`` to ``end`` (``end`` is one past the
    last turn considered: the history's length, or one less for a retry),
    as sent. ``system`` is the system prompt with the summary appended when
    ``summary_kept``. ``dropped`` are the turns left out that no summary
    covers; ``summary_dropped`` says an existing summary did not fit.
    ``tokens`` is the window's cost, never more than ``budget``.
    """

    system: str | None
    messages: tuple[Message, ...]
    start: int
    end: int
    dropped: tuple[Turn, ...]
    summary_kept: bool
    summary_dropped: bool
    tokens: int
    budget: int

    @property
    def needs_summary(self) -> bool:
        """Whether something left the window that a (new) summary should cover."""
        return bool(self.dropped) or self.summary_dropped


class State(enum.Enum):
    """Where a conversation is, judged by its last turn."""

    EMPTY = "empty"
    """No turns yet."""
    AWAITING_REPLY = "awaiting_reply"
    """The last turn is a user message, or the result that answered the last tool call."""
    REPLIED = "replied"
    """The last turn is a complete reply without tool calls."""
    INTERRUPTED = "interrupted"
    """The last turn is a reply whose stream ended early."""
    CALLED_TOOLS = "called_tools"
    """The last turn is a complete reply that called tools; no result yet."""
    ANSWERING_TOOLS = "answering_tools"
    """Some of the last reply's tool calls have results, not all."""


class Step(enum.Enum):
    """A turn added to the history, classified by what it does."""

    USER = "user"
    REPLY = "reply"
    """A complete assistant reply without tool calls."""
    CALL_TOOLS = "call_tools"
    """A complete assistant reply with tool calls."""
    PARTIAL = "partial"
    """An interrupted assistant reply."""
    TOOL_RESULT = "tool_result"
    """A tool result, with calls still unanswered after it."""
    LAST_TOOL_RESULT = "last_tool_result"
    """The tool result that answers the last unanswered call."""


_S = State
_T = Step

# The whole behaviour: state x step -> next state. A missing step is illegal.
_REPLY_MOVES = {
    _T.USER: _S.AWAITING_REPLY,
    _T.REPLY: _S.REPLIED,
    _T.CALL_TOOLS: _S.CALLED_TOOLS,
    _T.PARTIAL: _S.INTERRUPTED,
}
TRANSITIONS: dict[State, dict[Step, State]] = {
    # A reply may open a conversation (a greeting); two user turns in a row are
    # fine (a request failed before any answer, the user wrote again).
    _S.EMPTY: dict(_REPLY_MOVES),
    _S.AWAITING_REPLY: dict(_REPLY_MOVES),
    _S.REPLIED: {_T.USER: _S.AWAITING_REPLY},
    # An interrupted reply stays in the history when the user moves on.
    _S.INTERRUPTED: {_T.USER: _S.AWAITING_REPLY},
    # Providers reject a history with unanswered tool calls: results come first.
    _S.CALLED_TOOLS: {_T.TOOL_RESULT: _S.ANSWERING_TOOLS, _T.LAST_TOOL_RESULT: _S.AWAITING_REPLY},
    _S.ANSWERING_TOOLS: {
        _T.TOOL_RESULT: _S.ANSWERING_TOOLS,
        _T.LAST_TOOL_RESULT: _S.AWAITING_REPLY,
    },
}

REPLACEABLE_STATES = frozenset({_S.REPLIED, _S.INTERRUPTED, _S.CALLED_TOOLS})
"""States whose last turn is a reply that ``/retry`` may replace."""

_HINTS = {
    _S.REPLIED: "the last turn is already a reply; use replace_last_reply() to retry it",
    _S.INTERRUPTED: (
        "the last reply was interrupted; use continue_reply() to extend it or "
        "replace_last_reply() to retry it"
    ),
    _S.CALLED_TOOLS: "the last reply called tools; add a result for each call first",
    _S.ANSWERING_TOOLS: "the last reply's tool calls are not all answered yet",
}
_NO_CALLS_HINT = "a tool result answers a call of the reply just before it; none is waiting"


class Conversation:
    """The history of a chat and the window of it each request carries.

    ``counter`` counts tokens: a ``count(text) -> int`` callable or a
    :class:`~streamcore.tokens.Tokenizer`. ``turns`` and ``summary`` restore a
    saved history (checked like any other additions).

    A toy counter (one token per word) shows the flow; real use passes the
    model's tokenizer (``streamcore.adapters.encodings.load_encoding``):

    >>> chat = Conversation(lambda text: len(text.split()), system="Answer briefly.")
    >>> _ = chat.add_user("What is the capital of France?")
    >>> _ = chat.add_reply(Message("assistant", "Paris."))
    >>> _ = chat.add_user("And of Italy?")
    >>> request = chat.to_request("gpt-4o", max_tokens=256)
    >>> [(m.role, m.content) for m in request.messages]
    [('user', 'What is the capital of France?'), ('assistant', 'Paris.'), ('user', 'And of Italy?')]
    >>> window = chat.window(budget=20)
    >>> [m.content for m in window.messages], window.tokens, len(window.dropped)
    (['And of Italy?'], 13, 2)
    """

    __slots__ = (
        "_count",
        "_counts",
        "_max_turns",
        "_states",
        "_summary",
        "_summary_tokens",
        "_system",
        "_system_tokens",
        "_turns",
    )

    def __init__(
        self,
        counter: Callable[[str], int] | Tokenizer,
        *,
        system: str | None = None,
        turns: Iterable[Turn] = (),
        summary: Summary | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
    ) -> None:
        self._count = _count_function(counter)
        self._max_turns = max_turns
        self._turns: list[Turn] = []
        self._counts: list[int] = []
        # The state after each turn, so taking a reply off restores the one before.
        self._states: list[State] = []
        self._system: str | None = None
        self._system_tokens = 0
        self._summary: Summary | None = None
        self._summary_tokens = 0
        self.set_system(system)
        for turn in turns:
            self.append(turn)
        if summary is not None:
            self.set_summary(summary.text, covering=summary.covering)

    # -- reading ----------------------------------------------------------

    @property
    def system(self) -> str | None:
        """The system prompt."""
        return self._system

    @property
    def turns(self) -> tuple[Turn, ...]:
        """Every turn, oldest first (including those a summary covers)."""
        return tuple(self._turns)

    @property
    def summary(self) -> Summary | None:
        """The summary standing in for the oldest turns, if one was set."""
        return self._summary

    @property
    def state(self) -> State:
        """Where the conversation is (see :data:`TRANSITIONS`)."""
        return self._states[-1] if self._states else State.EMPTY

    @property
    def pending_tool_calls(self) -> tuple[ToolCall, ...]:
        """The last reply's tool calls that have no result yet, in call order."""
        if self.state not in (State.CALLED_TOOLS, State.ANSWERING_TOOLS):
            return ()
        calls, answered = self._open_tool_unit()
        return tuple(call for call in calls if call.id not in answered)

    def __len__(self) -> int:
        return len(self._turns)

    def __repr__(self) -> str:
        return (
            f"Conversation(turns={len(self._turns)}, state={self.state.name}, "
            f"tokens={self.history_tokens}, summary={self._summary is not None})"
        )

    @property
    def history_tokens(self) -> int:
        """The cached token count of every turn (with overheads), summary-covered ones too."""
        return sum(self._counts)

    # -- changing ---------------------------------------------------------

    def set_system(self, text: str | None) -> None:
        """Set (or, with ``None`` or ``""``, remove) the system prompt."""
        self._system = text or None
        self._system_tokens = self._message_tokens(text) if text else 0

    def set_counter(self, counter: Callable[[str], int] | Tokenizer) -> None:
        """Count with another tokenizer (the model changed): every count is taken again, once."""
        self._count = _count_function(counter)
        self._counts = [self._turn_tokens(turn) for turn in self._turns]
        self.set_system(self._system)
        if self._summary is not None:
            self._summary_tokens = self._note_tokens(self._summary.text)

    def add_user(self, text: str, *, at: float | None = None) -> Turn:
        """Add what the user wrote."""
        return self.append(Turn(Message("user", text), at=at))

    def add_reply(
        self, message: Message, *, usage: Usage | None = None, at: float | None = None
    ) -> Turn:
        """Add a complete assistant reply (``FinalMessage.as_message()``)."""
        return self.append(Turn(_assistant(message), usage=usage, at=at))

    def add_partial(
        self,
        message: Message,
        *,
        reason: str,
        usage: Usage | None = None,
        at: float | None = None,
    ) -> Turn:
        """Add the part of a reply that arrived before its stream ended; ``reason`` says why."""
        return self.append(
            Turn(_assistant(message), interrupted=True, reason=reason, usage=usage, at=at)
        )

    def add_tool_result(self, tool_call_id: str, content: str, *, at: float | None = None) -> Turn:
        """Add the result of the last reply's tool call ``tool_call_id``."""
        return self.append(Turn(Message("tool", content, tool_call_id=tool_call_id), at=at))

    def append(self, turn: Turn) -> Turn:
        """Add any turn, if :data:`TRANSITIONS` allows it here; returns it.

        The ``add_*`` methods are shorthands for this. An illegal turn raises
        :class:`~streamcore.LocalProtocolError` and changes nothing.
        """
        if len(self._turns) >= self._max_turns:
            raise LocalProtocolError(
                f"the conversation holds {self._max_turns} turns (max_turns); "
                "clear it or start a new one",
                kind="history_full",
            )
        state = self.state
        step = self._step_of(turn, state)
        next_state = TRANSITIONS[state].get(step)
        if next_state is None:
            tool_step = step in (Step.TOOL_RESULT, Step.LAST_TOOL_RESULT)
            hint = _NO_CALLS_HINT if tool_step else _HINTS[state]
            raise LocalProtocolError(
                f"cannot add {_describe(step)} to a conversation in state {state.name}: {hint}",
                kind="illegal_transition",
            )
        self._turns.append(turn)
        self._counts.append(self._turn_tokens(turn))
        self._states.append(next_state)
        return turn

    def replace_last_reply(self, turn: Turn) -> Turn:
        """Put ``turn`` in place of the last reply (``/retry``); returns it.

        Legal when the last turn is a reply (complete, interrupted, or calling
        tools none of which has a result yet). Build the request for the new
        answer with ``to_request(..., retry=True)``, which leaves the old one out.
        """
        old = self._take_last_reply("replace_last_reply")
        try:
            return self.append(turn)
        except LocalProtocolError:
            self._put_back(old)
            raise

    def continue_reply(
        self,
        continuation: Message,
        *,
        prefill: str | None = None,
        interrupted: bool = False,
        reason: str | None = None,
        usage: Usage | None = None,
        at: float | None = None,
    ) -> Turn:
        """Extend the interrupted last reply with what its continuation streamed (``/continue``).

        The request for it is ``to_request(...)`` as is: the interrupted reply
        is its last message, a prefill. ``prefill`` is the text the dialect
        actually sent (Anthropic strips trailing whitespace:
        ``anthropic.sent_prefill(request)``); the reply becomes ``prefill`` +
        ``continuation.content``, with the continuation's tool calls (the cut
        ones are dropped). It may be interrupted again.

        >>> chat = Conversation(lambda text: len(text.split()))
        >>> _ = chat.add_user("Name three French cheeses.")
        >>> _ = chat.add_partial(Message("assistant", "Brie, Comté "), reason="timed out")
        >>> chat.continue_reply(Message("assistant", " and Roquefort."), prefill="Brie, Comté")
        Turn(message=Message(role='assistant', content='Brie, Comté and Roquefort.', ...), ...)
        """
        if self.state is not State.INTERRUPTED:
            raise LocalProtocolError(
                f"continue_reply needs an interrupted last reply; the conversation is in state "
                f"{self.state.name}",
                kind="illegal_transition",
            )
        old = self._turns[-1]
        if prefill is None:
            prefill = old.message.content
        elif not old.message.content.startswith(prefill):
            raise LocalProtocolError(
                "prefill is not the start of the interrupted reply; pass the text the request "
                "actually sent (e.g. anthropic.sent_prefill(request))",
                kind="prefill_mismatch",
            )
        message = Message(
            "assistant", prefill + continuation.content, tuple(continuation.tool_calls)
        )
        turn = Turn(message, interrupted=interrupted, reason=reason, usage=usage, at=at)
        return self.replace_last_reply(turn)

    def clear(self) -> None:
        """Forget every turn and the summary; the system prompt stays."""
        self._turns.clear()
        self._counts.clear()
        self._states.clear()
        self._summary = None
        self._summary_tokens = 0

    def set_summary(self, text: str, *, covering: int) -> Summary:
        """Let ``text`` stand in for the first ``covering`` turns from now on.

        ``covering`` is normally ``window.start`` of the window whose dropped
        turns were summarized. It must leave the newest turn out of the summary
        and not split a tool call from its results.
        """
        if not 0 < covering < len(self._turns):
            raise LocalProtocolError(
                f"a summary must cover at least one turn and leave the newest out: "
                f"covering={covering} with {len(self._turns)} turns",
                kind="bad_summary",
            )
        if self._turns[covering].role == "tool":
            raise LocalProtocolError(
                f"covering={covering} would separate tool result {covering} from the call it "
                "answers; use the window's start",
                kind="bad_summary",
            )
        self._summary = Summary(text, covering)
        self._summary_tokens = self._note_tokens(text)
        return self._summary

    # -- the window -------------------------------------------------------

    def window(
        self,
        budget: int,
        *,
        tools: Sequence[Tool] = (),
        retry: bool = False,
        start_with_user: bool = True,
    ) -> Window:
        """The newest turns that fit ``budget`` tokens with the system prompt and ``tools``.

        ``retry`` leaves the last reply out (``/retry``). See the module
        docstring for the rules; raises ``kind="context_too_small"`` when the
        system prompt, the tools and the newest turn do not fit together.
        """
        end = len(self._turns)
        if retry:
            if self.state not in REPLACEABLE_STATES:
                raise LocalProtocolError(
                    f"there is no reply to retry: the conversation is in state {self.state.name}",
                    kind="illegal_transition",
                )
            end -= 1
        summary = self._summary
        lo = summary.covering if summary is not None and summary.covering < end else 0
        if lo == 0:
            summary = None
        fixed = self._system_tokens + self._tools_tokens(tools)
        if fixed > budget:
            raise LocalProtocolError(
                f"the system prompt and tool definitions need {fixed} tokens, over the "
                f"prompt budget of {budget}; shorten them, raise the context size "
                "(context_tokens) or lower max_tokens",
                kind="context_too_small",
            )
        turns, counts = self._turns, self._counts
        cost = kept_cost = fixed
        start = i = end
        while i > lo:
            i -= 1
            cost += counts[i]
            role = turns[i].role
            if i == lo or (role == "user" if start_with_user else role != "tool"):
                if cost > budget:
                    break
                start = i
                kept_cost = cost
        if start == end and end > lo:
            newest = self._turns[i]
            raise LocalProtocolError(
                f"the newest turns (from turn {i}, {newest.role}) need {cost - fixed} tokens "
                f"and the system prompt and tools {fixed}: {cost} in all, over the prompt "
                f"budget of {budget}; shorten the message, raise the context size "
                "(context_tokens) or lower max_tokens",
                kind="context_too_small",
            )
        tokens = kept_cost if start < end else fixed
        summary_kept = False
        if summary is not None and start == lo:
            extra = self._summary_tokens + (0 if self._system else MESSAGE_OVERHEAD_TOKENS)
            if tokens + extra <= budget:
                tokens += extra
                summary_kept = True
        system = self._system
        if summary_kept and summary is not None:
            system = _with_summary(system, summary.text)
        return Window(
            system=system,
            messages=tuple(turn.sent_message() for turn in turns[start:end]),
            start=start,
            end=end,
            dropped=tuple(turns[lo:start]),
            summary_kept=summary_kept,
            summary_dropped=summary is not None and not summary_kept,
            tokens=tokens,
            budget=budget,
        )

    def to_request(
        self,
        model: str,
        *,
        context_tokens: int | None = None,
        max_tokens: int | None = None,
        budget: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] = (),
        stop: Sequence[str] = (),
        extra: Mapping[str, object] | None = None,
        retry: bool = False,
        start_with_user: bool = True,
    ) -> ChatRequest:
        """The request for the next reply, carrying the window that fits ``model``.

        The budget is :func:`prompt_budget` (``context_tokens`` overrides the
        model's window; ``max_tokens`` is reserved for the answer) unless
        ``budget`` is given. Refuses while tool calls wait for results
        (``kind="tool_results_pending"``) and when there is nothing to send.
        """
        if not retry and self.state in (State.CALLED_TOOLS, State.ANSWERING_TOOLS):
            waiting = ", ".join(f"{call.name} ({call.id})" for call in self.pending_tool_calls)
            raise LocalProtocolError(
                f"the last reply called tools that have no result yet: {waiting}; add each "
                "result with add_tool_result() before asking for the next reply",
                kind="tool_results_pending",
            )
        if budget is None:
            budget = prompt_budget(model, context_tokens=context_tokens, max_tokens=max_tokens)
        window = self.window(budget, tools=tools, retry=retry, start_with_user=start_with_user)
        if not window.messages:
            raise LocalProtocolError(
                "the conversation has no turn to send; add a user message first",
                kind="nothing_to_send",
            )
        return ChatRequest(
            model=model,
            messages=window.messages,
            system=window.system,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tuple(tools),
            stop=tuple(stop),
            extra=dict(extra) if extra is not None else {},
        )

    def summary_request(
        self,
        model: str,
        dropped: Sequence[Turn],
        *,
        max_tokens: int = DEFAULT_SUMMARY_TOKENS,
    ) -> ChatRequest:
        """A request asking ``model`` to summarize ``dropped`` (and the current summary).

        The turns go as one transcript in a single user message, so the request
        is valid whatever they are (tool calls without their results included).
        Send it, then :meth:`set_summary` with the answer and
        ``covering=window.start``.

        >>> chat = Conversation(lambda text: len(text.split()))
        >>> _ = chat.add_user("Plan a day in Lyon.")
        >>> request = chat.summary_request("gpt-4o", chat.turns)
        >>> request.messages[0].content.splitlines()[-1]
        'User: Plan a day in Lyon.'
        """
        if not dropped and self._summary is None:
            raise LocalProtocolError(
                "nothing to summarize: no dropped turns and no earlier summary",
                kind="nothing_to_send",
            )
        limit = max(50, max_tokens * 3 // 4)
        instructions = (
            "You condense conversations so they can continue without their full text. "
            "Write a summary of the conversation below that keeps every fact, decision, "
            "name, number, code identifier, tool result and open question a continuation "
            f"would need, in the conversation's language, in at most {limit} words. "
            "Write only the summary."
        )
        parts: list[str] = []
        if self._summary is not None:
            parts.append(f"Summary so far:\n{self._summary.text}\n")
        parts.append("Conversation to condense:" if not parts else "Conversation since then:")
        parts.extend(_transcript_line(turn) for turn in dropped)
        return ChatRequest(
            model=model,
            messages=(Message("user", "\n".join(parts)),),
            system=instructions,
            max_tokens=max_tokens,
        )

    # -- internals --------------------------------------------------------

    def _step_of(self, turn: Turn, state: State) -> Step:
        message = turn.message
        if message.role == "user":
            return Step.USER
        if message.role == "assistant":
            if turn.interrupted:
                return Step.PARTIAL
            if not message.tool_calls:
                return Step.REPLY
            ids = [call.id for call in message.tool_calls]
            if "" in ids or len(set(ids)) != len(ids):
                raise LocalProtocolError(
                    f"tool call ids must be unique and non-empty, got {ids!r}; results are "
                    "matched to calls by id",
                    kind="bad_tool_call_ids",
                )
            return Step.CALL_TOOLS
        if state not in (State.CALLED_TOOLS, State.ANSWERING_TOOLS):
            return Step.TOOL_RESULT  # illegal here; the table says so
        calls, answered = self._open_tool_unit()
        call_id = message.tool_call_id
        if call_id in answered:
            raise LocalProtocolError(
                f"tool call {call_id!r} already has a result; each call gets exactly one",
                kind="duplicate_tool_result",
            )
        unanswered = [call.id for call in calls if call.id not in answered]
        if call_id not in unanswered:
            raise LocalProtocolError(
                f"tool result for {call_id!r} answers none of the last reply's calls "
                f"(waiting: {', '.join(unanswered)}); pass the id of the ToolCall it answers",
                kind="unknown_tool_call",
            )
        return Step.LAST_TOOL_RESULT if len(unanswered) == 1 else Step.TOOL_RESULT

    def _open_tool_unit(self) -> tuple[tuple[ToolCall, ...], set[str | None]]:
        """The last reply's calls and the ids answered since (the unit still open)."""
        answered: set[str | None] = set()
        for turn in reversed(self._turns):
            if turn.role != "tool":
                return turn.message.tool_calls, answered
            answered.add(turn.message.tool_call_id)
        return (), answered

    def _take_last_reply(self, what: str) -> tuple[Turn, int, State]:
        if self.state not in REPLACEABLE_STATES:
            raise LocalProtocolError(
                f"{what} needs a reply as the last turn; the conversation is in state "
                f"{self.state.name}",
                kind="illegal_transition",
            )
        return self._turns.pop(), self._counts.pop(), self._states.pop()

    def _put_back(self, old: tuple[Turn, int, State]) -> None:
        turn, count, state = old
        self._turns.append(turn)
        self._counts.append(count)
        self._states.append(state)

    def _message_tokens(self, text: str) -> int:
        return MESSAGE_OVERHEAD_TOKENS + (self._count(text) if text else 0)

    def _turn_tokens(self, turn: Turn) -> int:
        message = turn.sent_message()
        tokens = self._message_tokens(message.content)
        count = self._count
        for call in message.tool_calls:
            tokens += MESSAGE_OVERHEAD_TOKENS + count(call.id) + count(call.name)
            tokens += count(call.arguments) if call.arguments else 0
        if message.tool_call_id:
            tokens += count(message.tool_call_id)
        return tokens

    def _note_tokens(self, text: str) -> int:
        # The summary is appended to the system prompt: count what it adds.
        return self._count(_with_summary(None, text))

    def _tools_tokens(self, tools: Sequence[Tool]) -> int:
        count = self._count
        tokens = 0
        for tool in tools:
            schema = json.dumps(dict(tool.parameters), sort_keys=True, separators=(",", ":"))
            tokens += MESSAGE_OVERHEAD_TOKENS + count(tool.name) + count(schema)
            tokens += count(tool.description) if tool.description else 0
        return tokens


def _count_function(counter: Callable[[str], int] | Tokenizer) -> Callable[[str], int]:
    if callable(counter):
        return counter
    count = getattr(counter, "count", None)
    if not callable(count):
        raise LocalProtocolError(
            f"counter must be a count(text) -> int callable or a Tokenizer, got {counter!r}",
            kind="bad_counter",
        )
    return count  # type: ignore[no-any-return]


def _assistant(message: Message) -> Message:
    if message.role != "assistant":
        raise LocalProtocolError(
            f"a reply is an assistant message, got role {message.role!r}",
            kind="bad_turn",
        )
    return message


def _with_summary(system: str | None, text: str) -> str:
    note = f"{SUMMARY_HEADING}\n{text}"
    return f"{system}\n\n{note}" if system else note


def _describe(step: Step) -> str:
    return {
        Step.USER: "a user message",
        Step.REPLY: "a reply",
        Step.CALL_TOOLS: "a reply with tool calls",
        Step.PARTIAL: "an interrupted reply",
        Step.TOOL_RESULT: "a tool result",
        Step.LAST_TOOL_RESULT: "a tool result",
    }[step]


def _transcript_line(turn: Turn) -> str:
    message = turn.message
    if message.role == "tool":
        return f"Tool result ({message.tool_call_id}): {message.content}"
    if message.role == "user":
        return f"User: {message.content}"
    lines = [f"Assistant: {message.content}" if message.content else "Assistant:"]
    if not turn.interrupted:
        lines.extend(
            f"Assistant called {call.name}({call.arguments}) [{call.id}]"
            for call in message.tool_calls
        )
    if turn.interrupted:
        lines[0] += " [answer cut off]"
    return "\n".join(lines)
