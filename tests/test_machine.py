"""StreamMachine: the table, deadlines on an explicit clock, outcomes, timings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

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
from streamcore.machine import (
    TERMINAL_STATES,
    TRANSITIONS,
    Deadlines,
    Input,
    State,
    StreamMachine,
    TokenSource,
)

T0 = 5000.0  # any reading of a monotonic clock: the machine only uses differences

S = State
I = Input  # noqa: E741 -- the table reads better with one-letter names
LIVE = (S.CONNECTING, S.WAITING_FIRST_TOKEN, S.STREAMING)

# OpenAI Chat Completions (gpt-4o-mini), as its dialect renders it.
OPENAI_ANSWER: list[Event] = [
    StreamStarted("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "gpt-4o-mini-2024-07-18"),
    TextDelta(""),  # the first chunk: {"role": "assistant", "content": ""}
    TextDelta("The capital"),
    TextDelta(" of France"),
    TextDelta(" is Paris."),
    Finish(FinishReason.STOP, "stop"),
    Usage(input_tokens=14, output_tokens=8),
    StreamEnd(),
]

# Anthropic Messages cut by max_tokens.
ANTHROPIC_MAX_TOKENS: list[Event] = [
    StreamStarted("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5-20250929"),
    Usage(input_tokens=25, output_tokens=1),
    KeepAlive("ping"),
    TextDelta("Once upon a time, in a"),
    TextDelta(" small village by the"),
    Finish(FinishReason.LENGTH, "max_tokens"),
    Usage(output_tokens=10),
    StreamEnd(),
]


def new(deadlines: Deadlines | None = None) -> StreamMachine:
    return StreamMachine(now=T0, deadlines=deadlines)


def reach(state: State) -> StreamMachine:
    """A machine brought to ``state`` by a realistic path (deadlines only where needed)."""
    deadlines = {
        S.TIMED_OUT_CONNECT: Deadlines(connect=10),
        S.TIMED_OUT_FIRST_TOKEN: Deadlines(first_token=20),
        S.TIMED_OUT_IDLE: Deadlines(idle=5),
        S.TIMED_OUT_TOTAL: Deadlines(total=60),
    }.get(state)
    m = new(deadlines)
    if state is S.CONNECTING:
        return m
    if state is S.HTTP_ERROR:
        m.http_error(503, T0 + 0.3)
        return m
    if state is S.CONNECT_FAILED:
        m.transport_failed(ConnectionRefusedError(111, "Connection refused"), T0 + 0.1)
        return m
    if state is S.TIMED_OUT_CONNECT:
        m.check_deadlines(T0 + 10)
        return m
    m.response_started(200, T0 + 0.3)
    if state is S.WAITING_FIRST_TOKEN:
        return m
    if state is S.TIMED_OUT_FIRST_TOKEN:
        m.check_deadlines(T0 + 20.3)
        return m
    m.receive(TextDelta("Paris"), T0 + 0.5)
    steps: dict[State, Callable[[], object]] = {
        S.STREAMING: lambda: None,
        S.COMPLETED: lambda: m.receive_many(
            [Finish(FinishReason.STOP, "stop"), StreamEnd()], T0 + 1
        ),
        S.LENGTH_LIMIT: lambda: m.receive_many(
            [Finish(FinishReason.LENGTH, "length"), StreamEnd()], T0 + 1
        ),
        S.BUDGET_EXCEEDED: lambda: m.budget_exceeded(T0 + 1),
        S.PROVIDER_ERROR: lambda: m.receive(
            ProviderError("overloaded_error", "Overloaded"), T0 + 1
        ),
        S.INTERRUPTED: lambda: m.body_ended(T0 + 1),
        S.PROTOCOL_ERROR: lambda: m.protocol_error(
            RemoteProtocolError("data line is not valid JSON", kind="invalid_json"), T0 + 1
        ),
        S.TIMED_OUT_IDLE: lambda: m.check_deadlines(T0 + 5.5),
        S.TIMED_OUT_TOTAL: lambda: m.check_deadlines(T0 + 60),
        S.CANCELLED: lambda: m.cancel(T0 + 1, reason="user pressed Ctrl-C"),
    }
    steps[state]()
    assert m.state is state
    return m


DEADLINE_INPUTS = (I.CONNECT_DEADLINE, I.FIRST_TOKEN_DEADLINE, I.IDLE_DEADLINE, I.TOTAL_DEADLINE)
REPORTED_INPUTS = tuple(i for i in Input if i not in DEADLINE_INPUTS)


def apply(m: StreamMachine, inp: Input, now: float) -> None:
    """Make the driver call that reports ``inp``."""
    if inp is I.STREAM_END_AFTER_LENGTH and m.state in LIVE:
        m.receive(Finish(FinishReason.LENGTH, "max_tokens"), now)
    calls: dict[Input, Callable[[], object]] = {
        I.RESPONSE_STARTED: lambda: m.response_started(200, now),
        I.HTTP_ERROR: lambda: m.http_error(500, now),
        I.TOKEN: lambda: m.receive(TextDelta(" is lovely"), now),
        I.EVENT: lambda: m.receive(Usage(output_tokens=3), now),
        I.KEEPALIVE: lambda: m.receive(KeepAlive("ping"), now),
        I.PROVIDER_ERROR: lambda: m.receive(ProviderError("api_error", "Internal error"), now),
        I.STREAM_END: lambda: m.receive(StreamEnd(), now),
        I.STREAM_END_AFTER_LENGTH: lambda: m.receive(StreamEnd(), now),
        I.BODY_ENDED: lambda: m.body_ended(now),
        I.TRANSPORT_FAILED: lambda: m.transport_failed(
            ConnectionResetError(104, "Connection reset by peer"), now
        ),
        I.PROTOCOL_ERROR: lambda: m.protocol_error(
            RemoteProtocolError("event order", kind="bad_order"), now
        ),
        I.BUDGET_EXCEEDED: lambda: m.budget_exceeded(now),
        I.CANCEL: lambda: m.cancel(now),
    }
    calls[inp]()


# --- The table ------------------------------------------------------------------

# Written from the spec, not from the code: every move out of a live state.
SPEC_LIVE_MOVES = {
    (S.CONNECTING, I.RESPONSE_STARTED): S.WAITING_FIRST_TOKEN,
    (S.CONNECTING, I.HTTP_ERROR): S.HTTP_ERROR,
    (S.CONNECTING, I.TRANSPORT_FAILED): S.CONNECT_FAILED,
    (S.CONNECTING, I.PROTOCOL_ERROR): S.PROTOCOL_ERROR,
    (S.CONNECTING, I.CANCEL): S.CANCELLED,
    (S.CONNECTING, I.CONNECT_DEADLINE): S.TIMED_OUT_CONNECT,
    (S.CONNECTING, I.TOTAL_DEADLINE): S.TIMED_OUT_TOTAL,
    **{
        (live, inp): nxt
        for live in (S.WAITING_FIRST_TOKEN, S.STREAMING)
        for inp, nxt in {
            I.TOKEN: S.STREAMING,
            I.EVENT: live,
            I.KEEPALIVE: live,
            I.STREAM_END: S.COMPLETED,
            I.STREAM_END_AFTER_LENGTH: S.LENGTH_LIMIT,
            I.PROVIDER_ERROR: S.PROVIDER_ERROR,
            I.BODY_ENDED: S.INTERRUPTED,
            I.TRANSPORT_FAILED: S.INTERRUPTED,
            I.PROTOCOL_ERROR: S.PROTOCOL_ERROR,
            I.BUDGET_EXCEEDED: S.BUDGET_EXCEEDED,
            I.CANCEL: S.CANCELLED,
            I.IDLE_DEADLINE: S.TIMED_OUT_IDLE,
            I.TOTAL_DEADLINE: S.TIMED_OUT_TOTAL,
        }.items()
    },
    (S.WAITING_FIRST_TOKEN, I.FIRST_TOKEN_DEADLINE): S.TIMED_OUT_FIRST_TOKEN,
}
SPEC_ABSORBED_AFTER_END = {
    I.KEEPALIVE,
    I.STREAM_END,
    I.STREAM_END_AFTER_LENGTH,
    I.BODY_ENDED,
    I.TRANSPORT_FAILED,
    I.PROTOCOL_ERROR,
    I.BUDGET_EXCEEDED,
    I.CANCEL,
}


def test_table_has_a_row_for_every_state() -> None:
    assert set(TRANSITIONS) == set(State)
    assert set(TERMINAL_STATES) == set(State) - set(LIVE)


def test_live_rows_of_the_table_match_the_spec() -> None:
    table = {(s, i): nxt for s in LIVE for i, nxt in TRANSITIONS[s].items()}
    assert table == SPEC_LIVE_MOVES


@pytest.mark.parametrize("end", sorted(TERMINAL_STATES, key=lambda s: s.value))
def test_terminal_rows_only_absorb_reports_that_race_with_the_end(end: State) -> None:
    assert TRANSITIONS[end] == dict.fromkeys(SPEC_ABSORBED_AFTER_END, end)


@pytest.mark.parametrize("end", sorted(TERMINAL_STATES, key=lambda s: s.value))
def test_every_terminal_state_is_reachable_from_a_live_state(end: State) -> None:
    assert end in SPEC_LIVE_MOVES.values()
    assert reach(end).state is end


@pytest.mark.parametrize(
    ("state", "inp"),
    [(s, i) for s in State for i in REPORTED_INPUTS],
    ids=lambda x: x.name,
)
def test_machine_follows_the_table_or_refuses(state: State, inp: Input) -> None:
    m = reach(state)
    expected = TRANSITIONS[state].get(inp)
    if expected is None:
        with pytest.raises(LocalProtocolError) as info:
            apply(m, inp, T0 + 100)
        assert info.value.kind == "illegal_transition"
        assert state.name in str(info.value)
        assert m.state is state
    else:
        apply(m, inp, T0 + 100)
        assert m.state is expected


DEADLINE_FIELD = {
    I.CONNECT_DEADLINE: "connect",
    I.FIRST_TOKEN_DEADLINE: "first_token",
    I.IDLE_DEADLINE: "idle",
    I.TOTAL_DEADLINE: "total",
}


@pytest.mark.parametrize(
    ("state", "inp"), [(s, i) for s in LIVE for i in DEADLINE_INPUTS], ids=lambda x: x.name
)
def test_a_deadline_fires_exactly_in_the_states_whose_row_has_it(state: State, inp: Input) -> None:
    m = new(Deadlines(**{DEADLINE_FIELD[inp]: 1000.0}))
    if state is not S.CONNECTING:
        m.response_started(200, T0)
    if state is S.STREAMING:
        m.receive(TextDelta("Paris"), T0)
    fired = m.check_deadlines(T0 + 10_000)
    expected = TRANSITIONS[state].get(inp)
    assert (fired, m.state) == ((True, expected) if expected else (False, state))


def test_illegal_transition_error_names_state_and_input_and_changes_nothing() -> None:
    m = reach(S.STREAMING)
    with pytest.raises(LocalProtocolError) as info:
        m.response_started(200, T0 + 1)
    assert info.value.kind == "illegal_transition"
    assert "response_started is not allowed in state STREAMING" in str(info.value)
    assert m.state is S.STREAMING
    m.receive(TextDelta(" is lovely"), T0 + 1)
    assert m.message().text == "Paris is lovely"


# --- Realistic paths -----------------------------------------------------------


def test_openai_answer_completes_with_its_text_and_usage() -> None:
    m = new()
    m.response_started(200, T0 + 0.2)
    assert m.receive_many(OPENAI_ANSWER, T0 + 0.6) == len(OPENAI_ANSWER)
    out = m.outcome
    assert (out.state, out.message.text, out.message.usage) == (
        S.COMPLETED,
        "The capital of France is Paris.",
        Usage(input_tokens=14, output_tokens=8),
    )
    assert out.reason == "the provider completed the answer (finish reason 'stop')"


def test_anthropic_answer_cut_by_max_tokens_ends_in_length_limit() -> None:
    m = new()
    m.response_started(200, T0 + 0.2)
    m.receive_many(ANTHROPIC_MAX_TOKENS, T0 + 0.6)
    assert m.state is S.LENGTH_LIMIT
    assert m.outcome.message.text == "Once upon a time, in a small village by the"


def test_length_finish_on_any_choice_ends_in_length_limit() -> None:
    m = reach(S.STREAMING)
    m.receive_many(
        [
            TextDelta("Blue skies", choice=1),
            Finish(FinishReason.STOP, "stop"),
            Finish(FinishReason.LENGTH, "length", choice=1),
            StreamEnd(),
        ],
        T0 + 1,
    )
    assert m.state is S.LENGTH_LIMIT


def test_length_finish_without_the_terminal_marker_is_interrupted() -> None:
    m = new()
    m.response_started(200, T0 + 0.2)
    m.receive_many(ANTHROPIC_MAX_TOKENS[:-1], T0 + 0.6)
    m.body_ended(T0 + 0.7)
    assert m.state is S.INTERRUPTED


def test_terminal_marker_without_any_token_completes_with_empty_text() -> None:
    m = reach(S.WAITING_FIRST_TOKEN)
    m.receive_many([TextDelta(""), Finish(FinishReason.STOP, "stop"), StreamEnd()], T0 + 1)
    assert (m.state, m.outcome.message.text) == (S.COMPLETED, "")


def test_connection_reset_mid_body_is_interrupted_and_keeps_the_error() -> None:
    m = reach(S.STREAMING)
    reset = ConnectionResetError(104, "Connection reset by peer")
    m.transport_failed(reset, T0 + 1)
    assert (m.state, m.outcome.error) == (S.INTERRUPTED, reset)
    assert "the connection broke" in m.outcome.reason


def test_http_429_ends_in_http_error_with_retry_after() -> None:
    m = new()
    error = ProviderError("rate_limit_error", "Number of request tokens has exceeded your limit")
    m.http_error(429, T0 + 0.3, error=error, retry_after=20.0)
    out = m.outcome
    assert (out.state, out.status, out.error, out.retry_after, out.retryable) == (
        S.HTTP_ERROR,
        429,
        error,
        20.0,
        True,
    )


def test_message_past_max_chars_ends_in_protocol_error_keeping_earlier_text() -> None:
    m = StreamMachine(now=T0, max_chars=1000)
    m.response_started(200, T0 + 0.1)
    m.receive(TextDelta("x" * 900), T0 + 0.2)
    m.receive(TextDelta("y" * 200), T0 + 0.3)
    out = m.outcome
    assert out.state is S.PROTOCOL_ERROR
    assert out.message.text == "x" * 900
    assert isinstance(out.error, RemoteProtocolError)
    assert out.error.kind == "message_too_large"


# --- Deadlines on an explicit clock ----------------------------------------------


def test_connect_deadline_fires_at_start_plus_connect() -> None:
    m = new(Deadlines(connect=10))
    assert not m.check_deadlines(T0 + 9.999)
    assert m.check_deadlines(T0 + 10)
    assert m.state is S.TIMED_OUT_CONNECT
    assert m.outcome.reason == "no response headers within 10 s of the start (connect deadline)"


def test_connect_deadline_stops_running_once_headers_arrive() -> None:
    m = new(Deadlines(connect=10))
    m.response_started(200, T0 + 9)
    assert not m.check_deadlines(T0 + 500)
    assert m.state is S.WAITING_FIRST_TOKEN


def test_first_token_deadline_runs_from_the_response_headers() -> None:
    m = new(Deadlines(first_token=20))
    m.response_started(200, T0 + 5)
    assert not m.check_deadlines(T0 + 24.9)
    assert m.check_deadlines(T0 + 25)
    assert m.state is S.TIMED_OUT_FIRST_TOKEN


@pytest.mark.parametrize(
    "event",
    [
        KeepAlive("ping"),
        TextDelta(""),
        StreamStarted("msg_01", "claude-sonnet-4-5"),
        Usage(input_tokens=25, output_tokens=1),
        ReasoningDelta("", signature="EqQBCgIYAhIM"),
        RawEvent("response.in_progress", {"type": "response.in_progress"}),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_without_model_output_does_not_meet_the_first_token_deadline(event: Event) -> None:
    m = new(Deadlines(first_token=20))
    m.response_started(200, T0)
    m.receive(event, T0 + 10)
    assert m.state is S.WAITING_FIRST_TOKEN
    assert m.check_deadlines(T0 + 20)
    assert m.state is S.TIMED_OUT_FIRST_TOKEN


@pytest.mark.parametrize(
    "event",
    [
        TextDelta("Hi"),
        ReasoningDelta("Let me think."),
        Refusal("I can't help with that."),
        ToolCallStart(0, "call_abc", "get_weather"),
        ToolCallDelta(0, '{"city"'),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_with_model_output_is_the_first_token(event: Event) -> None:
    m = new(Deadlines(first_token=20))
    m.response_started(200, T0)
    m.receive(event, T0 + 10)
    assert m.state is S.STREAMING
    assert m.timings().first_token == T0 + 10


def test_idle_deadline_fires_after_silence_while_streaming() -> None:
    m = new(Deadlines(idle=30))
    m.response_started(200, T0)
    m.receive(TextDelta("Paris"), T0 + 1)
    assert not m.check_deadlines(T0 + 30.9)
    assert m.check_deadlines(T0 + 31)
    assert m.state is S.TIMED_OUT_IDLE
    assert m.outcome.reason == "nothing received for 30 s (idle deadline)"


def test_keepalive_resets_the_idle_deadline() -> None:
    m = new(Deadlines(idle=30))
    m.response_started(200, T0)
    m.receive(TextDelta("Paris"), T0 + 1)
    m.receive(KeepAlive("ping"), T0 + 25)
    assert not m.check_deadlines(T0 + 54.9)
    assert m.next_deadline() == T0 + 55


def test_idle_deadline_runs_while_waiting_for_the_first_token() -> None:
    m = new(Deadlines(idle=15, first_token=60))
    m.response_started(200, T0)
    m.receive(KeepAlive("ping"), T0 + 10)
    assert m.check_deadlines(T0 + 25)
    assert m.state is S.TIMED_OUT_IDLE


@pytest.mark.parametrize("state", LIVE, ids=lambda s: s.name)
def test_total_deadline_runs_in_every_live_state(state: State) -> None:
    m = new(Deadlines(total=60))
    if state is not S.CONNECTING:
        m.response_started(200, T0 + 1)
    if state is S.STREAMING:
        m.receive(TextDelta("Paris"), T0 + 2)
    assert not m.check_deadlines(T0 + 59.9)
    assert m.check_deadlines(T0 + 60)
    assert m.state is S.TIMED_OUT_TOTAL


def test_earliest_expired_deadline_decides_the_state() -> None:
    m = new(Deadlines(idle=5, total=12))
    m.response_started(200, T0)
    m.receive(TextDelta("Paris"), T0 + 1)  # idle expires at +6, total at +12
    assert m.check_deadlines(T0 + 100)
    assert m.state is S.TIMED_OUT_IDLE


def test_on_a_tie_the_phase_deadline_wins_over_the_total() -> None:
    m = new(Deadlines(connect=30, total=30))
    m.check_deadlines(T0 + 30)
    assert m.state is S.TIMED_OUT_CONNECT


def test_next_deadline_follows_the_states() -> None:
    m = new(Deadlines(connect=10, first_token=20, idle=5, total=60))
    assert m.next_deadline() == T0 + 10  # connect (total is later)
    m.response_started(200, T0 + 2)
    assert m.next_deadline() == T0 + 7  # idle from the headers, before first_token at +22
    m.receive(KeepAlive("ping"), T0 + 6)
    assert m.next_deadline() == T0 + 11
    m.receive(TextDelta("Paris"), T0 + 8)
    assert m.next_deadline() == T0 + 13
    m.receive(TextDelta(" is"), T0 + 57)
    assert m.next_deadline() == T0 + 60  # total now comes before idle at +62
    m.receive(StreamEnd(), T0 + 58)
    assert m.next_deadline() is None


def test_next_deadline_is_none_without_deadlines() -> None:
    assert reach(S.STREAMING).next_deadline() is None


def test_inputs_do_not_time_out_by_themselves() -> None:
    # A token that arrives after the idle deadline but before the driver
    # checked is accepted: only check_deadlines ends an attempt on time.
    m = new(Deadlines(idle=5))
    m.response_started(200, T0)
    m.receive(TextDelta("late but here"), T0 + 50)
    assert m.state is S.STREAMING
    assert m.next_deadline() == T0 + 55


def test_check_deadlines_after_the_end_is_a_no_op() -> None:
    m = new(Deadlines(idle=5, total=10))
    m.cancel(T0 + 1)
    assert not m.check_deadlines(T0 + 1000)
    assert m.state is S.CANCELLED


# --- Outcomes -------------------------------------------------------------------


def reach_with_text(state: State) -> StreamMachine:
    """``state``, reached after the answer text "Paris is" arrived."""
    deadlines = {
        S.TIMED_OUT_IDLE: Deadlines(idle=5),
        S.TIMED_OUT_TOTAL: Deadlines(total=60),
    }.get(state)
    m = new(deadlines)
    m.response_started(200, T0 + 0.3)
    m.receive_many([StreamStarted("msg_1", "claude-sonnet-4-5"), TextDelta("Paris")], T0 + 0.5)
    m.receive(TextDelta(" is"), T0 + 0.6)
    ends: dict[State, Callable[[], object]] = {
        S.COMPLETED: lambda: m.receive(StreamEnd(), T0 + 1),
        S.LENGTH_LIMIT: lambda: m.receive_many(
            [Finish(FinishReason.LENGTH, "max_tokens"), StreamEnd()], T0 + 1
        ),
        S.BUDGET_EXCEEDED: lambda: m.budget_exceeded(T0 + 1),
        S.PROVIDER_ERROR: lambda: m.receive(
            ProviderError("overloaded_error", "Overloaded"), T0 + 1
        ),
        S.INTERRUPTED: lambda: m.body_ended(T0 + 1),
        S.PROTOCOL_ERROR: lambda: m.protocol_error(
            RemoteProtocolError("bad JSON", kind="invalid_json"), T0 + 1
        ),
        S.TIMED_OUT_IDLE: lambda: m.check_deadlines(T0 + 10),
        S.TIMED_OUT_TOTAL: lambda: m.check_deadlines(T0 + 60),
        S.CANCELLED: lambda: m.cancel(T0 + 1),
    }
    ends[state]()
    assert m.state is state
    return m


ENDS_AFTER_TEXT = (
    S.COMPLETED,
    S.LENGTH_LIMIT,
    S.BUDGET_EXCEEDED,
    S.PROVIDER_ERROR,
    S.INTERRUPTED,
    S.PROTOCOL_ERROR,
    S.TIMED_OUT_IDLE,
    S.TIMED_OUT_TOTAL,
    S.CANCELLED,
)


@pytest.mark.parametrize("end", ENDS_AFTER_TEXT, ids=lambda s: s.name)
def test_outcome_keeps_the_text_received_whatever_the_ending(end: State) -> None:
    out = reach_with_text(end).outcome
    assert (out.state, out.message.text, out.message.response_id) == (end, "Paris is", "msg_1")


@pytest.mark.parametrize(
    "end", [S.HTTP_ERROR, S.CONNECT_FAILED, S.TIMED_OUT_CONNECT, S.TIMED_OUT_FIRST_TOKEN]
)
def test_endings_before_any_token_give_an_empty_message(end: State) -> None:
    out = reach(end).outcome
    assert (out.state, out.message.text, out.message.complete) == (end, "", False)


def test_ending_before_any_token_keeps_the_metadata_that_came() -> None:
    m = new(Deadlines(first_token=20))
    m.response_started(200, T0)
    m.receive_many(ANTHROPIC_MAX_TOKENS[:3], T0 + 1)
    m.check_deadlines(T0 + 20)
    msg = m.outcome.message
    assert (msg.model, msg.usage) == ("claude-sonnet-4-5-20250929", Usage(25, 1))


def test_outcome_before_the_end_raises_not_terminal() -> None:
    m = reach(S.STREAMING)
    with pytest.raises(LocalProtocolError) as info:
        _ = m.outcome
    assert info.value.kind == "not_terminal"


RETRYABLE = {
    S.COMPLETED: False,
    S.LENGTH_LIMIT: False,
    S.BUDGET_EXCEEDED: False,
    S.CANCELLED: False,
    S.INTERRUPTED: True,
    S.PROTOCOL_ERROR: True,
    S.CONNECT_FAILED: True,
    S.TIMED_OUT_CONNECT: True,
    S.TIMED_OUT_FIRST_TOKEN: True,
    S.TIMED_OUT_IDLE: True,
    S.TIMED_OUT_TOTAL: True,
    S.PROVIDER_ERROR: True,  # overloaded_error
    S.HTTP_ERROR: True,  # 503
}


@pytest.mark.parametrize(("end", "retryable"), RETRYABLE.items(), ids=lambda x: str(x))
def test_retryable_flag_of_each_ending(end: State, retryable: bool) -> None:
    assert reach(end).outcome.retryable is retryable


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [
        ("overloaded_error", True),
        ("rate_limit_error", True),
        ("api_error", True),
        ("server_error", True),
        ("overloaded", True),
        ("timeout_error", True),
        ("UNAVAILABLE", True),
        ("529", True),
        ("invalid_request_error", False),
        ("authentication_error", False),
        ("permission_error", False),
        ("not_found_error", False),
        ("insufficient_quota", False),
        ("something_new", False),
    ],
)
def test_provider_error_is_retryable_when_its_type_is_transient(
    error_type: str, retryable: bool
) -> None:
    m = reach(S.STREAMING)
    m.receive(ProviderError(error_type, "The provider said no"), T0 + 1)
    assert m.outcome.retryable is retryable


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (529, True),
    ],
)
def test_http_error_is_retryable_by_status(status: int, retryable: bool) -> None:
    m = new()
    m.http_error(status, T0 + 0.2)
    assert m.outcome.retryable is retryable


@pytest.mark.parametrize(
    ("end", "resumable"),
    [
        (S.INTERRUPTED, True),
        (S.TIMED_OUT_IDLE, True),
        (S.LENGTH_LIMIT, True),
        (S.COMPLETED, False),
        (S.CANCELLED, False),
        (S.BUDGET_EXCEEDED, False),
    ],
)
def test_resumable_when_text_arrived_and_the_ending_allows_going_on(
    end: State, resumable: bool
) -> None:
    assert reach_with_text(end).outcome.resumable is resumable


def test_not_resumable_without_answer_text() -> None:
    m = reach(S.WAITING_FIRST_TOKEN)
    m.receive(ReasoningDelta("Thinking about Paris."), T0 + 1)
    m.body_ended(T0 + 2)
    assert (m.outcome.retryable, m.outcome.resumable) == (True, False)


def test_outcome_error_is_what_ended_the_attempt() -> None:
    error = ProviderError("overloaded_error", "Overloaded")
    m = reach(S.STREAMING)
    m.receive(error, T0 + 1)
    assert m.outcome.error == error
    assert m.outcome.reason == (
        "the provider reported an error mid-stream: overloaded_error: Overloaded"
    )


# --- After the end --------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [TextDelta("more"), Usage(output_tokens=3), ProviderError("api_error", "late")],
    ids=lambda e: type(e).__name__,
)
def test_content_after_the_end_is_refused(event: Event) -> None:
    m = reach(S.COMPLETED)
    with pytest.raises(LocalProtocolError) as info:
        m.receive(event, T0 + 2)
    assert info.value.kind == "illegal_transition"
    assert m.outcome.message.text == "Paris"


def test_keepalive_and_terminal_marker_after_the_end_are_absorbed() -> None:
    m = reach(S.PROVIDER_ERROR)
    m.receive_many([KeepAlive(""), StreamEnd()], T0 + 2)
    assert (m.state, m.outcome.message.complete) == (S.PROVIDER_ERROR, False)


def test_late_reports_do_not_replace_the_first_ending() -> None:
    m = reach(S.COMPLETED)
    m.protocol_error(RemoteProtocolError("garbage after [DONE]", kind="invalid_json"), T0 + 2)
    m.transport_failed(ConnectionResetError(104, "reset"), T0 + 2)
    m.cancel(T0 + 3)
    m.body_ended(T0 + 3)
    assert (m.state, m.outcome.error, m.timings().ended) == (S.COMPLETED, None, T0 + 1)


def test_receive_many_stops_after_the_event_that_ends_the_attempt() -> None:
    m = reach(S.STREAMING)
    fed = m.receive_many(
        [TextDelta(" is"), ProviderError("overloaded_error", "Overloaded"), TextDelta(" lost")],
        T0 + 1,
    )
    assert (fed, m.state, m.outcome.message.text) == (2, S.PROVIDER_ERROR, "Paris is")


# --- Misuse -------------------------------------------------------------------------


def test_time_going_backwards_is_refused_and_changes_nothing() -> None:
    m = reach(S.STREAMING)
    with pytest.raises(LocalProtocolError) as info:
        m.receive(TextDelta(" is"), T0 + 0.4)
    assert info.value.kind == "time_went_backwards"
    assert m.message().text == "Paris"


@pytest.mark.parametrize("now", [float("nan"), float("inf")])
def test_a_time_that_is_not_a_finite_number_is_refused(now: float) -> None:
    with pytest.raises(LocalProtocolError) as info:
        new().response_started(200, now)
    assert info.value.kind == "bad_time"


def test_response_started_with_an_error_status_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        new().response_started(503, T0)
    assert info.value.kind == "bad_status"
    assert "http_error()" in str(info.value)


def test_http_error_with_a_success_status_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        new().http_error(200, T0)
    assert info.value.kind == "bad_status"


def test_an_object_that_is_not_an_event_is_refused() -> None:
    m = reach(S.STREAMING)
    with pytest.raises(LocalProtocolError) as info:
        m.receive({"type": "content_block_delta"}, T0 + 1)  # type: ignore[arg-type]
    assert info.value.kind == "not_an_event"


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_a_deadline_that_is_not_a_positive_number_is_refused(seconds: float) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Deadlines(idle=seconds)
    assert info.value.kind == "bad_deadline"


def test_a_negative_token_count_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        new().set_output_tokens(-1)
    assert info.value.kind == "bad_token_count"


# --- Timings ------------------------------------------------------------------------


def test_timings_of_a_completed_attempt() -> None:
    m = new()
    m.response_started(200, T0 + 0.25)
    m.receive_many(OPENAI_ANSWER[:2], T0 + 0.3)  # metadata and the empty role chunk
    m.receive(TextDelta("The capital"), T0 + 0.5)
    m.receive(TextDelta(" of France"), T0 + 0.55)
    m.receive(TextDelta(" is"), T0 + 0.65)
    m.receive(TextDelta(" Paris."), T0 + 0.7)
    m.receive_many(OPENAI_ANSWER[-3:], T0 + 1.0)
    t = m.outcome.timings
    assert (t.started, t.response_started, t.first_token, t.ended) == (
        T0,
        T0 + 0.25,
        T0 + 0.5,
        T0 + 1.0,
    )
    assert t.time_to_first_byte == pytest.approx(0.25)
    assert t.time_to_first_token == pytest.approx(0.5)
    assert t.total == pytest.approx(1.0)
    assert (t.token_events, t.gap_count) == (4, 3)
    assert t.gap_mean == pytest.approx(0.2 / 3)
    assert t.gap_max == pytest.approx(0.1)
    assert t.gap_p50 == pytest.approx(0.05)
    assert t.gap_p99 == pytest.approx(0.1)
    # usage said 8 output tokens, over the 0.5 s from the first token to the end
    assert (t.tokens, t.tokens_source) == (8, TokenSource.USAGE)
    assert t.tokens_per_second == pytest.approx(16.0)


def test_tokens_come_from_the_driver_then_usage_then_token_events() -> None:
    m = reach(S.STREAMING)
    m.receive_many([TextDelta(" is"), ToolCallEnd(0)], T0 + 1)
    assert (m.timings().tokens, m.timings().tokens_source) == (2, TokenSource.EVENTS)
    m.receive(Usage(output_tokens=5), T0 + 1)
    assert (m.timings().tokens, m.timings().tokens_source) == (5, TokenSource.USAGE)
    m.set_output_tokens(7)
    assert (m.timings().tokens, m.timings().tokens_source) == (7, TokenSource.DRIVER)


def test_driver_token_count_reported_after_the_end_updates_the_outcome() -> None:
    m = reach(S.INTERRUPTED)
    assert m.outcome.timings.tokens_source is TokenSource.EVENTS
    m.set_output_tokens(12)
    assert (m.outcome.timings.tokens, m.outcome.timings.tokens_per_second) == (12, 24.0)


def test_live_timings_run_to_the_given_now() -> None:
    m = reach(S.STREAMING)  # first token at +0.5
    m.set_output_tokens(30)
    t = m.timings(now=T0 + 2.5)
    assert (t.ended, t.total, t.tokens_per_second) == (None, 2.5, 15.0)
    assert m.timings().total is None


def test_gap_percentiles_stay_accurate_over_a_long_stream_in_bounded_memory() -> None:
    m = reach(S.WAITING_FIRST_TOKEN)
    now = T0 + 1
    m.receive(TextDelta("a"), now)
    for i in range(1, 20_001):  # gaps of 1 ms, 2 ms, ... 20 s: p50 10 s, p99 19.8 s
        now += i / 1000
        m.receive(TextDelta("a"), now)
    t = m.timings()
    assert t.gap_count == 20_000
    assert t.gap_max == pytest.approx(20.0)
    assert t.gap_p50 == pytest.approx(10.0, rel=0.01)
    assert t.gap_p99 == pytest.approx(19.8, rel=0.01)
    assert len(m._gaps.samples) <= m._gaps.CAPACITY + 1  # white box: no unbounded list


def test_tokens_decoded_from_one_chunk_have_zero_gaps() -> None:
    m = reach(S.STREAMING)
    m.receive_many([TextDelta(" is"), TextDelta(" the"), TextDelta(" capital")], T0 + 1)
    t = m.timings()
    assert (t.gap_count, t.gap_max) == (3, pytest.approx(0.5))
    assert t.gap_p50 == 0.0


# --- Properties -----------------------------------------------------------------------

events = st.one_of(
    st.builds(TextDelta, st.text(max_size=4), st.integers(0, 1)),
    st.builds(ReasoningDelta, st.text(max_size=4), st.sampled_from(["", "sig"])),
    st.builds(Refusal, st.text(max_size=4)),
    st.builds(ToolCallStart, st.integers(0, 2), st.just("call_1"), st.just("get_weather")),
    st.builds(ToolCallDelta, st.integers(0, 2), st.sampled_from(["", '{"a', '": 1}'])),
    st.builds(ToolCallEnd, st.integers(0, 2)),
    st.builds(Finish, st.sampled_from(FinishReason), st.just("raw")),
    st.builds(Usage, output_tokens=st.integers(0, 100)),
    st.just(StreamStarted("chatcmpl-1", "gpt-4o")),
    st.just(KeepAlive("ping")),
    st.just(RawEvent("response.in_progress", {})),
    st.builds(
        ProviderError, st.sampled_from(["overloaded_error", "invalid_request_error"]), st.just("x")
    ),
    st.just(StreamEnd()),
)

text_deltas = st.builds(TextDelta, st.text(max_size=4), st.integers(0, 1))
# Weighted towards what streams are made of: content events and receive calls.
stream_events = st.one_of(text_deltas, text_deltas, text_deltas, events)
driver_calls = st.one_of(
    st.tuples(st.just("response_started"), st.sampled_from([200, 204, 500])),
    st.tuples(st.just("http_error"), st.sampled_from([200, 429, 500])),
    st.tuples(st.just("body_ended")),
    st.tuples(st.just("transport_failed")),
    st.tuples(st.just("protocol_error")),
    st.tuples(st.just("budget_exceeded")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("check_deadlines")),
    st.tuples(st.just("set_output_tokens"), st.integers(-1, 50)),
)
operations = st.tuples(
    st.one_of(
        st.tuples(st.just("receive"), stream_events),
        st.tuples(st.just("receive"), stream_events),
        st.tuples(st.just("receive_many"), st.lists(stream_events, max_size=4)),
        driver_calls,
    ),
    st.floats(-1, 20),  # time step; a step back must be refused
)
# Most attempts get their response headers first, as in life.
openings = st.sampled_from([[(("response_started", 200), 0.2)]] * 4 + [[]])

deadline_values = st.none() | st.floats(0.5, 30)


@given(
    st.builds(
        Deadlines,
        connect=deadline_values,
        first_token=deadline_values,
        idle=deadline_values,
        total=deadline_values,
    ),
    openings,
    st.lists(operations, min_size=4, max_size=30),
)
def test_any_input_sequence_keeps_one_ending_and_all_received_text(
    deadlines: Deadlines,
    opening: list[tuple[tuple[object, ...], float]],
    ops: list[tuple[tuple[object, ...], float]],
) -> None:
    ops = opening + ops
    m = StreamMachine(now=T0, deadlines=deadlines)
    now = T0
    ending: State | None = None
    text = ""  # choice-0 text of the TextDeltas the machine accepted while live
    for (name, *args), step in ops:
        live_before = m.state not in TERMINAL_STATES
        state_before = m.state
        later = now + step
        try:
            fed = _call(m, str(name), args, later)
        except LocalProtocolError:
            assert m.state is state_before  # a refused input changes nothing
            continue
        assert later >= now  # an earlier reading is always refused
        now = later
        if live_before:
            text += "".join(e.text for e in fed if type(e) is TextDelta and e.choice == 0)
        if ending is not None:
            assert m.state is ending  # never a second ending
        elif m.state in TERMINAL_STATES:
            ending = m.state
    event(f"ended in {m.state.name}")
    if ending is None:
        assert m.state not in TERMINAL_STATES
        with pytest.raises(LocalProtocolError):
            _ = m.outcome
        assert m.message().text == text
    else:
        assert m.next_deadline() is None
        assert m.outcome.state is ending
        assert m.outcome.message.text == text


def _call(m: StreamMachine, name: str, args: list[object], now: float) -> list[object]:
    """Make one driver call; returns the events it fed."""
    if name == "receive":
        m.receive(args[0], now)  # type: ignore[arg-type]
        return [args[0]]
    if name == "receive_many":
        batch: list[Event] = args[0]  # type: ignore[assignment]
        return list(batch[: m.receive_many(batch, now)])
    if name == "response_started":
        m.response_started(args[0], now)  # type: ignore[arg-type]
    elif name == "http_error":
        m.http_error(args[0], now)  # type: ignore[arg-type]
    elif name == "transport_failed":
        m.transport_failed(ConnectionResetError(104, "reset"), now)
    elif name == "protocol_error":
        m.protocol_error(RemoteProtocolError("bad JSON", kind="invalid_json"), now)
    elif name == "set_output_tokens":
        m.set_output_tokens(args[0])  # type: ignore[arg-type]
        m.check_deadlines(now)
    else:
        getattr(m, name)(now)
    return []
