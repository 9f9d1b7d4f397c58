"""`streamcore serve` over loopback sockets: SSE framing, resume, cancellation, limits, auth."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import h11
import pytest
import trio
from _http import Headers, Reply, request
from _http import open_sse as _open_sse
from trio.testing import MockClock

from streamcore._errors import LocalProtocolError
from streamcore.adapters.client import Provider
from streamcore.adapters.emulator import Emulator, Outcome, answer_for, open_emulator
from streamcore.adapters.recover import Interrupted, ResumeMode, Resuming, Retrying
from streamcore.adapters.serve import (
    STATIC_DIR,
    RateLimiter,
    ReplayBuffer,
    ServeConfig,
    Server,
    open_server,
    record_for,
)
from streamcore.cli import serve as serve_cmd
from streamcore.machine import State
from streamcore.sse import SSEComment, SSEEvent

PROMPT = "Explain server-sent events and why proxies buffer them."
ANSWER = answer_for(PROMPT)
CHAT = {"messages": [{"role": "user", "content": PROMPT}], "model": "streamcore-emulator"}
LOCAL = ServeConfig(port=0, keepalive=15.0, replay_lifetime=5.0)


# --------------------------------------------------------------------------- helpers


LOOPBACK: Headers = (("host", "127.0.0.1"),)


async def call(
    server: Server,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: Headers = (),
) -> Reply:
    """One request on its own connection; the whole response."""
    return await request(server.host, server.port, method, target, body, (*LOOPBACK, *headers))


async def create(server: Server, chat: object = CHAT, headers: Headers = ()) -> str:
    reply = await call(server, "POST", "/v1/streams", json.dumps(chat).encode(), headers)
    assert reply.status == 201, reply.body
    doc = reply.json()
    assert isinstance(doc, dict)
    return str(doc["id"])


def open_sse(
    server: Server, target: str, headers: Headers = ()
) -> AbstractAsyncContextManager[tuple[h11.Response, AsyncIterator[SSEEvent | SSEComment]]]:
    """GET an SSE endpoint; yields the response head and the decoded items as they arrive."""
    return _open_sse(server.host, server.port, target, (*LOOPBACK, *headers))


async def read_events(
    server: Server, stream_id: str, *, last_id: int | None = None, stop_after: int | None = None
) -> list[SSEEvent]:
    """The events of one SSE response (to ``end``, or ``stop_after`` text deltas, then hang up)."""
    headers = () if last_id is None else (("last-event-id", str(last_id)),)
    events: list[SSEEvent] = []
    deltas = 0
    async with open_sse(server, f"/v1/streams/{stream_id}/events", headers) as (response, items):
        assert response.status_code == 200
        async for item in items:
            if isinstance(item, SSEEvent):
                events.append(item)
                deltas += item.event == "text_delta"
                if stop_after is not None and deltas == stop_after:
                    break
    return events


def text_of(events: list[SSEEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "text_delta")


def emulated(emu: Emulator) -> Provider:
    return Provider("openai-chat", emu.base_url + "/v1", None, "streamcore-emulator")


@asynccontextmanager
async def relay(
    config: ServeConfig = LOCAL, faults: str = "pace=0.01"
) -> AsyncIterator[tuple[Server, Emulator]]:
    async with (
        open_emulator(faults=faults) as emu,
        open_server(config, provider=emulated(emu)) as server,
    ):
        yield server, emu


# --------------------------------------------------------------------------- SSE


async def test_healthz_answers_ok(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "GET", "/healthz")
    assert (reply.status, reply.json()) == (200, {"ok": True})


async def test_create_returns_201_with_event_and_websocket_urls(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "POST", "/v1/streams", json.dumps(CHAT).encode())
    doc = reply.json()
    assert reply.status == 201
    assert isinstance(doc, dict)
    assert doc["events"] == f"/v1/streams/{doc['id']}/events"
    assert doc["ws"] == f"/v1/streams/{doc['id']}/ws"


async def test_sse_response_has_streaming_headers(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        async with open_sse(server, f"/v1/streams/{stream_id}/events") as (response, _items):
            headers = {k.decode(): v.decode() for k, v in response.headers}
    assert response.status_code == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"


async def test_sse_events_are_numbered_from_one_and_end_with_end(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        events = await read_events(server, await create(server))
    assert [e.id for e in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[0].event == "stream_started"
    assert events[-1].event == "end"
    assert json.loads(events[-1].data) == {"state": "completed", "text_chars": len(ANSWER)}


async def test_resumed_response_also_starts_with_retry(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        await read_events(server, stream_id)
        reply = await call(
            server, "GET", f"/v1/streams/{stream_id}/events", headers=(("last-event-id", "3"),)
        )
    first = reply.body.split(b"\n\n")[0]
    assert b"id: 4\n" in first
    assert b"retry: 3000\n" in first


async def test_retry_field_is_on_the_first_event_only(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        reply = await call(server, "GET", f"/v1/streams/{stream_id}/events")
    blocks = reply.body.split(b"\n\n")
    assert b"\nretry: 3000\n" in blocks[0] + b"\n"
    assert all(b"retry:" not in block for block in blocks[1:])


async def test_sse_text_is_the_emulator_answer(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        events = await read_events(server, await create(server))
    assert text_of(events) == ANSWER


async def test_data_is_event_to_dict_json_on_one_line(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        events = await read_events(server, await create(server))
    delta = next(e for e in events if e.event == "text_delta")
    assert "\n" not in delta.data
    assert json.loads(delta.data) == {"type": "text_delta", "text": "##", "choice": 0}


async def test_last_event_id_resume_gives_full_text_exactly_once(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        first = await read_events(server, stream_id, stop_after=40)
        rest = await read_events(server, stream_id, last_id=int(first[-1].id))
    ids = [int(e.id) for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))  # no id twice, none missing
    assert text_of(first + rest) == ANSWER
    assert rest[-1].event == "end"


async def test_last_event_id_query_parameter_resumes(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        first = await read_events(server, stream_id, stop_after=10)
        target = f"/v1/streams/{stream_id}/events?last_event_id={first[-1].id}"
        async with open_sse(server, target) as (_, items):
            nxt = await items.__anext__()
    assert isinstance(nxt, SSEEvent)
    assert int(nxt.id) == int(first[-1].id) + 1


async def test_resume_after_the_end_replays_the_tail(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        whole = await read_events(server, stream_id)
        tail = await read_events(server, stream_id, last_id=len(whole) - 2)
    assert [e.id for e in tail] == [whole[-2].id, whole[-1].id]


async def test_idle_stream_gets_ping_comments(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, keepalive=1.0)
    async with relay(config, faults="ttft=3.5") as (server, _):
        stream_id = await create(server)
        seen: list[SSEEvent | SSEComment] = []
        async with open_sse(server, f"/v1/streams/{stream_id}/events") as (_, items):
            async for item in items:
                seen.append(item)
                if isinstance(item, SSEEvent) and item.event == "text_delta":
                    break
    pings = [item for item in seen if isinstance(item, SSEComment)]
    assert pings and all(p.text == "ping" for p in pings)


async def test_bad_last_event_id_is_400(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        reply = await call(
            server, "GET", f"/v1/streams/{stream_id}/events", headers=(("last-event-id", "abc"),)
        )
    assert reply.status == 400
    assert reply.json() == {
        "error": {"type": "bad_event_id", "message": reply.json()["error"]["message"]}
    }  # type: ignore[index]


# --------------------------------------------------------------------------- cancellation


async def test_disconnect_cancels_upstream_at_once_without_resume(
    autojump_clock: MockClock,
) -> None:
    config = dataclasses.replace(LOCAL, resume=False)
    async with relay(config, faults="pace=0.05") as (server, emu):
        stream_id = await create(server)
        await read_events(server, stream_id, stop_after=20)
        left = trio.current_time()
        (served,) = await emu.wait_for_requests(1)
    assert served.outcome is Outcome.CLIENT_DISCONNECTED
    assert served.tokens_sent < 100
    assert served.finished_at - left < 1.0


async def test_disconnect_with_resume_cancels_after_replay_lifetime(
    autojump_clock: MockClock,
) -> None:
    config = dataclasses.replace(LOCAL, replay_lifetime=3.0)
    async with relay(config, faults="pace=0.1") as (server, emu):
        stream_id = await create(server)
        await read_events(server, stream_id, stop_after=5)
        left = trio.current_time()
        (served,) = await emu.wait_for_requests(1)
    assert served.outcome is Outcome.CLIENT_DISCONNECTED
    assert 3.0 <= served.finished_at - left < 4.0
    assert served.tokens_sent < len(ANSWER)


async def test_stream_nobody_reads_is_cancelled_after_replay_lifetime(
    autojump_clock: MockClock,
) -> None:
    config = dataclasses.replace(LOCAL, replay_lifetime=2.0)
    async with relay(config, faults="pace=0.1") as (server, emu):
        stream_id = await create(server)
        (served,) = await emu.wait_for_requests(1)
        reply = await call(server, "GET", f"/v1/streams/{stream_id}/events")
    assert served.outcome is Outcome.CLIENT_DISCONNECTED
    assert reply.status == 410


async def test_reconnect_within_replay_lifetime_keeps_upstream(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, replay_lifetime=3.0)
    async with relay(config, faults="pace=0.1") as (server, emu):
        stream_id = await create(server)
        first = await read_events(server, stream_id, stop_after=5)
        await trio.sleep(2.0)
        rest = await read_events(server, stream_id, last_id=int(first[-1].id))
        (served,) = await emu.wait_for_requests(1)
    assert served.outcome is Outcome.COMPLETED
    assert text_of(first + rest) == ANSWER


# --------------------------------------------------------------------------- errors and limits


async def test_unknown_stream_is_404_json(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "GET", "/v1/streams/no-such-stream/events")
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["type"] == "unknown_stream"  # type: ignore[index]


async def test_expired_stream_is_410(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, replay_lifetime=1.0)
    async with relay(config) as (server, _):
        stream_id = await create(server)
        await read_events(server, stream_id)
        await trio.sleep(2.0)
        reply = await call(server, "GET", f"/v1/streams/{stream_id}/events")
    assert reply.status == 410
    assert reply.json()["error"]["type"] == "stream_expired"  # type: ignore[index]


async def test_resume_from_events_dropped_by_the_bound_is_410(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, replay_max_events=50)
    async with relay(config) as (server, _):
        stream_id = await create(server)
        await read_events(server, stream_id)
        reply = await call(
            server, "GET", f"/v1/streams/{stream_id}/events", headers=(("last-event-id", "2"),)
        )
    assert reply.status == 410
    assert reply.json()["error"]["type"] == "replay_expired"  # type: ignore[index]


async def test_bad_json_is_400_json_not_a_traceback(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "POST", "/v1/streams", b'{"messages": [')
    assert reply.status == 400
    assert reply.json() == {
        "error": {"type": "invalid_json", "message": "request body is not valid JSON"}
    }
    assert b"Traceback" not in reply.body


@pytest.mark.parametrize(
    "chat",
    [
        [],
        {"messages": []},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": [{"role": "user", "content": 42}]},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "hi"}], "model": 7},
    ],
)
async def test_invalid_chat_request_is_400(autojump_clock: MockClock, chat: object) -> None:
    async with relay() as (server, _):
        reply = await call(server, "POST", "/v1/streams", json.dumps(chat).encode())
    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request"  # type: ignore[index]


async def test_body_over_the_limit_is_413(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, max_body_bytes=1024)
    big = {"messages": [{"role": "user", "content": "x" * 2000}]}
    async with relay(config) as (server, _):
        reply = await call(server, "POST", "/v1/streams", json.dumps(big).encode())
    assert reply.status == 413
    assert reply.json()["error"]["type"] == "body_too_large"  # type: ignore[index]


async def test_head_over_the_limit_is_431(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, max_header_bytes=2048)
    async with relay(config) as (server, _):
        reply = await call(server, "GET", "/healthz", headers=(("cookie", "a" * 4096),))
    assert reply.status == 431
    assert reply.json()["error"]["type"] == "headers_too_large"  # type: ignore[index]


async def test_stream_creation_over_the_rate_is_429(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, rate=0.5, burst=2)
    async with relay(config) as (server, _):
        await create(server)
        await create(server)
        reply = await call(server, "POST", "/v1/streams", json.dumps(CHAT).encode())
    assert reply.status == 429
    assert reply.headers["retry-after"] == "2"


async def test_streams_over_the_cap_get_503(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, max_streams=1)
    async with relay(config, faults="pace=1") as (server, _):
        await create(server)
        reply = await call(server, "POST", "/v1/streams", json.dumps(CHAT).encode())
    assert reply.status == 503
    assert reply.json()["error"]["type"] == "too_many_streams"  # type: ignore[index]


async def test_wrong_method_is_405(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "GET", "/v1/streams")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"


async def test_unknown_path_is_404_json(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "GET", "/v1/chat/completions")
    assert reply.status == 404
    assert reply.json()["error"]["type"] == "not_found"  # type: ignore[index]


async def test_root_serves_the_demo_page(autojump_clock: MockClock) -> None:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        pytest.skip("the demo page is not in adapters/serve/static yet")
    async with relay() as (server, _):
        reply = await call(server, "GET", "/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.body == page.read_bytes()


async def test_missing_static_file_is_404_json(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "GET", "/static/no-such-file.js")
    assert reply.status == 404
    assert reply.json()["error"]["type"] == "not_found"  # type: ignore[index]


async def test_static_path_outside_the_folder_is_404(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        reply = await call(server, "GET", "/static/..%2Fserver.py")
    assert reply.status == 404


# --------------------------------------------------------------------------- token


async def test_binding_beyond_loopback_without_token_refuses_to_start() -> None:
    with pytest.raises(LocalProtocolError) as info:
        async with open_server(dataclasses.replace(LOCAL, host="0.0.0.0")):
            pass
    assert info.value.kind == "token_required"


async def test_missing_token_is_401(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, token="s3cret-relay-token")
    async with relay(config) as (server, _):
        reply = await call(server, "POST", "/v1/streams", json.dumps(CHAT).encode())
    assert reply.status == 401
    assert b"s3cret" not in reply.body


async def test_wrong_token_is_401(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, token="s3cret-relay-token")
    async with relay(config) as (server, _):
        reply = await call(
            server,
            "POST",
            "/v1/streams",
            json.dumps(CHAT).encode(),
            (("authorization", "Bearer guess"),),
        )
    assert reply.status == 401


async def test_right_token_opens_and_reads_a_stream(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, token="s3cret-relay-token")
    auth = (("authorization", "Bearer s3cret-relay-token"),)
    async with relay(config) as (server, _):
        stream_id = await create(server, headers=auth)
        unauthorized = await call(server, "GET", f"/v1/streams/{stream_id}/events")
        reply = await call(
            server, "GET", f"/v1/streams/{stream_id}/events?access_token=s3cret-relay-token"
        )
    assert unauthorized.status == 401
    assert reply.status == 200


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cmd.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_cli_refuses_to_bind_beyond_loopback_without_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(serve_cmd.TOKEN_ENV, raising=False)
    assert serve_cmd.run(_serve_args("--host", "0.0.0.0", "--port", "0", "--emulator")) == 2
    assert "without a bearer token" in capsys.readouterr().err


def test_cli_takes_the_token_from_the_environment() -> None:
    config = serve_cmd.config_from(_serve_args("--host", "0.0.0.0"), {serve_cmd.TOKEN_ENV: "t0k"})
    assert config.token == "t0k"


async def test_default_upstream_is_the_builtin_emulator(autojump_clock: MockClock) -> None:
    async with open_server(LOCAL) as server:
        events = await read_events(server, await create(server))
    assert text_of(events) == ANSWER


def test_token_never_appears_in_the_config_repr() -> None:
    assert "s3cret" not in repr(ServeConfig(token="s3cret-relay-token"))


# --------------------------------------------------------------------------- sans-IO parts


def test_replay_buffer_gives_records_after_an_id() -> None:
    buf = ReplayBuffer()
    for text in ("The", " capital", " is"):
        buf.append("text_delta", json.dumps({"type": "text_delta", "text": text}))
    assert [r.id for r in buf.since(1)] == [2, 3]
    assert buf.since(3) == []


def test_replay_buffer_drops_oldest_past_the_count_bound() -> None:
    buf = ReplayBuffer(max_events=2)
    for n in range(4):
        buf.append("text_delta", f'{{"n":{n}}}')
    assert [r.id for r in buf.since(2)] == [3, 4]
    with pytest.raises(LocalProtocolError) as info:
        buf.since(1)
    assert info.value.kind == "replay_expired"


def test_replay_buffer_drops_oldest_past_the_byte_bound() -> None:
    buf = ReplayBuffer(max_bytes=25)
    for _ in range(3):
        buf.append("text_delta", '{"text":"0123456789"}')  # 21 bytes
    assert buf.first_id == 3


def test_replay_buffer_refuses_an_id_never_sent() -> None:
    buf = ReplayBuffer()
    buf.append("stream_started", "{}")
    with pytest.raises(LocalProtocolError) as info:
        buf.since(5)
    assert info.value.kind == "unknown_event_id"


def test_replay_buffer_refuses_events_after_the_end() -> None:
    buf = ReplayBuffer()
    buf.close("end", '{"state":"completed","text_chars":0}')
    with pytest.raises(LocalProtocolError) as info:
        buf.append("text_delta", "{}")
    assert info.value.kind == "buffer_closed"


def test_expired_replay_buffer_refuses_every_resume() -> None:
    buf = ReplayBuffer()
    buf.append("text_delta", "{}")
    buf.expire()
    with pytest.raises(LocalProtocolError) as info:
        buf.since(0)
    assert info.value.kind == "replay_expired"


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(rate=2.0, burst=1)
    assert limiter.take("198.51.100.4", now=10.0) == 0.0
    assert limiter.take("198.51.100.4", now=10.0) == 0.5
    assert limiter.take("198.51.100.4", now=10.5) == 0.0


def test_rate_limiter_keeps_clients_apart() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    limiter.take("198.51.100.4", now=0.0)
    assert limiter.take("198.51.100.5", now=0.0) == 0.0


def test_rate_limiter_table_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=2)
    for client in ("a", "b", "c"):
        limiter.take(client, now=0.0)
    assert limiter.take("a", now=0.0) == 0.0  # forgotten, so it starts full


def test_recovery_events_become_small_dicts() -> None:
    assert record_for(Retrying(2, 0.5, "HTTP 503", State.HTTP_ERROR)) == (
        "retrying",
        {
            "type": "retrying",
            "attempt": 2,
            "delay": 0.5,
            "reason": "HTTP 503",
            "discarded_chars": 0,
        },
    )
    kind, payload = record_for(
        Resuming(2, 0.0, "connection dropped", State.INTERRUPTED, ResumeMode.CONTINUE, 120)
    ) or ("", {})
    assert (kind, payload["mode"], payload["partial_chars"]) == ("resuming", "continue", 120)
    cut = Interrupted(State.INTERRUPTED, "dropped", "[answer interrupted: dropped]", True)
    assert record_for(cut) == (
        "interrupted",
        {
            "type": "interrupted",
            "state": "interrupted",
            "reason": "dropped",
            "marker": "[answer interrupted: dropped]",
            "partial": True,
        },
    )
