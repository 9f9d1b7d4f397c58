"""How an answer reaches the terminal: live markdown on a TTY, plain deltas down a pipe.

Theory of operation
-------------------
The chat hands every answer to one *view* (:class:`LiveMarkdownView` or
:class:`PlainView`) through the same five calls: ``begin`` when the request
goes out, ``text`` for each piece of answer text, ``note`` for a one-line
notice (a drop, a retry, a resume), ``tick`` from a timer, and ``end`` once
the answer is over. Every call takes ``now``, a reading of the caller's
monotonic clock, so tests drive the views with a clock of their own.

**Live markdown** (stdout is a terminal). The answer is markdown, re-rendered
as it grows with ``rich`` -- but never on every piece of text: a
:class:`FrameGate` lets a frame through at most every ``1 / max_fps`` seconds
(12 fps by default). A piece that arrives inside that interval only marks the
view dirty; the next ``tick`` (the chat calls it on the same interval) draws
it. So a fast model costs a bounded number of renders per second, and a stall
still animates the typing indicator. Each frame leaves as one write bracketed
as a terminal *synchronized update*, so the terminal never shows the live
region half erased (no flicker where the terminal supports it, nothing
different where it does not).

Re-rendering a long answer in one ``Live`` region flickers and, once it is
taller than the screen, garbles the scrollback (the region can only rewrite
what is still on screen). So the view splits the text at *finished blocks*
(:class:`BlockSplitter`): text up to the last blank line outside a code
fence can no longer change how it renders, so it is printed once, above the
live region, and forgotten. Only the block still growing stays live -- and
only its last screenful is drawn. Each character is scanned for block
boundaries once.

**Plain** (stdout is a pipe or a file). Text goes out as it arrives, flushed,
with no ANSI codes and no cursor movement; notices go to stderr so a pipe
carries the answer alone.

Stats: :class:`AnswerStats` holds what the line after an answer shows, and
:func:`format_stats` turns it into that line.
"""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.spinner import Spinner
from rich.text import Text

from streamcore._errors import LocalProtocolError

__all__ = [
    "DEFAULT_MAX_FPS",
    "AnswerStats",
    "AnswerView",
    "BlockSplitter",
    "FrameGate",
    "LiveMarkdownView",
    "NoteLevel",
    "PlainView",
    "format_duration",
    "format_stats",
]

DEFAULT_MAX_FPS = 12.0
"""Re-renders per second at most: smooth to the eye, cheap for the CPU."""

CODE_THEME = "monokai"

# Begin / end synchronized update (DEC private mode 2026).
_SYNC_BEGIN = "\x1b[?2026h"
_SYNC_END = "\x1b[?2026l"


class FrameGate:
    """Lets a frame through at most every ``1 / max_fps`` seconds of the caller's clock.

    >>> gate = FrameGate(max_fps=10)
    >>> [gate.allow(t) for t in (0.0, 0.05, 0.1, 0.12, 0.21)]
    [True, False, True, False, True]
    """

    __slots__ = ("_interval", "_last")

    def __init__(self, *, max_fps: float = DEFAULT_MAX_FPS) -> None:
        if not max_fps > 0:
            raise LocalProtocolError(
                f"max_fps must be a positive number of frames per second, got {max_fps!r}",
                kind="bad_max_fps",
            )
        self._interval = 1.0 / max_fps
        self._last: float | None = None

    @property
    def interval(self) -> float:
        """The shortest time between two frames, in seconds."""
        return self._interval

    def allow(self, now: float) -> bool:
        """Whether a frame may be drawn at ``now``; if so, it counts as drawn."""
        # A hair of tolerance, so a timer firing exactly on the interval is not
        # refused for a float rounding error and made to wait a whole interval.
        if self._last is not None and now - self._last < self._interval - 1e-9:
            return False
        self._last = now
        return True


def _fence(line: str) -> str | None:
    """The fence marker (``` or ~~~ run) that ``line`` opens or closes, if it is one."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return None  # indented code, not a fence
    for mark in ("```", "~~~"):
        if stripped.startswith(mark):
            return stripped[: len(stripped) - len(stripped.lstrip(mark[0]))]
    return None


class BlockSplitter:
    """Finds where the finished markdown blocks of a growing text end.

    A block is finished once a blank line follows it outside a fenced code
    block: nothing written after can change how it renders. :meth:`add` takes
    the next piece of text and returns the finished blocks it completed (as
    one string, possibly empty); :attr:`pending` is the text still growing.
    Every character is scanned once.

    >>> split = BlockSplitter()
    >>> split.add("## Title\\n\\nFirst para")
    '## Title\\n\\n'
    >>> split.add("graph.\\n\\n```py\\nx = 1\\n\\n")
    'First paragraph.\\n\\n'
    >>> split.pending
    '```py\\nx = 1\\n\\n'
    >>> split.add("```\\n\\nDone")
    '```py\\nx = 1\\n\\n```\\n\\n'
    """

    __slots__ = ("_fence", "_pieces", "_scanned", "_size")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._size = 0
        self._scanned = 0  # characters of the pending text already split into lines
        self._fence: str | None = None  # the open fence's marker, while inside one

    @property
    def pending(self) -> str:
        """The text after the last finished block."""
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def add(self, delta: str) -> str:
        """Append ``delta``; return the finished blocks it completed ("" if none)."""
        if not delta:
            return ""
        self._pieces.append(delta)
        self._size += len(delta)
        if "\n" not in delta:
            return ""  # no new complete line: nothing to scan yet
        text = self.pending
        cut = 0
        start = self._scanned
        while True:
            nl = text.find("\n", start)
            if nl < 0:
                break
            line = text[start:nl]
            mark = _fence(line)
            if self._fence is None:
                if mark is not None:
                    self._fence = mark
                elif not line.strip() and start > cut:
                    cut = nl + 1  # a blank line after some text ends a block
            elif mark is not None and mark.startswith(self._fence) and not line.strip(" `~"):
                self._fence = None
            start = nl + 1
        self._scanned = start
        if cut == 0:
            return ""
        done, rest = text[:cut], text[cut:]
        self._pieces = [rest] if rest else []
        self._size = len(rest)
        self._scanned -= cut
        return done

    def flush(self) -> str:
        """End of text: return everything still pending and start over."""
        text = self.pending
        self._pieces = []
        self._size = 0
        self._scanned = 0
        self._fence = None
        return text


class _Block:
    """Renders markdown without the blank lines rich puts around some blocks, and
    optionally only its last ``height`` lines (the live tail must fit the screen)."""

    def __init__(self, markdown: Markdown, height: int | None = None) -> None:
        self._markdown = markdown
        self._height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self._markdown, options, pad=False)
        start, end = 0, len(lines)
        while start < end and _blank(lines[start]):
            start += 1
        while end > start and _blank(lines[end - 1]):
            end -= 1
        if self._height is not None:
            start = max(start, end - self._height)
        for line in lines[start:end]:
            yield from line
            yield Segment.line()


def _blank(line: list[Segment]) -> bool:
    return all(not segment.text.strip() for segment in line)


class NoteLevel(enum.Enum):
    """How a notice is shown: information, a warning (recovered), an error (lost)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


_NOTE_STYLES = {NoteLevel.INFO: "dim", NoteLevel.WARNING: "yellow", NoteLevel.ERROR: "bold red"}
_NOTE_PREFIX = {NoteLevel.INFO: "·", NoteLevel.WARNING: "!", NoteLevel.ERROR: "✗"}


class AnswerView(Protocol):
    """What the chat calls while an answer streams (see the module docstring)."""

    def begin(self, now: float) -> None: ...

    def text(self, delta: str, now: float) -> None: ...

    def reasoning(self, delta: str, now: float) -> None: ...

    def tokens(self, count: int) -> None: ...

    def note(self, message: str, level: NoteLevel, now: float) -> None: ...

    def tick(self, now: float) -> None: ...

    def end(self, now: float, *, marker: str | None = None) -> None: ...

    def line(self, message: str, *, style: str = "") -> None: ...


class LiveMarkdownView:
    """Streams an answer into a terminal as rendered markdown, at a bounded frame rate.

    ``console`` must be a terminal console (``Console()`` on a TTY, or
    ``force_terminal=True`` in tests). :attr:`frames` counts the frames drawn:
    every write to the terminal while the answer streams is one frame, and
    frames are at least ``1 / max_fps`` seconds apart.

    >>> import io
    >>> console = Console(file=io.StringIO(), force_terminal=True, width=40)
    >>> view = LiveMarkdownView(console, max_fps=10)
    >>> view.begin(0.0)
    >>> for i in range(100):              # 100 pieces in one second...
    ...     view.text("word ", now=i / 100)
    >>> view.end(1.0)
    >>> view.frames <= 11                 # ...but at most 10 frames a second
    True
    """

    def __init__(self, console: Console, *, max_fps: float = DEFAULT_MAX_FPS) -> None:
        self._console = console
        self._gate = FrameGate(max_fps=max_fps)
        self._split = BlockSplitter()
        self._live: Live | None = None
        self._ready: list[_Block | Text] = []  # printed above the live region at the next frame
        self._started_at = 0.0
        self._first_text: float | None = None
        self._reasoning_chars = 0
        self._blocks = 0
        self._tokens = 0
        self._spinner = Spinner("dots", style="cyan")
        self.frames = 0
        """Frames drawn so far (for tests and the curious)."""

    @property
    def console(self) -> Console:
        """The console the view draws on."""
        return self._console

    def begin(self, now: float) -> None:
        """Open the live region with a typing indicator."""
        self._started_at = now
        self._first_text = None
        self._reasoning_chars = 0
        self._blocks = 0
        self._tokens = 0
        self._ready.clear()
        self._split.flush()
        # auto_refresh off: frames are drawn only when the gate allows, from
        # the caller's task, so no refresh thread races the trio loop.
        self._live = Live(
            console=self._console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._live.start()
        self._draw(now)

    def text(self, delta: str, now: float) -> None:
        """Add answer text; drawn at once if the frame rate allows, else at the next tick."""
        if not delta:
            return
        if self._first_text is None:
            self._first_text = now
        done = self._split.add(delta)
        if done.strip():
            self._queue_markdown(done)
        self._draw(now)

    def reasoning(self, delta: str, now: float) -> None:
        """Note reasoning text: the indicator says the model is thinking (not shown in full)."""
        self._reasoning_chars += len(delta)
        self._draw(now)

    def tokens(self, count: int) -> None:
        """The answer's token count so far (shown beside the typing indicator)."""
        self._tokens = count

    def note(self, message: str, level: NoteLevel, now: float) -> None:
        """Show a one-line notice above the answer (a drop, a retry, a resume)."""
        text = Text(f"{_NOTE_PREFIX[level]} {message}", style=_NOTE_STYLES[level])
        if self._live is None:
            self._console.print(text)
            return
        self._ready.append(text)
        self._draw(now)

    def tick(self, now: float) -> None:
        """Called on a timer: draws what is pending and animates the indicator (rate-limited)."""
        self._draw(now)

    def end(self, now: float, *, marker: str | None = None) -> None:
        """Print the rest of the answer for good, then ``marker`` (if interrupted)."""
        rest = self._split.flush()
        if rest.strip():
            self._queue_markdown(rest)
        if marker:
            self._ready.append(Text(marker, style="yellow"))
        live, self._live = self._live, None
        with self._one_frame():
            if live is not None:
                live.update(Text(""), refresh=False)
                live.stop()  # transient: the indicator and the live tail disappear
            if self._ready:
                self._console.print(Group(*self._ready))
                self._ready.clear()

    def line(self, message: str, *, style: str = "") -> None:
        """Print a line outside an answer (command output, the stats line)."""
        self._console.print(Text(message, style=style))

    # -- internals --------------------------------------------------------

    def _queue_markdown(self, text: str) -> None:
        if self._blocks:
            self._ready.append(Text(""))
        self._blocks += 1
        self._ready.append(_Block(Markdown(text, code_theme=CODE_THEME)))

    def _draw(self, now: float) -> None:
        live = self._live
        if live is None or not self._gate.allow(now):
            return
        with self._one_frame():
            live.update(self._frame(now), refresh=not self._ready)
            if self._ready:
                # The finished blocks go above, and the live region is redrawn under them.
                live.console.print(Group(*self._ready))
                self._ready.clear()
        self.frames += 1

    @contextlib.contextmanager
    def _one_frame(self) -> Iterator[None]:
        """Send what is printed inside as one write, bracketed as a synchronized update.

        Redrawing the live region erases its lines before writing them again; a
        terminal that showed the screen in between would flicker. Inside DEC mode
        2026 (begin/end synchronized update) it shows only the finished frame;
        terminals that do not know the mode ignore it.
        """
        console = self._console
        if not console.is_terminal or console.is_dumb_terminal:
            yield
            return
        console.file.write(_SYNC_BEGIN)
        try:
            with console:  # rich buffers the prints inside and writes them once at exit
                yield
        finally:
            console.file.write(_SYNC_END)
            console.file.flush()

    def _frame(self, now: float) -> Group:
        parts: list[_Block | Spinner] = []
        pending = self._split.pending
        # Leave room for the indicator and a line of slack at the bottom.
        height = max(1, self._console.size.height - 3)
        if pending.strip():
            parts.append(_Block(Markdown(pending, code_theme=CODE_THEME), height))
        waited = now - self._started_at
        if self._first_text is None:
            what = "thinking" if self._reasoning_chars else "waiting for the first token"
            label = f"{what}… {waited:.1f}s"
        else:
            label = f"typing… {self._tokens} tokens" if self._tokens else "typing…"
        self._spinner.update(text=Text(label, style="dim"))
        parts.append(self._spinner)
        return Group(*parts)


class PlainView:
    """Writes an answer as plain text as it arrives: no ANSI codes, no cursor movement.

    Notices and the stats line go to ``err`` so that ``out`` carries the answer alone.

    >>> import io
    >>> out, err = io.StringIO(), io.StringIO()
    >>> view = PlainView(out, err)
    >>> view.begin(0.0); view.text("Hello", 0.1); view.text(", world.", 0.2); view.end(0.3)
    >>> out.getvalue()
    'Hello, world.\\n'
    """

    def __init__(self, out: IO[str], err: IO[str] | None = None) -> None:
        self._out = out
        self._err = err if err is not None else sys.stderr
        self._last_char = "\n"

    def begin(self, now: float) -> None:
        """Nothing to show until text arrives."""
        self._last_char = "\n"

    def text(self, delta: str, now: float) -> None:
        """Write ``delta`` at once."""
        if delta:
            self._out.write(delta)
            self._out.flush()
            self._last_char = delta[-1]

    def reasoning(self, delta: str, now: float) -> None:
        """Reasoning is not part of the answer: a pipe does not get it."""

    def tokens(self, count: int) -> None:
        """Not shown: a pipe carries the answer alone."""

    def note(self, message: str, level: NoteLevel, now: float) -> None:
        """Write the notice to ``err`` on a line of its own."""
        self._err.write(f"streamcore chat: {message}\n")
        self._err.flush()

    def tick(self, now: float) -> None:
        """Nothing to animate."""

    def end(self, now: float, *, marker: str | None = None) -> None:
        """End the answer's line; the marker (if any) goes to ``err``."""
        if self._last_char != "\n":
            self._out.write("\n")
        self._out.flush()
        self._last_char = "\n"
        if marker:
            self._err.write(marker + "\n")
            self._err.flush()

    def line(self, message: str, *, style: str = "") -> None:
        """Write a line outside an answer to ``err``."""
        self._err.write(message + "\n")
        self._err.flush()


@dataclass(frozen=True, slots=True)
class AnswerStats:
    """What the line after an answer says; times in seconds, ``None`` where unknown.

    ``tokens`` is the provider's reported output count when ``tokens_reported``,
    else the live count (``tokens_exact`` says whether that count used the
    model's own tokenizer). ``seams`` are the offsets where a resumed answer
    was joined onto its partial text.
    """

    time_to_first_token: float | None
    total: float
    tokens: int | None
    tokens_reported: bool
    tokens_exact: bool
    attempts: int
    seams: tuple[int, ...] = ()
    outcome: str = "completed"

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens over the time from the first token to the end."""
        if not self.tokens or self.time_to_first_token is None:
            return None
        streaming = self.total - self.time_to_first_token
        return self.tokens / streaming if streaming > 0 else None


def format_duration(seconds: float) -> str:
    """A short human duration: milliseconds under a second, then seconds, then minutes.

    >>> [format_duration(s) for s in (0.0042, 0.25, 3.14159, 75.0)]
    ['4 ms', '250 ms', '3.14 s', '1 min 15 s']
    """
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes:.0f} min {rest:.0f} s"


def format_stats(stats: AnswerStats) -> str:
    """The one line shown after an answer.

    >>> print(format_stats(AnswerStats(0.2134, 3.5, 412, True, False, 1)))
    first token 213 ms · total 3.50 s · 412 tokens · 125.4 tok/s · 1 attempt
    >>> print(format_stats(AnswerStats(0.3, 2.0, 98, False, False, 2, seams=(803,))))
    first token 300 ms · total 2.00 s · ~98 tokens (counted) · 57.6 tok/s · 2 attempts · resumed at char 803
    """  # noqa: E501
    parts: list[str] = []
    if stats.time_to_first_token is not None:
        parts.append(f"first token {format_duration(stats.time_to_first_token)}")
    else:
        parts.append("no token")
    parts.append(f"total {format_duration(stats.total)}")
    if stats.tokens:
        if stats.tokens_reported:
            parts.append(f"{stats.tokens} tokens")
        else:
            approx = "" if stats.tokens_exact else "~"
            parts.append(f"{approx}{stats.tokens} tokens (counted)")
    rate = stats.tokens_per_second
    if rate is not None:
        parts.append(f"{rate:.1f} tok/s")
    parts.append(f"{stats.attempts} attempt{'s' if stats.attempts != 1 else ''}")
    if stats.seams:
        parts.append("resumed at char " + ", ".join(str(s) for s in stats.seams))
    if stats.outcome != "completed":
        parts.append(stats.outcome)
    return " · ".join(parts)
