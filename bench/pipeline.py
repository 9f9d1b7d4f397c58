"""Full-pipeline throughput: response bytes to a final message, streamcore against the SDKs.

    .venv/bin/python bench/pipeline.py [--repeats N] [--events N] [--profile] [openai|anthropic]

About a minute and a half with the defaults (the OpenAI SDK is the slow part).

The work timed is what a caller needs from a streamed answer: SSE framing,
JSON, the provider's event grammar and accumulation into the final message.
Every contestant reads the same in-memory chunk lists (``corpus.py``: 64 KiB
reads and random 1-1500 byte reads) and is driven the way its users drive it:

* openai: the SDK's ``Stream[ChatCompletionChunk]`` over an ``httpx2.Response``
  whose body yields the chunks, under ``ChatCompletionStream`` (what
  ``client.chat.completions.stream(...)`` hands out), then ``get_final_completion()``;
* anthropic: the SDK's ``Stream[RawMessageStreamEvent]`` under ``MessageStream``
  (what ``client.messages.stream(...)`` hands out), then ``get_final_message()``;
* streamcore dialect+accumulate: ``decoder_for(dialect)`` -> ``Accumulator`` ->
  ``message()``;
* streamcore dialect+machine: ``decoder_for(dialect)`` -> ``StreamMachine``
  (``receive_many`` per chunk, which accumulates too) -> ``outcome``.

Before anything is timed, every contestant's final text, finish reason and
output-token count must equal the others' (a benchmark that compares different
work is worthless). Times are the best of ``--repeats`` rounds, contestants
interleaved within a round. ``events/s`` counts SSE events of the body.
``--profile`` adds a cProfile of each streamcore pipeline (top functions by
own time).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import openai
from anthropic._streaming import Stream as AnthropicStream
from anthropic._types import not_given
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent
from corpus import anthropic_messages_corpus, openai_chat_corpus, split_fixed, split_random
from openai._streaming import Stream as OpenAIStream
from openai._types import omit
from openai.lib.streaming.chat import ChatCompletionStream
from openai.types.chat import ChatCompletionChunk

from streamcore.accumulate import Accumulator
from streamcore.machine import State, StreamMachine
from streamcore.providers import decoder_for

TARGET = 2.0
"""streamcore must be at least this many times as fast as the provider's SDK."""

# Clients are only factories for the SDKs' decoders here: nothing is dialled.
OPENAI = openai.OpenAI(api_key="offline-bench", base_url="http://127.0.0.1:9/v1", max_retries=0)
ANTHROPIC = anthropic.Anthropic(
    api_key="offline-bench", base_url="http://127.0.0.1:9", max_retries=0
)


@dataclass(frozen=True, slots=True)
class Final:
    """What every contestant must agree on before it is timed."""

    text: str
    finish: str | None
    output_tokens: int | None


Pipeline = Callable[[list[bytes]], Final]


def response(chunks: list[bytes], url: str) -> httpx2.Response:
    """A 200 response whose body yields ``chunks`` as they are (``iter_bytes`` keeps them)."""
    return httpx2.Response(
        200,
        content=iter(chunks),
        headers={"content-type": "text/event-stream"},
        request=httpx2.Request("POST", url),
    )


def openai_sdk(chunks: list[bytes]) -> Final:
    url = "http://127.0.0.1:9/v1/chat/completions"
    raw = OpenAIStream(cast_to=ChatCompletionChunk, response=response(chunks, url), client=OPENAI)
    stream = ChatCompletionStream(raw_stream=raw, response_format=omit, input_tools=omit)
    completion = stream.get_final_completion()
    choice = completion.choices[0]
    usage = completion.usage
    return Final(
        choice.message.content or "",
        choice.finish_reason,
        None if usage is None else usage.completion_tokens,
    )


def anthropic_sdk(chunks: list[bytes]) -> Final:
    url = "http://127.0.0.1:9/v1/messages"
    # RawMessageStreamEvent is a union, which the SDK's own calls pass as cast_to too.
    event_type: Any = RawMessageStreamEvent
    raw: AnthropicStream[RawMessageStreamEvent] = AnthropicStream(
        cast_to=event_type, response=response(chunks, url), client=ANTHROPIC
    )
    message = MessageStream(raw, output_format=not_given).get_final_message()
    text = "".join(block.text for block in message.content if block.type == "text")
    return Final(text, message.stop_reason, message.usage.output_tokens)


def dialect_accumulate(dialect: str) -> Pipeline:
    def run(chunks: list[bytes]) -> Final:
        decoder = decoder_for(dialect)
        accumulator = Accumulator()
        feed = decoder.feed
        add_many = accumulator.add_many
        for chunk in chunks:
            add_many(feed(chunk))
        add_many(decoder.end())
        message = accumulator.message()
        assert message.complete, "the corpus body is whole"
        usage = message.usage
        return Final(
            message.text, message.finish_raw, None if usage is None else usage.output_tokens
        )

    return run


def dialect_machine(dialect: str) -> Pipeline:
    def run(chunks: list[bytes]) -> Final:
        decoder = decoder_for(dialect)
        machine = StreamMachine(now=0.0)
        machine.response_started(200, now=0.0)
        feed = decoder.feed
        receive_many = machine.receive_many
        # One clock reading per read, as a driver takes it; the value does not matter.
        for now, chunk in enumerate(chunks, 1):
            receive_many(feed(chunk), float(now))
        now = len(chunks) + 1
        if not machine.terminal:
            receive_many(decoder.end(), float(now))
        machine.body_ended(float(now))
        outcome = machine.outcome
        assert outcome.state is State.COMPLETED, outcome.reason
        usage = outcome.message.usage
        message = outcome.message
        return Final(
            message.text, message.finish_raw, None if usage is None else usage.output_tokens
        )

    return run


@dataclass(frozen=True, slots=True)
class Corpus:
    name: str
    body: bytes
    events: int
    sdk_name: str
    sdk: Pipeline
    dialect: str


def chunkings(body: bytes) -> dict[str, list[bytes]]:
    return {"64 KiB": split_fixed(body, 64 * 1024), "1-1500 B": split_random(body, 1, 1500)}


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per function, running them in turn each round.

    Interleaving means a burst of load from another process slows every
    contestant's round alike instead of one contestant's whole series.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for label, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def bench(corpus: Corpus, repeats: int) -> list[tuple[str, str, float]]:
    """Print one corpus's table; return (chunking, pipeline, speed-up over the SDK) rows."""
    size = len(corpus.body)
    print(f"\n== {corpus.name}: {size / 1e6:.2f} MB, {corpus.events:,} SSE events ==")
    print(f"{'chunking':<9} {'pipeline':<32} {'MB/s':>7} {'events/s':>10} {'s':>7} {'vs SDK':>7}")
    pipelines: dict[str, Pipeline] = {
        f"{corpus.sdk_name} SDK": corpus.sdk,
        "streamcore dialect+accumulate": dialect_accumulate(corpus.dialect),
        "streamcore dialect+machine": dialect_machine(corpus.dialect),
    }
    sdk_label = next(iter(pipelines))
    ratios = []
    for chunking, chunks in chunkings(corpus.body).items():
        finals = {label: run(chunks) for label, run in pipelines.items()}
        expected = finals[sdk_label]
        for label, final in finals.items():
            if final != expected:
                sys.exit(
                    f"{corpus.name} {chunking}: {label} gives {final.finish!r}, "
                    f"{final.output_tokens} tokens and {len(final.text)} characters; the SDK "
                    f"{expected.finish!r}, {expected.output_tokens} and {len(expected.text)}: "
                    "not the same work, nothing timed"
                )
        seconds = best_times(
            {label: functools.partial(run, chunks) for label, run in pipelines.items()},
            repeats,
        )
        for label, secs in seconds.items():
            ratio = seconds[sdk_label] / secs
            print(
                f"{chunking:<9} {label:<32} {size / secs / 1e6:7.2f} "
                f"{corpus.events / secs:10,.0f} {secs:7.3f} {ratio:6.2f}x"
            )
            if label != sdk_label:
                ratios.append((chunking, label, ratio))
    return [(f"{corpus.name} {chunking}", label, ratio) for chunking, label, ratio in ratios]


def profile(corpus: Corpus, top: int) -> None:
    """cProfile each streamcore pipeline on the random-read chunking; print the hot functions."""
    chunks = chunkings(corpus.body)["1-1500 B"]
    for label, run in (
        ("dialect+accumulate", dialect_accumulate(corpus.dialect)),
        ("dialect+machine", dialect_machine(corpus.dialect)),
    ):
        profiler = cProfile.Profile()
        profiler.runcall(run, chunks)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        print(f"\n-- profile: {corpus.name} {label}, 1-1500 B reads, by own time --")
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print("\n".join(line for line in lines[start:] if line.strip()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="best of N rounds (default 5)")
    parser.add_argument("--events", type=int, default=20_000, help="SSE events per corpus")
    parser.add_argument("--profile", action="store_true", help="cProfile streamcore too")
    parser.add_argument("providers", nargs="*", help="openai, anthropic (default: both)")
    args = parser.parse_args(argv)
    unknown = set(args.providers) - {"openai", "anthropic"}
    if unknown:
        parser.error(f"unknown provider(s) {sorted(unknown)}; choose from openai, anthropic")
    corpora = [
        Corpus(
            "OpenAI chat",
            openai_chat_corpus(args.events),
            args.events,
            f"openai {openai.__version__}",
            openai_sdk,
            "openai-chat",
        ),
        Corpus(
            "Anthropic messages",
            anthropic_messages_corpus(args.events),
            args.events,
            f"anthropic {anthropic.__version__}",
            anthropic_sdk,
            "anthropic",
        ),
    ]
    if args.providers:
        corpora = [c for c in corpora if c.dialect.split("-")[0] in args.providers]
    print(f"Python {sys.version.split()[0]}, best of {args.repeats}")
    rows = []
    for corpus in corpora:
        rows += bench(corpus, args.repeats)
        if args.profile:
            profile(corpus, top=15)
    print(f"\n== target: streamcore at least {TARGET}x the official SDK ==")
    missed = 0
    for case, label, ratio in rows:
        verdict = "met" if ratio >= TARGET else "MISSED"
        missed += ratio < TARGET
        print(f"{case:<30} {label:<30} {ratio:6.2f}x  {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
