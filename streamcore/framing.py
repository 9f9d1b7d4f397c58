"""What the framing decoders (SSE, NDJSON, JSON array) share.

Every framing decoder has the same two calls:

* ``feed(data: bytes) -> list[item]`` -- the items completed by ``data``;
* ``end() -> EndOfInput[item]`` -- call once when the body ends; it returns any
  item that only the end of input completes, and says whether the input was
  cut off inside an item. For an LLM stream that means the connection dropped.

Errors are never allowed to lose data: when a chunk holds complete items
*and then* bytes that break the grammar, ``feed`` returns the items and the
next call (``feed`` or ``end``) raises the :class:`~streamcore.RemoteProtocolError`.
A decoder that raised stays failed: every later call raises the same error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_LINE_BYTES", "EndOfInput"]

T = TypeVar("T")

DEFAULT_MAX_LINE_BYTES = 1 << 20
"""1 MiB: enough for a large tool-call JSON in one line, small enough to bound memory."""


@dataclass(frozen=True, slots=True)
class EndOfInput(Generic[T]):
    """The result of ``end()``: the last items, and whether the input was cut off.

    >>> EndOfInput(items=(), truncated=True, detail="input ended inside an event").truncated
    True
    """

    items: tuple[T, ...] = ()
    truncated: bool = False
    detail: str = ""
