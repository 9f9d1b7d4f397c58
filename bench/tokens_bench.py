"""Incremental token counting vs re-encoding the whole answer after every delta.

Builds a realistic ~10k-token answer (prose, markdown, a table, code), cuts it
into deltas of 1-5 tokens as a provider streams them (cuts between tokens, so
a delta may end inside a multi-byte character's token run, decoded
incrementally), then times, per delta:

* ``TokenCounter.add(delta)`` -- the exact incremental count;
* ``len(encoding.encode_ordinary(text_so_far))`` -- the naive exact count.

Both are measured over the whole stream and over the last deltas (the cost
"at 10k tokens"); the naive run is sampled (every Nth delta) to keep the
benchmark short, and its counts are checked against the incremental ones.

Run: ``.venv/bin/python bench/tokens_bench.py [--tokens 10000] [--sample 10]``
"""

from __future__ import annotations

import argparse
import codecs
import random
import statistics
import time
from collections.abc import Callable

from streamcore.adapters.encodings import load_encoding
from streamcore.tokens import TokenCounter

PARAGRAPHS = [
    "Streaming an answer token by token keeps the reader busy while the model is still "
    "writing. The price is that every layer must cope with text that arrives in pieces: "
    "a word split in two, a multi-byte character cut in the middle, a pause of {n} seconds "
    "between two deltas, or a connection that drops at token {m}.\n\n",
    "## Step {n}: measure before you optimise\n\n"
    "1. Record the time to first token (TTFT), here {n}.{m} s.\n"
    "2. Record the inter-token gap: p50 ≈ {m} ms, p99 ≈ {n}{m} ms.\n"
    "3. Don't guess; it's cheaper to measure than to argue.\n\n",
    "| provider | TTFT (ms) | tokens/s |\n|---|---:|---:|\n"
    "| openai | {n}{m}0 | {m}{n} |\n| anthropic | {m}{n}0 | {n}{m} |\n\n",
    "```python\ndef backoff(attempt: int, base: float = 0.5) -> float:\n"
    '    """Full jitter, capped at {n} seconds."""\n'
    "    return random.random() * min({n}.0, base * 2 ** (attempt - 1))\n```\n\n",
    "Les modèles répondent aussi en français, avec des accents : « déjà », « été », "
    "« naïve ». 日本語の文も混ざります（{n}件）。Emoji too 👍🏽 😀 — {m} of them.\n\n",
]


def build_answer(tokens: int, count: TokenCounter) -> str:
    parts = []
    rng = random.Random(42)
    while count.count < tokens:
        part = rng.choice(PARAGRAPHS).format(n=rng.randint(1, 9), m=rng.randint(10, 99))
        parts.append(part)
        count.add(part)
    return "".join(parts)


def stream_deltas(
    text: str, encoding_tokens: list[int], decode_bytes: Callable[[list[int]], bytes]
) -> list[str]:
    rng = random.Random(7)
    decoder = codecs.getincrementaldecoder("utf-8")()
    deltas = []
    i = 0
    while i < len(encoding_tokens):
        n = rng.randint(1, 5)
        chunk = decode_bytes(encoding_tokens[i : i + n])
        i += n
        piece = decoder.decode(chunk, final=i >= len(encoding_tokens))
        if piece:
            deltas.append(piece)
    assert "".join(deltas) == text
    return deltas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument(
        "--sample", type=int, default=10, help="time the naive count every Nth delta"
    )
    parser.add_argument("--tail", type=int, default=300, help="deltas counted as 'at the end'")
    args = parser.parse_args()

    started = time.perf_counter()
    tokenizer, info = load_encoding("gpt-4")
    load_seconds = time.perf_counter() - started
    encoding = tokenizer.encoding

    text = build_answer(args.tokens, TokenCounter(tokenizer))
    ids = encoding.encode_ordinary(text)
    deltas = stream_deltas(text, ids, encoding.decode_bytes)

    counter = TokenCounter(tokenizer)
    incremental: list[float] = []
    counts: list[int] = []
    for delta in deltas:
        t0 = time.perf_counter()
        counts.append(counter.add(delta))
        incremental.append(time.perf_counter() - t0)

    naive: list[tuple[int, float]] = []
    so_far = ""
    for index, delta in enumerate(deltas):
        so_far += delta
        if index % args.sample == 0 or index >= len(deltas) - args.tail:
            t0 = time.perf_counter()
            n = len(encoding.encode_ordinary(so_far))
            naive.append((index, time.perf_counter() - t0))
            assert n == counts[index], (index, n, counts[index])

    tail_start = len(deltas) - args.tail
    inc_all = statistics.mean(incremental) * 1e6
    inc_tail = statistics.mean(incremental[tail_start:]) * 1e6
    naive_tail = statistics.mean(t for i, t in naive if i >= tail_start) * 1e6
    naive_all_est = statistics.mean(t for i, t in naive if i % args.sample == 0) * 1e6
    print(f"encoding: {info.encoding} (exact={info.exact}, loaded in {load_seconds:.3f} s)")
    print(f"answer: {len(text):,} chars, {len(ids):,} tokens, {len(deltas):,} deltas of 1-5 tokens")
    print(
        f"counts agree with a full re-encode: yes ({counter.count:,} tokens, exact={counter.exact})"
    )
    print(
        f"incremental add(): mean {inc_all:7.1f} µs/delta over the stream, "
        f"{inc_tail:7.1f} µs/delta over the last {args.tail}"
    )
    print(
        f"naive re-encode:   mean {naive_all_est:7.1f} µs/delta over the stream (sampled), "
        f"{naive_tail:7.1f} µs/delta over the last {args.tail}"
    )
    print(f"ratio at {len(ids):,} tokens: naive / incremental = {naive_tail / inc_tail:,.0f}x")
    print(
        f"whole stream: incremental {sum(incremental) * 1e3:.1f} ms, "
        f"naive ≈ {naive_all_est * len(deltas) / 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
