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
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamcore.adapters.emulator import answer_for
from streamcore.cli.main import main
from streamcore.cli.sessions import SessionStore

PROMPT = "Explain SSE"
ANSWER = answer_for(PROMPT)
SECRETS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "STREAMCORE_PROVIDER",
    "STREAMCORE_MODEL",
    "NO_COLOR",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREAMCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TERM", "xterm-256color")


def chat(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["chat", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_message_prints_the_whole_answer_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = chat(capsys, "-m", PROMPT)
    assert status == 0
    assert out == ANSWER + "\n"


def test_no_key_and_no_flags_runs_on_the_emulator_and_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = chat(capsys, "-m", PROMPT, "--no-stats")
    assert status == 0
    assert err.count("\n") == 1
    assert err.startswith("No API key set: using the built-in emulator (at http://127.0.0.1:")


def test_a_prompt_on_stdin_is_answered(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PROMPT + "\n"))
    status, out, _ = chat(capsys)
    assert status == 0
    assert out == ANSWER + "\n"


def test_an_empty_stdin_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    with pytest.raises(SystemExit) as exit_info:
        main(["chat"])
    assert exit_info.value.code == 2
    assert "no prompt: stdin was empty" in capsys.readouterr().err


def test_piped_output_has_no_escape_codes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = chat(
        capsys, "-m", PROMPT, "--emulator-fault", "drop_after_tokens=40; fail_first=1"
    )
    assert status == 0
    assert "\x1b" not in out and "\x1b" not in err
    assert "resuming" in err  # the notice went to stderr, uncoloured


def test_json_lines_are_typed_events_ending_in_a_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = chat(capsys, "-m", PROMPT, "--json")
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    types = [event["type"] for event in events]
    assert types[0] == "stream_started"
    assert types[-1] == "result"
    assert {"text_delta", "finish", "usage", "stream_end"} <= set(types)
    text = "".join(e["text"] for e in events if e["type"] == "text_delta")
    result = events[-1]
    assert text == result["text"] == ANSWER
    assert result["completed"] is True and result["attempts"] == 1
    assert result["usage"]["output_tokens"] == result["output_tokens"] > 0


def test_json_shows_the_recovery_events_of_a_resumed_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = chat(
        capsys, "-m", PROMPT, "--json", "--emulator-fault", "drop_after_tokens=30; fail_first=1"
    )
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    types = [event["type"] for event in events]
    assert "resuming" in types
    assert events[-1]["text"] == ANSWER
    assert events[-1]["attempts"] == 2


def test_an_http_401_exits_1_with_one_line_saying_so(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = chat(capsys, "-m", PROMPT, "--emulator-fault", "status=401")
    assert status == 1
    assert out == ""
    lines = err.splitlines()
    assert sum("HTTP 401" in line for line in lines) == 1
    assert any(line.startswith("[answer interrupted: HTTP 401") for line in lines)


def test_a_drop_with_recovery_fail_exits_1_and_keeps_the_partial_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = chat(
        capsys, "-m", PROMPT, "--emulator-fault", "drop_after_tokens=30", "--recovery", "fail"
    )
    assert status == 1
    partial = out.removesuffix("\n")
    assert partial and ANSWER.startswith(partial) and len(partial) < len(ANSWER)
    assert "[answer interrupted: the connection broke" in err


def test_a_drop_with_recovery_retry_starts_over_and_prints_the_whole_answer_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = chat(
        capsys,
        "-m",
        PROMPT,
        "--emulator-fault",
        "drop_after_tokens=30; fail_first=1",
        "--recovery",
        "retry",
    )
    assert status == 0
    # The plain view cannot take back what it printed: the first try stays, then the retry.
    assert out.endswith(ANSWER + "\n")
    assert "retrying (attempt 2)" in err


def test_a_drop_with_recovery_resume_prints_the_whole_answer_seamlessly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = chat(
        capsys, "-m", PROMPT, "--emulator-fault", "drop_after_tokens=30; fail_first=1; repeat=12"
    )
    assert status == 0
    assert out == ANSWER + "\n"
    assert "2 attempts · resumed at char" in err


def test_budget_cuts_the_answer_off_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = chat(capsys, "-m", PROMPT, "--budget", "15")
    assert status == 1
    partial = out.removesuffix("\n")
    assert partial and ANSWER.startswith(partial) and len(partial) < len(ANSWER)
    assert "[answer interrupted: stopped by the caller's token budget" in err
    assert "budget exceeded" in err


def test_max_tokens_stops_at_the_providers_limit_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = chat(capsys, "-m", PROMPT, "--max-tokens", "20")
    assert status == 0  # the provider ended the answer normally, at the limit asked for
    assert ANSWER.startswith(out.removesuffix("\n"))
    assert "[answer interrupted: stopped at the max-tokens limit]" in err


def test_timeout_idle_ends_a_stalled_answer(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = chat(
        capsys,
        "-m",
        PROMPT,
        "--emulator-fault",
        "stall=30; stall_after=5",
        "--timeout-idle",
        "0.3",
        "--recovery",
        "fail",
    )
    assert status == 1
    assert ANSWER.startswith(out.removesuffix("\n"))
    assert "nothing received for 0.3 s (idle deadline)" in err
    assert "timed out idle" in err


def test_timeout_idle_then_resume_gives_the_whole_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = chat(
        capsys,
        "-m",
        PROMPT,
        "--emulator-fault",
        "stall=30; stall_after=5; fail_first=1",
        "--timeout-idle",
        "0.3",
    )
    assert status == 0
    assert out == ANSWER + "\n"
    assert "Nothing received for 0.3 s (idle deadline); resuming with the" in err


def test_timeout_first_token_ends_a_silent_answer(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = chat(
        capsys,
        "-m",
        PROMPT,
        "--emulator-fault",
        "ttft=30",
        "--timeout-first-token",
        "0.3",
        "--recovery",
        "fail",
    )
    assert status == 1
    assert out == ""
    assert "first-token deadline" in err or "first token" in err


def test_a_provider_without_its_api_key_is_a_usage_error_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = chat(capsys, "--provider", "anthropic", "-m", PROMPT)
    assert status == 2
    assert "set ANTHROPIC_API_KEY" in err


def test_the_api_key_is_never_saved_in_the_session(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = "sk-proj-streamcoreTESTkey0123456789abcdefXYZ"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    status, out, err = chat(capsys, "--emulator", "--session", "keyed", "-m", PROMPT)
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
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env["STREAMCORE_DATA_DIR"] = str(tmp_path / "data")
    command = Path(sys.executable).parent / "streamcore"
    done = subprocess.run(
        [str(command), "chat", "-m", PROMPT, "--emulator-fault", "status=401"],
        cwd=tmp_path,  # not the repo root: ./streamcore must not shadow the package
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "HTTP 401" in done.stderr
