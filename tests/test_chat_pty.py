"""`streamcore chat` driven in a pseudo-terminal, as a person drives it, against the emulator.

Each test starts the real ``streamcore`` console script in a pty with
pexpect, types into it, and waits for what the screen shows with ``expect``
and a timeout -- never a sleep. The built-in emulator's faults (``--emulator-fault``) make answers
slow enough to interrupt, or drop them mid-answer. Full answers are checked
byte for byte against ``answer_for(prompt)`` through ``/save``.
"""

from __future__ import annotations

import io
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pexpect
import pytest
from _chat_helpers import ANSWER, PROMPT, STREAMCORE, emulator_environment, is_partial_answer
from rich.cells import cell_len

from streamcore.cli.chat import COMMANDS
from streamcore.cli.sessions import SessionStore

pytestmark = pytest.mark.slow

# The prompt readline prints (NO_COLOR gives the plain one), at the start of a line.
READY = re.compile(r"(?:^|\n)(?:> |\x1b\[1;36m›\x1b\[0m )")
TYPING = re.compile(r"typing… (\d+) tokens")
CANCELLED = re.compile(r"\[answer interrupted: cancelled \(Ctrl-C\)\]")


class Chat:
    """A running `streamcore chat` in a pty."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child

    @property
    def output(self) -> str:
        """Everything the command wrote to the terminal so far, escape codes included."""
        log = self.child.logfile_read
        assert isinstance(log, io.StringIO)
        return log.getvalue()

    def ready(self) -> None:
        """Wait for the input prompt."""
        self.child.expect(READY)

    def send(self, line: str) -> None:
        """Type ``line`` and Enter, without waiting for the prompt."""
        self.child.sendline(line)

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        """Wait for ``pattern`` in the output after the last match; return its match."""
        self.child.expect(pattern, timeout=timeout)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def ask(self, line: str) -> None:
        """Wait for the prompt, then type ``line`` and Enter."""
        self.ready()
        self.send(line)

    def reply(self, line: str, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """Wait for the prompt, type ``line``, and wait for ``pattern`` in what comes back."""
        self.ask(line)
        return self.expect(pattern)

    def tokens_at_least(self, count: int) -> int:
        """Wait until the typing indicator shows at least ``count`` tokens."""
        while True:
            seen = int(self.expect(TYPING).group(1))
            if seen >= count:
                return seen

    def interrupt(self, after_tokens: int) -> None:
        """Press Ctrl-C once the answer shows ``after_tokens`` tokens; wait for it to stop."""
        self.tokens_at_least(after_tokens)
        self.child.sendintr()
        self.expect(CANCELLED)

    def exit_status(self) -> int:
        """Wait for the command to end; return its exit status."""
        self.child.expect(pexpect.EOF)
        self.child.close()
        status = self.child.exitstatus
        assert isinstance(status, int), f"ended by signal {self.child.signalstatus}"
        return status

    def save(self, path: Path) -> str:
        """``/save`` the conversation to ``path``; return what the file holds."""
        self.reply(f"/save {path}", r"Saved \d+ messages? to")
        return path.read_text(encoding="utf-8")


class Spawn(Protocol):
    """The ``spawn`` fixture: start ``streamcore chat --emulator ARGS`` in a new pty."""

    def __call__(
        self,
        *args: str,
        colour: bool = False,
        columns: int = 200,
        extra_env: dict[str, str] | None = None,
    ) -> Chat: ...


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    children: list[pexpect.spawn] = []
    env = emulator_environment(tmp_path / "data")
    env.update(NO_COLOR="1", TERM="xterm-256color", PYTHONUNBUFFERED="1")

    def start(
        *args: str,
        colour: bool = False,
        columns: int = 200,
        extra_env: dict[str, str] | None = None,
    ) -> Chat:
        child_env = {**env, **(extra_env or {})}
        if colour:
            del child_env["NO_COLOR"]
        child = pexpect.spawn(
            STREAMCORE,
            ["chat", "--emulator", *args],
            cwd=str(tmp_path),  # not the repo root: ./streamcore must not shadow the package
            env=child_env,
            encoding="utf-8",
            dimensions=(40, columns),
            timeout=10,
        )
        child.logfile_read = io.StringIO()  # everything the terminal received
        children.append(child)
        return Chat(child)

    yield start
    for child in children:
        # Shown by pytest only when the test failed: what the terminal got.
        print(f"--- {child.args!r} wrote:\n{child.logfile_read.getvalue()[-4000:]!r}")
        if child.isalive():
            child.terminate(force=True)
        child.close()


def transcript(answer: str) -> str:
    """What ``/save`` writes for one exchange: PROMPT, then ``answer``."""
    return (
        "# Chat with streamcore-emulator (openai)\n\n"
        f"## User\n\n{PROMPT}\n\n## Assistant\n\n{answer}\n"
    )


def interrupted_answer(spawn: Spawn, after_tokens: int) -> Chat:
    """A chat whose answer to PROMPT was stopped with Ctrl-C after ``after_tokens`` tokens.

    The emulator paces the first request only (``fail_first=1``): the next answer is quick.
    """
    chat = spawn("--emulator-fault", "pace=0.03; fail_first=1")
    chat.ask(PROMPT)
    chat.interrupt(after_tokens)
    return chat


def test_answer_appears_incrementally(spawn: Spawn) -> None:
    chat = spawn("--emulator-fault", "pace=0.02", "--max-tokens", "60")
    chat.ask(PROMPT)
    counts: list[int] = []
    while len(set(counts)) < 4:
        counts.append(int(chat.expect(TYPING).group(1)))
    assert counts == sorted(counts), counts
    chat.expect("first token")  # the answer ended after the reads above
    chat.ready()


def test_ctrl_c_mid_answer_keeps_the_partial_answer_and_the_chat_goes_on(
    spawn: Spawn, tmp_path: Path
) -> None:
    chat = interrupted_answer(spawn, after_tokens=8)
    saved = chat.save(tmp_path / "partial.md")
    partial = saved.split("## Assistant\n\n", 1)[1].split("\n\n*[answer interrupted", 1)[0]
    assert is_partial_answer(partial), partial
    assert saved.endswith("*[answer interrupted: cancelled (Ctrl-C)]*\n")
    chat.reply("What is NDJSON?", "first token")
    history = chat.reply("/history", r"4\. assistant[^\r\n]*")
    assert "interrupted" not in history.group(0)
    assert chat.child.isalive()


def test_continue_completes_an_interrupted_answer_losslessly(spawn: Spawn, tmp_path: Path) -> None:
    chat = interrupted_answer(spawn, after_tokens=10)
    chat.reply("/continue", r"first token [^\r\n]*resumed at char \d+")
    assert chat.save(tmp_path / "whole.md") == transcript(ANSWER)


def test_a_drop_with_recovery_resume_ends_in_the_full_text(spawn: Spawn, tmp_path: Path) -> None:
    chat = spawn("--emulator-fault", "drop_after_tokens=30; fail_first=1", "--recovery", "resume")
    chat.ask(PROMPT)
    chat.expect(r"dropped after \d+ characters; resuming with them as context \(attempt 2\)")
    chat.expect(r"2 attempts · resumed at char \d+")
    assert chat.save(tmp_path / "resumed.md") == transcript(ANSWER)


def test_stats_line_shows_the_time_to_first_token(spawn: Spawn) -> None:
    chat = spawn("--max-tokens", "20")
    stats = chat.reply(PROMPT, r"first token (\d+ ms|\d+\.\d\d s) · total [^\r\n]*")
    assert "1 attempt" in stats.group(0)


def test_no_stats_hides_the_stats_line(spawn: Spawn) -> None:
    chat = spawn("--max-tokens", "20", "--no-stats")
    chat.ask(PROMPT)
    chat.send("/history")  # typed ahead: runs once the answer is over
    chat.expect(r"2\. assistant")
    assert re.search(r"first token \d", chat.child.before) is None


def test_a_killed_chat_resumes_its_session_with_the_partial_answer(
    spawn: Spawn, tmp_path: Path
) -> None:
    first = spawn("--session", "trip", "--emulator-fault", "pace=0.03")
    first.ask(PROMPT)
    first.tokens_at_least(40)  # over a second of answer: checkpointed at least once
    first.child.kill(signal.SIGKILL)
    first.child.expect(pexpect.EOF)

    second = spawn("--session", "trip")
    second.expect(r"Resumed session 'trip': 2 messages")
    second.expect(r"\[answer interrupted: the chat ended mid-answer\]")
    second.reply("/history", rf"1\. user +{PROMPT}")
    second.expect(r"2\. assistant [^\r\n]*\[interrupted: process ended mid-answer\]")
    with SessionStore.open(tmp_path / "data" / "sessions.db") as store:
        turns = store.load("trip").turns
    assert [turn.role for turn in turns] == ["user", "assistant"]
    partial = turns[1].message.content
    assert turns[1].interrupted and partial and ANSWER.startswith(partial)


def test_retry_replaces_an_interrupted_answer_with_a_whole_one(
    spawn: Spawn, tmp_path: Path
) -> None:
    chat = interrupted_answer(spawn, after_tokens=8)
    chat.reply("/retry", r"first token [^\r\n]*1 attempt")
    assert chat.save(tmp_path / "retried.md") == transcript(ANSWER)


def test_retry_with_nothing_sent_yet_says_so(spawn: Spawn) -> None:
    chat = spawn()
    chat.reply("/retry", "nothing to retry yet: send a message first")
    chat.ready()


def test_continue_completes_a_length_stopped_answer_losslessly(
    spawn: Spawn, tmp_path: Path
) -> None:
    chat = spawn("--max-tokens", "120")
    chat.reply(PROMPT, r"\[answer interrupted: stopped at the max-tokens limit\]")
    for _ in range(10):  # each /continue adds at most 120 tokens
        stats = chat.reply("/continue", r"first token [^\r\n]*\r\n").group(0)
        if "length limit" not in stats:
            break
    assert "resumed at char" in stats
    assert chat.save(tmp_path / "whole.md") == transcript(ANSWER)


def test_system_sets_shows_and_removes_the_system_prompt(spawn: Spawn, tmp_path: Path) -> None:
    chat = spawn()
    chat.reply("/system Answer in French.", "System prompt set.")
    chat.reply("/system", "System prompt: Answer in French.")
    assert chat.save(tmp_path / "with.md") == (
        "# Chat with streamcore-emulator (openai)\n\n## System\n\nAnswer in French.\n"
    )
    chat.reply("/system -", "System prompt removed.")
    assert "## System" not in chat.save(tmp_path / "without.md")


def test_model_switches_the_model_for_the_chat_and_its_session(
    spawn: Spawn, tmp_path: Path
) -> None:
    chat = spawn("--session", "models", "--max-tokens", "10")
    chat.reply("/model gpt-4o", r"Model: gpt-4o · tokens: counted with \w+")
    chat.reply("/model", r"Model: gpt-4o \(openai wire format on the built-in emulator\)")
    chat.reply(PROMPT, "first token")
    assert chat.save(tmp_path / "t.md").startswith("# Chat with gpt-4o (openai)\n")
    with SessionStore.open(tmp_path / "data" / "sessions.db") as store:
        assert store.info("models").model == "gpt-4o"


def test_stats_totals_the_answers_of_the_chat(spawn: Spawn) -> None:
    chat = spawn("--max-tokens", "20")
    chat.reply("/stats", "No answers yet.")
    for prompt in (PROMPT, "What is NDJSON?"):
        chat.reply(prompt, "first token")
    chat.reply("/stats", r"Context: \d+ tokens of history, \d+ available for the prompt")
    chat.expect(r"Answers: 2 \(2 cut short\) · attempts: 2 · tokens in: \d+ · tokens out: 40")
    chat.expect(r"First token: mean \d+ ms, best \d+ ms")
    chat.expect(r"Last answer: first token ")


def test_history_lists_each_message_on_one_line(spawn: Spawn) -> None:
    chat = spawn()
    chat.reply("/history", "No messages yet.")
    chat.reply(PROMPT, "first token")
    chat.reply("/history", rf"  1\. user      {PROMPT}\r\n")
    line = chat.expect(r"  2\. assistant ([^\r\n]*)\r\n")
    assert cell_len(line.group(0).rstrip()) <= 200
    shown = line.group(1).removesuffix("…")
    assert " ".join(ANSWER.split()).startswith(shown)


def test_clear_forgets_the_messages_but_keeps_the_system_prompt(
    spawn: Spawn, tmp_path: Path
) -> None:
    chat = spawn("--system", "Be brief.", "--max-tokens", "10")
    chat.reply(PROMPT, "first token")
    chat.reply("/clear", "Conversation cleared.")
    chat.reply("/history", "No messages yet.")
    assert chat.save(tmp_path / "cleared.md") == (
        "# Chat with streamcore-emulator (openai)\n\n## System\n\nBe brief.\n"
    )


def test_save_to_a_missing_folder_says_so_and_the_chat_goes_on(spawn: Spawn) -> None:
    chat = spawn()
    chat.reply(  # relative to the chat's folder, tmp_path
        "/save missing/chat.md", r"could not save to missing/chat\.md: No such file or directory"
    )
    chat.reply("/save", r"/save needs FILE: /save FILE")
    chat.ready()


def test_help_lists_every_command(spawn: Spawn) -> None:
    chat = spawn()
    chat.ask("/help")
    for name in COMMANDS:
        chat.expect(rf"\n  /{name}\b[^\r\n]*  {re.escape(COMMANDS[name].help)}")
    chat.ready()


def test_an_unknown_command_lists_the_known_ones(spawn: Spawn) -> None:
    chat = spawn()
    chat.reply("/undo", r"unknown command /undo; commands: /retry /continue")
    chat.ready()


def test_ctrl_d_at_the_prompt_exits_0(spawn: Spawn) -> None:
    chat = spawn()
    chat.ready()
    chat.child.sendeof()
    assert chat.exit_status() == 0


def test_ctrl_c_at_the_prompt_exits_0(spawn: Spawn) -> None:
    chat = spawn("--max-tokens", "10")
    chat.reply(PROMPT, "first token")  # after an answer, so the prompt thread has run before
    chat.ready()
    chat.child.sendintr()
    assert chat.exit_status() == 0
    assert "Traceback" not in chat.output


def test_ctrl_c_during_a_one_shot_answer_exits_130(spawn: Spawn) -> None:
    chat = spawn("--emulator-fault", "pace=0.03", "-m", PROMPT)
    chat.interrupt(after_tokens=5)
    assert chat.exit_status() == 130


# ---------------------------------------------------------------------------
# What the terminal shows, replayed on a small terminal model

# Every escape sequence a terminal would take as one: CSI, OSC, charset selection.
ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Z]")
TOKEN = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()].|.", re.S
)


class Screen:
    """Just enough of a terminal to replay what the chat writes: text with deferred
    autowrap at ``columns``, CR, LF, cursor up/down, erase in line/display. Colours
    and modes are ignored; any other control sequence fails the test (garbage)."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.wrap_pending = False

    def feed(self, data: str) -> None:
        for token in TOKEN.finditer(data):
            text = token.group(0)
            if text.startswith("\x1b["):
                self._csi(token.group(1), token.group(2))
            elif text.startswith("\x1b"):
                continue  # OSC, charset: no effect on the cells
            elif text == "\r":
                self.col, self.wrap_pending = 0, False
            elif text == "\n":
                self._down(1)
            elif text in "\x07\x0e\x0f":
                continue
            else:
                assert text.isprintable(), f"control character {text!r} on the screen"
                self._put(text)

    def _put(self, char: str) -> None:
        width = cell_len(char)
        if width == 0:  # a combining mark, a joiner: part of the cell before
            line = self.rows[self.row]
            if self.col > 0 and len(line) >= self.col:
                line[self.col - 1 + self.wrap_pending] += char
            return
        if self.wrap_pending or self.col + width > self.columns:
            self.col, self.wrap_pending = 0, False
            self._down(1)
        line = self.rows[self.row]
        line.extend(" " * (self.col + width - len(line)))
        line[self.col] = char
        for extra in range(1, width):
            line[self.col + extra] = ""  # the right half of a wide character
        self.col += width
        if self.col == self.columns:
            self.col, self.wrap_pending = self.columns - 1, True

    def _down(self, count: int) -> None:
        self.row += count
        self.wrap_pending = False
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _csi(self, params: str, final: str) -> None:
        count = int(params) if params.isdigit() else 1
        line = self.rows[self.row]
        if final == "A":
            self.row, self.wrap_pending = max(0, self.row - count), False
        elif final == "B":
            self._down(count)
        elif final == "G":
            self.col, self.wrap_pending = count - 1, False
        elif final == "K":
            if params == "2":
                line.clear()
            elif params in ("", "0"):
                del line[self.col :]
            else:
                del line[: self.col + 1]
                line[:0] = [" "] * (self.col + 1)
        elif final == "J":
            del line[self.col :]
            del self.rows[self.row + 1 :]
        elif final in "mhl":
            pass  # colours and modes (cursor, synchronized update, bracketed paste)
        else:
            raise AssertionError(f"unexpected control sequence ESC[{params}{final}")

    def text(self) -> str:
        return "\n".join("".join(line).rstrip() for line in self.rows).rstrip("\n")


def test_a_narrow_terminal_gets_whole_escape_codes_and_lines_that_fit(spawn: Spawn) -> None:
    chat = spawn("--emulator-fault", "pace=0.004", colour=True, columns=30)
    chat.ask(PROMPT)
    chat.expect(r"tok/s")
    chat.ready()
    written = chat.output
    plain = ESCAPE.sub("", written)
    assert "\x1b" not in plain, "a partial escape sequence reached the terminal"
    for piece in re.split(r"[\r\n]", plain):
        assert cell_len(piece) <= 30, f"a line wider than the terminal: {piece!r}"
    screen = Screen(30)
    screen.feed(written)
    shown = " ".join(screen.text().split())
    opener = ANSWER.split("\n\n")[1]
    assert " ".join(opener.split()) in shown
    assert "typing…" not in shown


def test_the_typing_indicator_shows_while_streaming_and_is_gone_at_the_end(
    spawn: Spawn,
) -> None:
    chat = spawn("--emulator-fault", "pace=0.01", colour=True)
    chat.ask(PROMPT)
    chat.tokens_at_least(10)
    chat.expect(r"first token [^\r\n]*tok/s")
    chat.ready()
    screen = Screen(120)
    screen.feed(chat.output)
    lines = screen.text().splitlines()
    assert not any("typing…" in line or "waiting for the first token" in line for line in lines)
    assert any(line.startswith("first token ") for line in lines)
    # The answer is on the screen once, heading first.
    assert sum(line.strip() == "SSE" for line in lines) == 1
