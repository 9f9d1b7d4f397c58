"""Recovery: backoff and Retry-After, the retry/resume/stop decision, resume plans, stitching."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from streamcore import machine
from streamcore._errors import LocalProtocolError
from streamcore.events import Usage
from streamcore.providers import anthropic
from streamcore.recovery import (
    BACKGROUND,
    CONTINUE_INSTRUCTION,
    USER_FACING,
    AttemptKind,
    Attempts,
    ContinueWithContext,
    FailGracefully,
    Failure,
    FailureKind,
    RecoveryPolicy,
    ReplayFromSequence,
    ResumeWithContext,
    RetryFromScratch,
    RetryPolicy,
    Stitcher,
    anthropic_supports_prefill,
    decide,
    parse_retry_after,
    plan_resume,
    retry_after_from_headers,
)
from streamcore.request import ChatRequest, Message

# RFC 9110's example date, Sun, 06 Nov 1994 08:49:37 GMT, as a Unix time.
RFC_EXAMPLE = 784111777.0

# ---------------------------------------------------------------------------
# Backoff


def test_backoff_ceiling_doubles_per_attempt_until_max_delay() -> None:
    policy = RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=8.0, max_attempts=10)
    # With the draw just under 1 the delay sits at the ceiling.
    delays = [policy.delay(n, 0.999999, None) for n in range(1, 8)]
    assert [round(d, 3) for d in delays] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_full_jitter_scales_the_ceiling_by_the_draw() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    assert [policy.delay(3, rng, None) for rng in (0.0, 0.25, 0.5)] == [0.0, 1.0, 2.0]


def test_retry_after_is_honoured_above_max_delay() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert policy.delay(1, 0.3, retry_after=20.0) == 20.0


def test_short_retry_after_does_not_shorten_the_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    assert policy.delay(3, 0.75, retry_after=1.0) == 3.0


@pytest.mark.parametrize("rng_value", [1.0, -0.01, math.nan, 2.5])
def test_draw_outside_the_unit_interval_is_rejected(rng_value: float) -> None:
    with pytest.raises(LocalProtocolError) as info:
        RetryPolicy().delay(1, rng_value, None)
    assert info.value.kind == "bad_rng_value"


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(LocalProtocolError) as info:
        RetryPolicy().delay(0, 0.5, None)
    assert info.value.kind == "bad_attempt"


def test_huge_attempt_number_caps_instead_of_overflowing() -> None:
    assert RetryPolicy(max_delay=8.0).delay(100_000, 0.5, None) == 4.0


@given(
    attempt=st.integers(1, 60),
    rng_value=st.floats(0.0, 1.0, exclude_max=True),
    retry_after=st.none() | st.floats(0.0, 3600.0),
)
def test_delay_never_precedes_retry_after_and_never_exceeds_the_cap_otherwise(
    attempt: int, rng_value: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    wait = policy.delay(attempt, rng_value, retry_after)
    assert wait >= 0.0
    if retry_after is None:
        assert wait <= 8.0
    else:
        assert wait >= retry_after
        assert wait <= max(8.0, retry_after)


@pytest.mark.parametrize(
    "fields",
    [{"max_attempts": 0}, {"multiplier": 0.5}, {"base_delay": -1.0}, {"max_delay": math.inf}],
)
def test_retry_policy_rejects_impossible_settings(fields: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        RetryPolicy(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# What is retryable


RETRYABLE_STATUSES = [408, 409, 429, 500, 502, 503, 504, 529]
FINAL_STATUSES = [400, 401, 403, 404, 413, 422]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(s, True) for s in RETRYABLE_STATUSES] + [(s, False) for s in FINAL_STATUSES],
)
def test_http_statuses_retryable_per_sdk_practice(status: int, retryable: bool) -> None:
    failure = Failure(FailureKind.HTTP_ERROR, status=status)
    assert RetryPolicy().is_retryable(failure) is retryable


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [
        ("overloaded_error", True),  # Anthropic, mid-stream
        ("rate_limit_error", True),
        ("api_error", True),
        ("server_error", True),  # OpenAI
        ("RESOURCE_EXHAUSTED", True),  # Gemini status names
        ("UNAVAILABLE", True),
        ("503", True),
        ("invalid_request_error", False),
        ("authentication_error", False),
        ("permission_error", False),
        ("context_length_exceeded", False),
    ],
)
def test_provider_error_types_retryable_when_transient(error_type: str, retryable: bool) -> None:
    failure = Failure(FailureKind.PROVIDER_ERROR, error_type=error_type)
    assert RetryPolicy().is_retryable(failure) is retryable


@pytest.mark.parametrize(
    "kind",
    [
        FailureKind.CONNECT_FAILED,
        FailureKind.TIMED_OUT_CONNECT,
        FailureKind.TIMED_OUT_FIRST_TOKEN,
        FailureKind.TIMED_OUT_IDLE,
        FailureKind.INTERRUPTED,
        FailureKind.PROTOCOL_ERROR,
    ],
)
def test_transport_failures_are_retryable_by_default(kind: FailureKind) -> None:
    assert RetryPolicy().is_retryable(Failure(kind))


@pytest.mark.parametrize(
    "kind",
    [
        FailureKind.TIMED_OUT_TOTAL,
        FailureKind.BUDGET_EXCEEDED,
        FailureKind.CANCELLED,
        FailureKind.LENGTH_LIMIT,
    ],
)
def test_stops_another_attempt_cannot_fix_are_not_retryable(kind: FailureKind) -> None:
    assert not RetryPolicy().is_retryable(Failure(kind))


def test_switched_off_transport_retries_are_not_retryable() -> None:
    policy = RetryPolicy(retry_connect=False, retry_timeouts=False, retry_interrupted=False)
    kinds = [FailureKind.CONNECT_FAILED, FailureKind.TIMED_OUT_IDLE, FailureKind.INTERRUPTED]
    assert [policy.is_retryable(Failure(k)) for k in kinds] == [False, False, False]


def test_explicit_retryable_overrides_the_classification() -> None:
    failure = Failure(FailureKind.HTTP_ERROR, status=400, retryable=True)
    assert RetryPolicy().is_retryable(failure)


def test_failure_kinds_cover_every_failed_machine_state() -> None:
    ended = {s for s in machine.TERMINAL_STATES if s.value != "completed"}
    assert {FailureKind(s.value) for s in ended} == set(FailureKind)


# ---------------------------------------------------------------------------
# Retry-After


def test_retry_after_delta_seconds() -> None:
    assert parse_retry_after("120", now=RFC_EXAMPLE) == 120.0


def test_retry_after_with_a_fraction_is_accepted() -> None:
    assert parse_retry_after(" 1.5 ", now=0.0) == 1.5


def test_retry_after_imf_fixdate_counts_from_now() -> None:
    value = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_retry_after(value, now=RFC_EXAMPLE - 30) == 30.0


def test_retry_after_obsolete_rfc850_date() -> None:
    value = "Sunday, 06-Nov-94 08:49:37 GMT"
    assert parse_retry_after(value, now=RFC_EXAMPLE - 5) == 5.0


def test_retry_after_obsolete_asctime_date() -> None:
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", now=RFC_EXAMPLE - 2) == 2.0


def test_retry_after_date_in_the_past_means_retry_now() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=RFC_EXAMPLE + 600) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "",
        "soon",
        "-5",
        "1e3",
        "inf",
        "NaN",
        "9" * 100,
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 25:49:37 GMT",  # no such hour
        "Sun, 06 Nov 1994 08:49:37 PST",  # HTTP dates are GMT
    ],
)
def test_malformed_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after(value, now=RFC_EXAMPLE) is None


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = [
        ("retry-after", "2"),
        ("x-ratelimit-remaining-requests", "0"),
        ("retry-after-ms", "750"),
    ]
    assert retry_after_from_headers(headers, now=0.0) == 0.75


def test_retry_after_header_names_are_case_insensitive_and_may_be_bytes() -> None:
    headers = [(b"Content-Type", b"application/json"), (b"Retry-After", b"17")]
    assert retry_after_from_headers(headers, now=0.0) == 17.0


def test_malformed_retry_after_ms_falls_back_to_retry_after() -> None:
    headers = [("retry-after-ms", "soon"), ("retry-after", "4")]
    assert retry_after_from_headers(headers, now=0.0) == 4.0


def test_no_retry_after_header_gives_none() -> None:
    assert retry_after_from_headers([("content-type", "text/event-stream")], now=0.0) is None


# ---------------------------------------------------------------------------
# Deciding


def test_overloaded_before_any_text_retries_from_scratch_after_the_server_wait() -> None:
    failure = Failure(FailureKind.HTTP_ERROR, status=529, retry_after=2.0)
    assert decide(USER_FACING, failure, attempt=1, rng_value=0.5) == RetryFromScratch(
        2, 2.0, "HTTP 529"
    )


def test_drop_mid_answer_is_resumed_for_a_user() -> None:
    failure = Failure(FailureKind.INTERRUPTED, text_received=True)
    plan = decide(USER_FACING, failure, attempt=1, rng_value=0.0)
    assert plan == ResumeWithContext(2, 0.0, "the connection dropped mid-answer")


def test_drop_mid_answer_is_restarted_in_the_background() -> None:
    failure = Failure(FailureKind.TIMED_OUT_IDLE, text_received=True)
    plan = decide(BACKGROUND, failure, attempt=2, rng_value=0.5)
    assert plan == RetryFromScratch(3, 1.0, "the stream went silent")


def test_drop_mid_answer_stops_when_the_policy_neither_resumes_nor_restarts() -> None:
    policy = RecoveryPolicy(resume=False)
    failure = Failure(FailureKind.INTERRUPTED, text_received=True, reason="connection reset")
    plan = decide(policy, failure, attempt=1, rng_value=0.5)
    assert plan == FailGracefully(
        "connection reset", "[answer interrupted: connection reset]", partial=True
    )


def test_non_retryable_error_stops_with_the_reason_in_the_marker() -> None:
    failure = Failure(FailureKind.PROVIDER_ERROR, error_type="invalid_request_error")
    plan = decide(USER_FACING, failure, attempt=1, rng_value=0.5)
    assert isinstance(plan, FailGracefully)
    assert plan.marker == "[answer interrupted: provider error invalid_request_error]"
    assert not plan.partial


def test_exhausted_attempts_stop_and_say_how_many() -> None:
    failure = Failure(FailureKind.HTTP_ERROR, status=503)
    plan = decide(BACKGROUND, failure, attempt=6, rng_value=0.5)
    assert isinstance(plan, FailGracefully)
    assert plan.reason == "HTTP 503; gave up after 6 attempts"


def test_retry_after_beyond_the_policy_limit_stops_instead_of_waiting() -> None:
    failure = Failure(FailureKind.HTTP_ERROR, status=429, retry_after=90.0)
    plan = decide(USER_FACING, failure, attempt=1, rng_value=0.5)
    assert isinstance(plan, FailGracefully)
    assert "asked to wait 90 s (more than 10 s)" in plan.reason


@pytest.mark.parametrize("kind", [FailureKind.BUDGET_EXCEEDED, FailureKind.CANCELLED])
def test_deliberate_stops_deliver_the_partial_answer(kind: FailureKind) -> None:
    failure = Failure(kind, text_received=True, retryable=True)
    plan = decide(USER_FACING, failure, attempt=1, rng_value=0.5)
    assert isinstance(plan, FailGracefully)
    assert plan.partial


def test_length_limit_is_resumed_only_when_the_policy_asks() -> None:
    failure = Failure(FailureKind.LENGTH_LIMIT, text_received=True)
    assert isinstance(decide(USER_FACING, failure, attempt=1, rng_value=0.5), FailGracefully)
    eager = RecoveryPolicy(continue_after_length=True, resume=False)
    assert isinstance(decide(eager, failure, attempt=1, rng_value=0.5), ResumeWithContext)


def test_presets_trade_latency_for_completeness_as_documented() -> None:
    assert USER_FACING.resume and not BACKGROUND.resume
    assert USER_FACING.retry.before_first_token_only
    assert not BACKGROUND.retry.before_first_token_only
    assert BACKGROUND.retry.max_attempts > USER_FACING.retry.max_attempts
    assert BACKGROUND.retry.max_retry_after > USER_FACING.retry.max_retry_after
    assert BACKGROUND.idle_timeout is not None and USER_FACING.idle_timeout is not None
    assert BACKGROUND.idle_timeout < USER_FACING.idle_timeout
    assert BACKGROUND.total_timeout is not None and USER_FACING.total_timeout is None


def test_recovery_policy_rejects_a_zero_timeout() -> None:
    with pytest.raises(LocalProtocolError) as info:
        RecoveryPolicy(idle_timeout=0.0)
    assert info.value.kind == "bad_seconds"


# ---------------------------------------------------------------------------
# Resume plans

ASK = Message("user", "List the planets of the solar system, one line each.")
PARTIAL = "1. Mercury\n2. Venus\n3. Earth\n"


def _request(model: str, *messages: Message, **fields: object) -> ChatRequest:
    return ChatRequest(model, (ASK, *messages), **fields)  # type: ignore[arg-type]


def test_anthropic_resume_prefills_the_partial_answer_minus_trailing_whitespace() -> None:
    plan = plan_resume(_request("claude-sonnet-4-5"), PARTIAL, "anthropic")
    assert isinstance(plan, ContinueWithContext)
    assert plan.prefill
    assert plan.request.messages == (ASK, Message("assistant", PARTIAL.rstrip()))
    assert (plan.partial_text, plan.stripped) == (PARTIAL, "\n")


def test_anthropic_resume_request_goes_out_as_a_native_prefill() -> None:
    plan = plan_resume(_request("claude-sonnet-4-5", max_tokens=1024), PARTIAL, "anthropic")
    assert isinstance(plan, ContinueWithContext)
    body = json.loads(anthropic.build_request(plan.request, api_key="sk-ant-test").body)
    assert body["messages"][-1] == {"role": "assistant", "content": PARTIAL.rstrip()}


def test_anthropic_resume_continues_the_callers_own_prefill() -> None:
    request = _request("claude-3-5-haiku-latest", Message("assistant", "Here they are:\n"))
    plan = plan_resume(request, "\n1. Mercury\n2. Venus", "anthropic")
    assert isinstance(plan, ContinueWithContext)
    assert plan.request.messages[-1] == Message("assistant", "Here they are:\n1. Mercury\n2. Venus")
    assert len(plan.request.messages) == 2


@pytest.mark.parametrize("model", ["claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7"])
def test_anthropic_models_that_reject_prefill_get_the_continue_instruction(model: str) -> None:
    plan = plan_resume(_request(model), PARTIAL, "anthropic")
    assert isinstance(plan, ContinueWithContext)
    assert not plan.prefill
    assert plan.request.messages[-2:] == (
        Message("assistant", PARTIAL),
        Message("user", CONTINUE_INSTRUCTION),
    )


def test_anthropic_with_extended_thinking_gets_the_continue_instruction() -> None:
    request = _request(
        "claude-sonnet-4-5", extra={"thinking": {"type": "enabled", "budget_tokens": 2048}}
    )
    plan = plan_resume(request, PARTIAL, "anthropic")
    assert isinstance(plan, ContinueWithContext)
    assert not plan.prefill


@pytest.mark.parametrize(
    ("model", "supported"),
    [
        ("claude-3-5-sonnet-20241022", True),
        ("claude-3-7-sonnet-latest", True),
        ("claude-sonnet-4-20250514", True),
        ("claude-opus-4-1", True),
        ("claude-haiku-4-5", True),
        ("claude-sonnet-4-6", False),
        ("claude-opus-4-7", False),
        ("claude-opus-5", False),
        ("claude-2.1", True),
    ],
)
def test_which_anthropic_models_accept_prefill(model: str, supported: bool) -> None:
    assert anthropic_supports_prefill(model) is supported


@pytest.mark.parametrize(
    ("dialect", "model"),
    [
        ("openai", "gpt-4o"),
        ("compatible", "meta-llama/Llama-3.3-70B-Instruct"),
        ("ollama", "llama3.2"),
        ("gemini", "gemini-2.5-flash"),
        ("responses", "gpt-5"),
    ],
)
def test_other_dialects_resume_with_the_partial_answer_and_a_continue_turn(
    dialect: str, model: str
) -> None:
    plan = plan_resume(_request(model), PARTIAL, dialect)
    assert isinstance(plan, ContinueWithContext)
    assert not plan.prefill and plan.stripped == ""
    assert plan.request.messages == (
        ASK,
        Message("assistant", PARTIAL),
        Message("user", CONTINUE_INSTRUCTION),
    )


def test_forced_prefill_on_gemini_sends_a_trailing_model_turn_unchanged() -> None:
    plan = plan_resume(_request("gemini-2.5-flash"), PARTIAL, "gemini", prefill=True)
    assert isinstance(plan, ContinueWithContext)
    assert plan.request.messages[-1] == Message("assistant", PARTIAL)
    assert plan.stripped == ""


def test_responses_stream_with_a_sequence_number_is_replayed() -> None:
    plan = plan_resume(
        _request("gpt-5", extra={"background": True}),
        PARTIAL,
        "responses",
        response_id="resp_68b9d2a1c4e08190",
        last_sequence_number=57,
    )
    assert plan == ReplayFromSequence("resp_68b9d2a1c4e08190", 57)
    assert plan.target == "/v1/responses/resp_68b9d2a1c4e08190?stream=true&starting_after=57"


def test_prefill_on_openai_chat_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        plan_resume(_request("gpt-4o"), PARTIAL, "openai", prefill=True)
    assert info.value.kind == "prefill_unsupported"


def test_unknown_dialect_is_refused_with_the_known_names() -> None:
    with pytest.raises(LocalProtocolError) as info:
        plan_resume(_request("gpt-4o"), PARTIAL, "bedrock")
    assert info.value.kind == "unknown_dialect"
    assert "anthropic" in str(info.value)


def test_resume_shrinks_max_tokens_by_what_the_partial_answer_used() -> None:
    plan = plan_resume(
        _request("gpt-4o", max_tokens=1000), PARTIAL, "openai", output_tokens_used=12
    )
    assert isinstance(plan, ContinueWithContext)
    assert plan.request.max_tokens == 988


def test_resume_with_no_tokens_left_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as info:
        plan_resume(_request("gpt-4o", max_tokens=12), PARTIAL, "openai", output_tokens_used=12)
    assert info.value.kind == "no_tokens_left"


def test_plan_stitcher_joins_the_anthropic_seam() -> None:
    plan = plan_resume(_request("claude-sonnet-4-5"), "The answer is ", "anthropic")
    assert isinstance(plan, ContinueWithContext)
    stitch = plan.stitcher()
    assert stitch.feed(" 42") + stitch.feed(", because 6 × 7 = 42.") + stitch.end() == (
        "42, because 6 × 7 = 42."
    )


# ---------------------------------------------------------------------------
# Stitching


def _stitch(partial: str, chunks: list[str], **options: object) -> tuple[str, Stitcher]:
    stitcher = Stitcher(partial, **options)  # type: ignore[arg-type]
    out = "".join(stitcher.feed(chunk) for chunk in chunks) + stitcher.end()
    return partial + out, stitcher


def _chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(text)]:
        pieces.append(text[last:point])
        last = point
    return pieces


# Realistic answer text: prose, numbers, markdown, code, CJK, emoji.
SENTENCES = [
    "The model streams tokens over SSE and each delta arrives late.",
    "Paris is the capital of France; it's on the Seine, don't forget.",
    "Pi is 3.14 and 42 is the answer (see above) as of 2025-01-31.",
    "def main(): return x + 1",
    "**bold** `code` | --- |",
    "北京 是 中国的首都 😀",
    "naïve café résumé",
]
WORDS = [word for sentence in SENTENCES for word in sentence.split()]
SEPARATORS = [" ", " ", " ", " ", "\n", "\n\n", ", ", ". ", "  ", "\t", "\n    "]


@st.composite
def answers(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=40))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)))
    return "".join(w + s for w, s in zip(words, seps, strict=True))


def _word_starts(text: str) -> list[int]:
    """Positions where a repeat may start under the documented rule."""
    out = []
    for i in range(len(text)):
        boundary = i == 0 or not (text[i - 1].isalnum() and text[i].isalnum())
        if boundary and any(c.isalnum() for c in text[i:]):
            out.append(i)
    return out


def _longer_repeat_exists(logical: str, continuation: str, k: int, max_overlap: int) -> bool:
    # Spec, not implementation: any longer suffix the continuation also starts
    # with makes the case ambiguous (the stitcher takes the longest).
    return any(
        continuation.startswith(logical[-j:])
        for j in range(k + 1, min(len(logical), max_overlap) + 1)
    )


@given(text=answers(), data=st.data())
def test_stitching_any_repeat_of_the_partial_tail_restores_the_text(
    text: str, data: st.DataObject
) -> None:
    p = data.draw(st.integers(1, len(text)), label="split")
    partial = text[:p]
    starts = [i for i in _word_starts(partial) if 8 <= p - i <= 200]
    assume(starts)
    k = p - data.draw(st.sampled_from(starts), label="repeat start")
    continuation = text[p - k :]
    assume(not _longer_repeat_exists(partial, continuation, k, 200))
    cuts = data.draw(st.lists(st.integers(0, len(continuation)), max_size=8), label="cuts")
    stitched, stitcher = _stitch(partial, _chunked(continuation, cuts))
    assert stitched == text
    assert stitcher.seam is not None and stitcher.seam.overlap == partial[-k:]


@given(text=answers(), data=st.data())
def test_continuation_that_does_not_repeat_passes_unchanged(text: str, data: st.DataObject) -> None:
    p = data.draw(st.integers(0, len(text)), label="split")
    partial, continuation = text[:p], text[p:]
    core = partial.rstrip()
    # Exclude true ambiguity: the text itself repeats 8+ characters across the split.
    assume(not _longer_repeat_exists(partial, continuation, 7, 200))
    assume(not _longer_repeat_exists(core, continuation.lstrip(), 7, 200))
    cuts = data.draw(st.lists(st.integers(0, len(continuation)), max_size=8), label="cuts")
    stitched, stitcher = _stitch(partial, _chunked(continuation, cuts))
    assert stitched == text
    assert stitcher.seam is not None and stitcher.seam.removed == 0


@given(text=answers(), data=st.data())
def test_prefill_seam_restores_the_text_for_any_split_and_repeat(
    text: str, data: st.DataObject
) -> None:
    # Anthropic: the prefill lost its trailing whitespace, the model continues
    # from the stripped text, maybe repeating its last words first.
    p = data.draw(st.integers(1, len(text)), label="split")
    partial = text[:p]
    core = partial.rstrip()
    assume(core)
    stripped = partial[len(core) :]
    starts = [i for i in _word_starts(core) if 8 <= len(core) - i <= 200]
    k = len(core) - data.draw(st.sampled_from(starts), label="start") if starts else 0
    if data.draw(st.booleans(), label="no repeat") or not starts:
        k = 0
    continuation = text[len(core) - k :]
    assume(not _longer_repeat_exists(core, continuation, max(k, 7), 200))
    assume(k or not _longer_repeat_exists(core, continuation.lstrip(), 7, 200))
    cuts = data.draw(st.lists(st.integers(0, len(continuation)), max_size=8), label="cuts")
    stitched, _ = _stitch(partial, _chunked(continuation, cuts), stripped=stripped)
    assert stitched == text


def test_repeat_shorter_than_min_overlap_is_kept() -> None:
    stitched, stitcher = _stitch("The quick brown fox", [" fox jumps."])
    assert stitched == "The quick brown fox fox jumps."
    assert stitcher.seam is not None and stitcher.seam.removed == 0


def test_repeat_of_exactly_min_overlap_is_removed() -> None:
    stitched, stitcher = _stitch("It jumped over the lazy", ["the lazy dog."])
    assert stitched == "It jumped over the lazy dog."
    assert stitcher.seam is not None and stitcher.seam.overlap == "the lazy"


def test_one_character_under_min_overlap_is_kept() -> None:
    stitched, _ = _stitch("It jumped over the lazy", ["the lazy dog."], min_overlap=9)
    assert stitched == "It jumped over the lazythe lazy dog."


def test_repeat_starting_inside_a_word_is_kept() -> None:
    stitched, _ = _stitch("The results were extraordinarily", ["ordinarily good."])
    assert stitched == "The results were extraordinarilyordinarily good."


def test_repeat_without_letters_or_digits_is_kept() -> None:
    stitched, _ = _stitch("| name | size |\n|------|------|", ["|------|------|\n| a.txt | 3 |"])
    assert stitched == "| name | size |\n|------|------||------|------|\n| a.txt | 3 |"


def test_repeat_after_a_changed_leading_whitespace_is_removed() -> None:
    stitched, stitcher = _stitch("Paris is the capital of France", ["\n\nof France, and"])
    assert stitched == "Paris is the capital of France, and"
    assert stitcher.seam is not None and stitcher.seam.removed == len("\n\nof France")


def test_whitespace_already_shown_is_not_repeated_after_a_loose_repeat() -> None:
    stitched, _ = _stitch("Paris is the capital of France.\n", ["of France. It lies on the Seine."])
    assert stitched == "Paris is the capital of France.\nIt lies on the Seine."


def test_longest_matching_repeat_is_removed() -> None:
    stitched, stitcher = _stitch("We sang: la la la la la la", ["la la la la la la la!"])
    assert stitched == "We sang: la la la la la la la!"
    assert stitcher.seam is not None and stitcher.seam.overlap == "la la la la la la"


def test_stripped_prefill_whitespace_is_not_shown_twice() -> None:
    stitched, stitcher = _stitch("Step 1: plan.\n\n", ["\n", "\nStep 2: build."], stripped="\n\n")
    assert stitched == "Step 1: plan.\n\nStep 2: build."
    assert stitcher.seam is not None and stitcher.seam.removed == 2


def test_held_back_text_never_exceeds_max_overlap() -> None:
    partial = "word " * 100
    stitcher = Stitcher(partial, max_overlap=50)
    held = []
    for char in "word " * 30 + "done":
        stitcher.feed(char)
        held.append(stitcher.held)
    stitcher.end()
    assert max(held) <= 50
    assert stitcher.seam is not None and stitcher.seam.removed > 0


def test_text_passes_straight_through_once_the_seam_is_decided() -> None:
    stitcher = Stitcher("The capital of France is")
    assert stitcher.feed(" Paris, on the Seine.") == " Paris, on the Seine."
    delta = " It has 2.1 million inhabitants."
    assert stitcher.feed(delta) is delta


def test_empty_continuation_adds_nothing() -> None:
    stitched, stitcher = _stitch("The capital of France is", [])
    assert stitched == "The capital of France is"
    assert stitcher.seam is not None


def test_feed_after_end_is_refused() -> None:
    stitcher = Stitcher("abc")
    stitcher.end()
    with pytest.raises(LocalProtocolError) as info:
        stitcher.feed("more")
    assert info.value.kind == "feed_after_end"
    with pytest.raises(LocalProtocolError):
        stitcher.end()


def test_stripped_must_be_the_partial_texts_trailing_whitespace() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Stitcher("The answer is", stripped=" ")
    assert info.value.kind == "bad_stripped"


# ---------------------------------------------------------------------------
# The attempts ledger


def test_ledger_adds_reported_usage_across_attempts() -> None:
    ledger = Attempts()
    ledger.record(
        AttemptKind.INITIAL, "interrupted", usage=Usage(input_tokens=812, output_tokens=9)
    )
    ledger.record(
        AttemptKind.RESUME,
        "completed",
        usage=Usage(input_tokens=1034, output_tokens=240, cached_tokens=768),
    )
    assert ledger.total_usage() == Usage(
        input_tokens=1846, output_tokens=249, cached_tokens=768, reasoning_tokens=None
    )


def test_ledger_counts_estimated_tokens_of_attempts_without_usage() -> None:
    ledger = Attempts()
    ledger.record(AttemptKind.INITIAL, "interrupted", estimated_output_tokens=153)
    ledger.record(AttemptKind.RETRY, "timed_out_idle")
    ledger.record(AttemptKind.RETRY, "completed", usage=Usage(output_tokens=301))
    assert ledger.output_tokens() == 454
    assert ledger.total_usage().output_tokens == 301


def test_ledger_numbers_attempts_and_refuses_an_unbounded_loop() -> None:
    ledger = Attempts(max_records=2)
    first = ledger.record(AttemptKind.INITIAL, "http_error")
    second = ledger.record(AttemptKind.RETRY, "completed", text_chars=420)
    assert (first.number, second.number, len(ledger)) == (1, 2, 2)
    with pytest.raises(LocalProtocolError) as info:
        ledger.record(AttemptKind.RETRY, "completed")
    assert info.value.kind == "too_many_attempts"


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_failure_kind_describes_itself_in_words(kind: FailureKind) -> None:
    assert " " in Failure(kind).describe() or kind is FailureKind.CANCELLED
