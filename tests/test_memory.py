"""Conversation memory: the history's rules, the window that fits a model, summaries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore import LocalProtocolError
from streamcore.accumulate import Accumulator, FinalMessage
from streamcore.adapters.encodings import load_encoding
from streamcore.events import Usage
from streamcore.memory import (
    DEFAULT_CONTEXT_WINDOW,
    MESSAGE_OVERHEAD_TOKENS,
    SUMMARY_HEADING,
    Conversation,
    State,
    Turn,
    Window,
    context_window,
    prompt_budget,
)
from streamcore.providers import anthropic
from streamcore.request import Message, Tool, ToolCall

CL100K, _ = load_encoding("gpt-4")
count = CL100K.count
OV = MESSAGE_OVERHEAD_TOKENS
TRANSCRIPTS = Path(__file__).parent / "transcripts" / "anthropic"

WEATHER = Tool(
    "get_weather",
    "Current weather for a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
)


def stream(name: str, cut: int | None = None) -> FinalMessage:
    """Decode a recorded Anthropic body (cut after ``cut`` bytes: a dropped connection)."""
    data = (TRANSCRIPTS / f"{name}.txt").read_bytes()[:cut]
    decoder = anthropic.AnthropicDecoder()
    acc = Accumulator()
    acc.add_many(decoder.feed(data))
    acc.add_many(decoder.end())
    return acc.message()


def message_cost(message: Message) -> int:
    """What a message costs, recounted from scratch (the module's documented accounting)."""
    cost = OV + count(message.content)
    for call in message.tool_calls:
        cost += OV + count(call.id) + count(call.name) + count(call.arguments)
    if message.tool_call_id:
        cost += count(message.tool_call_id)
    return cost


def window_cost(chat: Conversation, window: Window) -> int:
    cost = OV + count(chat.system) if chat.system else 0
    if window.summary_kept:
        assert chat.summary is not None
        cost += count(f"{SUMMARY_HEADING}\n{chat.summary.text}") + (0 if chat.system else OV)
    return cost + sum(message_cost(m) for m in window.messages)


def lowest_start(chat: Conversation) -> int:
    summary = chat.summary
    return summary.covering if summary is not None and summary.covering < len(chat) else 0


def cut_points(chat: Conversation, start_with_user: bool) -> list[int]:
    lo = lowest_start(chat)
    turns = chat.turns
    return [lo] + [
        i
        for i in range(lo + 1, len(turns))
        if (turns[i].role == "user" if start_with_user else turns[i].role != "tool")
    ]


def fixed_cost(chat: Conversation) -> int:
    return OV + count(chat.system) if chat.system else 0


def suffix_cost(chat: Conversation, start: int) -> int:
    return sum(message_cost(turn.sent_message()) for turn in chat.turns[start:])


# -- realistic random conversations --------------------------------------

PHRASES = (
    "the weather in Paris tomorrow is sunny with a high of 24 °C and light wind",
    "could you compare it with Lyon Marseille Zürich 東京 forecast rain umbrella",
    "def parse(line): return json.loads(line) # 🙂 flight AF1234 departs 07:45",
)
WORDS = [word for phrase in PHRASES for word in phrase.split()]
CITIES = ["Paris", "Lyon", "Marseille", "Zürich", "東京", "São Paulo"]
TOOL_NAMES = ["get_weather", "search_flights", "convert_currency"]

# A text is a run of up to 30 words of the phrases, from one draw (drawing is
# what a property test here spends its time on).
texts = st.integers(0, len(WORDS) * 31 - 1).map(
    lambda n: " ".join((WORDS * 2)[n % len(WORDS) : n % len(WORDS) + n // len(WORDS)])
)


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    chat = Conversation(CL100K, system=draw(st.none() | texts))
    calls_made = 0
    for _ in range(draw(st.integers(1, 10))):
        chat.add_user(draw(texts))
        for _ in range(draw(st.integers(0, 2))):
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                city = CITIES[calls_made % len(CITIES)]
                arguments = json.dumps({"city": city}, ensure_ascii=False)
                name = TOOL_NAMES[calls_made % len(TOOL_NAMES)]
                calls.append(ToolCall(f"call_{calls_made:03}", name, arguments))
                calls_made += 1
            chat.add_reply(Message("assistant", draw(texts), tuple(calls)))
            for call in draw(st.permutations(calls)):
                result = {"temp_c": len(call.arguments) % 30, "sky": "sunny"}
                chat.add_tool_result(call.id, json.dumps(result))
        ending = draw(st.sampled_from(["reply", "partial", "cut_tool_call", "none"]))
        if ending == "reply":
            chat.add_reply(Message("assistant", draw(texts)), usage=Usage(612, 48))
        elif ending == "partial":
            chat.add_partial(Message("assistant", draw(texts)), reason="connection dropped")
        elif ending == "cut_tool_call":
            cut = ToolCall(f"call_{calls_made:03}", "get_weather", '{"city": "Pa')
            calls_made += 1
            chat.add_partial(Message("assistant", draw(texts), (cut,)), reason="idle timeout")
    if draw(st.booleans()):
        starts = [i for i, turn in enumerate(chat.turns) if i > 0 and turn.role != "tool"]
        if starts:
            chat.set_summary(draw(texts), covering=draw(st.sampled_from(starts)))
    return chat


@st.composite
def windows(draw: st.DrawFn) -> tuple[Conversation, int, bool, Window | None]:
    """A conversation, a budget, the cut rule, and its window (None: context_too_small)."""
    chat = draw(conversations())
    full = fixed_cost(chat) + suffix_cost(chat, 0) + 60
    budget = draw(st.integers(0, full))
    start_with_user = draw(st.booleans())
    try:
        window = chat.window(budget, start_with_user=start_with_user)
    except LocalProtocolError as exc:
        assert exc.kind == "context_too_small"
        return chat, budget, start_with_user, None
    return chat, budget, start_with_user, window


@given(windows())
def test_window_is_never_over_budget(case: tuple[Conversation, int, bool, Window | None]) -> None:
    chat, budget, _, window = case
    if window is not None:
        assert window.tokens == window_cost(chat, window)
        assert window.tokens <= budget


@given(windows())
def test_system_prompt_is_always_kept(case: tuple[Conversation, int, bool, Window | None]) -> None:
    chat, _, _, window = case
    if window is not None and chat.system:
        assert window.system is not None
        assert window.system.startswith(chat.system)


@given(windows())
def test_window_is_the_history_suffix_from_a_cut_point(
    case: tuple[Conversation, int, bool, Window | None],
) -> None:
    chat, _, start_with_user, window = case
    if window is not None:
        assert window.start in cut_points(chat, start_with_user)
        assert window.end == len(chat)
        assert window.messages == tuple(t.sent_message() for t in chat.turns[window.start :])
        assert window.dropped == chat.turns[lowest_start(chat) : window.start]


@given(windows())
def test_tool_calls_and_their_results_stay_together(
    case: tuple[Conversation, int, bool, Window | None],
) -> None:
    _, _, _, window = case
    if window is None:
        return
    open_calls: set[str] = set()
    for message in window.messages:
        if message.role == "tool":
            assert message.tool_call_id in open_calls
            open_calls.discard(message.tool_call_id)
        else:
            open_calls = {call.id for call in message.tool_calls}
    assert all(m.role != "tool" for m in window.messages[:1])


@given(windows())
def test_newest_turn_is_sent_unless_it_cannot_fit(
    case: tuple[Conversation, int, bool, Window | None],
) -> None:
    chat, budget, start_with_user, window = case
    newest_cut = cut_points(chat, start_with_user)[-1]
    newest_fits = fixed_cost(chat) + suffix_cost(chat, newest_cut) <= budget
    assert (window is not None) == newest_fits
    if window is not None:
        assert window.messages[-1] == chat.turns[-1].sent_message()


@given(windows())
def test_window_is_maximal(case: tuple[Conversation, int, bool, Window | None]) -> None:
    chat, budget, start_with_user, window = case
    if window is None:
        return
    older = [cut for cut in cut_points(chat, start_with_user) if cut < window.start]
    if older:
        assert fixed_cost(chat) + suffix_cost(chat, older[-1]) > budget
    elif chat.summary is not None and lowest_start(chat) > 0 and not window.summary_kept:
        # The summary is the oldest unit: left out only when it does not fit.
        summary_cost = count(f"{SUMMARY_HEADING}\n{chat.summary.text}")
        assert window.tokens + summary_cost + (0 if chat.system else OV) > budget


@given(windows())
def test_window_cut_starts_at_a_user_turn(
    case: tuple[Conversation, int, bool, Window | None],
) -> None:
    chat, _, start_with_user, window = case
    if window is not None and start_with_user and window.start > lowest_start(chat):
        assert chat.turns[window.start].role == "user"


@given(conversations(), st.integers(100, 4_000))
def test_summarizing_the_dropped_turns_never_resends_them(chat: Conversation, budget: int) -> None:
    try:
        window = chat.window(budget)
    except LocalProtocolError:
        return
    if window.dropped and window.start < len(chat):
        chat.set_summary(
            "Ada planned a Paris trip; it will be sunny, 24 °C.", covering=window.start
        )
        after = chat.window(budget)
        assert after.start >= window.start
        assert after.tokens <= budget


# -- the history's rules --------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def weather_calls() -> tuple[ToolCall, ...]:
    return (
        ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_01PiM2XVUczKGDrAqzRWxXbD", "get_weather", '{"city": "Lyon"}'),
    )


def test_turns_are_sent_in_the_order_they_were_added() -> None:
    chat = Conversation(CL100K, system="You are a concise travel assistant.")
    chat.add_user("What's the weather in Paris and Lyon?")
    chat.add_reply(Message("assistant", "I'll check both cities.", weather_calls()))
    chat.add_tool_result("toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"temp_c": 24, "sky": "sunny"}')
    chat.add_tool_result("toolu_01PiM2XVUczKGDrAqzRWxXbD", '{"temp_c": 21, "sky": "cloudy"}')
    request = chat.to_request("claude-sonnet-4-5", max_tokens=1024, tools=[WEATHER])
    assert [m.role for m in request.messages] == ["user", "assistant", "tool", "tool"]
    assert request.system == "You are a concise travel assistant."
    assert request.tools == (WEATHER,) and request.max_tokens == 1024


def test_complete_tool_call_reply_from_a_real_stream_round_trips_to_anthropic() -> None:
    final = stream("tool_use_parallel")
    chat = Conversation(CL100K)
    chat.add_user("What's the weather in Paris and Lyon, in celsius?")
    chat.add_reply(final.as_message(), usage=final.usage)
    assert chat.state is State.CALLED_TOOLS
    for call in chat.pending_tool_calls:
        chat.add_tool_result(call.id, '{"temp_c": 22}')
    body = json.loads(anthropic.build_request(chat.to_request("claude-sonnet-4-5")).body)
    assert [block["type"] for block in body["messages"][2]["content"]] == [
        "tool_result",
        "tool_result",
    ]


def test_interrupted_reply_is_kept_with_its_reason() -> None:
    final = stream("dropped")
    chat = Conversation(CL100K)
    chat.add_user("State Asimov's three laws of robotics.")
    turn = chat.add_partial(final.as_message(), reason="connection dropped", usage=final.usage)
    assert (turn.interrupted, turn.reason) == (True, "connection dropped")
    assert turn.message.content.startswith("The three laws are: first,")
    assert chat.state is State.INTERRUPTED


def test_interrupted_reply_is_sent_without_its_cut_tool_calls() -> None:
    data = (TRANSCRIPTS / "tool_use_parallel.txt").read_bytes()
    final = stream("tool_use_parallel", cut=data.index(b'ris\\", \\"unit'))
    assert final.tool_calls and final.tool_calls[0].parsed is None  # arguments cut off
    chat = Conversation(CL100K)
    chat.add_user("What's the weather in Paris and Lyon, in celsius?")
    chat.add_partial(final.as_message(), reason="connection dropped")
    chat.add_user("Never mind, just Paris.")
    request = chat.to_request("claude-sonnet-4-5")
    assert request.messages[1] == Message("assistant", "I'll check the weather in both cities.")
    anthropic.build_request(request)  # cut arguments would raise here


def test_continue_extends_the_interrupted_reply_from_the_prefill_sent() -> None:
    chat = Conversation(CL100K)
    chat.add_user("State Asimov's three laws of robotics.")
    chat.add_partial(stream("dropped").as_message(), reason="connection dropped")
    request = chat.to_request("claude-sonnet-4-5")
    prefill = anthropic.sent_prefill(request)
    assert prefill is not None and request.messages[-1].role == "assistant"
    turn = chat.continue_reply(
        Message("assistant", "ing or allow one to come to harm."), prefill=prefill
    )
    assert turn.message.content == prefill + "ing or allow one to come to harm."
    assert not turn.interrupted and chat.state is State.REPLIED
    assert len(chat) == 2


def test_continue_can_be_interrupted_again() -> None:
    chat = Conversation(words)
    chat.add_user("Name three French cheeses.")
    chat.add_partial(Message("assistant", "Brie, "), reason="idle timeout")
    chat.continue_reply(Message("assistant", "Comté"), interrupted=True, reason="idle timeout")
    assert chat.turns[-1].message.content == "Brie, Comté"
    assert chat.state is State.INTERRUPTED


def test_continue_refuses_a_prefill_that_is_not_the_reply_start() -> None:
    chat = Conversation(words)
    chat.add_user("Name three French cheeses.")
    chat.add_partial(Message("assistant", "Brie, Comté"), reason="idle timeout")
    with pytest.raises(LocalProtocolError) as err:
        chat.continue_reply(Message("assistant", " and Roquefort"), prefill="Camembert")
    assert err.value.kind == "prefill_mismatch"
    assert chat.turns[-1].message.content == "Brie, Comté"


def test_continue_needs_an_interrupted_reply() -> None:
    chat = Conversation(words)
    chat.add_user("Name three French cheeses.")
    chat.add_reply(Message("assistant", "Brie, Comté and Roquefort."))
    with pytest.raises(LocalProtocolError) as err:
        chat.continue_reply(Message("assistant", " Also Morbier."))
    assert err.value.kind == "illegal_transition"


def test_retry_request_leaves_the_last_reply_out() -> None:
    chat = Conversation(words)
    chat.add_user("Suggest a name for a bakery in Lyon.")
    chat.add_reply(Message("assistant", "Le Pain Doré."))
    request = chat.to_request("gpt-4o", retry=True)
    assert request.messages == (Message("user", "Suggest a name for a bakery in Lyon."),)


def test_replace_last_reply_swaps_only_the_reply() -> None:
    chat = Conversation(words)
    chat.add_user("Suggest a name for a bakery in Lyon.")
    chat.add_reply(Message("assistant", "Le Pain Doré."), usage=Usage(14, 5))
    chat.replace_last_reply(Turn(Message("assistant", "La Mie Lyonnaise."), usage=Usage(14, 6)))
    assert [t.message.content for t in chat.turns] == [
        "Suggest a name for a bakery in Lyon.",
        "La Mie Lyonnaise.",
    ]
    assert chat.turns[-1].usage == Usage(14, 6)


def test_replace_last_reply_with_an_illegal_turn_changes_nothing() -> None:
    chat = Conversation(words)
    chat.add_user("Suggest a name for a bakery in Lyon.")
    chat.add_reply(Message("assistant", "Le Pain Doré."))
    with pytest.raises(LocalProtocolError):
        chat.replace_last_reply(Turn(Message("tool", "{}", tool_call_id="call_1")))
    assert chat.turns[-1].message.content == "Le Pain Doré."
    assert chat.state is State.REPLIED


def test_retry_needs_a_reply_at_the_end() -> None:
    chat = Conversation(words)
    chat.add_user("Suggest a name for a bakery in Lyon.")
    with pytest.raises(LocalProtocolError) as err:
        chat.to_request("gpt-4o", retry=True)
    assert err.value.kind == "illegal_transition"


def test_user_message_while_tool_calls_wait_is_refused() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris and Lyon?")
    chat.add_reply(Message("assistant", "", weather_calls()))
    with pytest.raises(LocalProtocolError) as err:
        chat.add_user("Hurry up.")
    assert err.value.kind == "illegal_transition"
    assert len(chat) == 2


def test_request_while_tool_calls_wait_is_refused_and_names_them() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris and Lyon?")
    chat.add_reply(Message("assistant", "", weather_calls()))
    chat.add_tool_result("toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"temp_c": 24}')
    with pytest.raises(LocalProtocolError) as err:
        chat.to_request("claude-sonnet-4-5")
    assert err.value.kind == "tool_results_pending"
    assert "toolu_01PiM2XVUczKGDrAqzRWxXbD" in str(err.value)


def test_tool_result_for_an_unknown_call_is_refused() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris and Lyon?")
    chat.add_reply(Message("assistant", "", weather_calls()))
    with pytest.raises(LocalProtocolError) as err:
        chat.add_tool_result("toolu_unknown", '{"temp_c": 24}')
    assert err.value.kind == "unknown_tool_call"


def test_second_result_for_one_call_is_refused() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris and Lyon?")
    chat.add_reply(Message("assistant", "", weather_calls()))
    chat.add_tool_result("toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"temp_c": 24}')
    with pytest.raises(LocalProtocolError) as err:
        chat.add_tool_result("toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"temp_c": 25}')
    assert err.value.kind == "duplicate_tool_result"


def test_tool_result_without_a_call_is_refused() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris?")
    with pytest.raises(LocalProtocolError) as err:
        chat.add_tool_result("toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"temp_c": 24}')
    assert err.value.kind == "illegal_transition"


def test_two_replies_in_a_row_are_refused() -> None:
    chat = Conversation(words)
    chat.add_user("Suggest a name for a bakery in Lyon.")
    chat.add_reply(Message("assistant", "Le Pain Doré."))
    with pytest.raises(LocalProtocolError) as err:
        chat.add_reply(Message("assistant", "Or La Mie Lyonnaise."))
    assert err.value.kind == "illegal_transition"
    assert "replace_last_reply" in str(err.value)


def test_system_message_as_a_turn_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as err:
        Turn(Message("system", "You are a pirate."))
    assert err.value.kind == "system_turn"


def test_duplicate_tool_call_ids_are_refused() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris?")
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    with pytest.raises(LocalProtocolError) as err:
        chat.add_reply(Message("assistant", "", (call, call)))
    assert err.value.kind == "bad_tool_call_ids"


def test_restoring_turns_checks_them_like_additions() -> None:
    turns = [
        Turn(Message("user", "What's the weather in Paris?")),
        Turn(Message("tool", '{"temp_c": 24}', tool_call_id="call_1")),
    ]
    with pytest.raises(LocalProtocolError) as err:
        Conversation(words, turns=turns)
    assert err.value.kind == "illegal_transition"


def test_history_bound_is_enforced() -> None:
    chat = Conversation(words, max_turns=2)
    chat.add_user("Hello.")
    chat.add_reply(Message("assistant", "Bonjour !"))
    with pytest.raises(LocalProtocolError) as err:
        chat.add_user("Again.")
    assert err.value.kind == "history_full"


def test_clear_forgets_turns_and_summary_but_keeps_the_system_prompt() -> None:
    chat = Conversation(words, system="Answer in French.")
    chat.add_user("Hello.")
    chat.add_reply(Message("assistant", "Bonjour !"))
    chat.add_user("How are you?")
    chat.set_summary("Greetings were exchanged.", covering=2)
    chat.clear()
    assert (len(chat), chat.summary, chat.system, chat.state) == (
        0,
        None,
        "Answer in French.",
        State.EMPTY,
    )


# -- the window -------------------------------------------------------------


def exchanges(n: int, counter: Callable[[str], int] = words) -> Conversation:
    chat = Conversation(counter, system="You are a concise travel assistant.")
    for i in range(n):
        chat.add_user(f"Question {i}: what should I see in Lyon on day {i}?")
        chat.add_reply(Message("assistant", f"Day {i}: Vieux Lyon, Fourvière and a bouchon."))
    return chat


def test_window_drops_the_oldest_exchanges_first() -> None:
    chat = exchanges(5)
    chat.add_user("And on the last day?")
    full = chat.window(10_000)
    budget = full.tokens - 30
    window = chat.window(budget)
    assert window.messages == full.messages[window.start :]
    assert window.start > 0 and window.dropped == chat.turns[: window.start]


def test_window_never_starts_with_an_assistant_reply() -> None:
    chat = exchanges(3)
    chat.add_user("And on the last day?")
    sizes = [chat.window(b).start for b in range(60, 200)]
    assert all(chat.turns[start].role == "user" for start in sizes)


def test_window_may_start_at_a_reply_when_asked() -> None:
    chat = exchanges(3)
    chat.add_user("And on the last day?")
    starts = {chat.window(b, start_with_user=False).start for b in range(30, 200)}
    assert any(chat.turns[start].role == "assistant" for start in starts)


def test_newest_turn_that_cannot_fit_raises_context_too_small() -> None:
    chat = Conversation(words, system="You are a concise travel assistant.")
    chat.add_user(" ".join(["Lyon"] * 500))
    with pytest.raises(LocalProtocolError) as err:
        chat.window(400)
    assert err.value.kind == "context_too_small"
    assert "shorten the message" in str(err.value)


def test_system_prompt_that_cannot_fit_raises_context_too_small() -> None:
    chat = Conversation(words, system=" ".join(["rule"] * 300))
    chat.add_user("Hello.")
    with pytest.raises(LocalProtocolError) as err:
        chat.window(200)
    assert err.value.kind == "context_too_small"


def test_tool_definitions_count_against_the_budget() -> None:
    chat = exchanges(4)
    chat.add_user("And on the last day?")
    without = chat.window(105)
    with_tools = chat.window(105, tools=[WEATHER])
    assert with_tools.start > without.start


def test_to_request_reports_the_model_window_when_too_small() -> None:
    chat = Conversation(CL100K)
    chat.add_user("Lyon " * 9_000)
    with pytest.raises(LocalProtocolError) as err:
        chat.to_request("gpt-4")
    assert err.value.kind == "context_too_small"
    assert chat.to_request("gpt-4o").messages[0].role == "user"


def test_counts_are_taken_once_per_turn() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return count(text)

    chat = exchanges(20, counting)
    chat.add_user("And on the last day?")
    taken = len(calls)
    for budget in range(100, 1_000, 50):
        chat.window(budget)
    assert len(calls) == taken


def test_changing_the_counter_recounts_every_turn() -> None:
    chat = exchanges(3)
    chat.add_user("And on the last day?")
    by_words = chat.window(10_000).tokens
    chat.set_counter(CL100K)
    window = chat.window(10_000)
    assert window.tokens != by_words
    assert window.tokens == window_cost(chat, window)


def test_tiktoken_tokenizer_counts_like_its_count_function() -> None:
    chat_a = exchanges(3, CL100K.count)
    chat_b = exchanges(3, count)
    chat_b.set_counter(CL100K)
    assert chat_a.window(10_000).tokens == chat_b.window(10_000).tokens


# -- summaries --------------------------------------------------------------


def test_summary_request_carries_the_dropped_turns_as_a_transcript() -> None:
    chat = exchanges(4)
    chat.add_user("And on the last day?")
    window = chat.window(60)
    request = chat.summary_request("gpt-4o", window.dropped)
    text = request.messages[0].content
    assert request.messages[0].role == "user" and request.system is not None
    assert "User: Question 0: what should I see in Lyon on day 0?" in text
    assert "Assistant: Day 0: Vieux Lyon, Fourvière and a bouchon." in text
    assert "And on the last day?" not in text


def test_summary_is_appended_to_the_system_prompt_and_counts() -> None:
    chat = exchanges(4)
    chat.add_user("And on the last day?")
    window = chat.window(95)
    chat.set_summary("Days 0-1: Vieux Lyon and Fourvière.", covering=window.start)
    after = chat.window(95)
    assert after.summary_kept and after.start == window.start and not after.needs_summary
    assert after.system == (
        f"You are a concise travel assistant.\n\n{SUMMARY_HEADING}\n"
        "Days 0-1: Vieux Lyon and Fourvière."
    )
    assert after.tokens == window.tokens + words(
        f"{SUMMARY_HEADING}\nDays 0-1: Vieux Lyon and Fourvière."
    )


def test_summary_that_no_longer_fits_is_dropped_and_asks_for_a_new_one() -> None:
    chat = exchanges(4)
    chat.add_user("And on the last day?")
    window = chat.window(95)
    chat.set_summary("Days 0-1: " + "Vieux Lyon and Fourvière, " * 20, covering=window.start)
    after = chat.window(95)
    assert not after.summary_kept and after.summary_dropped and after.needs_summary
    request = chat.summary_request("gpt-4o", after.dropped)
    assert request.messages[0].content.startswith("Summary so far:\nDays 0-1:")


def test_summary_covering_a_tool_result_is_refused() -> None:
    chat = Conversation(words)
    chat.add_user("What's the weather in Paris and Lyon?")
    chat.add_reply(Message("assistant", "", weather_calls()))
    chat.add_tool_result("toolu_01T1x1fJ34qAmk2tNTrN7Up6", '{"temp_c": 24}')
    chat.add_tool_result("toolu_01PiM2XVUczKGDrAqzRWxXbD", '{"temp_c": 21}')
    with pytest.raises(LocalProtocolError) as err:
        chat.set_summary("Weather was checked.", covering=2)
    assert err.value.kind == "bad_summary"


# -- context sizes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini-2024-07-18", 128_000),
        ("gpt-4.1-mini", 1_047_576),
        ("gpt-4-0613", 8_192),
        ("o1-mini", 128_000),
        ("o3-mini", 200_000),
        ("claude-sonnet-4-5-20250929", 200_000),
        ("models/gemini-2.5-flash", 1_048_576),
        ("gemini-1.5-pro-002", 2_097_152),
        ("llama3.2:3b", 131_072),
        ("openrouter/unknown-model", DEFAULT_CONTEXT_WINDOW),
    ],
)
def test_context_window_of_known_models(model: str, tokens: int) -> None:
    assert context_window(model) == tokens


def test_context_window_override_wins() -> None:
    assert context_window("llama3.2:3b", override=4_096) == 4_096


def test_prompt_budget_keeps_max_tokens_for_the_answer() -> None:
    assert prompt_budget("gpt-4", max_tokens=1_000) == 7_192
    with pytest.raises(LocalProtocolError) as err:
        prompt_budget("gpt-4", max_tokens=8_192)
    assert err.value.kind == "context_too_small"
