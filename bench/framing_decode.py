"""Throughput of the NDJSON and JSON-array decoders on realistic bodies and chunkings.

    .venv/bin/python bench/framing_decode.py

Each case prints the best of a few runs. The floor rows parse the same JSON
(already decoded to ``str``) with no framing at all. The naive row splits
the same input with a search that restarts at the beginning of the buffer on
every chunk -- what a decoder without a remembered search offset does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from streamcore.jsonarray import JSONArrayDecoder
from streamcore.ndjson import NDJSONDecoder

REPEATS = 3


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def best_of(fn: Callable[..., object], *args: object) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def ndjson_decode(chunks: list[bytes], limit: int = 1 << 21) -> int:
    decoder = NDJSONDecoder(max_line_bytes=limit)
    n = sum(len(decoder.feed(c)) for c in chunks)
    return n + len(decoder.end().items)


def array_decode(chunks: list[bytes], limit: int = 1 << 21) -> int:
    decoder = JSONArrayDecoder(max_element_bytes=limit)
    n = sum(len(decoder.feed(c)) for c in chunks)
    decoder.end()
    return n


def naive_ndjson(chunks: list[bytes]) -> int:
    """Rescans the whole pending line for LF on every chunk."""
    buf, n = bytearray(), 0
    for chunk in chunks:
        buf += chunk
        while (i := buf.find(b"\n")) >= 0:  # searches from 0 every time
            json.loads(buf[:i])
            del buf[: i + 1]
            n += 1
    return n


def ollama_body(lines: int) -> bytes:
    out = []
    for i in range(lines):
        line = {
            "model": "llama3.2",
            "created_at": f"2024-11-19T15:52:{i % 60:02d}.117351Z",
            "message": {"role": "assistant", "content": " token" if i % 7 else " “quoted” 🌤"},
            "done": False,
        }
        out.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(out).encode()


def gemini_body(elements: int, text: str) -> bytes:
    parts = []
    for _ in range(elements):
        element = {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
            "modelVersion": "gemini-2.0-flash",
        }
        parts.append(json.dumps(element, indent=2, ensure_ascii=False))
    return ("[" + "\r\n,\r\n".join(parts) + "\r\n]").encode()


def row(name: str, body: bytes, seconds: float) -> None:
    mib = len(body) / (1 << 20)
    print(f"{name:<58} {seconds * 1e3:9.1f} ms {mib / seconds:8.1f} MiB/s")


def main() -> None:
    print(f"{'case':<58} {'time':>12} {'throughput':>14}")

    line = json.dumps({"message": {"content": "x" * (1 << 20)}}).encode() + b"\n"
    for size in (64, 4096):
        seconds = best_of(ndjson_decode, chunked(line, size))
        row(f"ndjson: one 1 MiB line, {size} B chunks", line, seconds)
    seconds = best_of(naive_ndjson, chunked(line, 64))
    row("naive rescan: one 1 MiB line, 64 B chunks", line, seconds)

    stream = ollama_body(20_000)
    for size in (64, 1024, 16384):
        seconds = best_of(ndjson_decode, chunked(stream, size))
        row(f"ndjson: Ollama stream, 20k lines, {size} B chunks", stream, seconds)
    lines = stream.decode().split("\n")[:-1]
    seconds = best_of(lambda: [json.loads(x) for x in lines])
    row("floor: json.loads per line, no framing", stream, seconds)

    big = gemini_body(1, "y" * (1 << 20))
    for size in (64, 4096):
        seconds = best_of(array_decode, chunked(big, size))
        row(f"array: one 1 MiB element, {size} B chunks", big, seconds)

    text = 'The sky is blue because of {Rayleigh} "scattering" [1] \\ 🌅 '
    many = gemini_body(5_000, text)
    for size in (64, 1024, 16384):
        seconds = best_of(array_decode, chunked(many, size))
        row(f"array: Gemini stream, 5k elements, {size} B chunks", many, seconds)
    seconds = best_of(json.loads, many)
    row("floor: json.loads of the whole array", many, seconds)


if __name__ == "__main__":
    main()
