"""Server-sent events: an incremental decoder and an encoder.

The rules are the WHATWG HTML standard's, section "Interpreting an event
stream" (https://html.spec.whatwg.org/multipage/server-sent-events.html), which
is what browsers implement and what OpenAI, Anthropic and most LLM APIs send.

Theory of operation
-------------------
Bytes go through three steps, all inside :meth:`SSEDecoder.feed`:

1. **Lines.** The decoder owns one ``bytearray``, ``_buf``, holding the start of
   the line that is not finished yet. It never holds a line break: a chunk with
   no CR or LF is appended and nothing else happens (the common case when the
   transport hands over a few bytes at a time), so a long line arriving in small
   pieces is scanned once when its end arrives, not once per piece. A chunk with
   a line break is joined to ``_buf``; everything up to the last line break is
   the *region* of complete lines, and what follows goes back into ``_buf``. CR,
   LF and CRLF all end a line. A CR that is the last byte of a chunk ends its
   line at once (so an event is never held back waiting for the next byte); the
   decoder remembers it in ``_cr_end`` and drops an LF that starts the next
   chunk, since the two were one CRLF.

2. **Fields.** Each line of the region is a blank line (dispatch), a comment
   (``:`` first), or ``name[:[ ]value]``. ``data`` lines are kept as bytes in
   ``_data`` and decoded once, at dispatch, so a UTF-8 character split across
   chunks is whole by then; invalid UTF-8 becomes U+FFFD. ``event`` sets the
   event type, ``id`` the last event ID (unless it contains NUL), ``retry`` the
   reconnection time (ASCII digits only); other names are ignored. A UTF-8 BOM
   is dropped from the start of the first line only.

3. **Events.** A blank line turns the data and event type into an
   :class:`SSEEvent` (or into nothing when no ``data`` line came) and clears
   them; comments become :class:`SSEComment` at once.

Fast path: whole events of the two shapes LLM APIs send -- one ``data:`` line
(OpenAI), or an ``event:`` line and a ``data:`` line (Anthropic) -- are decoded
a region at a time (one ``decode`` and one ``split`` for OpenAI's) instead of
line by line. A region is cut at its first and last blank lines so that an event
split across two chunks only sends its own lines down the general path. Both
paths give the same events; the property tests check it under every chunking.

Memory is bounded: ``_buf`` by ``max_line_bytes`` (checked as soon as the
unfinished line outgrows it) and ``_data`` by ``max_event_bytes``.

Lifecycle (``_Phase``): ``OPEN`` until :meth:`~SSEDecoder.end` (``ENDED``) or
a :class:`~streamcore.RemoteProtocolError` (``FAILED``); the moves are the
``_TRANSITIONS`` table. The error rule is :mod:`streamcore.framing`'s: items
completed before the bad line are returned, the next call raises, and a failed
decoder keeps raising.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, TypeAlias

from streamcore._errors import LocalProtocolError, RemoteProtocolError
from streamcore.framing import DEFAULT_MAX_LINE_BYTES, EndOfInput

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "SSEComment",
    "SSEDecoder",
    "SSEEvent",
    "SSEItem",
    "encode_comment",
    "encode_event",
]

DEFAULT_MAX_EVENT_BYTES = 16 << 20
"""16 MiB: the most ``data`` one event may carry (all its data lines together)."""


class SSEEvent(NamedTuple):
    """A dispatched event: its data, its type and the last event ID as of it.

    ``event`` is ``"message"`` when the stream gave no (or an empty) ``event``
    field. ``id`` persists across events: it is whatever the most recent ``id``
    field set, ``""`` if none did.

    >>> SSEEvent('{"type":"ping"}', event="ping")
    SSEEvent(data='{"type":"ping"}', event='ping', id='')

    It is a :class:`typing.NamedTuple`, not a frozen dataclass, for speed: the
    decoder builds one per event in one C call instead of four, which made
    decoding OpenAI streams read 1-1500 bytes at a time 12% faster
    (``bench/sse_decode.py``). It is immutable and compared by value; being a
    tuple, it also unpacks (``data, event, id = item``) and equals a plain
    tuple of the same three strings.
    """

    data: str
    event: str = "message"
    id: str = ""


class SSEComment(NamedTuple):
    """A comment line (``: text``), surfaced because keep-alives reset idle timeouts.

    >>> SSEComment("OPENROUTER PROCESSING").text
    'OPENROUTER PROCESSING'
    """

    text: str


SSEItem: TypeAlias = SSEEvent | SSEComment
"""What :meth:`SSEDecoder.feed` returns a list of."""


class _Phase(enum.Enum):
    OPEN = "open"
    ENDED = "ended"
    FAILED = "failed"


_TRANSITIONS: dict[_Phase, frozenset[_Phase]] = {
    _Phase.OPEN: frozenset({_Phase.ENDED, _Phase.FAILED}),
    _Phase.ENDED: frozenset(),
    _Phase.FAILED: frozenset(),
}

_OPEN = _Phase.OPEN
_LF = 0x0A
_CR = 0x0D
_BOM = b"\xef\xbb\xbf"
_DATA_PREFIX = b"data: "
_EVENT_PREFIX = b"event: "
_BLANK = b"\n\n"
# int() refuses longer digit strings (CVE-2020-10735 limit); a retry that long is nonsense.
_MAX_RETRY_DIGITS = 4300

# tuple.__new__ builds an SSEEvent in one C call, skipping the Python-level
# __new__ that NamedTuple generates (it only forwards to this).
_tuple_new = tuple.__new__


class SSEDecoder:
    """Turn an SSE byte stream into events and comments, however it is chunked.

    >>> decoder = SSEDecoder()
    >>> decoder.feed(b'event: content_block_delta\\ndata: {"type":"content_bl')
    []
    >>> decoder.feed(b'ock_delta"}\\n\\n: keep-alive\\ndata: [DO')
    [SSEEvent(data='{"type":"content_block_delta"}', event='content_block_delta', id=''), \
SSEComment(text='keep-alive')]
    >>> decoder.end()  # the last event never got its blank line: the stream was cut
    EndOfInput(items=(), truncated=True, detail='...')

    ``retry`` is the reconnection time in milliseconds from the last valid
    ``retry`` field (else ``None``); ``last_event_id`` is the last event ID
    buffer. To resume with a ``Last-Event-ID`` header, send
    :attr:`reconnect_id` instead: it only counts IDs whose event block was
    finished, so a cut-off event is not skipped.

    Errors (:class:`~streamcore.RemoteProtocolError`): ``line_too_long`` (a line
    over ``max_line_bytes``), ``event_too_large`` (one event's data over
    ``max_event_bytes``). Invalid UTF-8 is not an error: it decodes to U+FFFD,
    as in browsers.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        for name, value in (
            ("max_line_bytes", max_line_bytes),
            ("max_event_bytes", max_event_bytes),
        ):
            if value < 1:
                raise LocalProtocolError(
                    f"{name} must be at least 1, got {value}", kind="invalid_argument"
                )
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # A region no longer than this cannot hold a line or an event over a limit.
        self._unchecked = min(max_line_bytes, max_event_bytes)
        # What feed()'s no-line-break path compares the unfinished line with:
        # max_line_bytes while OPEN, -1 after, so that path needs no phase check.
        self._limit = max_line_bytes
        self._phase = _Phase.OPEN
        self._error: RemoteProtocolError | None = None
        self._buf = bytearray()
        self._at_start = True
        self._cr_end = False
        # True while a BOM or the LF of a split CRLF may come, or once the
        # decoder is not OPEN: chunks with a line break take the general path.
        self._rare = True
        # The event under way: data lines (bytes, LF-joined at dispatch), their
        # size, the event type; _clean when there is neither. _fields_pending:
        # a field line came since the last blank line (for end()'s report).
        self._data: list[bytes | bytearray] = []
        self._data_bytes = 0
        self._event_type = ""
        self._clean = True
        self._fields_pending = False
        self._last_id = ""
        self._reconnect_id = ""
        self._retry: int | None = None

    @property
    def retry(self) -> int | None:
        """The reconnection time (ms) set by the last valid ``retry`` field, or ``None``."""
        return self._retry

    @property
    def last_event_id(self) -> str:
        """The last event ID buffer: the value of the most recent ``id`` field."""
        return self._last_id

    @property
    def reconnect_id(self) -> str:
        """The ID to resume from (``Last-Event-ID``): the last event ID as of the last blank line.

        This is the standard's "last event ID string". It differs from
        :attr:`last_event_id` only when the stream stopped after an ``id`` field
        and before the blank line ending its event.
        """
        return self._reconnect_id

    def feed(self, data: bytes) -> list[SSEEvent | SSEComment]:
        """Add the next chunk of the stream; return the events and comments it completes."""
        buf = self._buf
        if _LF not in data:
            if _CR in data:
                return self._feed_general(data)
            # No line break: the chunk only extends the unfinished line. With
            # small reads this is most calls, so it does as little as it can.
            buf += data
            if len(buf) > self._limit:
                self._overflow()
            return []
        if _CR in data or self._rare:
            return self._feed_general(data)
        # LF line endings: complete lines run up to the last LF. The usual
        # case, whole events of a common shape, is decoded in one go.
        buf += data
        end = buf.rfind(_LF) + 1
        out = self._fast_blocks(buf, 0, end)
        if out is None:
            region = buf[:end]
            del buf[:end]
            return self._decode(region)
        del buf[:end]
        if len(buf) > self._max_line:
            self._fail(self._line_too_long(len(buf), unfinished=True))
        return out

    def end(self) -> EndOfInput[SSEEvent | SSEComment]:
        """Signal the end of the stream; report whether it was cut off.

        Per the standard, an event whose blank line never came is discarded and
        an unfinished last line is not processed, so ``items`` is always empty.
        ``truncated`` is true when the stream stopped inside a line or after
        field lines with no blank line to dispatch them; ``detail`` says which.
        A stream that ends after a blank line or a comment line is complete.
        """
        if self._phase is not _OPEN:
            self._refuse("end")
        self._move(_Phase.ENDED)
        rest = len(self._buf)
        if self._at_start and self._buf == _BOM:
            rest = 0
        self._buf = bytearray()
        self._data = []
        cut = []
        if rest:
            cut.append(f"inside an unfinished line ({rest} bytes, no line break)")
        if self._fields_pending:
            cut.append("before the blank line that dispatches the current event")
        if not cut:
            return EndOfInput()
        return EndOfInput(
            truncated=True,
            detail=(
                f"SSE stream ended {' and '.join(cut)}; the unfinished part was discarded, "
                "as the standard requires. The connection was probably cut: retry, "
                "resuming from reconnect_id if the server supports Last-Event-ID"
            ),
        )

    # -- lifecycle ---------------------------------------------------------

    def _move(self, to: _Phase) -> None:
        if to not in _TRANSITIONS[self._phase]:
            raise LocalProtocolError(
                f"SSEDecoder cannot go from {self._phase.value} to {to.value}",
                kind="illegal_transition",
            )
        self._phase = to
        # Route every later call through the paths that check the phase.
        self._limit = -1
        self._rare = True

    def _refuse(self, call: str) -> None:
        self._buf.clear()
        if self._error is not None:
            raise self._error
        kind = "end_twice" if call == "end" else "feed_after_end"
        raise LocalProtocolError(
            f"{call}() called after end(); use a new SSEDecoder per stream", kind=kind
        )

    def _fail(self, error: RemoteProtocolError) -> None:
        self._error = error
        self._move(_Phase.FAILED)

    # -- lines ---------------------------------------------------------------

    def _overflow(self) -> None:
        """The unfinished line passed ``_limit``: refuse, or raise if it is too long."""
        if self._phase is not _OPEN:
            self._refuse("feed")
        length = len(self._buf)
        if self._at_start and self._buf.startswith(_BOM):
            length -= len(_BOM)  # the BOM is not part of the line
        if length > self._max_line:
            error = self._line_too_long(length, unfinished=True)
            self._fail(error)
            raise error

    def _line_too_long(self, length: int, *, unfinished: bool) -> RemoteProtocolError:
        state = "an unfinished line that already has" if unfinished else "a line of"
        return RemoteProtocolError(
            f"SSE line exceeds {self._max_line} bytes (max_line_bytes): {state} {length} "
            "bytes; raise the limit if such lines are expected, or check the upstream",
            kind="line_too_long",
        )

    def _feed_general(self, data: bytes) -> list[SSEEvent | SSEComment]:
        """Feed a chunk with a CR, or while the phase, a BOM or a split CRLF needs care."""
        if self._phase is not _OPEN:
            self._refuse("feed")
        buf = self._buf
        if self._cr_end and not buf and data[:1] == b"\n":
            data = data[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._cr_end = False
        buf += data
        end = max(buf.rfind(_LF), buf.rfind(_CR)) + 1
        if not end:  # no complete line (the chunk was at most that LF and a line's start)
            self._rare = self._at_start
            if len(buf) > self._max_line:
                self._overflow()
            return []
        region = buf[:end]
        del buf[:end]
        # A CR ending the chunk ends its line now; an LF starting the next
        # chunk is then the rest of a CRLF, not a blank line.
        self._cr_end = region[-1] == _CR
        if _CR in region:
            region = region.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._at_start:
            self._at_start = False
            if region.startswith(_BOM):
                del region[: len(_BOM)]
        self._rare = self._cr_end
        return self._decode(region)

    def _decode(self, region: bytes | bytearray) -> list[SSEEvent | SSEComment]:
        """Decode ``region`` (complete lines, LF endings only) and check the unfinished line.

        The region is cut at blank lines into three parts: the rest of an event
        under way (up to its blank line), whole events (up to the last blank
        line, tried on the fast path), and the start of the next event. So one
        event split across chunks does not push its neighbours off the fast path.

        Applies the error rule: items already decoded are returned and the
        error is raised by the next call.
        """
        out: list[SSEEvent | SSEComment] = []
        try:
            end = len(region)
            start = 0
            if not self._clean:
                if region[0] == _LF:
                    start = 1
                else:
                    blank = region.find(_BLANK)
                    start = end if blank < 0 else blank + 2
                self._lines(region[:start], out)
            if start < end:
                blank = region.rfind(_BLANK, start)
                middle = start if blank < 0 else blank + 2
                if middle > start:
                    events = self._fast_blocks(region, start, middle)
                    if events is None:
                        self._lines(region[start:middle], out)
                    else:
                        out += events
                if middle < end:
                    self._lines(region[middle:], out)
            if len(self._buf) > self._max_line:
                raise self._line_too_long(len(self._buf), unfinished=True)
        except RemoteProtocolError as exc:
            self._fail(exc)
            if not out:
                raise
        return out

    # -- fields and events -------------------------------------------------

    def _fast_blocks(
        self, src: bytes | bytearray, start: int, end: int
    ) -> list[SSEEvent | SSEComment] | None:
        """Decode ``src[start:end]`` (complete lines, LF endings) at once if it has a common shape.

        The shapes are whole events of one ``data: X`` line (OpenAI) or of
        ``event: N`` and ``data: X`` lines (Anthropic, see :meth:`_event_blocks`),
        with no event under way before them and no limit within reach. Returns
        None, having changed nothing, for anything else.

        For the data shape: split on the separators, the part is exactly
        ``data: X1\\n\\ndata: X2\\n\\n...`` iff no piece has an LF. Decoding
        before splitting is safe: invalid UTF-8 cannot swallow an ASCII byte.
        """
        if not (
            self._clean
            and 8 <= end - start <= self._unchecked
            and src[end - 2] == _LF  # ends with a blank line
        ):
            return None
        if not src.startswith(_DATA_PREFIX, start):
            if src.startswith(_EVENT_PREFIX, start):
                return self._event_blocks(src, start, end)
            return None
        texts = src[start + 6 : end - 2].decode("utf-8", "replace").split("\n\ndata: ")
        if "\n" in "".join(texts):
            return None
        event_id = self._reconnect_id = self._last_id
        self._fields_pending = False
        out: list[SSEEvent | SSEComment] = []
        for text in texts:
            out.append(_tuple_new(SSEEvent, (text, "message", event_id)))
        return out

    def _event_blocks(
        self, src: bytes | bytearray, start: int, end: int
    ) -> list[SSEEvent | SSEComment] | None:
        """The ``event: N`` + ``data: X`` shape of :meth:`_fast_blocks`.

        It holds iff every block starts with ``event: `` and has an LF followed
        by ``data: ``, and there are three LFs per block, so that LF is the
        block's only one.
        """
        blocks = src[start : end - 2].split(_BLANK)
        if src.count(_LF, start, end) != 3 * len(blocks):
            return None
        event_id = self._last_id
        out: list[SSEEvent | SSEComment] = []
        for block in blocks:
            lf = block.find(_LF)
            if not (block.startswith(_EVENT_PREFIX) and block.startswith(_DATA_PREFIX, lf + 1)):
                return None
            data = block[lf + 7 :].decode("utf-8", "replace")
            event_type = block[7:lf].decode("utf-8", "replace") or "message"
            out.append(_tuple_new(SSEEvent, (data, event_type, event_id)))
        self._reconnect_id = event_id
        self._fields_pending = False
        return out

    def _lines(self, region: bytes | bytearray, out: list[SSEEvent | SSEComment]) -> None:
        """The general path: process ``region`` (complete lines, LF endings) line by line."""
        lines = region.split(b"\n")
        lines.pop()  # region ends with LF: the last piece is empty, not a line
        # Short regions cannot break a limit, so only long ones pay for the checks.
        careful = len(region) + self._data_bytes > self._unchecked
        data = self._data
        fields_pending = self._fields_pending
        try:
            for line in lines:
                if careful and len(line) > self._max_line:
                    raise self._line_too_long(len(line), unfinished=False)
                if not line:
                    self._reconnect_id = self._last_id
                    fields_pending = False
                    if data:
                        joined = b"\n".join(data).decode("utf-8", "replace")
                        event_type = self._event_type or "message"
                        out.append(_tuple_new(SSEEvent, (joined, event_type, self._last_id)))
                        data = self._data = []
                        self._data_bytes = 0
                    self._event_type = ""
                    continue
                colon = line.find(b":")
                if colon == 0:
                    text = line[2:] if line[1:2] == b" " else line[1:]
                    out.append(SSEComment(text.decode("utf-8", "replace")))
                    continue
                fields_pending = True
                value: bytes | bytearray
                if colon < 0:
                    name = line
                    value = b""
                else:
                    name = line[:colon]
                    skip = 2 if line[colon + 1 : colon + 2] == b" " else 1
                    value = line[colon + skip :]
                if name == b"data":
                    data.append(value)
                    if careful:
                        self._data_bytes += len(value) + 1
                        if self._data_bytes > self._max_event:
                            raise self._event_too_large()
                elif name == b"event":
                    self._event_type = value.decode("utf-8", "replace")
                elif name == b"id":
                    if 0 not in value:
                        self._last_id = value.decode("utf-8", "replace")
                elif name == b"retry" and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                    self._retry = int(value)
                # Any other field name is ignored, as the standard says.
        finally:
            self._fields_pending = fields_pending
            self._clean = not data and not self._event_type
        if data and not careful:
            self._data_bytes = sum(map(len, data)) + len(data)

    def _event_too_large(self) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"SSE event data exceeds {self._max_event} bytes (max_event_bytes) after "
            f"{len(self._data)} data lines with no blank line; raise the limit if such "
            "events are expected, or check the upstream",
            kind="event_too_large",
        )


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(
            f"SSE {what} is not valid Unicode text: {text[exc.start : exc.end]!r} at index "
            f"{exc.start} is a lone surrogate and has no UTF-8 form; fix the string",
            kind="unencodable_text",
        ) from None


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """Encode one event, ending with the blank line that dispatches it.

    ``data`` is split on LF into ``data:`` lines. Every accepted input decodes
    back to itself: ``SSEDecoder().feed(encode_event(d, event=e, id=i))`` gives
    ``[SSEEvent(d, e or "message", i or "")]``. An ``id`` of ``""`` is written
    (it resets the last event ID); ``None`` writes nothing.

    >>> encode_event('{"delta":"Hi"}', event="message_delta", id="42")
    b'event: message_delta\\nid: 42\\ndata: {"delta":"Hi"}\\n\\n'
    >>> encode_event("two\\nlines")
    b'data: two\\ndata: lines\\n\\n'

    Raises :class:`~streamcore.LocalProtocolError` for what SSE cannot carry:
    a CR in ``data`` (it would arrive as LF), CR/LF in ``event`` or ``id``, NUL
    in ``id``, an empty ``event`` (it would arrive as ``"message"``), a negative
    ``retry``, or a lone surrogate anywhere.
    """
    if "\r" in data:
        raise LocalProtocolError(
            f"SSE data cannot carry a CR (U+000D) at index {data.index(chr(13))}: the "
            "decoder reads CR as a line break, so it would arrive as LF; replace CR/CRLF "
            "with LF or escape it (JSON-encode the payload)",
            kind="invalid_data",
        )
    parts: list[bytes] = []
    if event is not None:
        if "\r" in event or "\n" in event:
            raise LocalProtocolError(
                f"SSE event type {event!r} contains a CR or LF, which would end the field "
                "line; event types are single-line names",
                kind="invalid_event_type",
            )
        if not event:
            raise LocalProtocolError(
                "SSE event type is empty, which the decoder reads as 'message'; pass "
                "event=None or event='message'",
                kind="invalid_event_type",
            )
        parts.append(b"event: " + _utf8(event, "event type") + b"\n")
    if id is not None:
        if "\r" in id or "\n" in id or "\0" in id:
            raise LocalProtocolError(
                f"SSE id {id!r} contains a CR, LF or NUL: a line break would end the "
                "field and a decoder ignores an id with NUL; use a single-line id without NUL",
                kind="invalid_id",
            )
        parts.append(b"id: " + _utf8(id, "id") + b"\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise LocalProtocolError(
                f"SSE retry must be a non-negative int of milliseconds, got {retry!r}",
                kind="invalid_retry",
            )
        if retry >= 10**_MAX_RETRY_DIGITS:
            raise LocalProtocolError(
                f"SSE retry has more than {_MAX_RETRY_DIGITS} digits; decoders ignore it",
                kind="invalid_retry",
            )
        parts.append(b"retry: %d\n" % retry)
    body = _utf8(data, "data").replace(b"\n", b"\ndata: ")
    parts.append(b"data: " + body + b"\n\n")
    return b"".join(parts)


def encode_comment(text: str = "") -> bytes:
    """Encode a comment line, e.g. a keep-alive; decoders surface it as :class:`SSEComment`.

    >>> encode_comment("keep-alive")
    b': keep-alive\\n'
    >>> encode_comment()
    b':\\n'

    Raises :class:`~streamcore.LocalProtocolError` if ``text`` has a CR or LF
    (a comment is one line) or a lone surrogate.
    """
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(
            f"SSE comment {text!r} contains a CR or LF; a comment is a single line, so "
            "send one encode_comment() per line",
            kind="invalid_comment",
        )
    if not text:
        return b":\n"
    return b": " + _utf8(text, "comment") + b"\n"
