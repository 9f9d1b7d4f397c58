"""`streamcore serve` behind a proxy: whose address a request counts against.

Behind nginx every connection comes from the proxy, so without help the
per-client stream rate would be one bucket shared by every user. With
``trusted_proxies`` the server believes ``X-Forwarded-For`` from those addresses
only; from anyone else the header is ignored (a client cannot pick its own bucket).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio
from trio.testing import MockClock

from streamcore.adapters.serve import ServeConfig, Server, open_server
from streamcore.cli import serve as serve_cmd

CHAT = {"messages": [{"role": "user", "content": "Explain SSE"}], "model": "streamcore-emulator"}
ONE_EACH = ServeConfig(port=0, rate=0.01, burst=1)


@asynccontextmanager
async def serving(config: ServeConfig) -> AsyncIterator[Server]:
    async with open_server(config) as server:  # relays to the built-in emulator
        yield server


async def create(server: Server, forwarded_for: str | None = None) -> int:
    """POST a stream, as if through a proxy that says ``forwarded_for``; the status."""
    body = json.dumps(CHAT).encode()
    headers = [
        ("host", "127.0.0.1"),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
    ]
    if forwarded_for is not None:
        headers.append(("x-forwarded-for", forwarded_for))
    conn = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream(server.host, server.port)
    async with stream:
        data = conn.send(h11.Request(method="POST", target="/v1/streams", headers=headers))
        data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
        await stream.send_all(data + (conn.send(h11.EndOfMessage()) or b""))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                return event.status_code
            else:
                raise AssertionError(f"unexpected {event!r}")


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_rate(
    autojump_clock: MockClock,
) -> None:
    config = dataclasses.replace(ONE_EACH, trusted_proxies=("127.0.0.1",))
    async with serving(config) as server:
        assert await create(server, "203.0.113.7") == 201
        assert await create(server, "198.51.100.4") == 201  # another user: another bucket
        assert await create(server, "203.0.113.7") == 429  # the first user again: over


async def test_a_chain_of_proxies_counts_the_first_untrusted_hop_from_the_right(
    autojump_clock: MockClock,
) -> None:
    config = dataclasses.replace(ONE_EACH, trusted_proxies=("127.0.0.1", "10.0.0.9"))
    async with serving(config) as server:
        assert await create(server, "192.0.2.1, 203.0.113.7, 10.0.0.9") == 201
        # The leftmost entry is whatever the client sent: it does not make a new bucket.
        assert await create(server, "192.0.2.99, 203.0.113.7, 10.0.0.9") == 429


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    autojump_clock: MockClock,
) -> None:
    async with serving(ONE_EACH) as server:  # no trusted proxies: the header is the client's
        assert await create(server, "203.0.113.7") == 201
        assert await create(server, "198.51.100.4") == 429  # same socket address, same bucket


def test_command_line_sets_trusted_proxies_and_the_connection_cap() -> None:
    parser = argparse.ArgumentParser()
    serve_cmd.add_parser(parser.add_subparsers())
    proxies = ["--trusted-proxy", "10.0.0.2", "--trusted-proxy", "10.0.0.3"]
    args = parser.parse_args(["serve", *proxies, "--max-connections", "2000"])
    config = serve_cmd.config_from(args, {})
    assert config.trusted_proxies == ("10.0.0.2", "10.0.0.3")
    assert config.max_connections == 2000
