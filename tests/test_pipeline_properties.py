"""Invariants of the whole pipeline: transcript bytes -> dialect -> stream machine -> outcome.

Each layer has its own property tests; these check that the layers compose.
Every transcript in tests/transcripts/<dialect>/ is driven through its dialect
decoder (``decoder_for``; Gemini ``array_*`` files through ``gemini-json-array``)
into a :class:`~streamcore.machine.StreamMachine`, the way a driver does it:
feed each chunk, hand the events to ``receive_many``, stop reading once the
attempt has ended, report a broken grammar with ``protocol_error`` and the end
of the body with ``body_ended``.

* Chunking never matters: any split of a body (or of any prefix of it) gives the
  same events, the same final message and the same ending.
* The whole body ends as the transcript says (:data:`ENDINGS`).
* A body cut at any byte ends ``INTERRUPTED`` (or ``PROTOCOL_ERROR``) with a
  prefix of the full answer: text, reasoning and every tool call's arguments.
  The one exception is a cut that removes only framing after the last event (a
  final newline): nothing was lost, and the attempt ends exactly as the whole.
* The machine ends once, and what it emitted is what the outcome holds: the
  outcome's text is the concatenation of the ``TextDelta`` events fed before
  the end, choice by choice, and reports that race with the end change nothing.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcore import RemoteProtocolError
from streamcore.accumulate import FinalMessage
from streamcore.events import Event, ReasoningDelta, TextDelta, ToolCallDelta
from streamcore.machine import TERMINAL_STATES, Outcome, State, StreamMachine
from streamcore.providers import DIALECTS, decoder_for

TRANSCRIPTS = Path(__file__).parent / "transcripts"
PATHS = sorted(TRANSCRIPTS.glob("*/*.txt"))
IDS = [f"{p.parent.name}/{p.stem}" for p in PATHS]

# How each transcript's whole body ends. A new transcript needs a line here.
ENDINGS: dict[str, State] = {
    "anthropic/delta_without_start": State.PROTOCOL_ERROR,
    "anthropic/dropped": State.INTERRUPTED,
    "anthropic/error_overloaded": State.PROVIDER_ERROR,
    "anthropic/invalid_json": State.PROTOCOL_ERROR,
    "anthropic/max_tokens": State.LENGTH_LIMIT,
    "anthropic/text_emoji_cjk": State.COMPLETED,
    "anthropic/thinking": State.COMPLETED,
    "anthropic/tool_use_parallel": State.COMPLETED,
    "gemini/array_error": State.PROVIDER_ERROR,
    "gemini/array_text": State.COMPLETED,
    "gemini/array_unclosed": State.INTERRUPTED,
    "gemini/blocked_prompt": State.COMPLETED,
    "gemini/dropped": State.INTERRUPTED,
    "gemini/error_unavailable": State.PROVIDER_ERROR,
    "gemini/function_calls_parallel": State.COMPLETED,
    "gemini/invalid_json": State.PROTOCOL_ERROR,
    "gemini/max_tokens": State.LENGTH_LIMIT,
    "gemini/text_emoji_cjk": State.COMPLETED,
    "gemini/thinking": State.COMPLETED,
    "gemini/two_candidates": State.COMPLETED,
    "ollama/dropped": State.INTERRUPTED,
    "ollama/error": State.PROVIDER_ERROR,
    "ollama/invalid_json": State.PROTOCOL_ERROR,
    "ollama/length": State.LENGTH_LIMIT,
    "ollama/text_emoji_cjk": State.COMPLETED,
    "ollama/thinking": State.COMPLETED,
    "ollama/tool_calls": State.COMPLETED,
    "openai_chat/azure_content_filter": State.COMPLETED,
    "openai_chat/deepseek_reasoning": State.COMPLETED,
    "openai_chat/dropped": State.INTERRUPTED,
    "openai_chat/error_midstream": State.PROVIDER_ERROR,
    # A finish_reason but no [DONE]: the usage chunk may have been lost.
    "openai_chat/finish_without_done": State.INTERRUPTED,
    "openai_chat/gemini_compat_tools": State.COMPLETED,
    "openai_chat/invalid_json": State.PROTOCOL_ERROR,
    "openai_chat/length": State.LENGTH_LIMIT,
    "openai_chat/n2_choices": State.COMPLETED,
    "openai_chat/openrouter_reasoning": State.COMPLETED,
    "openai_chat/refusal": State.COMPLETED,
    "openai_chat/text_emoji_cjk": State.COMPLETED,
    "openai_chat/tool_calls_parallel": State.COMPLETED,
    "openai_chat/tool_fragment_without_start": State.PROTOCOL_ERROR,
    "openai_chat/vllm_continuous_usage": State.COMPLETED,
    "openai_responses/background_cut": State.INTERRUPTED,
    # The rest of background_cut, streamed again from a sequence number: only a
    # decoder made with resumed() knows its open items; a fresh one must refuse it.
    "openai_responses/background_resume": State.PROTOCOL_ERROR,
    "openai_responses/delta_without_item": State.PROTOCOL_ERROR,
    "openai_responses/dropped": State.INTERRUPTED,
    "openai_responses/error_event": State.PROVIDER_ERROR,
    "openai_responses/failed": State.PROVIDER_ERROR,
    "openai_responses/function_calls_parallel": State.COMPLETED,
    "openai_responses/incomplete_max_tokens": State.LENGTH_LIMIT,
    "openai_responses/invalid_json": State.PROTOCOL_ERROR,
    "openai_responses/reasoning_summary": State.COMPLETED,
    "openai_responses/refusal": State.COMPLETED,
    "openai_responses/text_emoji_cjk": State.COMPLETED,
    "openai_responses/web_search": State.COMPLETED,
}
# The endings of a body that arrived whole: the provider said how the answer ended.
WHOLE_ENDINGS = {State.COMPLETED, State.LENGTH_LIMIT, State.PROVIDER_ERROR}
CUT_ENDINGS = {State.INTERRUPTED, State.PROTOCOL_ERROR}
COMPLETE = [p for p, i in zip(PATHS, IDS, strict=True) if ENDINGS.get(i) in WHOLE_ENDINGS]
COMPLETE_IDS = [f"{p.parent.name}/{p.stem}" for p in COMPLETE]

# The properties run once per transcript (about 60 of them): a tenth of the
# profile's examples for each keeps the whole file within a few seconds.
PER_TRANSCRIPT = settings(max_examples=max(10, settings().max_examples // 10))


def dialect_of(path: Path) -> str:
    """The registry name of the dialect a transcript is written in (its folder)."""
    name = path.parent.name.replace("_", "-")
    if name == "gemini" and path.stem.startswith("array_"):
        name = "gemini-json-array"
    assert name in DIALECTS, f"{path}: folder names no dialect of {sorted(DIALECTS)}"
    return name


@dataclass(frozen=True)
class Run:
    """What one drive observed."""

    events: list[Event]
    """The events the machine was fed, in order (none after the end)."""
    states: list[State]
    """The machine's state after every report the driver made."""
    machine: StreamMachine

    @property
    def outcome(self) -> Outcome:
        return self.machine.outcome

    def ending(self) -> tuple[object, ...]:
        """The outcome minus the clock readings and exception identities."""
        out = self.outcome
        error: object = out.error
        if isinstance(out.error, RemoteProtocolError):
            error = (out.error.kind, str(out.error))
        return (out.state, out.message, out.reason, out.retryable, out.resumable, error)


def drive(dialect: str, chunks: Sequence[bytes]) -> Run:
    """Feed ``chunks`` (the whole body) through the dialect into a stream machine."""
    decoder = decoder_for(dialect)
    machine = StreamMachine(now=0.0)
    machine.response_started(200, now=0.0)
    events: list[Event] = []
    states = [machine.state]
    now = 0.0
    for chunk in [*chunks, None]:  # None: the body ended
        now += 0.01
        try:
            batch = decoder.end() if chunk is None else decoder.feed(chunk)
        except RemoteProtocolError as exc:
            machine.protocol_error(exc, now)
        else:
            events += batch[: machine.receive_many(batch, now)]
        states.append(machine.state)
        if machine.terminal:
            break  # a driver stops reading once the attempt has ended
    machine.body_ended(now)
    states.append(machine.state)
    return Run(events, states, machine)


@functools.cache
def whole(path: Path, length: int | None = None) -> Run:
    """The drive of the body (its first ``length`` bytes) in one chunk: the reference."""
    return drive(dialect_of(path), [path.read_bytes()[:length]])


def split(body: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


def cut_points(body: bytes) -> list[int]:
    """Where to cut ``body``: wherever the outcome can change, and a sample in between.

    Items end at line breaks (SSE, NDJSON) and brackets (the JSON array), so every
    offset next to one is taken; inside an item every cut drops the same partial
    item, so every 13th offset stands for the rest (the hypothesis tests draw
    any offset).
    """
    points = set(range(0, len(body), 13))
    for match in re.finditer(rb"[\r\n\]]", body):
        points.update(range(max(0, match.start() - 1), min(len(body), match.end() + 2)))
    return sorted(points)


def assert_prefix_of(cut: FinalMessage, full: FinalMessage) -> None:
    """Every choice of ``cut`` holds a prefix of what the same choice of ``full`` holds."""
    full_choices = {c.index: c for c in full.choices}
    for choice in cut.choices:
        assert choice.index in full_choices, f"choice {choice.index} is not in the full answer"
        whole_choice = full_choices[choice.index]
        assert whole_choice.text.startswith(choice.text)
        assert whole_choice.reasoning.startswith(choice.reasoning)
        assert whole_choice.signatures[: len(choice.signatures)] == choice.signatures
        whole_calls = {c.index: c for c in whole_choice.tool_calls}
        for call in choice.tool_calls:
            assert call.index in whole_calls, f"tool call {call.index} is not in the full answer"
            whole_call = whole_calls[call.index]
            assert (call.id, call.name) == (whole_call.id, whole_call.name)
            assert whole_call.arguments.startswith(call.arguments)


# --------------------------------------------------------------------------- properties


def test_every_transcript_states_its_ending() -> None:
    missing = sorted(set(IDS) - set(ENDINGS))
    assert not missing, f"add the expected ending of {missing} to ENDINGS"
    assert not set(ENDINGS) - set(IDS), "ENDINGS names a transcript that is gone"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_whole_body_ends_as_the_transcript_says(path: Path) -> None:
    run = whole(path)
    assert run.outcome.state is ENDINGS[f"{path.parent.name}/{path.stem}"], run.outcome.reason


@PER_TRANSCRIPT
@pytest.mark.parametrize("path", PATHS, ids=IDS)
@given(data=st.data())
def test_any_chunking_gives_same_events(path: Path, data: st.DataObject) -> None:
    """Holds for the whole body and for any prefix of it (a drop anywhere)."""
    body = path.read_bytes()
    length = data.draw(st.one_of(st.just(len(body)), st.integers(0, len(body))), label="length")
    cuts = data.draw(st.lists(st.integers(1, max(1, length - 1)), max_size=40), label="cuts")
    reference = whole(path, length)
    run = drive(dialect_of(path), split(body[:length], cuts))
    assert run.events == reference.events
    assert run.ending() == reference.ending()


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_byte_by_byte_gives_same_events(path: Path) -> None:
    body = path.read_bytes()
    run = drive(dialect_of(path), [body[i : i + 1] for i in range(len(body))])
    assert run.events == whole(path).events
    assert run.ending() == whole(path).ending()


@pytest.mark.parametrize("path", COMPLETE, ids=COMPLETE_IDS)
def test_body_cut_anywhere_is_interrupted_with_a_prefix_of_the_answer(path: Path) -> None:
    body = path.read_bytes()
    full = whole(path)
    for length in cut_points(body):
        run = drive(dialect_of(path), [body[:length]])
        where = f"cut after {length} of {len(body)} bytes: {run.outcome.reason}"
        if run.outcome.state in CUT_ENDINGS:
            assert_prefix_of(run.outcome.message, full.outcome.message)
        else:
            # Only framing after the last event was cut: nothing may be missing.
            assert run.events == full.events, where
            assert run.ending() == full.ending(), where


@PER_TRANSCRIPT
@pytest.mark.parametrize("path", PATHS, ids=IDS)
@given(data=st.data())
def test_machine_ends_once_and_keeps_every_text_delta(path: Path, data: st.DataObject) -> None:
    body = path.read_bytes()
    length = data.draw(st.integers(0, len(body)), label="length")
    cuts = data.draw(st.lists(st.integers(1, max(1, length - 1)), max_size=40), label="cuts")
    run = drive(dialect_of(path), split(body[:length], cuts))

    endings = [s for s in run.states if s in TERMINAL_STATES]
    assert endings, "the body ended and the machine did not"
    assert run.states[-len(endings) :] == [endings[0]] * len(endings), run.states

    message = run.outcome.message
    for choice in message.choices:
        fed = [e for e in run.events if isinstance(e, TextDelta) and e.choice == choice.index]
        assert choice.text == "".join(e.text for e in fed)
        fed_reasoning = [
            e for e in run.events if isinstance(e, ReasoningDelta) and e.choice == choice.index
        ]
        assert choice.reasoning == "".join(e.text for e in fed_reasoning)
        for call in choice.tool_calls:
            fragments = [
                e.arguments
                for e in run.events
                if isinstance(e, ToolCallDelta)
                and (e.choice, e.index) == (choice.index, call.index)
            ]
            assert call.arguments == "".join(fragments)

    before = run.ending()
    run.machine.body_ended(now=99.0)
    run.machine.transport_failed(ConnectionResetError(104, "Connection reset by peer"), now=99.0)
    run.machine.protocol_error(RemoteProtocolError("late", kind="invalid_json"), now=99.0)
    run.machine.cancel(now=99.0, reason="user pressed Ctrl-C")
    assert run.ending() == before, "a report that raced with the end changed the outcome"
