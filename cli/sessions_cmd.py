"""``streamcore sessions``: list, show, export and delete saved chat sessions.

Sessions are what ``streamcore chat --session NAME`` saves (see
:mod:`streamcore.cli.sessions` for the store). The store is
``$STREAMCORE_DATA_DIR/sessions.db`` (else the platform's data directory), or
``--store PATH``::

    streamcore sessions                      # list, most recently used first
    streamcore sessions export paris-trip    # Markdown transcript to stdout
    streamcore sessions export paris-trip --format json -o paris.json
    streamcore sessions delete paris-trip

Exit status: 0 on success, 1 when a session does not exist or the store
cannot be used, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO

from streamcore import LocalProtocolError
from streamcore.cli.sessions import SessionInfo, SessionStore, default_db_path

__all__ = ["add_parser", "format_age", "run"]


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``sessions`` subcommand to ``subparsers``; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sessions",
        help="list, export and delete saved chat sessions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--store",
        metavar="PATH",
        help=f"the session database (default: {_default_store_hint()})",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list saved sessions (the default)")
    listing.add_argument("--json", action="store_true", help="one JSON object per session")
    show = actions.add_parser("show", help="print a session as a Markdown transcript")
    show.add_argument("name")
    export = actions.add_parser("export", help="export a session as Markdown or JSON")
    export.add_argument("name")
    export.add_argument("--format", choices=("markdown", "json"), default="markdown")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    delete = actions.add_parser("delete", help="delete sessions and their messages")
    delete.add_argument("names", nargs="+", metavar="NAME")
    return parser


def _default_store_hint() -> str:
    if os.environ.get("STREAMCORE_DATA_DIR"):
        return "$STREAMCORE_DATA_DIR/sessions.db"
    return str(default_db_path())


def format_age(seconds: float) -> str:
    """How long ago, in the largest unit that fits.

    >>> [format_age(s) for s in (5, 90, 7200, 3 * 86400)]
    ['just now', '1 min ago', '2 h ago', '3 days ago']
    """
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def _table(sessions: tuple[SessionInfo, ...], now: float) -> list[str]:
    header = ("NAME", "MODEL", "MESSAGES", "UPDATED")
    rows = [
        (
            info.name,
            f"{info.provider}/{info.model}",
            str(info.messages),
            format_age(max(0.0, now - info.updated_at)),
        )
        for info in sessions
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _write(text: str, output: str | None, out: IO[str]) -> None:
    if output is None:
        out.write(text if text.endswith("\n") else text + "\n")
        return
    Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Run ``streamcore sessions`` with parsed ``args``; returns the exit status."""
    out = sys.stdout
    try:
        with SessionStore.open(args.store) as store:
            action = args.action or "list"
            if action == "list":
                sessions = store.list_sessions()
                if getattr(args, "json", False):
                    for info in sessions:
                        document = {
                            "name": info.name,
                            "provider": info.provider,
                            "model": info.model,
                            "messages": info.messages,
                            "created_at": info.created_at,
                            "updated_at": info.updated_at,
                        }
                        out.write(json.dumps(document, ensure_ascii=False) + "\n")
                elif not sessions:
                    print(
                        f"No saved sessions in {store.path}. "
                        "Start one with: streamcore chat --session NAME",
                        file=out,
                    )
                else:
                    print("\n".join(_table(sessions, time.time())), file=out)
            elif action == "show":
                _write(store.export_markdown(args.name), None, out)
            elif action == "export":
                if args.format == "json":
                    text = store.export_json(args.name)
                else:
                    text = store.export_markdown(args.name)
                _write(text, args.output, out)
                if args.output is not None:
                    print(f"exported session {args.name!r} to {args.output}", file=sys.stderr)
            else:
                assert action == "delete"
                for name in args.names:
                    store.delete(name)
                    print(f"deleted session {name!r}", file=out)
    except LocalProtocolError as exc:
        print(f"streamcore sessions: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"streamcore sessions: {exc}", file=sys.stderr)
        return 1
    return 0
