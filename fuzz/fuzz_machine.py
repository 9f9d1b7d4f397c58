"""Fuzz StreamMachine: any sequence of driver calls, events and clock readings.

The input bytes are read with ``atheris.FuzzedDataProvider``: first the
deadlines and the message bound, then up to 200 operations, each a driver call
(``response_started``, ``receive`` of a generated event, ``receive_many``,
``body_ended``, ``cancel``, ``check_deadlines``, ...) with a clock step that may
be negative.

Invariants checked for every input:

* only :class:`~streamcore.LocalProtocolError` escapes the machine, and a
  refused call leaves the state as it was;
* a clock reading earlier than the last accepted one is always refused;
* once terminal, the state never changes (exactly one ending);
* the message (live or in the outcome) holds exactly the choice-0 text of the
  ``TextDelta`` events accepted while live;
* the outcome exists exactly when the state is terminal; an attempt that
  completed, was cancelled or hit a length limit or budget is never retryable;
  a resumable one has text; ``next_deadline()`` is ``None`` once terminal;
* timing marks are in order and the gap count is the token count minus one;
* tool-argument fragments, fed to a ``PartialJSONParser`` as they arrive,
  give the same value as ``parse_partial`` on the whole, which equals
  ``json.loads`` whenever the whole is valid JSON.

Run: ``.venv/bin/python fuzz/fuzz_machine.py -max_total_time=20``
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from streamcore import LocalProtocolError, RemoteProtocolError
    from streamcore.events import (
        Event,
        Finish,
        FinishReason,
        KeepAlive,
        ProviderError,
        RawEvent,
        ReasoningDelta,
        Refusal,
        StreamEnd,
        StreamStarted,
        TextDelta,
        ToolCallDelta,
        ToolCallEnd,
        ToolCallStart,
        Usage,
    )
    from streamcore.machine import TERMINAL_STATES, Deadlines, State, StreamMachine
    from streamcore.partial_json import PartialJSONParser, parse_complete, parse_partial

MAX_OPS = 200
T0 = 1000.0
NEVER_RETRYABLE = {State.COMPLETED, State.LENGTH_LIMIT, State.BUDGET_EXCEEDED, State.CANCELLED}
ERROR_TYPES = ["overloaded_error", "invalid_request_error", "api_error", "529", ""]
# Tool-argument fragments: pieces of real argument objects, and a few bad ones.
JSON_PIECES = [
    '{"',
    "location",
    '": "',
    "Par",
    "is",
    '", "',
    "days",
    '": ',
    "1",
    "2",
    ", ",
    "[",
    "]",
]
JSON_PIECES += ["}", "tr", "ue", "\\u00", "e9", "\\", '"', "null", "-", ".5", "{]"]


def deadline(fdp: atheris.FuzzedDataProvider) -> float | None:
    tenths = fdp.ConsumeIntInRange(0, 300)
    return None if tenths == 0 else tenths / 10


def text(fdp: atheris.FuzzedDataProvider) -> str:
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 6))


def event(fdp: atheris.FuzzedDataProvider) -> Event:
    kind = fdp.ConsumeIntInRange(0, 15)
    choice = fdp.ConsumeIntInRange(0, 1)
    index = fdp.ConsumeIntInRange(0, 2)
    if kind <= 3:
        return TextDelta(text(fdp), choice=choice)
    if kind == 4:
        return ReasoningDelta(text(fdp), signature=fdp.PickValueInList(["", "EqQBCgIY"]))
    if kind == 5:
        return Refusal(text(fdp), choice=choice)
    if kind == 6:
        return ToolCallStart(index, "call_" + text(fdp), "get_weather", choice=choice)
    if kind in (7, 8):
        return ToolCallDelta(index, fdp.PickValueInList(JSON_PIECES), choice=choice)
    if kind == 9:
        return ToolCallEnd(index, choice=choice)
    if kind == 10:
        return Finish(fdp.PickValueInList(list(FinishReason)), text(fdp) or None, choice=choice)
    if kind == 11:
        return Usage(output_tokens=fdp.ConsumeIntInRange(0, 1000))
    if kind == 12:
        return StreamStarted("msg_" + text(fdp), fdp.PickValueInList(["gpt-4o", None]))
    if kind == 13:
        return KeepAlive(text(fdp)) if fdp.ConsumeBool() else RawEvent("ping", {})
    if kind == 14:
        return ProviderError(fdp.PickValueInList(ERROR_TYPES), text(fdp))
    return StreamEnd()


def kept_text(events: list[Event]) -> str:
    return "".join(e.text for e in events if type(e) is TextDelta and e.choice == 0)


def check_outcome(m: StreamMachine, expected_text: str) -> None:
    if m.state not in TERMINAL_STATES:
        try:
            _ = m.outcome
        except LocalProtocolError as exc:
            assert exc.kind == "not_terminal", exc
        else:
            raise AssertionError("an outcome before the end")
        assert m.message().text == expected_text, (m.message().text, expected_text)
        return
    out = m.outcome
    assert out.state is m.state
    assert out.message.text == expected_text, (out.message.text, expected_text)
    assert m.next_deadline() is None
    if out.state in NEVER_RETRYABLE:
        assert not out.retryable, out
    if out.resumable:
        assert out.message.text, out
    assert out.reason, out
    t = out.timings
    marks = [t.started, t.response_started, t.first_token, t.ended]
    present = [mark for mark in marks if mark is not None]
    assert present == sorted(present), t
    assert t.gap_count == max(0, t.token_events - 1), t
    assert t.tokens_per_second is None or t.tokens_per_second >= 0, t


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    deadlines = Deadlines(deadline(fdp), deadline(fdp), deadline(fdp), deadline(fdp))
    max_chars = fdp.PickValueInList([64, 256, 1 << 20])
    m = StreamMachine(now=T0, deadlines=deadlines, max_chars=max_chars)
    now = T0
    ending: State | None = None
    expected_text = ""
    arguments: dict[tuple[int, int], list[str]] = {}
    for _ in range(MAX_OPS):
        if fdp.remaining_bytes() == 0:
            break
        op = fdp.ConsumeIntInRange(0, 13)
        later = now + fdp.ConsumeIntInRange(-5, 100) / 10
        state_before = m.state
        live_before = state_before not in TERMINAL_STATES
        fed: list[Event] = []
        try:
            if op <= 3:
                ev = event(fdp)
                m.receive(ev, later)
                fed = [ev]
            elif op <= 5:
                batch = [event(fdp) for _ in range(fdp.ConsumeIntInRange(0, 5))]
                fed = batch[: m.receive_many(batch, later)]
            elif op == 6:
                m.response_started(fdp.PickValueInList([200, 201, 429]), later)
            elif op == 7:
                m.http_error(fdp.PickValueInList([200, 408, 429, 400, 500, 529]), later)
            elif op == 8:
                m.body_ended(later)
            elif op == 9:
                m.transport_failed(ConnectionResetError(104, "reset"), later)
            elif op == 10:
                m.protocol_error(RemoteProtocolError("bad JSON", kind="invalid_json"), later)
            elif op == 11:
                if fdp.ConsumeBool():
                    m.budget_exceeded(later)
                else:
                    m.cancel(later, reason=text(fdp))
            elif op == 12:
                m.check_deadlines(later)
            else:
                m.set_output_tokens(fdp.ConsumeIntInRange(-1, 100))
                m.check_deadlines(later)
        except LocalProtocolError:
            assert m.state is state_before, "a refused call changed the state"
            continue
        assert later >= now, "an earlier clock reading was accepted"
        now = later
        if live_before and fed:
            overflowed = (
                m.state is State.PROTOCOL_ERROR
                and isinstance(m.outcome.error, RemoteProtocolError)
                and m.outcome.error.kind == "message_too_large"
            )
            kept = fed[:-1] if overflowed else fed
            expected_text += kept_text(kept)
            for ev in kept:
                if type(ev) is ToolCallDelta:
                    arguments.setdefault((ev.choice, ev.index), []).append(ev.arguments)
        if ending is not None:
            assert m.state is ending, f"a second ending: {ending} then {m.state}"
        elif m.state in TERMINAL_STATES:
            ending = m.state
        check_outcome(m, expected_text)
    check_outcome(m, expected_text)
    for fragments in arguments.values():
        parser = PartialJSONParser()
        for fragment in fragments:
            parser.feed(fragment)
        whole = "".join(fragments)
        assert parser.value() == parse_partial(whole), fragments
        complete = parse_complete(whole)
        if complete is not None:
            assert parse_partial(whole) == complete, fragments


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
