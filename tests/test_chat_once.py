"""`streamcore chat` for scripts: one answer (``-m`` or stdin), exit codes, ``--json``.

The command runs in this process through the same ``main(argv)`` the
console script calls, against the built-in emulator, with stdout and stderr
captured (not terminals: the plain view). The emulator's answers are
deterministic, so a whole answer is checked character for character against
``answer_for(prompt)``; its faults (``--emulator-fault``) make the failures.
One test runs the installed console script to see the process exit code.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _chat_helpers import (
    ANSWER,
    PROMPT,
    PROVIDER_VARIABLES,
    STREAMCORE,
    emulator_environment,
    is_partial_answer,
)

from streamcore.cli.main import main
from streamcore.cli.sessions import SessionStore

Capture = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*PROVIDER_VARIABLES, "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREAMCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TERM", "xterm-256color")


def chat(capsys: Capture, *args: str) -> tuple[int, str, str]:
    """Run ``streamcore chat ARGS`` in this process; return its exit status, stdout and stderr."""
    status = main(["chat", *args])
    out, err = capsys.readouterr()
    return status, out, err


def ask(capsys: Capture, *args: str, fault: str | None = None) -> tuple[int, str, str]:
    """Run ``streamcore chat -m PROMPT ARGS``, with ``--emulator-fault FAULT`` if one is given."""
    faults = ("--emulator-fault", fault) if fault is not None else ()
    return chat(capsys, "-m", PROMPT, *faults, *args)


def json_events(out: str) -> list[dict[str, Any]]:
    """The ``--json`` output: one event object per line."""
    return [json.loads(line) for line in out.splitlines()]


def test_message_prints_the_whole_answer_and_exits_0(capsys: Capture) -> None:
    status, out, _ = ask(capsys)
    assert status == 0
    assert out == ANSWER + "\n"


def test_no_key_and_no_flags_runs_on_the_emulator_and_says_so_in_one_line(
    capsys: Capture,
) -> None:
    status, _, err = ask(capsys, "--no-stats")
    assert status == 0
    assert err.count("\n") == 1
    assert err.startswith("No API key set: using the built-in emulator (at http://127.0.0.1:")


def test_a_prompt_on_stdin_is_answered(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PROMPT + "\n"))
    status, out, _ = chat(capsys)
    assert status == 0
    assert out == ANSWER + "\n"


def test_an_empty_stdin_is_a_usage_error(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    with pytest.raises(SystemExit) as exit_info:
        main(["chat"])
    assert exit_info.value.code == 2
    assert "no prompt: stdin was empty" in capsys.readouterr().err


def test_piped_output_has_no_escape_codes(capsys: Capture) -> None:
    status, out, err = ask(capsys, fault="drop_after_tokens=40; fail_first=1")
    assert status == 0
    assert "\x1b" not in out and "\x1b" not in err
    assert "resuming" in err  # the notice went to stderr, uncoloured


def test_json_lines_are_typed_events_ending_in_a_result(capsys: Capture) -> None:
    status, out, _ = ask(capsys, "--json")
    assert status == 0
    events = json_events(out)
    types = [event["type"] for event in events]
    assert types[0] == "stream_started"
    assert types[-1] == "result"
    assert {"text_delta", "finish", "usage", "stream_end"} <= set(types)
    text = "".join(e["text"] for e in events if e["type"] == "text_delta")
    result = events[-1]
    assert text == result["text"] == ANSWER
    assert result["completed"] is True and result["attempts"] == 1
    assert result["usage"]["output_tokens"] == result["output_tokens"] > 0


def test_json_shows_the_recovery_events_of_a_resumed_answer(capsys: Capture) -> None:
    status, out, _ = ask(capsys, "--json", fault="drop_after_tokens=30; fail_first=1")
    assert status == 0
    events = json_events(out)
    assert "resuming" in [event["type"] for event in events]
    assert events[-1]["text"] == ANSWER
    assert events[-1]["attempts"] == 2


def test_an_http_401_exits_1_with_one_line_saying_so(capsys: Capture) -> None:
    status, out, err = ask(capsys, fault="status=401")
    assert status == 1
    assert out == ""
    lines = err.splitlines()
    assert sum("HTTP 401" in line for line in lines) == 1
    assert any(line.startswith("[answer interrupted: HTTP 401") for line in lines)


def test_a_drop_with_recovery_fail_exits_1_and_keeps_the_partial_text(capsys: Capture) -> None:
    status, out, err = ask(capsys, "--recovery", "fail", fault="drop_after_tokens=30")
    assert status == 1
    assert is_partial_answer(out.removesuffix("\n")), out
    assert "[answer interrupted: the connection broke" in err


def test_a_drop_with_recovery_retry_starts_over_and_prints_the_whole_answer_once(
    capsys: Capture,
) -> None:
    status, out, err = ask(
        capsys, "--recovery", "retry", fault="drop_after_tokens=30; fail_first=1"
    )
    assert status == 0
    # The plain view cannot take back what it printed: the first try stays, then the retry.
    assert out.endswith(ANSWER + "\n")
    assert "retrying (attempt 2)" in err


def test_a_drop_with_recovery_resume_prints_the_whole_answer_seamlessly(capsys: Capture) -> None:
    status, out, err = ask(capsys, fault="drop_after_tokens=30; fail_first=1; repeat=12")
    assert status == 0
    assert out == ANSWER + "\n"
    assert "2 attempts · resumed at char" in err


def test_budget_cuts_the_answer_off_and_says_so(capsys: Capture) -> None:
    status, out, err = ask(capsys, "--budget", "15")
    assert status == 1
    assert is_partial_answer(out.removesuffix("\n")), out
    assert "[answer interrupted: stopped by the caller's token budget" in err
    assert "budget exceeded" in err


def test_max_tokens_stops_at_the_providers_limit_and_says_so(capsys: Capture) -> None:
    status, out, err = ask(capsys, "--max-tokens", "20")
    assert status == 0  # the provider ended the answer normally, at the limit asked for
    assert ANSWER.startswith(out.removesuffix("\n"))
    assert "[answer interrupted: stopped at the max-tokens limit]" in err


def test_timeout_idle_ends_a_stalled_answer(capsys: Capture) -> None:
    status, out, err = ask(
        capsys, "--timeout-idle", "0.3", "--recovery", "fail", fault="stall=30; stall_after=5"
    )
    assert status == 1
    assert ANSWER.startswith(out.removesuffix("\n"))
    assert "nothing received for 0.3 s (idle deadline)" in err
    assert "timed out idle" in err


def test_timeout_idle_then_resume_gives_the_whole_answer(capsys: Capture) -> None:
    status, out, err = ask(
        capsys, "--timeout-idle", "0.3", fault="stall=30; stall_after=5; fail_first=1"
    )
    assert status == 0
    assert out == ANSWER + "\n"
    assert "Nothing received for 0.3 s (idle deadline); resuming with the" in err


def test_timeout_first_token_ends_a_silent_answer(capsys: Capture) -> None:
    status, out, err = ask(
        capsys, "--timeout-first-token", "0.3", "--recovery", "fail", fault="ttft=30"
    )
    assert status == 1
    assert out == ""
    assert "first-token deadline" in err or "first token" in err


def test_a_provider_without_its_api_key_is_a_usage_error_naming_the_variable(
    capsys: Capture,
) -> None:
    status, _, err = ask(capsys, "--provider", "anthropic")
    assert status == 2
    assert "set ANTHROPIC_API_KEY" in err


def test_the_api_key_is_never_saved_in_the_session(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = "sk-proj-streamcoreTESTkey0123456789abcdefXYZ"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    status, out, err = ask(capsys, "--emulator", "--session", "keyed")
    assert status == 0
    assert key not in out + err
    files = list((tmp_path / "data").iterdir())
    assert any(f.name == "sessions.db" for f in files)
    for path in files:  # the database and its WAL
        assert key.encode() not in path.read_bytes(), path
    with SessionStore.open(tmp_path / "data" / "sessions.db") as store:
        assert key not in store.export_json("keyed")
        assert [t.message.content for t in store.load("keyed").turns] == [PROMPT, ANSWER]


def test_the_installed_command_exits_1_when_the_answer_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        [STREAMCORE, "chat", "-m", PROMPT, "--emulator-fault", "status=401"],
        cwd=tmp_path,  # not the repo root: ./streamcore must not shadow the package
        env=emulator_environment(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "HTTP 401" in done.stderr
