"""The best JSON value for an incomplete JSON text: tool arguments as they stream.

A model streams a tool call's arguments as JSON fragments; a UI wants to show
the object while it is being written. :func:`parse_partial` gives the best
value for a prefix, and :class:`PartialJSONParser` does the same incrementally.

Theory of operation
-------------------
The parser is a resumable scanner, not a second JSON implementation: it walks
each fragment once, token by token (regular expressions jump over string runs,
whitespace and digits, so there is no per-character Python loop on the bulk of
the text), and keeps just enough state to resume in the middle of any token:

* a stack of open containers (``{`` or ``[``), and for each one its *cut*: the
  offset just after its last complete member (or after its opening bracket);
* what it expects next (a value, a key, a colon, a comma or closer), or which
  token it is in the middle of (a string -- with a pending escape -- a number,
  or a literal such as ``true``).

:meth:`PartialJSONParser.value` turns that state into a JSON text that
``json.loads`` accepts: the text up to a safe point plus the closers of the
open containers. A string value being written is closed where it stands (an
escape sequence cut in half is dropped); a key without its value, or a literal
or number that is not yet valid (``tr``, ``-``, ``1.``), is dropped by cutting
back to the container's cut. So ``{"city": "Par`` gives ``{"city": "Par"}``
and ``{"city": "Paris", "unit": "cel`` gives ``{"city": "Paris", "unit":
"cel"}``, but ``{"city": "Paris", "un`` gives ``{"city": "Paris"}``.

A number at the very end is kept when it is valid as it stands (``12`` may yet
become ``123``: a UI sees it grow). Text that breaks the grammar puts the
parser in an error state for good: :meth:`~PartialJSONParser.value` returns
``None`` from then on. Nothing here raises for bad JSON; only the size bound
raises.
"""

from __future__ import annotations

import enum
import json
import re

from streamcore._errors import RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_DEPTH",
    "PartialJSONParser",
    "parse_complete",
    "parse_partial",
]

DEFAULT_MAX_CHARS = 16 << 20
"""16 Mi characters: far above any real tool-argument object, a bound on memory."""

DEFAULT_MAX_DEPTH = 512
"""Deeper nesting than this is treated as invalid (``json.loads`` would recurse)."""


class _Mode(enum.Enum):
    VALUE = enum.auto()  # a value must come (top level, after ':' or ',' in an array)
    VALUE_OR_CLOSE = enum.auto()  # just after '[': a value or ']'
    KEY = enum.auto()  # after ',' in an object: a key string
    KEY_OR_CLOSE = enum.auto()  # just after '{': a key string or '}'
    COLON = enum.auto()  # after a key
    AFTER_VALUE = enum.auto()  # after a member: ',' or the closer
    STRING = enum.auto()  # inside a string (key or value)
    NUMBER = enum.auto()  # inside a number
    LITERAL = enum.auto()  # inside true / false / null
    DONE = enum.auto()  # a complete top-level value: only whitespace may follow
    ERROR = enum.auto()  # the text broke the grammar; stays so


_WS = re.compile(r"[ \t\n\r]*")
_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]*')
_NUMBER_RUN = re.compile(r"[0-9eE+\-.]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = frozenset('"\\/bfnrt')
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_CLOSER = {"{": "}", "[": "]"}


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where ``pattern`` (which matches the empty string) stops matching from ``pos``."""
    match = pattern.match(text, pos)
    assert match is not None
    return match.end()


class PartialJSONParser:
    """Feed JSON text in fragments; ask for the best value of what has arrived so far.

    :meth:`feed` costs time proportional to the fragment: the scanner state
    (open containers, whether it is inside a string or an escape, where each
    container can be cut) is kept between fragments. :meth:`value` parses the
    repaired text with ``json.loads``, so it costs time proportional to the text
    so far (at C speed); call it when you want to draw, not per byte.

    >>> p = PartialJSONParser()
    >>> p.feed('{"location": "Paris, Fr')
    >>> p.value()
    {'location': 'Paris, Fr'}
    >>> p.feed('ance", "unit": "celsius"}')
    >>> p.value()
    {'location': 'Paris, France', 'unit': 'celsius'}
    >>> p.complete
    True
    """

    def __init__(
        self, *, max_chars: int = DEFAULT_MAX_CHARS, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self._max_chars = max_chars
        self._max_depth = max_depth
        self._parts: list[str] = []
        self._size = 0
        self._mode = _Mode.VALUE
        self._kinds: list[str] = []  # open containers, innermost last
        self._cuts: list[int] = []  # per container: offset to cut back to
        # Inside a string:
        self._in_key = False
        self._escape = 0  # 0: none; 1: after '\'; 2..5: after '\u' and n-2 hex digits
        self._escape_start = -1  # offset of the pending escape's backslash
        self._escape_hex = ""
        self._surrogate_at = -1  # offset of a trailing \uD800-\uDBFF escape, if last
        # Inside a number or literal:
        self._token: list[str] = []
        self._literal = ""

    @property
    def complete(self) -> bool:
        """True once a whole top-level JSON value has been read (only whitespace may follow)."""
        return self._mode is _Mode.DONE

    @property
    def failed(self) -> bool:
        """True once the text broke the JSON grammar; :meth:`value` is then ``None`` for good."""
        return self._mode is _Mode.ERROR

    def feed(self, fragment: str) -> None:
        """Scan the next fragment of JSON text.

        Never raises for bad JSON (the parser just fails, see :attr:`failed`);
        raises :class:`~streamcore.RemoteProtocolError` (``kind="json_too_large"``)
        when the text would exceed ``max_chars``.

        >>> p = PartialJSONParser()
        >>> for piece in ['[1, 2', '0, tr', 'ue]']:
        ...     p.feed(piece)
        ...     print(p.value())
        [1, 2]
        [1, 20]
        [1, 20, True]
        """
        if not fragment:
            return
        if self._size + len(fragment) > self._max_chars:
            raise RemoteProtocolError(
                f"partial JSON text would exceed {self._max_chars} characters (max_chars); "
                "raise the limit or check what the provider is streaming",
                kind="json_too_large",
            )
        base = self._size
        self._size += len(fragment)
        if self._mode is not _Mode.ERROR:
            self._parts.append(fragment)
            self._scan(fragment, base)

    def value(self) -> object | None:
        """The best JSON value for the text so far, or ``None`` if there is none yet.

        ``None`` also when the text is not JSON at all; never raises. For a
        complete document this equals ``json.loads`` of it.

        >>> parse_partial('{"city": "Paris", "days": [1, 2, ')
        {'city': 'Paris', 'days': [1, 2]}
        """
        mode = self._mode
        if mode is _Mode.ERROR or self._size == 0:
            return None
        text = "".join(self._parts)
        self._parts[:] = [text]  # later joins start from one piece
        if mode is _Mode.DONE:
            return parse_complete(text)
        end = self._size
        suffix = ""
        if mode is _Mode.STRING and not self._in_key:
            if self._surrogate_at >= 0:
                end = self._surrogate_at  # half of a pair: wait for the other half
            elif self._escape:
                end = self._escape_start
            suffix = '"'
        elif mode is _Mode.NUMBER and _NUMBER.fullmatch("".join(self._token)) is not None:
            pass  # a valid number at the end is kept as it stands
        elif mode is not _Mode.AFTER_VALUE:
            if not self._cuts:
                return None  # an incomplete scalar at top level
            end = self._cuts[-1]
        closers = "".join([_CLOSER[k] for k in reversed(self._kinds)])
        return parse_complete(text[:end] + suffix + closers)

    # The scanner. Offsets are absolute: base is the offset of chunk[0].

    def _scan(self, chunk: str, base: int) -> None:
        i = 0
        n = len(chunk)
        while i < n:
            mode = self._mode
            if mode is _Mode.STRING:
                i = self._scan_string(chunk, i, base)
                continue
            if mode is _Mode.NUMBER:
                j = _skip(_NUMBER_RUN, chunk, i)
                self._token.append(chunk[i:j])
                if j == n:
                    return
                if _NUMBER.fullmatch("".join(self._token)) is None:
                    self._fail()
                    return
                self._token.clear()
                self._value_done(base + j)
                i = j
                continue
            if mode is _Mode.LITERAL:
                need = self._literal
                got = chunk[i : i + len(need)]
                if not need.startswith(got):
                    self._fail()
                    return
                i += len(got)
                if len(got) < len(need):
                    self._literal = need[len(got) :]
                    return
                self._literal = ""
                self._value_done(base + i)
                continue
            i = _skip(_WS, chunk, i)
            if i == n:
                return
            c = chunk[i]
            if mode is _Mode.AFTER_VALUE:
                if c == ",":
                    self._mode = _Mode.KEY if self._kinds[-1] == "{" else _Mode.VALUE
                elif c == _CLOSER[self._kinds[-1]]:
                    self._kinds.pop()
                    self._cuts.pop()
                    self._value_done(base + i + 1)
                else:
                    self._fail()
                    return
                i += 1
            elif mode is _Mode.VALUE or mode is _Mode.VALUE_OR_CLOSE:
                if c == "]" and mode is _Mode.VALUE_OR_CLOSE:
                    self._kinds.pop()
                    self._cuts.pop()
                    self._value_done(base + i + 1)
                    i += 1
                elif not self._start_value(chunk, i, base):
                    return
                else:
                    i += 1
            elif mode is _Mode.KEY or mode is _Mode.KEY_OR_CLOSE:
                if c == '"':
                    self._open_string(key=True)
                elif c == "}" and mode is _Mode.KEY_OR_CLOSE:
                    self._kinds.pop()
                    self._cuts.pop()
                    self._value_done(base + i + 1)
                else:
                    self._fail()
                    return
                i += 1
            elif mode is _Mode.COLON:
                if c != ":":
                    self._fail()
                    return
                self._mode = _Mode.VALUE
                i += 1
            else:  # DONE: only whitespace may follow a complete value
                self._fail()
                return

    def _start_value(self, chunk: str, i: int, base: int) -> bool:
        """Begin the value whose first character is ``chunk[i]``; False if it cannot start one."""
        c = chunk[i]
        if c == '"':
            self._open_string(key=False)
        elif c == "{" or c == "[":
            if len(self._kinds) >= self._max_depth:
                self._fail()
                return False
            self._kinds.append(c)
            self._cuts.append(base + i + 1)
            self._mode = _Mode.KEY_OR_CLOSE if c == "{" else _Mode.VALUE_OR_CLOSE
        elif c == "-" or "0" <= c <= "9":
            self._mode = _Mode.NUMBER
            self._token.clear()
            self._token.append(c)
        elif c in _LITERALS:
            self._mode = _Mode.LITERAL
            self._literal = _LITERALS[c][1:]
        else:
            self._fail()
            return False
        return True

    def _open_string(self, *, key: bool) -> None:
        self._mode = _Mode.STRING
        self._in_key = key
        self._escape = 0
        self._surrogate_at = -1

    def _scan_string(self, chunk: str, i: int, base: int) -> int:
        """Consume string content from ``chunk[i]``; returns where scanning goes on."""
        n = len(chunk)
        while i < n:
            if self._escape:
                i = self._scan_escape(chunk, i, base)
                if self._mode is _Mode.ERROR:
                    return n
                continue
            j = _skip(_STRING_RUN, chunk, i)
            if j > i:
                self._surrogate_at = -1
            if j == n:
                return n
            c = chunk[j]
            if c == '"':
                if self._in_key:
                    self._mode = _Mode.COLON
                else:
                    self._value_done(base + j + 1)
                return j + 1
            if c == "\\":
                self._escape = 1
                self._escape_start = base + j
                i = j + 1
                continue
            self._fail()  # a raw control character: JSON forbids it inside strings
            return n
        return n

    def _scan_escape(self, chunk: str, i: int, base: int) -> int:
        c = chunk[i]
        if self._escape == 1:
            if c == "u":
                self._escape = 2
                self._escape_hex = ""
            elif c in _SIMPLE_ESCAPES:
                self._escape = 0
                self._surrogate_at = -1
            else:
                self._fail()
            return i + 1
        if c not in _HEX:
            self._fail()
            return i + 1
        self._escape_hex += c
        if len(self._escape_hex) < 4:
            self._escape += 1
            return i + 1
        code = int(self._escape_hex, 16)
        self._escape = 0
        # A high surrogate at the very end is half a character; value() drops it.
        self._surrogate_at = self._escape_start if 0xD800 <= code <= 0xDBFF else -1
        return i + 1

    def _value_done(self, end: int) -> None:
        """A value ended at offset ``end``: it becomes the enclosing container's cut."""
        if self._cuts:
            self._cuts[-1] = end
            self._mode = _Mode.AFTER_VALUE
        else:
            self._mode = _Mode.DONE

    def _fail(self) -> None:
        self._mode = _Mode.ERROR
        self._kinds.clear()
        self._cuts.clear()
        self._token.clear()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_complete(text: str) -> object | None:
    """``json.loads(text)`` for a complete JSON document, ``None`` for anything else.

    Never raises: incomplete or invalid text, ``NaN``/``Infinity`` (not JSON)
    and nesting too deep for ``json`` all give ``None``.

    >>> parse_complete('{"city": "Paris"}'), parse_complete('{"city": "Par')
    ({'city': 'Paris'}, None)
    """
    try:
        value: object = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value


def parse_partial(text: str) -> object | None:
    """The best JSON value for ``text``, a possibly incomplete JSON document.

    Open strings, arrays and objects are closed; a dangling key, or a literal or
    number that is not valid yet, is dropped. Returns ``None`` when there is no
    value yet or the text is not JSON. Never raises. For a complete document the
    result equals ``json.loads(text)``.

    >>> parse_partial('{"city": "Par')
    {'city': 'Par'}
    >>> parse_partial('{"city": "Paris", "unit": "c')
    {'city': 'Paris', 'unit': 'c'}
    >>> parse_partial('{"city": "Paris", "un')
    {'city': 'Paris'}
    >>> parse_partial('[{"id": 1, "done": fal')
    [{'id': 1}]
    >>> parse_partial('{"unit": "celsius", "temperature": 21.')
    {'unit': 'celsius'}
    >>> parse_partial("") is None, parse_partial("{]") is None
    (True, True)
    """
    parser = PartialJSONParser(max_chars=max(len(text), 1))
    parser.feed(text)
    return parser.value()
