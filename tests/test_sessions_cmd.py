"""`streamcore sessions` and the memory of `streamcore chat --session` across runs.

Each test runs the commands in this process through ``main(argv)`` (what the
console script calls) against the built-in emulator, with the session store
in a temporary data directory. A session is built the way a user builds one:
``streamcore chat --session NAME -m PROMPT`` once per turn.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

from streamcore.adapters.emulator import answer_for
from streamcore.cli.main import main
from streamcore.cli.sessions import SessionStore

FIRST, SECOND, THIRD = "Explain SSE", "What is a token budget?", "Why do streams drop?"
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture(autouse=True)
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (*KEYS, "STREAMCORE_PROVIDER", "STREAMCORE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "data"
    monkeypatch.setenv("STREAMCORE_DATA_DIR", str(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def turn(capsys: pytest.CaptureFixture[str], prompt: str, *flags: str) -> tuple[str, str]:
    status, out, err = run(capsys, "chat", "--session", "trip", "--no-stats", "-m", prompt, *flags)
    assert status == 0, err
    return out, err


def test_a_session_keeps_every_turn_across_runs(capsys: pytest.CaptureFixture[str]) -> None:
    turn(capsys, FIRST)
    _, err = turn(capsys, SECOND)
    assert "Resumed session 'trip': 2 messages." in err
    status, out, _ = run(capsys, "sessions", "export", "trip", "--format", "json")
    assert status == 0
    messages = json.loads(out)["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", FIRST),
        ("assistant", answer_for(FIRST)),
        ("user", SECOND),
        ("assistant", answer_for(SECOND)),
    ]


def test_a_one_shot_answer_in_a_resumed_session_prints_only_the_new_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    turn(capsys, FIRST)
    out, _ = turn(capsys, SECOND)
    assert out == answer_for(SECOND) + "\n"


def test_the_second_turn_is_sent_with_the_first_as_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The emulator's answer depends only on the last user message, so the
    # history shows in what the session saved, not in the text: check the
    # provider's reported prompt size grew by the first exchange.
    turn(capsys, FIRST)
    turn(capsys, SECOND)
    with SessionStore.open(None) as store:
        saved = store.load("trip")
    first, second = (t.usage for t in saved.turns if t.message.role == "assistant")
    assert first is not None and second is not None
    assert first.input_tokens is not None and second.input_tokens is not None
    assert second.input_tokens > first.input_tokens + len(answer_for(FIRST)) // 8


def test_list_shows_each_session_with_its_model_and_message_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    turn(capsys, FIRST)
    status, out, _ = run(capsys, "sessions")
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "MODEL", "MESSAGES", "UPDATED"]
    assert row.split()[:3] == ["trip", "openai/streamcore-emulator", "2"]


def test_list_as_json_gives_one_object_per_session(capsys: pytest.CaptureFixture[str]) -> None:
    turn(capsys, FIRST)
    status, out, _ = run(capsys, "sessions", "list", "--json")
    assert status == 0
    (document,) = [json.loads(line) for line in out.splitlines()]
    assert (document["name"], document["messages"]) == ("trip", 2)


def test_markdown_export_to_a_file_is_a_readable_transcript(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    turn(capsys, FIRST)
    target = tmp_path / "trip.md"
    status, _, err = run(capsys, "sessions", "export", "trip", "-o", str(target))
    assert status == 0
    assert f"exported session 'trip' to {target}" in err
    text = target.read_text(encoding="utf-8")
    assert FIRST in text
    assert answer_for(FIRST) in text


def test_delete_removes_the_session_and_a_later_export_fails_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    turn(capsys, FIRST)
    status, out, _ = run(capsys, "sessions", "delete", "trip")
    assert (status, out) == (0, "deleted session 'trip'\n")
    status, out, _ = run(capsys, "sessions")
    assert status == 0
    assert out.startswith("No saved sessions in ")
    status, _, err = run(capsys, "sessions", "export", "trip")
    assert status == 1
    assert err.startswith("streamcore sessions: ") and "trip" in err


def test_dropped_turns_are_announced_once_without_summarize(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for prompt in (FIRST, SECOND):
        turn(capsys, prompt, "--context-tokens", "600")
    _, err = turn(capsys, THIRD, "--context-tokens", "600")
    assert "Older messages no longer fit the context window" in err
    assert "--summarize condenses older ones instead" in err


def test_summarize_replaces_dropped_turns_with_a_saved_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for prompt in (FIRST, SECOND):
        turn(capsys, prompt, "--context-tokens", "600", "--summarize")
    out, err = turn(capsys, THIRD, "--context-tokens", "600", "--summarize")
    assert "Summarizing 2 older messages to fit the context" in err
    assert out == answer_for(THIRD) + "\n"  # the summary is not printed as the answer
    status, exported, _ = run(capsys, "sessions", "export", "trip", "--format", "json")
    assert status == 0
    summary = json.loads(exported)["summary"]
    assert summary["covering"] == 2 and summary["text"].strip()
    assert len(json.loads(exported)["messages"]) == 6  # nothing is deleted from the record


def test_a_finished_chat_leaves_no_session_database_open(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    # With the collector off, only an explicit close releases the SQLite files (the
    # database, its WAL and shared memory): a chat embedded in a long-lived process
    # must not leak them per run.
    gc.disable()
    try:
        turn(capsys, FIRST)
        fds = os.listdir("/proc/self/fd")
        held = [
            os.readlink(f"/proc/self/fd/{fd}")
            for fd in fds
            if os.path.exists(f"/proc/self/fd/{fd}")
        ]
    finally:
        gc.enable()
    assert not [path for path in held if path.startswith(str(data_dir))]
