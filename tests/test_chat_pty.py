"""`streamcore chat` driven in a pseudo-terminal, as a person drives it, against the emulator.

Each test starts the real command (the ``add_parser``/``run`` pair the
``streamcore`` entry point calls) in a pty with pexpect, types into it, and
waits for what the screen shows with ``expect`` and a timeout -- never a
sleep. The built-in emulator's faults (``--emulator-fault``) make answers
slow enough to interrupt, or drop them mid-answer. Full answers are checked
byte for byte against ``answer_for(prompt)`` through ``/save``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from streamcore.adapters.emulator import answer_for
from streamcore.cli.sessions import SessionStore

pytestmark = pytest.mark.slow

PROMPT = "Explain SSE"
ANSWER = answer_for(PROMPT)

# Until cli/main.py routes `chat` to streamcore.cli.chat, drive the same
# add_parser/run pair the entry point will call.
LAUNCH = (
    "import argparse, sys\n"
    "from streamcore.cli import chat\n"
    "parser = argparse.ArgumentParser(prog='streamcore')\n"
    "chat.add_parser(parser.add_subparsers(dest='command'))\n"
    "sys.exit(chat.run(parser.parse_args()))\n"
)
SECRETS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "STREAMCORE_PROVIDER",
    "STREAMCORE_MODEL",
)
# The prompt readline prints (NO_COLOR gives the plain one), at the start of a line.
READY = re.compile(r"(?:^|\n)> ")
TYPING = re.compile(r"typing… (\d+) tokens")


class Chat:
    """A running `streamcore chat` in a pty."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child

    def ready(self) -> None:
        self.child.expect(READY)

    def send(self, line: str) -> None:
        self.child.sendline(line)

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        self.child.expect(pattern, timeout=timeout)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def tokens_at_least(self, count: int) -> int:
        """Wait until the typing indicator shows at least ``count`` tokens."""
        while True:
            seen = int(self.expect(TYPING).group(1))
            if seen >= count:
                return seen

    def save(self, path: Path) -> str:
        self.ready()
        self.send(f"/save {path}")
        self.expect(r"Saved \d+ messages? to")
        return path.read_text(encoding="utf-8")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    children: list[pexpect.spawn] = []
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(
        NO_COLOR="1",
        TERM="xterm-256color",
        STREAMCORE_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
    )

    def start(*args: str) -> Chat:
        child = pexpect.spawn(
            sys.executable,
            ["-c", LAUNCH, "chat", "--emulator", *args],
            cwd=str(tmp_path),  # not the repo root: ./streamcore must not shadow the package
            env=env,
            encoding="utf-8",
            dimensions=(40, 120),
            timeout=10,
        )
        children.append(child)
        return Chat(child)

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)
        child.close()


def transcript(answer: str) -> str:
    return (
        "# Chat with streamcore-emulator (openai)\n\n"
        f"## User\n\n{PROMPT}\n\n## Assistant\n\n{answer}\n"
    )


def test_answer_appears_incrementally(spawn) -> None:  # type: ignore[no-untyped-def]
    chat = spawn("--emulator-fault", "pace=0.02", "--max-tokens", "60")
    chat.ready()
    chat.send(PROMPT)
    counts: list[int] = []
    while len(set(counts)) < 4:
        counts.append(int(chat.expect(TYPING).group(1)))
    assert counts == sorted(counts), counts
    chat.expect("first token")  # the answer ended after the reads above
    chat.ready()


def test_ctrl_c_mid_answer_keeps_the_partial_answer_and_the_chat_goes_on(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # pace applies to the first request only (fail_first=1): the next answer is quick.
    chat = spawn("--emulator-fault", "pace=0.03; fail_first=1")
    chat.ready()
    chat.send(PROMPT)
    chat.tokens_at_least(8)
    chat.child.sendintr()
    chat.expect(r"\[answer interrupted: cancelled \(Ctrl-C\)\]")
    saved = chat.save(tmp_path / "partial.md")
    partial = saved.split("## Assistant\n\n", 1)[1].split("\n\n*[answer interrupted", 1)[0]
    assert partial and ANSWER.startswith(partial) and len(partial) < len(ANSWER)
    assert saved.endswith("*[answer interrupted: cancelled (Ctrl-C)]*\n")
    chat.ready()
    chat.send("What is NDJSON?")
    chat.expect("first token")
    chat.ready()
    chat.send("/history")
    history = chat.expect(r"4\. assistant[^\r\n]*")
    assert "interrupted" not in history.group(0)
    assert chat.child.isalive()


def test_continue_completes_an_interrupted_answer_losslessly(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # pace applies to the first request only (fail_first=1): /continue runs at full speed.
    chat = spawn("--emulator-fault", "pace=0.03; fail_first=1")
    chat.ready()
    chat.send(PROMPT)
    chat.tokens_at_least(10)
    chat.child.sendintr()
    chat.expect(r"answer interrupted: cancelled")
    chat.ready()
    chat.send("/continue")
    chat.expect(r"first token [^\r\n]*resumed at char \d+")
    assert chat.save(tmp_path / "whole.md") == transcript(ANSWER)


def test_a_drop_with_recovery_resume_ends_in_the_full_text(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    chat = spawn("--emulator-fault", "drop_after_tokens=30; fail_first=1", "--recovery", "resume")
    chat.ready()
    chat.send(PROMPT)
    chat.expect(r"dropped after \d+ characters; resuming with them as context \(attempt 2\)")
    chat.expect(r"2 attempts · resumed at char \d+")
    assert chat.save(tmp_path / "resumed.md") == transcript(ANSWER)


def test_stats_line_shows_the_time_to_first_token(spawn) -> None:  # type: ignore[no-untyped-def]
    chat = spawn("--max-tokens", "20")
    chat.ready()
    chat.send(PROMPT)
    stats = chat.expect(r"first token (\d+ ms|\d+\.\d\d s) · total [^\r\n]*")
    assert "1 attempt" in stats.group(0)


def test_no_stats_hides_the_stats_line(spawn) -> None:  # type: ignore[no-untyped-def]
    chat = spawn("--max-tokens", "20", "--no-stats")
    chat.ready()
    chat.send(PROMPT)
    chat.send("/history")  # typed ahead: runs once the answer is over
    chat.expect(r"2\. assistant")
    assert re.search(r"first token \d", chat.child.before) is None


def test_a_killed_chat_resumes_its_session_with_the_partial_answer(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    first = spawn("--session", "trip", "--emulator-fault", "pace=0.03")
    first.ready()
    first.send(PROMPT)
    first.tokens_at_least(40)  # over a second of answer: checkpointed at least once
    first.child.kill(signal.SIGKILL)
    first.child.expect(pexpect.EOF)

    second = spawn("--session", "trip")
    second.expect(r"Resumed session 'trip': 2 messages")
    second.expect(r"\[answer interrupted: the chat ended mid-answer\]")
    second.ready()
    second.send("/history")
    second.expect(rf"1\. user +{PROMPT}")
    second.expect(r"2\. assistant [^\r\n]*\[interrupted: process ended mid-answer\]")
    with SessionStore.open(tmp_path / "data" / "sessions.db") as store:
        turns = store.load("trip").turns
    assert [turn.role for turn in turns] == ["user", "assistant"]
    partial = turns[1].message.content
    assert turns[1].interrupted and partial and ANSWER.startswith(partial)
