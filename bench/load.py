"""Scale: many concurrent streams in one trio process, against an emulator in another process.

    .venv/bin/python bench/load.py [--streams N] [--length CHARS] [--pace S] [--quick]
                                   [--profile] [--tracemalloc]

About 35 s with the defaults (1,000 streams); ``--quick`` (100 streams, a token every
20 ms) takes about 6 s.

The client opens ``--streams`` streams at once with ``open_stream`` on one shared
``HTTPClient`` (the pool a server application would share), each asking
the emulator's OpenAI Chat Completions endpoint for a different prompt's
answer of ``--length`` characters, one token every ``--pace`` seconds, so
every stream is open at the same time. It measures:

* errors: a stream is an error unless it completed on its first attempt and
  its text equals ``answer_for(prompt)`` exactly (so no retry hides a failure);
* aggregate events/s: the events all streams yielded over the wall time from
  the first request to the last stream's end, and the client's CPU time per
  event (how close the client came to being the bottleneck);
* memory per open stream: the client's resident set sampled every 20 ms (``VmRSS``
  in ``/proc/self/status``, with ``VmHWM`` as a cross-check) while all streams were
  open, minus the resident set before they started (after a warm-up that
  loads everything: the tokenizer, the code paths), divided by the number of
  streams, minus the answer's own size in UTF-8 bytes (the text a stream must
  hold anyway). Target: under 50 KB per stream. With few streams the figure
  reads low (the allocator reuses memory freed by the warm-up), so judge it at
  1,000; it grows with ``--length`` (what a stream keeps per event), so try a
  longer answer too, and ``--tracemalloc`` to see where it goes;
* TCP connections the emulator saw: the emulator process samples its own
  established connections on its port (``/proc/net/tcp``) every 50 ms and
  reports the peak and the number of distinct ones, with its request log.

The emulator runs in a child process (this script with ``--serve``) so that
its work -- 1,000 paced writers -- takes none of the client's CPU time, and
the client's numbers are the client's. ``--profile`` adds a cProfile of the
client; ``--tracemalloc`` lists the live Python allocations that grew from the
baseline to the moment all streams were open, per stream, by source line
(tracemalloc doubles the CPU time and inflates the RSS figures of that run).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field

import trio
from _procs import raise_fd_limit, status_kb

from streamcore.adapters.client import Provider, open_stream
from streamcore.adapters.emulator import FAULT_HEADER, answer_for, answer_tokens, open_emulator
from streamcore.adapters.http import HTTPClient
from streamcore.events import TextDelta

TARGET_KB_PER_STREAM = 50.0
"""Resident memory per open stream, beyond the text itself."""

MODEL = "gpt-4.1-mini"
API_KEY = "sk-bench-not-a-real-key"
SAMPLE_EVERY = 0.02
"""Seconds between two readings of the client's resident set."""
CONNECTIONS_EVERY = 0.05
"""Seconds between two samplings of the emulator's connections."""


def prompt_for(i: int) -> str:
    return f"Request {i}: explain how a streaming client survives a dropped connection."


# --------------------------------------------------------------------------- the emulator process


def established(port: int) -> set[str]:
    """Remote ends of the established TCP connections whose local port is ``port``."""
    local = f":{port:04X}"
    remotes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split(None, 4)
                    if fields[3] == "01" and fields[1].endswith(local):
                        remotes.add(fields[2])
        except FileNotFoundError:
            continue
    return remotes


async def serve(length: int, pace: float) -> None:
    """Run the emulator until SIGTERM; then print one JSON line of what it saw."""
    faults = f"pace={pace}; length={length}"
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_emulator(faults=faults) as emu, trio.open_nursery() as nursery:
            print(emu.port, flush=True)
            seen: set[str] = set()
            peak = 0

            async def sample() -> None:
                nonlocal peak
                while True:
                    now = established(emu.port)
                    seen.update(now)
                    peak = max(peak, len(now))
                    await trio.sleep(CONNECTIONS_EVERY)

            nursery.start_soon(sample)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
            outcomes = Counter(r.outcome.value for r in emu.requests)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            report = {
                "requests": len(emu.requests),
                "outcomes": dict(outcomes),
                "peak_connections": peak,
                "distinct_connections": len(seen),
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
            }
            print(json.dumps(report), flush=True)


# --------------------------------------------------------------------------- the client


@dataclass(slots=True)
class Tally:
    started: int = 0
    open: int = 0
    peak_open: int = 0
    events: int = 0
    errors: list[str] = field(default_factory=list)
    rss_kb: int = 0
    rss_at_peak_open_kb: int = 0
    traced_baseline: tracemalloc.Snapshot | None = None
    traced_when_open: tracemalloc.Snapshot | None = None


async def one_stream(
    i: int, provider: Provider, http: HTTPClient, length: int, tally: Tally
) -> None:
    prompt = prompt_for(i)
    counted = False
    try:
        async with open_stream(provider, prompt, http=http) as stream:
            tally.started += 1
            async for event in stream:
                tally.events += 1
                if not counted and type(event) is TextDelta:
                    counted = True
                    tally.open += 1
                    tally.peak_open = max(tally.peak_open, tally.open)
        result = stream.result()
    except Exception as exc:  # a bench reports every failure instead of stopping at one
        tally.errors.append(f"stream {i}: {type(exc).__name__}: {exc}")
        return
    finally:
        if counted:
            tally.open -= 1
    if not result.completed or len(result.attempts) != 1:
        tally.errors.append(
            f"stream {i}: {result.state.value} after {len(result.attempts)} attempt(s)"
        )
    elif result.text != answer_for(prompt, length=length):
        tally.errors.append(f"stream {i}: the text differs from answer_for(prompt)")


async def watch_memory(tally: Tally, streams: int) -> None:
    while True:
        rss = status_kb("VmRSS")
        tally.rss_kb = max(tally.rss_kb, rss)
        if tally.open == streams:
            tally.rss_at_peak_open_kb = max(tally.rss_at_peak_open_kb, rss)
            if tally.traced_when_open is None and tracemalloc.is_tracing():
                gc.collect()  # live objects only, not garbage waiting for a collection
                tally.traced_when_open = tracemalloc.take_snapshot()
        await trio.sleep(SAMPLE_EVERY)


async def client(port: int, args: argparse.Namespace) -> tuple[Tally, dict[str, float]]:
    base_url = f"http://127.0.0.1:{port}/v1"
    provider = Provider.openai(MODEL, api_key=API_KEY, base_url=base_url)
    # Warm-up, unpaced: every code path and the tokenizer loaded before the baseline.
    unpaced = Provider.openai(
        MODEL, api_key=API_KEY, base_url=base_url, headers=((FAULT_HEADER, "pace=0"),)
    )
    async with HTTPClient() as http:
        warm = Tally()
        for i in range(5):
            await one_stream(-1 - i, unpaced, http, args.length, warm)
        if warm.errors:
            sys.exit(f"warm-up failed: {warm.errors[0]}")
    gc.collect()
    baseline_kb = status_kb("VmRSS")
    tally = Tally()
    if args.tracemalloc:
        tracemalloc.start()
        tally.traced_baseline = tracemalloc.take_snapshot()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    async with HTTPClient() as http, trio.open_nursery() as outer:
        outer.start_soon(watch_memory, tally, args.streams)
        async with trio.open_nursery() as nursery:
            for i in range(args.streams):
                nursery.start_soon(one_stream, i, provider, http, args.length, tally)
        outer.cancel_scope.cancel()
    wall = time.perf_counter() - start
    tracemalloc.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    numbers = {
        "baseline_kb": baseline_kb,
        "hwm_kb": status_kb("VmHWM"),
        "wall": wall,
        "cpu": cpu,
    }
    return tally, numbers


# --------------------------------------------------------------------------- main


def print_traced(
    baseline: tracemalloc.Snapshot, when_open: tracemalloc.Snapshot, streams: int
) -> None:
    """The Python allocations that grew from the baseline to all streams open, per stream."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diffs = when_open.filter_traces(ignore).compare_to(baseline.filter_traces(ignore), "lineno")
    total = sum(diff.size_diff for diff in diffs)
    print(
        f"-- tracemalloc: live Python allocations grown when all {streams} streams had opened, "
        f"{total / streams / 1000:.1f} KB per stream; the top sites --"
    )
    for diff in diffs[:20]:
        frame = diff.traceback[0]
        where = f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        print(
            f"{diff.size_diff / streams:9.0f} B/stream {diff.count_diff / streams:6.1f} blocks  "
            f"{where}"
        )


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            "--length",
            str(args.length),
            "--pace",
            str(args.pace),
            "--streams",
            str(args.streams),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        sys.exit(f"the emulator process did not print its port: {line!r}")
    return child, int(line)


def stop_server(child: subprocess.Popen[str]) -> dict[str, object]:
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    report: dict[str, object] = json.loads(last)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (1000)")
    parser.add_argument(
        "--length", type=int, default=100, help="answer length (100: the shortest, ~470 chars)"
    )
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between tokens (0.1)")
    parser.add_argument("--quick", action="store_true", help="CI size: 100 streams, pace 0.02")
    parser.add_argument("--profile", action="store_true", help="cProfile the client")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="where the per-stream memory goes (slow; its RSS numbers then include tracemalloc's)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.pace = 100, 0.02
    raise_fd_limit(args.streams + 256, "--streams")
    if args.serve:
        trio.run(serve, args.length, args.pace)
        return 0

    child, port = start_server(args)
    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler is not None:
            tally, numbers = profiler.runcall(trio.run, client, port, args)
        else:
            tally, numbers = trio.run(client, port, args)
    finally:
        server = stop_server(child)

    answer = answer_for(prompt_for(0), length=args.length)
    text_bytes = len(answer.encode())
    tokens = len(answer_tokens(prompt_for(0), length=args.length))
    peak_kb = tally.rss_at_peak_open_kb or tally.rss_kb
    per_stream_kb = (peak_kb - numbers["baseline_kb"]) * 1024 / args.streams / 1000
    net_kb = per_stream_kb - text_bytes / 1000
    hwm_kb = (numbers["hwm_kb"] - numbers["baseline_kb"]) * 1024 / args.streams / 1000
    wall, cpu = numbers["wall"], numbers["cpu"]
    print(
        f"Python {sys.version.split()[0]}, trio {trio.__version__}; load average (1 min) "
        f"{os.getloadavg()[0]:.2f} after the run, {os.cpu_count()} CPUs"
    )
    print(
        f"{args.streams} concurrent streams, answers of {len(answer)} chars "
        f"({text_bytes:,} bytes UTF-8, {tokens} tokens), pace {args.pace} s, one shared "
        "HTTPClient; emulator in a child process"
    )
    print(
        f"\nstreams completed, text exact      {args.streams - len(tally.errors)} / {args.streams}"
    )
    print(f"errors                             {len(tally.errors)}")
    for error in tally.errors[:10]:
        print(f"  {error}")
    print(f"peak streams open at once          {tally.peak_open}")
    print(f"events                             {tally.events:,}")
    print(f"wall time                          {wall:.2f} s")
    print(f"aggregate events/s                 {tally.events / wall:,.0f}")
    print(
        f"client CPU                         {cpu:.2f} s ({cpu / wall:.0%} of one core), "
        f"{cpu / max(tally.events, 1) * 1e6:.1f} µs per event "
        f"(so at most {tally.events / max(cpu, 1e-9):,.0f} events/s per core)"
    )
    print(
        f"client RSS                         baseline {numbers['baseline_kb'] / 1024:.1f} MiB, "
        f"all open {peak_kb / 1024:.1f} MiB, VmHWM {numbers['hwm_kb'] / 1024:.1f} MiB"
    )
    print(
        f"per open stream                    {per_stream_kb:.1f} KB gross, "
        f"{net_kb:.1f} KB beyond the text (VmHWM: {hwm_kb:.1f} KB gross)"
    )
    print(
        f"emulator                           {server.get('requests')} requests "
        f"{server.get('outcomes')}, peak {server.get('peak_connections')} connections open, "
        f"{server.get('distinct_connections')} distinct; CPU {server.get('cpu_seconds', 0):.1f} s"
    )
    verdict = "met" if net_kb < TARGET_KB_PER_STREAM else "MISSED"
    zero = "met" if not tally.errors else "MISSED"
    everyone = "yes" if tally.peak_open == args.streams else "NO"
    print(f"\n== targets ==\nzero errors                        {zero}")
    print(f"all streams open at once           {everyone}")
    print(
        f"under {TARGET_KB_PER_STREAM:.0f} KB per open stream         {verdict} ({net_kb:.1f} KB)"
    )
    if tally.traced_baseline is not None:
        if tally.traced_when_open is None:
            print("-- tracemalloc: no snapshot: the streams were never all open at once")
        else:
            print_traced(tally.traced_baseline, tally.traced_when_open, args.streams)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        lines = out.getvalue().splitlines()
        begin = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print("-- profile: the client, by own time --")
        print("\n".join(line for line in lines[begin:] if line.strip()))
    return 0 if zero == "met" and verdict == "met" and everyone == "yes" else 1


if __name__ == "__main__":
    raise SystemExit(main())
