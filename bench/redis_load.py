"""Scale-out on Redis: three `streamcore serve` processes, one redis-server, N streams at once.

    flock /tmp/bench.lock .venv/bin/python bench/redis_load.py [--streams N] [--pace S]
        [--length CHARS] [--quick]

Starts a redis-server on an ephemeral loopback port (in a temporary folder, nothing
persisted) and, for each configuration, three ``streamcore serve --emulator`` processes
(each relays to its own built-in emulator, paced ``--pace`` seconds per token, answers of
``--length`` characters). This process is the browser side: it opens ``--streams`` streams
at once, spread over the three servers, and reads each one's SSE events to ``end``.

Configurations:

* ``memory``: no ``--store``; each stream is read from the process that created it (the
  baseline: what one process does today).
* ``redis-same``: ``--store redis://...``; each stream is read from the process that
  created it (the owner serves its subscribers from memory once a batch is stored).
* ``redis-cross``: ``--store redis://...``; each stream is read from *another* process
  (what a round-robin load balancer does to two reads in three): that process follows the
  Redis Stream with ``XREAD BLOCK``.

Measured per configuration:

* errors: a stream is an error unless its text equals ``answer_for(prompt, length=...)``
  and it ends with ``end`` in state ``completed``; and how many streams saw a
  ``takeover`` (a lease that lapsed under load) or a ``degraded`` event;
* events/s: every SSE event all streams received, over the wall time from the first
  ``POST`` to the last ``end``;
* delay per event: the emulator writes a stream's tokens ``pace`` apart, so a text
  delta's delay is the time since the stream's previous one minus ``pace`` (0 on a
  perfect path; the emulator's own per-token overhead and the relay's work push it up,
  batching of two deltas into one read makes it negative). The *added* delay of a store
  is the difference of its p50/p99 against ``memory``. (Lateness against a schedule
  anchored at the first delta is not used: the emulator's relative sleeps drift, and
  the drift swamps the store);
* CPU: the three servers' (and Redis's) CPU seconds over the run, and the servers'
  CPU per event -- on a machine with few cores this is what the store costs;
* Redis memory per stream: ``used_memory`` (``INFO memory``) sampled every 0.5 s while
  the streams run, peak minus the value before, divided by the number of streams; and
  ``MEMORY USAGE`` of one finished stream's keys.

The machine's cores are shared by everything (three servers with their emulators, Redis,
this client), so the absolute numbers are this machine's; the ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import h11
import trio
from _procs import cpu_seconds, raise_fd_limit

from streamcore.adapters.emulator import answer_for
from streamcore.sse import SSEDecoder, SSEEvent

STREAMCORE = Path(sys.executable).with_name("streamcore")
_URL_LINE = re.compile(r"streamcore serve: http://127\.0\.0\.1:(\d+) ")
PROCESSES = 3


def prompt_for(i: int) -> str:
    return f"Request {i}: explain why a relay keeps a stream's events in Redis."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- Redis


def redis_command(port: int, *words: str) -> bytes:
    """One command over a plain socket (RESP), the whole reply (small replies only)."""
    payload = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n") or (
            reply.startswith(b"$") and not reply.startswith(b"$-1") and reply.count(b"\r\n") < 2
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def used_memory(port: int) -> int:
    info = redis_command(port, "INFO", "memory").decode()
    return int(re.search(r"used_memory:(\d+)", info)[1])  # type: ignore[index]


@contextmanager
def running_redis(folder: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (the Debian package redis-server)")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no", "--maxclients", "20000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    REDIS_PID[:] = [proc.pid]
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis_command(port, "PING").startswith(b"+PONG"):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("redis-server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- serve processes


SERVER_PIDS: list[int] = []
REDIS_PID: list[int] = []


@contextmanager
def serving(store: str | None, faults: str, folder: Path) -> Iterator[list[int]]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    procs: list[subprocess.Popen[str]] = []
    ports: list[int] = []
    try:
        for n in range(PROCESSES):
            argv = [str(STREAMCORE), "serve", "--port", "0", "--emulator"]
            argv += ["--emulator-faults", faults, "--node", f"relay-{n}"]
            argv += ["--max-streams", "100000", "--rate", "1000000", "--burst", "1000000"]
            argv += ["--replay-lifetime", "60"]
            if store is not None:
                argv += ["--store", store]
            log = open(folder / f"serve-{n}.log", "w")  # noqa: SIM115 -- lives with the process
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
            procs.append(proc)
            SERVER_PIDS.append(proc.pid)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = _URL_LINE.match(line)
            if match is None:
                sys.exit(f"serve did not start: {line!r}")
            ports.append(int(match[1]))
        yield ports
    finally:
        SERVER_PIDS.clear()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


# --------------------------------------------------------------------------- the client


@dataclass
class Outcome:
    ok: bool = False
    events: int = 0
    lateness: list[float] = field(default_factory=list)
    stream_id: str = ""
    error: str = ""
    seen: set[str] = field(default_factory=set)


async def post(port: int, body: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = (
            b"POST /v1/streams HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        await stream.send_all(head + body)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    if b" 201 " not in status_line:
        raise RuntimeError(f"POST /v1/streams: {data[:600]!r}")
    return rest.partition(b"\r\n\r\n")[2]


async def one_stream(
    i: int, create_port: int, read_port: int, length: int, pace: float, out: Outcome
) -> None:
    prompt = prompt_for(i)
    body = json.dumps({"messages": [{"role": "user", "content": prompt}]}).encode()
    try:
        doc = json.loads(await post(create_port, body))
    except RuntimeError as exc:
        out.error = str(exc).partition("message")[2][:300]
        return
    out.stream_id = doc["id"]
    stream = await trio.open_tcp_stream("127.0.0.1", read_port)
    text: list[str] = []
    previous: float | None = None
    seen = out.seen
    last: SSEEvent | None = None
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        target = doc["events"]
        await stream.send_all(
            conn.send(h11.Request(method="GET", target=target, headers=[("host", "x")])) or b""
        )
        decoder = SSEDecoder()
        done = False
        while not done:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Data):
                now = trio.current_time()
                for item in decoder.feed(event.data):
                    if not isinstance(item, SSEEvent):
                        continue
                    out.events += 1
                    last = item
                    seen.add(item.event)
                    if item.event == "text_delta":
                        if previous is not None:
                            out.lateness.append(now - previous - pace)
                        previous = now
                        text.append(json.loads(item.data)["text"])
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    out.error = f"GET {target}: HTTP {event.status_code}"
            else:
                done = True
    out.ok = (
        "".join(text) == answer_for(prompt, length=length)
        and last is not None
        and last.event == "end"
        and json.loads(last.data)["state"] == "completed"
    )
    if not out.ok and not out.error:
        kinds = sorted(seen & {"takeover", "degraded", "stitched", "end"})
        last_data = last.data[:120] if last is not None else ""
        out.error = f"last={last.event if last else None} {last_data} saw={kinds}"


async def sample_memory(port: int, peak: list[int]) -> None:
    while True:
        with suppress(OSError):  # a busy moment: skip this sample
            peak[0] = max(peak[0], await trio.to_thread.run_sync(used_memory, port))
        await trio.sleep(0.5)


async def run_clients(
    ports: list[int], streams: int, cross: bool, length: int, pace: float, redis: int | None
) -> dict[str, object]:
    outcomes = [Outcome() for _ in range(streams)]
    peak = [0]
    before = used_memory(redis) if redis is not None else 0
    started = trio.current_time()
    cpu0 = time.process_time()
    servers0 = sum(cpu_seconds(pid) for pid in SERVER_PIDS)
    redis0 = cpu_seconds(REDIS_PID[0])
    async with trio.open_nursery() as sampler:
        if redis is not None:
            sampler.start_soon(sample_memory, redis, peak)
        async with trio.open_nursery() as nursery:
            for i in range(streams):
                create = ports[i % len(ports)]
                read = ports[(i + 1) % len(ports)] if cross else create
                nursery.start_soon(one_stream, i, create, read, length, pace, outcomes[i])
        sampler.cancel_scope.cancel()
    wall = trio.current_time() - started
    servers_cpu = sum(cpu_seconds(pid) for pid in SERVER_PIDS) - servers0
    redis_cpu = cpu_seconds(REDIS_PID[0]) - redis0
    lateness = sorted(x for o in outcomes for x in o.lateness)
    events = sum(o.events for o in outcomes)
    result: dict[str, object] = {
        "streams": streams,
        "errors": sum(not o.ok for o in outcomes),
        "first_errors": sorted({o.error for o in outcomes if o.error})[:5],
        "takeovers": sum("takeover" in o.seen for o in outcomes),
        "degraded": sum("degraded" in o.seen for o in outcomes),
        "events": events,
        "wall_s": round(wall, 2),
        "events_per_s": round(events / wall),
        "client_cpu_s": round(time.process_time() - cpu0, 1),
        "servers_cpu_s": round(servers_cpu, 1),
        "servers_cpu_us_per_event": round(1e6 * servers_cpu / max(1, events)),
        "redis_cpu_s": round(redis_cpu, 1),
        "delay_p50_ms": round(1000 * lateness[len(lateness) // 2], 2),
        "delay_p99_ms": round(1000 * lateness[int(len(lateness) * 0.99)], 2),
        "delay_mean_ms": round(1000 * statistics.fmean(lateness), 2),
    }
    if redis is not None:
        result["redis_bytes_per_stream_peak"] = round((peak[0] - before) / streams)
        sample = next((o.stream_id for o in outcomes if o.stream_id), "")
        sizes = [
            redis_command(redis, "MEMORY", "USAGE", f"streamcore:stream:{{{sample}}}{suffix}")
            for suffix in ("", ":meta")
        ]
        result["redis_bytes_one_finished_stream"] = sum(
            int(s[1:].strip()) for s in sizes if s.startswith(b":")
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between tokens")
    parser.add_argument("--length", type=int, default=400, help="answer length in characters")
    parser.add_argument("--quick", action="store_true", help="100 streams")
    parser.add_argument(
        "--only", choices=("memory", "redis-same", "redis-cross"), action="append", default=None
    )
    args = parser.parse_args()
    streams = 100 if args.quick else args.streams
    raise_fd_limit(4 * streams + 256, "--streams")
    faults = f"pace={args.pace}; length={args.length}"
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="redis-load-") as tmp:
        folder = Path(tmp)
        with running_redis(folder) as redis:
            url = f"redis://127.0.0.1:{redis}/0"
            for name in args.only or ("memory", "redis-same", "redis-cross"):
                store = None if name == "memory" else url
                with serving(store, faults, folder) as ports:
                    results[name] = trio.run(
                        run_clients,
                        ports,
                        streams,
                        name == "redis-cross",
                        args.length,
                        args.pace,
                        None if store is None else redis,
                    )
                print(name, json.dumps(results[name]), flush=True)
                for n in range(PROCESSES):
                    log = (folder / f"serve-{n}.log").read_text()
                    if "Traceback" in log:
                        print(f"serve-{n} log:\n{log[-3000:]}", file=sys.stderr)
    if "memory" in results:
        base = results["memory"]
        for name, result in results.items():
            if name != "memory":
                added50 = float(result["delay_p50_ms"]) - float(base["delay_p50_ms"])  # type: ignore[arg-type]
                added99 = float(result["delay_p99_ms"]) - float(base["delay_p99_ms"])  # type: ignore[arg-type]
                print(f"{name}: added delay p50 {added50:+.2f} ms, p99 {added99:+.2f} ms")


if __name__ == "__main__":
    main()
