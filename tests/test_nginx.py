"""`streamcore serve` behind a real nginx running docs/nginx.conf: events are not held back.

Each test starts the emulator and the server in-process (trio, the real clock: nginx is a
real process and cannot follow a mock clock), then nginx on loopback in front of them
(``tests/_nginx.py``; the test skips without nginx). Streaming is shown causally: the
emulator stalls after a few tokens, and the events before the stall must come through nginx
while the upstream answer is still held (the stream's end not yet in the relay). The
negative control runs the same through an nginx that buffers (``proxy_buffering on``,
``X-Accel-Buffering`` ignored, nginx's default HTTP/1.0 upstream): then nothing comes
through until the stall is over.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import wsproto
import wsproto.events as ws
from _http import Headers, request
from _http import open_sse as _open_sse
from _nginx import DOCS_CONF, find_nginx, running_nginx, running_nginx_site

from streamcore.adapters.client import Provider
from streamcore.adapters.emulator import Emulator, answer_for, answer_tokens, open_emulator
from streamcore.adapters.serve import ServeConfig, Server, open_server
from streamcore.sse import SSEEvent

# Checked here too: a skip raised inside the trio nurseries loses its reason.
pytestmark = pytest.mark.skipif(
    find_nginx() is None, reason="nginx is not installed (the Debian package nginx)"
)

PROMPT = "Explain why a reverse proxy can hold back server-sent events."
ANSWER = answer_for(PROMPT)
TOKENS = answer_tokens(PROMPT)
CHAT = {"messages": [{"role": "user", "content": PROMPT}], "model": "streamcore-emulator"}
# No ": ping" during the tests (it would fill nginx's buffer), and no rate limit: behind a
# proxy every request comes from nginx's address.
LOCAL = ServeConfig(port=0, keepalive=300.0, replay_lifetime=30.0, rate=1000.0, burst=1000)
BEFORE_STALL = 3
"""Tokens the emulator sends before it stalls."""
STALL = 1.5
"""The negative control's stall: an unbuffered proxy passes events on well within it."""


TIMEOUT = 10.0
"""Real seconds before a test that hangs fails (rather than at nginx's 75 s read timeout)."""


def stalled(seconds: float) -> str:
    """Emulator faults: the first token waits 0.3 s (so nginx has read the response head
    and the relay's first records long before), then ``BEFORE_STALL`` tokens, then nothing
    for ``seconds``."""
    return f"ttft=0.3; stall={seconds:g}; stall_after={BEFORE_STALL}"


# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def relay(faults: str) -> AsyncIterator[tuple[Server, Emulator]]:
    async with open_emulator(faults=faults) as emu:
        provider = Provider("openai-chat", emu.base_url + "/v1", None, "streamcore-emulator")
        async with open_server(LOCAL, provider=provider) as server:
            yield server, emu


PROXIED: Headers = (("host", "chat.example.com"),)


async def create(port: int) -> str:
    """POST /v1/streams through nginx; the new stream's id."""
    reply = await request(
        "127.0.0.1", port, "POST", "/v1/streams", json.dumps(CHAT).encode(), PROXIED
    )
    assert reply.status == 201, reply.body
    return str(json.loads(reply.body)["id"])


@asynccontextmanager
async def open_sse(
    port: int, stream_id: str, last_id: str | None = None
) -> AsyncIterator[AsyncIterator[SSEEvent]]:
    """GET the stream's events through nginx; yields its SSE events as they arrive."""
    headers = PROXIED if last_id is None else (*PROXIED, ("last-event-id", last_id))
    target = f"/v1/streams/{stream_id}/events"
    async with _open_sse("127.0.0.1", port, target, headers) as (response, items):
        assert response.status_code == 200

        async def events() -> AsyncIterator[SSEEvent]:
            async for item in items:
                if isinstance(item, SSEEvent):
                    yield item

        yield events()


def text_of(events: list[SSEEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "text_delta")


async def read_deltas(port: int, stream_id: str, count: int) -> list[SSEEvent]:
    """The stream's first ``count`` text deltas through nginx, each as soon as it arrives."""
    deltas: list[SSEEvent] = []
    async with open_sse(port, stream_id) as events:
        async for event in events:
            if event.event == "text_delta":
                deltas.append(event)
                if len(deltas) == count:
                    return deltas
    raise AssertionError(f"the stream ended after {len(deltas)} of {count} text deltas")


# --------------------------------------------------------------------------- streaming


async def test_events_come_through_nginx_while_the_answer_is_still_held(tmp_path: Path) -> None:
    async with relay(stalled(3600)) as (server, emu):  # held for the whole test
        with running_nginx([(server.host, server.port)], tmp_path=tmp_path) as port:
            stream_id = await create(port)
            relayed = server.relays[stream_id].buffer
            with trio.fail_after(TIMEOUT):  # a buffering proxy would hold them for the hour
                deltas = await read_deltas(port, stream_id, BEFORE_STALL)
            answer_ended = relayed.closed or emu.requests != ()
    assert text_of(deltas) == "".join(TOKENS[:BEFORE_STALL])
    assert not answer_ended


async def test_buffering_nginx_holds_the_first_event_until_the_stall_ends(
    tmp_path: Path,
) -> None:
    # The negative control: the test above fails through an nginx that buffers. Measured
    # with nginx 1.22: `proxy_buffering on` alone still passes each chunk of an HTTP/1.1
    # upstream response on at once; with nginx's default `proxy_http_version 1.0` the body
    # is read to the close and held until a buffer fills or the response ends.
    site = DOCS_CONF.read_text()
    unbuffered = ("proxy_buffering off;", "proxy_http_version 1.1;               # HTTP/1.1")
    assert [site.count(line) for line in unbuffered] == [1, 1]
    buffering = site.replace(
        unbuffered[0], "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;"
    ).replace(unbuffered[1], "proxy_http_version 1.0;  #")
    async with relay(stalled(STALL)) as (server, _):
        with running_nginx_site(buffering, [(server.host, server.port)], tmp_path=tmp_path) as port:
            stream_id = await create(port)
            relayed = server.relays[stream_id].buffer
            with trio.fail_after(TIMEOUT):
                (first,) = await read_deltas(port, stream_id, 1)
            relayed_when_it_came = relayed.last_id
    # Unbuffered, the first delta comes during the stall, while the relay has nothing past
    # the last token before it; here it came only once the upstream had moved on.
    assert relayed_when_it_came > int(first.id) + BEFORE_STALL - 1


# --------------------------------------------------------------------------- resume, WebSocket


async def test_last_event_id_resume_through_nginx_gives_the_text_exactly_once(
    tmp_path: Path,
) -> None:
    async with relay("pace=0.002") as (server, _):
        with (
            running_nginx([(server.host, server.port)], tmp_path=tmp_path) as port,
            trio.fail_after(TIMEOUT),
        ):
            stream_id = await create(port)
            first: list[SSEEvent] = []
            async with open_sse(port, stream_id) as events:
                async for event in events:
                    first.append(event)
                    if sum(e.event == "text_delta" for e in first) == 25:
                        break  # the browser's connection drops mid-answer
            rest: list[SSEEvent] = []
            async with open_sse(port, stream_id, last_id=first[-1].id) as events:
                async for event in events:
                    rest.append(event)
    ids = [int(e.id) for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert text_of(first + rest) == ANSWER
    assert rest[-1].event == "end"


async def test_websocket_through_nginx_delivers_the_whole_answer(tmp_path: Path) -> None:
    messages: list[dict[str, object]] = []
    close_code = None
    async with relay("pace=0.002") as (server, _):
        with (
            running_nginx([(server.host, server.port)], tmp_path=tmp_path) as port,
            trio.fail_after(TIMEOUT),
        ):
            stream_id = await create(port)
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                target = f"/v1/streams/{stream_id}/ws"
                await stream.send_all(
                    client.send(ws.Request(host="chat.example.com", target=target))
                )
                while close_code is None:
                    data = await stream.receive_some(65536)
                    client.receive_data(data or None)
                    for event in client.events():
                        if isinstance(event, ws.AcceptConnection):
                            hello = json.dumps({"resume_from": 0})
                            await stream.send_all(client.send(ws.TextMessage(data=hello)))
                        elif isinstance(event, ws.TextMessage):
                            messages.append(json.loads(event.data))
                        elif isinstance(event, ws.CloseConnection):
                            close_code = event.code
                            await stream.send_all(client.send(event.response()))
                        elif isinstance(event, ws.RejectConnection):
                            raise AssertionError(f"upgrade refused: {event.status_code}")
                    if not data:
                        break
    assert close_code == 1000
    assert "".join(str(m["text"]) for m in messages if m["type"] == "text_delta") == ANSWER
    assert messages[-1]["type"] == "end"
