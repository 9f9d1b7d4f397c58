"""A small soak of the trio transport: 150 faulty streams through one connection pool.

100 streams one after another, then 50 at once, all through one
:class:`~streamcore.adapters.http.HTTPClient`, each with a fault drawn from a
seeded RNG (dropped connections, mid-stream errors, bytes split anywhere,
keep-alives through a stall, HTTP errors, a caller that stops reading). Every
stream must end in the terminal state its fault calls for, the recovered ones
with the exact answer; no file descriptor may leak; the pool must stay within
its bound, and (one stream at a time) reuse exactly the connections that are
reusable. Time is trio's ``MockClock``: stalls and backoffs cost no real time,
so the whole file runs in a few seconds.
"""

from __future__ import annotations

import gc
import os
import random
import socket as stdlib_socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from streamcore.adapters.client import Provider, open_stream
from streamcore.adapters.emulator import (
    FAULT_HEADER,
    REQUEST_KEY_HEADER,
    Emulator,
    answer_for,
    answer_tokens,
    open_emulator,
)
from streamcore.adapters.http import HTTPClient
from streamcore.adapters.recover import StreamEvent, StreamResult
from streamcore.events import TextDelta
from streamcore.machine import State
from streamcore.recovery import RecoveryPolicy, RetryPolicy

PROMPT = "Summarise the causes of the 1929 stock market crash"
LENGTH = 0  # the shortest answer the emulator writes: about 160 tokens, 430 characters
SEED = 20_260_401
MAX_IDLE = 4
SEQUENTIAL = 100
CONCURRENT = 50

DIALECTS = ["openai-chat", "openai-responses", "anthropic", "gemini", "ollama"]
SSE_DIALECTS = [d for d in DIALECTS if d != "ollama"]  # NDJSON has no keep-alive
RECOVERS_ERRORS = SSE_DIALECTS  # Ollama's error line says nothing about being transient

RECOVER = RecoveryPolicy(
    retry=RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=1.0), idle_timeout=5.0
)
FINAL = RecoveryPolicy(retry=RetryPolicy(max_attempts=1), idle_timeout=5.0)

# States in which the response was read to its end: the connection can go back to the pool.
REUSABLE = frozenset({State.COMPLETED, State.PROVIDER_ERROR, State.HTTP_ERROR})


@dataclass(frozen=True)
class Case:
    """One soak stream: its dialect and prompt, the fault, and what it must end as."""

    index: int
    kind: str
    dialect: str
    fault: str
    cut: int  # tokens before the fault fires (or the caller stops)

    @property
    def prompt(self) -> str:
        return f"{PROMPT} (soak {self.index})"

    @property
    def answer(self) -> str:
        return answer_for(self.prompt, length=LENGTH)

    @property
    def head(self) -> str:
        """The answer's first ``cut`` tokens."""
        return "".join(answer_tokens(self.prompt, length=LENGTH)[: self.cut])

    @property
    def policy(self) -> RecoveryPolicy:
        return FINAL if self.kind in ("drop", "error", "stall") else RECOVER


ENDINGS: dict[str, list[State]] = {
    "clean": [State.COMPLETED],
    "split": [State.COMPLETED],
    "ping": [State.COMPLETED],
    "drop_recovered": [State.INTERRUPTED, State.COMPLETED],
    "error_recovered": [State.PROVIDER_ERROR, State.COMPLETED],
    "status_recovered": [State.HTTP_ERROR, State.COMPLETED],
    "drop": [State.INTERRUPTED],
    "error": [State.PROVIDER_ERROR],
    "stall": [State.TIMED_OUT_IDLE],
    "stop_reading": [State.CANCELLED],
}
"""Each kind of fault, and the state of each attempt it must lead to."""
KINDS = list(ENDINGS)


def make_case(index: int, rng: random.Random) -> Case:
    kind = rng.choice(KINDS)
    dialect = rng.choice(SSE_DIALECTS if kind in ("ping", "error_recovered") else DIALECTS)
    tokens = len(answer_tokens(f"{PROMPT} (soak {index})", length=LENGTH))
    cut = rng.randint(5, tokens - 5)
    if kind == "split":
        # Mid-sized pieces: reads still end inside events and UTF-8 sequences; the
        # 1-byte splits of test_adapters.py would make the soak slow, not stronger.
        low = rng.randint(7, 48)
        fault = f"split={low}-{low + rng.randint(0, 200)}; seed={cut}"
    elif kind == "ping":  # a stall longer than the idle timeout, keep-alives inside it
        fault = f"stall={rng.uniform(6, 30):.2f}; stall_after={cut}; ping={rng.uniform(0.5, 4):.2f}"
    else:
        fault = {
            "clean": "",
            "drop_recovered": f"fail_first=1; drop_after_tokens={cut}",
            "error_recovered": f"fail_first=1; error_after={cut}",
            "status_recovered": "fail_first=1",
            "drop": f"drop_after_tokens={cut}",
            "error": f"error_after={cut}",
            "stall": f"stall=60; stall_after={cut}",
            "stop_reading": "pace=0.01",
        }[kind]
    return Case(index, kind, dialect, fault, cut)


def provider_for(case: Case, base_url: str) -> Provider:
    headers = ((FAULT_HEADER, case.fault), (REQUEST_KEY_HEADER, f"soak-{case.index}"))
    if case.dialect == "openai-chat":
        return Provider.openai(
            api_key="sk-proj-SoakKey01", base_url=base_url + "/v1", headers=headers
        )
    if case.dialect == "openai-responses":
        return Provider.openai_responses(
            api_key="sk-proj-SoakKey01", base_url=base_url + "/v1", headers=headers
        )
    if case.dialect == "anthropic":
        return Provider.anthropic(api_key="sk-ant-SoakKey02", base_url=base_url, headers=headers)
    if case.dialect == "gemini":
        return Provider.gemini(api_key="AIzaSySoakKey0000003", base_url=base_url, headers=headers)
    return Provider.ollama(base_url=base_url, headers=headers)


async def run_case(case: Case, emu: Emulator, http: HTTPClient) -> StreamResult:
    """Stream ``case`` to its end (or to the caller's stop) and check how it ended."""
    events: list[StreamEvent] = []
    async with open_stream(
        provider_for(case, emu.base_url),
        case.prompt,
        policy=case.policy,
        http=http,
        count_tokens=False,
        rng=random.Random(case.index),
    ) as stream:
        deltas = 0
        async for event in stream:
            events.append(event)
            deltas += type(event) is TextDelta
            if case.kind == "stop_reading" and deltas == case.cut:
                break
    result = stream.result()
    check(case, result, events)
    return result


def check(case: Case, result: StreamResult, events: list[StreamEvent]) -> None:
    states = [outcome.state for outcome in result.outcomes]
    # The messages are built only when an assertion fails.
    assert states == ENDINGS[case.kind], f"{case}: {result.outcomes}"
    assert result.state is states[-1], f"{case}: {result}"
    shown = "".join(e.text for e in events if type(e) is TextDelta and e.choice == 0)
    assert shown == result.text, f"{case}: shown {shown!r}"
    if result.completed:
        assert result.text == case.answer, f"{case}: {result.text!r}"
        assert result.interruption is None
    else:
        assert result.text == case.head, f"{case}: {result.text!r}"
        assert result.interruption is not None and result.interruption.partial


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class CountingSockets(trio.abc.SocketFactory):
    """Counts the sockets trio creates (the client's; accepted sockets bypass the factory)."""

    def __init__(self) -> None:
        self.created = 0

    def socket(
        self,
        family: stdlib_socket.AddressFamily | int = stdlib_socket.AF_INET,
        type: stdlib_socket.SocketKind | int = stdlib_socket.SOCK_STREAM,
        proto: int = 0,
    ) -> trio.socket.SocketType:
        self.created += 1
        return trio.socket.from_stdlib_socket(stdlib_socket.socket(family, type, proto))


def connections_needed(results: list[StreamResult]) -> int:
    """Connections a one-at-a-time run opens: the first, then one after each attempt
    whose connection could not go back to the pool (unless nothing followed it)."""
    states = [outcome.state for result in results for outcome in result.outcomes]
    return 1 + sum(state not in REUSABLE for state in states[:-1])


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
async def test_soak_every_stream_ends_as_its_fault_says_and_nothing_leaks(
    autojump_clock: MockClock,
) -> None:
    rng = random.Random(SEED)
    sequential = [make_case(i, rng) for i in range(SEQUENTIAL)]
    concurrent = [make_case(SEQUENTIAL + i, rng) for i in range(CONCURRENT)]
    assert {case.kind for case in sequential} == set(KINDS)  # the seed covers every fault

    gc.collect()  # what earlier tests left for the collector is not this test's to count
    fds_before = open_fds()
    sockets = CountingSockets()
    async with open_emulator(length=LENGTH) as emu:
        trio.socket.set_custom_socket_factory(sockets)
        try:
            async with HTTPClient(max_idle_per_origin=MAX_IDLE) as http:
                results = [await run_case(case, emu, http) for case in sequential]
                # One at a time: a connection is reused exactly when it can be.
                assert sockets.created == connections_needed(results)
                assert http.idle_connections(emu.base_url) <= 1

                peak = 0
                opened = sockets.created

                async def one(case: Case) -> None:
                    nonlocal peak
                    results.append(await run_case(case, emu, http))
                    peak = max(peak, http.idle_connections(emu.base_url))

                async with trio.open_nursery() as nursery:
                    for case in concurrent:
                        nursery.start_soon(one, case)
                assert sockets.created - opened > MAX_IDLE  # more than the pool can keep...
                assert peak <= MAX_IDLE  # ...yet it never kept more
                assert http.idle_connections(emu.base_url) <= MAX_IDLE
            attempts = sum(len(result.outcomes) for result in results)
            with trio.fail_after(30):
                served = await emu.wait_for_requests(attempts)
        finally:
            trio.socket.set_custom_socket_factory(None)
    assert len(results) == SEQUENTIAL + CONCURRENT
    assert len(served) == attempts  # no request the client does not know about
    assert open_fds() == fds_before
