"""Cancellation and deadlines of the trio transport, seen from both ends of the socket.

A cancelled or timed-out stream must close its connection at once, so the
provider stops generating tokens nobody reads (and nobody should pay for).
Each test drives the public API (:func:`~streamcore.adapters.client.open_stream`)
and proves the close from the *server's* side: the emulator's request log
(``ServedRequest.outcome`` is ``CLIENT_DISCONNECTED``, ``tokens_sent`` stops
short, ``finished_at`` is trio's time of the hang-up), or a raw trio listener
that records when the client's FIN arrived. On the client's side a recording
socket factory holds every socket the client opened, so "no socket left open"
is a check, not a hope.

Time is trio's ``MockClock`` with autojump (each test takes ``autojump_clock``
as an argument: pytest-trio only uses a clock passed that way), so "promptly"
is measured in trio seconds, against the pace of the emulator's tokens.
"""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import h11
import pytest
import trio
from trio.testing import MockClock

from streamcore.adapters.client import Provider, open_stream
from streamcore.adapters.emulator import (
    FAULT_HEADER,
    Emulator,
    Outcome,
    ServedRequest,
    answer_for,
    answer_tokens,
    open_emulator,
)
from streamcore.adapters.http import HTTPClient
from streamcore.adapters.recover import Interrupted, Retrying, StreamEvent, StreamResult
from streamcore.events import KeepAlive, TextDelta
from streamcore.machine import State
from streamcore.recovery import RecoveryPolicy, RetryPolicy

PROMPT = "Walk me through how TCP's three-way handshake works"
LENGTH = 1200
ANSWER = answer_for(PROMPT, length=LENGTH)
TOKENS = answer_tokens(PROMPT, length=LENGTH)
PACE = 0.05
"""Seconds between two tokens of a paced answer: the unit of "promptly"."""

NO_RECOVERY = RecoveryPolicy(retry=RetryPolicy(max_attempts=1))
"""Every ending is final, so the test sees the attempt's own state."""

ANTHROPIC_KEY = "sk-ant-api03-CancelTestKey0000000000000001"
OPENAI_KEY = "sk-proj-CancelTestKey0000000000000002"


def anthropic(base_url: str, fault: str = "") -> Provider:
    headers: tuple[tuple[str, str], ...] = ((FAULT_HEADER, fault),) if fault else ()
    return Provider.anthropic(api_key=ANTHROPIC_KEY, base_url=base_url, headers=headers)


def openai(base_url: str, fault: str = "") -> Provider:
    headers: tuple[tuple[str, str], ...] = ((FAULT_HEADER, fault),) if fault else ()
    return Provider.openai(api_key=OPENAI_KEY, base_url=base_url + "/v1", headers=headers)


def shown(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if type(e) is TextDelta and e.choice == 0)


class RecordingSockets(trio.abc.SocketFactory):
    """Every socket trio creates while installed (the client's: accepted sockets bypass it)."""

    def __init__(self) -> None:
        self.created: list[trio.socket.SocketType] = []

    def socket(
        self,
        family: stdlib_socket.AddressFamily | int = stdlib_socket.AF_INET,
        type: stdlib_socket.SocketKind | int = stdlib_socket.SOCK_STREAM,
        proto: int = 0,
    ) -> trio.socket.SocketType:
        sock = trio.socket.from_stdlib_socket(stdlib_socket.socket(family, type, proto))
        self.created.append(sock)
        return sock

    @property
    def open(self) -> int:
        """How many of them are still open."""
        return sum(sock.fileno() >= 0 for sock in self.created)


@contextmanager
def recording_sockets() -> Iterator[RecordingSockets]:
    sockets = RecordingSockets()
    trio.socket.set_custom_socket_factory(sockets)
    try:
        yield sockets
    finally:
        trio.socket.set_custom_socket_factory(None)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with open_emulator(length=LENGTH) as emulator:
        yield emulator


async def served(emu: Emulator, index: int = 0) -> ServedRequest:
    """The emulator's log entry ``index``, once the emulator has noticed how it ended."""
    with trio.fail_after(30):
        return (await emu.wait_for_requests(index + 1))[index]


# ------------------------------------------------------------------ cancel mid-answer


async def test_cancel_mid_answer_stops_the_server_within_one_pace_step(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    events: list[StreamEvent] = []
    start = trio.current_time()
    with recording_sockets() as sockets:
        with trio.move_on_at(start + 1.0) as scope:
            async with open_stream(anthropic(emu.base_url, f"pace={PACE}"), PROMPT) as stream:
                async for event in stream:
                    events.append(event)
        cancelled_at = trio.current_time()
        assert scope.cancelled_caught
        assert sockets.open == 0
    entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.tokens_sent <= 1.0 / PACE + 1  # what 1 s of pacing allows...
    assert entry.tokens_sent < len(TOKENS) // 4  # ...of an answer that takes over 20 s
    assert 0.0 <= entry.finished_at - cancelled_at <= PACE
    result = stream.result()
    assert result.state is State.CANCELLED and not result.completed
    assert result.text == shown(events) and result.text
    assert entry.text.startswith(result.text)  # what we got is what it sent, in order
    assert result.interruption is not None
    assert result.interruption.state is State.CANCELLED
    assert result.interruption.reason == "cancelled: the caller cancelled the stream"


async def test_cancel_from_another_task_closes_the_connection_at_once(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    # A user pressing "stop": another task cancels the scope after the 30th text delta.
    seen = trio.Event()
    received: list[str] = []
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def reader() -> None:
            with scope:
                async with open_stream(openai(emu.base_url, f"pace={PACE}"), PROMPT) as stream:
                    async for piece in stream.text():
                        received.append(piece)
                        if len(received) == 30:
                            seen.set()

        nursery.start_soon(reader)
        await seen.wait()
        stop_at = trio.current_time()
        scope.cancel()
    entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.finished_at - stop_at <= PACE
    assert 30 <= entry.tokens_sent <= 32
    assert ANSWER.startswith("".join(received))


# ------------------------------------------------------------------ cancel before the answer


def _blackhole() -> tuple[stdlib_socket.socket, stdlib_socket.socket, int]:
    """A listener whose backlog is full: a new connection's SYN is never answered."""
    listener = stdlib_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = stdlib_socket.create_connection(("127.0.0.1", port))
    return listener, filler, port


async def test_cancel_while_connecting_closes_the_half_open_socket(
    autojump_clock: MockClock,
) -> None:
    listener, filler, port = _blackhole()
    with listener, filler, recording_sockets() as sockets:
        start = trio.current_time()
        with trio.move_on_after(2.0) as scope:
            async with open_stream(anthropic(f"http://127.0.0.1:{port}"), PROMPT) as stream:
                await stream.final()
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(2.0)
        assert (len(sockets.created), sockets.open) == (1, 0)
    result = stream.result()
    assert result.state is State.CANCELLED
    assert result.text == "" and result.interruption is not None
    assert not result.interruption.partial


@dataclass
class SilentServer:
    """A server that reads a request and never answers it; it notes when the client hangs up."""

    port: int = 0
    connections: int = 0
    closed_at: float | None = None
    request_in: trio.Event = field(default_factory=trio.Event)
    hung_up: trio.Event = field(default_factory=trio.Event)

    async def serve(
        self,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        while type(event := conn.next_event()) is not h11.EndOfMessage:
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
        self.request_in.set()
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        self.closed_at = trio.current_time()
        self.hung_up.set()


async def test_cancel_while_waiting_for_the_head_closes_the_socket(
    autojump_clock: MockClock,
) -> None:
    server = SilentServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        with recording_sockets() as sockets:
            scope = trio.CancelScope()

            async def client() -> None:
                with scope:
                    url = f"http://127.0.0.1:{server.port}"
                    async with open_stream(anthropic(url), PROMPT) as stream:
                        await stream.final()

            nursery.start_soon(client)
            await server.request_in.wait()
            await trio.sleep(3.0)  # the server "thinks"; trio time, no real wait
            cancelled_at = trio.current_time()
            scope.cancel()
            with trio.fail_after(5):
                await server.hung_up.wait()
            assert (len(sockets.created), sockets.open) == (1, 0)
        nursery.cancel_scope.cancel()
    assert server.connections == 1
    assert server.closed_at is not None and server.closed_at - cancelled_at <= PACE


async def test_cancel_while_waiting_for_the_first_token_ends_the_generation(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    with recording_sockets() as sockets:
        with trio.move_on_after(5.0):
            async with open_stream(openai(emu.base_url, "ttft=60"), PROMPT) as stream:
                await stream.final()
        cancelled_at = trio.current_time()
        assert sockets.open == 0
    entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.tokens_sent == 0
    assert entry.finished_at - cancelled_at <= PACE
    result = stream.result()
    assert result.state is State.CANCELLED
    assert result.outcomes[0].status == 200  # the head had arrived: it was the first token


async def test_cancel_during_the_retry_backoff_sends_no_further_request(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    events: list[StreamEvent] = []
    with recording_sockets() as sockets:
        start = trio.current_time()
        with trio.move_on_after(2.0) as scope:  # the server asked for 5 s
            async with open_stream(
                anthropic(emu.base_url, "status=529; retry_after=5"), PROMPT
            ) as stream:
                async for event in stream:
                    events.append(event)
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(2.0)
        assert sockets.open == 0  # the pooled 529 connection closed with the stream's pool
    (retrying,) = events
    assert type(retrying) is Retrying and retrying.delay >= 5.0
    assert [entry.outcome for entry in emu.requests] == [Outcome.HTTP_ERROR]
    result = stream.result()
    assert result.state is State.CANCELLED
    assert [o.state for o in result.outcomes] == [State.HTTP_ERROR]
    assert result.interruption is not None
    # The same reason as a cancel in the middle of an attempt: it does not depend on timing.
    assert result.interruption.reason == "cancelled: the caller cancelled the stream"


# ------------------------------------------------------------------ leaving early


async def test_break_closes_the_connection_and_keeps_it_out_of_the_pool(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    with recording_sockets() as sockets:
        async with HTTPClient() as http:
            async with open_stream(
                anthropic(emu.base_url, f"pace={PACE}"), PROMPT, http=http
            ) as stream:
                pieces = []
                async for piece in stream.text():
                    pieces.append(piece)
                    if len(pieces) == 3:
                        break  # the caller has what it wanted
            assert http.idle_connections(emu.base_url) == 0
            assert sockets.open == 0
            entry = await served(emu)
            assert entry.outcome is Outcome.CLIENT_DISCONNECTED
            assert entry.tokens_sent < len(TOKENS) // 10
            result = stream.result()
            assert result.state is State.CANCELLED
            assert result.text == "".join(pieces)
            assert result.interruption is not None
            assert result.interruption.reason == "cancelled: the stream was closed before its end"
            # The next stream cannot have the closed connection: it opens a new one.
            async with open_stream(anthropic(emu.base_url), PROMPT, http=http) as again:
                assert (await again.final()).text == ANSWER
            assert len(sockets.created) == 2
            assert http.idle_connections(emu.base_url) == 1


async def test_leaving_the_block_without_reading_to_the_end_closes_the_connection(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    async with HTTPClient() as http:
        async with open_stream(openai(emu.base_url, f"pace={PACE}"), PROMPT, http=http) as stream:
            for _ in range(5):
                await stream.__anext__()
        assert http.idle_connections(emu.base_url) == 0
        entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.tokens_sent < 10
    assert stream.result().state is State.CANCELLED


async def test_an_exception_in_the_callers_code_closes_the_connection(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    class RenderFailed(Exception):
        pass

    async with HTTPClient() as http:
        with pytest.raises(RenderFailed):
            async with open_stream(
                anthropic(emu.base_url, f"pace={PACE}"), PROMPT, http=http
            ) as stream:
                async for event in stream:
                    if type(event) is TextDelta:
                        raise RenderFailed("the terminal went away")
        assert http.idle_connections(emu.base_url) == 0
        entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    result = stream.result()
    assert result.state is State.CANCELLED
    assert result.interruption is not None
    assert result.interruption.reason == "cancelled: RenderFailed was raised in the caller's code"


# ------------------------------------------------------------------ pool reuse


async def test_a_cancelled_connection_is_never_reused_and_a_completed_one_is(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    async def complete(http: HTTPClient) -> StreamResult:
        async with open_stream(anthropic(emu.base_url), PROMPT, http=http) as stream:
            return await stream.final()

    with recording_sockets() as sockets:
        async with HTTPClient() as http:
            assert (await complete(http)).completed
            assert (len(sockets.created), http.idle_connections(emu.base_url)) == (1, 1)
            # The cancelled stream takes the pooled connection, and it dies with it.
            with trio.move_on_after(0.5):
                async with open_stream(
                    anthropic(emu.base_url, f"pace={PACE}"), PROMPT, http=http
                ) as stream:
                    await stream.final()
            assert stream.result().state is State.CANCELLED
            assert http.idle_connections(emu.base_url) == 0
            assert sockets.open == 0
            assert (await complete(http)).completed  # a new connection...
            assert (await complete(http)).completed  # ...reused by the next stream
            assert len(sockets.created) == 2
            assert http.idle_connections(emu.base_url) == 1
    outcomes = [entry.outcome for entry in await emu.wait_for_requests(4)]
    assert outcomes.count(Outcome.CLIENT_DISCONNECTED) == 1
    assert outcomes.count(Outcome.COMPLETED) == 3


# ------------------------------------------------------------------ deadlines


async def test_total_deadline_cuts_a_paced_answer_and_hangs_up(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), total_timeout=2.0)
    start = trio.current_time()
    async with HTTPClient() as http:
        async with open_stream(
            anthropic(emu.base_url, f"pace={PACE}"), PROMPT, policy=policy, http=http
        ) as stream:
            events = [event async for event in stream]
        assert http.idle_connections(emu.base_url) == 0
    result = stream.result()
    assert result.state is State.TIMED_OUT_TOTAL
    assert trio.current_time() - start == pytest.approx(2.0)
    assert result.text == shown(events) and ANSWER.startswith(result.text)
    assert type(events[-1]) is Interrupted
    entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.finished_at - (start + 2.0) <= PACE
    assert entry.tokens_sent <= 2.0 / PACE + 1


async def test_pings_inside_the_idle_timeout_keep_a_silent_stream_alive(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    # 30 s without a token, a keep-alive every 4 s: never 5 s without an event.
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), idle_timeout=5.0)
    fault = "stall=30; stall_after=20; ping=4"
    async with open_stream(anthropic(emu.base_url, fault), PROMPT, policy=policy) as stream:
        events = [event async for event in stream]
    result = stream.result()
    assert result.state is State.COMPLETED
    assert result.text == ANSWER
    assert sum(type(e) is KeepAlive for e in events) >= 30 // 4


async def test_pings_further_apart_than_the_idle_timeout_do_not_save_it(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    # Keep-alives every 6 s cannot keep a 5 s idle deadline: it fires 5 s after the last event.
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), idle_timeout=5.0)
    fault = "stall=30; stall_after=20; ping=6"
    async with open_stream(anthropic(emu.base_url, fault), PROMPT, policy=policy) as stream:
        events = [event async for event in stream]
    result = stream.result()
    assert result.state is State.TIMED_OUT_IDLE
    assert result.text == "".join(TOKENS[:20])
    last_text = max(i for i, e in enumerate(events) if type(e) is TextDelta)
    assert not any(type(e) is KeepAlive for e in events[last_text:])
    entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.tokens_sent == 20
    timings = result.outcomes[0].timings
    assert entry.finished_at - entry.started_at == pytest.approx(timings.total, abs=PACE)


async def test_idle_timeout_without_pings_hangs_up_when_it_fires(
    autojump_clock: MockClock, emu: Emulator
) -> None:
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), idle_timeout=5.0)
    start = trio.current_time()
    async with open_stream(
        openai(emu.base_url, "stall=30; stall_after=20"), PROMPT, policy=policy
    ) as stream:
        await stream.final()
    timed_out_at = trio.current_time()
    assert timed_out_at - start == pytest.approx(5.0)
    result = stream.result()
    assert result.state is State.TIMED_OUT_IDLE
    assert result.text == "".join(TOKENS[:20])
    entry = await served(emu)
    assert entry.outcome is Outcome.CLIENT_DISCONNECTED
    assert entry.finished_at - timed_out_at <= PACE


async def test_connect_timeout_against_a_listener_that_never_accepts(
    autojump_clock: MockClock,
) -> None:
    policy = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), connect_timeout=3.0)
    listener, filler, port = _blackhole()
    with listener, filler, recording_sockets() as sockets:
        start = trio.current_time()
        async with open_stream(
            anthropic(f"http://127.0.0.1:{port}"), PROMPT, policy=policy
        ) as stream:
            events = [event async for event in stream]
        assert trio.current_time() - start == pytest.approx(3.0)
        assert sockets.open == 0
    result = stream.result()
    assert result.state is State.TIMED_OUT_CONNECT
    assert type(events[-1]) is Interrupted and not events[-1].partial
