"""SSE decoding throughput: streamcore against the SSE decoders Python LLM clients ship.

Run: ``.venv/bin/python bench/sse_decode.py [--repeats N] [--events N] [--only PARTS]``
(``--only openai`` times just the OpenAI corpus, e.g. while tuning the decoder).

Every decoder gets the same chunk lists (see ``corpus.py``) and is driven the way
its own library drives it:

* openai / anthropic: ``_streaming.SSEDecoder().iter_bytes(chunks)`` (what their
  ``Stream`` does with ``response.iter_bytes()``);
* httpx-sse: UTF-8 incremental decoding (as ``response.iter_text()`` does), then
  ``SSELineDecoder.decode`` and ``SSEDecoder.decode`` per line (as ``EventSource.iter_sse``);
* sseclient-py: ``SSEClient(chunks).events()``;
* reference: ``body.split(b"\\n\\n")`` on the whole body and ``.decode()`` of
  each event's data -- a floor that no incremental decoder can beat by much;
* floor: an incremental decoder that does only what none can skip (buffer,
  decode, split, one SSEEvent per event) and none of the standard's checks --
  what streamcore would take with checks that cost nothing.

Each decoder's events are collected into a list; the time is the best of
``--repeats`` runs. Also measured: that a 1 MiB line costs linear time however
it is chunked (time for 4N bytes / time for N bytes should be about 4).
"""

from __future__ import annotations

import argparse
import codecs
import gc
import sys
import time
from collections.abc import Callable

from corpus import anthropic_messages_corpus, chunkings, openai_chat_corpus, split_fixed

from streamcore.sse import SSEDecoder, SSEEvent

Decoder = Callable[[list[bytes]], list[object]]


def run_streamcore(chunks: list[bytes], max_line_bytes: int = 1 << 20) -> list[object]:
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    out: list[object] = []
    extend = out.extend
    feed = decoder.feed
    for chunk in chunks:
        extend(feed(chunk))
    decoder.end()
    return out


def run_openai(chunks: list[bytes]) -> list[object]:
    from openai._streaming import SSEDecoder as OpenAIDecoder

    return list(OpenAIDecoder().iter_bytes(iter(chunks)))


def run_anthropic(chunks: list[bytes]) -> list[object]:
    from anthropic._streaming import SSEDecoder as AnthropicDecoder

    return list(AnthropicDecoder().iter_bytes(iter(chunks)))


def run_httpx_sse(chunks: list[bytes]) -> list[object]:
    from httpx_sse._decoders import SSEDecoder as HttpxDecoder
    from httpx_sse._decoders import SSELineDecoder

    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = SSELineDecoder()
    decoder = HttpxDecoder()
    out: list[object] = []
    for chunk in chunks:
        text = text_decoder.decode(chunk)
        if text:
            for line in lines.decode(text):
                event = decoder.decode(line.rstrip("\n"))
                if event is not None:
                    out.append(event)
    for line in lines.flush():
        event = decoder.decode(line.rstrip("\n"))
        if event is not None:
            out.append(event)
    return out


def run_sseclient(chunks: list[bytes]) -> list[object]:
    import sseclient

    return list(sseclient.SSEClient(iter(chunks)).events())


def run_reference(body: bytes) -> list[object]:
    return [block[6:].decode() for block in body.split(b"\n\n") if block]


def run_floor(chunks: list[bytes]) -> list[object]:
    """The least an incremental decoder returning SSEEvents can do: no checks, no state.

    Correct only for ``data:``-only events with LF endings (the OpenAI corpus);
    it tells how much of streamcore's time is its checks.
    """
    buf = bytearray()
    out: list[object] = []
    append = out.append
    new = tuple.__new__
    for chunk in chunks:
        buf += chunk
        end = buf.rfind(b"\n\n") + 2
        if end > 2:
            for text in buf[6 : end - 2].decode("utf-8", "replace").split("\n\ndata: "):
                append(new(SSEEvent, (text, "message", "")))
            del buf[:end]
    return out


# (corpus, chunking, "peer" or "reference") -> the speed streamcore must reach,
# relative to the fastest peer or to the reference.
TARGETS = {
    ("OpenAI", "1-1500 B", "peer"): 2.0,
    ("OpenAI", "1-1500 B", "reference"): 0.7,
    ("OpenAI", "1-16 B", "peer"): 1.5,
}
Ratios = dict[tuple[str, str, str], tuple[float, str]]

PARTS = ("openai", "anthropic", "linearity")

PEERS: dict[str, Decoder] = {
    "openai": run_openai,
    "anthropic": run_anthropic,
    "httpx-sse": run_httpx_sse,
    "sseclient-py": run_sseclient,
}


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per function, running them in turn each round.

    Interleaving means a burst of load from another process slows every
    decoder's round alike instead of one decoder's whole series.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for label, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def data_of(event: object) -> str:
    return str(getattr(event, "data"))  # noqa: B009 -- the peers' event classes differ


def bench_corpus(name: str, body: bytes, repeats: int, reference: bool) -> Ratios:
    """Print the table for one corpus; return streamcore's ratios for the summary."""
    expected = [e.data for e in run_streamcore([body]) if isinstance(e, SSEEvent)]
    print(f"\n== {name}: {len(body) / 1e6:.2f} MB, {len(expected)} events ==")
    ratios: Ratios = {}
    for chunking, chunks in chunkings(body).items():
        fns: dict[str, Callable[[], object]] = {}
        for label, decoder in {"streamcore": run_streamcore, **PEERS}.items():
            got = [data_of(e) for e in decoder(chunks)]
            if got == expected:
                fns[label] = lambda d=decoder, c=chunks: d(c)
            else:
                print(f"{chunking}: {label} gives different events ({len(got)}); not timed")
        if reference:
            fns["reference"] = lambda b=body: run_reference(b)
            fns["floor"] = lambda c=chunks: run_floor(c)
        seconds = best_times(fns, repeats)
        print(f"\n{'chunking':<10} {'decoder':<13} {'MB/s':>8} {'events/s':>11} {'seconds':>8}")
        for label, secs in seconds.items():
            print(
                f"{chunking:<10} {label:<13} {len(body) / secs / 1e6:8.1f} "
                f"{len(expected) / secs:11,.0f} {secs:8.3f}"
            )
        peers = {k: v for k, v in seconds.items() if k in PEERS}
        fastest = min(peers, key=peers.__getitem__)
        ratio = peers[fastest] / seconds["streamcore"]
        ratios[name, chunking, "peer"] = (ratio, fastest)
        line = f"-> streamcore / fastest peer ({fastest}): {ratio:.2f}x"
        if reference:
            ref_ratio = seconds["reference"] / seconds["streamcore"]
            ratios[name, chunking, "reference"] = (ref_ratio, "reference")
            line += f"; streamcore / reference: {ref_ratio:.2f}x"
            vs_peer = peers[fastest] / seconds["floor"]
            vs_ref = seconds["reference"] / seconds["floor"]
            line += f"\n   (floor, no checks: {vs_peer:.2f}x the peer, {vs_ref:.2f}x the reference)"
        print(line)
    return ratios


def bench_linearity(repeats: int) -> None:
    print("\n== linear time: one long line, time(4N) / time(N) should be about 4 ==")
    small = 256 * 1024  # and 4 x 256 KiB = the 1 MiB line
    for chunk_size in (64, 1):
        fns: dict[str, Callable[[], object]] = {}
        for size in (small, 4 * small):
            chunks = split_fixed(b"data: " + b"x" * size + b"\n\n", chunk_size)
            fns[str(size)] = lambda c=chunks: run_streamcore(c, 8 << 20)
        times = list(best_times(fns, repeats).values())
        print(
            f"{chunk_size:>3}-byte chunks: {small // 1024} KiB line {times[0]:.4f} s, "
            f"{4 * small // 1024} KiB line {times[1]:.4f} s, ratio {times[1] / times[0]:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="best of N runs (default 5)")
    parser.add_argument("--events", type=int, default=20_000, help="events per corpus")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of: {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) for --only: {', '.join(unknown)}; choose from {PARTS}")
    print(f"Python {sys.version.split()[0]}, best of {args.repeats}")
    ratios: Ratios = {}
    if "openai" in parts:
        ratios |= bench_corpus("OpenAI", openai_chat_corpus(args.events), args.repeats, True)
    if "anthropic" in parts:
        body = anthropic_messages_corpus(args.events)
        ratios |= bench_corpus("Anthropic", body, args.repeats, False)
    if "linearity" in parts:
        bench_linearity(args.repeats)
    print("\n== targets: streamcore speed relative to ==")
    for key, goal in TARGETS.items():
        if key not in ratios:
            continue
        ratio, against = ratios[key]
        verdict = "met" if ratio >= goal else "MISSED"
        print(f"{key[0]} {key[1]:<9} {against:<13} {ratio:5.2f}x  (target {goal}x) {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
