"""``streamcore decode``: decode a captured response body from stdin.

Three views of the same bytes, for debugging captured streams and as the
black-box interface to the core:

* ``--format sse|ndjson|json-array`` prints the framing-level items as JSON lines;
* ``--dialect NAME`` prints the typed events as JSON lines;
* ``--dialect NAME --final`` prints one JSON object, the final message.

Exit status: 0 whenever the input could be decoded, even when the stream was
cut off (that state is in the output); 1 when the bytes break the format
(the error goes to stderr, after everything decoded before it); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, TypeVar

from streamcore import RemoteProtocolError
from streamcore.accumulate import Accumulator, FinalMessage
from streamcore.events import FinishReason, event_to_dict
from streamcore.framing import EndOfInput
from streamcore.jsonarray import JSONArrayDecoder
from streamcore.ndjson import NDJSONDecoder
from streamcore.providers import DIALECTS, decoder_for
from streamcore.sse import SSEComment, SSEDecoder, SSEEvent

READ_SIZE = 65536
T = TypeVar("T")

FORMATS = ("sse", "ndjson", "json-array")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``decode`` subcommand to ``sub``."""
    p = sub.add_parser(
        "decode",
        help="decode a captured response body from stdin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--format", choices=FORMATS, help="print framing-level items")
    what.add_argument("--dialect", choices=sorted(DIALECTS), help="print typed events")
    p.add_argument(
        "--final", action="store_true", help="with --dialect: print only the final message"
    )


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    # read1 hands over what the pipe has now, so a live capture decodes as it arrives.
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    while chunk := read(READ_SIZE):
        yield chunk


def _emit(out: IO[str], obj: object) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _framing_item(item: object) -> dict[str, object]:
    if isinstance(item, SSEEvent):
        return {"type": "event", "event": item.event, "data": item.data, "id": item.id}
    if isinstance(item, SSEComment):
        return {"type": "comment", "text": item.text}
    return {"type": "value", "value": item}


def _decode_framing(
    feed: Callable[[bytes], list[T]],
    end: Callable[[], EndOfInput[T]],
    stream: IO[bytes],
    out: IO[str],
) -> None:
    for chunk in _chunks(stream):
        for item in feed(chunk):
            _emit(out, _framing_item(item))
    eoi = end()
    for item in eoi.items:
        _emit(out, _framing_item(item))
    _emit(out, {"type": "end", "truncated": eoi.truncated, "detail": eoi.detail})


def final_to_dict(
    message: FinalMessage, *, complete: bool, error: RemoteProtocolError | None = None
) -> dict[str, object]:
    """The ``--final`` JSON object for ``message``.

    ``finish`` is ``"error"`` when the provider reported an error or the bytes
    broke the format, ``"interrupted"`` when the body ended without the
    provider's terminal marker, else the normalized finish reason.
    """
    err: dict[str, str] | None = None
    if message.error is not None:
        err = {"type": message.error.type, "message": message.error.message}
    elif error is not None:
        err = {"type": error.kind, "message": str(error)}
    if err is not None:
        finish = "error"
    elif not complete:
        finish = "interrupted"
    elif message.finish_reason is None or message.finish_reason is FinishReason.OTHER:
        # A complete stream whose reason streamcore does not map (or that gave none)
        # ended of its own accord: report it as a natural stop; the raw value is in --dialect.
        finish = FinishReason.STOP.value
    else:
        finish = message.finish_reason.value
    usage = None
    if message.usage is not None:
        usage = {
            "input_tokens": message.usage.input_tokens or 0,
            "output_tokens": message.usage.output_tokens or 0,
        }
    return {
        "text": message.text,
        "reasoning": message.reasoning,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ],
        "finish": finish,
        "usage": usage,
        "error": err,
    }


def _decode_dialect(name: str, final: bool, stream: IO[bytes], out: IO[str]) -> int:
    decoder = decoder_for(name)
    acc = Accumulator()
    failure: RemoteProtocolError | None = None
    try:
        for chunk in _chunks(stream):
            events = decoder.feed(chunk)
            acc.add_many(events)
            if not final:
                for event in events:
                    _emit(out, event_to_dict(event))
        events = decoder.end()
        acc.add_many(events)
        if not final:
            for event in events:
                _emit(out, event_to_dict(event))
    except RemoteProtocolError as exc:
        failure = exc
    if final:
        _emit(out, final_to_dict(acc.message(), complete=decoder.complete, error=failure))
    if failure is not None:
        print(f"streamcore decode: {failure} [{failure.kind}]", file=sys.stderr)
        return 1
    if not decoder.complete and not final:
        print("streamcore decode: the body ended without the terminal marker", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``streamcore decode`` with parsed ``args``; returns the exit status."""
    stream = sys.stdin.buffer
    out = sys.stdout
    if args.final and not args.dialect:
        print("streamcore decode: --final needs --dialect", file=sys.stderr)
        return 2
    if args.dialect:
        return _decode_dialect(args.dialect, args.final, stream, out)
    try:
        if args.format == "sse":
            sse = SSEDecoder()
            _decode_framing(sse.feed, sse.end, stream, out)
        elif args.format == "ndjson":
            nd = NDJSONDecoder()
            _decode_framing(nd.feed, nd.end, stream, out)
        else:
            arr = JSONArrayDecoder()
            _decode_framing(arr.feed, arr.end, stream, out)
    except RemoteProtocolError as exc:
        print(f"streamcore decode: {exc} [{exc.kind}]", file=sys.stderr)
        return 1
    return 0
