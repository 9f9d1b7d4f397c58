"""`streamcore serve`'s WebSocket endpoint over loopback sockets, with wsproto as the client."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import wsproto
import wsproto.events as ws
from trio.testing import MockClock

from streamcore.adapters.client import Provider
from streamcore.adapters.emulator import Emulator, Outcome, answer_for, open_emulator
from streamcore.adapters.serve import ServeConfig, Server, open_server

PROMPT = "Explain WebSocket close codes to a backend engineer."
ANSWER = answer_for(PROMPT)
CHAT = {"messages": [{"role": "user", "content": PROMPT}]}
LOCAL = ServeConfig(port=0, keepalive=15.0, replay_lifetime=5.0)


@asynccontextmanager
async def relay(
    config: ServeConfig = LOCAL, faults: str = "pace=0.01"
) -> AsyncIterator[tuple[Server, Emulator]]:
    async with open_emulator(faults=faults) as emu:
        provider = Provider("openai-chat", emu.base_url + "/v1", None, "streamcore-emulator")
        async with open_server(config, provider=provider) as server:
            yield server, emu


async def create(server: Server, token: str | None = None) -> str:
    body = json.dumps(CHAT).encode()
    auth = b"" if token is None else b"authorization: Bearer %s\r\n" % token.encode()
    async with await trio.open_tcp_stream(server.host, server.port) as stream:
        await stream.send_all(
            b"POST /v1/streams HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            + auth
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201"), data
    return str(json.loads(payload)["id"])


@dataclasses.dataclass
class Session:
    """What a WebSocket client saw: messages, pings, and the close code."""

    messages: list[dict[str, object]] = dataclasses.field(default_factory=list)
    pings: int = 0
    close_code: int | None = None


async def run_ws(
    server: Server,
    target: str,
    *,
    hello: object = None,
    stop_after: int | None = None,
    answer_pings: bool = True,
) -> Session:
    """Open ``target`` as a WebSocket, send ``hello`` first, read until closed or
    ``stop_after`` text deltas (then drop the TCP connection without a close frame)."""
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    seen = Session()
    deltas = 0
    async with await trio.open_tcp_stream(server.host, server.port) as stream:
        await stream.send_all(client.send(ws.Request(host="127.0.0.1", target=target)))
        while True:
            data = await stream.receive_some(65536)
            client.receive_data(data or None)
            for event in client.events():
                if isinstance(event, ws.AcceptConnection) and hello is not None:
                    await stream.send_all(client.send(ws.TextMessage(data=json.dumps(hello))))
                elif isinstance(event, ws.RejectConnection):
                    seen.close_code = -event.status_code
                    return seen
                elif isinstance(event, ws.TextMessage):
                    message = json.loads(event.data)
                    seen.messages.append(message)
                    deltas += message["type"] == "text_delta"
                    if stop_after is not None and deltas == stop_after:
                        return seen
                elif isinstance(event, ws.Ping):
                    seen.pings += 1
                    if answer_pings:
                        await stream.send_all(client.send(event.response()))
                elif isinstance(event, ws.CloseConnection):
                    seen.close_code = event.code
                    await stream.send_all(client.send(event.response()))
                    return seen
            if not data:
                return seen


def text_of(messages: list[dict[str, object]]) -> str:
    return "".join(str(m["text"]) for m in messages if m["type"] == "text_delta")


async def test_ws_relays_the_whole_answer_then_closes_1000(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        seen = await run_ws(server, f"/v1/streams/{stream_id}/ws", hello={"resume_from": 0})
    assert seen.close_code == 1000
    assert text_of(seen.messages) == ANSWER
    assert seen.messages[-1] == {
        "id": len(seen.messages),
        "type": "end",
        "state": "completed",
        "text_chars": len(ANSWER),
    }


async def test_ws_messages_carry_consecutive_ids_and_core_payloads(
    autojump_clock: MockClock,
) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        seen = await run_ws(server, f"/v1/streams/{stream_id}/ws", hello={"resume_from": 0})
    assert [m["id"] for m in seen.messages] == list(range(1, len(seen.messages) + 1))
    assert seen.messages[1] == {"id": 2, "type": "text_delta", "text": "##", "choice": 0}


async def test_ws_without_hello_starts_from_the_beginning(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        seen = await run_ws(server, f"/v1/streams/{stream_id}/ws")
    assert seen.messages[0]["id"] == 1
    assert text_of(seen.messages) == ANSWER


async def test_ws_resume_from_gives_full_text_exactly_once(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        target = f"/v1/streams/{stream_id}/ws"
        first = await run_ws(server, target, hello={"resume_from": 0}, stop_after=30)
        last = first.messages[-1]["id"]
        rest = await run_ws(server, target, hello={"resume_from": last})
    ids = [m["id"] for m in first.messages + rest.messages]
    assert ids == list(range(1, len(ids) + 1))
    assert text_of(first.messages + rest.messages) == ANSWER
    assert rest.close_code == 1000


async def test_ws_resume_by_query_parameter(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        first = await run_ws(server, f"/v1/streams/{stream_id}/ws", stop_after=10)
        last = first.messages[-1]["id"]
        rest = await run_ws(server, f"/v1/streams/{stream_id}/ws?last_event_id={last}")
    assert rest.messages[0]["id"] == last + 1  # type: ignore[operator]
    assert text_of(first.messages + rest.messages) == ANSWER


async def test_ws_unknown_stream_closes_4404(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        seen = await run_ws(server, "/v1/streams/nope/ws", hello={"resume_from": 0})
    assert seen.close_code == 4404


async def test_ws_bad_token_closes_1008(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, token="s3cret-relay-token")
    async with relay(config) as (server, _):
        stream_id = await create(server, token="s3cret-relay-token")
        denied = await run_ws(server, f"/v1/streams/{stream_id}/ws?access_token=guess")
        allowed = await run_ws(
            server, f"/v1/streams/{stream_id}/ws?access_token=s3cret-relay-token"
        )
    assert denied.close_code == 1008
    assert allowed.close_code == 1000


async def test_ws_idle_stream_gets_pings(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, keepalive=1.0)
    async with relay(config, faults="ttft=3.5") as (server, _):
        stream_id = await create(server)
        seen = await run_ws(server, f"/v1/streams/{stream_id}/ws", hello={"resume_from": 0})
    assert seen.pings >= 2
    assert text_of(seen.messages) == ANSWER


async def test_ws_disconnect_cancels_upstream_without_resume(autojump_clock: MockClock) -> None:
    config = dataclasses.replace(LOCAL, resume=False)
    async with relay(config, faults="pace=0.05") as (server, emu):
        stream_id = await create(server)
        await run_ws(server, f"/v1/streams/{stream_id}/ws", hello={"resume_from": 0}, stop_after=10)
        left = trio.current_time()
        (served,) = await emu.wait_for_requests(1)
    assert served.outcome is Outcome.CLIENT_DISCONNECTED
    assert served.finished_at - left < 1.0
    assert served.tokens_sent < 100


async def test_ws_bad_hello_closes_with_policy_violation(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        seen = await run_ws(server, f"/v1/streams/{stream_id}/ws", hello={"resume_from": "x"})
    assert seen.close_code == 1008
    assert seen.messages == []


async def test_plain_get_on_the_ws_endpoint_is_400_json(autojump_clock: MockClock) -> None:
    async with relay() as (server, _):
        stream_id = await create(server)
        async with await trio.open_tcp_stream(server.host, server.port) as stream:
            await stream.send_all(
                f"GET /v1/streams/{stream_id}/ws HTTP/1.1\r\nhost: x\r\n\r\n".encode()
            )
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["error"]["type"] == "upgrade_required"
