"""`streamcore decode`, driven as a user drives it: captured bytes on stdin, JSON out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TRANSCRIPTS = Path(__file__).parent / "transcripts"
SCRIPT = Path(sys.executable).parent / "streamcore"


def decode(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(SCRIPT), "decode", *args], input=stdin, capture_output=True)


def lines(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_sse_format_prints_events_comments_and_the_end() -> None:
    body = b': keep-alive\n\nid: 7\nevent: delta\ndata: {"a": 1}\n\ndata: cut'
    run = decode("--format", "sse", stdin=body)
    assert run.returncode == 0
    assert lines(run.stdout) == [
        {"type": "comment", "text": "keep-alive"},
        {"type": "event", "event": "delta", "data": '{"a": 1}', "id": "7"},
        {"type": "end", "truncated": True, "detail": lines(run.stdout)[-1]["detail"]},
    ]


def test_ndjson_format_prints_values_and_a_complete_end() -> None:
    run = decode("--format", "ndjson", stdin=b'{"done": false}\n{"done": true}\n')
    assert run.returncode == 0
    assert lines(run.stdout) == [
        {"type": "value", "value": {"done": False}},
        {"type": "value", "value": {"done": True}},
        {"type": "end", "truncated": False, "detail": ""},
    ]


def test_json_array_format_prints_each_element() -> None:
    run = decode("--format", "json-array", stdin=b'[{"n": 1}\r\n,\r\n{"n": "]}"}]')
    assert [item.get("value") for item in lines(run.stdout)] == [{"n": 1}, {"n": "]}"}, None]


def test_broken_framing_exits_1_after_printing_what_came_before() -> None:
    run = decode("--format", "ndjson", stdin=b'{"ok": 1}\n{not json}\n')
    assert run.returncode == 1
    assert lines(run.stdout) == [{"type": "value", "value": {"ok": 1}}]
    assert b"invalid_json" in run.stderr


def test_dialect_prints_typed_events_as_json_lines() -> None:
    run = decode(
        "--dialect", "ollama", stdin=(TRANSCRIPTS / "ollama/text_emoji_cjk.txt").read_bytes()
    )
    assert run.returncode == 0
    types = [event["type"] for event in lines(run.stdout)]
    assert types[0] == "stream_started"
    assert "text_delta" in types
    assert types[-1] == "stream_end"


@pytest.mark.parametrize(
    ("dialect", "transcript", "finish"),
    [
        ("openai-chat", "openai_chat/text_emoji_cjk.txt", "stop"),
        ("openai-chat", "openai_chat/length.txt", "length"),
        ("openai-chat", "openai_chat/tool_calls_parallel.txt", "tool_calls"),
        ("gemini", "gemini/blocked_prompt.txt", "content_filter"),
        ("openai-chat", "openai_chat/error_midstream.txt", "error"),
        ("openai-chat", "openai_chat/finish_without_done.txt", "interrupted"),
        ("openai-responses", "openai_responses/text_emoji_cjk.txt", "stop"),
        ("openai-responses", "openai_responses/incomplete_max_tokens.txt", "length"),
        ("openai-responses", "openai_responses/function_calls_parallel.txt", "tool_calls"),
        ("openai-responses", "openai_responses/failed.txt", "error"),
        ("openai-responses", "openai_responses/dropped.txt", "interrupted"),
        ("anthropic", "anthropic/text_emoji_cjk.txt", "stop"),
        ("anthropic", "anthropic/max_tokens.txt", "length"),
        ("anthropic", "anthropic/tool_use_parallel.txt", "tool_calls"),
        ("anthropic", "anthropic/error_overloaded.txt", "error"),
        ("anthropic", "anthropic/dropped.txt", "interrupted"),
        ("gemini", "gemini/text_emoji_cjk.txt", "stop"),
        ("gemini", "gemini/dropped.txt", "interrupted"),
        ("gemini-json-array", "gemini/array_text.txt", "stop"),
        ("gemini-json-array", "gemini/array_unclosed.txt", "interrupted"),
        ("ollama", "ollama/length.txt", "length"),
        ("ollama", "ollama/tool_calls.txt", "tool_calls"),
        ("ollama", "ollama/dropped.txt", "interrupted"),
    ],
)
def test_final_gives_the_finish_state_and_exit_0(
    dialect: str, transcript: str, finish: str
) -> None:
    run = decode("--dialect", dialect, "--final", stdin=(TRANSCRIPTS / transcript).read_bytes())
    assert run.returncode == 0, run.stderr
    (final,) = lines(run.stdout)
    assert set(final) == {"text", "reasoning", "tool_calls", "finish", "usage", "error"}
    assert final["finish"] == finish


def test_final_of_a_tool_call_stream_has_full_arguments() -> None:
    body = (TRANSCRIPTS / "anthropic/tool_use_parallel.txt").read_bytes()
    (final,) = lines(decode("--dialect", "anthropic", "--final", stdin=body).stdout)
    calls = final["tool_calls"]
    assert isinstance(calls, list) and len(calls) == 2
    for call in calls:
        assert set(call) == {"id", "name", "arguments"}
        json.loads(call["arguments"])


def test_final_of_a_dropped_stream_keeps_the_partial_text() -> None:
    body = (TRANSCRIPTS / "anthropic/dropped.txt").read_bytes()
    (final,) = lines(decode("--dialect", "anthropic", "--final", stdin=body).stdout)
    assert final["text"].startswith("The three laws are")
    assert final["error"] is None


def test_final_of_a_corrupt_stream_reports_the_error_and_exits_1() -> None:
    body = (TRANSCRIPTS / "anthropic/invalid_json.txt").read_bytes()
    run = decode("--dialect", "anthropic", "--final", stdin=body)
    assert run.returncode == 1
    (final,) = lines(run.stdout)
    assert final["finish"] == "error"
    assert final["error"]["type"] == "invalid_json"


def test_final_without_dialect_is_a_usage_error() -> None:
    run = decode("--format", "sse", "--final", stdin=b"")
    assert run.returncode == 2
