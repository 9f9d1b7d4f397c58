"""The two error families of streamcore.

Whose fault is it? That is the first thing a caller needs to know when a stream
goes wrong, so every error streamcore raises is one of two kinds (after h11):

* :class:`RemoteProtocolError` -- the peer sent bytes that break the grammar
  (invalid JSON in a data line, a line over the size limit, an impossible event
  order). Retrying may help; the bug is not in the caller's code.
* :class:`LocalProtocolError` -- the caller misused the API (fed data after
  ``end()``, encoded an event id containing a newline).

Both carry ``kind``, a short machine-readable string (``"line_too_long"``,
``"invalid_json"``, ...), so code can branch without parsing messages.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "StreamcoreError"]


class StreamcoreError(Exception):
    """Base class of every error streamcore raises on purpose.

    >>> err = RemoteProtocolError("bad JSON on line 3", kind="invalid_json")
    >>> (err.kind, str(err))
    ('invalid_json', 'bad JSON on line 3')
    """

    kind: str

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, kind={self.kind!r})"


class RemoteProtocolError(StreamcoreError):
    """The peer (a provider, a server) sent something the protocol forbids."""


class LocalProtocolError(StreamcoreError):
    """The caller used streamcore's API in a way it does not allow."""
