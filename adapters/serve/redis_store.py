"""The Redis Streams store: one stream's log, request and lease, shared by several processes.

Theory of operation
-------------------
Each relayed stream has four keys, all with the stream id as a hash tag (so a
Redis Cluster keeps them on one slot and the Lua scripts may touch them together):

* ``streamcore:stream:{<id>}`` -- the log, a Redis Stream. Record *n* is the entry
  with the explicit id ``<n>-0``. That choice maps the SSE id (a positive integer,
  what ``Last-Event-ID`` carries) 1:1 onto the stream id, so a resume is
  ``XRANGE key (<n+1>-0 +`` with no lookup table. It also fences writers: Redis
  refuses an ``XADD`` whose id is not above the stream's top, so a record id is
  written once, by whoever got there first; a process that lost its lease and
  writes late gets ``id_conflict`` instead of duplicating text. Fields: ``t`` (the
  record type), ``d`` (its one-line JSON). ``MAXLEN ~ max_events`` bounds it.
* ``...:meta`` -- the request JSON, so another process can take the stream over.
* ``...:lease`` -- the owner's name, ``SET NX PX``; renewed (and the other keys'
  TTLs with it) by a compare-and-set script, released by another.
* ``...:watched`` -- set with a short TTL by processes following the stream for
  their subscribers, so the owner does not cancel it as unwatched.

Every key has a TTL (``PEXPIRE``), pushed back by the owner's appends and renewals.

The owner appends in batches: :meth:`RedisStore.append` writes every record given
to it with one script call (atomic: a follower sees whole batches), which also
refreshes the TTLs. Appends, renewals and watched marks of *all* the process's
streams are grouped (:meth:`RedisStore.run_batches`): whatever calls arrive while
a pipeline is in flight go together in the next one. Followers block
in ``XREAD BLOCK``: one per process, over every stream it follows
(:meth:`RedisStore.run_follower`); a follower that starts waiting while that read
is blocked interrupts it with an entry on the process's own wake key. Every call
runs under a deadline (``timeout``); whatever goes wrong talking to Redis
(refused, reset, timeout) comes out as
:class:`~streamcore.adapters.serve.store.StoreUnavailable`, never as a coredis or
socket error.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import coredis
import coredis.exceptions
import coredis.retry
import trio
from coredis import PureToken

from streamcore._errors import LocalProtocolError, StreamcoreError
from streamcore.adapters.serve.replay import DEFAULT_MAX_EVENTS, Record
from streamcore.adapters.serve.store import StoreUnavailable, StreamStore, check_continues

__all__ = ["RedisStore", "keys_of", "open_redis_store"]

T = TypeVar("T")

_PREFIX = "streamcore:stream:"

# Renew only our own lease (compare-and-set), and keep the stream's keys alive with it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('pexpire', KEYS[2], ARGV[3])
  redis.call('pexpire', KEYS[3], ARGV[3])
  return 1
end
return 0
"""

# Append a batch atomically: a follower never sees half of it, and since the ids are
# consecutive, only the first XADD can hit the fence (an id already written), before
# anything is written. ARGV: ttl ms, maxlen, must-exist flag, then (id, type, data)...
_APPEND = """
if ARGV[3] == '1' and redis.call('exists', KEYS[1]) == 0 then
  return -1
end
for i = 4, #ARGV, 3 do
  redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[i], 't', ARGV[i + 1], 'd', ARGV[i + 2])
end
redis.call('pexpire', KEYS[1], ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[1])
return 1
"""

# Create: the request (only if new) and the creator's lease, in one atomic command.
_CREATE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def keys_of(stream_id: str) -> tuple[str, str, str, str]:
    """The ``(log, meta, lease, watched)`` keys of ``stream_id``.

    >>> keys_of("Xq3f")[0], keys_of("Xq3f")[2]
    ('streamcore:stream:{Xq3f}', 'streamcore:stream:{Xq3f}:lease')
    """
    log = f"{_PREFIX}{{{stream_id}}}"
    return log, log + ":meta", log + ":lease", log + ":watched"


_BLOCK = 5.0
"""Seconds one follower read blocks at most (a new waiter interrupts it anyway)."""


async def _raise(error: BaseException) -> None:
    raise error


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _number(identifier: str | bytes) -> int:
    text = identifier if isinstance(identifier, str) else identifier.decode()
    return int(text.partition("-")[0])


Pipe = Any
"""A coredis pipeline (its generic type is not worth spelling out here)."""


@dataclass(slots=True)
class _Batch:
    """Calls from many tasks that go to Redis in one pipeline."""

    calls: list[Callable[[Pipe], Awaitable[object]]] = field(default_factory=list)
    results: list[object] = field(default_factory=list)
    error: BaseException | None = None
    done: trio.Event = field(default_factory=trio.Event)


@dataclass(slots=True)
class _Waiter:
    """One :meth:`RedisStore.wait` call: the records it wants come after ``after``."""

    after: int
    done: trio.Event = field(default_factory=trio.Event)
    entries: Sequence[Any] = ()
    error: BaseException | None = None


class RedisStore(StreamStore):
    """:class:`~streamcore.adapters.serve.store.StreamStore` on Redis; see the module docstring.

    Get one from :func:`open_redis_store` (or ``open_store("redis://...")``).
    """

    shared = True

    def __init__(
        self, client: coredis.Redis[str], where: str, *, max_events: int, timeout: float
    ) -> None:
        self._client = client
        self._where = where
        self._max_events = max_events
        self._timeout = timeout
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._append = client.register_script(_APPEND)
        self._create = client.register_script(_CREATE)
        self._forming = _Batch()
        self._wake = trio.Event()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._follow = trio.Event()
        self._blocked = False
        self._poked = False
        self._wake_key = f"streamcore:wake:{secrets.token_hex(8)}"
        self._nursery: trio.Nursery | None = None

    async def run_batches(self) -> None:
        """Send the appends, renewals and marks of every stream of this process together:
        each batch is one pipeline (one round trip), sent as soon as the previous one is
        answered. A coredis call costs ~260 us of CPU alone and ~25 us in a pipeline, and
        a process owns hundreds of streams, each appending a record at a time."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._forming = self._forming, _Batch()
            try:
                with trio.fail_after(self._timeout):
                    async with self._client.pipeline(
                        transaction=False, raise_on_error=False
                    ) as pipe:
                        pending = [call(pipe) for call in batch.calls]
                    batch.results = [await p for p in pending]
            except Exception as exc:  # every caller of the batch gets it
                batch.error = exc
            finally:
                batch.done.set()

    async def _grouped(self, what: str, call: Callable[[Pipe], Awaitable[object]]) -> object:
        batch = self._forming
        index = len(batch.calls)
        batch.calls.append(call)
        self._wake.set()

        async def result() -> object:
            await batch.done.wait()
            if batch.error is not None:
                raise batch.error
            answer = batch.results[index]
            if isinstance(answer, BaseException):
                raise answer
            return answer

        # It may wait for the batch before it to be answered, then for its own.
        return await self._call(what, result, extra=self._timeout)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]], extra: float = 0.0) -> T:
        try:
            with trio.fail_after(self._timeout + extra):
                return await fn()
        except coredis.exceptions.ResponseError as exc:
            if "equal or smaller" in str(exc):
                raise LocalProtocolError(
                    f"{what}: another process wrote these record ids first; this one no "
                    "longer owns the stream",
                    kind="id_conflict",
                ) from None
            raise StoreUnavailable(f"{what}: redis at {self._where} refused: {exc}") from None
        except StreamcoreError:
            raise
        except Exception as exc:  # refused, reset, timed out, or coredis itself: never a crash
            raise StoreUnavailable(
                f"{what}: redis at {self._where} is unreachable ({type(exc).__name__}: {exc}); "
                "check that it runs, or serve without --store"
            ) from None

    async def check(self) -> None:
        await self._call("ping", self._client.ping)

    async def create(self, stream_id: str, request_json: str, *, owner: str, ttl: float) -> None:
        _, meta, lease, _ = keys_of(stream_id)
        args: list[str | int] = [request_json, owner, _ms(ttl)]
        made = await self._grouped(
            "create", lambda pipe: self._create(keys=[meta, lease], args=args, client=pipe)
        )
        if made != 1:
            raise LocalProtocolError(f"stream {stream_id!r} exists already", kind="stream_exists")

    async def request_of(self, stream_id: str) -> str | None:
        meta = keys_of(stream_id)[1]
        value = await self._grouped("read request", lambda pipe: pipe.get(meta))
        return value if isinstance(value, str) else None

    async def append(self, stream_id: str, records: Sequence[Record], *, ttl: float) -> None:
        if not records:
            return
        check_continues(stream_id, records[0].id - 1, records)
        log, meta, _, _ = keys_of(stream_id)
        # The first record creates the log; later ones must find it (a Redis that
        # restarted empty must not get a log with a hole at the start).
        args: list[str | int] = [_ms(ttl), self._max_events, 0 if records[0].id == 1 else 1]
        for r in records:
            args += (f"{r.id}-0", r.type, r.data)
        done = await self._grouped(
            "append", lambda pipe: self._append(keys=[log, meta], args=args, client=pipe)
        )
        if done == -1:
            raise StoreUnavailable(
                f"stream {stream_id!r} is gone from redis at {self._where} (restarted or "
                "expired); its resumption is degraded",
                kind="store_lost",
            )

    def _records(self, entries: Sequence[Any], after: int) -> list[Record]:
        out = [
            Record(_number(e.identifier), e.field_values["t"], e.field_values["d"]) for e in entries
        ]
        if out and out[0].id != after + 1:
            raise LocalProtocolError(
                f"events after id {after} are no longer in the store (oldest: {out[0].id}, "
                "bounded by max_events); start a new stream",
                kind="replay_expired",
            )
        return out

    async def read(self, stream_id: str, after: int, *, limit: int = 1000) -> list[Record]:
        log = keys_of(stream_id)[0]
        entries: Any = await self._grouped(
            "read", lambda pipe: pipe.xrange(log, f"({after}-0", "+", count=limit)
        )
        # Trimming keeps the newest entries, so an empty answer means "nothing newer".
        return self._records(entries, after)

    async def wait(self, stream_id: str, after: int, *, timeout: float) -> list[Record]:
        log = keys_of(stream_id)[0]
        waiter = _Waiter(after)
        self._waiters.setdefault(log, []).append(waiter)
        self._kick()
        try:
            with trio.move_on_after(timeout):
                await waiter.done.wait()
        finally:
            waiting = self._waiters.get(log)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[log]
        if waiter.error is not None:
            error = waiter.error
            await self._call("wait", lambda: _raise(error))
        return self._records(waiter.entries, after)

    def _kick(self) -> None:
        """A waiter arrived: the follower must include its stream in its next read, and
        interrupt a read already blocked (an entry on this process's own wake key)."""
        self._follow.set()
        if self._blocked and not self._poked and self._nursery is not None:
            self._poked = True
            self._nursery.start_soon(self._poke)

    async def _poke(self) -> None:
        def add(pipe: Pipe) -> Awaitable[object]:
            return pipe.xadd(  # type: ignore[no-any-return]
                self._wake_key,
                {"w": "1"},
                trim_strategy=PureToken.MAXLEN,
                threshold=1,
            )

        with suppress(StoreUnavailable):
            await self._grouped("wake", add)

    def _serve(self, key: str, waiting: list[_Waiter], entries: Sequence[Any]) -> None:
        top = _number(entries[-1].identifier)
        for waiter in waiting:
            if top > waiter.after:
                waiter.entries = [e for e in entries if _number(e.identifier) > waiter.after]
                waiter.done.set()
        left = [w for w in waiting if not w.done.is_set()]
        if left:
            self._waiters[key] = left
        else:
            del self._waiters[key]

    async def run_follower(self) -> None:
        """Every :meth:`wait` of this process in one ``XREAD BLOCK`` over all their streams
        (one connection, one call per round however many streams are followed)."""
        while True:
            if not self._waiters:
                await self._follow.wait()
            self._follow = trio.Event()
            if not self._waiters:
                continue
            streams = {
                key: f"{min(w.after for w in waiting)}-0" for key, waiting in self._waiters.items()
            }
            streams[self._wake_key] = "$"
            self._blocked, self._poked = True, False
            try:
                with trio.fail_after(self._timeout + _BLOCK):
                    answer = await self._client.xread(streams, count=1000, block=_ms(_BLOCK))
            except Exception as exc:  # every waiter of this round hears it; the next round retries
                for waiting in self._waiters.values():
                    for waiter in waiting:
                        waiter.error = exc
                        waiter.done.set()
                self._waiters.clear()
                await trio.sleep(0.05)
                continue
            finally:
                self._blocked = False
            for key, entries in (answer or {}).items():
                served = self._waiters.get(key)
                if served and entries:
                    self._serve(key, served, entries)
            # Let the waiters just served come back before the next read goes out.
            await trio.lowlevel.checkpoint()

    async def acquire(self, stream_id: str, owner: str, *, ttl: float) -> bool:
        lease = keys_of(stream_id)[2]
        took = await self._grouped(
            "acquire lease",
            lambda pipe: pipe.set(lease, owner, condition=PureToken.NX, px=_ms(ttl)),
        )
        if took:
            return True
        return await self.owner_of(stream_id) == owner

    async def renew(self, stream_id: str, owner: str, *, ttl: float) -> bool:
        log, meta, lease, _ = keys_of(stream_id)
        # The log and request live on while the lease does, plus a margin for followers.
        args: list[str | int] = [owner, _ms(ttl), _ms(ttl * 10)]
        done = await self._grouped(
            "renew lease", lambda pipe: self._renew(keys=[lease, log, meta], args=args, client=pipe)
        )
        return done == 1

    async def release(self, stream_id: str, owner: str) -> None:
        lease = keys_of(stream_id)[2]
        await self._grouped(
            "release lease", lambda pipe: self._release(keys=[lease], args=[owner], client=pipe)
        )

    async def owner_of(self, stream_id: str) -> str | None:
        lease = keys_of(stream_id)[2]
        value = await self._grouped("read lease", lambda pipe: pipe.get(lease))
        return value if isinstance(value, str) else None

    async def expire(self, stream_id: str, ttl: float) -> None:
        keys = keys_of(stream_id)

        async def run() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    if ttl <= 0:
                        pipe.delete([key])
                    else:
                        pipe.pexpire(key, _ms(ttl))

        await self._call("expire", run)

    async def mark_watched(self, stream_id: str, *, ttl: float) -> None:
        watched = keys_of(stream_id)[3]
        await self._grouped("mark watched", lambda pipe: pipe.set(watched, "1", px=_ms(ttl)))

    async def watched(self, stream_id: str) -> bool:
        watched = keys_of(stream_id)[3]
        return bool(await self._grouped("read watched", lambda pipe: pipe.exists([watched])))

    async def memory_usage(self, stream_id: str) -> int:
        """Bytes Redis uses for the stream's keys (``MEMORY USAGE``), for benchmarks."""
        keys = keys_of(stream_id)

        async def usage() -> int:
            sizes = [await self._client.memory_usage(key) for key in keys]
            return sum(int(size or 0) for size in sizes)

        return await self._call("memory usage", usage)


@asynccontextmanager
async def open_redis_store(
    url: str, *, max_events: int = DEFAULT_MAX_EVENTS, timeout: float = 2.0
) -> AsyncIterator[RedisStore]:
    """A :class:`RedisStore` on ``url`` (``redis://HOST:PORT/DB``) for the block's duration.

    Connects lazily: a Redis that is down now makes calls raise ``StoreUnavailable``
    until it is back; it does not stop the block from starting.
    """
    where = url.rpartition("@")[2]  # never show a password
    client: coredis.Redis[str] = coredis.Redis.from_url(
        url,
        decode_responses=True,
        connect_timeout=timeout,
        stream_timeout=None,  # a follower's XREAD BLOCK waits longer; `_call` bounds each call
        retry_policy=coredis.retry.NoRetryPolicy(),
    )
    async with client, trio.open_nursery() as nursery:
        store = RedisStore(client, where, max_events=max_events, timeout=timeout)
        store._nursery = nursery
        nursery.start_soon(store.run_batches)
        nursery.start_soon(store.run_follower)
        yield store
        nursery.cancel_scope.cancel()
