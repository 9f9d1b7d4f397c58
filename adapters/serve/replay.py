"""The replay buffer: one relayed stream's events, numbered, bounded, with a lifetime.

Theory of operation
-------------------
The server's upstream task appends every event it relays (:meth:`ReplayBuffer.append`)
and finally the ``end`` event (:meth:`ReplayBuffer.close`). Each record gets the next
id (1, 2, 3...), which is what SSE sends as ``id:`` and WebSocket as ``"id"``. A
subscriber that comes (back) with the last id it saw asks :meth:`ReplayBuffer.since`
for everything after it, then follows the live tail by asking again with the id
of the last record it sent. Ids only grow, so "after n" is a slice: no record is
ever sent twice on one cursor, none is skipped while it is still held.

Bounds: at most ``max_events`` records and ``max_bytes`` of data. When an append
goes over either, the oldest records are dropped; a cursor that points before
the oldest held record then gets :class:`~streamcore.LocalProtocolError`
(``kind="replay_expired"``): the events it missed are gone, and the server
answers 410. The final record is never dropped by its own append.

Lifetime: the buffer does not read a clock. The server says when the stream
became unwatched (:meth:`ReplayBuffer.idle`, with ``now`` and a grace period)
and when it is watched again (:meth:`ReplayBuffer.watched`); :attr:`expires_at`
is then the time after which nobody may resume and the stream is dropped.

Phases: ``OPEN`` (events arrive) → ``CLOSED`` (the end record is in) and either
→ ``EXPIRED`` (:meth:`ReplayBuffer.expire`); the moves are ``_TRANSITIONS``.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass

from streamcore._errors import LocalProtocolError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_EVENTS", "Phase", "Record", "ReplayBuffer"]

DEFAULT_MAX_EVENTS = 20_000
"""Records a buffer holds at most (a long answer is a few thousand deltas)."""
DEFAULT_MAX_BYTES = 8 << 20
"""Bytes of record data a buffer holds at most (8 MiB)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One relayed event: its id in the stream, its type and its one-line JSON data.

    >>> Record(1, "text_delta", '{"type":"text_delta","text":"Hi","choice":0}').id
    1
    """

    id: int
    type: str
    data: str


class Phase(enum.Enum):
    """Where a buffer is in its life."""

    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"


_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.OPEN: frozenset({Phase.CLOSED, Phase.EXPIRED}),
    Phase.CLOSED: frozenset({Phase.EXPIRED}),
    Phase.EXPIRED: frozenset(),
}


class ReplayBuffer:
    """The events of one stream, for subscribers that start late or come back.

    >>> buf = ReplayBuffer()
    >>> buf.append("text_delta", '{"text":"Hel"}').id
    1
    >>> buf.append("text_delta", '{"text":"lo"}').id
    2
    >>> [r.data for r in buf.since(1)]
    ['{"text":"lo"}']
    >>> buf.close("end", '{"state":"completed"}').id, buf.phase
    (3, <Phase.CLOSED: 'closed'>)
    """

    def __init__(
        self, *, max_events: int = DEFAULT_MAX_EVENTS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise LocalProtocolError(
                f"replay buffer bounds must be positive, got max_events={max_events}, "
                f"max_bytes={max_bytes}",
                kind="invalid_argument",
            )
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._records: deque[Record] = deque()
        self._bytes = 0
        self._last_id = 0
        self.phase = Phase.OPEN
        self.expires_at: float | None = None
        """When an unwatched buffer may be dropped (``None`` while watched)."""

    @property
    def last_id(self) -> int:
        """The id of the newest record (0 before the first)."""
        return self._last_id

    @property
    def first_id(self) -> int:
        """The id of the oldest record still held (``last_id + 1`` when none is)."""
        return self._records[0].id if self._records else self._last_id + 1

    @property
    def closed(self) -> bool:
        """Whether the end record is in: nothing more will be appended."""
        return self.phase is not Phase.OPEN

    def _move(self, to: Phase) -> None:
        if to not in _TRANSITIONS[self.phase]:
            raise LocalProtocolError(
                f"replay buffer cannot go from {self.phase.value} to {to.value}; "
                "append and close only while open, expire once",
                kind="illegal_transition",
            )
        self.phase = to

    def append(self, type: str, data: str) -> Record:
        """Add an event; returns its record. Drops the oldest records past the bounds."""
        if self.phase is not Phase.OPEN:
            raise LocalProtocolError(
                f"replay buffer is {self.phase.value}; no event can follow the end record",
                kind="buffer_closed",
            )
        self._last_id += 1
        record = Record(self._last_id, type, data)
        self._records.append(record)
        self._bytes += len(data)
        records = self._records
        while len(records) > 1 and (
            len(records) > self._max_events or self._bytes > self._max_bytes
        ):
            self._bytes -= len(records.popleft().data)
        return record

    def close(self, type: str, data: str) -> Record:
        """Append the final event (``end``) and close the buffer."""
        record = self.append(type, data)
        self._move(Phase.CLOSED)
        return record

    def since(self, last_id: int) -> list[Record]:
        """Every held record after ``last_id`` (0: from the start), oldest first.

        Raises :class:`~streamcore.LocalProtocolError` with ``kind="replay_expired"``
        if records after ``last_id`` were already dropped (or the buffer expired),
        and ``kind="unknown_event_id"`` if ``last_id`` is negative or past the newest.
        """
        if last_id < 0 or last_id > self._last_id:
            raise LocalProtocolError(
                f"event id {last_id} was never sent on this stream (last id: {self._last_id}); "
                "resume from an id you received, or 0 for the whole stream",
                kind="unknown_event_id",
            )
        if self.phase is Phase.EXPIRED or last_id + 1 < self.first_id:
            raise LocalProtocolError(
                f"events after id {last_id} are no longer held (oldest held: {self.first_id}, "
                "bounded by max_events/max_bytes and the replay lifetime); start a new stream",
                kind="replay_expired",
            )
        if last_id == self._last_id:
            return []
        # Ids are consecutive, so the first record wanted is at a known index; a live
        # follower usually wants only the last few, which islice reaches at C speed.
        return list(itertools.islice(self._records, last_id + 1 - self.first_id, None))

    def idle(self, now: float, grace: float) -> None:
        """Nobody watches the stream since ``now``; it may be dropped after ``grace`` seconds."""
        self.expires_at = now + grace

    def watched(self) -> None:
        """Somebody watches the stream again: no expiry."""
        self.expires_at = None

    def expire(self) -> None:
        """Drop every record; :meth:`since` raises ``replay_expired`` from now on."""
        self._move(Phase.EXPIRED)
        self._records.clear()
        self._bytes = 0
