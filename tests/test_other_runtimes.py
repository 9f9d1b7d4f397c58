"""The core without trio: the asyncio driver and the blocking driver, against `streamcore mock`.

The emulator runs as the user would run it, a ``streamcore mock --port 0``
subprocess, and every socket behaviour is checked for both drivers (the
``run`` fixture is parametrized over them). Expected text comes from
``answer_for`` / ``answer_tokens``: the emulator's answer to the last user
message, cut into the pieces it streams. Behaviours the emulator cannot show
(a server that never answers, one that breaks HTTP, one that echoes the key,
one that holds the stream open to watch the client hang up) use a one-connection
loopback server in a thread. The sans-IO :class:`Exchange` the two drivers
share is tested without sockets at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import LocalProtocolError
from streamcore.adapters import aio, blocking
from streamcore.adapters.blocking import MAX_ERROR_BODY, MIN_WAIT, Exchange
from streamcore.adapters.emulator import FAULT_HEADER, answer_for, answer_tokens
from streamcore.events import Event, ProviderError, TextDelta
from streamcore.machine import Deadlines, Outcome, State
from streamcore.request import ChatRequest, Message

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = Path(__file__).parent / "transcripts"
PROMPT = "Explain how server-sent events carry an LLM answer"
MODELS = {
    "openai-chat": "gpt-4.1-mini",
    "openai-responses": "gpt-5-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "gemini-json-array": "gemini-2.5-flash",
    "ollama": "llama3.2",
}


def chat(dialect: str, prompt: str = PROMPT) -> ChatRequest:
    return ChatRequest(MODELS[dialect], (Message("user", prompt),), max_tokens=1024)


def fault(text: str) -> list[tuple[str, str]]:
    return [(FAULT_HEADER, text)]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --------------------------------------------------------------------------- the two drivers

Run = Callable[..., tuple[list[Event], Outcome]]


def run_blocking(
    base_url: str, dialect: str, request: ChatRequest, **options: Any
) -> tuple[list[Event], Outcome]:
    with blocking.stream_chat(base_url, dialect, request, **options) as stream:
        events = list(stream)
    return events, stream.outcome


def run_asyncio(
    base_url: str, dialect: str, request: ChatRequest, **options: Any
) -> tuple[list[Event], Outcome]:
    async def main() -> tuple[list[Event], Outcome]:
        async with aio.stream_chat(base_url, dialect, request, **options) as stream:
            events = [event async for event in stream]
        return events, stream.outcome

    return asyncio.run(main())


DRIVERS: dict[str, Run] = {"asyncio": run_asyncio, "blocking": run_blocking}


@pytest.fixture(params=sorted(DRIVERS))
def run(request: pytest.FixtureRequest) -> Run:
    return DRIVERS[request.param]


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """The base URL of a `streamcore mock --port 0` subprocess, terminated at the end."""
    command = [str(Path(sys.executable).with_name("streamcore")), "mock", "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(r"streamcore mock: serving on (http://\S+)\n", first)
        assert match, f"unexpected first line from streamcore mock: {first!r}"
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# ------------------------------------------------------------------------- a one-connection server


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\nx-request-id: req_8d2f0c1b7a\r\n\r\n"
)
OPENAI_CHUNK = (
    b'data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4.1-mini-2025-04-14","choices":[{"index":0,'
    b'"delta":{"content":"Hello"},"finish_reason":null}]}\n\n'
)


class LoopbackServer:
    """Accepts one connection, reads the request, sends ``reply``, then waits for the hang-up."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.client_hung_up = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        self._listener.settimeout(10)
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(10)
            request = bytearray()
            while not self._whole(request):
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            conn.sendall(self.reply)
            with contextlib.suppress(ConnectionResetError):  # an abort may end with a reset
                while conn.recv(65536):
                    pass
            self.client_hung_up.set()

    @staticmethod
    def _whole(request: bytes | bytearray) -> bool:
        head, blank, body = bytes(request).partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        return bool(blank) and length is not None and len(body) >= int(length[1])


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


# ---------------------------------------------------------------------- both drivers, the emulator


@pytest.mark.parametrize("dialect", sorted(MODELS))
def test_each_dialect_streams_the_emulator_answer_exactly(
    run: Run, emulator: str, dialect: str
) -> None:
    events, outcome = run(emulator, dialect, chat(dialect))
    assert outcome.state is State.COMPLETED, outcome.reason
    assert text_of(events) == answer_for(PROMPT)
    assert outcome.message.text == answer_for(PROMPT)


def test_bytes_split_anywhere_give_the_same_answer(run: Run, emulator: str) -> None:
    events, outcome = run(emulator, "anthropic", chat("anthropic"), headers=fault("split=1-7"))
    assert outcome.state is State.COMPLETED, outcome.reason
    assert text_of(events) == answer_for(PROMPT)


def test_a_drop_ends_interrupted_with_the_text_received(run: Run, emulator: str) -> None:
    events, outcome = run(
        emulator, "openai-chat", chat("openai-chat"), headers=fault("drop_after_tokens=5")
    )
    assert outcome.state is State.INTERRUPTED, outcome.reason
    assert outcome.message.text == "".join(answer_tokens(PROMPT)[:5])
    assert answer_for(PROMPT).startswith(outcome.message.text)
    assert text_of(events) == outcome.message.text
    assert outcome.retryable and outcome.resumable


def test_a_stall_past_the_idle_deadline_ends_timed_out_idle(run: Run, emulator: str) -> None:
    _, outcome = run(
        emulator,
        "ollama",
        chat("ollama"),
        headers=fault("stall=30; stall_after=3"),
        deadlines=Deadlines(connect=10, idle=0.3),
    )
    # The 30 s stall would have ended in COMPLETED: the idle deadline cut it.
    assert outcome.state is State.TIMED_OUT_IDLE, outcome.reason
    assert outcome.message.text == "".join(answer_tokens(PROMPT)[:3])


def test_a_429_ends_http_error_with_the_servers_retry_after(run: Run, emulator: str) -> None:
    events, outcome = run(
        emulator, "anthropic", chat("anthropic"), headers=fault("status=429; retry_after=7")
    )
    assert events == []
    assert outcome.state is State.HTTP_ERROR
    assert (outcome.status, outcome.retry_after, outcome.retryable) == (429, 7.0, True)
    assert isinstance(outcome.error, ProviderError)
    assert outcome.error.type == "rate_limit_error"


def test_a_provider_error_mid_stream_ends_provider_error(run: Run, emulator: str) -> None:
    events, outcome = run(emulator, "anthropic", chat("anthropic"), headers=fault("error_after=3"))
    assert outcome.state is State.PROVIDER_ERROR
    assert events[-1] == ProviderError("overloaded_error", "Overloaded")
    assert outcome.message.text == "".join(answer_tokens(PROMPT)[:3])


def test_invalid_json_mid_stream_ends_protocol_error_keeping_the_text_before(
    run: Run, emulator: str
) -> None:
    _, outcome = run(
        emulator, "openai-chat", chat("openai-chat"), headers=fault("invalid_json_after=4")
    )
    assert outcome.state is State.PROTOCOL_ERROR
    assert getattr(outcome.error, "kind", None) == "invalid_json"
    assert outcome.message.text == "".join(answer_tokens(PROMPT)[:4])


def test_the_examples_print_the_streamed_answer_and_the_final_state(emulator: str) -> None:
    for name in ("asyncio_20_lines.py", "blocking_20_lines.py", "trio_quickstart.py"):
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / name), emulator],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        answer = answer_for("Explain server-sent events")
        assert result.stdout.startswith(answer + "\n[completed] "), name


# ----------------------------------------------------------------------- both drivers, odd servers


def test_a_refused_connection_ends_connect_failed(run: Run) -> None:
    events, outcome = run(f"http://127.0.0.1:{free_port()}", "ollama", chat("ollama"))
    assert events == []
    assert outcome.state is State.CONNECT_FAILED
    assert isinstance(outcome.error, ConnectionRefusedError)
    assert outcome.retryable


def test_a_server_that_never_answers_ends_timed_out_connect(run: Run) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # the kernel accepts; no one reads
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        _, outcome = run(url, "anthropic", chat("anthropic"), deadlines=Deadlines(connect=0.2))
    assert outcome.state is State.TIMED_OUT_CONNECT, outcome.reason


def test_a_response_that_breaks_http_ends_protocol_error(run: Run) -> None:
    bad_chunk_size = b"zz\r\n"
    with LoopbackServer(SSE_HEAD + chunked(OPENAI_CHUNK) + bad_chunk_size) as server:
        _, outcome = run(server.url, "openai-chat", chat("openai-chat"))
    assert outcome.state is State.PROTOCOL_ERROR
    assert getattr(outcome.error, "kind", None) == "bad_http"
    assert outcome.message.text == "Hello"


def test_an_error_body_that_echoes_the_key_is_redacted(run: Run) -> None:
    key = "9f8e7d6c5b4a39281706"  # not shaped like any known key: only api_key can redact it
    body = json.dumps({"error": f"unauthorized: invalid key {key}"}).encode()
    reply = b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
    reply += b"content-length: %d\r\n\r\n%s" % (len(body), body)
    with LoopbackServer(reply) as server:
        _, outcome = run(server.url, "ollama", chat("ollama"), api_key=key)
    assert (outcome.state, outcome.status, outcome.retryable) == (State.HTTP_ERROR, 401, False)
    assert "unauthorized: invalid key" in outcome.reason
    assert key not in outcome.reason
    assert key not in repr(outcome)


def test_leaving_the_stream_early_closes_the_socket_and_ends_cancelled() -> None:
    async def with_asyncio(server: LoopbackServer) -> Outcome:
        async with aio.stream_chat(server.url, "openai-chat", chat("openai-chat")) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    break
        # Checked with the loop still running: its teardown would close the socket too.
        assert await asyncio.to_thread(server.client_hung_up.wait, 10)
        return stream.outcome

    def with_blocking(server: LoopbackServer) -> Outcome:
        with blocking.stream_chat(server.url, "openai-chat", chat("openai-chat")) as stream:
            for event in stream:
                if isinstance(event, TextDelta):
                    break
        assert server.client_hung_up.wait(10)
        return stream.outcome

    for leave in (lambda server: asyncio.run(with_asyncio(server)), with_blocking):
        with LoopbackServer(SSE_HEAD + chunked(OPENAI_CHUNK)) as server:
            outcome = leave(server)
        assert outcome.state is State.CANCELLED
        assert outcome.reason == "cancelled: the caller closed the stream"
        assert outcome.message.text == "Hello"


def test_cancelling_the_asyncio_task_closes_the_socket_and_ends_cancelled() -> None:
    async def main(server: LoopbackServer) -> Outcome:
        stream = aio.stream_chat(server.url, "openai-chat", chat("openai-chat"))
        got_text = asyncio.Event()

        async def consume() -> None:
            async for event in stream:
                if isinstance(event, TextDelta):
                    got_text.set()

        task = asyncio.create_task(consume())
        await got_text.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Checked with the loop still running: its teardown would close the socket too.
        assert await asyncio.to_thread(server.client_hung_up.wait, 10)
        return stream.outcome

    with LoopbackServer(SSE_HEAD + chunked(OPENAI_CHUNK)) as server:
        outcome = asyncio.run(main(server))
    assert outcome.state is State.CANCELLED
    assert outcome.reason == "cancelled: stopped by CancelledError"
    assert outcome.message.text == "Hello"


def test_importing_the_drivers_leaves_trio_unloaded(tmp_path: Path) -> None:
    code = (
        "import sys, streamcore.adapters.aio, streamcore.adapters.blocking\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in ('trio', 'anyio')))"
    )
    # cwd away from the repo root, whose ./streamcore folder would shadow the package.
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", [aio, blocking], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


# -------------------------------------------------------------------- the shared Exchange, sans-IO

ANTHROPIC_BODY = (TRANSCRIPTS / "anthropic" / "text_emoji_cjk.txt").read_bytes()
ANTHROPIC_RESPONSE = SSE_HEAD + chunked(ANTHROPIC_BODY[:700], ANTHROPIC_BODY[700:]) + b"0\r\n\r\n"


def exchange(dialect: str = "anthropic", **options: Any) -> Exchange:
    return Exchange("https://api.anthropic.com", dialect, chat(dialect), **options)


def feed_all(ex: Exchange, pieces: list[bytes], now: float = 0.5) -> list[Event]:
    return [event for piece in pieces for event in ex.receive_data(piece, now)]


@given(st.lists(st.integers(min_value=0, max_value=len(ANTHROPIC_RESPONSE)), max_size=30))
def test_any_chunking_of_the_response_gives_the_same_events(cuts: list[int]) -> None:
    whole = exchange()
    whole.start(0.0)
    expected = feed_all(whole, [ANTHROPIC_RESPONSE])
    bounds = [0, *sorted(cuts), len(ANTHROPIC_RESPONSE)]
    pieces = [ANTHROPIC_RESPONSE[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    split = exchange()
    split.start(0.0)
    assert feed_all(split, pieces) == expected
    assert split.outcome.state is whole.outcome.state is State.COMPLETED


def test_a_server_that_hangs_up_before_responding_ends_connect_failed() -> None:
    ex = exchange()
    ex.start(0.0)
    assert ex.receive_data(b"", now=0.1) == []
    assert ex.outcome.state is State.CONNECT_FAILED
    assert getattr(ex.outcome.error, "kind", None) == "no_response"


def test_an_error_body_is_read_only_up_to_its_bound() -> None:
    ex = exchange()
    ex.start(0.0)
    ex.receive_data(b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n\r\n", now=0.1)
    assert not ex.done  # reading the body, to find the provider's error in it
    ex.receive_data(b"<html>" + b"x" * MAX_ERROR_BODY, now=0.2)  # no end of body in sight
    assert (ex.outcome.state, ex.outcome.status) == (State.HTTP_ERROR, 502)


def test_a_total_deadline_ends_an_attempt_whose_bytes_keep_coming() -> None:
    ex = exchange(deadlines=Deadlines(total=1.0))
    ex.start(0.0)
    ex.receive_data(ANTHROPIC_RESPONSE[:900], now=0.5)
    assert not ex.done
    ex.receive_data(ANTHROPIC_RESPONSE[900:1200], now=1.5)
    assert ex.outcome.state is State.TIMED_OUT_TOTAL


def test_the_read_timeout_stays_positive_after_a_deadline_passed() -> None:
    ex = exchange(deadlines=Deadlines(connect=5.0))
    ex.start(100.0)
    assert ex.read_timeout(now=101.0) == 4.0
    assert ex.read_timeout(now=200.0) == MIN_WAIT  # bytes already waiting are still read


def test_a_header_that_breaks_http_is_refused_without_quoting_it() -> None:
    secret = "sk-ant-api03-R2D2C3PO"
    with pytest.raises(LocalProtocolError) as caught:
        exchange(headers=[("x-api-key", f"{secret}\r\nx-injected: 1")])
    assert caught.value.kind == "bad_header"
    assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com", "https://user:sk-123@api.openai.com", "https://api.openai.com?key=x"],
)
def test_a_base_url_with_a_wrong_scheme_credentials_or_a_query_is_refused(url: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        Exchange(url, "openai-chat", chat("openai-chat"))
    assert caught.value.kind == "bad_url"
    assert "sk-123" not in str(caught.value)
