"""Entry point of the ``streamcore`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streamcore.cli import decode, mock


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamcore",
        description=(
            "Stream LLM responses solidly: chat, decode captured streams, emulate providers."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("chat", help="interactive terminal chat (local emulator when no API key is set)")
    decode.add_parser(sub)
    mock.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamcore`` command; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "chat":
        print(
            "streamcore chat: not built yet (issue 5); the decoders and dialects come first.",
            file=sys.stderr,
        )
        return 2
    if args.command == "decode":
        return decode.run(args)
    if args.command == "mock":
        return mock.run(args)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
