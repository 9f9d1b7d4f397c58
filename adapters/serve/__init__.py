"""``streamcore serve``: relay chat streams to a browser over SSE and WebSocket, with resume.

* :func:`open_server` -- ``async with open_server(ServeConfig(port=0)) as server:``
  in tests and in the ``streamcore serve`` command.
* :class:`ReplayBuffer` -- a stream's numbered events, bounded, for resumption.
* :class:`RateLimiter` -- a token bucket per client address.
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

__all__ = [
    "STATIC_DIR",
    "Phase",
    "RateLimiter",
    "Record",
    "ReplayBuffer",
    "ServeConfig",
    "Server",
    "is_loopback",
    "open_server",
    "record_for",
]
