"""The plumbing every dialect decoder shares.

A dialect decoder turns a provider's response body into :mod:`streamcore.events`.
Its API mirrors the framing decoders (:mod:`streamcore.framing`):

* ``feed(data: bytes) -> list[Event]``;
* ``end() -> list[Event]`` once the body is over;
* ``complete`` -- whether the provider's terminal marker (:class:`StreamEnd`)
  was seen. A body that ended with ``complete`` false was cut off.

Error rule (same as framing): a chunk that holds good events and then garbage
returns the good events; the next call raises the stored
:class:`~streamcore.RemoteProtocolError`, and every call after it too.
"""

from __future__ import annotations

import abc
import json

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.events import Event, KeepAlive, StreamEnd
from streamcore.framing import DEFAULT_MAX_LINE_BYTES
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

__all__ = ["DialectDecoder", "SSEJSONDecoder", "parse_json"]

_SNIPPET = 80


def parse_json(text: str, where: str) -> object:
    """``json.loads`` that fails with a :class:`RemoteProtocolError` naming ``where``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than Python's parser allows is garbage too.
        snippet = text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."
        raise RemoteProtocolError(
            f"{where} is not valid JSON ({exc}): {snippet!r}", kind="invalid_json"
        ) from None


class DialectDecoder(abc.ABC):
    """Base of every dialect decoder: the error rule, end-of-input and completion."""

    def __init__(self) -> None:
        self._error: RemoteProtocolError | None = None
        self._ended = False
        self._complete = False
        self.truncated = False
        """True when the body ended inside a framing item (a drop mid-event)."""

    @property
    def complete(self) -> bool:
        """Whether the provider's terminal marker has been seen."""
        return self._complete

    def feed(self, data: bytes) -> list[Event]:
        """Decode the next chunk of the body; returns the events it completes."""
        if self._error is not None:
            raise self._error
        if self._ended:
            raise LocalProtocolError("feed() called after end()", kind="feed_after_end")
        out: list[Event] = []
        try:
            self._feed(data, out)
        except RemoteProtocolError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def end(self) -> list[Event]:
        """Signal the end of the body; returns the events only the end completes."""
        if self._error is not None:
            raise self._error
        if self._ended:
            raise LocalProtocolError("end() called twice", kind="end_twice")
        self._ended = True
        out: list[Event] = []
        try:
            self._end(out)
        except RemoteProtocolError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def _finish(self, out: list[Event]) -> None:
        """Emit the terminal marker (once)."""
        if not self._complete:
            self._complete = True
            out.append(StreamEnd())

    def _check_open(self, what: str) -> None:
        """Raise if content arrives after the terminal marker."""
        if self._complete:
            raise RemoteProtocolError(
                f"{what} arrived after the stream's terminal marker", kind="event_after_end"
            )

    @abc.abstractmethod
    def _feed(self, data: bytes, out: list[Event]) -> None: ...

    @abc.abstractmethod
    def _end(self, out: list[Event]) -> None: ...


class SSEJSONDecoder(DialectDecoder):
    """A dialect framed as SSE whose events carry JSON in ``data``.

    Subclasses implement :meth:`_on_event`; comments become :class:`KeepAlive`.
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__()
        self._sse = SSEDecoder(max_line_bytes=max_line_bytes)

    def _feed(self, data: bytes, out: list[Event]) -> None:
        for item in self._sse.feed(data):
            if type(item) is SSEComment:
                out.append(KeepAlive(item.text))
            else:
                assert type(item) is SSEEvent
                self._on_event(item, out)

    def _end(self, out: list[Event]) -> None:
        eoi = self._sse.end()
        self.truncated = eoi.truncated
        for item in eoi.items:
            if type(item) is SSEEvent:
                self._on_event(item, out)

    @abc.abstractmethod
    def _on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """Translate one SSE event (``event.data`` usually holds JSON) into events."""
