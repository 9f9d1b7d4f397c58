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

:class:`FramingDecoder` implements that lifecycle once -- open, then ``end()``
called once, or failed with a stored error -- for the decoders built on it
(NDJSON, JSON array), with their shared last step: the bytes of one complete
item to a JSON value, with errors that say which item broke.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from streamcore._errors import LocalProtocolError, RemoteProtocolError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "EndOfInput", "FramingDecoder"]

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


_SNIPPET_CHARS = 80


class FramingDecoder(abc.ABC, Generic[T]):
    """The lifecycle every framing decoder shares: the error rule, ``end()`` once.

    Subclasses implement :meth:`_feed` (append completed items to ``out``,
    raise on a grammar break) and ``end()``, which starts with
    :meth:`_begin_end` (and may use :meth:`_collect` for the error rule).
    ``feed`` returns the items completed before a break and stores the error
    for the next call. Items that are JSON texts go through :meth:`_load_item`.
    The dialect decoders (:mod:`streamcore.providers`) share this lifecycle too.
    """

    _ITEM: ClassVar[str] = "item"
    """What one item is called in error messages (``"line"``, ``"element"``)."""
    _BAD_JSON_HINT: ClassVar[str] = "check the server's output"
    """What an invalid-JSON message ends with: what to check."""

    def __init__(self) -> None:
        self._error: RemoteProtocolError | None = None
        self._ended = False

    def feed(self, data: bytes) -> list[T]:
        """Add the next chunk of the body; return the items it completes, in order."""
        self._check_usable("feed")
        return self._collect(self._feed, data)

    @abc.abstractmethod
    def _feed(self, data: bytes, out: list[T]) -> None: ...

    def _collect(self, step: Callable[[bytes, list[T]], None], data: bytes) -> list[T]:
        """Run ``step`` under the error rule: what it completed before raising is returned,
        and the error is stored for the next call (raised now only if nothing came first)."""
        out: list[T] = []
        try:
            step(data, out)
        except RemoteProtocolError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def _begin_end(self) -> None:
        """Check that ``end()`` is allowed now, and mark the decoder ended."""
        self._check_usable("end")
        self._ended = True

    def _item_name(self) -> str:
        """The item being parsed, for an error message (built only when one is raised)."""
        return f"{type(self).__name__} {self._ITEM}"

    def _load_item(self, raw: bytes | bytearray) -> object:
        """Parse ``raw``, one complete item, as UTF-8 JSON; a typed error names the item."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(
                f"{self._item_name()} is not valid UTF-8 (byte {exc.start} of the {self._ITEM}: "
                f"{bytes(raw[exc.start : exc.start + 4])!r}); JSON text must be UTF-8, "
                "so check the server's encoding",
                kind="invalid_utf8",
            ) from None
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            snippet = text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "..."
            raise RemoteProtocolError(
                f"{self._item_name()} is not valid JSON ({_json_failure(exc)}): {snippet!r}; "
                f"{self._BAD_JSON_HINT}",
                kind="invalid_json",
            ) from None

    def _check_usable(self, call: str) -> None:
        if self._error is not None:
            raise self._error
        if self._ended:
            kind = "end_twice" if call == "end" else "feed_after_end"
            raise LocalProtocolError(
                f"{call}() called after end(); use a new {type(self).__name__} per body",
                kind=kind,
            )


def _json_failure(exc: ValueError | RecursionError) -> str:
    """Why json.loads failed, without its "line 1 column 5" (the text is one line or element)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos}"
    if isinstance(exc, RecursionError):
        return "nested too deeply for Python's json module"
    return str(exc)  # e.g. an integer with more digits than int() accepts
