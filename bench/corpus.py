"""Deterministic, realistic SSE bodies and chunkings for benchmarks.

Every function takes a ``seed`` and returns the same bytes for the same
arguments, so numbers from different runs (and different benches) compare.

* :func:`openai_chat_corpus` -- an OpenAI Chat Completions stream
  (``chat.completion.chunk`` events, a role chunk first, then content, the
  finish chunk, the usage chunk and ``data: [DONE]``).
* :func:`anthropic_messages_corpus` -- an Anthropic Messages stream
  (``message_start``, ``content_block_start``, ``ping``, many
  ``content_block_delta``/``text_delta``, ``content_block_stop``,
  ``message_delta``, ``message_stop``), each as ``event: X`` + ``data: {...}``.
* :func:`split_fixed` / :func:`split_random` / :func:`chunkings` -- the chunk
  lists a transport might hand over (64 KiB reads, random small reads).

Use from another bench (run as ``python bench/x.py``, so ``bench/`` is on
``sys.path``)::

    from corpus import chunkings, openai_chat_corpus
"""

from __future__ import annotations

import json
import random
import string

__all__ = [
    "anthropic_messages_corpus",
    "chunkings",
    "openai_chat_corpus",
    "split_fixed",
    "split_random",
    "text_pieces",
]

_SENTENCE = (
    "the model streams tokens as they are sampled so a client can show the answer while it "
    "is still being written each chunk carries a small delta of text and the client "
    "appends them in order retries timeouts and partial reads are the hard part of doing "
    "this well in production systems with many concurrent users"
)
_WORDS = _SENTENCE.split(" ")
_CJK = "流式传输让用户更快看到回答。模型逐个生成词元，客户端按顺序拼接。東京の天気は晴れです。"
_EMOJI = ["🙂", "🚀", "✨", "👍🏽", "🇯🇵", "❤️", "🤖", "📦"]
_PUNCT = [",", ".", ":", ";", "!", "?", " —", " (", ")", '"']
_CODE = ["```python\n", "def ", "stream", "(", "chunks", "):\n", "    ", "return", "\n```", "\n\n"]


def text_pieces(count: int, seed: int = 0) -> list[str]:
    """``count`` token-sized text pieces: English words, punctuation, code, CJK, emoji, newlines."""
    rng = random.Random(seed)
    pieces = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.62:
            word = rng.choice(_WORDS)
            pieces.append(" " + (word.capitalize() if rng.random() < 0.1 else word))
        elif roll < 0.72:
            pieces.append(rng.choice(_PUNCT))
        elif roll < 0.80:
            start = rng.randrange(len(_CJK) - 3)
            pieces.append(_CJK[start : start + rng.randint(1, 3)])
        elif roll < 0.85:
            pieces.append(rng.choice(_EMOJI))
        elif roll < 0.93:
            pieces.append(rng.choice(_CODE))
        else:
            pieces.append(" " + str(rng.randint(0, 2025)))
    return pieces


def _dumps(obj: object) -> str:
    # The APIs send compact JSON with raw UTF-8 (not \\u escapes) for non-ASCII text.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _token(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def openai_chat_corpus(events: int = 20_000, seed: int = 1) -> bytes:
    """An OpenAI ``/v1/chat/completions`` stream body with ``events`` SSE events in all.

    With the default 20,000 events it is about 6 MB. Chunks carry
    ``"usage":null`` as they do when ``stream_options.include_usage`` is set.
    """
    if events < 4:
        raise ValueError("an OpenAI stream needs at least 4 events (role, finish, usage, [DONE])")
    rng = random.Random(seed)
    head = {
        "id": "chatcmpl-" + _token(rng, string.ascii_letters + string.digits, 29),
        "object": "chat.completion.chunk",
        "created": 1731000000 + rng.randrange(10_000_000),
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_" + _token(rng, "0123456789abcdef", 10),
    }

    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], "usage": None}

    bodies = [chunk({"role": "assistant", "content": "", "refusal": None})]
    pieces = text_pieces(events - 4, seed)
    bodies += [chunk({"content": piece}) for piece in pieces]
    bodies.append(chunk({}, "stop"))
    completion = len(pieces)
    bodies.append(
        {
            **head,
            "choices": [],
            "usage": {
                "prompt_tokens": 1873,
                "completion_tokens": completion,
                "total_tokens": 1873 + completion,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        }
    )
    lines = [f"data: {_dumps(body)}\n\n" for body in bodies]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode("utf-8")


def anthropic_messages_corpus(events: int = 20_000, seed: int = 2) -> bytes:
    """An Anthropic ``/v1/messages`` stream body with ``events`` SSE events in all (~3.3 MB)."""
    if events < 6:
        raise ValueError("an Anthropic stream needs at least 6 events")
    rng = random.Random(seed)
    message_id = "msg_01" + _token(rng, string.ascii_letters + string.digits, 22)
    out = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-20250514",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 472,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 2,
                        "service_tier": "standard",
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    pieces = text_pieces(events - 6, seed)
    for n, piece in enumerate(pieces):
        out.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        )
        if n % 1000 == 999:
            out.append(("ping", {"type": "ping"}))
    # A ping every 1000 deltas, as the API sends them; drop as many deltas to keep the count.
    del out[3 + len(pieces) :]
    out += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {_dumps(data)}\n\n" for name, data in out).encode()


def split_fixed(body: bytes, size: int) -> list[bytes]:
    """``body`` in reads of ``size`` bytes (the last one shorter)."""
    return [body[i : i + size] for i in range(0, len(body), size)]


def split_random(body: bytes, low: int, high: int, seed: int = 3) -> list[bytes]:
    """``body`` in reads of random sizes between ``low`` and ``high`` bytes (inclusive)."""
    rng = random.Random(seed)
    chunks = []
    i = 0
    while i < len(body):
        n = rng.randint(low, high)
        chunks.append(body[i : i + n])
        i += n
    return chunks


def chunkings(body: bytes, seed: int = 3) -> dict[str, list[bytes]]:
    """The three standard chunkings: 64 KiB reads, random 1-1500 and random 1-16 byte reads."""
    return {
        "64 KiB": split_fixed(body, 64 * 1024),
        "1-1500 B": split_random(body, 1, 1500, seed),
        "1-16 B": split_random(body, 1, 16, seed),
    }
