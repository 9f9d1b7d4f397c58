"""Several `streamcore serve` processes sharing one redis-server: resume anywhere, takeover.

Real processes on loopback (`streamcore serve --port 0 --emulator --store redis://...`),
each with its own built-in emulator (answers are deterministic, so a continuation
sent to another process's emulator carries on the same answer), a real redis-server
on an ephemeral port, and nginx (round-robin, no stickiness) in front where it says so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import _nginx
import _redis
import h11
import pytest
import trio

from streamcore.adapters.emulator import answer_for
from streamcore.sse import SSEDecoder, SSEEvent

pytestmark = pytest.mark.slow

PROMPT = "Explain how a relay survives the death of the process that owns a stream."
LENGTH = 400
ANSWER = answer_for(PROMPT, length=LENGTH)
PACED = f"pace=0.01; length={LENGTH}"
"""About 190 tokens in 2 s: long enough to reconnect mid-answer, short enough for a fast test."""
SLOWER = f"pace=0.015; length={LENGTH}"
"""Slow enough that a SIGKILL after 20 deltas lands mid-answer, with a lease of 1 s."""
CHAT = {"messages": [{"role": "user", "content": PROMPT}]}
STREAMCORE = Path(sys.executable).with_name("streamcore")
_URL_LINE = re.compile(r"streamcore serve: http://127\.0\.0\.1:(\d+) ")


# --------------------------------------------------------------------------- processes


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def serving(
    redis_url: str,
    tmp_path: Path,
    count: int,
    *,
    faults: str = PACED,
    lease: float = 1.0,
    extra: tuple[str, ...] = (),
) -> Iterator[list[Serve]]:
    """``count`` serve processes sharing ``redis_url``; each announces its port on line 1."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    started: list[Serve] = []
    try:
        for n in range(count):
            log = tmp_path / f"serve-{n}.log"
            argv = [
                str(STREAMCORE),
                "serve",
                "--port",
                "0",
                "--emulator",
                "--emulator-faults",
                faults,
                "--store",
                redis_url,
                "--lease-ttl",
                str(lease),
                "--node",
                f"relay-{n}",
                "--rate",
                "100",
                *extra,
            ]
            with open(log, "w") as err:
                proc = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env
                )
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the first line says where it listens
            match = _URL_LINE.match(line)
            if match is None:
                proc.kill()
                raise AssertionError(f"serve did not start: {line!r} {log.read_text()}")
            started.append(Serve(proc, int(match[1]), log))
        yield started
    finally:
        for serve in started:
            if serve.proc.poll() is None:
                serve.proc.send_signal(signal.SIGTERM)
        for serve in started:
            try:
                serve.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                serve.proc.kill()
                serve.proc.wait()
            assert "Traceback" not in serve.log.read_text(), serve.log.read_text()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[object]:
    with _redis.running_redis(tmp_path) as server:
        yield server


# --------------------------------------------------------------------------- HTTP client


async def request(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        head = [("host", "127.0.0.1"), ("content-length", str(len(body)))]
        if body:
            head.append(("content-type", "application/json"))
        data = conn.send(h11.Request(method=method, target=target, headers=head)) or b""
        data += (conn.send(h11.Data(data=body)) or b"") if body else b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
        status, out = 0, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                out += event.data
            else:
                return status, bytes(out)


async def create(port: int) -> str:
    status, body = await request(port, "POST", "/v1/streams", json.dumps(CHAT).encode())
    assert status == 201, body
    return str(json.loads(body)["id"])


async def read_events(
    port: int, stream_id: str, *, last_id: int | None = None, stop_after: int | None = None
) -> list[SSEEvent]:
    """One SSE response's events: to the end, or hang up after ``stop_after`` text deltas."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    events: list[SSEEvent] = []
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        head = [("host", "127.0.0.1"), ("accept", "text/event-stream")]
        if last_id is not None:
            head.append(("last-event-id", str(last_id)))
        target = f"/v1/streams/{stream_id}/events"
        await stream.send_all(
            conn.send(h11.Request(method="GET", target=target, headers=head)) or b""
        )
        decoder = SSEDecoder()
        deltas = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200, event
            elif isinstance(event, h11.Data):
                for item in decoder.feed(event.data):
                    if isinstance(item, SSEEvent):
                        events.append(item)
                        deltas += item.event == "text_delta"
                        if deltas == stop_after:
                            return events
            else:
                return events


def text_of(events: list[SSEEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "text_delta")


def ids_of(events: list[SSEEvent]) -> list[int]:
    return [int(e.id) for e in events]


# --------------------------------------------------------------------------- tests


async def test_reconnect_to_another_process_replays_the_missed_events_then_the_tail(
    redis: object, tmp_path: Path
) -> None:
    with serving(redis.url, tmp_path, 2) as (a, b):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            stream_id = await create(a.port)
            first = await read_events(a.port, stream_id, stop_after=15)
            rest = await read_events(b.port, stream_id, last_id=int(first[-1].id))
    assert ids_of(first + rest) == list(range(1, len(first) + len(rest) + 1))
    assert text_of(first + rest) == ANSWER
    assert rest[-1].event == "end"
    assert json.loads(rest[-1].data)["state"] == "completed"


async def test_a_second_process_sees_the_whole_stream_from_the_start(
    redis: object, tmp_path: Path
) -> None:
    with serving(redis.url, tmp_path, 2) as (a, b):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            stream_id = await create(a.port)
            events = await read_events(b.port, stream_id)
    assert events[0].event == "stream_started"
    assert text_of(events) == ANSWER


async def test_owner_keeps_a_stream_watched_only_on_another_process(
    redis: object, tmp_path: Path
) -> None:
    # The answer takes ~3 s, the replay lifetime is 0.5 s: without the "watched" mark the
    # owner would cancel the upstream as unwatched long before the end.
    config = ("--replay-lifetime", "0.5")
    with serving(redis.url, tmp_path, 2, faults=SLOWER, extra=config) as (a, b):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            stream_id = await create(a.port)
            events = await read_events(b.port, stream_id)
    assert "takeover" not in [e.event for e in events]
    assert text_of(events) == ANSWER
    assert json.loads(events[-1].data)["state"] == "completed"


async def test_unknown_stream_on_another_process_is_404(redis: object, tmp_path: Path) -> None:
    with serving(redis.url, tmp_path, 1) as (a,):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            status, body = await request(a.port, "GET", "/v1/streams/nOsUchStream1/events")
    assert status == 404
    assert json.loads(body)["error"]["type"] == "unknown_stream"


async def kill_owner_mid_answer(
    owner: Serve, follower: Serve
) -> tuple[list[SSEEvent], list[SSEEvent]]:
    """Start a stream on ``owner``, read 20 events there, SIGKILL ``owner`` (no goodbye: its
    lease just stops being renewed), then read the rest from ``follower``."""
    stream_id = await create(owner.port)
    first = await read_events(owner.port, stream_id, stop_after=20)
    owner.kill()
    rest = await read_events(follower.port, stream_id, last_id=int(first[-1].id))
    return first, rest


async def test_killed_owner_is_taken_over_and_the_answer_completes_once(
    redis: object, tmp_path: Path
) -> None:
    with serving(redis.url, tmp_path, 2, faults=SLOWER) as (a, b):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            first, rest = await kill_owner_mid_answer(a, b)
    events = first + rest
    assert ids_of(events) == list(range(1, len(events) + 1))
    assert [e.event for e in events].count("takeover") == 1
    assert text_of(events) == ANSWER  # nothing doubled or missing at the seam
    assert events[-1].event == "end"
    assert json.loads(events[-1].data)["state"] == "completed"


async def test_takeover_event_says_who_took_over_and_from_how_much_text(
    redis: object, tmp_path: Path
) -> None:
    with serving(redis.url, tmp_path, 2, faults=SLOWER) as (a, b):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            first, rest = await kill_owner_mid_answer(a, b)
    takeover = json.loads(next(e for e in rest if e.event == "takeover").data)
    before = text_of([e for e in first + rest if int(e.id) < int(takeover_id(rest))])
    assert takeover["node"] == "relay-1"
    assert takeover["partial_chars"] == len(before)


def takeover_id(events: list[SSEEvent]) -> str:
    return next(e.id for e in events if e.event == "takeover")


async def test_only_one_process_takes_over_when_two_follow(redis: object, tmp_path: Path) -> None:
    with serving(redis.url, tmp_path, 3, faults=SLOWER) as (a, b, c):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            stream_id = await create(a.port)
            first = await read_events(a.port, stream_id, stop_after=20)
            a.kill()
            seen: dict[str, list[SSEEvent]] = {}

            async def follow(serve: Serve) -> None:
                seen[serve.log.name] = await read_events(
                    serve.port, stream_id, last_id=int(first[-1].id)
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, b)
                nursery.start_soon(follow, c)
    from_b, from_c = seen[b.log.name], seen[c.log.name]
    assert [(e.id, e.event, e.data) for e in from_b] == [(e.id, e.event, e.data) for e in from_c]
    assert [e.event for e in from_b].count("takeover") == 1
    assert text_of(first + from_b) == ANSWER


async def test_new_stream_while_redis_is_down_is_503_json(redis: object, tmp_path: Path) -> None:
    with serving(redis.url, tmp_path, 1) as (a,):  # type: ignore[attr-defined]
        redis.stop()  # type: ignore[attr-defined]
        with trio.fail_after(30):
            status, body = await request(a.port, "POST", "/v1/streams", json.dumps(CHAT).encode())
            health, _ = await request(a.port, "GET", "/healthz")
        redis.start()  # type: ignore[attr-defined]
        with trio.fail_after(30):
            again = await create(a.port)
    assert status == 503
    assert json.loads(body)["error"]["type"] == "store_unavailable"
    assert health == 200  # nothing crashed
    assert again


async def test_running_stream_survives_a_redis_restart_and_says_it_is_degraded(
    redis: object, tmp_path: Path
) -> None:
    with serving(redis.url, tmp_path, 1, faults=SLOWER) as (a,):  # type: ignore[attr-defined]
        with trio.fail_after(30):
            stream_id = await create(a.port)
            first = await read_events(a.port, stream_id, stop_after=10)
            redis.restart()  # type: ignore[attr-defined]
            rest = await read_events(a.port, stream_id, last_id=int(first[-1].id))
    events = first + rest
    assert ids_of(events) == list(range(1, len(events) + 1))
    assert [e.event for e in events].count("degraded") == 1
    assert text_of(events) == ANSWER
    assert json.loads(events[-1].data)["state"] == "completed"


async def test_client_dropping_and_reconnecting_through_round_robin_nginx_gets_it_once(
    redis: object, tmp_path: Path
) -> None:
    nginx = _nginx
    with ExitStack() as stack:
        serves = stack.enter_context(serving(redis.url, tmp_path, 3))  # type: ignore[attr-defined]
        upstreams = [("127.0.0.1", s.port) for s in serves]
        port = stack.enter_context(nginx.running_nginx(upstreams, tmp_path=tmp_path))
        with trio.fail_after(30):
            stream_id = await create(port)
            events: list[SSEEvent] = []
            while not events or events[-1].event != "end":
                last = int(events[-1].id) if events else None
                events += await read_events(port, stream_id, last_id=last, stop_after=12)
    assert ids_of(events) == list(range(1, len(events) + 1))
    assert text_of(events) == ANSWER
