"""The trio + h11 HTTP client, against small trio + h11 servers on real loopback sockets.

Each test starts its own server (:func:`serve`) whose handler plays one part
of the wire: a provider streaming SSE, a server timing out an idle connection,
a proxy. Servers count accepted connections and report when the client hung
up, so connection reuse and prompt closing are observed, not assumed. No test
sleeps: waits are on trio events, and time-dependent tests run on MockClock.
"""

from __future__ import annotations

import doctest
import gzip
import json
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
import trio
import trio.testing

import streamcore.adapters.errors as errors_module
import streamcore.adapters.http as http_module
from streamcore import LocalProtocolError
from streamcore.adapters.errors import (
    AuthenticationError,
    BodyTooLarge,
    ClientError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    Overloaded,
    ProxyError,
    RateLimited,
    ReadError,
    ResponseError,
    ServerError,
    TLSError,
    parse_error_body,
    redact,
    status_error,
)
from streamcore.adapters.http import (
    DECOMPRESS_STEP,
    DEFAULT_IDLE_EXPIRY,
    HTTPClient,
    parse_origin,
    parse_proxy,
    proxy_from_env,
)
from streamcore.providers import anthropic, decoder_for
from streamcore.request import ChatRequest, HTTPRequest, Message

TRANSCRIPTS = Path(__file__).parent / "transcripts"
OPENAI_KEY = "sk-proj-4fJ8kQ2mZx9vR7tY1wB3nP6sD0aL5hG8cE2uI7oKq"
ANTHROPIC_KEY = "sk-ant-api03-Zq8Lm3Xv7Rt2Yw9Kp4Hn6Bd1Fs5Gj0Ce8Ua3Io7Pl2Mk4"
SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]


def openai_chunk(content: str | None, finish: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` SSE event, as api.openai.com sends it."""
    delta: dict[str, object] = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-AqF8nWZ9yR3kLmX2pQ7vT1sB4cD",
        "object": "chat.completion.chunk",
        "created": 1737052800,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_72ed7ab54c",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


OPENAI_EVENTS = [
    openai_chunk(""),
    openai_chunk("The capital"),
    openai_chunk(" of France is"),
    openai_chunk(" Paris."),
    openai_chunk(None, "stop"),
    b"data: [DONE]\n\n",
]
OPENAI_BODY = b"".join(OPENAI_EVENTS)


def chat_request(key: str = OPENAI_KEY, body: bytes | None = None) -> HTTPRequest:
    """A streaming OpenAI chat completions request carrying ``key``."""
    if body is None:
        body = json.dumps(
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "stream": True,
            }
        ).encode()
    return HTTPRequest(
        "POST",
        "/v1/chat/completions",
        (
            ("Authorization", f"Bearer {key}"),
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream"),
        ),
        body,
    )


# --- Loopback servers -------------------------------------------------------------------


@dataclass
class Seen:
    """A request as a test server received it."""

    connection: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class Peer:
    """One accepted connection, from the server's side: h11 framing plus raw access."""

    def __init__(self, stream: trio.abc.Stream, index: int, server: Server) -> None:
        self.stream = stream
        self.index = index
        self.server = server
        self.h11 = h11.Connection(h11.SERVER)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.h11.receive_data(bytes(data))
        return bool(data)

    async def request(self) -> Seen | None:
        """The next request on this connection, or ``None`` once the client closed it."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if not await self._fill() and head is None:
                    self.server.note_close()
                    return None
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                seen = Seen(
                    self.index,
                    head.method.decode(),
                    head.target.decode(),
                    {k.decode(): v.decode() for k, v in head.headers},
                    bytes(body),
                )
                self.server.note_request(seen)
                return seen
            else:
                self.server.note_close()
                return None

    async def send_head(self, status: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.write(self.h11.send(h11.Response(status_code=status, headers=list(headers))))

    async def send_chunk(self, data: bytes) -> None:
        await self.write(self.h11.send(h11.Data(data=data)))

    async def finish(self) -> None:
        await self.write(self.h11.send(h11.EndOfMessage()))

    async def respond(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        """A whole response with a Content-Length body."""
        await self.send_head(status, [*headers, ("content-length", str(len(body)))])
        if body:
            await self.send_chunk(body)
        await self.finish()

    async def write(self, data: bytes | None) -> None:
        if data:
            await self.stream.send_all(data)

    async def wait_for_close(self) -> None:
        """Read (and drop) whatever comes until the client closes the connection."""
        while await self._fill():
            pass
        self.server.note_close()

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)


@dataclass
class Server:
    """A loopback server: where it listens and what it saw."""

    port: int
    scheme: str = "http"
    accepted: int = 0
    closes: int = 0
    requests: list[Seen] = field(default_factory=list)
    _lot: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def note_request(self, seen: Seen) -> None:
        self.requests.append(seen)
        self._lot.unpark_all()

    def note_close(self) -> None:
        self.closes += 1
        self._lot.unpark_all()

    async def wait_for_closes(self, count: int) -> None:
        """Until the server has seen ``count`` connections closed by the client (5 s bound)."""
        with trio.fail_after(5):
            while self.closes < count:
                await self._lot.park()


Handler = Callable[[Peer], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """Run ``handler`` for every connection accepted on 127.0.0.1 (an ephemeral port)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    server = Server(listeners[0].socket.getsockname()[1], "https" if tls else "http")

    async def on_connection(tcp: trio.SocketStream) -> None:
        index = server.accepted
        server.accepted += 1
        stream: trio.abc.Stream = tcp
        if tls is not None:
            stream = trio.SSLStream(tcp, tls, server_side=True)
        try:
            await handler(Peer(stream, index, server))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; tests that care wait for it explicitly
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, on_connection, listeners)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def keep_alive(answer: Callable[[Peer, Seen], Awaitable[None]]) -> Handler:
    """A handler answering every request on the connection with ``answer``."""

    async def handler(peer: Peer) -> None:
        while (seen := await peer.request()) is not None:
            await answer(peer, seen)

    return handler


def respond_with(
    status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> Handler:
    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.respond(status, headers, body)

    return keep_alive(answer)


async def stream_openai_chunked(peer: Peer, seen: Seen) -> None:
    await peer.send_head(200, SSE_HEADERS)
    for event in OPENAI_EVENTS:
        await peer.send_chunk(event)
    await peer.finish()


async def fetch(client: HTTPClient, url: str, request: HTTPRequest | None = None) -> bytes:
    async with client.stream(url, request or chat_request()) as response:
        return await response.read()


# --- The happy path ---------------------------------------------------------------------


async def test_content_length_body_is_read_whole() -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server,
        HTTPClient() as client,
        client.stream(server.url, chat_request()) as response,
    ):
        assert (response.status, response.reason) == (200, "")
        assert response.header("Content-Type") == "text/event-stream; charset=utf-8"
        assert await response.read() == OPENAI_BODY
        assert response.complete


async def test_chunked_body_is_read_whole_through_aiter_bytes() -> None:
    transcript = (TRANSCRIPTS / "anthropic" / "text_emoji_cjk.txt").read_bytes()

    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.send_head(200, SSE_HEADERS)
        for start in range(0, len(transcript), 37):  # cuts through UTF-8 sequences
            await peer.send_chunk(transcript[start : start + 37])
        await peer.finish()

    async with (
        serve(keep_alive(answer)) as server,
        HTTPClient() as client,
        client.stream(server.url, chat_request()) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_bytes()]
    assert b"".join(chunks) == transcript
    assert all(chunks)


async def test_each_chunk_reaches_the_caller_before_the_server_sends_the_next() -> None:
    release = trio.Event()

    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.send_head(200, SSE_HEADERS)
        await peer.send_chunk(OPENAI_EVENTS[1])
        await release.wait()  # the rest waits until the client has seen the first event
        for event in OPENAI_EVENTS[2:]:
            await peer.send_chunk(event)
        await peer.finish()

    async with (
        serve(keep_alive(answer)) as server,
        HTTPClient() as client,
        client.stream(server.url, chat_request()) as response,
    ):
        with trio.fail_after(5):
            chunks = response.aiter_bytes()
            assert await chunks.__anext__() == OPENAI_EVENTS[1]  # the server is still waiting
            release.set()
            rest = [chunk async for chunk in chunks]
    assert b"".join(rest) == b"".join(OPENAI_EVENTS[2:])


async def test_request_head_carries_host_length_agent_and_identity_encoding() -> None:
    request = chat_request()
    async with serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server, HTTPClient() as client:
        await fetch(client, server.url, request)
    seen = server.requests[0]
    assert (seen.method, seen.target, seen.body) == ("POST", "/v1/chat/completions", request.body)
    assert seen.headers["host"] == f"127.0.0.1:{server.port}"
    assert seen.headers["content-length"] == str(len(request.body))
    assert seen.headers["accept-encoding"] == "identity"
    assert seen.headers["user-agent"].startswith("streamcore/")
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"


async def test_accept_compression_asks_for_gzip_and_deflate() -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server,
        HTTPClient(accept_compression=True) as client,
    ):
        await fetch(client, server.url)
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


async def test_anthropic_stream_decodes_the_same_through_the_client() -> None:
    transcript = (TRANSCRIPTS / "anthropic" / "text_emoji_cjk.txt").read_bytes()
    request = anthropic.build_request(
        ChatRequest(
            "claude-sonnet-4-5",
            (Message("user", "Say hello in French, Japanese and Chinese."),),
            max_tokens=256,
        ),
        api_key=ANTHROPIC_KEY,
    )

    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.send_head(200, [*SSE_HEADERS, ("request-id", "req_011CV5Jab2Zq8")])
        for start in range(0, len(transcript), 101):
            await peer.send_chunk(transcript[start : start + 101])
        await peer.finish()

    decoder = decoder_for("anthropic")
    events = []
    async with (
        serve(keep_alive(answer)) as server,
        HTTPClient() as client,
        client.stream(server.url, request) as response,
    ):
        async for chunk in response.aiter_bytes():
            events += decoder.feed(chunk)
        events += decoder.end()
    whole = decoder_for("anthropic")
    assert events == whole.feed(transcript) + whole.end()
    assert decoder.complete
    assert server.requests[0].headers["x-api-key"] == ANTHROPIC_KEY


# --- The keep-alive pool ----------------------------------------------------------------


async def test_sequential_requests_share_one_connection() -> None:
    async def answer(peer: Peer, seen: Seen) -> None:
        if len(peer.server.requests) % 2:
            await peer.respond(200, SSE_HEADERS, OPENAI_BODY)
        else:
            await stream_openai_chunked(peer, seen)

    async with serve(keep_alive(answer)) as server, HTTPClient() as client:
        bodies = [await fetch(client, server.url) for _ in range(4)]
        assert client.idle_connections(server.url) == 1
    assert bodies == [OPENAI_BODY] * 4
    assert server.accepted == 1
    assert [seen.connection for seen in server.requests] == [0, 0, 0, 0]


async def test_https_requests_share_one_connection(certs: Certs) -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context()) as server,
        HTTPClient(ca_bundle=certs.ca) as client,
    ):
        url = f"https://localhost:{server.port}"
        assert [await fetch(client, url) for _ in range(3)] == [OPENAI_BODY] * 3
    assert server.accepted == 1


async def test_body_abandoned_mid_stream_closes_the_connection() -> None:
    release = trio.Event()

    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.send_head(200, SSE_HEADERS)
        await peer.send_chunk(OPENAI_EVENTS[1])
        if seen.connection == 0:
            await peer.wait_for_close()  # a provider generating until the client hangs up
            return
        await release.wait()

    async with serve(keep_alive(answer)) as server, HTTPClient() as client:
        async with client.stream(server.url, chat_request()) as response:
            async for _ in response.aiter_bytes():
                break  # the caller has what it wants: leave before the end
        await server.wait_for_closes(1)
        assert client.idle_connections(server.url) == 0
        async with client.stream(server.url, chat_request()) as response:
            assert await response.aiter_bytes().__anext__() == OPENAI_EVENTS[1]
        release.set()
    assert server.accepted == 2


async def test_response_with_connection_close_is_not_reused() -> None:
    async with (
        serve(respond_with(200, [*SSE_HEADERS, ("connection", "close")], OPENAI_BODY)) as server,
        HTTPClient() as client,
    ):
        assert await fetch(client, server.url) == OPENAI_BODY
        assert client.idle_connections(server.url) == 0
        assert await fetch(client, server.url) == OPENAI_BODY
    assert server.accepted == 2


async def test_connection_that_broke_mid_body_is_not_reused() -> None:
    async def answer(peer: Peer, seen: Seen) -> None:
        if seen.connection == 0:
            await peer.send_head(200, [*SSE_HEADERS, ("content-length", "4096")])
            await peer.send_chunk(OPENAI_EVENTS[0])
            await peer.close()  # dropped mid-body
            return
        await peer.respond(200, SSE_HEADERS, OPENAI_BODY)

    async with serve(keep_alive(answer)) as server, HTTPClient() as client:
        with pytest.raises(ReadError):
            await fetch(client, server.url)
        assert await fetch(client, server.url) == OPENAI_BODY
    assert server.accepted == 2


async def test_error_response_read_to_its_end_keeps_the_connection() -> None:
    limited = json.dumps(
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}
    ).encode()

    async def answer(peer: Peer, seen: Seen) -> None:
        if len(peer.server.requests) == 1:
            await peer.respond(429, [("retry-after", "1")], limited)
        else:
            await peer.respond(200, SSE_HEADERS, OPENAI_BODY)

    async with serve(keep_alive(answer)) as server, HTTPClient() as client:
        with pytest.raises(RateLimited):
            await fetch(client, server.url)
        assert await fetch(client, server.url) == OPENAI_BODY
    assert server.accepted == 1


async def test_pool_keeps_at_most_max_idle_per_origin() -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server,
        HTTPClient(max_idle_per_origin=2) as client,
    ):
        async with (
            client.stream(server.url, chat_request()) as first,
            client.stream(server.url, chat_request()) as second,
            client.stream(server.url, chat_request()) as third,
        ):
            for response in (first, second, third):
                assert await response.read() == OPENAI_BODY
        assert client.idle_connections(server.url) == 2
        await server.wait_for_closes(1)  # the third one was closed, not kept
    assert server.accepted == 3


async def test_connection_idle_past_its_expiry_is_replaced(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server, HTTPClient() as client:
        await fetch(client, server.url)
        mock_clock.jump(DEFAULT_IDLE_EXPIRY + 1)
        await fetch(client, server.url)
        assert client.idle_connections(server.url) == 1  # the expired one was dropped
    assert server.accepted == 2


async def test_connection_the_server_closed_while_idle_is_replaced_transparently() -> None:
    async def handler(peer: Peer) -> None:
        seen = await peer.request()
        assert seen is not None
        await peer.respond(200, SSE_HEADERS, OPENAI_BODY)
        if peer.index == 0:
            await peer.close()  # the server's keep-alive timeout
            peer.server.note_close()
            return
        await keep_alive(stream_openai_chunked)(peer)

    async with serve(handler) as server, HTTPClient() as client:
        await fetch(client, server.url)
        await server.wait_for_closes(1)
        assert await fetch(client, server.url) == OPENAI_BODY
    assert server.accepted == 2


# --- The stale-connection rule ----------------------------------------------------------


async def test_reused_connection_closed_before_any_response_byte_is_retried_once() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            assert await peer.request() is not None
            await peer.respond(200, SSE_HEADERS, OPENAI_BODY)
            assert await peer.request() is not None  # ...then closes without a byte
            return
        await keep_alive(stream_openai_chunked)(peer)

    async with serve(handler) as server, HTTPClient() as client:
        await fetch(client, server.url)
        assert await fetch(client, server.url) == OPENAI_BODY
    assert server.accepted == 2
    assert [seen.connection for seen in server.requests] == [0, 0, 1]


async def test_new_connection_closed_before_any_response_byte_is_not_retried() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()  # and close without a byte

    async with serve(handler) as server, HTTPClient() as client:
        with pytest.raises(ReadError) as info:
            await fetch(client, server.url)
    assert info.value.kind == "connection_closed"
    assert server.accepted == 1


async def test_reused_connection_that_sent_part_of_a_head_is_not_retried() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.respond(200, SSE_HEADERS, OPENAI_BODY)
        await peer.request()
        await peer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event")  # then the drop

    async with serve(handler) as server, HTTPClient() as client:
        await fetch(client, server.url)
        with pytest.raises(ReadError) as info:
            await fetch(client, server.url)
    assert info.value.kind == "incomplete_head"
    assert server.accepted == 1


async def test_retry_on_a_new_connection_happens_only_once() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.respond(200, SSE_HEADERS, OPENAI_BODY)
        await peer.request()  # close without a byte, on the reused and the new connection

    async with serve(handler) as server, HTTPClient() as client:
        await fetch(client, server.url)
        with pytest.raises(ReadError) as info:
            await fetch(client, server.url)
    assert info.value.kind == "connection_closed"
    assert server.accepted == 2


# --- Bodies: encodings and limits -------------------------------------------------------


async def test_gzip_body_is_decompressed_as_it_streams() -> None:
    release = trio.Event()

    async def answer(peer: Peer, seen: Seen) -> None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        await peer.send_head(200, [*SSE_HEADERS, ("content-encoding", "gzip")])
        await peer.send_chunk(
            compressor.compress(OPENAI_EVENTS[1]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        )
        await release.wait()
        await peer.send_chunk(compressor.compress(b"".join(OPENAI_EVENTS[2:])) + compressor.flush())
        await peer.finish()

    async with (
        serve(keep_alive(answer)) as server,
        HTTPClient(accept_compression=True) as client,
        client.stream(server.url, chat_request()) as response,
    ):
        with trio.fail_after(5):
            chunks = response.aiter_bytes()
            assert await chunks.__anext__() == OPENAI_EVENTS[1]
            release.set()
            assert b"".join([chunk async for chunk in chunks]) == b"".join(OPENAI_EVENTS[2:])


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_body_is_decoded_zlib_wrapped_or_raw(wbits: int) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = compressor.compress(OPENAI_BODY) + compressor.flush()
    async with (
        serve(respond_with(200, [*SSE_HEADERS, ("content-encoding", "deflate")], body)) as server,
        HTTPClient(accept_compression=True) as client,
    ):
        assert await fetch(client, server.url) == OPENAI_BODY


async def test_gzip_bomb_stops_at_the_body_limit_in_bounded_steps() -> None:
    bomb = gzip.compress(b"\0" * (16 * 1024 * 1024), compresslevel=9)  # 16 MiB in ~16 KiB
    limit = 1024 * 1024
    sizes: list[int] = []
    async with (
        serve(respond_with(200, [("content-encoding", "gzip")], bomb)) as server,
        HTTPClient(max_body_bytes=limit) as client,
        client.stream(server.url, chat_request()) as response,
    ):
        with pytest.raises(BodyTooLarge) as info:
            async for chunk in response.aiter_bytes():
                sizes.append(len(chunk))
    assert info.value.limit == limit
    assert max(sizes) <= DECOMPRESS_STEP
    assert sum(sizes) <= limit


async def test_truncated_gzip_body_is_a_bad_encoding() -> None:
    body = gzip.compress(OPENAI_BODY)[:-12]  # the HTTP framing is fine, the gzip stream is not
    async with (
        serve(respond_with(200, [("content-encoding", "gzip")], body)) as server,
        HTTPClient() as client,
    ):
        with pytest.raises(ResponseError) as info:
            await fetch(client, server.url)
    assert info.value.kind == "bad_encoding"


async def test_unrequested_brotli_body_is_refused() -> None:
    async with (
        serve(respond_with(200, [("content-encoding", "br")], b"\x1b\x00")) as server,
        HTTPClient() as client,
    ):
        with pytest.raises(ResponseError) as info:
            await fetch(client, server.url)
    assert info.value.kind == "unsupported_encoding"


async def test_chunked_body_past_the_limit_raises_after_delivering_at_most_the_limit() -> None:
    async with (
        serve(keep_alive(stream_openai_chunked)) as server,
        HTTPClient(max_body_bytes=500) as client,
        client.stream(server.url, chat_request()) as response,
    ):
        delivered = 0
        with pytest.raises(BodyTooLarge):
            async for chunk in response.aiter_bytes():
                delivered += len(chunk)
    assert delivered <= 500


async def test_content_length_past_the_limit_fails_before_reading_the_body() -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server,
        HTTPClient(max_body_bytes=len(OPENAI_BODY) - 1) as client,
        client.stream(server.url, chat_request()) as response,
    ):
        with pytest.raises(BodyTooLarge):
            await response.aiter_bytes().__anext__()
        assert response.bytes_received == 0


async def test_response_head_past_the_header_limit_is_refused() -> None:
    headers = [*SSE_HEADERS, ("x-padding", "a" * 8000)]
    async with (
        serve(respond_with(200, headers, OPENAI_BODY)) as server,
        HTTPClient(max_header_bytes=4096) as client,
    ):
        with pytest.raises(ResponseError) as info:
            await fetch(client, server.url)
    assert info.value.kind == "headers_too_large"


async def test_connection_dropped_mid_body_reports_the_bytes_received() -> None:
    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.send_head(200, [*SSE_HEADERS, ("content-length", "1000")])
        await peer.send_chunk(b"x" * 300)
        await peer.close()

    async with (
        serve(keep_alive(answer)) as server,
        HTTPClient() as client,
        client.stream(server.url, chat_request()) as response,
    ):
        with pytest.raises(ReadError) as info:
            await response.read()
    assert (info.value.kind, info.value.bytes_received) == ("incomplete_body", 300)
    assert "after 300 bytes" in str(info.value)


# --- Error statuses ---------------------------------------------------------------------


async def error_from(
    status: int, headers: Sequence[tuple[str, str]], body: bytes
) -> HTTPStatusError:
    async with serve(respond_with(status, headers, body)) as server, HTTPClient() as client:
        with pytest.raises(HTTPStatusError) as info:
            await fetch(client, server.url)
    return info.value


async def test_429_is_rate_limited_with_retry_after_ms_and_request_id() -> None:
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o-mini in organization org-Xy3 on tokens per "
            "min (TPM): Limit 200000, Used 199801, Requested 712. Please try again in 153ms.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    headers = [
        ("x-request-id", "req_9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d"),
        ("retry-after", "1"),
        ("retry-after-ms", "153"),
    ]
    err = await error_from(429, headers, json.dumps(body).encode())
    assert type(err) is RateLimited
    assert (err.status, err.kind, err.retryable) == (429, "rate_limited", True)
    assert err.retry_after == pytest.approx(0.153)
    assert err.request_id == "req_9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d"
    assert err.error is not None and err.error.type == "tokens"
    assert "Please try again in 153ms" in str(err)


async def test_529_is_overloaded_with_the_anthropic_error() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    err = await error_from(529, [("request-id", "req_011CV5Kx9Qz")], body)
    assert type(err) is Overloaded and isinstance(err, ServerError)
    assert err.error is not None
    assert (err.error.type, err.error.message) == ("overloaded_error", "Overloaded")
    assert (err.kind, err.retryable, err.request_id) == ("overloaded", True, "req_011CV5Kx9Qz")


async def test_503_is_a_server_error_with_the_gemini_error() -> None:
    body = {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }
    err = await error_from(503, [("content-type", "application/json")], json.dumps(body).encode())
    assert type(err) is ServerError
    assert err.error is not None and err.error.type == "UNAVAILABLE"
    assert err.retryable


async def test_401_echoing_the_api_key_never_shows_it() -> None:
    masked = OPENAI_KEY[:8] + "*" * 32 + OPENAI_KEY[-4:]
    body = {
        "error": {
            "message": f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
            "echo": {"masked": masked, "other_key_seen": ANTHROPIC_KEY},
        }
    }
    err = await error_from(401, [], json.dumps(body).encode())
    assert type(err) is AuthenticationError
    assert (err.kind, err.retryable) == ("authentication_failed", False)
    assert err.error is not None
    shown = [str(err), repr(err), err.body, err.error.message, json.dumps(err.error.raw)]
    for text in shown:
        assert OPENAI_KEY not in text
        assert masked not in text
        assert ANTHROPIC_KEY not in text
        assert OPENAI_KEY[8:20] not in text
    assert "Incorrect API key provided: <redacted>." in str(err)


def test_key_hidden_behind_json_escapes_is_redacted_too() -> None:
    escaped = "\\u0073" + OPENAI_KEY[1:]  # the key, with its "s" written as a JSON escape
    body = (
        '{"error": {"message": "Incorrect API key provided: %s", "type": "invalid_request_error"}}'
    )
    err = status_error(401, "Unauthorized", (), (body % escaped).encode(), secrets=(OPENAI_KEY,))
    assert err.error is not None
    for text in (str(err), repr(err), err.body, err.error.message, json.dumps(err.error.raw)):
        assert OPENAI_KEY[1:] not in text


async def test_403_is_permission_denied() -> None:
    body = {
        "error": {
            "code": 403,
            "message": "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity to call this "
            "API.",
            "status": "PERMISSION_DENIED",
        }
    }
    err = await error_from(403, [], json.dumps(body).encode())
    assert type(err) is AuthenticationError
    assert (err.kind, err.retryable) == ("permission_denied", False)


async def test_400_is_a_client_error_that_is_not_retryable() -> None:
    body = (
        b'{"type":"error","error":{"type":"invalid_request_error",'
        b'"message":"max_tokens: Field required"},"request_id":"req_011CV5Lq7Yp"}'
    )
    err = await error_from(400, [], body)
    assert type(err) is ClientError
    assert (err.kind, err.retryable) == ("client_error", False)
    assert err.request_id == "req_011CV5Lq7Yp"  # from the body: no request-id header
    assert "max_tokens: Field required" in str(err)


async def test_plain_text_error_body_is_quoted_in_the_message() -> None:
    body = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    err = await error_from(502, [("content-type", "text/html")], body)
    assert type(err) is ServerError
    assert err.error is None
    assert "502 Bad Gateway" in str(err) and err.body == body.decode()


async def test_error_body_is_read_only_up_to_its_limit() -> None:
    body = json.dumps({"error": {"message": "x" * 200_000, "type": "server_error"}}).encode()
    async with (
        serve(respond_with(500, [], body)) as server,
        HTTPClient(max_error_body_bytes=1024) as client,
    ):
        with pytest.raises(ServerError) as info:
            await fetch(client, server.url)
        assert client.idle_connections(server.url) == 0  # the unread rest: not reusable
    assert len(info.value.body) == 1024
    assert info.value.error is None  # cut JSON is quoted as text


async def test_raise_for_status_false_hands_over_the_error_response() -> None:
    body = b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}'
    async with (
        serve(respond_with(404, [], body)) as server,
        HTTPClient() as client,
        client.stream(server.url, chat_request(), raise_for_status=False) as response,
    ):
        assert response.status == 404
        with pytest.raises(ClientError) as info:
            await response.raise_for_status()
    assert info.value.error is not None and info.value.error.type == "not_found_error"


def test_retry_after_http_date_counts_from_the_date_header() -> None:
    headers = (
        ("date", "Tue, 14 Jan 2025 09:00:00 GMT"),
        ("retry-after", "Tue, 14 Jan 2025 09:00:42 GMT"),
    )
    err = status_error(429, "Too Many Requests", headers, b"", now=0.0)  # local clock far off
    assert err.retry_after == 42.0


def test_retry_after_http_date_without_date_header_counts_from_now() -> None:
    headers = (("retry-after", "Tue, 14 Jan 2025 09:00:42 GMT"),)
    err = status_error(503, "Service Unavailable", headers, b"", now=1736845200.0)  # 09:00:00
    assert err.retry_after == 42.0


def test_insufficient_quota_429_is_not_retryable() -> None:
    body = (
        b'{"error":{"message":"You exceeded your current quota, please check your plan and '
        b'billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}'
    )
    err = status_error(429, "Too Many Requests", (), body)
    assert type(err) is RateLimited
    assert (err.kind, err.retryable) == ("quota_exceeded", False)


def test_x_should_retry_header_overrides_the_status() -> None:
    err = status_error(409, "Conflict", (("x-should-retry", "false"),), b"")
    assert err.retryable is False
    err = status_error(400, "Bad Request", (("x-should-retry", "true"),), b"")
    assert err.retryable is True


def test_redirect_is_reported_not_followed() -> None:
    err = status_error(307, "Temporary Redirect", (("location", "https://api2.example/v1"),), b"")
    assert (type(err), err.kind, err.retryable) == (HTTPStatusError, "unexpected_status", False)
    assert "https://api2.example/v1" in str(err)


def test_gemini_error_inside_a_json_array_is_parsed() -> None:
    body = (
        '[{"error": {"code": 429, "message": "Resource has been exhausted", '
        '"status": "RESOURCE_EXHAUSTED"}}]'
    )
    error = parse_error_body(body)
    assert error is not None
    assert (error.type, error.message) == ("RESOURCE_EXHAUSTED", "Resource has been exhausted")


def test_ollama_string_error_is_parsed() -> None:
    error = parse_error_body('{"error":"model \\"llama3.3\\" not found, try pulling it first"}')
    assert error is not None and error.message.startswith('model "llama3.3" not found')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {ANTHROPIC_KEY} rejected", "key <redacted> rejected"),
        (
            "GET /v1beta/models?key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&alt=sse",
            "GET /v1beta/models?key=<redacted>&alt=sse",
        ),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "Authorization: Bearer <redacted>"),
        ("Incorrect API key provided: sk-abc123...", "Incorrect API key provided: <redacted>..."),
    ],
)
def test_redact_removes_key_shaped_strings(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- Deadlines and cancellation ---------------------------------------------------------


async def test_connect_timeout_when_the_listener_backlog_is_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # room for one pending connection, never accepted
    port = listener.getsockname()[1]
    filler = trio.socket.socket()
    await filler.connect(("127.0.0.1", port))
    with listener, filler:
        async with HTTPClient(connect_timeout=3.0) as client:
            start = trio.current_time()
            with pytest.raises(ConnectTimeout) as info:
                await fetch(client, f"http://127.0.0.1:{port}")
    assert trio.current_time() - start == pytest.approx(3.0)
    assert (info.value.kind, info.value.retryable) == ("connect_timeout", True)


async def test_connect_timeout_covers_a_tls_handshake_that_never_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def handler(peer: Peer) -> None:
        await trio.sleep_forever()  # accepts TCP, never speaks TLS

    async with serve(handler) as server, HTTPClient(connect_timeout=5.0) as client:
        with pytest.raises(ConnectTimeout):
            await fetch(client, f"https://127.0.0.1:{server.port}")


async def test_connection_refused_is_a_connect_error() -> None:
    probe = trio.socket.socket()
    await probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound and released: nothing listens there
    async with HTTPClient() as client:
        with pytest.raises(ConnectError) as info:
            await fetch(client, f"http://127.0.0.1:{port}")
    assert info.value.kind == "connection_refused"
    assert f"POST http://127.0.0.1:{port}/v1/chat/completions" in str(info.value)


async def test_cancelling_a_blocked_body_read_closes_the_socket_promptly() -> None:
    got_first = trio.Event()

    async def answer(peer: Peer, seen: Seen) -> None:
        await peer.send_head(200, SSE_HEADERS)
        await peer.send_chunk(OPENAI_EVENTS[1])
        await peer.wait_for_close()  # a provider generating until the client hangs up

    async with serve(keep_alive(answer)) as server, HTTPClient() as client:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:

                async def deadline_fires() -> None:
                    await got_first.wait()
                    await trio.testing.wait_all_tasks_blocked()  # client blocked on the socket
                    scope.cancel()

                nursery.start_soon(deadline_fires)
                async with client.stream(server.url, chat_request()) as response:
                    async for _ in response.aiter_bytes():
                        got_first.set()
            assert scope.cancelled_caught
            await server.wait_for_closes(1)
        assert client.idle_connections(server.url) == 0


async def test_cancelling_while_waiting_for_the_head_closes_the_socket() -> None:
    request_in = trio.Event()

    async def answer(peer: Peer, seen: Seen) -> None:
        request_in.set()
        await peer.wait_for_close()  # thinking for a long time before the head

    async with serve(keep_alive(answer)) as server, HTTPClient() as client:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def deadline_fires() -> None:
                    await request_in.wait()
                    scope.cancel()

                nursery.start_soon(deadline_fires)
                await fetch(client, server.url)
        assert scope.cancelled_caught
        await server.wait_for_closes(1)


# --- TLS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """A throwaway CA and a server certificate it signed (for localhost and api.example.test)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self, sni: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if sni is not None:

            def record(_tls: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
                sni.append(name or "")

            context.sni_callback = record
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        try:
            subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
        except FileNotFoundError:
            pytest.skip("the openssl command is needed to make test certificates")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_subject = ["-subj", "/CN=streamcore test CA"]
    ca_extensions = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        *ca_subject,
        *ca_extensions,
    )
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,DNS:api.example.test\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    signing = ["-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2", "-extfile", "ext.cnf"]
    openssl("x509", "-req", "-in", "server.csr", *signing, "-days", "2", "-out", "server.pem")
    return Certs(folder / "ca.pem", folder / "server.pem", folder / "server.key")


async def test_https_verifies_against_the_ca_bundle_and_sends_sni(certs: Certs) -> None:
    sni: list[str] = []
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context(sni)) as server,
        HTTPClient(ca_bundle=certs.ca) as client,
    ):
        assert await fetch(client, f"https://localhost:{server.port}") == OPENAI_BODY
    assert sni == ["localhost"]
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


async def test_untrusted_certificate_is_a_tls_error(certs: Certs) -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context()) as server,
        HTTPClient() as client,  # the system's CAs do not know the test CA
    ):
        with pytest.raises(TLSError) as info:
            await fetch(client, f"https://localhost:{server.port}")
    assert (info.value.kind, info.value.retryable) == ("certificate_verify_failed", False)
    assert "ca_bundle" in str(info.value)
    assert server.requests == []


async def test_certificate_for_another_host_is_a_tls_error(certs: Certs) -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context()) as server,
        HTTPClient(ca_bundle=certs.ca) as client,
    ):
        with pytest.raises(TLSError) as info:  # the certificate names localhost, not the IP
            await fetch(client, f"https://127.0.0.1:{server.port}")
    assert info.value.kind == "certificate_verify_failed"
    assert server.requests == []


async def test_verify_false_accepts_an_untrusted_certificate(certs: Certs) -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context()) as server,
        HTTPClient(verify=False) as client,
    ):
        assert await fetch(client, f"https://127.0.0.1:{server.port}") == OPENAI_BODY


async def test_plain_http_server_behind_https_url_is_a_tls_error() -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as server,
        HTTPClient() as client,
    ):
        with pytest.raises(TLSError) as info:
            await fetch(client, f"https://127.0.0.1:{server.port}")
    assert info.value.kind == "tls_handshake_failed"


# --- Proxies ----------------------------------------------------------------------------


def connect_proxy(upstream_port: int, *, status: int = 200) -> Handler:
    """A CONNECT proxy that tunnels every request to 127.0.0.1:upstream_port."""

    async def handler(peer: Peer) -> None:
        seen = await peer.request()
        if seen is None:
            return
        if status != 200:
            await peer.respond(status, [("proxy-authenticate", 'Basic realm="corp"')])
            return
        await peer.send_head(200)
        upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)

        async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
            try:
                while data := await source.receive_some(65536):
                    await sink.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()

        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(pipe, peer.stream, upstream)
            nursery.start_soon(pipe, upstream, peer.stream)

    return handler


async def test_https_goes_through_a_connect_tunnel_with_proxy_credentials(certs: Certs) -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context()) as origin,
        serve(connect_proxy(origin.port)) as proxy,
        HTTPClient(
            ca_bundle=certs.ca, proxy=f"http://alice:p%40ss@127.0.0.1:{proxy.port}"
        ) as client,
    ):
        assert await fetch(client, f"https://localhost:{origin.port}") == OPENAI_BODY
        assert await fetch(client, f"https://localhost:{origin.port}") == OPENAI_BODY
    connect = proxy.requests[0]
    assert (connect.method, connect.target) == ("CONNECT", f"localhost:{origin.port}")
    assert connect.headers["proxy-authorization"] == "Basic YWxpY2U6cEBzcw=="  # alice:p@ss
    assert "proxy-authorization" not in origin.requests[0].headers
    assert (proxy.accepted, origin.accepted) == (1, 1)  # the tunnel is pooled like a connection


async def test_proxy_refusing_credentials_is_a_proxy_error_without_the_password() -> None:
    async with (
        serve(connect_proxy(1, status=407)) as proxy,
        HTTPClient(proxy=f"http://alice:hunter2-secret@127.0.0.1:{proxy.port}") as client,
    ):
        with pytest.raises(ProxyError) as info:
            await fetch(client, "https://api.openai.com")
    err = info.value
    assert (err.kind, err.status, err.retryable) == ("proxy_auth_required", 407, False)
    for text in (str(err), repr(err), repr(client)):
        assert "hunter2" not in text
        assert "YWxpY2U6aHVudGVyMi1zZWNyZXQ=" not in text


async def test_plain_http_goes_to_the_proxy_in_absolute_form() -> None:
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY)) as proxy,
        HTTPClient(proxy=f"http://bob:pw@127.0.0.1:{proxy.port}") as client,
    ):
        assert await fetch(client, "http://ollama.internal:11434") == OPENAI_BODY
    seen = proxy.requests[0]
    assert seen.target == "http://ollama.internal:11434/v1/chat/completions"
    assert seen.headers["host"] == "ollama.internal:11434"
    assert seen.headers["proxy-authorization"] == "Basic Ym9iOnB3"


async def test_https_proxy_from_the_environment_is_used(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with (
        serve(respond_with(200, SSE_HEADERS, OPENAI_BODY), tls=certs.server_context()) as origin,
        serve(connect_proxy(origin.port)) as proxy,
    ):
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")
        async with HTTPClient(ca_bundle=certs.ca) as client:
            # api.example.test does not resolve: only the proxy can reach it.
            assert await fetch(client, f"https://api.example.test:{origin.port}") == OPENAI_BODY
    assert proxy.requests[0].target == f"api.example.test:{origin.port}"
    assert origin.requests[0].headers["host"] == f"api.example.test:{origin.port}"


@pytest.mark.parametrize(
    ("url", "no_proxy", "proxied"),
    [
        ("https://api.openai.com", "", True),
        ("https://api.openai.com", "openai.com", False),
        ("https://api.openai.com", ".openai.com", False),
        ("https://api.openai.com", "*.openai.com", False),
        ("https://notopenai.com", "openai.com", True),
        ("https://api.openai.com", "api.openai.com:8443", True),
        ("https://api.openai.com:8443", "api.openai.com:8443", False),
        ("https://10.1.2.3", "10.0.0.0/8", False),
        ("https://[2001:db8::1]", "[2001:db8::1]", False),
        ("https://api.openai.com", "*", False),
        ("https://api.openai.com", "example.com, openai.com", False),
        ("http://localhost:11434", "", False),
        ("http://127.0.0.1:8080", "", False),
    ],
)
def test_proxy_from_env_honours_no_proxy_and_skips_loopback(
    url: str, no_proxy: str, proxied: bool
) -> None:
    env = {
        "HTTPS_PROXY": "http://proxy.corp:3128",
        "HTTP_PROXY": "http://proxy.corp:3128",
        "NO_PROXY": no_proxy,
    }
    assert (proxy_from_env(parse_origin(url), env) is not None) is proxied


def test_lower_case_proxy_variable_wins() -> None:
    env = {"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128"}
    proxy = proxy_from_env(parse_origin("https://api.anthropic.com"), env)
    assert proxy is not None and proxy.origin.host == "lower"


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:pa/ss-w0rd@proxy:3128",
        "http://alice:pa?ss-w0rd@proxy:3128/x",
        "http://alice:pass-w0rd@proxy:port",
    ],
)
def test_proxy_url_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_proxy(url)
    assert "ss-w0rd" not in str(info.value)


def test_socks_proxy_is_refused_with_advice() -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_proxy("socks5://user:pw@127.0.0.1:1080")
    assert info.value.kind == "unsupported_proxy"
    assert "pw@" not in str(info.value)


# --- Using the API wrongly --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://api.anthropic.com/v1", "url_has_path"),
        ("https://api.openai.com?x=1", "url_has_path"),
        ("ftp://files.example.com", "unsupported_scheme"),
        ("https://user:sk-proj-secret123@api.openai.com", "credentials_in_url"),
        ("https://", "bad_url"),
        ("https://api.openai.com:99999", "bad_url"),
    ],
)
def test_bad_origin_url_is_refused(url: str, kind: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_origin(url)
    assert info.value.kind == kind
    assert "secret123" not in str(info.value)


@pytest.mark.parametrize("name", ["Host", "Content-Length", "Transfer-Encoding", "Connection"])
async def test_header_the_client_manages_is_refused(name: str) -> None:
    request = HTTPRequest("POST", "/v1/messages", ((name, "x"),), b"{}")
    async with HTTPClient() as client:
        with pytest.raises(LocalProtocolError) as info:
            await fetch(client, "http://127.0.0.1:9", request)
    assert info.value.kind == "reserved_header"


async def test_header_value_with_a_newline_is_refused_without_quoting_it() -> None:
    request = HTTPRequest("POST", "/v1/messages", (("x-api-key", f"{ANTHROPIC_KEY}\r\n"),), b"{}")
    async with HTTPClient() as client:
        with pytest.raises(LocalProtocolError) as info:
            await fetch(client, "http://127.0.0.1:9", request)
    assert info.value.kind == "bad_header"
    assert ANTHROPIC_KEY not in str(info.value)


async def test_reading_after_the_block_ended_is_refused() -> None:
    async with serve(keep_alive(stream_openai_chunked)) as server, HTTPClient() as client:
        async with client.stream(server.url, chat_request()) as response:
            pass
        with pytest.raises(LocalProtocolError) as info:
            await response.read()
    assert info.value.kind == "response_closed"


async def test_closed_client_refuses_new_requests() -> None:
    client = HTTPClient()
    await client.aclose()
    with pytest.raises(LocalProtocolError) as info:
        await fetch(client, "http://127.0.0.1:9")
    assert info.value.kind == "client_closed"


@pytest.mark.parametrize("module", [http_module, errors_module], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0
