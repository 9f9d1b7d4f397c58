"""Streamed JSON array framing: ``[{...},{...}]`` arriving a piece at a time.

Gemini's ``streamGenerateContent`` without ``alt=sse`` answers with one JSON
array whose elements (``GenerateContentResponse`` objects) are sent as they are
produced: ``[{...}\\r\\n,\\r\\n{...}\\r\\n]``. Waiting for the closing bracket
would defeat streaming, so this decoder yields each element as soon as its last
byte arrives.

Theory of operation
-------------------
A table (:data:`_TRANSITIONS`) lists the legal moves between the phases of the
array grammar: before ``[``; just after it; inside an element; after an
element; after a comma; after ``]``. Between elements the decoder keeps no
bytes at all: whitespace is skipped and the one structural byte it expects
(``[``, ``,``, ``]``) moves it to the next phase.

Inside an element it keeps a small scanner state -- bracket depth, whether it
is inside a string, whether the last byte was a backslash -- and the offset
where scanning resumes, so each byte is looked at once however the element is
chunked. The scanner jumps with compiled regexes rather than walking byte by
byte: outside strings to the next bracket or brace, skipping a whole string in
the same step; inside a string that a chunk boundary left open, to the next
``"`` or ``\\``. It only finds where the element ends; the element's bytes are
then decoded as UTF-8 and parsed by :func:`json.loads`, which checks
everything else (commas and colons inside it, matching bracket kinds).
Multi-byte UTF-8 characters cannot confuse the scanner: none of their bytes
is ASCII. A scalar element (``42``, ``true``) ends at the first byte that
cannot belong to it, so a number is only returned once a delimiter shows it
is complete.

The buffer holds only the current element and is bounded by
``max_element_bytes``, checked as soon as an unfinished element outgrows it.

Lifecycle, as in :mod:`streamcore.framing`: open; ``end()`` once; or failed, when
the stored error is raised again by every later call.
"""

from __future__ import annotations

import enum
import re
from typing import NoReturn

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.framing import DEFAULT_MAX_LINE_BYTES, EndOfInput, FramingDecoder

__all__ = ["JSONArrayDecoder"]


class _Phase(enum.Enum):
    """Where the decoder is in ``[ element , element ]``."""

    BEFORE_ARRAY = "before the opening bracket"
    BEFORE_FIRST = "after the opening bracket"
    IN_ELEMENT = "inside an element"
    AFTER_ELEMENT = "after an element"
    AFTER_COMMA = "after a comma"
    CLOSED = "after the closing bracket"

    # Members are singletons compared by identity: hash them by identity too, in C
    # (Enum's own __hash__ is Python code, and _goto hashes twice per move).
    __hash__ = object.__hash__


_TRANSITIONS: dict[_Phase, frozenset[_Phase]] = {
    _Phase.BEFORE_ARRAY: frozenset({_Phase.BEFORE_FIRST}),  # `[`
    _Phase.BEFORE_FIRST: frozenset({_Phase.IN_ELEMENT, _Phase.CLOSED}),  # element, or `]`
    _Phase.IN_ELEMENT: frozenset({_Phase.AFTER_ELEMENT}),  # the element's last byte
    _Phase.AFTER_ELEMENT: frozenset({_Phase.AFTER_COMMA, _Phase.CLOSED}),  # `,` or `]`
    _Phase.AFTER_COMMA: frozenset({_Phase.IN_ELEMENT}),  # the next element
    _Phase.CLOSED: frozenset(),  # only whitespace may follow
}
"""The legal moves of the array grammar; :meth:`JSONArrayDecoder._goto` enforces them."""


class _Kind(enum.Enum):
    """How the scanner finds the end of the current element."""

    CONTAINER = "object or array"  # the bracket that brings the depth back to 0
    STRING = "string"  # the first unescaped quote
    SCALAR = "number or literal"  # the first byte that cannot be part of it


_NOT_WS = re.compile(rb"[^ \t\r\n]")
# Outside strings: everything up to the next bracket, complete strings included, in
# one C-level step. It stops early at the opening quote of a string not complete yet.
_SKIP = re.compile(rb'(?:[^"\[\]{}]+|"[^"\\]*(?:\\.[^"\\]*)*")*', re.DOTALL)
_STRING_SPECIAL = re.compile(rb'["\\]')
# Bytes a JSON number or literal (or Python's NaN/Infinity) is made of; json.loads
# checks the token itself, the scanner only needs to know where it stops.
_SCALAR_BYTES = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+-."
_SCALAR_END = re.compile(rb"[^0-9A-Za-z+\-.]")

_OPEN_BRACKET = 0x5B  # [
_CLOSE_BRACKET = 0x5D  # ]
_OPEN_BRACE = 0x7B  # {
_COMMA = 0x2C
_QUOTE = 0x22
_BACKSLASH = 0x5C


class JSONArrayDecoder(FramingDecoder[object]):
    """Yield the elements of a streamed JSON array as each one completes.

    Elements are counted from 0 in error messages and details.

    >>> decoder = JSONArrayDecoder()
    >>> decoder.feed(b'[{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}]}\\r\\n,\\r\\n{"cand')
    [{'candidates': [{'content': {'parts': [{'text': 'Hi'}]}}]}]
    >>> decoder.feed(b'idates":[{"finishReason":"STOP"}]}\\r\\n]')
    [{'candidates': [{'finishReason': 'STOP'}]}]
    >>> decoder.end()
    EndOfInput(items=(), truncated=False, detail='')

    Errors (:class:`~streamcore.RemoteProtocolError`): ``invalid_json`` (no
    ``[``, bytes between elements other than one comma and whitespace, a
    trailing comma, content after ``]``, an element that is not valid JSON),
    ``invalid_utf8`` (an element that is not UTF-8) and ``element_too_long``.
    Elements completed before the bad bytes are returned first; the next call
    raises, and so does every call after it.
    """

    _ITEM = "element"
    _BAD_JSON_HINT = "the server sent a malformed element"

    def __init__(self, *, max_element_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_element_bytes < 1:
            raise LocalProtocolError(
                f"max_element_bytes must be at least 1, got {max_element_bytes}",
                kind="invalid_argument",
            )
        super().__init__()
        self._max_element_bytes = max_element_bytes
        self._buf = bytearray()
        self._offset = 0  # position of _buf[0] in the whole body, for error messages
        self._phase = _Phase.BEFORE_ARRAY
        self._index = 0  # of the element being read (= number of elements completed)
        # Scanner state of the current element (meaningful in IN_ELEMENT only).
        self._kind = _Kind.CONTAINER
        self._start = 0  # where the element begins in _buf
        self._scan = 0  # where scanning resumes in _buf
        self._depth = 0
        self._in_string = False
        self._escape = False  # the last byte scanned was a backslash inside a string

    def end(self) -> EndOfInput[object]:
        """Signal the end of the body; say whether the array was complete.

        An array that was never closed (the connection dropped) gives
        ``truncated=True`` and a ``detail`` saying where the input stopped; so
        does an empty body, which holds no array at all. It never raises for
        that: a cut is not a grammar error.
        """
        self._begin_end()
        phase = self._phase
        unfinished = len(self._buf) - self._start
        self._buf.clear()
        if phase is _Phase.CLOSED:
            return EndOfInput()
        if phase is _Phase.BEFORE_ARRAY:
            detail = "input ended before the array began (no '[' received)"
        elif phase is _Phase.IN_ELEMENT:
            detail = f"input ended inside element {self._index} after {unfinished} of its bytes"
        else:
            detail = f"input ended before the closing bracket, after {self._index} element(s)"
        return EndOfInput(truncated=True, detail=detail)

    def _item_name(self) -> str:
        return (
            f"JSON array element {self._index} (0-based, at byte {self._start_abs()} of the body)"
        )

    def _start_abs(self) -> int:
        return self._offset + self._start

    def _goto(self, phase: _Phase) -> None:
        if phase not in _TRANSITIONS[self._phase]:
            raise LocalProtocolError(
                f"JSONArrayDecoder cannot move from {self._phase.value} to {phase.value}; "
                "this is a bug in streamcore, please report it",
                kind="illegal_transition",
            )
        self._phase = phase

    def _feed(self, data: bytes, out: list[object]) -> None:
        buf = self._buf
        buf += data
        pos = 0  # everything before pos is consumed (used when not inside an element)
        try:
            while True:
                if self._phase is _Phase.IN_ELEMENT:
                    end = self._scan_element()
                    if end < 0:
                        self._check_size(len(buf) - self._start, complete=False)
                        return
                    out.append(self._finish_element(end))
                    pos = end
                    continue
                match = _NOT_WS.search(buf, pos)
                if match is None:
                    pos = len(buf)
                    return
                pos = self._on_structural(match.start())
        finally:
            # Keep only the unfinished element: between elements nothing is buffered.
            drop = self._start if self._phase is _Phase.IN_ELEMENT else pos
            if drop:
                del buf[:drop]
                self._offset += drop
                self._start -= drop
                self._scan -= drop

    def _on_structural(self, i: int) -> int:
        """Handle ``_buf[i]``, the next non-whitespace byte outside an element.

        Returns where reading goes on: past the byte, or at it if it begins an element.
        """
        byte = self._buf[i]
        phase = self._phase
        if phase is _Phase.BEFORE_ARRAY:
            if byte != _OPEN_BRACKET:
                self._fail(i, "expected the '[' that opens the array")
            self._goto(_Phase.BEFORE_FIRST)
        elif phase is _Phase.AFTER_ELEMENT:
            if byte == _COMMA:
                self._goto(_Phase.AFTER_COMMA)
            elif byte == _CLOSE_BRACKET:
                self._goto(_Phase.CLOSED)
            else:
                self._fail(i, f"expected ',' or ']' after element {self._index - 1}")
        elif phase is _Phase.CLOSED:
            self._fail(i, "expected only whitespace after the closing ']' of the array")
        elif byte == _CLOSE_BRACKET:
            if phase is _Phase.AFTER_COMMA:
                self._fail(i, "a trailing comma before ']' is not JSON")
            self._goto(_Phase.CLOSED)
        else:
            self._begin_element(i)
            return i
        return i + 1

    def _begin_element(self, i: int) -> None:
        byte = self._buf[i]
        if byte in b"{[":
            self._kind, self._depth, self._in_string = _Kind.CONTAINER, 1, False
        elif byte == _QUOTE:
            self._kind, self._depth, self._in_string = _Kind.STRING, 0, True
        elif byte in _SCALAR_BYTES:
            self._kind, self._depth, self._in_string = _Kind.SCALAR, 0, False
        else:
            self._fail(i, f"expected element {self._index} (0-based) to begin with a JSON value")
        self._start = i
        self._scan = i + 1
        self._escape = False
        self._goto(_Phase.IN_ELEMENT)

    def _scan_element(self) -> int:
        """Scan on from ``_scan``; the end offset of the element, or -1 if it is unfinished."""
        buf = self._buf
        size = len(buf)
        scan = self._scan
        if self._kind is _Kind.SCALAR:
            match = _SCALAR_END.search(buf, scan)
            if match is None:
                self._scan = size
                return -1
            return match.start()
        depth = self._depth
        in_string = self._in_string
        if self._escape:  # the byte after a backslash that ended the previous chunk
            if scan >= size:
                return -1
            scan += 1
            self._escape = False
        while True:
            if in_string:
                match = _STRING_SPECIAL.search(buf, scan)
                if match is None:
                    scan = size
                    break
                i = match.start()
                if buf[i] == _BACKSLASH:
                    if i + 1 >= size:
                        self._escape = True
                        scan = size
                        break
                    scan = i + 2
                    continue
                in_string = False
                scan = i + 1
                if depth == 0:
                    return scan
            else:
                skipped = _SKIP.match(buf, scan)
                assert skipped is not None  # the pattern also matches the empty string
                scan = skipped.end()
                if scan >= size:
                    break
                byte = buf[scan]
                scan += 1
                if byte == _QUOTE:
                    in_string = True
                elif byte in (_OPEN_BRACE, _OPEN_BRACKET):
                    depth += 1
                else:
                    depth -= 1
                    if depth == 0:
                        return scan
        self._scan = scan
        self._depth = depth
        self._in_string = in_string
        return -1

    def _finish_element(self, end: int) -> object:
        """Parse ``_buf[_start:end]``, the complete element, and move past it."""
        self._check_size(end - self._start, complete=True)
        value = self._load_item(self._buf[self._start : end])
        self._index += 1
        self._goto(_Phase.AFTER_ELEMENT)
        return value

    def _check_size(self, size: int, *, complete: bool) -> None:
        if size <= self._max_element_bytes:
            return
        state = "has" if complete else "is unfinished and already has"
        raise RemoteProtocolError(
            f"JSON array element {self._index} (0-based, at byte {self._start_abs()} of the "
            f"body) {state} {size} bytes, over the {self._max_element_bytes}-byte limit "
            "(max_element_bytes); raise the limit if such large elements are expected",
            kind="element_too_long",
        )

    def _fail(self, i: int, expectation: str) -> NoReturn:
        byte = self._buf[i : i + 1]
        raise RemoteProtocolError(
            f"the body is not a JSON array: {expectation}, but got {bytes(byte)!r} at byte "
            f"{self._offset + i} ({self._phase.value}); check that the request asked for a "
            "JSON array stream (Gemini streamGenerateContent without alt=sse)",
            kind="invalid_json",
        )
