"""The stream store contract, run against the in-memory store and a real redis-server."""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import AsyncIterator, Iterator

import _redis
import pytest
import trio

from streamcore._errors import LocalProtocolError
from streamcore.adapters.serve import ServeConfig
from streamcore.adapters.serve.replay import Record
from streamcore.adapters.serve.store import (
    MemoryStore,
    StoreUnavailable,
    StreamStore,
    open_store,
)
from streamcore.cli import serve as serve_cmd

REQUEST = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Explain server-sent events."}],
    }
)
DELTAS = ["Server-sent", " events", " are", " a", " one-way", " HTTP", " stream."]


def records(start: int = 1) -> list[Record]:
    out = [Record(start, "stream_started", '{"type":"stream_started","model":"gpt-4o-mini"}')]
    for n, text in enumerate(DELTAS, start + 1):
        out.append(Record(n, "text_delta", json.dumps({"type": "text_delta", "text": text})))
    return out


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _redis.running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StreamStore]:
    url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    async with open_store(url, max_events=50, timeout=2.0) as opened:
        yield opened


def new_id() -> str:
    return secrets.token_urlsafe(12)


async def test_records_read_back_in_order_with_their_ids(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records(), ttl=30.0)
    got = await store.read(sid, 0)
    assert got == records()


async def test_read_after_an_id_gives_only_later_records(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records(), ttl=30.0)
    assert [r.id for r in await store.read(sid, 5)] == [6, 7, 8]
    assert await store.read(sid, 8) == []


async def test_request_json_is_kept_for_a_takeover(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    assert await store.request_of(sid) == REQUEST
    assert await store.request_of(new_id()) is None


async def test_creating_an_existing_stream_is_refused(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    with pytest.raises(LocalProtocolError) as info:
        await store.create(sid, REQUEST, owner="relay-b", ttl=30.0)
    assert info.value.kind == "stream_exists"


async def test_append_that_does_not_continue_the_log_is_an_id_conflict(
    store: StreamStore,
) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records()[:3], ttl=30.0)
    with pytest.raises(LocalProtocolError) as info:
        await store.append(sid, [Record(3, "text_delta", '{"text":"again"}')], ttl=30.0)
    assert info.value.kind == "id_conflict"
    assert len(await store.read(sid, 0)) == 3


async def test_wait_returns_records_appended_meanwhile(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records()[:1], ttl=30.0)
    got: list[Record] = []

    async def follower() -> None:
        got.extend(await store.wait(sid, 1, timeout=5.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        await trio.testing.wait_all_tasks_blocked()
        await store.append(sid, records()[1:3], ttl=30.0)
    assert [r.id for r in got] == [2, 3]


async def test_wait_with_nothing_new_returns_empty_after_the_timeout(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records()[:2], ttl=30.0)
    assert await store.wait(sid, 2, timeout=0.05) == []


async def test_log_is_bounded_and_a_read_before_the_oldest_is_replay_expired(
    store: StreamStore,
) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    many = [Record(n, "text_delta", '{"text":"x"}') for n in range(1, 401)]
    for start in range(0, 400, 100):
        await store.append(sid, many[start : start + 100], ttl=30.0)
    assert (await store.read(sid, 399))[0].id == 400
    with pytest.raises(LocalProtocolError) as info:
        await store.read(sid, 1)
    assert info.value.kind == "replay_expired"


async def test_only_one_process_acquires_a_free_lease(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.release(sid, "relay-a")
    won = [await store.acquire(sid, name, ttl=30.0) for name in ("relay-b", "relay-c")]
    assert won == [True, False]
    assert await store.owner_of(sid) == "relay-b"


async def test_renew_by_a_non_owner_fails(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    assert await store.renew(sid, "relay-a", ttl=30.0)
    assert not await store.renew(sid, "relay-b", ttl=30.0)


async def test_release_by_a_non_owner_keeps_the_lease(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.release(sid, "relay-b")
    assert await store.owner_of(sid) == "relay-a"


async def test_lease_lapses_when_not_renewed(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.acquire(sid, "relay-a", ttl=30.0)
    await store.release(sid, "relay-a")
    assert await store.acquire(sid, "relay-a", ttl=0.05)
    with trio.fail_after(5):
        while await store.owner_of(sid) is not None:
            await trio.sleep(0.01)  # waits for the store's own expiry, not for a guess
    assert await store.acquire(sid, "relay-b", ttl=30.0)


async def test_watched_mark_expires(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    assert not await store.watched(sid)
    await store.mark_watched(sid, ttl=0.05)
    assert await store.watched(sid)
    with trio.fail_after(5):
        while await store.watched(sid):
            await trio.sleep(0.01)


async def test_expire_zero_drops_the_stream(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records(), ttl=30.0)
    await store.expire(sid, 0)
    assert await store.request_of(sid) is None
    assert await store.read(sid, 0) == []


async def test_append_to_a_lost_stream_is_store_lost(store: StreamStore) -> None:
    sid = new_id()
    await store.create(sid, REQUEST, owner="relay-a", ttl=30.0)
    await store.append(sid, records()[:2], ttl=30.0)
    await store.expire(sid, 0)  # what a restart without persistence does
    with pytest.raises(StoreUnavailable) as info:
        await store.append(sid, [Record(3, "text_delta", '{"text":"x"}')], ttl=30.0)
    assert info.value.kind == "store_lost"


async def test_unreachable_redis_is_store_unavailable_on_use() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with open_store(f"redis://127.0.0.1:{port}/0", timeout=1.0) as store:
        with pytest.raises(StoreUnavailable) as info:
            await store.create(new_id(), REQUEST, owner="relay-a", ttl=30.0)
        with pytest.raises(StoreUnavailable):
            await store.check()
    assert info.value.kind == "store_unavailable"
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_password_in_the_url_never_appears_in_errors() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with open_store(f"redis://:hunter2-secret@127.0.0.1:{port}/0", timeout=1.0) as store:
        with pytest.raises(StoreUnavailable) as info:
            await store.check()
        assert "hunter2" not in repr(store)
    assert "hunter2" not in str(info.value)


async def test_unknown_store_scheme_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        async with open_store("postgres://db/streams"):
            pass
    assert info.value.kind == "bad_store_url"


def test_default_store_is_in_memory() -> None:
    async def kind() -> str:
        async with open_store(None) as store:
            return type(store).__name__

    assert trio.run(kind) == MemoryStore.__name__


async def test_memory_store_is_bounded_in_bytes_like_the_replay_buffer() -> None:
    store = MemoryStore(max_bytes=100)
    await store.create("s1", REQUEST, owner="relay-a", ttl=30.0)
    await store.append("s1", records(), ttl=30.0)
    held = await store.read("s1", 7)
    assert [r.id for r in held] == [8]
    with pytest.raises(LocalProtocolError) as info:
        await store.read("s1", 0)
    assert info.value.kind == "replay_expired"


def test_store_url_never_appears_in_the_config_repr() -> None:
    config = ServeConfig(store="redis://:hunter2-secret@10.0.0.5:6379/0")
    assert "hunter2" not in repr(config)


def test_cli_takes_the_store_url_from_the_environment() -> None:
    parser = argparse.ArgumentParser()
    serve_cmd.add_parser(parser.add_subparsers(dest="command"))
    url = "redis://:hunter2@10.0.0.5:6379/0"
    config = serve_cmd.config_from(parser.parse_args(["serve"]), {serve_cmd.STORE_ENV: url})
    assert config.store == url
    flag = parser.parse_args(["serve", "--store", "redis://127.0.0.1:6379/1"])
    assert (
        serve_cmd.config_from(flag, {serve_cmd.STORE_ENV: url}).store == "redis://127.0.0.1:6379/1"
    )
    assert serve_cmd.config_from(parser.parse_args(["serve"]), {}).store is None


def test_cli_passes_store_and_lease_to_the_config() -> None:
    parser = argparse.ArgumentParser()
    serve_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["serve", "--store", "redis://127.0.0.1:6379/2", "--lease-ttl", "2.5", "--node", "eu-1"]
    )
    config = serve_cmd.config_from(args, {})
    assert (config.store, config.lease_ttl, config.node) == (
        "redis://127.0.0.1:6379/2",
        2.5,
        "eu-1",
    )
