"""``streamcore serve``: relay chat streams to a browser over SSE and WebSocket, with resume.

* :func:`open_server` -- ``async with open_server(ServeConfig(port=0)) as server:``
  in tests and in the ``streamcore serve`` command.
* :class:`ReplayBuffer` -- a stream's numbered events, bounded, for resumption.
* :class:`RateLimiter` -- a token bucket per client address.
* :class:`StreamStore` -- where streams' events and leases live: :class:`MemoryStore`
  (the default) or ``RedisStore`` (``ServeConfig(store="redis://...")``, needs coredis),
  opened with :func:`open_store`.
"""

from __future__ import annotations

from streamcore.adapters.serve.limits import RateLimiter
from streamcore.adapters.serve.replay import Phase, Record, ReplayBuffer
from streamcore.adapters.serve.server import (
    STATIC_DIR,
    ServeConfig,
    Server,
    is_loopback,
    open_server,
    record_for,
)
from streamcore.adapters.serve.store import (
    MemoryStore,
    StoreUnavailable,
    StreamStore,
    open_store,
)

__all__ = [
    "STATIC_DIR",
    "MemoryStore",
    "Phase",
    "RateLimiter",
    "Record",
    "ReplayBuffer",
    "ServeConfig",
    "Server",
    "StoreUnavailable",
    "StreamStore",
    "is_loopback",
    "open_server",
    "open_store",
    "record_for",
]
