"""The trio provider adapters against the local emulator, over real loopback sockets.

Every adapter streams the emulator's deterministic answer (``answer_for``) and
must deliver it exactly; each fault the emulator injects must end the attempt
in the state the stream machine defines. These tests turn recovery off
(``NO_RECOVERY``) to see each ending as it is; ``test_recovery_e2e.py`` turns it
on. Time is trio's ``MockClock`` (``autojump_clock``): a 30-second stall takes
no real time.
"""

from __future__ import annotations

import doctest
import functools
import json
import pickle
import socket as stdlib_socket
from collections.abc import AsyncIterator

import h11
import pytest
import trio

import streamcore.adapters.client as client_module
import streamcore.adapters.recover as recover_module
from streamcore import LocalProtocolError
from streamcore.adapters.client import Client, Provider, Secret, open_stream
from streamcore.adapters.emulator import (
    FAULT_HEADER,
    REQUEST_KEY_HEADER,
    Emulator,
    Outcome,
    answer_for,
    answer_tokens,
    open_emulator,
)
from streamcore.adapters.http import HTTPClient
from streamcore.adapters.recover import Interrupted, StreamEvent, StreamResult
from streamcore.events import KeepAlive, ProviderError, StreamEnd, TextDelta
from streamcore.machine import State
from streamcore.recovery import RecoveryPolicy, RetryPolicy
from streamcore.request import ChatRequest, Message

PROMPT = "Explain how server-sent events carry an LLM answer"
LENGTH = 600
ANSWER = answer_for(PROMPT, length=LENGTH)
TOKENS = answer_tokens(PROMPT, length=LENGTH)

# Realistic key shapes, so the redaction of key-shaped strings is exercised too.
KEYS = {
    "openai": "sk-proj-T3stKeyForTheEmulator0001",
    "anthropic": "sk-ant-api03-T3stKeyForTheEmulator0002",
    "gemini": "AIzaSyT3stKeyForTheEmulator0003",
}

DIALECTS = [
    "openai-chat",
    "openai-compatible",
    "openai-responses",
    "anthropic",
    "gemini",
    "ollama",
]
SSE_DIALECTS = [d for d in DIALECTS if d != "ollama"]  # Ollama's NDJSON has no keep-alive

NO_RECOVERY = RecoveryPolicy(retry=RetryPolicy(max_attempts=1))
"""Every failure is final: the attempt's own ending is what the test sees."""


def provider_for(
    dialect: str, base_url: str, fault: str = "", *, request_key: str = ""
) -> Provider:
    """A provider of ``dialect`` pointed at the emulator, sending ``fault`` with every request
    (``request_key`` names the emulator's ``fail_first`` counter)."""
    headers: tuple[tuple[str, str], ...] = ((FAULT_HEADER, fault),) if fault else ()
    if request_key:
        headers += ((REQUEST_KEY_HEADER, request_key),)
    if dialect == "openai-chat":
        return Provider.openai(api_key=KEYS["openai"], base_url=base_url + "/v1", headers=headers)
    if dialect == "openai-compatible":
        return Provider.openai_compatible(base_url + "/v1", model="llama-3.1-8b", headers=headers)
    if dialect == "openai-responses":
        return Provider.openai_responses(
            api_key=KEYS["openai"], base_url=base_url + "/v1", headers=headers
        )
    if dialect == "anthropic":
        return Provider.anthropic(api_key=KEYS["anthropic"], base_url=base_url, headers=headers)
    if dialect == "gemini":
        return Provider.gemini(api_key=KEYS["gemini"], base_url=base_url, headers=headers)
    assert dialect == "ollama"
    return Provider.ollama(base_url=base_url, headers=headers)


async def run(
    provider: Provider, prompt: str = PROMPT, **options: object
) -> tuple[list[StreamEvent], StreamResult]:
    """Stream ``prompt`` to its end; return every event and the result."""
    async with open_stream(provider, prompt, **options) as stream:  # type: ignore[arg-type]
        events = [event async for event in stream]
    return events, stream.result()


def texts(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if type(e) is TextDelta and e.choice == 0)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with open_emulator(length=LENGTH) as emulator:
        yield emulator


# ------------------------------------------------------------------ the happy path


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_each_adapter_streams_the_exact_answer(emu: Emulator, dialect: str) -> None:
    events, result = await run(provider_for(dialect, emu.base_url))
    assert result.state is State.COMPLETED and result.completed
    assert result.text == ANSWER
    assert texts(events) == ANSWER
    assert type(events[-1]) is StreamEnd
    assert result.interruption is None
    assert [record.kind.value for record in result.attempts] == ["initial"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_answer_is_exact_when_bytes_are_split_anywhere(emu: Emulator, dialect: str) -> None:
    # 1-7 byte pieces: reads end inside UTF-8 sequences (é, 語, emoji), inside CRLF, anywhere.
    _, result = await run(provider_for(dialect, emu.base_url, "split=1-7; seed=3"))
    assert result.state is State.COMPLETED
    assert result.text == ANSWER


@pytest.mark.parametrize("dialect", ["openai-chat", "anthropic", "ollama"])
async def test_provider_usage_is_reported_in_the_result(emu: Emulator, dialect: str) -> None:
    _, result = await run(provider_for(dialect, emu.base_url))
    assert result.usage.output_tokens == len(TOKENS)  # the emulator reports its pieces
    assert result.attempts[0].usage == result.usage


async def test_text_helper_yields_only_the_answer_text(emu: Emulator) -> None:
    async with open_stream(provider_for("anthropic", emu.base_url), PROMPT) as stream:
        pieces = [piece async for piece in stream.text()]
    assert "".join(pieces) == ANSWER
    assert all(isinstance(piece, str) and piece for piece in pieces)


async def test_final_reads_to_the_end_and_returns_the_result(emu: Emulator) -> None:
    async with open_stream(provider_for("gemini", emu.base_url), PROMPT) as stream:
        result = await stream.final()
    assert result is stream.result()
    assert result.text == ANSWER


async def test_a_chat_request_with_history_and_system_is_answered(emu: Emulator) -> None:
    request = ChatRequest(
        "",  # the provider's default model
        (
            Message("user", "Hi!"),
            Message("assistant", "Hello! How can I help?"),
            Message("user", PROMPT),
        ),
        system="You are terse.",
    )
    _, result = await run(provider_for("openai-responses", emu.base_url), request)  # type: ignore[arg-type]
    assert result.text == ANSWER
    assert emu.requests[0].body["model"] == "gpt-5-mini"  # type: ignore[index]


async def test_timings_measure_time_to_first_token(emu: Emulator, autojump_clock: object) -> None:
    _, result = await run(provider_for("anthropic", emu.base_url, "ttft=2.5; pace=0.01"))
    assert result.time_to_first_token is not None
    assert 2.5 <= result.time_to_first_token < 2.6
    assert result.total_time == pytest.approx(2.5 + 0.01 * (len(TOKENS) - 1), abs=0.005)


# ------------------------------------------------------------------ faults -> terminal states


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_drop_mid_answer_ends_interrupted_with_the_text_so_far(
    emu: Emulator, dialect: str
) -> None:
    events, result = await run(
        provider_for(dialect, emu.base_url, "drop_after_tokens=40"), policy=NO_RECOVERY
    )
    assert result.state is State.INTERRUPTED
    assert result.text == "".join(TOKENS[:40])
    assert type(events[-1]) is Interrupted
    assert result.interruption is events[-1]
    assert result.interruption.partial
    assert result.display_text().endswith(result.interruption.marker)
    assert "connection" in result.interruption.reason


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_mid_stream_error_ends_in_provider_error(emu: Emulator, dialect: str) -> None:
    events, result = await run(
        provider_for(dialect, emu.base_url, "error_after=25"), policy=NO_RECOVERY
    )
    assert result.state is State.PROVIDER_ERROR
    assert result.text == "".join(TOKENS[:25])
    assert any(type(e) is ProviderError for e in events)
    assert result.outcomes[0].error is not None


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_stall_ends_in_idle_timeout(
    emu: Emulator, dialect: str, autojump_clock: object
) -> None:
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), idle_timeout=5.0)
    start = trio.current_time()
    _, result = await run(
        provider_for(dialect, emu.base_url, "stall=60; stall_after=10"), policy=policy
    )
    assert result.state is State.TIMED_OUT_IDLE
    assert result.text == "".join(TOKENS[:10])
    assert trio.current_time() - start == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_slow_first_token_ends_in_first_token_timeout(
    emu: Emulator, dialect: str, autojump_clock: object
) -> None:
    policy = RecoveryPolicy(
        retry=RetryPolicy(max_attempts=1), first_token_timeout=4.0, idle_timeout=30.0
    )
    _, result = await run(provider_for(dialect, emu.base_url, "ttft=10"), policy=policy)
    assert result.state is State.TIMED_OUT_FIRST_TOKEN
    assert result.text == ""
    assert result.interruption is not None and not result.interruption.partial


@pytest.mark.parametrize("dialect", SSE_DIALECTS)
async def test_pings_reset_the_idle_deadline(
    emu: Emulator, dialect: str, autojump_clock: object
) -> None:
    # A 20 s stall with a keep-alive every 2 s never leaves the stream idle for 5 s.
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), idle_timeout=5.0)
    events, result = await run(
        provider_for(dialect, emu.base_url, "stall=20; stall_after=10; ping=2"), policy=policy
    )
    assert result.state is State.COMPLETED
    assert result.text == ANSWER
    assert sum(type(e) is KeepAlive for e in events) >= 9


@pytest.mark.parametrize(
    ("dialect", "status"),
    [("openai-chat", 429), ("openai-responses", 500), ("anthropic", 529), ("gemini", 503)],
)
async def test_error_status_ends_in_http_error(emu: Emulator, dialect: str, status: int) -> None:
    _, result = await run(
        provider_for(dialect, emu.base_url, f"status={status}; retry_after=7"), policy=NO_RECOVERY
    )
    assert result.state is State.HTTP_ERROR
    outcome = result.outcomes[0]
    assert outcome.status == status
    assert outcome.retry_after == 7.0
    assert outcome.retryable
    assert isinstance(outcome.error, ProviderError)  # parsed from the provider's error body
    assert result.text == ""


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_invalid_json_ends_in_protocol_error(emu: Emulator, dialect: str) -> None:
    _, result = await run(
        provider_for(dialect, emu.base_url, "invalid_json_after=12"), policy=NO_RECOVERY
    )
    assert result.state is State.PROTOCOL_ERROR
    assert result.text == "".join(TOKENS[:12])
    error = result.outcomes[0].error
    assert getattr(error, "kind", None) in ("invalid_json", "invalid_event")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_token_budget_stops_the_stream_with_the_partial_answer(
    emu: Emulator, dialect: str, autojump_clock: object
) -> None:
    events, result = await run(provider_for(dialect, emu.base_url, "pace=0.01"), budget=30)
    assert result.state is State.BUDGET_EXCEEDED
    assert result.text and ANSWER.startswith(result.text) and result.text != ANSWER
    assert result.outcomes[0].timings.tokens > 30  # the first count over the budget
    assert type(events[-1]) is Interrupted
    served = await emu.wait_for_requests(1)
    assert served[0].outcome is Outcome.CLIENT_DISCONNECTED
    assert served[0].tokens_sent < len(TOKENS)


async def test_nothing_listening_ends_in_connect_failed() -> None:
    with stdlib_socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, result = await run(provider_for("anthropic", f"http://127.0.0.1:{port}"), policy=NO_RECOVERY)
    assert result.state is State.CONNECT_FAILED
    assert "refused" in result.outcomes[0].reason


# ------------------------------------------------------------------ misuse


async def test_a_request_the_dialect_cannot_express_raises_before_any_io(emu: Emulator) -> None:
    request = ChatRequest("gpt-5-mini", (Message("user", PROMPT),), stop=("\n\n",))
    with pytest.raises(LocalProtocolError) as info:
        async with open_stream(provider_for("openai-responses", emu.base_url), request):
            pass
    assert info.value.kind == "unsupported_parameter"
    assert emu.requests == ()


async def test_result_before_the_end_raises_not_finished(emu: Emulator) -> None:
    async with open_stream(provider_for("ollama", emu.base_url), PROMPT) as stream:
        with pytest.raises(LocalProtocolError) as info:
            stream.result()
        assert info.value.kind == "not_finished"
        await stream.final()


async def test_reading_after_the_block_raises_stream_closed(emu: Emulator) -> None:
    async with open_stream(provider_for("ollama", emu.base_url), PROMPT) as stream:
        await stream.__anext__()
    with pytest.raises(LocalProtocolError) as info:
        await stream.__anext__()
    assert info.value.kind == "stream_closed"
    assert stream.result().state is State.CANCELLED


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Provider("openai-completions", "https://api.openai.com/v1")
    assert info.value.kind == "unknown_dialect"


def test_base_url_with_a_query_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Provider.gemini(api_key=KEYS["gemini"], base_url="https://x.example?key=AIzaSyLeak00000")
    assert info.value.kind == "bad_base_url"
    assert "AIzaSyLeak00000" not in str(info.value)


# ------------------------------------------------------------------ configuration


def test_keys_come_from_the_usual_environment_variables() -> None:
    env = {
        "OPENAI_API_KEY": KEYS["openai"],
        "ANTHROPIC_API_KEY": KEYS["anthropic"],
        "GEMINI_API_KEY": "AIzaSyGeminiVariable000000",
        "GOOGLE_API_KEY": KEYS["gemini"],
    }
    assert Provider.openai(env=env).api_key == Secret(KEYS["openai"])
    assert Provider.anthropic(env=env).api_key == Secret(KEYS["anthropic"])
    assert Provider.gemini(env=env).api_key == Secret(KEYS["gemini"])  # GOOGLE_API_KEY wins
    del env["GOOGLE_API_KEY"]
    assert Provider.gemini(env=env).api_key == Secret("AIzaSyGeminiVariable000000")


def test_a_missing_key_raises_naming_the_variable() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Provider.anthropic(env={})
    assert info.value.kind == "missing_api_key"
    assert "ANTHROPIC_API_KEY" in str(info.value)


def test_base_urls_are_overridable_from_the_environment() -> None:
    env = {"OPENAI_API_KEY": KEYS["openai"], "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}
    assert Provider.openai(env=env).endpoint()[1] == "/v1"
    ollama = Provider.ollama(env={"OLLAMA_HOST": "gpu-box.lan"})
    assert ollama.base_url == "http://gpu-box.lan:11434"
    assert Provider.ollama(env={}).base_url == "http://localhost:11434"


def test_an_openai_compatible_server_never_gets_the_openai_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEYS["openai"])
    provider = Provider.openai_compatible("http://127.0.0.1:8000/v1", model="qwen2.5")
    assert provider.api_key is None


# ------------------------------------------------------------------ secrets


def test_provider_repr_and_str_never_show_the_key() -> None:
    providers = [
        Provider.openai(api_key=KEYS["openai"]),
        Provider.anthropic(api_key=KEYS["anthropic"]),
        Provider.gemini(api_key=KEYS["gemini"], headers=(("x-goog-api-key", KEYS["gemini"]),)),
    ]
    for provider in providers:
        shown = repr(provider) + str(provider) + repr(provider.api_key) + f"{provider.api_key}"
        assert all(key not in shown for key in KEYS.values())
        assert "<redacted>" in shown


def test_a_secret_refuses_to_be_pickled() -> None:
    provider = Provider.anthropic(api_key=KEYS["anthropic"])
    with pytest.raises(LocalProtocolError) as info:
        pickle.dumps(provider)
    assert info.value.kind == "secret_not_serializable"
    with pytest.raises(TypeError):  # not JSON either
        json.dumps({"key": provider.api_key})


async def _echo_key_server(
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answers every request with a 401 whose body quotes the key it was sent (as OpenAI does)."""

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        key = ""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                for name, value in event.headers:
                    if name in (b"authorization", b"x-api-key", b"x-goog-api-key"):
                        key = value.decode().removeprefix("Bearer ")
            elif isinstance(event, h11.EndOfMessage):
                break
        body = json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {key}. You can find your API key "
                    "at https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        ).encode()
        head = h11.Response(
            status_code=401,
            headers=[("content-type", "application/json"), ("content-length", str(len(body)))],
        )
        await stream.send_all(conn.send(head) + conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), handle, 0
        )
        task_status.started(listeners[0].socket.getsockname()[1])


@pytest.mark.parametrize("dialect", ["openai-chat", "anthropic", "gemini"])
async def test_a_key_echoed_by_the_server_appears_nowhere(dialect: str) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_echo_key_server)
        provider = provider_for(dialect, f"http://127.0.0.1:{port}")
        events, result = await run(provider)
        nursery.cancel_scope.cancel()
    assert result.state is State.HTTP_ERROR
    assert result.attempts[0].outcome == "http_error"  # 401: not retried
    outcome = result.outcomes[0]
    assert outcome.status == 401
    shown = "\n".join(
        [repr(result), str(outcome.error), outcome.reason, result.display_text(), repr(provider)]
        + [repr(event) for event in events]
    )
    assert "Incorrect API key provided" in shown  # the message is kept...
    assert all(key not in shown for key in KEYS.values())  # ...the key is not


@pytest.mark.parametrize("dialect", ["openai-responses", "anthropic", "gemini"])
async def test_a_live_stream_repr_shows_no_key(emu: Emulator, dialect: str) -> None:
    async with open_stream(provider_for(dialect, emu.base_url), PROMPT) as stream:
        first = await stream.__anext__()
        shown = repr(stream) + repr(first)
        await stream.final()
    shown += repr(stream.result())
    assert dialect in shown
    assert all(key not in shown for key in KEYS.values())


async def test_the_emulator_log_shows_no_key(emu: Emulator) -> None:
    await run(provider_for("openai-chat", emu.base_url))
    served = emu.requests[0]
    assert ("authorization", "<redacted>") in served.headers
    assert KEYS["openai"] not in repr(served)


# ------------------------------------------------------------------ the pool


class _CountingSockets(trio.abc.SocketFactory):
    def __init__(self) -> None:
        self.created = 0

    def socket(
        self,
        family: stdlib_socket.AddressFamily | int = stdlib_socket.AF_INET,
        type: stdlib_socket.SocketKind | int = stdlib_socket.SOCK_STREAM,
        proto: int = 0,
    ) -> trio.socket.SocketType:
        self.created += 1
        return trio.socket.from_stdlib_socket(stdlib_socket.socket(family, type, proto))


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sequential_streams_reuse_one_pooled_connection(emu: Emulator, dialect: str) -> None:
    sockets = _CountingSockets()
    trio.socket.set_custom_socket_factory(sockets)
    try:
        async with Client(provider_for(dialect, emu.base_url)) as client:
            for _ in range(3):
                async with client.stream(PROMPT) as stream:
                    assert (await stream.final()).text == ANSWER
                assert client.http.idle_connections(emu.base_url) == 1
    finally:
        trio.socket.set_custom_socket_factory(None)
    assert sockets.created == 1
    assert len(emu.requests) == 3


async def test_a_stream_cut_short_does_not_return_its_connection(emu: Emulator) -> None:
    async with HTTPClient() as http:
        await run(provider_for("anthropic", emu.base_url, "drop_after_tokens=5"), http=http)
        assert http.idle_connections(emu.base_url) == 0


# ------------------------------------------------------------------ soak


async def test_fifty_concurrent_streams_all_deliver_the_exact_answer(
    autojump_clock: object,
) -> None:
    # Mixed dialects, byte splits, pacing and recoverable faults, one pool.
    faults = ["", "split=7-40", "pace=0.01", "fail_first=1", "fail_first=1; drop_after_tokens=30"]
    results: list[StreamResult] = []
    async with open_emulator(length=LENGTH) as emulator, HTTPClient() as http:

        async def one(index: int) -> None:
            dialect = DIALECTS[index % len(DIALECTS)]
            fault = faults[index % len(faults)]
            prompt = f"{PROMPT} (stream {index})"
            _, result = await run(
                provider_for(dialect, emulator.base_url, fault, request_key=f"soak-{index}"),
                prompt,
                http=http,
                count_tokens=index % 2 == 0,
            )
            assert result.text == answer_for(prompt, length=LENGTH), (dialect, fault)
            results.append(result)

        async with trio.open_nursery() as nursery:
            for index in range(50):
                nursery.start_soon(one, index)
    assert len(results) == 50
    assert all(result.completed for result in results)
    assert sum(len(result.attempts) for result in results) > 50  # recoveries happened


# ------------------------------------------------------------------ documentation


@pytest.mark.parametrize("module", [client_module, recover_module], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
