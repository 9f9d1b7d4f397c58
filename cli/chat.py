"""``streamcore chat``: an interactive terminal chat that survives what networks do.

Theory of operation
-------------------
**Choosing what to talk to.** :func:`choose_target` reads the flags, then the
environment (``STREAMCORE_PROVIDER``, ``STREAMCORE_MODEL``, the providers' API
key variables). With no flag and no key, the chat starts the built-in provider
emulator in-process on an ephemeral loopback port and says so in one line, so
``make chat`` works offline on a fresh machine. The API key is read from the
environment by the adapter and never printed, saved or logged.

**One trio loop runs everything.** The prompt is read in a worker thread
(``trio.to_thread.run_sync(input, abandon_on_cancel=True)``) so the loop stays
free; ``readline`` gives line editing and history when the terminal has it.
SIGINT is taken from trio with ``trio.open_signal_receiver`` for the whole
chat, so Ctrl-C never surfaces as a ``KeyboardInterrupt`` in the middle of
something: a watcher task looks at what the chat is doing -- during an answer
it cancels that answer's cancel scope (the adapter closes the connection at
once; the partial answer is kept, marked interrupted); at the prompt it ends
the chat. Ctrl-D at the prompt ends it too.

**An answer** (:meth:`Chat.answer`) is one request through
:func:`streamcore.adapters.client.open_stream` with the recovery policy the
flags chose. Its events go to the *view* (:mod:`streamcore.cli.render`: live
markdown on a terminal, plain text down a pipe, JSON lines with ``--json``);
a ticker task animates the typing indicator at the view's frame rate and
checkpoints the answer into the session store at most once a second. When it
ends the reply is added to the conversation (:class:`streamcore.memory.Conversation`)
-- complete, or interrupted with its reason -- and the session store
finishes the row; then the stats line is printed.

**The conversation** decides what each request carries: the sliding window
of turns that fits the model's context, optionally with a summary of older
turns (``--summarize``). ``/retry`` replaces the last reply, ``/continue``
extends an interrupted (or length-stopped) one: the partial answer goes back
as context (:func:`streamcore.recovery.plan_resume`) and the continuation is
joined on by a :class:`~streamcore.recovery.Stitcher`, so the answer reads as
one.

Exit status: 0 after a clean exit or a complete answer (``-m``); 1 when a
non-interactive answer failed or was cut; 2 for usage errors; 130 when
Ctrl-C stopped a non-interactive answer.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import json
import math
import os
import signal
import sys
import termios
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

import trio
from rich.console import Console
from rich.markdown import Markdown

from streamcore import LocalProtocolError
from streamcore.adapters.client import Provider, Stream, open_stream
from streamcore.adapters.emulator import open_emulator, parse_faults
from streamcore.adapters.encodings import EncodingInfo, load_encoding
from streamcore.adapters.http import HTTPClient
from streamcore.adapters.recover import (
    Interrupted,
    Resuming,
    Retrying,
    Stitched,
    StreamEvent,
    StreamResult,
)
from streamcore.cli.render import (
    DEFAULT_MAX_FPS,
    AnswerStats,
    AnswerView,
    LiveMarkdownView,
    NoteLevel,
    PlainView,
    format_stats,
)
from streamcore.cli.sessions import SessionStore
from streamcore.events import (
    ReasoningDelta,
    Refusal,
    TextDelta,
    Usage,
    event_to_dict,
)
from streamcore.machine import State as MachineState
from streamcore.memory import Conversation, State, Turn, prompt_budget
from streamcore.recovery import (
    USER_FACING,
    ContinueWithContext,
    RecoveryPolicy,
    RetryPolicy,
    Stitcher,
    plan_resume,
)
from streamcore.request import ChatRequest, Message
from streamcore.tokens import TokenCounter, Tokenizer

__all__ = [
    "COMMANDS",
    "PROVIDERS",
    "Chat",
    "Command",
    "Prompt",
    "Target",
    "add_parser",
    "choose_target",
    "parse_line",
    "provider_for",
    "recovery_policy",
    "run",
    "stream_event_to_dict",
    "transcript_markdown",
]

# ---------------------------------------------------------------------------
# What to talk to

PROVIDERS = ("openai", "anthropic", "gemini", "ollama", "openai-compatible")
"""The ``--provider`` choices."""

DEFAULT_MODELS: Mapping[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "ollama": "llama3.2",
}
EMULATOR_MODEL = "streamcore-emulator"
"""The model name the chat gives the built-in emulator (which answers any name)."""

KEY_VARIABLES: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": (),
    "openai-compatible": ("OPENAI_API_KEY",),
}
"""Where each provider's API key is looked for, in order (the adapter reads it)."""

# The dialect names plan_resume() knows, per provider.
_RESUME_DIALECT = {
    "openai": "openai",
    "openai-compatible": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
}


@dataclass(frozen=True, slots=True)
class Target:
    """The provider, model and endpoint a chat talks to, and why they were chosen.

    ``base_url`` is ``None`` for the provider's default (or, with ``emulator``,
    until the emulator is listening). ``why`` is shown in the banner.
    """

    provider: str
    model: str
    base_url: str | None
    emulator: bool
    why: str


def _has_key(provider: str, environ: Mapping[str, str]) -> bool:
    return any(environ.get(name) for name in KEY_VARIABLES[provider])


def choose_target(
    *,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    emulator: bool,
    environ: Mapping[str, str],
) -> Target:
    """Pick the provider and model from flags, then the environment, else the emulator.

    Flags win over ``STREAMCORE_PROVIDER`` / ``STREAMCORE_MODEL``; with neither,
    the first provider whose API key is set (OpenAI, Anthropic, Gemini) is used;
    with no key at all, the built-in emulator. Raises
    :class:`~streamcore.LocalProtocolError` (``kind="bad_target"``) for a
    combination that cannot work, saying what to set.

    >>> choose_target(provider=None, model=None, base_url=None, emulator=False, environ={})
    Target(provider='openai', model='streamcore-emulator', base_url=None, emulator=True, why=...)
    >>> t = choose_target(provider=None, model=None, base_url=None, emulator=False,
    ...                   environ={"ANTHROPIC_API_KEY": "sk-ant-..."})
    >>> (t.provider, t.model, t.emulator)
    ('anthropic', 'claude-sonnet-4-5', False)
    """
    chosen = provider or environ.get("STREAMCORE_PROVIDER") or None
    if chosen is not None and chosen not in PROVIDERS:
        raise LocalProtocolError(
            f"unknown provider {chosen!r}; use one of {', '.join(PROVIDERS)}", kind="bad_target"
        )
    model = model or environ.get("STREAMCORE_MODEL") or None
    if emulator:
        dialect = chosen or "openai"
        if dialect == "openai-compatible":
            dialect = "openai"
        return Target(
            dialect, model or EMULATOR_MODEL, None, True, "--emulator: the built-in emulator"
        )
    if chosen is None:
        for name in ("openai", "anthropic", "gemini"):
            if _has_key(name, environ):
                return Target(
                    name,
                    model or DEFAULT_MODELS[name],
                    base_url,
                    False,
                    f"{KEY_VARIABLES[name][0]} is set",
                )
        if base_url is not None:
            # A base URL alone means a local OpenAI-compatible server (llama.cpp, vLLM...).
            if model is None:
                raise LocalProtocolError(
                    f"--base-url {base_url} needs --model NAME (the model the server serves)",
                    kind="bad_target",
                )
            return Target("openai-compatible", model, base_url, False, "--base-url")
        return Target(
            "openai", model or EMULATOR_MODEL, None, True, "no API key is set and no --provider"
        )
    if chosen == "openai-compatible":
        if base_url is None:
            raise LocalProtocolError(
                "--provider openai-compatible needs --base-url URL (e.g. http://localhost:8080)",
                kind="bad_target",
            )
        if model is None:
            raise LocalProtocolError(
                "--provider openai-compatible needs --model NAME (the model the server serves)",
                kind="bad_target",
            )
        return Target(chosen, model, base_url, False, "--provider openai-compatible")
    if chosen != "ollama" and base_url is None and not _has_key(chosen, environ):
        names = " or ".join(KEY_VARIABLES[chosen])
        raise LocalProtocolError(
            f"--provider {chosen} needs an API key: set {names} (or pass --emulator to try "
            f"the {chosen} wire format on the built-in emulator)",
            kind="bad_target",
        )
    return Target(chosen, model or DEFAULT_MODELS[chosen], base_url, False, f"--provider {chosen}")


def recovery_policy(
    mode: str,
    *,
    first_token: float | None = None,
    idle: float | None = None,
    total: float | None = None,
) -> RecoveryPolicy:
    """The recovery policy for ``--recovery resume|retry|fail`` and the timeout flags.

    ``resume`` (the default) is :data:`~streamcore.recovery.USER_FACING`: a cut
    answer is continued with what arrived as context; ``retry`` starts over
    instead; ``fail`` makes one attempt and shows what arrived.

    >>> p = recovery_policy("retry", idle=5)
    >>> (p.resume, p.retry.max_attempts, p.idle_timeout)
    (False, 3, 5)
    >>> recovery_policy("fail").retry.max_attempts
    1
    """
    if mode == "resume":
        policy = USER_FACING
    elif mode == "retry":
        policy = dataclasses.replace(
            USER_FACING,
            resume=False,
            retry=dataclasses.replace(USER_FACING.retry, before_first_token_only=False),
        )
    elif mode == "fail":
        policy = dataclasses.replace(USER_FACING, resume=False, retry=RetryPolicy(max_attempts=1))
    else:
        raise LocalProtocolError(
            f"unknown recovery mode {mode!r}; use resume, retry or fail", kind="bad_recovery"
        )
    return dataclasses.replace(
        policy,
        first_token_timeout=policy.first_token_timeout if first_token is None else first_token,
        idle_timeout=policy.idle_timeout if idle is None else idle,
        total_timeout=policy.total_timeout if total is None else total,
    )


# ---------------------------------------------------------------------------
# What the user typed


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A prompt command: its name, its argument (``None``: takes none) and what it does."""

    name: str
    argument: str | None
    required: bool
    help: str


COMMANDS: Mapping[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("retry", None, False, "regenerate the last answer"),
        CommandSpec("continue", None, False, "resume an interrupted or length-stopped answer"),
        CommandSpec("system", "TEXT", False, "show, set (TEXT) or remove (-) the system prompt"),
        CommandSpec("model", "NAME", False, "show or switch the model"),
        CommandSpec("stats", None, False, "totals for this chat: tokens, timings, context"),
        CommandSpec("history", None, False, "list the conversation's messages"),
        CommandSpec("clear", None, False, "forget the conversation (the system prompt stays)"),
        CommandSpec("save", "FILE", True, "write the conversation to FILE as Markdown"),
        CommandSpec("help", None, False, "this list"),
        CommandSpec("exit", None, False, "end the chat (also Ctrl-D, or Ctrl-C at the prompt)"),
    )
}
"""Every prompt command, in the order ``/help`` lists them."""

_ALIASES = {"quit": "exit", "q": "exit", "?": "help", "h": "help"}


@dataclass(frozen=True, slots=True)
class Command:
    """A prompt command such as ``/system Be brief.``: its name and argument text."""

    name: str
    arg: str = ""


@dataclass(frozen=True, slots=True)
class Prompt:
    """Text to send to the model."""

    text: str


def parse_line(line: str) -> Command | Prompt | None:
    """What a line typed at the prompt means: a command, a prompt, or nothing (blank).

    A line starting with ``/`` is a command; ``//`` sends the rest as text
    starting with ``/``. Unknown commands and missing arguments raise
    :class:`~streamcore.LocalProtocolError` (``kind="bad_command"``) with a hint.

    >>> parse_line("/system Answer in French.")
    Command(name='system', arg='Answer in French.')
    >>> parse_line("  What is SSE?  ")
    Prompt(text='What is SSE?')
    >>> parse_line("//etc/hosts: what is it for?")
    Prompt(text='/etc/hosts: what is it for?')
    >>> parse_line("   ") is None
    True
    """
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return Prompt(text[1:])
    if not text.startswith("/"):
        return Prompt(text)
    name, _, arg = text[1:].partition(" ")
    name = name.lower()
    name = _ALIASES.get(name, name)
    spec = COMMANDS.get(name)
    if spec is None:
        known = " ".join(f"/{n}" for n in COMMANDS)
        raise LocalProtocolError(
            f"unknown command /{name}; commands: {known} (start a message with // to send "
            "text beginning with /)",
            kind="bad_command",
        )
    arg = arg.strip()
    if spec.argument is None and arg:
        raise LocalProtocolError(f"/{name} takes no argument (got {arg!r})", kind="bad_command")
    if spec.required and not arg:
        raise LocalProtocolError(
            f"/{name} needs {spec.argument}: /{name} {spec.argument}", kind="bad_command"
        )
    return Command(name, arg)


def help_text() -> str:
    """The ``/help`` text."""
    width = max(len(f"/{s.name} {s.argument or ''}") for s in COMMANDS.values())
    lines = ["Commands:"]
    for spec in COMMANDS.values():
        usage = f"/{spec.name} {spec.argument or ''}".rstrip()
        lines.append(f"  {usage:<{width}}  {spec.help}")
    lines += [
        "",
        "Ctrl-C stops an answer (the partial answer is kept: /continue resumes it).",
        'Type """ on a line of its own to start and end a multi-line message.',
        "Start a message with // to send text beginning with /.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Transcripts


def transcript_markdown(conversation: Conversation, *, provider: str, model: str) -> str:
    """The conversation as a Markdown transcript (``/save``).

    >>> chat = Conversation(lambda text: len(text.split()))
    >>> _ = chat.add_user("Name a French cheese.")
    >>> _ = chat.add_partial(Message("assistant", "Comté is"), reason="cancelled (Ctrl-C)")
    >>> print(transcript_markdown(chat, provider="openai", model="gpt-4o-mini"))
    # Chat with gpt-4o-mini (openai)
    <BLANKLINE>
    ## User
    <BLANKLINE>
    Name a French cheese.
    <BLANKLINE>
    ## Assistant
    <BLANKLINE>
    Comté is
    <BLANKLINE>
    *[answer interrupted: cancelled (Ctrl-C)]*
    <BLANKLINE>
    """
    out = [f"# Chat with {model} ({provider})", ""]
    if conversation.system:
        out += ["## System", "", conversation.system, ""]
    if conversation.summary is not None:
        out += [
            f"## Summary of the first {conversation.summary.covering} messages",
            "",
            conversation.summary.text,
            "",
        ]
    for turn in conversation.turns:
        message = turn.message
        title = {"user": "User", "assistant": "Assistant"}.get(message.role, "Tool result")
        out += [f"## {title}", "", message.content, ""]
        if turn.interrupted:
            out += [f"*[answer interrupted: {turn.reason}]*", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The chat


class Mode(enum.Enum):
    """What an answer does to the conversation."""

    NEW = "new"
    """Answers the last user message."""
    RETRY = "retry"
    """Replaces the last reply."""
    CONTINUE = "continue"
    """Extends the interrupted last reply."""


class Activity(enum.Enum):
    """What the chat is doing when Ctrl-C arrives."""

    IDLE = "idle"
    PROMPT = "prompt"
    ANSWER = "answer"


_CTRL_C_REASON = "cancelled (Ctrl-C)"
_LENGTH_REASON = "stopped at the max-tokens limit"
_MAX_STDIN_PROMPT = 4 << 20  # characters read from a piped prompt at most
CHECKPOINT_INTERVAL = 1.0
"""Seconds between two saves of a streaming answer into the session store, at least."""


@dataclass(slots=True)
class ChatOptions:
    """Everything the flags set that the chat needs while it runs."""

    target: Target
    policy: RecoveryPolicy
    max_tokens: int | None = None
    budget: int | None = None
    context_tokens: int | None = None
    summarize: bool = False
    stats: bool = True
    json: bool = False
    session: str | None = None
    system: str | None = None
    faults: str = ""
    max_fps: float = DEFAULT_MAX_FPS


@dataclass(slots=True)
class AnswerRecord:
    """How one answer went: what the stats line and ``/stats`` show."""

    mode: Mode
    state: str
    stats: AnswerStats
    usage: Usage | None
    text_chars: int


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The request for an answer; a continuation's also carries the partial answer."""

    request: ChatRequest
    prefix: str = ""
    stripped: str = ""
    continuation: bool = False


def _stitcher(partial: str, stripped: str, policy: RecoveryPolicy) -> Stitcher:
    return Stitcher(
        partial,
        stripped=stripped,
        max_overlap=policy.stitch_max_overlap,
        min_overlap=policy.stitch_min_overlap,
    )


@dataclass(slots=True)
class _Live:
    """The answer being streamed: text so far and the marks the stats need."""

    prefix: str
    """Text already in the reply before this request (a /continue's partial answer)."""
    started: float
    counter: TokenCounter
    stitcher: Stitcher | None
    stripped: str = ""
    """Whitespace a prefill lost (Anthropic), for a new stitcher after a restart."""
    pieces: list[str] = field(default_factory=list)
    first_token: float | None = None
    seams: list[int] = field(default_factory=list)
    checkpointed: int = 0
    last_checkpoint: float = -math.inf
    chars: int = 0

    def text(self) -> str:
        """The text streamed so far (the prefix not included)."""
        if len(self.pieces) > 1:
            self.pieces[:] = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""

    def restart(self, tokenizer: Tokenizer, policy: RecoveryPolicy) -> None:
        """The answer starts over: forget the text (a retry from scratch after text)."""
        self.pieces.clear()
        self.chars = 0
        self.counter = TokenCounter(tokenizer)
        if self.stitcher is not None:
            self.stitcher = _stitcher(self.prefix, self.stripped, policy)


class Chat:
    """One chat: its conversation, its session (if any), its view, and the commands.

    ``stream_answer`` is the transport seam: given a request it yields
    :class:`streamcore.adapters.client` events; tests pass their own.
    """

    def __init__(
        self,
        options: ChatOptions,
        view: AnswerView,
        *,
        out: IO[str],
        err: IO[str],
        environ: Mapping[str, str],
        console: Console | None = None,
    ) -> None:
        self.options = options
        self.view = view
        self.out = out
        self.err = err
        self.environ = environ
        self.console = console
        self.target = options.target
        self.base_url: str | None = options.target.base_url
        self.tokenizer, self.encoding = load_encoding(options.target.model)
        self.conversation = Conversation(self.tokenizer, system=options.system)
        self.store: SessionStore | None = None
        self.history: list[AnswerRecord] = []
        self.activity = Activity.IDLE
        self._answer_scope: trio.CancelScope | None = None
        self._prompt_scope: trio.CancelScope | None = None
        self.emulator_url: str | None = None
        self.http: HTTPClient | None = None
        self.interactive = False
        self._ctrl_c = False
        self._quit = False
        self._window_note_shown = False

    def _provider(self) -> Provider:
        return provider_for(self.target, self.environ, self.emulator_url)

    # -- output helpers ---------------------------------------------------

    def say(self, message: str, *, style: str = "") -> None:
        """A line for the user (command output, banners): not part of any answer."""
        if self.options.json:
            print(message, file=self.err)
            return
        self.view.line(message, style=style)

    def note_stderr(self, message: str, *, style: str = "") -> None:
        """A line that must stay out of the answer's output (non-interactive runs)."""
        print(message, file=self.err, flush=True)

    def warn(self, message: str) -> None:
        """A one-line warning."""
        self.say(message, style="yellow")

    # -- sessions ---------------------------------------------------------

    def close_session(self) -> None:
        """Close the session store (its database connection), if one is open."""
        store, self.store = self.store, None
        if store is not None:
            store.close()

    def open_session(self, name: str, *, recap: bool = True) -> None:
        """Open (or create) session ``name`` and load its history.

        ``recap`` shows the last exchange of a resumed session (interactive
        chats); a one-shot answer's output is that answer only.
        """
        store = SessionStore.open()
        self.store = store
        target = self.target
        try:
            saved = store.load(name)
        except LocalProtocolError as exc:
            if exc.kind != "no_such_session":
                raise
            store.create(
                name,
                provider=target.provider,
                model=target.model,
                system=self.conversation.system,
                settings=self._settings(),
            )
            self.say(f"New session {name!r} (saved in {store.path}).", style="dim")
            return
        self.conversation = saved.conversation(self.tokenizer)
        if self.options.system is not None and self.options.system != saved.info.system:
            self.conversation.set_system(self.options.system)
            store.update(name, system=self.options.system)
        if (saved.info.provider, saved.info.model) != (target.provider, target.model):
            store.update(name, provider=target.provider, model=target.model)
        count = len(saved.turns)
        self.say(
            f"Resumed session {name!r}: {count} message{'s' if count != 1 else ''}.",
            style="dim",
        )
        if recap:
            self._show_last_exchange(recovered=saved.recovered)

    def _settings(self) -> dict[str, object]:
        o = self.options
        settings: dict[str, object] = {
            "max_tokens": o.max_tokens,
            "token_budget": o.budget,
            "context_tokens": o.context_tokens,
            "summarize": o.summarize,
            "first_token_timeout": o.policy.first_token_timeout,
            "idle_timeout": o.policy.idle_timeout,
            "total_timeout": o.policy.total_timeout,
        }
        return {key: value for key, value in settings.items() if value is not None}

    def _show_last_exchange(self, *, recovered: bool) -> None:
        turns = self.conversation.turns
        if not turns:
            return
        last_user = next((t for t in reversed(turns) if t.role == "user"), None)
        if last_user is not None:
            self.say(f"› {last_user.message.content}", style="bold")
        last = turns[-1]
        if last.role == "assistant":
            self._print_answer(last.message.content)
            if last.interrupted:
                why = "the chat ended mid-answer" if recovered else last.reason
                self.warn(f"[answer interrupted: {why}] · /continue resumes it, /retry redoes it")

    def _print_answer(self, text: str) -> None:
        if self.console is not None:
            self.console.print(Markdown(text, code_theme="monokai"))
        elif self.options.json:
            pass
        else:
            self.out.write(text + ("\n" if not text.endswith("\n") else ""))
            self.out.flush()

    # -- Ctrl-C -----------------------------------------------------------

    async def watch_interrupts(self, signals: AsyncIterator[int]) -> None:
        """Turn each SIGINT into what it means now: stop the answer, or leave the prompt."""
        async for _ in signals:
            if self.activity is Activity.ANSWER and self._answer_scope is not None:
                self._ctrl_c = True
                self._answer_scope.cancel()
            elif self.activity is Activity.PROMPT and self._prompt_scope is not None:
                self._quit = True
                self._prompt_scope.cancel()
            else:
                self._quit = True

    # -- the prompt loop --------------------------------------------------

    async def read_line(self, prompt: str) -> str | None:
        """One line from the terminal, without blocking trio; ``None`` at Ctrl-D or Ctrl-C."""
        self.activity = Activity.PROMPT
        try:
            with trio.CancelScope() as scope:
                self._prompt_scope = scope
                try:
                    return await trio.to_thread.run_sync(input, prompt, abandon_on_cancel=True)
                except EOFError:
                    return None
            return None  # cancelled by Ctrl-C
        finally:
            self._prompt_scope = None
            self.activity = Activity.IDLE

    async def read_message(self) -> str | None:
        """A message: one line, or several between two lines of ``\"\"\"``."""
        first = await self.read_line(_prompt_string(self.console is not None))
        if first is None or first.strip() != '"""':
            return first
        lines: list[str] = []
        while True:
            more = await self.read_line("… ")
            if more is None:
                return None
            if more.strip() == '"""':
                return "\n".join(lines)
            lines.append(more)

    async def chat_loop(self) -> int:
        """The prompt loop; returns the exit status (0)."""
        self.interactive = True
        while not self._quit:
            line = await self.read_message()
            if line is None:
                self.say("")
                break
            try:
                parsed = parse_line(line)
            except LocalProtocolError as exc:
                self.warn(str(exc))
                continue
            if parsed is None:
                continue
            if isinstance(parsed, Prompt):
                await self.ask(parsed.text)
            else:
                await self.command(parsed)
        return 0

    async def once(self, prompt: str) -> int:
        """Answer ``prompt`` and return the exit status (``-m`` and piped prompts)."""
        record = await self.ask(prompt)
        if self._ctrl_c:
            return 130
        if record is None or record.state not in ("completed", "length_limit"):
            return 1
        return 0

    # -- commands ---------------------------------------------------------

    async def command(self, command: Command) -> None:
        """Run a prompt command."""
        name, arg = command.name, command.arg
        if name == "help":
            self.say(help_text())
        elif name == "exit":
            self._quit = True
        elif name == "retry":
            await self.retry()
        elif name == "continue":
            await self.continue_answer()
        elif name == "system":
            self.set_system(arg)
        elif name == "model":
            self.set_model(arg)
        elif name == "stats":
            self.say(self.stats_text())
        elif name == "history":
            self.say(self.history_text())
        elif name == "clear":
            self.conversation.clear()
            if self.store is not None and self.options.session is not None:
                self.store.clear(self.options.session)
            self.say("Conversation cleared.", style="dim")
        else:
            assert name == "save"
            self.save(arg)

    def set_system(self, arg: str) -> None:
        """``/system``: show it, set it, or remove it with ``-``."""
        if not arg:
            current = self.conversation.system
            self.say(f"System prompt: {current}" if current else "No system prompt.", style="dim")
            return
        text = None if arg == "-" else arg
        self.conversation.set_system(text)
        if self.store is not None and self.options.session is not None:
            self.store.update(self.options.session, system=text)
        self.say("System prompt removed." if text is None else "System prompt set.", style="dim")

    def set_model(self, name: str) -> None:
        """``/model``: show the model, or switch to ``name`` (tokens recounted once)."""
        if not name:
            self.say(f"Model: {self.target.model} ({self._provider_label()})", style="dim")
            self.say(f"Tokens: {self._encoding_label()}", style="dim")
            return
        self.target = dataclasses.replace(self.target, model=name)
        self.tokenizer, self.encoding = load_encoding(name)
        self.conversation.set_counter(self.tokenizer)
        if self.store is not None and self.options.session is not None:
            self.store.update(self.options.session, model=name)
        self.say(f"Model: {name} · tokens: {self._encoding_label()}", style="dim")

    def save(self, path_text: str) -> None:
        """``/save FILE``: the conversation as Markdown."""
        path = Path(path_text).expanduser()
        text = transcript_markdown(
            self.conversation, provider=self.target.provider, model=self.target.model
        )
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.warn(f"could not save to {path}: {exc.strerror or exc}")
            return
        count = len(self.conversation)
        self.say(f"Saved {count} message{'s' if count != 1 else ''} to {path}.", style="dim")

    def _provider_label(self) -> str:
        if self.target.emulator:
            return f"{self.target.provider} wire format on the built-in emulator"
        return self.target.provider

    def _encoding_label(self) -> str:
        info: EncodingInfo = self.encoding
        how = "exact" if info.exact else "an estimate"
        return f"counted with {info.encoding} ({how})"

    def history_text(self) -> str:
        """``/history``: one line per message."""
        turns = self.conversation.turns
        if not turns:
            return "No messages yet."
        width = self.console.size.width if self.console is not None else 100
        lines = []
        summary = self.conversation.summary
        for index, turn in enumerate(turns, 1):
            head = f"{index:>3}. {turn.role:<9} "
            mark = f" [interrupted: {turn.reason}]" if turn.interrupted else ""
            if summary is not None and index <= summary.covering:
                mark += " (summarized)"
            room = max(12, width - len(head) - len(mark) - 1)
            text = " ".join(turn.message.content.split())
            if len(text) > room:
                text = text[: room - 1] + "…"
            lines.append(f"{head}{text}{mark}")
        return "\n".join(lines)

    def stats_text(self) -> str:
        """``/stats``: totals for this chat."""
        answers = self.history
        lines = [
            f"Model: {self.target.model} ({self._provider_label()})",
            f"Tokens: {self._encoding_label()}",
        ]
        budget = self._prompt_budget()
        lines.append(
            f"Context: {self.conversation.history_tokens} tokens of history, "
            f"{budget} available for the prompt"
        )
        if not answers:
            lines.append("No answers yet.")
            return "\n".join(lines)
        out_tokens = sum(a.stats.tokens or 0 for a in answers)
        in_tokens = sum((a.usage.input_tokens or 0) for a in answers if a.usage is not None)
        ttfts = [a.stats.time_to_first_token for a in answers if a.stats.time_to_first_token]
        interrupted = sum(1 for a in answers if a.state != "completed")
        attempts = sum(a.stats.attempts for a in answers)
        lines.append(
            f"Answers: {len(answers)} ({interrupted} cut short) · attempts: {attempts} · "
            f"tokens in: {in_tokens} · tokens out: {out_tokens}"
        )
        if ttfts:
            mean = sum(ttfts) / len(ttfts)
            lines.append(f"First token: mean {mean * 1000:.0f} ms, best {min(ttfts) * 1000:.0f} ms")
        lines.append(f"Last answer: {format_stats(answers[-1].stats)}")
        return "\n".join(lines)

    def _prompt_budget(self) -> int:
        return prompt_budget(
            self.target.model,
            context_tokens=self.options.context_tokens,
            max_tokens=self.options.max_tokens,
        )

    # -- answers ----------------------------------------------------------

    async def ask(self, text: str) -> AnswerRecord | None:
        """Send ``text`` and stream the answer."""
        turn = self.conversation.add_user(text, at=_wall_time())
        if self.store is not None and self.options.session is not None:
            self.store.append(self.options.session, turn)
        return await self._answer(Mode.NEW)

    async def retry(self) -> AnswerRecord | None:
        """``/retry``: answer the last message again, replacing the last reply."""
        state = self.conversation.state
        if state is State.AWAITING_REPLY:
            return await self._answer(Mode.NEW)  # the last request got no reply at all
        if state not in (State.REPLIED, State.INTERRUPTED):
            self.warn("nothing to retry yet: send a message first")
            return None
        return await self._answer(Mode.RETRY)

    async def continue_answer(self) -> AnswerRecord | None:
        """``/continue``: resume the interrupted (or length-stopped) last answer."""
        if self.conversation.state is not State.INTERRUPTED:
            self.warn(
                "nothing to continue: /continue resumes an answer that was interrupted "
                "or stopped at the max-tokens limit"
            )
            return None
        return await self._answer(Mode.CONTINUE)

    def _request(self, mode: Mode) -> _Prepared:
        """The request for an answer (a continuation carries the partial answer)."""
        o = self.options
        retry = mode is not Mode.NEW
        request = self.conversation.to_request(
            self.target.model,
            context_tokens=o.context_tokens,
            max_tokens=o.max_tokens,
            retry=retry,
        )
        if mode is not Mode.CONTINUE:
            return _Prepared(request)
        partial = self.conversation.turns[-1].message.content
        plan = plan_resume(request, partial, _RESUME_DIALECT[self.target.provider])
        if not isinstance(plan, ContinueWithContext):  # only the Responses API replays
            raise LocalProtocolError(
                f"{self.target.provider} cannot continue this answer", kind="cannot_continue"
            )
        return _Prepared(plan.request, partial, plan.stripped, continuation=True)

    async def _answer(self, mode: Mode) -> AnswerRecord | None:
        try:
            await self._maybe_summarize(mode)
            prepared = self._request(mode)
        except LocalProtocolError as exc:
            self.warn(f"cannot send: {exc}")
            return None
        return await self._stream(prepared, mode)

    async def _maybe_summarize(self, mode: Mode) -> None:
        window = self.conversation.window(self._prompt_budget(), retry=mode is not Mode.NEW)
        if not window.needs_summary:
            return
        if not self.options.summarize:
            if not self._window_note_shown:
                self._window_note_shown = True
                self.say(
                    f"Older messages no longer fit the context window: sending the last "
                    f"{len(window.messages)} of {len(self.conversation)} "
                    "(--summarize condenses older ones instead).",
                    style="dim",
                )
            return
        self.say(
            f"Summarizing {len(window.dropped)} older messages to fit the context…", style="dim"
        )
        request = self.conversation.summary_request(self.target.model, window.dropped)
        summary_text = (await self._collect_text(request)).strip()
        if not summary_text:
            self.warn("the summary came back empty: sending the newest messages only")
            return
        summary = self.conversation.set_summary(summary_text, covering=window.start)
        if self.store is not None and self.options.session is not None:
            self.store.save_summary(self.options.session, summary)

    async def _stream(self, prepared: _Prepared, mode: Mode) -> AnswerRecord:
        """Stream one answer into the view; record it in the conversation and the session."""
        o = self.options
        now = trio.current_time()
        prefix = prepared.prefix
        stitcher = None
        if prepared.continuation:
            stitcher = _stitcher(prefix, prepared.stripped, o.policy)
        live = _Live(prefix, now, TokenCounter(self.tokenizer), stitcher, prepared.stripped)
        self._ctrl_c = False
        stream: Stream | None = None
        failure: str | None = None
        view = self.view
        view.begin(now)
        if prefix:
            view.text(prefix, now)  # a continuation is shown as the whole answer
        echo_off = self._echo_off()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tick, live, mode)
                try:
                    with trio.CancelScope() as scope:
                        self._answer_scope = scope
                        self.activity = Activity.ANSWER
                        async with open_stream(
                            self._provider(),
                            prepared.request,
                            policy=o.policy,
                            http=self.http,
                            budget=o.budget,
                        ) as stream:
                            async for event in stream:
                                self._on_event(event, live)
                except LocalProtocolError as exc:  # a request the dialect cannot send
                    failure = short_reason(str(exc))
                finally:
                    self.activity = Activity.IDLE
                    self._answer_scope = None
                    nursery.cancel_scope.cancel()
            if live.stitcher is not None:
                # Also after Ctrl-C: the stitcher may hold text back while it looks
                # for a repeat, and what arrived is kept.
                self._show(live.stitcher.end(), live)
                if live.stitcher.seam is not None:
                    live.seams.insert(0, live.stitcher.seam.offset)
        except BaseException:
            view.end(trio.current_time())  # never leave the terminal mid-Live
            raise
        finally:
            echo_off.close()
        return self._finish(stream, live, mode, failure)

    def _echo_off(self) -> contextlib.ExitStack:
        """While an answer streams, keys typed ahead are not echoed into the rendering
        (they still reach the next prompt); Ctrl-C still raises SIGINT."""
        stack = contextlib.ExitStack()
        if self.console is None or not sys.stdin.isatty():
            return stack
        fd = sys.stdin.fileno()
        try:
            saved = termios.tcgetattr(fd)
            quiet = list(saved)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except termios.error:
            return stack
        stack.callback(termios.tcsetattr, fd, termios.TCSANOW, saved)
        return stack

    def _on_event(self, event: StreamEvent, live: _Live) -> None:
        now = trio.current_time()
        if self.options.json:
            _print_json(self.out, stream_event_to_dict(event))
        if type(event) is TextDelta:
            if event.choice != 0 or not event.text:
                return
            if live.first_token is None:
                live.first_token = now
            stitcher = live.stitcher
            self._show(stitcher.feed(event.text) if stitcher is not None else event.text, live)
        elif type(event) is ReasoningDelta:
            if live.first_token is None and event.text:
                live.first_token = now
            self.view.reasoning(event.text, now)
        elif type(event) is Refusal:
            self._show(event.text, live)
        elif isinstance(event, Retrying):
            how = f"retrying (attempt {event.attempt})"
            if event.delay >= 0.05:
                how += f" in {event.delay:.1f} s"
            reason = _sentence(short_reason(event.reason))
            self.view.note(f"{reason}; {how}", NoteLevel.WARNING, now)
            if event.discarded_chars:
                self.view.end(now, marker="[discarded: the answer starts over]")
                self.view.begin(now)
                if live.prefix:
                    self.view.text(live.prefix, now)
                live.restart(self.tokenizer, self.options.policy)
        elif isinstance(event, Resuming):
            if event.failed_state is MachineState.INTERRUPTED:
                what = f"the connection dropped after {event.partial_chars} characters"
                kept = "them"
            else:
                what = short_reason(event.reason)
                kept = f"the {event.partial_chars} characters so far"
            self.view.note(
                f"{_sentence(what)}; resuming with {kept} as context (attempt {event.attempt})",
                NoteLevel.WARNING,
                now,
            )
        elif isinstance(event, Stitched):
            live.seams.append(len(live.prefix) + event.seam.offset)

    def _show(self, text: str, live: _Live) -> None:
        if not text:
            return
        live.pieces.append(text)
        live.chars += len(text)
        self.view.tokens(live.counter.add(text))
        self.view.text(text, trio.current_time())

    async def _tick(self, live: _Live, mode: Mode) -> None:
        """Animate the view and checkpoint the answer, until cancelled."""
        interval = 1.0 / self.options.max_fps
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            self.view.tick(now)
            store, name = self.store, self.options.session
            if (
                store is not None
                and name is not None
                and live.chars != live.checkpointed
                and now - live.last_checkpoint >= CHECKPOINT_INTERVAL
            ):
                live.last_checkpoint = now
                live.checkpointed = live.chars
                store.checkpoint(name, live.prefix + live.text(), replace_last=mode is not Mode.NEW)

    def _finish(
        self, stream: Stream | None, live: _Live, mode: Mode, failure: str | None
    ) -> AnswerRecord:
        """Close the view, add the reply to the conversation and the session, print stats."""
        now = trio.current_time()
        result: StreamResult | None = None
        if stream is not None:
            with contextlib.suppress(LocalProtocolError):
                result = stream.result()
        text = live.text()
        completed = result is not None and result.completed and not self._ctrl_c
        if failure is not None:
            state = "failed"
        elif self._ctrl_c or result is None:
            state = "cancelled"
        else:
            state = result.state.value
        reason: str | None = None
        if not completed:
            if failure is not None:
                reason = failure
            elif self._ctrl_c or result is None or result.interruption is None:
                reason = _CTRL_C_REASON
            elif result.state is MachineState.LENGTH_LIMIT:
                reason = _LENGTH_REASON
            else:
                reason = short_reason(result.interruption.reason)
        marker = None
        if reason is not None:
            marker = f"[answer interrupted: {reason}]"
            if self.interactive and (text or live.prefix):
                marker += " · /continue resumes it, /retry starts over"
            if self.options.json:
                marker = None
        self.view.end(now, marker=marker)
        usage = result.usage if result is not None else None
        reported = usage is not None and usage.output_tokens is not None
        tokens: int | None = (
            usage.output_tokens if reported and usage is not None else live.counter.count
        )
        ttft = (live.first_token - live.started) if live.first_token is not None else None
        stats = AnswerStats(
            time_to_first_token=ttft,
            total=now - live.started,
            tokens=tokens,
            tokens_reported=reported,
            tokens_exact=self.encoding.exact,
            attempts=len(result.attempts) if result is not None else 1,
            seams=tuple(live.seams),
            outcome="completed" if completed else state.replace("_", " "),
        )
        record = AnswerRecord(mode, "completed" if completed else state, stats, usage, live.chars)
        self.history.append(record)
        self._record_turn(mode, text, completed, reason, usage)
        if self.options.json:
            _print_json(self.out, _result_dict(record, live.prefix + text, reason))
        elif self.options.stats:
            self.view.line(format_stats(stats), style="dim")
        if self.console is not None:
            self.view.line("")
        return record

    def _record_turn(
        self, mode: Mode, text: str, completed: bool, reason: str | None, usage: Usage | None
    ) -> None:
        conversation = self.conversation
        at = _wall_time()
        if not completed and not text:
            return  # nothing arrived: the conversation stays as it was
        interrupted = not completed
        message = Message("assistant", text)
        if mode is Mode.CONTINUE:
            turn = conversation.continue_reply(
                message, interrupted=interrupted, reason=reason, usage=usage, at=at
            )
        else:
            turn = Turn(message, interrupted=interrupted, reason=reason, usage=usage, at=at)
            if mode is Mode.RETRY:
                conversation.replace_last_reply(turn)
            else:
                conversation.append(turn)
        if self.store is not None and self.options.session is not None:
            self.store.finish(self.options.session, turn, replace_last=mode is not Mode.NEW)

    async def _collect_text(self, request: ChatRequest) -> str:
        """Stream ``request`` quietly and return its text (the summary of old turns)."""
        async with open_stream(
            self._provider(), request, policy=self.options.policy, http=self.http
        ) as stream:
            result = await stream.final()
        return result.text if result.completed else ""


def _sentence(reason: str) -> str:
    return reason[:1].upper() + reason[1:] if reason else "The attempt failed"


def short_reason(reason: str) -> str:
    """A failure's reason, short enough for one line: a long parenthetical detail
    (an exception's text) is left out, and the rest is capped.

    >>> short_reason("the connection broke before the provider's terminal marker, after 82 "
    ...              "characters of text (ReadError: POST http://127.0.0.1:8000/v1/chat/"
    ...              "completions: the server closed the connection after 9361 bytes)")
    "the connection broke before the provider's terminal marker, after 82 characters of text"
    >>> short_reason("HTTP 529 before any body: overloaded_error: Overloaded")
    'HTTP 529 before any body: overloaded_error: Overloaded'
    """
    start = reason.find(" (")
    if start > 0:
        end = reason.find(")", start)
        inner = reason[start + 2 : end if end > 0 else len(reason)]
        if len(inner) > 40:
            reason = reason[:start] + (reason[end + 1 :] if end > 0 else "")
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 1].rstrip() + "…"
    return reason


_MAX_REASON = 160


def stream_event_to_dict(event: StreamEvent) -> dict[str, object]:
    """A JSON-ready dict for any event a stream yields, recovery events included.

    >>> stream_event_to_dict(TextDelta("Hi"))
    {'type': 'text_delta', 'text': 'Hi', 'choice': 0}
    >>> from streamcore.recovery import Seam
    >>> stream_event_to_dict(Stitched(2, Seam(803, 12, "over the lazy")))
    {'type': 'stitched', 'attempt': 2, 'seam': {'offset': 803, 'removed': 12, 'overlap': 'over the lazy'}}
    """  # noqa: E501
    if isinstance(event, (Retrying, Resuming, Stitched, Interrupted)):
        out: dict[str, object] = {"type": type(event).__name__.lower()}
        for f in dataclasses.fields(event):
            out[f.name] = _plain(getattr(event, f.name))
        return out
    return event_to_dict(event)


def _plain(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _result_dict(record: AnswerRecord, text: str, reason: str | None) -> dict[str, object]:
    usage = record.usage
    return {
        "type": "result",
        "state": record.state,
        "completed": record.state == "completed",
        "text": text,
        "reason": reason,
        "usage": None if usage is None else _plain(usage),
        "attempts": record.stats.attempts,
        "seams": list(record.stats.seams),
        "time_to_first_token": record.stats.time_to_first_token,
        "total_time": record.stats.total,
        "output_tokens": record.stats.tokens,
    }


def _print_json(out: IO[str], obj: object) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


def _wall_time() -> float:
    # Turn timestamps are wall-clock (the session store shows them as dates).
    return time.time()


def _prompt_string(color: bool) -> str:
    if not color or os.environ.get("NO_COLOR"):
        return "> "
    # \001 and \002 bracket the escape codes so readline measures the prompt right.
    return "\001\033[1;36m\002›\001\033[0m\002 "


# ---------------------------------------------------------------------------
# The command line


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``chat`` subcommand to ``subparsers``; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="interactive terminal chat (the built-in emulator when no API key is set)",
        description=(
            "Chat with a model in the terminal. Answers stream in as rendered markdown; "
            "drops, stalls and provider errors are recovered (--recovery). With no API key "
            "and no --provider, the chat runs on the built-in local emulator. Inside the "
            "chat, /help lists the commands."
        ),
    )
    what = parser.add_argument_group("what to talk to")
    what.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="the provider API (default: $STREAMCORE_PROVIDER, else the first API key set: "
        "OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY; else the built-in emulator)",
    )
    what.add_argument("--model", help="the model (default: $STREAMCORE_MODEL, else per provider)")
    what.add_argument(
        "--base-url", metavar="URL", help="the API's base URL (OpenAI-compatible servers, Ollama)"
    )
    what.add_argument(
        "--emulator",
        action="store_true",
        help="talk to the built-in local emulator (in --provider's wire format) even with a key",
    )
    what.add_argument("--emulator-fault", default="", help=argparse.SUPPRESS)
    talk = parser.add_argument_group("the conversation")
    talk.add_argument("--system", metavar="TEXT", help="the system prompt")
    talk.add_argument(
        "--session",
        metavar="NAME",
        help="save the chat as session NAME, or resume it (see `streamcore sessions`)",
    )
    talk.add_argument(
        "--summarize",
        action="store_true",
        help="condense messages that no longer fit the context window instead of dropping them",
    )
    talk.add_argument(
        "--context-tokens",
        type=_positive_int,
        metavar="N",
        help="the model's context window, when the built-in table does not know it",
    )
    once = parser.add_argument_group("one answer, for scripts")
    once.add_argument(
        "-m", "--message", metavar="PROMPT", help="answer PROMPT and exit (stdin works too)"
    )
    once.add_argument(
        "--json", action="store_true", help="print the typed events as JSON lines (with -m)"
    )
    limits = parser.add_argument_group("limits and recovery")
    limits.add_argument(
        "--max-tokens", type=_positive_int, metavar="N", help="the provider's max output tokens"
    )
    limits.add_argument(
        "--budget",
        type=_positive_int,
        metavar="N",
        help="our own hard cut-off: stop the answer after N tokens (counted live)",
    )
    limits.add_argument(
        "--recovery",
        choices=("resume", "retry", "fail"),
        default="resume",
        help="after a drop or error: resume with the partial answer as context (default), "
        "retry from scratch, or fail and keep what arrived",
    )
    limits.add_argument(
        "--timeout-first-token", type=_positive_float, metavar="S", help="default 120 s"
    )
    limits.add_argument(
        "--timeout-idle", type=_positive_float, metavar="S", help="silence mid-answer, default 60 s"
    )
    limits.add_argument(
        "--timeout-total", type=_positive_float, metavar="S", help="a whole attempt; default none"
    )
    parser.add_argument("--no-stats", action="store_true", help="no stats line after answers")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _fail_usage(message: str) -> NoReturn:
    print(f"streamcore chat: {message}", file=sys.stderr)
    raise SystemExit(2)


def provider_for(target: Target, environ: Mapping[str, str], emulator_url: str | None) -> Provider:
    """The adapter's :class:`~streamcore.adapters.client.Provider` for ``target``.

    The API key comes from the environment (``STREAMCORE_API_KEY`` for an
    OpenAI-compatible server, which never gets your OpenAI key by accident).

    >>> target = choose_target(provider=None, model=None, base_url=None, emulator=False, environ={})
    >>> provider_for(target, {}, "http://127.0.0.1:8000")
    Provider(name='emulator', dialect='openai-chat', base_url='http://127.0.0.1:8000/v1', ...)
    """
    env = dict(environ)
    model = target.model
    if target.emulator:
        if emulator_url is None:
            raise LocalProtocolError("the emulator is not running yet", kind="emulator_not_started")
        dialect = _EMULATOR_DIALECT[target.provider]
        url = emulator_url + "/v1" if dialect == "openai-chat" else emulator_url
        return Provider(dialect, url, None, model, name="emulator")
    base = target.base_url
    if target.provider == "openai":
        return Provider.openai(model, base_url=base, env=env)
    if target.provider == "anthropic":
        return Provider.anthropic(model, base_url=base, env=env)
    if target.provider == "gemini":
        return Provider.gemini(model, base_url=base, env=env)
    if target.provider == "ollama":
        return Provider.ollama(model, base_url=base, env=env)
    assert target.provider == "openai-compatible" and base is not None
    key = env.get("STREAMCORE_API_KEY") or None
    return Provider.openai_compatible(base, model=model, api_key=key)


_EMULATOR_DIALECT = {
    "openai": "openai-chat",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
}


class _JSONView:
    """The view under ``--json``: events go out as JSON lines, so it shows nothing itself."""

    def __init__(self, err: IO[str]) -> None:
        self._err = err

    def begin(self, now: float) -> None:
        """Nothing to show."""

    def text(self, delta: str, now: float) -> None:
        """Nothing to show: the text deltas are JSON lines."""

    def reasoning(self, delta: str, now: float) -> None:
        """Nothing to show."""

    def tokens(self, count: int) -> None:
        """Nothing to show."""

    def note(self, message: str, level: NoteLevel, now: float) -> None:
        """Nothing to show: the recovery events are JSON lines."""

    def tick(self, now: float) -> None:
        """Nothing to animate."""

    def end(self, now: float, *, marker: str | None = None) -> None:
        """Nothing to show."""

    def line(self, message: str, *, style: str = "") -> None:
        """Messages that are not events go to stderr."""
        self._err.write(message + "\n")
        self._err.flush()


def _banner(chat: Chat, interactive: bool) -> None:
    target = chat.target
    say = chat.say if interactive else chat.note_stderr
    if target.emulator:
        wire = {"openai": "OpenAI"}.get(target.provider, target.provider.capitalize())
        where = f"at {chat.emulator_url}, {wire} wire format"
        if chat.options.faults:
            where += f", faults: {chat.options.faults}"
        if target.why.startswith("--emulator"):
            say(f"Using the built-in emulator ({where}).", style="yellow")
        else:
            say(
                f"No API key set: using the built-in emulator ({where}); "
                "set OPENAI_API_KEY (or another key) for a real model.",
                style="yellow",
            )
    if interactive:
        name = target.model if target.emulator else f"{target.provider} · {target.model}"
        say(f"streamcore chat · {name} · /help lists commands · Ctrl-D quits", style="dim")


async def _main(chat: Chat, prompt: str | None) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if chat.target.emulator:
            emulator = await stack.enter_async_context(
                open_emulator(faults=chat.options.faults or None)
            )
            chat.emulator_url = emulator.base_url
        chat.http = await stack.enter_async_context(HTTPClient())
        _banner(chat, prompt is None)
        if chat.options.session is not None:
            stack.callback(chat.close_session)
            chat.open_session(chat.options.session, recap=prompt is None)
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(chat.watch_interrupts, signals)
                try:
                    if prompt is None:
                        return await chat.chat_loop()
                    return await chat.once(prompt)
                finally:
                    nursery.cancel_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover


def _read_stdin_prompt() -> str:
    text = sys.stdin.read(_MAX_STDIN_PROMPT + 1)
    if len(text) > _MAX_STDIN_PROMPT:
        _fail_usage(
            f"the prompt on stdin is over {_MAX_STDIN_PROMPT} characters; shorten it or "
            "pass a file's relevant part"
        )
    return text.strip()


@contextlib.contextmanager
def _terminal_restored() -> Iterator[None]:
    """Put the terminal back as it was: a prompt thread abandoned on Ctrl-C may leave
    readline's settings behind, and the answer turns echo off."""
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = None
    if fd is not None:
        with contextlib.suppress(termios.error):
            saved = termios.tcgetattr(fd)
    try:
        yield
    finally:
        if fd is not None and saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run(args: argparse.Namespace) -> int:
    """Run ``streamcore chat`` with parsed ``args``; returns the exit status."""
    environ = os.environ
    try:
        if args.emulator_fault:
            parse_faults(args.emulator_fault)  # a bad fault is a usage error, said now
        target = choose_target(
            provider=args.provider,
            model=args.model,
            base_url=args.base_url,
            emulator=args.emulator or bool(args.emulator_fault),
            environ=environ,
        )
        policy = recovery_policy(
            args.recovery,
            first_token=args.timeout_first_token,
            idle=args.timeout_idle,
            total=args.timeout_total,
        )
        provider_for(target, environ, "http://127.0.0.1:1")  # a missing key is said now
    except LocalProtocolError as exc:
        print(f"streamcore chat: {exc}", file=sys.stderr)
        return 2
    prompt: str | None = args.message
    if prompt is None and not sys.stdin.isatty():
        prompt = _read_stdin_prompt()
        if not prompt:
            _fail_usage("no prompt: stdin was empty (pass -m PROMPT, or run in a terminal)")
    if prompt is not None and not prompt.strip():
        _fail_usage("the prompt is empty")
    if args.json and prompt is None:
        _fail_usage("--json prints one answer's events: give the prompt with -m or on stdin")
    options = ChatOptions(
        target=target,
        policy=policy,
        max_tokens=args.max_tokens,
        budget=args.budget,
        context_tokens=args.context_tokens,
        summarize=args.summarize,
        stats=not args.no_stats,
        json=args.json,
        session=args.session,
        system=args.system,
        faults=args.emulator_fault,
    )
    console: Console | None = None
    view: AnswerView
    if args.json:
        view = _JSONView(sys.stderr)
    elif sys.stdout.isatty():
        console = Console(highlight=False)
        view = LiveMarkdownView(console)
    else:
        view = PlainView(sys.stdout, sys.stderr)
    chat = Chat(options, view, out=sys.stdout, err=sys.stderr, environ=environ, console=console)
    if prompt is None:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    with _terminal_restored():
        try:
            return trio.run(_main, chat, prompt)
        except LocalProtocolError as exc:
            print(f"streamcore chat: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"streamcore chat: {exc}", file=sys.stderr)
            return 1
