"""Transport overhead: time to first token and full-stream time, streamcore against peers.

    .venv/bin/python bench/transport_bench.py [--runs N] [--warmup N] [--long N] [--quick]
                                              [--profile]

About 70 s with the defaults; ``--quick`` is a CI-size run of about 10 s.

Every contestant asks the same emulator (``streamcore mock``, OpenAI Chat
Completions, no faults) for the same answer and is timed from just before the
call that sends the request to the first non-empty text delta in its hands
(TTFT), then reads the answer to its end:

* raw socket: ``trio.open_tcp_stream``, one pre-built HTTP/1.1 request, reads
  until the bytes ``"content":"`` of the first non-empty delta have arrived --
  no HTTP parsing, no JSON, no events: the cheapest possible client, the floor;
* streamcore: ``open_stream(provider, prompt)`` and its ``async for``, with the
  defaults (live token counting on), on a fresh connection (no ``http=``: the
  stream opens its own ``HTTPClient``) and on a pooled one (``http=`` a shared
  ``HTTPClient`` whose keep-alive connection is reused); once more pooled with
  ``count_tokens=False`` to show what the live count costs;
* openai: the official SDK, ``AsyncOpenAI(...).chat.completions.create(...,
  stream=True)`` under asyncio (a separate phase: it cannot share trio's loop);
  "fresh" makes a new client per request (outside the timed span, so the span
  holds its connect, not its construction), "pooled" reuses one.

The raw socket gets the same fresh / pooled pair (a new socket, or one
keep-alive socket read to the end of every response). Text is checked: every
answer must equal ``answer_for(prompt)``, the raw socket's too (it keeps the
bytes it read and parses them after its clock has stopped).

Why the emulator runs in another process: in the same process its work
(JSON, h11, writes) would share the client's one thread, so every TTFT would
include the server's time and the client with the more awaits would also wait
for server work scheduled in between; and the openai phase runs on asyncio,
where the trio emulator cannot run at all. A separate process on another core
gives every contestant the same server, costing none of their own CPU time.

The full-stream run asks for a long answer (``length=20000`` characters, about
8,000 SSE events) and times request to end of body. Medians and p90 over
``--runs``; contestants interleaved run by run so that load from elsewhere
hits them alike. ``--profile`` adds a cProfile of the streamcore pooled runs.

Targets (issue 4): streamcore adds under 1 ms to the raw socket's median TTFT.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import openai
import trio

from streamcore.adapters.client import Provider, open_stream
from streamcore.adapters.emulator import FAULT_HEADER, answer_for
from streamcore.adapters.http import HTTPClient
from streamcore.events import TextDelta

TARGET_ADDED_MS = 1.0
"""streamcore may add at most this much to the raw socket's median TTFT."""

MODEL = "gpt-4.1-mini"
PROMPT = "Explain server-sent events and why a streaming client must buffer partial lines."
API_KEY = "sk-bench-not-a-real-key"
MARKER = b'"content":"'
END_OF_BODY = b"\n\r\n0\r\n\r\n"
"""The last SSE event's blank line, its chunk's CRLF, then the zero-size chunk."""

Timing = tuple[float, float, float]
"""(TTFT, total, client CPU time to the first token) in seconds for one request."""


# --------------------------------------------------------------------------- the emulator


@contextmanager
def emulator_process() -> Iterator[tuple[str, int]]:
    """Run ``streamcore mock --port 0`` in a child process; yield its (host, port)."""
    exe = shutil.which("streamcore", path=os.path.dirname(sys.executable))
    if exe is None:
        sys.exit(f"no `streamcore` command next to {sys.executable}; install the package first")
    child = subprocess.Popen(
        [exe, "mock", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        found = re.search(r"http://([\d.]+):(\d+)", first)
        if found is None:
            sys.exit(f"`streamcore mock` did not announce its address: {first!r}")
        yield found.group(1), int(found.group(2))
    finally:
        child.terminate()  # SIGTERM: the mock stops cleanly on it
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def fault_header(length: int) -> tuple[str, str]:
    return (FAULT_HEADER, f"length={length}")


# --------------------------------------------------------------------------- raw socket


def raw_request(host: str, port: int, length: int) -> bytes:
    """The request a minimal client would write: OpenAI's JSON, keep-alive HTTP/1.1."""
    body = (
        f'{{"model":"{MODEL}","stream":true,"messages":[{{"role":"user","content":"{PROMPT}"}}]}}'
    ).encode()
    name, value = fault_header(length)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\n{name}: {value}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answer_in(response: bytes) -> str:
    """The text of a raw OpenAI Chat Completions response: status, chunked body, SSE, JSON.

    Run after the clock has stopped, so that the raw socket's answer is checked
    like everyone else's without the floor paying for the parsing.
    """
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"raw socket: not a 200 response: {head[:40]!r}")
    if b"transfer-encoding: chunked" not in head.lower():
        raise RuntimeError("raw socket: the emulator's body was expected chunked")
    payload = bytearray()
    at = 0
    while True:
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end].split(b";")[0], 16)
        if size == 0:
            break
        payload += body[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2
    pieces: list[str] = []
    for event in bytes(payload).split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and (text := choices[0]["delta"].get("content")):
                pieces.append(text)
    return "".join(pieces)


class RawClient:
    """The floor: bytes in, one ``find`` for the first text delta, a last-bytes check per read."""

    def __init__(
        self, host: str, port: int, request: bytes, expected: str, *, pooled: bool
    ) -> None:
        self.host, self.port, self.request, self.pooled = host, port, request, pooled
        self.expected = expected
        self.stream: trio.SocketStream | None = None

    async def run(self) -> Timing:
        cpu = time.process_time()
        start = time.perf_counter()
        stream = self.stream
        if stream is None:
            stream = await trio.open_tcp_stream(self.host, self.port)
        await stream.send_all(self.request)
        seen = bytearray()  # searched for the first text delta
        rest: list[bytes] = []  # what came after it, kept as read, for the check
        offset = 0
        first: float | None = None
        tail = b""
        size = len(END_OF_BODY)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("the emulator closed the connection before the body's end")
            if first is None:
                seen += data
                while (at := seen.find(MARKER, offset)) >= 0:
                    end = at + len(MARKER)
                    if end >= len(seen):
                        offset = at  # the byte after the marker has not arrived yet
                        break
                    if seen[end] != ord('"'):  # not the role chunk's empty content
                        first = time.perf_counter()
                        cpu = time.process_time() - cpu
                        break
                    offset = end
                else:
                    offset = max(offset, len(seen) - len(MARKER))
            else:
                rest.append(data)
            tail = data[-size:] if len(data) >= size else (tail + data)[-size:]
            if tail == END_OF_BODY:
                break
        total = time.perf_counter()
        if self.pooled:
            self.stream = stream
        else:
            await stream.aclose()
        rest.insert(0, bytes(seen))
        text = answer_in(b"".join(rest))
        if text != self.expected or first is None:
            raise RuntimeError(
                f"raw socket got {len(text)} characters, expected {len(self.expected)}: "
                "not the same work, nothing timed"
            )
        return first - start, total - start, cpu

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


# --------------------------------------------------------------------------- streamcore


class StreamcoreClient:
    """``open_stream`` as its users call it; fresh (no ``http=``) or on a shared pool."""

    def __init__(
        self, provider: Provider, expected: str, *, pooled: bool, count_tokens: bool = True
    ) -> None:
        self.provider, self.expected = provider, expected
        self.http = HTTPClient() if pooled else None
        self.count_tokens = count_tokens

    async def run(self) -> Timing:
        first: float | None = None
        cpu = time.process_time()
        start = time.perf_counter()
        async with open_stream(
            self.provider, PROMPT, http=self.http, count_tokens=self.count_tokens
        ) as stream:
            async for event in stream:
                if first is None and type(event) is TextDelta and event.text:
                    first = time.perf_counter()
                    cpu = time.process_time() - cpu
        total = time.perf_counter()
        result = stream.result()
        if result.text != self.expected or first is None:
            raise RuntimeError(
                f"streamcore got {len(result.text)} characters ({result.state.value}), "
                f"expected {len(self.expected)}: not the same work, nothing timed"
            )
        return first - start, total - start, cpu

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()


# --------------------------------------------------------------------------- openai


class OpenAIClient:
    """The official SDK's async streaming call; fresh client per request, or one shared."""

    def __init__(self, base_url: str, length: int, expected: str, *, pooled: bool) -> None:
        self.base_url, self.expected, self.pooled = base_url, expected, pooled
        self.headers = dict([fault_header(length)])
        self.shared = self._client() if pooled else None

    def _client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=API_KEY, max_retries=0)

    async def run(self) -> Timing:
        client = self.shared if self.shared is not None else self._client()
        pieces: list[str] = []
        first: float | None = None
        cpu = time.process_time()
        start = time.perf_counter()
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            extra_headers=self.headers,
        )
        async for chunk in stream:
            if chunk.choices and (text := chunk.choices[0].delta.content):
                if first is None:
                    first = time.perf_counter()
                    cpu = time.process_time() - cpu
                pieces.append(text)
        total = time.perf_counter()
        if self.shared is None:
            await client.close()
        if "".join(pieces) != self.expected or first is None:
            raise RuntimeError("openai got a different answer: not the same work, nothing timed")
        return first - start, total - start, cpu

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.close()


# --------------------------------------------------------------------------- running


Runner = Callable[[], Awaitable[Timing]]


async def measure(runners: dict[str, Runner], runs: int, warmup: int) -> dict[str, list[Timing]]:
    """Run every contestant ``warmup + runs`` times, interleaved; keep the last ``runs``."""
    timings: dict[str, list[Timing]] = {label: [] for label in runners}
    gc.collect()
    order = list(runners)
    for i in range(warmup + runs):
        # A different contestant leads each round: none always follows the same one.
        shift = i % len(order)
        for label in order[shift:] + order[:shift]:
            timing = await runners[label]()
            if i >= warmup:
                timings[label].append(timing)
    return timings


async def trio_phase(
    host: str, port: int, args: argparse.Namespace
) -> tuple[dict[str, list[Timing]], dict[str, list[Timing]]]:
    base = f"http://{host}:{port}/v1"
    short, long = answer_for(PROMPT, length=args.length), answer_for(PROMPT, length=args.long)

    def provider(length: int) -> Provider:
        return Provider.openai(
            MODEL, api_key=API_KEY, base_url=base, headers=(fault_header(length),)
        )

    clients = {
        "raw socket, fresh": RawClient(
            host, port, raw_request(host, port, args.length), short, pooled=False
        ),
        "raw socket, pooled": RawClient(
            host, port, raw_request(host, port, args.length), short, pooled=True
        ),
        "streamcore, fresh": StreamcoreClient(provider(args.length), short, pooled=False),
        "streamcore, pooled": StreamcoreClient(provider(args.length), short, pooled=True),
        "streamcore, pooled, no count": StreamcoreClient(
            provider(args.length), short, pooled=True, count_tokens=False
        ),
    }
    long_clients = {
        "raw socket, pooled": RawClient(
            host, port, raw_request(host, port, args.long), long, pooled=True
        ),
        "streamcore, pooled": StreamcoreClient(provider(args.long), long, pooled=True),
        "streamcore, pooled, no count": StreamcoreClient(
            provider(args.long), long, pooled=True, count_tokens=False
        ),
    }
    try:
        ttft = await measure({k: c.run for k, c in clients.items()}, args.runs, args.warmup)
        full = await measure({k: c.run for k, c in long_clients.items()}, args.long_runs, 1)
    finally:
        for client in (*clients.values(), *long_clients.values()):
            await client.aclose()
    return ttft, full


async def openai_phase(
    host: str, port: int, args: argparse.Namespace
) -> tuple[dict[str, list[Timing]], dict[str, list[Timing]]]:
    base = f"http://{host}:{port}/v1"
    short, long = answer_for(PROMPT, length=args.length), answer_for(PROMPT, length=args.long)
    clients = {
        "openai, fresh": OpenAIClient(base, args.length, short, pooled=False),
        "openai, pooled": OpenAIClient(base, args.length, short, pooled=True),
    }
    long_client = OpenAIClient(base, args.long, long, pooled=True)
    try:
        ttft = await measure({k: c.run for k, c in clients.items()}, args.runs, args.warmup)
        full = await measure({"openai, pooled": long_client.run}, args.long_runs, 1)
    finally:
        for client in (*clients.values(), long_client):
            await client.aclose()
    return ttft, full


async def profile_phase(host: str, port: int, args: argparse.Namespace) -> None:
    base = f"http://{host}:{port}/v1"
    provider = Provider.openai(
        MODEL, api_key=API_KEY, base_url=base, headers=(fault_header(args.length),)
    )
    client = StreamcoreClient(provider, answer_for(PROMPT, length=args.length), pooled=True)
    await client.run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.runs):
        await client.run()
    profiler.disable()
    await client.aclose()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(f"\n-- profile: streamcore pooled, {args.runs} requests, by own time --")
    lines = out.getvalue().splitlines()
    begin = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("\n".join(line for line in lines[begin:] if line.strip()))


# --------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class Summary:
    median: float
    p90: float


def summarize(values: list[float]) -> Summary:
    ordered = sorted(values)
    return Summary(
        statistics.median(ordered), ordered[min(len(ordered) - 1, len(ordered) * 9 // 10)]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300, help="timed requests each (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests first (30)")
    parser.add_argument(
        "--length",
        type=int,
        default=100,
        help="TTFT answer length (100: the emulator's shortest answer)",
    )
    parser.add_argument("--long", type=int, default=20_000, help="full-stream length (20000)")
    parser.add_argument("--long-runs", type=int, default=5, help="full-stream requests (5)")
    parser.add_argument(
        "--quick", action="store_true", help="CI size: 40 runs, 3 long runs of 5000 chars"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile streamcore pooled")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.long, args.long_runs = 40, 5, 5_000, 3
    print(f"Python {sys.version.split()[0]}, trio {trio.__version__}, openai {openai.__version__}")
    print(
        f"emulator: `streamcore mock` in a child process; {args.runs} requests each after "
        f"{args.warmup} warm-up (length={args.length}); full stream length={args.long} "
        f"x {args.long_runs}"
    )
    load_before = os.getloadavg()[0]
    with emulator_process() as (host, port):
        ttft, full = trio.run(trio_phase, host, port, args)
        openai_ttft, openai_full = asyncio.run(openai_phase(host, port, args))
        if args.profile:
            trio.run(profile_phase, host, port, args)
    ttft |= openai_ttft
    full |= openai_full
    print(
        f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
        f"{os.cpu_count()} CPUs: other processes' load shows up in wall times"
    )

    chars = len(answer_for(PROMPT, length=args.length))
    print(f"\n== time to first token, {chars}-char answer (ms) ==")
    print("(CPU: this process's CPU time from the call to the first delta; total: to body end)")
    print(f"{'client':<30} {'median':>8} {'p90':>8} {'CPU med':>8} {'total med':>10}")
    medians: dict[str, float] = {}
    for label, timings in ttft.items():
        first = summarize([t[0] for t in timings])
        whole = summarize([t[1] for t in timings])
        cpu = summarize([t[2] for t in timings])
        medians[label] = first.median
        print(
            f"{label:<30} {first.median * 1e3:8.3f} {first.p90 * 1e3:8.3f} "
            f"{cpu.median * 1e3:8.3f} {whole.median * 1e3:10.2f}"
        )

    chars = len(answer_for(PROMPT, length=args.long))
    print(f"\n== full stream, {chars}-char answer (ms, request to end of body) ==")
    print(f"{'client':<30} {'median':>8} {'p90':>8} {'TTFT median':>12}")
    for label, timings in full.items():
        whole = summarize([t[1] for t in timings])
        first = summarize([t[0] for t in timings])
        print(
            f"{label:<30} {whole.median * 1e3:8.1f} {whole.p90 * 1e3:8.1f} "
            f"{first.median * 1e3:12.3f}"
        )

    print(f"\n== target: streamcore adds under {TARGET_ADDED_MS} ms to the raw median TTFT ==")
    print("(wall: median TTFT minus the raw socket's; CPU: the same for the CPU-time medians,")
    print(" which other processes on the machine disturb far less than they disturb wall time)")
    cpu_medians = {label: statistics.median(t[2] for t in ts) for label, ts in ttft.items()}
    missed = 0
    for kind in ("fresh", "pooled"):
        for label in (f"streamcore, {kind}", f"streamcore, {kind}, no count"):
            if label not in medians:
                continue
            raw, peer = f"raw socket, {kind}", f"openai, {kind}"
            added = (medians[label] - medians[raw]) * 1e3
            added_cpu = (cpu_medians[label] - cpu_medians[raw]) * 1e3
            verdict = "met" if added < TARGET_ADDED_MS else "MISSED"
            missed += added >= TARGET_ADDED_MS and label == f"streamcore, {kind}"
            print(
                f"{label:<30} wall {added:+6.3f} ms, CPU {added_cpu:+6.3f} ms  {verdict:<6}  "
                f"openai / streamcore: wall {medians[peer] / medians[label]:4.2f}x, "
                f"CPU {cpu_medians[peer] / cpu_medians[label]:4.2f}x"
            )
    full_medians = {label: summarize([t[1] for t in t_]).median for label, t_ in full.items()}
    print(
        "full stream, openai / streamcore pooled: "
        f"{full_medians['openai, pooled'] / full_medians['streamcore, pooled']:.2f}x; "
        "streamcore / raw: "
        f"{full_medians['streamcore, pooled'] / full_medians['raw socket, pooled']:.2f}x"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
