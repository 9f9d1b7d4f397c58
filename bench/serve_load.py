"""`streamcore serve` under load: 1,000 concurrent SSE clients through one server process.

    .venv/bin/python bench/serve_load.py [--clients N] [--length CHARS] [--pace S] [--quick]
    flock /tmp/bench.lock .venv/bin/python bench/serve_load.py     # how the numbers are taken

About two minutes with the defaults (1,000 clients); ``--quick`` (100 clients) about one.

Three processes: the emulator (this script with ``--role emulator``: OpenAI Chat
Completions, one token every ``--pace`` seconds, answers of ``--length`` characters),
one ``streamcore serve`` (``--role server``: ``open_server`` relaying to that emulator,
with its limits raised for the load: ``max_streams``, ``max_connections`` and the
per-address rate are too low for 1,000 clients from one address, and ``streamcore
serve`` has no ``--max-connections`` flag), and the clients (this process: trio, raw
sockets, h11 and ``streamcore.sse.SSEDecoder``). Each client asks for its own prompt's
answer: ``POST /v1/streams``, then ``GET /v1/streams/<id>/events`` until ``end``.

It measures:

* errors: a client is an error unless its text deltas join into exactly
  ``answer_for(prompt)``, its ``end`` says ``completed``, and no recovery event
  (``retrying``, ``resuming``, ``interrupted``) came: zero is the target;
* aggregate events/s: SSE events all clients received (every record the relay
  sent: ``stream_started``, deltas, ``usage``, ``end``...) over the wall time from the
  first POST to the last ``end``; plus the server's CPU time per event (from
  ``/proc/<pid>/stat``), which bounds what one server process can relay;
* delay per event: for every text token, the time the client received it minus the
  time the emulator wrote it (both ``time.monotonic()``, one clock for
  every process on the machine; the emulator process stamps its writes through a
  wrapper around its private ``_Exchange._write``, in this script only). It is
  measured twice at the same load: clients reading the emulator directly (``POST
  /v1/chat/completions``, OpenAI's SSE), then through ``streamcore serve``. The
  delay the relay adds at a percentile is the relayed delay there minus the direct
  delay there: a difference of percentiles of two runs, not a percentile of
  per-event differences. It includes the relay's share of two CPUs shared by three
  busy processes (emulator, server, clients);
* memory per stream: the server's resident set (``VmRSS`` of ``/proc/<pid>/status``,
  sampled every 50 ms) at its peak, minus its resident set before the run (after a
  warm-up that ran every code path), divided by the number of streams. A relay stays
  in memory for ``replay_lifetime`` (60 s) after its end, longer than the run, so at
  the peak every stream is there with its whole replay buffer (every event, kept for
  ``Last-Event-ID`` resume).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio
from _procs import cpu_seconds, raise_fd_limit, status_kb

from streamcore.adapters.client import Provider
from streamcore.adapters.emulator import answer_for, answer_tokens, open_emulator
from streamcore.adapters.serve import ServeConfig, open_server
from streamcore.sse import SSEDecoder, SSEEvent

# The raw HTTP/1.1 client the relay tests use (tests/_http.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from _http import body_chunks, read_head, request_bytes

MODEL = "streamcore-emulator"
SAMPLE_EVERY = 0.05
"""Seconds between two readings of the server's resident set."""
RECOVERY = frozenset({"retrying", "resuming", "stitched", "interrupted"})
"""Relay records that mean the upstream failed and was retried or resumed."""


def prompt_for(i: int, path: str = "relay") -> str:
    return f"Client {i} ({path}): explain what a reverse proxy does to server-sent events."


def spread(tally: Tally) -> str:
    firsts = sorted(times[0] for times in tally.received.values() if times)
    return f"{firsts[-1] - firsts[0]:.1f} s" if firsts else "-"


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


# --------------------------------------------------------------------------- child processes


def stamp_writes(stamps: dict[str, list[float]]) -> None:
    """Record, per prompt, when the emulator's write of each token returned.

    A token frame is written while ``progress.tokens`` counts the tokens before it and
    is the last write at that count (the count goes up right after it), so the last
    stamp at count k is token k's. The stamp is taken just before the write: trio's
    ``send_all`` calls ``send()`` at once and only then yields, so a stamp taken after it
    would also count the emulator's own wait to be scheduled again. Instrumentation of
    the load generator, not of the server: it wraps a private method and fails loudly
    if that changes.
    """
    from streamcore.adapters.emulator import server as emulator_server

    exchange = emulator_server._Exchange
    write = exchange._write

    async def stamped(self: emulator_server._Exchange, data: bytes) -> None:
        now = time.monotonic()  # before the write: its send() runs at once, then it yields
        times = stamps.setdefault(self._entry.prompt, [])
        k = self.progress.tokens
        if k == len(times):
            times.append(now)
        else:
            times[k] = now
        await write(self, data)

    exchange._write = stamped  # type: ignore[method-assign]


async def run_emulator(args: argparse.Namespace) -> None:
    """The emulator until SIGTERM; then one JSON line: what it served, and its stamps."""
    stamps: dict[str, list[float]] = {}
    stamp_writes(stamps)
    faults = f"pace={args.pace}; length={args.length}"
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_emulator(faults=faults) as emu:
            print(emu.port, flush=True)
            async for _ in signals:
                break
            outcomes = Counter(r.outcome.value for r in emu.requests)
            report = {"requests": len(emu.requests), "outcomes": dict(outcomes)}
    # the last stamp of a prompt is its closing frames' (count = number of tokens)
    print(json.dumps({"report": report, "stamps": {p: t[:-1] for p, t in stamps.items()}}))


async def run_server(args: argparse.Namespace) -> None:
    """One ``streamcore serve`` relaying to the emulator, until SIGTERM."""
    streams = args.clients + 64  # the warm-up's streams are still in their replay lifetime
    config = ServeConfig(
        port=0,
        max_streams=streams,
        max_connections=2 * streams,  # each client's POST may overlap the others' streams
        rate=1e9,  # every client comes from 127.0.0.1: one rate bucket for all of them
        burst=10**9,
    )
    base_url = f"http://127.0.0.1:{args.upstream_port}/v1"
    provider = Provider("openai-chat", base_url, None, MODEL)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_server(config, provider=provider) as server:
            print(server.port, flush=True)
            async for _ in signals:
                break


def spawn(role: str, args: argparse.Namespace, *extra: str) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, os.path.abspath(__file__), "--role", role]
    argv += ["--clients", str(args.clients), "--length", str(args.length)]
    argv += ["--pace", str(args.pace), *extra]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        sys.exit(f"the {role} process did not print its port: {line!r}")
    return child, int(line)


def stop(child: subprocess.Popen[str]) -> str:
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=60)
    return out


# --------------------------------------------------------------------------- clients


@dataclass(slots=True)
class Tally:
    """What one phase's clients saw."""

    events: int = 0
    open: int = 0
    peak_open: int = 0
    received: dict[str, list[float]] = field(default_factory=dict)
    """Per prompt, when each text token arrived (``time.monotonic()``)."""
    errors: list[str] = field(default_factory=list)

    def arrivals(self, prompt: str) -> list[float]:
        times: list[float] = []
        self.received[prompt] = times
        return times

    def arrived(self, times: list[float]) -> None:
        """A text token came: stamp it; the first one counts its stream as open."""
        times.append(time.monotonic())
        if len(times) == 1:
            self.open += 1
            self.peak_open = max(self.peak_open, self.open)

    def closed(self, times: list[float]) -> None:
        if times:
            self.open -= 1


async def _open(
    port: int, target: str, body: bytes | None = None
) -> tuple[trio.SocketStream, h11.Connection, int]:
    """Send one request on a new connection; the stream, its h11 state and the status."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    method = "GET" if body is None else "POST"
    host = (("host", f"127.0.0.1:{port}"),)
    await stream.send_all(request_bytes(conn, method, target, body, host))
    return stream, conn, (await read_head(stream, conn)).status_code


async def _events(stream: trio.SocketStream, conn: h11.Connection) -> AsyncIterator[SSEEvent]:
    decoder = SSEDecoder()
    async for chunk in body_chunks(stream, conn):
        for item in decoder.feed(chunk):
            if isinstance(item, SSEEvent):
                yield item


async def _create(port: int, chat: dict[str, object]) -> str:
    """POST /v1/streams; the new stream's id."""
    stream, conn, status = await _open(port, "/v1/streams", json.dumps(chat).encode())
    async with stream:
        reply = b"".join([chunk async for chunk in body_chunks(stream, conn)])
    if status != 201:
        raise RuntimeError(f"POST /v1/streams answered {status}: {reply[:200]!r}")
    return str(json.loads(reply)["id"])


async def relay_client(i: int, port: int, length: int, tally: Tally) -> None:
    """One browser: create a stream on the server, read its events to ``end``."""
    prompt = prompt_for(i)
    chat = {"messages": [{"role": "user", "content": prompt}], "model": MODEL}
    parts: list[str] = []
    kinds: Counter[str] = Counter()
    end: dict[str, object] = {}
    arrived = tally.arrivals(prompt)
    try:
        stream_id = await _create(port, chat)
        stream, conn, status = await _open(port, f"/v1/streams/{stream_id}/events")
        async with stream:
            if status != 200:
                raise RuntimeError(f"GET events answered {status}")
            async for event in _events(stream, conn):
                kinds[event.event] += 1
                if event.event == "text_delta":
                    tally.arrived(arrived)
                    parts.append(json.loads(event.data)["text"])
                elif event.event == "end":
                    end = json.loads(event.data)
    except Exception as exc:  # a bench reports every failure instead of stopping at one
        tally.errors.append(f"client {i}: {type(exc).__name__}: {exc}")
        return
    finally:
        tally.events += sum(kinds.values())
        tally.closed(arrived)
    if end.get("state") != "completed" or RECOVERY & kinds.keys():
        tally.errors.append(f"client {i}: end {end}, records {dict(kinds)}")
    elif "".join(parts) != answer_for(prompt, length=length):
        tally.errors.append(f"client {i}: the text differs from answer_for(prompt)")


async def direct_client(i: int, port: int, length: int, tally: Tally) -> None:
    """The baseline: the same request straight to the emulator's Chat Completions."""
    prompt = prompt_for(i, "direct")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parts: list[str] = []
    done = False
    arrived = tally.arrivals(prompt)
    try:
        target = "/v1/chat/completions"
        stream, conn, status = await _open(port, target, json.dumps(body).encode())
        async with stream:
            if status != 200:
                raise RuntimeError(f"the emulator answered {status}")
            async for event in _events(stream, conn):
                tally.events += 1
                if event.data == "[DONE]":
                    done = True
                    continue
                choices = json.loads(event.data)["choices"]
                text = choices[0]["delta"].get("content") if choices else None
                if text:
                    tally.arrived(arrived)
                    parts.append(text)
    except Exception as exc:
        tally.errors.append(f"direct client {i}: {type(exc).__name__}: {exc}")
        return
    finally:
        tally.closed(arrived)
    if not done or "".join(parts) != answer_for(prompt, length=length):
        tally.errors.append(f"direct client {i}: no [DONE] or the text differs")


@dataclass(slots=True)
class Phase:
    tally: Tally
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    rss_before_kb: int = 0
    rss_all_open_kb: int = 0
    rss_peak_kb: int = 0
    delays: list[float] = field(default_factory=list)
    unmatched: int = 0

    def match(self, stamps: dict[str, list[float]]) -> None:
        """Delays: each token's arrival minus the emulator's write of it, sorted."""
        for prompt, arrived in self.tally.received.items():
            written = stamps.get(prompt, [])
            if len(written) != len(arrived):
                self.unmatched += 1
                continue
            self.delays.extend(a - w for a, w in zip(arrived, written, strict=True))
        self.delays.sort()


async def watch_server(pid: int, tally: Tally, clients: int, phase: Phase) -> None:
    while True:
        rss = status_kb("VmRSS", pid)
        phase.rss_peak_kb = max(phase.rss_peak_kb, rss)
        if tally.open == clients:
            phase.rss_all_open_kb = max(phase.rss_all_open_kb, rss)
        await trio.sleep(SAMPLE_EVERY)


Client = Callable[[int, int, int, Tally], Awaitable[None]]


async def run_phase(
    client: Client, port: int, args: argparse.Namespace, server_pid: int | None
) -> Phase:
    """``args.clients`` clients at once; what they saw, and the server's CPU and memory."""
    tally = Tally()
    phase = Phase(tally)
    cpu_before = 0.0
    if server_pid is not None:
        phase.rss_before_kb = status_kb("VmRSS", server_pid)
        cpu_before = cpu_seconds(server_pid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    async with trio.open_nursery() as outer:
        if server_pid is not None:
            outer.start_soon(watch_server, server_pid, tally, args.clients, phase)
        async with trio.open_nursery() as nursery:
            for i in range(args.clients):
                nursery.start_soon(client, i, port, args.length, tally)
        outer.cancel_scope.cancel()
    phase.wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    phase.client_cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    if server_pid is not None:
        phase.server_cpu = cpu_seconds(server_pid) - cpu_before
    return phase


async def _warm(port: int, chat: dict[str, object], tally: Tally) -> None:
    try:
        stream_id = await _create(port, chat)
        stream, conn, _ = await _open(port, f"/v1/streams/{stream_id}/events")
        async with stream:
            async for _event in _events(stream, conn):
                pass
    except Exception as exc:
        tally.errors.append(f"{type(exc).__name__}: {exc}")


async def clients_main(
    args: argparse.Namespace, emulator_port: int, server_port: int, server_pid: int
) -> tuple[Phase, Phase]:
    """Warm up, then the direct phase, then the relayed one."""
    # Every code path of the server runs before its resident set is taken as the
    # baseline; max_tokens keeps the warm-up short.
    warm = Tally()
    chat: dict[str, object] = {
        "messages": [{"role": "user", "content": "warm up"}],
        "max_tokens": 3,
    }
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(_warm, server_port, chat, warm)
    if warm.errors:
        sys.exit(f"warm-up failed: {warm.errors[0]}")
    direct = await run_phase(direct_client, emulator_port, args, None)
    await trio.sleep(1.0)
    relayed = await run_phase(relay_client, server_port, args, server_pid)
    return direct, relayed


# --------------------------------------------------------------------------- main


def report(args: argparse.Namespace, direct: Phase, relayed: Phase, served: object) -> bool:
    """Print the numbers; whether the run met its one hard target (zero errors)."""
    answer = answer_for(prompt_for(0), length=args.length)
    tokens = len(answer_tokens(prompt_for(0), length=args.length))
    t, d = relayed.tally, direct.tally
    print(
        f"Python {sys.version.split()[0]}, trio {trio.__version__}; {os.cpu_count()} CPUs; "
        f"load average (1 min) {os.getloadavg()[0]:.2f} after the run"
    )
    print(
        f"{args.clients} concurrent SSE clients, each its own stream of ~{len(answer)} chars "
        f"(~{tokens} tokens, one every {args.pace} s); emulator, server, clients: 3 processes"
    )
    print(f"\nclients exact and completed         {args.clients - len(t.errors)} / {args.clients}")
    print(f"errors                              {len(t.errors)}")
    for error in t.errors[:10]:
        print(f"  {error}")
    print(f"peak clients streaming at once      {t.peak_open}")
    print(f"first tokens arrived within         {spread(t)} (direct: {spread(d)})")
    print(f"events relayed                      {t.events:,} in {relayed.wall:.1f} s")
    print(f"aggregate events/s                  {t.events / relayed.wall:,.0f}")
    per_event = relayed.server_cpu / max(t.events, 1)
    print(
        f"server CPU                          {relayed.server_cpu:.1f} s "
        f"({relayed.server_cpu / relayed.wall:.0%} of one core), {per_event * 1e6:.0f} µs per "
        f"event (so at most {1 / per_event if per_event else 0:,.0f} events/s per core)"
    )
    print(
        f"client CPU                          {relayed.client_cpu:.1f} s through serve, "
        f"{direct.client_cpu:.1f} s direct"
    )
    print("delay per event (ms)                p50      p90      p99      max")
    for name, phase in (("  direct from the emulator", direct), ("  through serve", relayed)):
        cells = [percentile(phase.delays, p) * 1000 for p in (50, 90, 99, 100)]
        print(f"{name:<36}" + "".join(f"{c:<9.1f}" for c in cells))
    added = {
        p: (percentile(relayed.delays, p) - percentile(direct.delays, p)) * 1000 for p in (50, 99)
    }
    print(f"delay added per event               p50 {added[50]:.1f} ms, p99 {added[99]:.1f} ms")
    if d.errors:
        print(f"direct baseline errors              {len(d.errors)}: {d.errors[0]}")
    if direct.unmatched or relayed.unmatched:
        print(
            f"streams without write stamps        {direct.unmatched} direct, "
            f"{relayed.unmatched} relayed (left out of the delays)"
        )
    print(
        f"server RSS                          before {relayed.rss_before_kb / 1024:.1f} MiB, "
        f"peak {relayed.rss_peak_kb / 1024:.1f} MiB, with every client streaming "
        + (f"{relayed.rss_all_open_kb / 1024:.1f} MiB" if relayed.rss_all_open_kb else "(never)")
    )
    # Relays stay in memory for replay_lifetime (60 s) after their end, longer than the
    # run: at the peak every stream's relay is alive with its whole replay buffer.
    per_stream = (relayed.rss_peak_kb - relayed.rss_before_kb) * 1024 / args.clients / 1000
    print(
        f"memory per stream                   {per_stream:.1f} KB at the peak (its relay and "
        f"its replay buffer of ~{t.events // max(args.clients, 1)} events)"
    )
    print(f"emulator                            {json.dumps(served)}")
    return not t.errors and not d.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=1000, help="concurrent SSE clients (1000)")
    parser.add_argument("--length", type=int, default=100, help="answer length (100: ~470 chars)")
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between tokens (0.1)")
    parser.add_argument("--quick", action="store_true", help="100 clients")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the server; its top functions on stderr"
    )
    parser.add_argument("--role", choices=("emulator", "server"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.clients = 100
    raise_fd_limit(3 * args.clients + 256, "--clients")
    if args.role == "emulator":
        trio.run(run_emulator, args)
        return 0
    if args.role == "server":
        profiler = cProfile.Profile() if args.profile else None
        if profiler is None:
            trio.run(run_server, args)
            return 0
        profiler.runcall(trio.run, run_server, args)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print("-- profile: the server, by own time --", out.getvalue(), sep="\n", file=sys.stderr)
        return 0
    emulator, emulator_port = spawn("emulator", args)
    extra = ["--upstream-port", str(emulator_port)] + (["--profile"] if args.profile else [])
    server, server_port = spawn("server", args, *extra)
    try:
        direct, relayed = trio.run(clients_main, args, emulator_port, server_port, server.pid)
    finally:
        stop(server)
        out = stop(emulator)
    doc = json.loads(out.strip().splitlines()[-1])
    direct.match(doc["stamps"])
    relayed.match(doc["stamps"])
    return 0 if report(args, direct, relayed, doc["report"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
