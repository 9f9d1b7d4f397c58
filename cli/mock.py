"""``streamcore mock``: run the local provider emulator until Ctrl-C.

Serves OpenAI (Chat Completions and Responses), Anthropic, Gemini and Ollama
wire formats on loopback, with faults injected for every request (``--fault``)
or per request (the ``x-streamcore-fault`` header)::

    streamcore mock --port 8000 --fault ttft=0.5 --fault drop_after_tokens=40
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from streamcore._errors import LocalProtocolError
from streamcore.adapters.emulator import (
    DEFAULT_LENGTH,
    FAULT_HEADER,
    Emulator,
    Faults,
    open_emulator,
    parse_faults,
)

__all__ = ["add_parser", "run"]

_ENDPOINTS = (
    ("POST /v1/chat/completions", "OpenAI Chat Completions (SSE)"),
    ("POST /v1/responses", "OpenAI Responses (SSE)"),
    ("POST /v1/messages", "Anthropic Messages (SSE)"),
    (
        "POST /v1beta/models/{model}:streamGenerateContent",
        "Gemini (?alt=sse: SSE; else JSON array)",
    ),
    ("POST /api/chat", "Ollama (NDJSON)"),
)


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``mock`` subcommand to ``subparsers``; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "mock",
        help="run the local provider emulator (OpenAI, Anthropic, Gemini, Ollama) with faults",
        description=(
            "Serve every provider's streaming wire format on loopback with deterministic"
            f" answers. Faults apply to every request (--fault) or per request (header"
            f" '{FAULT_HEADER}: key=value; ...'). Keys: ttft, pace, split, ping, status,"
            " retry_after, error_after, error_type, drop_after_tokens, drop_after_bytes,"
            " stall, stall_after, invalid_json_after, fail_first, repeat, eol, length, seed."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to bind; 0 picks a free one (default: 8000)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fault for every request, e.g. --fault ttft=0.5 --fault split=1-7 (repeatable)",
    )
    parser.add_argument(
        "--length",
        type=int,
        default=DEFAULT_LENGTH,
        help=f"answer length in characters (default: {DEFAULT_LENGTH})",
    )
    return parser


def _announce(emulator: Emulator) -> None:
    print(f"streamcore mock: serving on {emulator.base_url}", flush=True)
    width = max(len(endpoint) for endpoint, _ in _ENDPOINTS)
    for endpoint, what in _ENDPOINTS:
        print(f"  {endpoint:<{width}}  {what}")
    if not emulator.faults.is_empty:
        print(f"  faults for every request: {emulator.faults}")
    print("Press Ctrl-C to stop.", flush=True)


async def _serve_until_signal(host: str, port: int, faults: Faults, length: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_emulator(host, port, faults=faults, length=length) as emulator:
            _announce(emulator)
            async for _ in signals:
                return  # leaving the block closes the socket and every connection


def run(args: argparse.Namespace) -> int:
    """Run ``streamcore mock`` with parsed ``args``; returns the exit code.

    0 after Ctrl-C (or SIGTERM); 2 for a bad ``--fault`` or a port that cannot be bound.
    """
    try:
        faults = parse_faults("; ".join(args.fault))
    except LocalProtocolError as exc:
        print(f"streamcore mock: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_serve_until_signal, args.host, args.port, faults, args.length)
    except OSError as exc:
        print(f"streamcore mock: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print("streamcore mock: stopped", flush=True)
    return 0
