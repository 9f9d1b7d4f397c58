"""NDJSON framing: one JSON value per line (Ollama ``/api/chat``, ``/api/generate``).

Theory of operation
-------------------
The decoder owns one ``bytearray``. ``feed`` appends the chunk and looks for
LF from ``_search``, the first byte not yet known to be inside the current
(incomplete) line, so a long line that arrives in small pieces is scanned once
in total, not once per piece. Every complete line is cut out, its optional
trailing CR dropped, and, unless it is blank, decoded as UTF-8 and parsed with
:func:`json.loads`. The consumed prefix of the buffer is dropped once per
``feed``, not once per line.

Chunk boundaries never matter: the bytes of a line are only decoded once the
whole line is there, so a UTF-8 character split across two chunks is whole by
then. The only thing kept between calls is the unfinished line, and it is
bounded by ``max_line_bytes`` (checked as soon as it grows past the limit,
before its LF arrives).

State: the buffer and search offset; ``_line_no``, the number of complete
lines seen (blank ones included, so error messages match an editor's line
numbers); and the lifecycle of :mod:`streamcore.framing` -- open, then
``end()`` called once, or failed (a stored error re-raised by every later call).
"""

from __future__ import annotations

import json
import re

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.framing import DEFAULT_MAX_LINE_BYTES, EndOfInput, FramingDecoder

__all__ = ["NDJSONDecoder"]

_LF = 0x0A
_CR = 0x0D
# JSON's own whitespace (RFC 8259 section 2); bytes.strip() would also drop \v and \f.
_JSON_WS = b" \t\r\n"
_NOT_WS = re.compile(rb"[^ \t\r\n]")


class NDJSONDecoder(FramingDecoder[object]):
    """Split an NDJSON body into parsed JSON values, however the bytes are chunked.

    Lines end in LF (a CR before it is dropped); blank lines are skipped. Each
    value is what :func:`json.loads` returns for its line.

    >>> decoder = NDJSONDecoder()
    >>> decoder.feed(b'{"message":{"role":"assistant","content":"Hel')
    []
    >>> decoder.feed(b'lo"},"done":false}\\n{"done":true,"done_reason":"stop"}')
    [{'message': {'role': 'assistant', 'content': 'Hello'}, 'done': False}]
    >>> decoder.end()  # the last line had no LF but is complete JSON
    EndOfInput(items=({'done': True, 'done_reason': 'stop'},), truncated=False, detail='')

    Errors (:class:`~streamcore.RemoteProtocolError`): ``line_too_long``,
    ``invalid_utf8``, ``invalid_json``. Values completed before the bad line
    are returned first; the next call raises, and so does every call after it.
    """

    _ITEM = "line"
    _BAD_JSON_HINT = "check that the endpoint streams NDJSON"

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise LocalProtocolError(
                f"max_line_bytes must be at least 1, got {max_line_bytes}",
                kind="invalid_argument",
            )
        super().__init__()
        self._max_line_bytes = max_line_bytes
        self._buf = bytearray()
        self._search = 0
        self._line_no = 0

    def end(self) -> EndOfInput[object]:
        """Signal the end of the body; parse a last line that had no LF.

        Many servers omit the final newline, so a last line that parses as JSON
        is returned as an item. One that does not parse means the body was cut
        off mid-line: ``truncated`` is true and ``detail`` says where. That is a
        dropped connection, not a grammar error, so it does not raise.
        """
        self._begin_end()
        rest = bytes(self._buf)
        self._buf.clear()
        if not rest.strip(_JSON_WS):
            return EndOfInput()
        line_no = self._line_no + 1
        try:
            value = json.loads(rest.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return EndOfInput(
                truncated=True,
                detail=(
                    f"input ended inside line {line_no} after {len(rest)} bytes "
                    "with no newline and incomplete JSON; the connection was probably cut"
                ),
            )
        return EndOfInput(items=(value,))

    def _feed(self, data: bytes, out: list[object]) -> None:
        buf = self._buf
        buf += data
        start = 0
        try:
            while True:
                lf = buf.find(_LF, self._search)
                if lf < 0:
                    break
                end = lf - 1 if lf > start and buf[lf - 1] == _CR else lf
                self._line_no += 1
                self._check_length(end - start)
                # Blank lines are skipped without copying them out of the buffer.
                if _NOT_WS.search(buf, start, end) is not None:
                    out.append(self._load_item(buf[start:end]))
                start = self._search = lf + 1
            pending = len(buf) - start
            # A CR at the very end may be the first half of a CRLF: not line content.
            if pending > self._max_line_bytes and buf[-1] == _CR:
                pending -= 1
            self._check_length(pending, incomplete=True)
        finally:
            del buf[:start]
            self._search = len(buf)

    def _check_length(self, length: int, *, incomplete: bool = False) -> None:
        if length <= self._max_line_bytes:
            return
        line_no = self._line_no + 1 if incomplete else self._line_no
        state = "is still growing and already has" if incomplete else "has"
        raise RemoteProtocolError(
            f"NDJSON line {line_no} {state} {length} bytes, over the "
            f"{self._max_line_bytes}-byte limit (max_line_bytes); raise the limit "
            "if such long lines are expected, or check that the endpoint streams NDJSON",
            kind="line_too_long",
        )

    def _item_name(self) -> str:
        return f"NDJSON line {self._line_no}"
