"""A small HTTP/1.1 client over h11 for the relay tests: one request per connection.

Tests talk to ``streamcore serve`` the way a browser or curl does, byte for byte, so that
what they check is the server's wire behaviour, not streamcore's own client. Used by
tests/test_serve.py (straight to the server), tests/test_nginx.py (through nginx) and
bench/serve_load.py (which puts tests/ on its path).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio

from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

Headers = tuple[tuple[str, str], ...]


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def request_bytes(
    conn: h11.Connection, method: str, target: str, body: bytes | None, headers: Headers
) -> bytes:
    """A whole request's bytes (``headers`` include ``host``; a body is sent as JSON)."""
    head = list(headers)
    if body is not None:
        head += [("content-type", "application/json"), ("content-length", str(len(body)))]
    data = conn.send(h11.Request(method=method, target=target, headers=head)) or b""
    if body is not None:
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
    return data


async def read_head(stream: trio.SocketStream, conn: h11.Connection) -> h11.Response:
    """The response head; anything else first (an informational response...) fails the test."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            return event
        else:
            raise AssertionError(f"expected a response head, got {event!r}")


async def body_chunks(stream: trio.SocketStream, conn: h11.Connection) -> AsyncIterator[bytes]:
    """The response body's chunks as they arrive, to its end (or the connection's)."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Data):
            yield bytes(event.data)
        else:
            return


async def request(
    host: str, port: int, method: str, target: str, body: bytes | None, headers: Headers
) -> Reply:
    """Send one request (``headers`` include ``host``; a body is sent as JSON); the whole reply."""
    async with await trio.open_tcp_stream(host, port) as stream:
        conn = h11.Connection(h11.CLIENT)
        await stream.send_all(request_bytes(conn, method, target, body, headers))
        response = await read_head(stream, conn)
        out = b"".join([chunk async for chunk in body_chunks(stream, conn)])
        names = {k.decode(): v.decode() for k, v in response.headers}
        return Reply(response.status_code, names, out)


@asynccontextmanager
async def open_sse(
    host: str, port: int, target: str, headers: Headers
) -> AsyncIterator[tuple[h11.Response, AsyncIterator[SSEEvent | SSEComment]]]:
    """GET an SSE endpoint; yields the response head and the decoded items as they arrive."""
    async with await trio.open_tcp_stream(host, port) as stream:
        conn = h11.Connection(h11.CLIENT)
        head = (("accept", "text/event-stream"), *headers)
        await stream.send_all(request_bytes(conn, "GET", target, None, head))
        response = await read_head(stream, conn)

        async def items() -> AsyncIterator[SSEEvent | SSEComment]:
            decoder = SSEDecoder()
            async for chunk in body_chunks(stream, conn):
                for item in decoder.feed(chunk):
                    yield item

        yield response, items()
