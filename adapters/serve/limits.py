"""Per-client rate limiting: a token bucket per client address, with a bounded table.

Theory of operation
-------------------
Each client address has a bucket of ``burst`` tokens that refills at ``rate``
tokens per second. A request takes one token (:meth:`RateLimiter.take`); with
none left it is refused and told how long until the next token. No clock is
read: the caller passes ``now``. The table of buckets is an LRU bounded by
``max_clients``: the least recently seen address is forgotten first (it comes
back with a full bucket, which only errs on the side of the client).
"""

from __future__ import annotations

from collections import OrderedDict

from streamcore._errors import LocalProtocolError

__all__ = ["DEFAULT_MAX_CLIENTS", "RateLimiter"]

DEFAULT_MAX_CLIENTS = 10_000
"""Client addresses remembered at most."""


class RateLimiter:
    """``burst`` requests at once per client, then ``rate`` per second.

    >>> limiter = RateLimiter(rate=1.0, burst=2)
    >>> [limiter.take("203.0.113.7", now=0.0) for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> limiter.take("203.0.113.7", now=1.0)
    0.0

    :meth:`take` returns 0.0 when the request may go ahead, else the seconds
    to wait (the ``retry-after``).
    """

    def __init__(self, *, rate: float, burst: int, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise LocalProtocolError(
                f"rate limit needs rate > 0, burst >= 1 and max_clients >= 1; got rate={rate}, "
                f"burst={burst}, max_clients={max_clients}",
                kind="invalid_argument",
            )
        self._rate = rate
        self._burst = float(burst)
        self._max_clients = max_clients
        # address -> (tokens left, time they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, *, now: float) -> float:
        """Take a token for ``client`` at ``now``; 0.0 if granted, else seconds to wait."""
        tokens, then = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - then) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait
