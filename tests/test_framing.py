"""The lifecycle and error rule every JSON framing decoder shares (streamcore.framing).

NDJSON (Ollama) and the streamed JSON array (Gemini without ``alt=sse``) are
both :class:`~streamcore.framing.FramingDecoder` subclasses: items completed
before garbage are returned, the next call raises, a failed decoder keeps
raising the same error, ``end()`` is called once, and an item's bytes must be
UTF-8 JSON. Each test runs over both; what only one framing does stays in
``test_ndjson.py`` / ``test_jsonarray.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from streamcore import LocalProtocolError, RemoteProtocolError
from streamcore.framing import FramingDecoder
from streamcore.jsonarray import JSONArrayDecoder
from streamcore.ndjson import NDJSONDecoder

# Two items of a real stream each: Ollama /api/chat lines, Gemini response elements.
OLLAMA_ITEMS: list[object] = [
    {"model": "llama3.2", "message": {"role": "assistant", "content": "Bonjour 🌤️"}, "done": False},
    {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True},
]
GEMINI_ITEMS: list[object] = [
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": 'air scatters {"blue"} [more] \\ 🌅'}],
                    "role": "model",
                },
                "index": 0,
            }
        ]
    },
    {"candidates": [{"finishReason": "STOP", "index": 0}], "modelVersion": "gemini-2.0-flash"},
]


def ndjson(items: list[object], newline: str = "\n") -> bytes:
    """Frame like Ollama's Go server: compact JSON, non-ASCII kept as UTF-8."""
    return b"".join(
        (json.dumps(item, ensure_ascii=False, separators=(",", ":")) + newline).encode()
        for item in items
    )


def json_array(items: list[object], indent: int | None = 2, *, closed: bool = True) -> bytes:
    """Frame like Gemini: pretty-printed elements, CRLF around the commas."""
    parts = [json.dumps(item, indent=indent, ensure_ascii=False) for item in items]
    return ("[" + "\r\n,\r\n".join(parts) + ("\r\n]" if closed else "\r\n")).encode()


OLLAMA_BODY = ndjson(OLLAMA_ITEMS)


@dataclass(frozen=True)
class Framing:
    make: Callable[..., FramingDecoder[object]]
    limit: str
    """The keyword of the size limit."""
    items: list[object]
    body: bytes
    """``items``, framed."""
    open_body: bytes
    """``items`` framed, with room for more after them (no closing bracket)."""
    latin1_item: bytes
    """A body whose one item is Latin-1, not UTF-8."""
    nested: bytes
    """A body whose one item nests past Python's recursion limit."""


FRAMINGS = {
    "ndjson": Framing(
        NDJSONDecoder,
        "max_line_bytes",
        OLLAMA_ITEMS,
        OLLAMA_BODY,
        OLLAMA_BODY,
        b'{"message":{"role":"assistant","content":"caf\xe9"},"done":false}\n',
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
    ),
    "jsonarray": Framing(
        JSONArrayDecoder,
        "max_element_bytes",
        GEMINI_ITEMS,
        json_array(GEMINI_ITEMS),
        json_array(GEMINI_ITEMS, closed=False),
        b'[{"text":"caf\xe9"}]',
        b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]",
    ),
}
NAMES = list(FRAMINGS)
# Bytes no JSON framing accepts: an SSE line sent to the wrong decoder.
GARBAGE = b"data: [DONE]\n"


def test_the_bodies_hold_the_items() -> None:
    for framing in FRAMINGS.values():
        decoder = framing.make()
        assert decoder.feed(framing.body) + list(decoder.end().items) == framing.items


@pytest.mark.parametrize("name", NAMES)
def test_items_before_garbage_are_returned_and_the_next_call_raises(name: str) -> None:
    framing = FRAMINGS[name]
    decoder = framing.make()
    assert decoder.feed(framing.open_body + GARBAGE) == framing.items
    with pytest.raises(RemoteProtocolError) as info:
        decoder.end()
    assert info.value.kind == "invalid_json"


@pytest.mark.parametrize("name", NAMES)
def test_failed_decoder_keeps_raising_the_same_error(name: str) -> None:
    framing = FRAMINGS[name]
    decoder = framing.make()
    with pytest.raises(RemoteProtocolError) as first:
        decoder.feed(GARBAGE)
    with pytest.raises(RemoteProtocolError) as again:
        decoder.feed(framing.body)
    with pytest.raises(RemoteProtocolError) as at_end:
        decoder.end()
    assert first.value is again.value is at_end.value


@pytest.mark.parametrize("name", NAMES)
def test_feed_after_end_is_a_local_protocol_error(name: str) -> None:
    framing = FRAMINGS[name]
    decoder = framing.make()
    decoder.end()
    with pytest.raises(LocalProtocolError) as info:
        decoder.feed(framing.body)
    assert info.value.kind == "feed_after_end"
    assert f"use a new {type(decoder).__name__} per body" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_end_twice_is_a_local_protocol_error(name: str) -> None:
    framing = FRAMINGS[name]
    decoder = framing.make()
    decoder.feed(framing.body)
    decoder.end()
    with pytest.raises(LocalProtocolError) as info:
        decoder.end()
    assert info.value.kind == "end_twice"


@pytest.mark.parametrize("name", NAMES)
def test_limit_below_one_is_rejected(name: str) -> None:
    framing = FRAMINGS[name]
    with pytest.raises(LocalProtocolError) as info:
        framing.make(**{framing.limit: 0})
    assert info.value.kind == "invalid_argument"
    assert framing.limit in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_utf8_in_an_item_raises_invalid_utf8(name: str) -> None:
    decoder = FRAMINGS[name].make()
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(FRAMINGS[name].latin1_item)
        decoder.end()
    assert info.value.kind == "invalid_utf8"
    assert "b'\\xe9" in str(info.value)  # the offending bytes, so the encoding can be guessed


@pytest.mark.parametrize("name", NAMES)
def test_deeply_nested_item_is_invalid_json_not_a_recursion_error(name: str) -> None:
    decoder = FRAMINGS[name].make(**{FRAMINGS[name].limit: 1 << 20})
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(FRAMINGS[name].nested)
        decoder.end()
    assert info.value.kind == "invalid_json"
    assert "nested too deeply" in str(info.value)
