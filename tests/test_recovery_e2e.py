"""Recovery end to end: every policy, against the emulator, ends with the exact full answer.

The emulator's ``fail_first=N`` breaks the first N requests of a stream and
serves the rest clean, so a retried or resumed stream must deliver exactly
``answer_for(prompt)``: no character lost at a seam, none doubled. Waits run
on trio's ``MockClock`` (every test takes ``autojump_clock``; pytest-trio only
uses a clock passed as an argument): a 7-second ``Retry-After`` takes
no real time, and the test can check that it was honoured.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import h11
import pytest
import trio
from trio.testing import MockClock

from streamcore.adapters.client import Provider, open_stream
from streamcore.adapters.emulator import (
    FAULT_HEADER,
    REQUEST_KEY_HEADER,
    Emulator,
    answer_for,
    answer_tokens,
    open_emulator,
)
from streamcore.adapters.emulator.conversation import parse_request, plan_answer, route
from streamcore.adapters.emulator.wire import writer_for
from streamcore.adapters.encodings import load_encoding
from streamcore.adapters.http import HTTPClient, Origin, Response
from streamcore.adapters.recover import (
    BACKGROUND,
    USER_FACING,
    Interrupted,
    ResumeMode,
    Resuming,
    Retrying,
    Stitched,
    StreamEvent,
    StreamResult,
)
from streamcore.events import StreamEnd, TextDelta
from streamcore.machine import State
from streamcore.recovery import AttemptKind, RecoveryPolicy, RetryPolicy
from streamcore.request import ChatRequest, HTTPRequest, Message

PROMPT = "Explain how server-sent events carry an LLM answer"
LENGTH = 600
ANSWER = answer_for(PROMPT, length=LENGTH)
TOKENS = answer_tokens(PROMPT, length=LENGTH)

DIALECTS = ["openai-chat", "openai-responses", "anthropic", "gemini", "ollama"]

PATIENT = RecoveryPolicy(retry=RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=4.0))
"""USER_FACING with room for the multi-seam tests."""


def provider_for(dialect: str, base_url: str, fault: str = "", key: str = "") -> Provider:
    headers: tuple[tuple[str, str], ...] = ((FAULT_HEADER, fault),) if fault else ()
    if key:
        headers += ((REQUEST_KEY_HEADER, key),)
    if dialect == "openai-chat":
        return Provider.openai(
            api_key="sk-proj-e2eKey0001", base_url=base_url + "/v1", headers=headers
        )
    if dialect == "openai-responses":
        return Provider.openai_responses(
            api_key="sk-proj-e2eKey0001", base_url=base_url + "/v1", headers=headers
        )
    if dialect == "anthropic":
        return Provider.anthropic(api_key="sk-ant-e2eKey0002", base_url=base_url, headers=headers)
    if dialect == "gemini":
        return Provider.gemini(api_key="AIzaSyE2eKey00000003", base_url=base_url, headers=headers)
    return Provider.ollama(base_url=base_url, headers=headers)


async def run(
    provider: Provider, request: ChatRequest | str = PROMPT, **options: object
) -> tuple[list[StreamEvent], StreamResult]:
    async with open_stream(provider, request, rng=random.Random(1), **options) as stream:  # type: ignore[arg-type]
        events = [event async for event in stream]
    return events, stream.result()


def shown_text(events: list[StreamEvent]) -> str:
    """What a UI shows: text deltas, minus what a Retrying event says to discard."""
    text = ""
    for event in events:
        if type(event) is TextDelta and event.choice == 0:
            text += event.text
        elif type(event) is Retrying and event.discarded_chars:
            text = text[: len(text) - event.discarded_chars]
    return text


def kinds(result: StreamResult) -> list[AttemptKind]:
    return [record.kind for record in result.attempts]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with open_emulator(length=LENGTH) as emulator:
        yield emulator


# ------------------------------------------------------------------ retry from scratch


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_overload_before_the_first_token_is_retried_to_the_exact_answer(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    # fail_first alone: 503 (Anthropic: 529) for the first two requests.
    events, result = await run(provider_for(dialect, emu.base_url, "fail_first=2"))
    assert result.state is State.COMPLETED
    assert result.text == ANSWER == shown_text(events)
    assert kinds(result) == [AttemptKind.INITIAL, AttemptKind.RETRY, AttemptKind.RETRY]
    retries = [e for e in events if type(e) is Retrying]
    assert [r.attempt for r in retries] == [2, 3]
    assert all(r.failed_state is State.HTTP_ERROR and r.discarded_chars == 0 for r in retries)
    assert [s.status for s in emu.requests] == [529 if dialect == "anthropic" else 503] * 2 + [200]


async def test_retry_after_is_honoured_as_a_floor(autojump_clock: MockClock, emu: Emulator) -> None:
    start = trio.current_time()
    events, result = await run(
        provider_for("openai-chat", emu.base_url, "status=429; retry_after=7; fail_first=1")
    )
    assert result.text == ANSWER
    (retry,) = [e for e in events if type(e) is Retrying]
    assert retry.delay == 7.0  # the jittered backoff (<= 0.5 s) is below what the server asked
    served = emu.requests
    assert served[1].started_at - served[0].finished_at == pytest.approx(7.0, abs=0.01)
    assert trio.current_time() - start >= 7.0


async def test_backoff_waits_follow_the_policy_with_full_jitter(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    policy = RecoveryPolicy(
        retry=RetryPolicy(max_attempts=5, base_delay=1.0, multiplier=2.0, max_delay=3.0)
    )
    events, result = await run(
        provider_for("gemini", emu.base_url, "status=500; fail_first=4"), policy=policy
    )
    assert result.text == ANSWER
    delays = [e.delay for e in events if type(e) is Retrying]
    draws = random.Random(1)
    expected = [policy.retry.delay(n, draws.random(), None) for n in range(1, 5)]
    assert delays == pytest.approx(expected)
    assert all(d <= c for d, c in zip(delays, [1.0, 2.0, 3.0, 3.0], strict=True))  # capped
    gaps = [
        b.started_at - a.finished_at for a, b in zip(emu.requests, emu.requests[1:], strict=False)
    ]
    assert gaps == pytest.approx(expected, abs=0.01)


async def test_a_retry_after_beyond_the_policy_is_not_waited_for(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    start = trio.current_time()
    events, result = await run(
        provider_for("anthropic", emu.base_url, "status=529; retry_after=120; fail_first=1")
    )
    assert result.state is State.HTTP_ERROR
    assert isinstance(events[-1], Interrupted)
    assert "120" in events[-1].reason  # says the server asked for too long a wait
    assert trio.current_time() - start < 1.0
    assert len(emu.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_a_client_error_is_never_retried(
    autojump_clock: MockClock, emu: Emulator, status: int
) -> None:
    events, result = await run(provider_for("openai-chat", emu.base_url, f"status={status}"))
    assert result.state is State.HTTP_ERROR
    assert len(result.attempts) == 1 and len(emu.requests) == 1
    assert type(events[-1]) is Interrupted and not events[-1].partial


# ------------------------------------------------------------------ resume with context


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_drop_mid_answer_is_resumed_losslessly(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    events, result = await run(
        provider_for(dialect, emu.base_url, "fail_first=1; drop_after_tokens=40")
    )
    assert result.state is State.COMPLETED
    assert result.text == ANSWER == shown_text(events)
    assert kinds(result) == [AttemptKind.INITIAL, AttemptKind.RESUME]
    (resuming,) = [e for e in events if type(e) is Resuming]
    partial = "".join(TOKENS[:40])
    assert resuming.partial_chars == len(partial)
    assert resuming.failed_state is State.INTERRUPTED
    prefill = dialect == "anthropic"
    assert resuming.mode is (ResumeMode.PREFILL if prefill else ResumeMode.CONTINUE)
    # The emulator continued exactly after the partial text it was sent.
    assert emu.requests[1].resumed_from in (len(partial), len(partial.rstrip()))
    (stitched,) = [e for e in events if type(e) is Stitched]
    assert stitched.seam.offset == len(partial)
    assert result.seams == (stitched.seam,)


async def test_the_seam_event_comes_before_the_continuation_text(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    events, _ = await run(
        provider_for("anthropic", emu.base_url, "fail_first=1; drop_after_tokens=40")
    )
    after_resume = events[[type(e) for e in events].index(Resuming) + 1 :]
    first_text = next(i for i, e in enumerate(after_resume) if type(e) is TextDelta)
    seam = next(i for i, e in enumerate(after_resume) if type(e) is Stitched)
    assert seam < first_text
    assert type(events[-1]) is StreamEnd


@pytest.mark.parametrize("dialect", ["openai-chat", "openai-responses", "anthropic", "gemini"])
async def test_a_mid_stream_provider_error_is_resumed_losslessly(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    events, result = await run(provider_for(dialect, emu.base_url, "fail_first=1; error_after=30"))
    assert result.text == ANSWER == shown_text(events)
    (resuming,) = [e for e in events if type(e) is Resuming]
    assert resuming.failed_state is State.PROVIDER_ERROR


async def test_an_ollama_error_line_is_not_retried(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    # Ollama's {"error": "..."} says nothing about being transient: the answer stops there.
    events, result = await run(provider_for("ollama", emu.base_url, "error_after=30"))
    assert result.state is State.PROVIDER_ERROR
    assert result.text == "".join(TOKENS[:30])
    assert type(events[-1]) is Interrupted and events[-1].partial
    assert len(emu.requests) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_idle_timeout_is_resumed_losslessly(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    policy = replace(USER_FACING, idle_timeout=10.0)
    _events, result = await run(
        provider_for(dialect, emu.base_url, "fail_first=1; stall=300; stall_after=50"),
        policy=policy,
    )
    assert result.text == ANSWER
    assert [o.state for o in result.outcomes] == [State.TIMED_OUT_IDLE, State.COMPLETED]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_first_token_timeout_is_retried_from_scratch(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    policy = replace(USER_FACING, first_token_timeout=5.0, idle_timeout=30.0)
    _, result = await run(
        provider_for(dialect, emu.base_url, "fail_first=1; ttft=60"), policy=policy
    )
    assert result.text == ANSWER
    assert kinds(result) == [AttemptKind.INITIAL, AttemptKind.RETRY]
    assert result.outcomes[0].state is State.TIMED_OUT_FIRST_TOKEN


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_garbled_event_is_resumed_losslessly(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    _, result = await run(
        provider_for(dialect, emu.base_url, "fail_first=1; invalid_json_after=20")
    )
    assert result.text == ANSWER
    assert result.outcomes[0].state is State.PROTOCOL_ERROR


class _FaultPerAttempt:
    """The real HTTP client, with each request's fault header chosen by ``faults``.

    ``faults(n, partial)`` gets the attempt number (0-based) and the partial
    answer the request carries (for a continuation), and returns the header.
    The emulator's ``fail_first`` cannot express "drop the first attempt,
    repeat words in the next" (a clean request drops every fault but the
    answer knobs), so the test decides per attempt instead.
    """

    def __init__(self, http: HTTPClient, faults: Callable[[int, str], str]) -> None:
        self._http = http
        self._faults = faults
        self.sent = 0

    def stream(self, url: Origin, request: HTTPRequest) -> AbstractAsyncContextManager[Response]:
        fault = self._faults(self.sent, _partial_answer(json.loads(request.body)))
        self.sent += 1
        return self._http.stream(
            url, replace(request, headers=(*request.headers, (FAULT_HEADER, fault)))
        )


def _partial_answer(body: dict[str, object]) -> str:
    """The last assistant turn's text in a request body of any dialect."""
    turns = body.get("messages") or body.get("input") or body.get("contents") or []
    assert isinstance(turns, list)
    for turn in reversed(turns):
        if turn.get("role") in ("assistant", "model"):
            content = turn.get("content", turn.get("parts"))
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content)
    return ""


def _word_aligned_repeat(partial: str, most: int = 40) -> int:
    """The longest tail of ``partial`` (at most ``most`` characters) that starts a word.

    Models repeat whole words when they continue; the Stitcher removes a
    repeat only from a word start (a repeat cut mid-word stays, by design).
    """
    for n in range(min(most, len(partial) - 1), 7, -1):
        start = len(partial) - n
        if not partial[start - 1].isalnum() and partial[start].isalnum():
            return n
    return 0


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_repeated_words_are_removed_at_every_seam(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    repeats: list[int] = []

    def faults(attempt: int, partial: str) -> str:
        if attempt == 0:
            return "drop_after_tokens=60"
        repeats.append(_word_aligned_repeat(partial))
        # Two more drops, each continuation repeating the end of what it was sent.
        drop = "; drop_after_tokens=60" if attempt < 3 else ""
        return f"repeat={repeats[-1]}{drop}"

    async with HTTPClient() as http:
        transport = _FaultPerAttempt(http, faults)
        events, result = await run(
            provider_for(dialect, emu.base_url), policy=PATIENT, http=transport
        )
    assert result.text == ANSWER == shown_text(events)
    assert len(result.seams) == 3
    assert all(n >= 8 for n in repeats)
    # Every repeat was found and removed at its seam (after a prefill, plus the lost whitespace).
    for seam, repeat in zip(result.seams, repeats, strict=True):
        assert seam.overlap.strip() and len(seam.overlap) == repeat
        assert seam.removed >= repeat


async def test_usage_of_every_attempt_is_kept(autojump_clock: MockClock, emu: Emulator) -> None:
    _, result = await run(
        provider_for("anthropic", emu.base_url, "fail_first=1; drop_after_tokens=40")
    )
    first, second = result.attempts
    assert first.outcome == "interrupted" and second.outcome == "completed"
    # The dropped attempt never got its final usage: the driver's count stands in.
    assert first.usage is not None and first.usage.output_tokens == 1  # message_start's
    # ... and it is the exact count of the text that attempt delivered.
    assert first.text_chars == len("".join(TOKENS[:40]))
    tokenizer, _ = load_encoding(result.message.model or "")
    assert first.estimated_output_tokens == len(tokenizer.encoding.encode("".join(TOKENS[:40])))
    # The continuation reports its own usage: the tokens the emulator sent it.
    resumed = emu.requests[1]
    assert resumed.resumed_from is not None
    assert second.usage is not None and second.usage.output_tokens == resumed.tokens_sent
    assert result.usage.output_tokens == 1 + resumed.tokens_sent
    assert result.usage.input_tokens == first.usage.input_tokens + second.usage.input_tokens


async def test_a_prefill_of_the_callers_own_is_continued(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    head = "".join(TOKENS[:20])
    request = ChatRequest(
        "claude-sonnet-4-5",
        (Message("user", PROMPT), Message("assistant", head)),
        max_tokens=4096,
    )
    _events, result = await run(
        provider_for("anthropic", emu.base_url, "fail_first=1; drop_after_tokens=30"), request
    )
    assert head.rstrip() + result.text == ANSWER or head + result.text == ANSWER
    assert result.completed and len(result.seams) == 1


# ------------------------------------------------------------------ background policy


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_background_policy_restarts_a_cut_answer_from_scratch(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    events, result = await run(
        provider_for(dialect, emu.base_url, "fail_first=1; drop_after_tokens=40"), policy=BACKGROUND
    )
    assert result.text == ANSWER == shown_text(events)
    assert kinds(result) == [AttemptKind.INITIAL, AttemptKind.RETRY]
    (retry,) = [e for e in events if type(e) is Retrying]
    assert retry.discarded_chars == len("".join(TOKENS[:40]))
    assert result.seams == ()
    assert emu.requests[1].resumed_from is None  # the original request, not a continuation


async def test_background_policy_fails_fast_on_a_stall(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    start = trio.current_time()
    _, result = await run(
        provider_for("openai-chat", emu.base_url, "fail_first=1; stall=600; stall_after=5"),
        policy=BACKGROUND,
    )
    assert result.text == ANSWER
    assert result.outcomes[0].state is State.TIMED_OUT_IDLE
    assert trio.current_time() - start < BACKGROUND.idle_timeout + BACKGROUND.retry.base_delay + 1  # type: ignore[operator]


# ------------------------------------------------------------------ failing gracefully


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_giving_up_delivers_the_partial_answer_with_a_marker(
    autojump_clock: MockClock, emu: Emulator, dialect: str
) -> None:
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=2, base_delay=0.1))
    events, result = await run(
        provider_for(dialect, emu.base_url, "drop_after_tokens=40"), policy=policy
    )
    assert result.state is State.INTERRUPTED and not result.completed
    assert ANSWER.startswith(result.text) and len(result.text) > len("".join(TOKENS[:40]))
    interruption = events[-1]
    assert type(interruption) is Interrupted and interruption is result.interruption
    assert "gave up after 2 attempts" in interruption.reason
    assert interruption.marker == policy.marker.format(reason=interruption.reason)
    assert result.display_text() == result.text + "\n" + interruption.marker
    assert len(result.attempts) == 2


async def test_the_token_budget_counts_every_attempt(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    events, result = await run(
        provider_for("openai-chat", emu.base_url, "fail_first=1; drop_after_tokens=40"),
        budget=60,
    )
    assert result.state is State.BUDGET_EXCEEDED
    assert kinds(result) == [AttemptKind.INITIAL, AttemptKind.RESUME]
    assert ANSWER.startswith(result.text)
    assert type(events[-1]) is Interrupted
    assert sum(r.estimated_output_tokens or 0 for r in result.attempts) > 60


# ------------------------------------------------------------------ Responses API replay


def _responses_frames(body: dict[str, object]) -> list[tuple[int, bytes]]:
    """The emulator's Responses stream for ``body``, as (sequence_number, SSE frame) pairs."""
    conv = parse_request(body, route("/v1/responses", ""))  # type: ignore[arg-type]
    plan = plan_answer(conv, length=LENGTH, ids=random.Random(0))
    writer = writer_for(conv, plan, ids=random.Random(0), now=1_764_000_000.0, eol=None)
    frames = []
    for frame in writer.frames():
        data = frame.data.decode().partition("data: ")[2]
        frames.append((json.loads(data)["sequence_number"], frame.data))
    return frames


async def _background_responses_server(
    log: list[str], drop_after: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A Responses API that keeps background responses: the POST stream drops after
    ``drop_after`` events; ``GET /v1/responses/{id}?stream=true&starting_after=N`` replays."""
    stored: list[tuple[int, bytes]] = []

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                target = event.target.decode()
                log.append(f"{event.method.decode()} {target}")
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        if target == "/v1/responses":
            request = json.loads(body)
            assert request["background"] is True
            stored[:] = _responses_frames(request)
            frames = [data for _, data in stored[:drop_after]]
        else:
            after = int(target.rpartition("starting_after=")[2])
            frames = [data for seq, data in stored if seq > after]
        head = h11.Response(status_code=200, headers=[("content-type", "text/event-stream")])
        await stream.send_all(conn.send(head))
        for data in frames:
            await stream.send_all(conn.send(h11.Data(data=data)))
        if target != "/v1/responses":
            await stream.send_all(conn.send(h11.EndOfMessage()))
        await stream.aclose()  # the POST: dropped mid-body

    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, handle, 0)
        task_status.started(listeners[0].socket.getsockname()[1])


async def test_a_background_response_is_replayed_after_the_last_sequence_number(
    autojump_clock: MockClock,
) -> None:
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_background_responses_server, log, 40)
        provider = provider_for("openai-responses", f"http://127.0.0.1:{port}")
        request = ChatRequest("gpt-5-mini", (Message("user", PROMPT),), extra={"background": True})
        events, result = await run(provider, request)
        nursery.cancel_scope.cancel()
    assert result.text == ANSWER == shown_text(events)
    assert kinds(result) == [AttemptKind.INITIAL, AttemptKind.REPLAY]
    (resuming,) = [e for e in events if type(e) is Resuming]
    assert resuming.mode is ResumeMode.REPLAY
    assert result.seams == ()  # nothing generated twice, nothing to stitch
    post, get = log
    assert post == "POST /v1/responses"
    assert get.startswith("GET /v1/responses/resp_") and get.endswith(
        "?stream=true&starting_after=39"
    )
