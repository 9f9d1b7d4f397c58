"""Entry point of the ``streamcore`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from streamcore.cli import chat, decode, mock, serve, sessions_cmd


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamcore",
        description=(
            "Stream LLM responses solidly: chat, decode captured streams, emulate providers."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chat.add_parser(sub)
    sessions_cmd.add_parser(sub)
    decode.add_parser(sub)
    mock.add_parser(sub)
    serve.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamcore`` command; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "chat":
        return chat.run(args)
    if args.command == "sessions":
        return sessions_cmd.run(args)
    if args.command == "decode":
        return decode.run(args)
    if args.command == "mock":
        return mock.run(args)
    if args.command == "serve":
        return serve.run(args)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
