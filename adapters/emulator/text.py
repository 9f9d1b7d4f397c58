"""Deterministic answers for the emulator: the same prompt always gets the same text.

Everything here is pure (no I/O, no clock), so a test can compute the exact
text a stream must add up to before it opens a socket::

    expected = answer_for("Explain SSE")
    ...  # stream it from the emulator, accumulate the deltas
    assert accumulated == expected

The answer is markdown that exercises what breaks naive stream handling: a
heading, a list, a fenced code block, accented Latin (2-byte UTF-8), a CJK
phrase (3-byte), emoji (4-byte, including a ZWJ sequence and a flag made of
two code points). :func:`split_tokens` cuts it into token-like pieces of 1-4
characters, the way a model streams it.
"""

from __future__ import annotations

import hashlib
import random
import re

from streamcore._errors import LocalProtocolError

__all__ = [
    "DEFAULT_LENGTH",
    "answer_for",
    "answer_tokens",
    "continuation_offset",
    "is_continue_instruction",
    "split_tokens",
]

DEFAULT_LENGTH = 800
"""Default minimum answer length, in characters."""

MAX_LENGTH = 1_000_000
"""Upper bound on ``length``: the answer is built in memory."""

_TOPIC_WORD = re.compile(r"[^\W\d_]{3,}")
_STOPWORDS = frozenset(
    {
        "the", "and", "for", "with", "that", "this", "from", "what", "how", "why", "are",
        "you", "your", "can", "please", "about", "into", "explain", "tell", "write", "give",
        "show", "some", "does", "will", "would", "could", "should",
    }
)  # fmt: skip

_OPENERS = (
    "Here is a short overview of {topic}, written so every byte can be checked. {emoji}",
    "Good question about {topic}! Let's go through it step by step. {emoji}",
    "{topic} is easier to reason about once the moving parts are named. {emoji}",
)
_LIST_ITEMS = (
    "**First**, the response arrives in small pieces over one connection.",
    "**Then**, each piece is decoded exactly once, in order.",
    "A *keep-alive* comment resets the idle timer but carries no text.",
    "The café's naïve résumé: never assume a chunk ends on a character boundary.",
    "Tool calls stream their JSON arguments in fragments; concatenate them.",
    "A `[DONE]` marker (or `message_stop`) proves the answer is complete.",
    "Usage arrives at the end, and the latest report wins.",
    "Retries need a budget, or a flaky upstream turns into a stampede.",
)
_CODE_BLOCKS = (
    (
        "python",
        "def total_length(pieces: list[str]) -> int:\n"
        '    """Characters received so far."""\n'
        "    return sum(len(p) for p in pieces)  # {n}",
    ),
    (
        "json",
        '{{"type": "content_block_delta", "index": 0,\n'
        ' "delta": {{"type": "text_delta", "text": "Hé{n}"}}}}',
    ),
    (
        "sh",
        "curl -N http://127.0.0.1:8000/v1/chat/completions \\\n"
        "  -H 'content-type: application/json' -d @request.json  # {n}",
    ),
)
_CJK = (
    "流式传输需要耐心。",
    "東京の天気は晴れです。",
    "스트리밍은 한 글자씩 도착합니다.",
    "一字一句都不能丢。",
)
_EMOJI = ("🚀", "✨", "🎉", "🧪", "📦", "🌊", "👩\u200d💻", "🇯🇵")
_SENTENCES = (
    "Bytes can be split anywhere, even in the middle of a multi-byte character like é or 語.",
    "A stalled connection looks exactly like a slow model until a deadline says otherwise.",
    "When the connection drops after 300 tokens, the text so far is still worth keeping.",
    "Resuming means asking for the rest, then removing any overlap the model repeats.",
    "Pings matter: without them a proxy may close an idle stream after sixty seconds.",
    "Every buffer needs a bound, because a peer that never sends a newline is still a peer.",
    "The answer you are reading is deterministic, so a test can compare it byte for byte.",
    "Numbers like 3.14, 1e-9 and 2,048 are tokenized differently from words.",
    "Une phrase en français, avec des accents : déjà vu, naïveté, façade.",
    "Unicode also has combining marks: e\u0301 is two code points that render as one.",
)


def _rng_for(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _topic(prompt: str) -> str:
    words = [w for w in _TOPIC_WORD.findall(prompt) if w.lower() not in _STOPWORDS]
    if not words:
        return "Streaming Responses"
    return " ".join(w if w.isupper() else w[:1].upper() + w[1:].lower() for w in words[:4])


def answer_for(prompt: str, *, length: int = DEFAULT_LENGTH) -> str:
    """The emulator's answer to ``prompt``: same prompt, same text, on every run.

    The answer is markdown with a heading, a list, a code block, emoji and a
    CJK phrase, then extra paragraphs until it has at least ``length``
    characters (it ends at a paragraph boundary, so it is usually a little
    longer; the fixed sections alone are about 400 characters).

    >>> answer_for("Explain SSE") == answer_for("Explain SSE")
    True
    >>> answer_for("Explain SSE").splitlines()[0]
    '## SSE'
    >>> len(answer_for("Explain SSE", length=3000)) >= 3000
    True
    """
    if not 0 <= length <= MAX_LENGTH:
        raise LocalProtocolError(
            f"answer length must be between 0 and {MAX_LENGTH} characters, got {length}",
            kind="invalid_argument",
        )
    rng = _rng_for("answer", prompt)
    topic = _topic(prompt)
    emoji = rng.sample(_EMOJI, 3)
    items = rng.sample(_LIST_ITEMS, 3)
    lang, code = rng.choice(_CODE_BLOCKS)
    blocks = [
        f"## {topic}",
        rng.choice(_OPENERS).format(topic=topic.lower(), emoji=emoji[0]),
        "\n".join(f"- {item}" for item in items),
        f"```{lang}\n{code.format(n=rng.randrange(10, 1000))}\n```",
        f"{rng.choice(_CJK)} {emoji[1]} {emoji[2]}",
    ]
    size = sum(len(b) + 2 for b in blocks)
    deck: list[str] = []
    note = 0
    while size < length:
        note += 1
        sentences = []
        for _ in range(rng.randint(2, 3)):
            if not deck:
                deck = list(_SENTENCES)
                rng.shuffle(deck)
            sentences.append(deck.pop())
        # The numbered lead keeps paragraphs distinct, so any long stretch of
        # the answer occurs in it once (resume tests rely on that).
        paragraph = f"**Note {note}.** " + " ".join(sentences)
        blocks.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(blocks)


# Word-like runs with the single space before them (as BPE tokens carry it),
# numbers, runs of punctuation or symbols, and whitespace runs. The
# alternatives cover every character, so the pieces always join back.
_TOKEN = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+| ?\w")


def split_tokens(text: str, *, seed: str = "") -> list[str]:
    """Cut ``text`` into token-like pieces of 1 to 4 characters, deterministically.

    Words keep their leading space; long words, numbers and whitespace runs are
    cut at seeded random points (always at code point boundaries, so an emoji
    made of several code points may be split between pieces). The pieces
    always join back into ``text``.

    >>> split_tokens("Hi there!", seed="x")
    ['Hi', ' t', 'here', '!']
    >>> "".join(split_tokens("東京の天気 🇯🇵")) == "東京の天気 🇯🇵"
    True
    """
    rng = _rng_for("tokens", seed, text[:64])
    pieces: list[str] = []
    for match in _TOKEN.finditer(text):
        word = match.group()
        start = 0
        while len(word) - start > 4:
            step = rng.randint(2, 4)
            pieces.append(word[start : start + step])
            start += step
        pieces.append(word[start:])
    return pieces


def answer_tokens(prompt: str, *, length: int = DEFAULT_LENGTH) -> list[str]:
    """The pieces the emulator streams ``answer_for(prompt, length=length)`` in.

    A request with a token limit of N gets exactly the first N of them.

    >>> "".join(answer_tokens("Explain SSE")) == answer_for("Explain SSE")
    True
    """
    return split_tokens(answer_for(prompt, length=length), seed=prompt)


def continuation_offset(answer: str, partial: str) -> int | None:
    """Where in ``answer`` a resumed request continues, given the partial text it sent.

    ``partial`` must be a prefix of ``answer``, possibly with its trailing
    whitespace stripped (Anthropic rejects a prefill that ends in whitespace,
    so clients strip it). Returns the offset just past the partial text, or
    ``None`` if ``partial`` is not a prefix (then the answer starts over).

    >>> continuation_offset("Hello world. Bye.", "Hello world.")
    12
    >>> continuation_offset("Hello world.\\n\\nBye.", "Hello world.\\n") is None
    False
    >>> continuation_offset("Hello world.", "Goodbye") is None
    True
    """
    if answer.startswith(partial):
        return len(partial)
    stripped = partial.rstrip()
    if stripped and answer.startswith(stripped):
        return len(stripped)
    return None


_CONTINUE = re.compile(r"\bcontinue\b", re.IGNORECASE)
_MAX_INSTRUCTION = 300


def is_continue_instruction(text: str) -> bool:
    """Whether a user turn asks the model to continue its previous (cut-off) answer.

    >>> is_continue_instruction("Continue exactly where you left off.")
    True
    >>> is_continue_instruction("What is the weather in Paris?")
    False
    """
    return len(text) <= _MAX_INSTRUCTION and _CONTINUE.search(text) is not None
