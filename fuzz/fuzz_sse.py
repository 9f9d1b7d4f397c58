"""Fuzz the SSE decoder and encoder (atheris).

Run: ``.venv/bin/python fuzz/fuzz_sse.py -max_total_time=20``.

Input layout: byte 0 picks ``max_line_bytes`` (8, 64 or 1 MiB, so the limit
errors are reached too), bytes 1-2 pick a split point, the rest is the stream.

Invariants checked on every input:

* the decoder raises nothing but :class:`~streamcore.RemoteProtocolError`;
* the stream fed whole, split in two at the chosen point, and one byte at a
  time gives the same items, the same end-of-input report, the same
  ``retry``/``last_event_id``/``reconnect_id`` and the same error kind;
* every decoded event and comment survives encode -> decode unchanged.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from streamcore import RemoteProtocolError
    from streamcore.sse import SSEComment, SSEDecoder, SSEEvent, encode_comment, encode_event

LIMITS = (8, 64, 1 << 20)


def run(chunks: list[bytes], max_line_bytes: int) -> tuple[object, ...]:
    """Everything observable about decoding ``chunks``; errors as their kind."""
    decoder = SSEDecoder(max_line_bytes=max_line_bytes, max_event_bytes=4 * max_line_bytes)
    items: list[SSEEvent | SSEComment] = []
    error = None
    end = None
    try:
        for chunk in chunks:
            items += decoder.feed(chunk)
        end = decoder.end()
    except RemoteProtocolError as exc:
        error = exc.kind
    return items, error, end, decoder.retry, decoder.last_event_id, decoder.reconnect_id


def check_round_trip(item: SSEEvent | SSEComment) -> None:
    if isinstance(item, SSEComment):
        encoded = encode_comment(item.text)
    else:
        # Decoded text never holds CR, LF in names, NUL in ids or surrogates,
        # so the encoder must accept every decoded event.
        event = None if item.event == "message" else item.event
        encoded = encode_event(item.data, event=event, id=item.id)
    decoded = SSEDecoder().feed(encoded)
    if decoded != [item]:
        raise AssertionError(f"round trip changed {item!r} into {decoded!r} via {encoded!r}")


def TestOneInput(data: bytes) -> None:
    header, body = data[:3], data[3:]
    limit = LIMITS[header[0] % len(LIMITS)] if header else LIMITS[-1]
    split = int.from_bytes(header[1:3], "big") % (len(body) + 1) if len(header) == 3 else 0

    whole = run([body], limit)
    halves = run([body[:split], body[split:]], limit)
    if halves != whole:
        raise AssertionError(f"split at {split} differs: {halves!r} != {whole!r}")
    bytewise = run([body[i : i + 1] for i in range(len(body))], limit)
    if bytewise != whole:
        raise AssertionError(f"byte-at-a-time differs: {bytewise!r} != {whole!r}")

    items = whole[0]
    assert isinstance(items, list)
    for item in items:
        check_round_trip(item)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
