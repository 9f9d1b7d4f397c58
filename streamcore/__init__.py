"""streamcore: the sans-IO core for streaming LLM responses.

Bytes in, typed events out. Nothing in this package does I/O, imports an async
framework or reads a clock: drivers (``streamcore.adapters`` for trio, or your
own) move the bytes and pass the time in.
"""

from __future__ import annotations

from streamcore._errors import LocalProtocolError, RemoteProtocolError, StreamcoreError

__all__ = ["LocalProtocolError", "RemoteProtocolError", "StreamcoreError", "__version__"]

__version__ = "0.1.0"
