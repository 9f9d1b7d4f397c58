"""Fault injection settings for the emulator, and their one-line text form.

Faults are set per server (``open_emulator(faults=...)``, ``streamcore mock
--fault``) and per request, with the header::

    x-streamcore-fault: ttft=0.5; pace=0.02; split=1-7; drop_after_tokens=40

A header key overrides the same server key; keys the header does not name keep
the server's value. Every key is optional. Times are seconds of trio's clock.

Timing
    ``ttft=S`` -- wait S before the first token. The response head and the
    dialect's opening events (``message_start``, ``response.created``, the
    role chunk) go out at once; the first *token* waits.
    ``pace=S`` -- wait S between tokens.
    ``stall=S`` with ``stall_after=N`` (default 0) -- after N tokens, send
    nothing for S.
    ``ping=S`` -- while waiting (ttft, pace, stall), send a keep-alive whenever
    nothing was written for S (an SSE comment; Anthropic's ``event: ping``;
    NDJSON and JSON-array bodies have none). 0 turns it off.

Bytes
    ``split=N`` or ``split=A-B`` -- write the body in pieces of N bytes, or of
    seeded random sizes from A to B, so reads end inside UTF-8 sequences,
    inside CRLF, anywhere. ``seed=N`` seeds the sizes (default 0).
    ``eol=lf|crlf|cr`` -- SSE line endings (Gemini's default is ``crlf``, the
    others' ``lf``).

Failures
    ``status=C`` -- answer with HTTP status C and the provider's own error
    body; ``retry_after=S`` sets ``retry-after`` / ``retry-after-ms`` (default
    1 s for 429, 503 and 529).
    ``error_after=N`` -- after N tokens, the provider's mid-stream error event
    ends the body (no terminal marker); ``error_type=overloaded|server|rate_limit``
    picks which (default ``overloaded``).
    ``drop_after_tokens=N`` -- after N tokens, close the socket: no terminal
    marker, no final chunk.
    ``drop_after_bytes=N`` -- close the socket after N body bytes, even inside
    an event.
    ``invalid_json_after=N`` -- after N tokens, send one event whose JSON is cut
    short, then carry on.
    ``fail_first=N`` -- the faults apply to the first N requests with the same
    key (the ``x-streamcore-request-key`` header, else the fault string); later
    requests are served clean. With no failure key beside it (``status``,
    ``error_after``, a drop, ``invalid_json_after``, ``stall`` or ``ttft``) it
    means ``status=503`` (Anthropic: 529).

Answers
    ``repeat=N`` -- a resumed answer first repeats the last N characters of the
    partial text it was sent (models do), to test overlap removal.
    ``length=N`` -- answer length in characters (see ``answer_for``).

A "token" is one frame of model output: a text piece, or a tool call's start
or argument fragment (a whole tool call for Gemini and Ollama). A count past
the last token fires at the end, just before the terminal marker: so
``drop_after_tokens=100000`` drops exactly before ``[DONE]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from streamcore._errors import LocalProtocolError
from streamcore.adapters.emulator.text import MAX_LENGTH

__all__ = ["FAULT_HEADER", "REQUEST_KEY_HEADER", "Faults", "parse_faults"]

FAULT_HEADER = "x-streamcore-fault"
"""The request header that carries per-request faults."""

REQUEST_KEY_HEADER = "x-streamcore-request-key"
"""Optional request header naming the ``fail_first`` counter (retries send the same key)."""

MAX_SECONDS = 86_400.0
MAX_COUNT = 10_000_000
MAX_SPLIT = 1 << 20
EOLS = ("lf", "crlf", "cr")
ERROR_TYPES = ("overloaded", "server", "rate_limit")


@dataclass(frozen=True, slots=True)
class Faults:
    """What the emulator does wrong, on purpose. ``None`` means "not set".

    >>> f = parse_faults("ttft=0.5; split=1-7")
    >>> (f.ttft, f.split)
    (0.5, (1, 7))
    >>> str(f)
    'ttft=0.5; split=1-7'
    """

    ttft: float | None = None
    pace: float | None = None
    split: tuple[int, int] | None = None
    ping: float | None = None
    status: int | None = None
    retry_after: float | None = None
    error_after: int | None = None
    error_type: str | None = None
    drop_after_tokens: int | None = None
    drop_after_bytes: int | None = None
    stall: float | None = None
    stall_after: int | None = None
    invalid_json_after: int | None = None
    fail_first: int | None = None
    repeat: int | None = None
    eol: str | None = None
    length: int | None = None
    seed: int | None = None

    def merged(self, override: Faults) -> Faults:
        """These faults with every key ``override`` sets replaced by its value.

        >>> str(parse_faults("ttft=1; pace=0.1").merged(parse_faults("pace=0")))
        'ttft=1; pace=0'
        """
        changes = {
            f.name: getattr(override, f.name)
            for f in dataclasses.fields(override)
            if getattr(override, f.name) is not None
        }
        return dataclasses.replace(self, **changes)

    def without_failures(self) -> Faults:
        """These faults with only the knobs kept (``length``, ``eol``, ``seed``).

        Used once ``fail_first`` is used up: the request is served clean.
        """
        return Faults(eol=self.eol, length=self.length, seed=self.seed)

    @property
    def is_empty(self) -> bool:
        """Whether no key is set."""
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    def __str__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "split":
                lo, hi = value
                text = str(lo) if lo == hi else f"{lo}-{hi}"
            elif isinstance(value, float):
                text = repr(int(value)) if value.is_integer() else repr(value)
            else:
                text = str(value)
            parts.append(f"{f.name}={text}")
        return "; ".join(parts)


_FIELDS = {f.name: f for f in dataclasses.fields(Faults)}
_SECONDS = {"ttft", "pace", "ping", "retry_after", "stall"}
_COUNTS = {
    "error_after",
    "drop_after_tokens",
    "drop_after_bytes",
    "stall_after",
    "invalid_json_after",
    "fail_first",
    "repeat",
    "length",
    "seed",
}


def _bad(message: str) -> LocalProtocolError:
    return LocalProtocolError(f"{FAULT_HEADER}: {message}", kind="bad_fault")


def _seconds(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(f"{key}={text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise _bad(f"{key}={text!r} must be between 0 and {MAX_SECONDS:g} seconds")
    return value


def _count(key: str, text: str) -> int:
    if not text.isdigit():
        raise _bad(f"{key}={text!r} is not a non-negative integer")
    value = int(text)
    if value > MAX_COUNT:
        raise _bad(f"{key}={text!r} exceeds the limit {MAX_COUNT}")
    return value


def _split(text: str) -> tuple[int, int]:
    lo_text, sep, hi_text = text.partition("-")
    lo = _count("split", lo_text)
    hi = _count("split", hi_text) if sep else lo
    if not 1 <= lo <= hi <= MAX_SPLIT:
        raise _bad(f"split={text!r}: need 1 <= A <= B <= {MAX_SPLIT} in split=A-B")
    return lo, hi


def parse_faults(text: str) -> Faults:
    """Parse ``key=value; key=value`` (``,`` also separates) into :class:`Faults`.

    Raises :class:`~streamcore.LocalProtocolError` (kind ``bad_fault``) naming the
    key and the accepted range for an unknown key or a bad value.

    >>> parse_faults("drop_after_tokens=40, status=429").drop_after_tokens
    40
    >>> parse_faults("")
    Faults(ttft=None, pace=None, split=None, ping=None, status=None, retry_after=None, error_after=None, error_type=None, drop_after_tokens=None, drop_after_bytes=None, stall=None, stall_after=None, invalid_json_after=None, fail_first=None, repeat=None, eol=None, length=None, seed=None)
    """  # noqa: E501
    values: dict[str, object] = {}
    for raw in text.replace(",", ";").split(";"):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        key = key.lower()
        if key not in _FIELDS:
            raise _bad(f"unknown key {key!r}; known keys: {', '.join(_FIELDS)}")
        if not sep or not value:
            raise _bad(f"{key!r} needs a value ({key}=...)")
        if key in values:
            raise _bad(f"{key!r} is given twice")
        if key in _SECONDS:
            values[key] = _seconds(key, value)
        elif key in _COUNTS:
            count = _count(key, value)
            if key == "length" and count > MAX_LENGTH:
                raise _bad(f"length={value!r} exceeds the limit {MAX_LENGTH} (characters)")
            values[key] = count
        elif key == "split":
            values[key] = _split(value)
        elif key == "status":
            status = _count(key, value)
            if not 400 <= status <= 599:
                raise _bad(f"status={value!r} must be an HTTP error status (400-599)")
            values[key] = status
        elif key == "eol":
            if value.lower() not in EOLS:
                raise _bad(f"eol={value!r} must be one of {', '.join(EOLS)}")
            values[key] = value.lower()
        else:
            assert key == "error_type"
            if value.lower() not in ERROR_TYPES:
                raise _bad(f"error_type={value!r} must be one of {', '.join(ERROR_TYPES)}")
            values[key] = value.lower()
    return Faults(**values)  # type: ignore[arg-type]
