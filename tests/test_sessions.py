"""Saved chat sessions: round trips, checkpoints that survive a kill, two writers, no secrets."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamcore import LocalProtocolError
from streamcore.adapters.encodings import load_encoding
from streamcore.cli.sessions import (
    CRASH_REASON,
    SCHEMA_VERSION,
    SessionStore,
    data_dir,
    default_db_path,
    filter_settings,
)
from streamcore.events import Usage
from streamcore.memory import Conversation, State, Summary, Turn
from streamcore.request import Message, ToolCall

CL100K, _ = load_encoding("gpt-4")
T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC

CALLS = (
    ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"city": "Paris", "unit": "c"}'),
    ToolCall("toolu_01PiM2XVUczKGDrAqzRWxXbD", "get_weather", '{"city": "Lyon", "unit": "c"}'),
)


def trip_conversation() -> Conversation:
    """A realistic chat: a tool round, a reply with usage, then an answer cut off."""
    chat = Conversation(CL100K, system="You are a concise travel assistant.")
    chat.add_user("What's the weather in Paris and Lyon, in celsius?", at=T0)
    chat.add_reply(
        Message("assistant", "I'll check the weather in both cities.", CALLS),
        usage=Usage(input_tokens=612, output_tokens=97, cached_tokens=0),
        at=T0 + 2,
    )
    chat.add_tool_result(CALLS[0].id, '{"temp_c": 24, "sky": "sunny"}', at=T0 + 3)
    chat.add_tool_result(CALLS[1].id, '{"temp_c": 21, "sky": "cloudy"}', at=T0 + 3.5)
    chat.add_reply(
        Message("assistant", "Paris: 24 °C and sunny. Lyon: 21 °C and cloudy."),
        usage=Usage(input_tokens=741, output_tokens=22),
        at=T0 + 5,
    )
    chat.add_user("Which one suits a picnic? Answer in ```code``` style.", at=T0 + 60)
    chat.add_partial(
        Message("assistant", "Paris, clearly: sunny skies and"),
        reason="idle timeout after 30 s",
        at=T0 + 64,
    )
    return chat


def save(store: SessionStore, name: str, chat: Conversation) -> None:
    store.create(
        name,
        provider="anthropic",
        model="claude-sonnet-4-5",
        system=chat.system,
        settings={"temperature": 0.3, "max_tokens": 1024},
        at=T0,
    )
    for turn in chat.turns:
        if turn.role == "assistant":
            store.finish(name, turn)
        else:
            store.append(name, turn)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    opened = SessionStore.open(tmp_path / "sessions.db")
    yield opened
    opened.close()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- round trip, list, delete, export --------------------------------------


def test_conversation_round_trips_through_the_store(store: SessionStore) -> None:
    chat = trip_conversation()
    chat.set_summary("Ada asked about the weather in Paris and Lyon.", covering=4)
    save(store, "picnic", chat)
    store.save_summary("picnic", chat.summary)
    saved = store.load("picnic")
    assert saved.turns == chat.turns
    assert saved.summary == chat.summary
    assert not saved.recovered
    again = saved.conversation(CL100K)
    assert again.state is State.INTERRUPTED
    assert again.window(120) == chat.window(120)
    assert again.to_request("claude-sonnet-4-5") == chat.to_request("claude-sonnet-4-5")


def test_session_header_keeps_provider_model_system_and_settings(store: SessionStore) -> None:
    save(store, "picnic", trip_conversation())
    info = store.info("picnic")
    assert (info.provider, info.model, info.system) == (
        "anthropic",
        "claude-sonnet-4-5",
        "You are a concise travel assistant.",
    )
    assert info.settings == {"temperature": 0.3, "max_tokens": 1024}
    assert (info.created_at, info.updated_at, info.messages) == (T0, T0 + 64, 7)


def test_sessions_are_listed_most_recently_used_first(store: SessionStore) -> None:
    store.create("lyon", provider="openai", model="gpt-4o", at=T0)
    store.create("paris", provider="openai", model="gpt-4o", at=T0 + 1)
    store.append("lyon", Turn(Message("user", "Best bouchon in Lyon?"), at=T0 + 2))
    assert [info.name for info in store.list_sessions()] == ["lyon", "paris"]


def test_deleting_a_session_deletes_its_messages(store: SessionStore) -> None:
    save(store, "picnic", trip_conversation())
    store.delete("picnic")
    assert store.list_sessions() == ()
    with raw(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_unknown_session_is_a_typed_error(store: SessionStore) -> None:
    for call in (store.load, store.delete, store.info, store.export_json):
        with pytest.raises(LocalProtocolError) as err:
            call("nowhere")
        assert err.value.kind == "no_such_session"


def test_creating_a_taken_name_is_refused(store: SessionStore) -> None:
    store.create("picnic", provider="openai", model="gpt-4o")
    with pytest.raises(LocalProtocolError) as err:
        store.create("picnic", provider="ollama", model="llama3.2")
    assert err.value.kind == "session_exists"
    assert store.info("picnic").model == "gpt-4o"


@pytest.mark.parametrize("name", ["", " padded ", "tab\tname", "x" * 201])
def test_unusable_session_names_are_refused(store: SessionStore, name: str) -> None:
    with pytest.raises(LocalProtocolError) as err:
        store.create(name, provider="openai", model="gpt-4o")
    assert err.value.kind == "bad_session_name"


def test_markdown_export_is_a_readable_transcript(store: SessionStore) -> None:
    save(store, "picnic", trip_conversation())
    assert store.export_markdown("picnic") == (
        "# picnic\n"
        "\n"
        "- Provider: anthropic\n"
        "- Model: claude-sonnet-4-5\n"
        "- Created: 2025-06-15 15:06:40 UTC\n"
        "- Updated: 2025-06-15 15:07:44 UTC\n"
        '- Settings: `{"max_tokens":1024,"temperature":0.3}`\n'
        "\n"
        "## System\n"
        "\n"
        "You are a concise travel assistant.\n"
        "\n"
        "## User\n"
        "\n"
        "What's the weather in Paris and Lyon, in celsius?\n"
        "\n"
        "## Assistant\n"
        "\n"
        "I'll check the weather in both cities.\n"
        "\n"
        "Tool call `get_weather` (toolu_01T1x1fJ34qAmk2tNTrN7Up6):\n"
        "\n"
        "```json\n"
        '{"city": "Paris", "unit": "c"}\n'
        "```\n"
        "\n"
        "Tool call `get_weather` (toolu_01PiM2XVUczKGDrAqzRWxXbD):\n"
        "\n"
        "```json\n"
        '{"city": "Lyon", "unit": "c"}\n'
        "```\n"
        "\n"
        "## Tool result (toolu_01T1x1fJ34qAmk2tNTrN7Up6)\n"
        "\n"
        "```\n"
        '{"temp_c": 24, "sky": "sunny"}\n'
        "```\n"
        "\n"
        "## Tool result (toolu_01PiM2XVUczKGDrAqzRWxXbD)\n"
        "\n"
        "```\n"
        '{"temp_c": 21, "sky": "cloudy"}\n'
        "```\n"
        "\n"
        "## Assistant\n"
        "\n"
        "Paris: 24 °C and sunny. Lyon: 21 °C and cloudy.\n"
        "\n"
        "## User\n"
        "\n"
        "Which one suits a picnic? Answer in ```code``` style.\n"
        "\n"
        "## Assistant\n"
        "\n"
        "Paris, clearly: sunny skies and\n"
        "\n"
        "*Interrupted: idle timeout after 30 s*\n"
    )


def test_code_fences_in_tool_output_cannot_close_the_export_fence(store: SessionStore) -> None:
    store.create("code", provider="openai", model="gpt-4o")
    store.append("code", Turn(Message("user", "Run it.")))
    call = ToolCall("call_Xq7", "run_python", '{"code": "print(1)"}')
    store.finish("code", Turn(Message("assistant", "", (call,))))
    store.append("code", Turn(Message("tool", "```\n1\n```", tool_call_id="call_Xq7")))
    assert "````\n```\n1\n```\n````" in store.export_markdown("code")


def test_json_export_carries_every_field(store: SessionStore) -> None:
    save(store, "picnic", trip_conversation())
    document = json.loads(store.export_json("picnic"))
    assert (document["format"], document["format_version"], document["model"]) == (
        "streamcore-session",
        1,
        "claude-sonnet-4-5",
    )
    second = document["messages"][1]
    assert second["tool_calls"][1] == {
        "id": "toolu_01PiM2XVUczKGDrAqzRWxXbD",
        "name": "get_weather",
        "arguments": '{"city": "Lyon", "unit": "c"}',
    }
    assert second["usage"] == {"input_tokens": 612, "output_tokens": 97, "cached_tokens": 0}
    assert document["messages"][2]["tool_call_id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    last = document["messages"][-1]
    assert (last["interrupted"], last["reason"], last["at"]) == (
        True,
        "idle timeout after 30 s",
        T0 + 64,
    )


# -- checkpoints and crashes -------------------------------------------------

ASIMOV = ["The three laws are: first, ", "a robot may not injure", " a human be"]


def test_checkpoints_then_finish_leave_one_complete_reply(store: SessionStore) -> None:
    store.create("asimov", provider="anthropic", model="claude-sonnet-4-5")
    store.append("asimov", Turn(Message("user", "State Asimov's three laws of robotics.")))
    text = ""
    for delta in ASIMOV:
        text += delta
        store.checkpoint("asimov", text)
    answer = text + "ing or, through inaction, allow a human being to come to harm."
    store.finish("asimov", Turn(Message("assistant", answer), usage=Usage(21, 40)))
    saved = store.load("asimov")
    assert [t.message.content for t in saved.turns][1:] == [answer]
    assert saved.turns[1].usage == Usage(21, 40) and not saved.turns[1].interrupted


def test_checkpoint_rewrites_one_row_in_place(store: SessionStore) -> None:
    store.create("asimov", provider="anthropic", model="claude-sonnet-4-5")
    store.append("asimov", Turn(Message("user", "State Asimov's three laws of robotics.")))
    for n in range(1, len(ASIMOV) + 1):
        store.checkpoint("asimov", "".join(ASIMOV[:n]))
    with raw(store.path) as db:
        rows = db.execute("SELECT status, content FROM messages WHERE role = 'assistant'")
        assert rows.fetchall() == [("streaming", "".join(ASIMOV))]


def test_retry_checkpoint_takes_over_the_last_reply(store: SessionStore) -> None:
    store.create("bakery", provider="openai", model="gpt-4o")
    store.append("bakery", Turn(Message("user", "Suggest a name for a bakery in Lyon.")))
    store.finish("bakery", Turn(Message("assistant", "Le Pain Doré.")))
    store.checkpoint("bakery", "La Mie", replace_last=True)
    store.finish("bakery", Turn(Message("assistant", "La Mie Lyonnaise.")), replace_last=True)
    assert [t.message.content for t in store.load("bakery").turns] == [
        "Suggest a name for a bakery in Lyon.",
        "La Mie Lyonnaise.",
    ]


def test_short_retry_without_checkpoint_replaces_the_last_reply(store: SessionStore) -> None:
    store.create("bakery", provider="openai", model="gpt-4o")
    store.append("bakery", Turn(Message("user", "Suggest a name for a bakery in Lyon.")))
    store.finish("bakery", Turn(Message("assistant", "Le Pain Doré.")))
    store.finish("bakery", Turn(Message("assistant", "Croissant & Co.")), replace_last=True)
    assert store.info("bakery").messages == 2


def test_replacing_when_the_last_turn_is_not_a_reply_is_refused(store: SessionStore) -> None:
    store.create("bakery", provider="openai", model="gpt-4o")
    store.append("bakery", Turn(Message("user", "Suggest a name for a bakery in Lyon.")))
    with pytest.raises(LocalProtocolError) as err:
        store.checkpoint("bakery", "La Mie", replace_last=True)
    assert err.value.kind == "nothing_to_replace"


def test_appending_while_an_answer_streams_is_refused(store: SessionStore) -> None:
    store.create("asimov", provider="anthropic", model="claude-sonnet-4-5")
    store.append("asimov", Turn(Message("user", "State Asimov's three laws of robotics.")))
    store.checkpoint("asimov", ASIMOV[0])
    with pytest.raises(LocalProtocolError) as err:
        store.append("asimov", Turn(Message("user", "Hello?")))
    assert err.value.kind == "answer_in_progress"


CRASHING_CHAT = """
import sys
from streamcore.cli.sessions import SessionStore
from streamcore.memory import Turn
from streamcore.request import Message

store = SessionStore.open(sys.argv[1])
store.create("asimov", provider="anthropic", model="claude-sonnet-4-5")
store.append("asimov", Turn(Message("user", "State Asimov's three laws of robotics.")))
text = ""
for delta in sys.argv[2:]:
    text += delta
    store.checkpoint("asimov", text)
print("checkpointed", flush=True)
sys.stdin.read()  # streaming on, until killed
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_process_leaves_its_partial_answer_marked_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    chat = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CHAT, str(path), *ASIMOV],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=tmp_path,  # not the repo root: ./streamcore would shadow streamcore.cli
    )
    assert chat.stdout is not None and chat.stdin is not None
    assert chat.stdout.readline() == b"checkpointed\n"
    os.kill(chat.pid, signal.SIGKILL)
    assert chat.wait() == -signal.SIGKILL
    chat.stdin.close()
    chat.stdout.close()
    with SessionStore.open(path) as store:
        saved = store.load("asimov")
    assert saved.recovered
    last = saved.turns[-1]
    assert (last.role, last.message.content) == ("assistant", "".join(ASIMOV))
    assert (last.interrupted, last.reason) == (True, CRASH_REASON)
    conversation = saved.conversation(CL100K)
    assert conversation.state is State.INTERRUPTED  # ready for /continue


def test_recovered_answer_stays_recovered_on_the_next_load(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    crashed = SessionStore.open(path)
    crashed.create("asimov", provider="anthropic", model="claude-sonnet-4-5")
    crashed.append("asimov", Turn(Message("user", "State Asimov's three laws of robotics.")))
    crashed.checkpoint("asimov", ASIMOV[0])  # then the process "dies": never finished
    with SessionStore.open(path) as store:
        assert store.load("asimov").recovered
        again = store.load("asimov")
    assert not again.recovered
    assert again.turns[-1].reason == CRASH_REASON
    crashed.close()


# -- two connections ----------------------------------------------------------


def test_two_connections_append_to_one_session_without_losing_messages(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with SessionStore.open(path) as store:
        store.create("shared", provider="openai", model="gpt-4o")
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            with SessionStore.open(path) as store:
                start.wait()
                for i in range(40):
                    store.append("shared", Turn(Message("user", f"{tag} message {i}")))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with raw(path) as db:
        positions = [row[0] for row in db.execute("SELECT position FROM messages ORDER BY 1")]
    assert positions == list(range(80))
    with SessionStore.open(path) as store:
        contents = [t.message.content for t in store.load("shared").turns]
    for tag in ("left", "right"):
        assert [c for c in contents if c.startswith(tag)] == [
            f"{tag} message {i}" for i in range(40)
        ]


def test_answer_finished_after_another_connection_loaded_it_is_not_duplicated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sessions.db"
    with SessionStore.open(path) as chat, SessionStore.open(path) as viewer:
        chat.create("asimov", provider="anthropic", model="claude-sonnet-4-5")
        chat.append("asimov", Turn(Message("user", "State Asimov's three laws of robotics.")))
        chat.checkpoint("asimov", ASIMOV[0])
        seen = viewer.load("asimov")  # sees the checkpoint, as an interrupted answer
        assert seen.turns[-1].message.content == ASIMOV[0] and seen.turns[-1].interrupted
        chat.checkpoint("asimov", "".join(ASIMOV))
        chat.finish("asimov", Turn(Message("assistant", "".join(ASIMOV) + "ing.")))
        final = viewer.load("asimov")
    assert [t.message.content for t in final.turns][1:] == ["".join(ASIMOV) + "ing."]
    assert not final.turns[-1].interrupted


def test_write_blocked_past_the_timeout_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with SessionStore.open(path, timeout=0.05) as store:
        store.create("picnic", provider="openai", model="gpt-4o")
        blocker = raw(path)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LocalProtocolError) as err:
                store.append("picnic", Turn(Message("user", "Anyone there?")))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert err.value.kind == "store_busy"
        store.append("picnic", Turn(Message("user", "Anyone there?")))
        assert store.info("picnic").messages == 1


def test_store_uses_write_ahead_logging(store: SessionStore) -> None:
    with raw(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- schema ------------------------------------------------------------------


def test_schema_version_is_recorded(store: SessionStore) -> None:
    assert store.schema_version == SCHEMA_VERSION
    with raw(store.path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with SessionStore.open(path) as store:
        store.create("picnic", provider="openai", model="gpt-4o")
    with SessionStore.open(path) as store:
        assert store.info("picnic").model == "gpt-4o"
        assert store.schema_version == SCHEMA_VERSION


def test_database_from_a_newer_streamcore_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    SessionStore.open(path).close()
    with raw(path) as db:
        db.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, T0))
    with pytest.raises(LocalProtocolError) as err:
        SessionStore.open(path)
    assert err.value.kind == "schema_too_new"


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(b'{"not": "sqlite"}\n' * 100)
    with pytest.raises(LocalProtocolError) as err:
        SessionStore.open(path)
    assert err.value.kind == "store_unreadable"


# -- secrets and places ----------------------------------------------------------


def test_no_api_key_reaches_the_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-proj-" + secrets.token_urlsafe(32)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("STREAMCORE_DATA_DIR", str(tmp_path / "data"))
    settings = {
        "temperature": 0.7,
        "api_key": key,
        "authorization": f"Bearer {key}",
        "headers": {"Authorization": f"Bearer {key}"},
        "base_url": f"https://proxy.example/v1?key={key}",
        "reasoning_effort": key,
        "stop": ["\n\nUser:", key],
    }
    with SessionStore.open() as store:
        info = store.create("picnic", provider="openai", model="gpt-4o", settings=settings)
        store.update("picnic", model="gpt-4.1", settings={**settings, "top_p": 0.9})
        store.append("picnic", Turn(Message("user", "Which city suits a picnic?")))
        store.checkpoint("picnic", "Paris, clearly")
        store.finish("picnic", Turn(Message("assistant", "Paris, clearly: sunny skies.")))
        exported = store.export_json("picnic") + store.export_markdown("picnic")
        path = store.path
    assert info.settings == {"temperature": 0.7}
    assert path.parent == tmp_path / "data"
    files = [p for p in path.parent.iterdir() if p.name.startswith("sessions.db")]
    assert files
    for file in files:
        assert key.encode() not in file.read_bytes()
    assert key not in exported


def test_settings_keep_only_allow_listed_plain_values() -> None:
    assert filter_settings(
        {
            "temperature": 0.2,
            "max_tokens": 2048,
            "summarize": True,
            "stop": ["\n\nHuman:"],
            "x-api-key": "sk-ant-api03-abcdefghijklmnop",
            "temperature_note": "warm",
            "top_p": float("nan"),
            "seed": {"nested": 1},
            "reasoning_effort": "Bearer abc",
        }
    ) == {"temperature": 0.2, "max_tokens": 2048, "summarize": True, "stop": ["\n\nHuman:"]}


def test_database_and_its_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sessions.db"
    with SessionStore.open(path) as store:
        store.create("picnic", provider="openai", model="gpt-4o")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_data_dir_override_wins() -> None:
    env = {"STREAMCORE_DATA_DIR": "/tmp/sc", "XDG_DATA_HOME": "/data", "HOME": "/home/ada"}
    assert data_dir(env, platform="linux") == Path("/tmp/sc")
    assert default_db_path(env) == Path("/tmp/sc/sessions.db")


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"HOME": "/home/ada", "XDG_DATA_HOME": "/data"}, "linux", "/data/streamcore"),
        ({"HOME": "/home/ada", "XDG_DATA_HOME": "relative"}, "linux", None),
        ({"HOME": "/home/ada"}, "linux", "/home/ada/.local/share/streamcore"),
        ({"HOME": "/Users/ada"}, "darwin", "/Users/ada/Library/Application Support/streamcore"),
        ({"HOME": "/Users/ada", "LOCALAPPDATA": "/AppData/Local"}, "win32", None),
    ],
)
def test_data_dir_follows_the_platform(
    env: dict[str, str], platform: str, expected: str | None
) -> None:
    found = data_dir(env, platform=platform)
    if expected is None:  # relative XDG is ignored; Windows uses LOCALAPPDATA
        expected = (
            "/home/ada/.local/share/streamcore"
            if platform == "linux"
            else str(Path("/AppData/Local") / "streamcore")
        )
    assert found == Path(expected)


def test_store_repr_shows_only_the_path(store: SessionStore) -> None:
    assert repr(store) == f"SessionStore({str(store.path)!r})"


def test_clear_forgets_messages_and_summary_but_keeps_the_session(store: SessionStore) -> None:
    save(store, "picnic", trip_conversation())
    store.save_summary("picnic", Summary("Weather checked.", 4))
    store.clear("picnic")
    saved = store.load("picnic")
    assert (saved.turns, saved.summary, saved.info.model) == ((), None, "claude-sonnet-4-5")
