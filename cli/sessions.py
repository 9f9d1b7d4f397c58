"""Chat sessions saved in SQLite, so a chat survives being closed, killed or crashed.

Theory of operation
-------------------
One database file (:func:`default_db_path`: ``$STREAMCORE_DATA_DIR``, else
``$XDG_DATA_HOME/streamcore``, else the platform's data directory, then
``sessions.db``) holds every session. A session has a unique name, the
provider and model it talks to, a system prompt, settings (JSON, filtered
through :data:`ALLOWED_SETTINGS`), the summary that stands in for its oldest
turns, and its messages in order. A message row is a
:class:`streamcore.memory.Turn`: role, content, tool calls (JSON), the id of
the call a tool result answers, usage (JSON), timestamps, and a ``status``:

* ``complete`` -- written when the turn completed;
* ``interrupted`` -- a reply whose stream ended early, with its ``reason``;
* ``streaming`` -- an answer still arriving.

Nothing is lost when the process dies, because every write is committed at
once: a user message or tool result when it is added (:meth:`SessionStore.append`),
an answer while it streams (:meth:`SessionStore.checkpoint`, which the chat
calls about once a second: one ``UPDATE`` of one row by its id, then a commit)
and when it ends (:meth:`SessionStore.finish`, which turns the streaming row
into the complete or interrupted reply). The store remembers the id of the row
it is streaming into, so checkpoints never search. A ``streaming`` row found
by :meth:`SessionStore.load` was left by a process that ended mid-answer: it
becomes an interrupted reply (reason :data:`CRASH_REASON`) holding the text of
the last checkpoint, so a kill loses at most the last second of an answer.

SQLite in WAL mode lets one chat write while others read; two writers take
turns (``BEGIN IMMEDIATE`` and a busy timeout, after which the store raises
``kind="store_busy"``). Positions are assigned inside the write transaction,
so two connections appending to one session never collide. ``synchronous=NORMAL``:
a killed process loses nothing committed; a power cut may lose the last commits.

The schema is versioned: ``schema_version`` records each migration applied;
:data:`MIGRATIONS` lists them in order and opening a store runs the missing
ones in one transaction. A database newer than this code is refused rather
than guessed at.

Secrets stay out: the store has no field for an API key; settings keep only
allow-listed keys whose values do not look like credentials; the file and its
directory are private to the user (``0600``/``0700``). Chat text itself is
stored as typed -- a key pasted into a message is the user's to delete.

Errors are :class:`~streamcore.LocalProtocolError` with a ``kind``:
``no_such_session``, ``session_exists``, ``bad_session_name``,
``answer_in_progress``, ``nothing_to_replace``, ``bad_turn``, ``store_busy``,
``store_error``, ``schema_too_new``, ``store_unreadable``, ``store_corrupt``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from streamcore import LocalProtocolError
from streamcore.events import Usage
from streamcore.memory import Conversation, Summary, Turn
from streamcore.request import Message, ToolCall
from streamcore.tokens import Tokenizer

__all__ = [
    "ALLOWED_SETTINGS",
    "CRASH_REASON",
    "KEEP",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SavedSession",
    "SessionInfo",
    "SessionStore",
    "data_dir",
    "default_db_path",
    "filter_settings",
]

CRASH_REASON = "process ended mid-answer"
"""The reason given to an answer found still streaming when its session is loaded."""

ALLOWED_SETTINGS = frozenset(
    {
        "temperature",
        "top_p",
        "seed",
        "stop",
        "max_tokens",
        "context_tokens",
        "token_budget",
        "summarize",
        "reasoning_effort",
        "connect_timeout",
        "first_token_timeout",
        "idle_timeout",
        "total_timeout",
        "retries",
    }
)
"""The settings a session keeps. Add a key here on purpose, never one that can hold a
secret (no keys, no headers, no URLs: a URL can carry credentials)."""

# Values that look like credentials are dropped even under an allowed key.
_CREDENTIAL = re.compile(
    r"sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,}|xox[abprs]-|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bBearer\s+\S",
    re.IGNORECASE,
)
_MAX_SETTING_CHARS = 1_000
_MAX_NAME_CHARS = 200

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: sessions and their messages.
    (
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            summary TEXT,
            summary_covering INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
            content TEXT NOT NULL,
            tool_calls TEXT,
            tool_call_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('complete', 'interrupted', 'streaming')),
            reason TEXT,
            usage TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (session_id, position)
        )
        """,
    ),
)
"""Schema migrations, in order: entry ``i`` takes the schema from version ``i`` to ``i + 1``.

Append a new entry to change the schema; never edit an applied one."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP
"""Passed to :meth:`SessionStore.update` for a field to leave as it is."""


def data_dir(environ: Mapping[str, str] | None = None, *, platform: str | None = None) -> Path:
    """The directory streamcore keeps its data in.

    ``$STREAMCORE_DATA_DIR`` wins; then ``$XDG_DATA_HOME/streamcore`` (an
    absolute path, as the XDG spec requires); then the platform's place:
    ``~/.local/share/streamcore``, ``~/Library/Application Support/streamcore``
    on macOS, ``%LOCALAPPDATA%\\streamcore`` on Windows.

    >>> data_dir({"HOME": "/home/ada"}, platform="linux")
    PosixPath('/home/ada/.local/share/streamcore')
    >>> data_dir({"HOME": "/home/ada", "XDG_DATA_HOME": "/data"}, platform="linux")
    PosixPath('/data/streamcore')
    """
    env = os.environ if environ is None else environ
    override = env.get("STREAMCORE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "streamcore"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    plat = sys.platform if platform is None else platform
    if plat == "win32":
        base = env.get("LOCALAPPDATA") or env.get("APPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "streamcore"
    if plat == "darwin":
        return home / "Library" / "Application Support" / "streamcore"
    return home / ".local" / "share" / "streamcore"


def default_db_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where sessions are saved: ``sessions.db`` in :func:`data_dir`."""
    return data_dir(environ) / "sessions.db"


def filter_settings(settings: Mapping[str, object] | None) -> dict[str, object]:
    """The settings a session may keep: allow-listed keys with plain, secret-free values.

    Values must be JSON scalars or lists of strings; a string that looks like a
    credential is dropped whatever its key.

    >>> filter_settings({"temperature": 0.2, "api_key": "sk-live-abc", "stop": ["\\n\\n"]})
    {'temperature': 0.2, 'stop': ['\\n\\n']}
    """
    kept: dict[str, object] = {}
    for key, value in (settings or {}).items():
        if key in ALLOWED_SETTINGS and _plain_value(value):
            kept[key] = list(value) if isinstance(value, (list, tuple)) else value
    return kept


def _plain_value(value: object) -> bool:
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= _MAX_SETTING_CHARS and not _CREDENTIAL.search(value)
    if isinstance(value, (list, tuple)):
        return len(value) <= 16 and all(
            isinstance(item, str) and _plain_value(item) for item in value
        )
    return False


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session's header: what it talks to and when it was used (times in epoch seconds)."""

    name: str
    provider: str
    model: str
    system: str | None
    settings: Mapping[str, object]
    created_at: float
    updated_at: float
    messages: int


@dataclass(frozen=True, slots=True)
class SavedSession:
    """A session as loaded: its header, turns in order, and summary.

    ``recovered`` says an answer was found still streaming (its process ended)
    and is now the last turn, interrupted with :data:`CRASH_REASON`.
    """

    info: SessionInfo
    turns: tuple[Turn, ...]
    summary: Summary | None
    recovered: bool = False

    def conversation(self, counter: Callable[[str], int] | Tokenizer) -> Conversation:
        """The session as a :class:`~streamcore.memory.Conversation`, counting with ``counter``."""
        return Conversation(
            counter, system=self.info.system, turns=self.turns, summary=self.summary
        )


class SessionStore:
    """Saved chat sessions in one SQLite file; open it with :meth:`open`.

    Use one store per thread. Every method commits before it returns.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sessions.db"
    >>> with SessionStore.open(path) as store:
    ...     _ = store.create("paris-trip", provider="openai", model="gpt-4o")
    ...     store.append("paris-trip", Turn(Message("user", "Plan a day in Paris.")))
    ...     store.checkpoint("paris-trip", "Start at the Louvre")
    ...     store.finish("paris-trip", Turn(Message("assistant", "Start at the Louvre, then...")))
    ...     [turn.message.content for turn in store.load("paris-trip").turns]
    ['Plan a day in Paris.', 'Start at the Louvre, then...']
    """

    __slots__ = ("_db", "_live", "_path")

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        # Session name -> id of the message row this store is streaming an answer into.
        self._live: dict[str, int] = {}

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0
    ) -> SessionStore:
        """Open (creating if needed) the store at ``path``, default :func:`default_db_path`.

        ``timeout`` is how long a write waits for another connection's write
        before raising ``kind="store_busy"``.
        """
        file = Path(path) if path is not None else default_db_path()
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file private before SQLite does: its -wal and -shm files
        # take the database file's permissions.
        os.close(os.open(file, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(file, timeout=timeout, isolation_level=None)
        store = cls(db, file)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            store._migrate()
        except sqlite3.OperationalError as exc:
            db.close()
            raise _sqlite_error(exc, file) from exc
        except sqlite3.DatabaseError as exc:
            db.close()
            raise LocalProtocolError(
                f"{file} is not a streamcore session store ({exc}); move it away or pass "
                "another path",
                kind="store_unreadable",
            ) from exc
        except BaseException:
            db.close()
            raise
        return store

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._transaction("BEGIN") as db:
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database connection (everything is already committed)."""
        self._db.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SessionStore({str(self._path)!r})"

    # -- sessions ---------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        provider: str,
        model: str,
        system: str | None = None,
        settings: Mapping[str, object] | None = None,
        at: float | None = None,
    ) -> SessionInfo:
        """Create an empty session called ``name``; ``kind="session_exists"`` if taken."""
        _check_name(name)
        now = _now(at)
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO sessions (name, provider, model, system_prompt, settings, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, provider, model, system, _json(filter_settings(settings)), now, now),
                )
        except sqlite3.IntegrityError:
            raise LocalProtocolError(
                f"a session called {name!r} already exists; pick another name or load it",
                kind="session_exists",
            ) from None
        return self.info(name)

    def update(
        self,
        name: str,
        *,
        provider: str | _Keep = KEEP,
        model: str | _Keep = KEEP,
        system: str | _Keep | None = KEEP,
        settings: Mapping[str, object] | _Keep = KEEP,
        at: float | None = None,
    ) -> SessionInfo:
        """Change a session's provider, model, system prompt or settings (``/model``...)."""
        changes: dict[str, object] = {}
        if not isinstance(provider, _Keep):
            changes["provider"] = provider
        if not isinstance(model, _Keep):
            changes["model"] = model
        if not isinstance(system, _Keep):
            changes["system_prompt"] = system
        if not isinstance(settings, _Keep):
            changes["settings"] = _json(filter_settings(settings))
        changes["updated_at"] = _now(at)
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE sessions SET {assignments} WHERE name = ?", (*changes.values(), name)
            )
            if cursor.rowcount == 0:
                raise _no_such_session(name)
        return self.info(name)

    def info(self, name: str) -> SessionInfo:
        """The header of session ``name``."""
        with self._transaction("BEGIN") as db:
            row = db.execute(_INFO_QUERY + " WHERE s.name = ?", (name,)).fetchone()
        if row is None:
            raise _no_such_session(name)
        return _info(row)

    def list_sessions(self) -> tuple[SessionInfo, ...]:
        """Every session, most recently used first."""
        with self._transaction("BEGIN") as db:
            rows = db.execute(_INFO_QUERY + " ORDER BY s.updated_at DESC, s.name").fetchall()
        return tuple(_info(row) for row in rows)

    def delete(self, name: str) -> None:
        """Delete session ``name`` and all its messages."""
        with self._transaction() as db:
            if db.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount == 0:
                raise _no_such_session(name)
        self._live.pop(name, None)

    def clear(self, name: str, *, at: float | None = None) -> None:
        """Delete every message and the summary of session ``name`` (``/clear``); keep the rest."""
        with self._transaction() as db:
            session_id = _session_id(db, name)
            db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            db.execute(
                "UPDATE sessions SET summary = NULL, summary_covering = NULL, updated_at = ? "
                "WHERE id = ?",
                (_now(at), session_id),
            )
        self._live.pop(name, None)

    def save_summary(self, name: str, summary: Summary | None, *, at: float | None = None) -> None:
        """Keep the conversation's summary (``None`` removes it)."""
        text, covering = (summary.text, summary.covering) if summary else (None, None)
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sessions SET summary = ?, summary_covering = ?, updated_at = ? "
                "WHERE name = ?",
                (text, covering, _now(at), name),
            )
            if cursor.rowcount == 0:
                raise _no_such_session(name)

    # -- messages ---------------------------------------------------------

    def append(self, name: str, turn: Turn) -> None:
        """Write a completed turn (a user message, a tool result, a reply) at the end."""
        if name in self._live:
            raise LocalProtocolError(
                f"an answer is streaming in session {name!r}; finish() it before appending",
                kind="answer_in_progress",
            )
        now = _now(turn.at)
        with self._transaction() as db:
            session_id = _session_id(db, name)
            _insert(db, session_id, turn, _status(turn), now)
            _touch(db, session_id, now)

    def checkpoint(
        self, name: str, text: str, *, replace_last: bool = False, at: float | None = None
    ) -> None:
        """Save the answer streaming in session ``name`` so far: ``text`` is all of it.

        The first checkpoint of an answer adds an in-progress row at the end
        (with ``replace_last``, for ``/retry`` and ``/continue``, it takes over
        the last reply's row instead); the next ones update that row by its id.
        """
        now = _now(at)
        row_id = self._live.get(name)
        with self._transaction() as db:
            if row_id is not None:
                cursor = db.execute(
                    "UPDATE messages SET content = ?, updated_at = ? WHERE id = ?",
                    (text, now, row_id),
                )
                if cursor.rowcount == 1:
                    return
                # The row is gone (the session was cleared elsewhere): start a new one.
            session_id = _session_id(db, name)
            turn = Turn(Message("assistant", text), interrupted=True)
            if replace_last:
                row_id = _last_reply_id(db, session_id, name)
                _update(db, row_id, turn, "streaming", now)
            else:
                row_id = _insert(db, session_id, turn, "streaming", now)
        self._live[name] = row_id

    def finish(self, name: str, turn: Turn, *, replace_last: bool = False) -> None:
        """Write the answer that was streaming as ``turn``, complete or interrupted.

        It replaces the in-progress row of the last :meth:`checkpoint`; with no
        checkpoint (a short answer) it is appended, or with ``replace_last``
        takes the place of the last reply.
        """
        if turn.role != "assistant":
            raise LocalProtocolError(
                f"finish() writes an answer, an assistant turn; got role {turn.role!r} "
                "(use append())",
                kind="bad_turn",
            )
        now = _now(turn.at)
        row_id = self._live.get(name)
        with self._transaction() as db:
            session_id = _session_id(db, name)
            if (
                row_id is None
                or db.execute("SELECT 1 FROM messages WHERE id = ?", (row_id,)).fetchone() is None
            ):
                row_id = _last_reply_id(db, session_id, name) if replace_last else None
            if row_id is None:
                _insert(db, session_id, turn, _status(turn), now)
            else:
                _update(db, row_id, turn, _status(turn), now)
            _touch(db, session_id, now)
        self._live.pop(name, None)

    def load(self, name: str) -> SavedSession:
        """Session ``name`` with its turns; an answer left streaming comes back interrupted."""
        if name in self._live:
            raise LocalProtocolError(
                f"this store is streaming an answer into {name!r}; finish() it before loading",
                kind="answer_in_progress",
            )
        with self._transaction() as db:
            session_id = _session_id(db, name)
            recovered = db.execute(
                "UPDATE messages SET status = 'interrupted', reason = ? "
                "WHERE session_id = ? AND status = 'streaming'",
                (CRASH_REASON, session_id),
            ).rowcount
            return self._read(db, name, session_id, recovered > 0)

    # -- export -----------------------------------------------------------

    def export_json(self, name: str) -> str:
        """Session ``name`` as a JSON document (format ``streamcore-session``, version 1)."""
        saved = self._snapshot(name)
        info = saved.info
        document = {
            "format": "streamcore-session",
            "format_version": 1,
            "name": info.name,
            "provider": info.provider,
            "model": info.model,
            "system": info.system,
            "settings": dict(info.settings),
            "created_at": info.created_at,
            "updated_at": info.updated_at,
            "summary": (
                {"text": saved.summary.text, "covering": saved.summary.covering}
                if saved.summary
                else None
            ),
            "messages": [_turn_document(turn) for turn in saved.turns],
        }
        return json.dumps(document, ensure_ascii=False, indent=2)

    def export_markdown(self, name: str) -> str:
        """Session ``name`` as a readable Markdown transcript."""
        saved = self._snapshot(name)
        info = saved.info
        out = [
            f"# {info.name}",
            "",
            f"- Provider: {info.provider}",
            f"- Model: {info.model}",
            f"- Created: {_utc(info.created_at)}",
            f"- Updated: {_utc(info.updated_at)}",
        ]
        if info.settings:
            out.append(f"- Settings: `{_json(dict(info.settings))}`")
        if info.system:
            out += ["", "## System", "", info.system]
        if saved.summary:
            out += [
                "",
                f"## Summary of the first {saved.summary.covering} messages",
                "",
                saved.summary.text,
            ]
        for turn in saved.turns:
            out += ["", *_turn_markdown(turn)]
        return "\n".join(out) + "\n"

    # -- internals --------------------------------------------------------

    def _snapshot(self, name: str) -> SavedSession:
        # Read-only: a streaming row is shown as it is now, not marked as crashed.
        with self._transaction("BEGIN") as db:
            return self._read(db, name, _session_id(db, name), False)

    def _read(
        self, db: sqlite3.Connection, name: str, session_id: int, recovered: bool
    ) -> SavedSession:
        info = _info(db.execute(_INFO_QUERY + " WHERE s.id = ?", (session_id,)).fetchone())
        session = db.execute(
            "SELECT summary, summary_covering FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        rows = db.execute(
            "SELECT role, content, tool_calls, tool_call_id, status, reason, usage, updated_at "
            "FROM messages WHERE session_id = ? ORDER BY position",
            (session_id,),
        ).fetchall()
        try:
            turns = tuple(_turn(row) for row in rows)
        except (ValueError, TypeError, KeyError, LocalProtocolError) as exc:
            raise LocalProtocolError(
                f"session {name!r} in {self._path} has a message that cannot be read ({exc}); "
                "export what can be read or delete the session",
                kind="store_corrupt",
            ) from exc
        summary = Summary(session[0], int(session[1])) if session[0] is not None else None
        return SavedSession(info, turns, summary, recovered)

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction, committed on success and rolled back on any error.

        Writes take the write lock at once (``BEGIN IMMEDIATE``): a transaction
        that starts reading and then wants to write cannot wait for the lock,
        it fails. Reads use a plain ``BEGIN`` for a consistent snapshot.
        SQLite's own errors come out as ``store_busy`` or ``store_error``.
        """
        db = self._db
        try:
            db.execute(begin)
        except sqlite3.OperationalError as exc:
            raise _sqlite_error(exc, self._path) from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise _sqlite_error(exc, self._path) from exc
            raise

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            if current > SCHEMA_VERSION:
                raise LocalProtocolError(
                    f"{self._path} has schema version {current}, newer than this streamcore "
                    f"knows ({SCHEMA_VERSION}); upgrade streamcore or use another file",
                    kind="schema_too_new",
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version + 1, time.time()),
                )


_INFO_QUERY = (
    "SELECT s.name, s.provider, s.model, s.system_prompt, s.settings, s.created_at, "
    "s.updated_at, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) FROM sessions s"
)


def _info(row: tuple[Any, ...]) -> SessionInfo:
    name, provider, model, system, settings, created, updated, count = row
    return SessionInfo(
        name=str(name),
        provider=str(provider),
        model=str(model),
        system=None if system is None else str(system),
        settings=json.loads(str(settings)),
        created_at=float(created),
        updated_at=float(updated),
        messages=int(count),
    )


def _session_id(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT id FROM sessions WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _no_such_session(name)
    return int(row[0])


def _last_reply_id(db: sqlite3.Connection, session_id: int, name: str) -> int:
    row = db.execute(
        "SELECT id, role FROM messages WHERE session_id = ? ORDER BY position DESC LIMIT 1",
        (session_id,),
    ).fetchone()
    if row is None or row[1] != "assistant":
        raise LocalProtocolError(
            f"session {name!r} has no reply at the end to replace; replace_last is for "
            "/retry and /continue",
            kind="nothing_to_replace",
        )
    return int(row[0])


def _status(turn: Turn) -> str:
    return "interrupted" if turn.interrupted else "complete"


def _row_values(turn: Turn) -> tuple[object, ...]:
    message = turn.message
    calls = (
        _json([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls])
        if message.tool_calls
        else None
    )
    usage = _json(_usage_document(turn.usage)) if turn.usage is not None else None
    return (message.role, message.content, calls, message.tool_call_id, turn.reason, usage)


def _insert(db: sqlite3.Connection, session_id: int, turn: Turn, status: str, now: float) -> int:
    cursor = db.execute(
        "INSERT INTO messages (session_id, position, role, content, tool_calls, tool_call_id, "
        "reason, usage, status, created_at, updated_at) "
        "SELECT ?, COALESCE(MAX(position) + 1, 0), ?, ?, ?, ?, ?, ?, ?, ?, ? "
        "FROM messages WHERE session_id = ?",
        (session_id, *_row_values(turn), status, now, now, session_id),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _update(db: sqlite3.Connection, row_id: int, turn: Turn, status: str, now: float) -> None:
    db.execute(
        "UPDATE messages SET role = ?, content = ?, tool_calls = ?, tool_call_id = ?, "
        "reason = ?, usage = ?, status = ?, updated_at = ? WHERE id = ?",
        (*_row_values(turn), status, now, row_id),
    )


def _touch(db: sqlite3.Connection, session_id: int, now: float) -> None:
    db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))


def _turn(row: tuple[Any, ...]) -> Turn:
    role, content, calls, call_id, status, reason, usage, updated = row
    tool_calls = tuple(
        ToolCall(str(c["id"]), str(c["name"]), str(c["arguments"]))
        for c in (json.loads(str(calls)) if calls is not None else ())
    )
    # The CHECK constraint keeps role to the three a turn can have.
    message = Message(role, str(content), tool_calls, None if call_id is None else str(call_id))
    if status == "streaming":
        reason = "answer still streaming when read"
    interrupted = status != "complete"
    return Turn(
        message,
        interrupted=interrupted,
        reason=(str(reason) if reason is not None else CRASH_REASON) if interrupted else None,
        usage=Usage(**json.loads(str(usage))) if usage is not None else None,
        at=float(updated),
    )


def _usage_document(usage: Usage) -> dict[str, int]:
    fields = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
    return {name: value for name in fields if (value := getattr(usage, name)) is not None}


def _turn_document(turn: Turn) -> dict[str, object]:
    message = turn.message
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "interrupted": turn.interrupted,
        "reason": turn.reason,
        "usage": _usage_document(turn.usage) if turn.usage is not None else None,
        "at": turn.at,
    }


def _turn_markdown(turn: Turn) -> list[str]:
    message = turn.message
    if message.role == "tool":
        return [f"## Tool result ({message.tool_call_id})", "", *_fenced(message.content, "")]
    out = [f"## {'User' if message.role == 'user' else 'Assistant'}"]
    if message.content:
        out += ["", message.content]
    for call in message.tool_calls:
        out += ["", f"Tool call `{call.name}` ({call.id}):", "", *_fenced(call.arguments, "json")]
    if turn.interrupted:
        out += ["", f"*Interrupted: {turn.reason}*"]
    return out


def _fenced(text: str, language: str) -> list[str]:
    # A fence longer than any run of backticks inside, so the text cannot close it.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, text, fence]


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _now(at: float | None) -> float:
    return time.time() if at is None else at


def _check_name(name: str) -> None:
    if not name or len(name) > _MAX_NAME_CHARS or not name.isprintable() or name != name.strip():
        raise LocalProtocolError(
            f"session name {name!r} is not usable: give 1 to {_MAX_NAME_CHARS} printable "
            "characters without leading or trailing spaces",
            kind="bad_session_name",
        )


def _no_such_session(name: str) -> LocalProtocolError:
    return LocalProtocolError(
        f"there is no session called {name!r}; list_sessions() shows the saved ones",
        kind="no_such_session",
    )


def _sqlite_error(exc: sqlite3.OperationalError, path: Path) -> LocalProtocolError:
    message = str(exc)
    if "locked" in message or "busy" in message:
        return LocalProtocolError(
            f"{path} stayed locked by another streamcore process past the timeout ({message}); "
            "try again, or close the other chat",
            kind="store_busy",
        )
    return LocalProtocolError(
        f"the session store {path} failed: {message}; check the disk and its permissions",
        kind="store_error",
    )
