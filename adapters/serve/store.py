"""The stream store: where a relayed stream's event log lives, and who owns its upstream.

Theory of operation
-------------------
``streamcore serve`` numbers every event it relays (1, 2, 3...; the SSE ``id``).
A :class:`StreamStore` keeps, per stream:

* the **request** (its JSON), so a process that did not create the stream can
  take it over;
* the **log**: the records in id order. :meth:`StreamStore.append` is given
  records that already carry their ids and must continue the log exactly
  (``last + 1``); anything else is refused (``kind="id_conflict"``), which is
  what keeps two writers from ever giving one id two meanings. The log is
  *closed* once its last record is ``end``.
* the **lease**: which process runs the upstream request, until when.
  :meth:`StreamStore.acquire` succeeds for one caller only while nobody holds
  it; the owner :meth:`renews <StreamStore.renew>` it while streaming (a renew
  by a non-owner fails), and :meth:`releases <StreamStore.release>` it at the end;
* a **watched** mark, set by a process whose subscribers follow a stream it does
  not own, so the owner does not cancel a stream as unwatched.

Every key of a stream has a time to live (``ttl``), refreshed by the owner's
appends and renewals; a stream nobody writes to disappears by itself.

Reading: :meth:`StreamStore.read` returns the records after an id now (maybe
none); :meth:`StreamStore.wait` blocks until at least one is there or the
timeout passes. A read after an id whose successor was trimmed raises
``kind="replay_expired"`` (the server answers 410), as :class:`ReplayBuffer` does.

Failures: a store that cannot be reached raises :class:`StoreUnavailable`
(``kind="store_unavailable"``); one that lost a stream it had (a restart without
persistence) raises it with ``kind="store_lost"``.

Two implementations: :class:`MemoryStore` here (the default, one process: the
log is in memory, time is trio's clock), and
:class:`~streamcore.adapters.serve.redis_store.RedisStore` (Redis Streams, shared
by several processes).
"""

from __future__ import annotations

import abc
import itertools
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.adapters.serve.replay import DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, Record

__all__ = ["END", "MemoryStore", "StoreUnavailable", "StreamStore", "open_store"]

END = "end"
"""The type of the record that closes a log."""


class StoreUnavailable(RemoteProtocolError):
    """The store cannot be reached (``store_unavailable``) or lost a stream (``store_lost``).

    >>> StoreUnavailable("redis at 127.0.0.1:6379 refused the connection").kind
    'store_unavailable'
    """

    def __init__(self, message: str, *, kind: str = "store_unavailable") -> None:
        super().__init__(message, kind=kind)


def check_continues(stream_id: str, last_id: int, records: Sequence[Record]) -> None:
    """Raise ``id_conflict`` unless ``records`` number on from ``last_id`` one by one.

    >>> check_continues("s1", 2, [Record(3, "text_delta", "{}"), Record(4, "end", "{}")])
    >>> check_continues("s1", 2, [Record(2, "text_delta", "{}")])
    Traceback (most recent call last):
    ...
    streamcore._errors.LocalProtocolError: stream 's1' has records up to 2; record 2 ...
    """
    expected = last_id + 1
    for record in records:
        if record.id != expected:
            raise LocalProtocolError(
                f"stream {stream_id!r} has records up to {expected - 1}; record {record.id} "
                "does not follow it (another process wrote first: this one no longer owns it)",
                kind="id_conflict",
            )
        expected += 1


class StreamStore(abc.ABC):
    """A stream's log, request, lease and watched mark (see the module docstring).

    Times are seconds. Every method may raise :class:`StoreUnavailable`.
    """

    shared: bool = False
    """Whether other processes see this store (a lease then means something)."""

    @abc.abstractmethod
    async def create(self, stream_id: str, request_json: str, *, owner: str, ttl: float) -> None:
        """Record a new stream and its request, leased to ``owner`` for ``ttl`` seconds."""

    @abc.abstractmethod
    async def request_of(self, stream_id: str) -> str | None:
        """The request JSON of ``stream_id``, or ``None`` if the store does not know it."""

    @abc.abstractmethod
    async def append(self, stream_id: str, records: Sequence[Record], *, ttl: float) -> None:
        """Add ``records`` (continuing the log's ids) and keep the stream ``ttl`` more seconds.

        Raises ``id_conflict`` if they do not continue the log, ``store_lost`` if the
        log is gone.
        """

    @abc.abstractmethod
    async def read(self, stream_id: str, after: int, *, limit: int = 1000) -> list[Record]:
        """At most ``limit`` records after id ``after`` (0: from the start), now."""

    @abc.abstractmethod
    async def wait(self, stream_id: str, after: int, *, timeout: float) -> list[Record]:
        """Records after ``after``, waiting up to ``timeout`` seconds for the first one."""

    @abc.abstractmethod
    async def acquire(self, stream_id: str, owner: str, *, ttl: float) -> bool:
        """Take the lease if nobody holds it; whether ``owner`` now holds it."""

    @abc.abstractmethod
    async def renew(self, stream_id: str, owner: str, *, ttl: float) -> bool:
        """Extend ``owner``'s lease (and the stream's keys) by ``ttl``; ``False`` if not owner."""

    @abc.abstractmethod
    async def release(self, stream_id: str, owner: str) -> None:
        """Give the lease up, if ``owner`` holds it."""

    @abc.abstractmethod
    async def owner_of(self, stream_id: str) -> str | None:
        """Who holds the lease now (``None``: nobody; the stream can be taken over)."""

    @abc.abstractmethod
    async def expire(self, stream_id: str, ttl: float) -> None:
        """Drop every key of the stream ``ttl`` seconds from now."""

    @abc.abstractmethod
    async def mark_watched(self, stream_id: str, *, ttl: float) -> None:
        """Somebody follows the stream from this process; remember it ``ttl`` seconds."""

    @abc.abstractmethod
    async def watched(self, stream_id: str) -> bool:
        """Whether a mark from :meth:`mark_watched` is still alive."""

    async def check(self) -> None:  # noqa: B027 -- optional for stores that cannot fail
        """Raise :class:`StoreUnavailable` if the store cannot take a new stream now."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections; the store is unusable afterwards."""


# --------------------------------------------------------------------------- in memory


@dataclass(slots=True)
class _Log:
    request_json: str
    records: deque[Record] = field(default_factory=deque)
    bytes: int = 0
    last_id: int = 0
    owner: str | None = None
    lease_until: float = 0.0
    watched_until: float = 0.0
    expires_at: float = float("inf")
    changed: trio.Event = field(default_factory=trio.Event)


class MemoryStore(StreamStore):
    """The default store: this process's memory; trio's clock for leases and expiry.

    >>> import trio
    >>> async def demo() -> list[int]:
    ...     store = MemoryStore()
    ...     await store.create("s1", '{"messages":[]}', owner="a", ttl=60.0)
    ...     await store.append("s1", [Record(1, "stream_started", "{}")], ttl=60.0)
    ...     return [r.id for r in await store.read("s1", 0)]
    >>> trio.run(demo)
    [1]
    """

    shared = False

    def __init__(
        self,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_streams: int = 100_000,
    ) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_streams = max_streams
        self._logs: dict[str, _Log] = {}

    def _log(self, stream_id: str) -> _Log | None:
        log = self._logs.get(stream_id)
        if log is not None and trio.current_time() >= log.expires_at:
            del self._logs[stream_id]
            log.changed.set()
            return None
        return log

    def _need(self, stream_id: str) -> _Log:
        log = self._log(stream_id)
        if log is None:
            raise StoreUnavailable(
                f"stream {stream_id!r} is not in the store (expired or never created)",
                kind="store_lost",
            )
        return log

    async def create(self, stream_id: str, request_json: str, *, owner: str, ttl: float) -> None:
        if self._log(stream_id) is not None:
            raise LocalProtocolError(f"stream {stream_id!r} exists already", kind="stream_exists")
        if len(self._logs) >= self._max_streams:
            now = trio.current_time()
            for sid in [s for s, log in self._logs.items() if now >= log.expires_at]:
                del self._logs[sid]
        now = trio.current_time()
        if len(self._logs) >= self._max_streams:
            raise StoreUnavailable(
                f"the memory store holds {self._max_streams} streams already", kind="store_full"
            )
        self._logs[stream_id] = _Log(
            request_json, owner=owner, lease_until=now + ttl, expires_at=now + ttl
        )

    async def request_of(self, stream_id: str) -> str | None:
        log = self._log(stream_id)
        return None if log is None else log.request_json

    async def append(self, stream_id: str, records: Sequence[Record], *, ttl: float) -> None:
        log = self._need(stream_id)
        check_continues(stream_id, log.last_id, records)
        if not records:
            return
        held = log.records
        held.extend(records)
        log.bytes += sum(len(r.data) for r in records)
        log.last_id = records[-1].id
        # The same bounds as the relay's ReplayBuffer (the records are shared, not copied).
        while len(held) > 1 and (len(held) > self._max_events or log.bytes > self._max_bytes):
            log.bytes -= len(held.popleft().data)
        log.expires_at = max(log.expires_at, trio.current_time() + ttl)
        log.changed.set()
        log.changed = trio.Event()

    async def read(self, stream_id: str, after: int, *, limit: int = 1000) -> list[Record]:
        log = self._log(stream_id)
        if log is None:
            return []
        first = log.records[0].id if log.records else log.last_id + 1
        if after + 1 < first:
            raise LocalProtocolError(
                f"events after id {after} are no longer in the store (oldest: {first})",
                kind="replay_expired",
            )
        if after >= log.last_id:
            return []
        return list(itertools.islice(log.records, after + 1 - first, after + 1 - first + limit))

    async def wait(self, stream_id: str, after: int, *, timeout: float) -> list[Record]:
        records = await self.read(stream_id, after)
        log = self._log(stream_id)
        if records or log is None:
            return records
        with trio.move_on_after(timeout):
            await log.changed.wait()
        return await self.read(stream_id, after)

    async def acquire(self, stream_id: str, owner: str, *, ttl: float) -> bool:
        log = self._need(stream_id)
        now = trio.current_time()
        if log.owner is not None and log.lease_until > now:
            return log.owner == owner
        log.owner, log.lease_until = owner, now + ttl
        return True

    async def renew(self, stream_id: str, owner: str, *, ttl: float) -> bool:
        log = self._log(stream_id)
        now = trio.current_time()
        if log is None or log.owner != owner or log.lease_until <= now:
            return False
        log.lease_until = now + ttl
        log.expires_at = max(log.expires_at, now + ttl)
        return True

    async def release(self, stream_id: str, owner: str) -> None:
        log = self._log(stream_id)
        if log is not None and log.owner == owner:
            log.owner, log.lease_until = None, 0.0

    async def owner_of(self, stream_id: str) -> str | None:
        log = self._log(stream_id)
        if log is None or log.owner is None or log.lease_until <= trio.current_time():
            return None
        return log.owner

    async def expire(self, stream_id: str, ttl: float) -> None:
        log = self._log(stream_id)
        if log is None:
            return
        if ttl <= 0:
            del self._logs[stream_id]
            log.changed.set()
        else:
            log.expires_at = trio.current_time() + ttl

    async def mark_watched(self, stream_id: str, *, ttl: float) -> None:
        log = self._log(stream_id)
        if log is not None:
            log.watched_until = trio.current_time() + ttl

    async def watched(self, stream_id: str) -> bool:
        log = self._log(stream_id)
        return log is not None and log.watched_until > trio.current_time()


@asynccontextmanager
async def open_store(
    url: str | None,
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 2.0,
) -> AsyncIterator[StreamStore]:
    """The store ``url`` names, for the duration of the ``async with`` block.

    ``None`` or ``memory://`` gives a :class:`MemoryStore` (bounded like a
    :class:`ReplayBuffer`: ``max_events``, ``max_bytes``); ``redis://HOST:PORT/DB``
    (or ``rediss://``, ``unix://``) a ``RedisStore`` whose every call gives up after
    ``timeout`` seconds. Nothing is connected yet: an unreachable Redis shows up
    as :class:`StoreUnavailable` on first use, not here. Raises
    :class:`~streamcore.LocalProtocolError` (``kind="bad_store_url"``) for another
    scheme, ``kind="missing_dependency"`` when coredis is not installed.

    >>> async def demo() -> str:
    ...     async with open_store(None) as store:
    ...         return type(store).__name__
    >>> trio.run(demo)
    'MemoryStore'
    """
    if url is None or url in ("memory", "memory://"):
        yield MemoryStore(max_events=max_events, max_bytes=max_bytes)
        return
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise LocalProtocolError(
            f"unknown store {url.rpartition('@')[2]!r}: use memory:// or redis://HOST:PORT/DB",
            kind="bad_store_url",
        )
    try:
        from streamcore.adapters.serve.redis_store import open_redis_store
    except ImportError:
        raise LocalProtocolError(
            "the Redis store needs coredis: pip install 'streamcore[redis]'",
            kind="missing_dependency",
        ) from None
    async with open_redis_store(url, max_events=max_events, timeout=timeout) as store:
        yield store
