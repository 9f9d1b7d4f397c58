"""Exact incremental token counting, and the token budget that cuts a stream.

Theory of operation
-------------------
A BPE tokenizer of the tiktoken family works in two stages: a *pre-tokenizer*
regex splits the text into pieces (a word with its leading space, a run of up
to three digits, a punctuation run, a whitespace run), then byte-pair merges
run inside each piece and never across two. The token count of a text is
therefore the sum of the counts of its pieces.

While an answer streams in, only the end of the text is still open: appending
a delta can extend the last piece (``"hel"`` + ``"lo"``), or re-split the last
two (o200k's optional contraction suffix turns ``"don"`` ``"'"`` into
``"don't"``; the ``\\s+(?!\\S)`` rule gives a space back to the word that
follows it). Everything before that is final. So :class:`TokenCounter` keeps:

* ``committed`` -- the token count of a prefix of the text that ends on a
  piece boundary no later text can move;
* ``tail`` -- the rest (the last ``keep_pieces`` pieces plus the new delta),
  which is re-split and re-encoded on every :meth:`TokenCounter.add`.

Each ``add`` costs the size of the delta plus the tail (a few pieces), not the
size of the text so far. An exhaustive search over short strings found that
one piece suffices for cl100k_base and r50k_base and two for o200k_base (the
contraction case), hence ``keep_pieces=2``. The property tests in
``tests/test_tokens.py`` check the count against a full re-encode for any text
and any split into deltas.

Every buffer has a bound: a single piece can grow without limit (a run of
10 000 ``=`` signs is one piece), so when the tail exceeds ``max_tail_chars``
the counter cuts it where no piece boundary is known. From then on the count
is an estimate (off by about a token per cut) and :attr:`TokenCounter.exact`
is false.

The core imports no tokenizer: anything with ``pieces`` and ``count`` (the
:class:`Tokenizer` protocol) works; ``streamcore.adapters.encodings`` provides
one over tiktoken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streamcore._errors import LocalProtocolError

__all__ = ["DEFAULT_MAX_TAIL_CHARS", "TokenBudget", "TokenCounter", "Tokenizer"]

DEFAULT_MAX_TAIL_CHARS = 4096
"""The longest unfinished tail re-encoded per delta before the counter cuts it."""


class Tokenizer(Protocol):
    """What :class:`TokenCounter` needs from a tokenizer.

    ``pieces(text)`` splits ``text`` exactly as the tokenizer's pre-tokenizer
    does (their concatenation is ``text``); ``count(text)`` is the number of
    tokens the tokenizer encodes ``text`` into, special tokens treated as plain
    text (tiktoken's ``len(encoding.encode_ordinary(text))``). The tokenizer
    must never merge across two pieces, and its pre-tokenizer regex must not
    look behind a piece's start -- true of every tiktoken encoding.
    """

    def pieces(self, text: str) -> list[str]: ...

    def count(self, text: str) -> int: ...


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """A hard cap on the tokens an answer may use; the driver cuts the stream past it.

    The budget is exceeded when the count goes *over* ``limit``: an answer of
    exactly ``limit`` tokens fits.

    >>> budget = TokenBudget(100)
    >>> budget.exceeded(100), budget.exceeded(101), budget.remaining(60)
    (False, True, 40)
    """

    limit: int

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0:
            raise LocalProtocolError(
                f"TokenBudget.limit must be a non-negative int, got {self.limit!r}",
                kind="bad_budget",
            )

    def exceeded(self, count: int) -> bool:
        """Whether ``count`` tokens go over the budget."""
        return count > self.limit

    def remaining(self, count: int) -> int:
        """Tokens still allowed after ``count`` (0 once the budget is used up)."""
        return max(0, self.limit - count)


class TokenCounter:
    """The exact token count of a growing text, updated at the cost of each delta.

    After every :meth:`add`, :attr:`count` equals ``tokenizer.count(text)``
    for the whole text added so far (while :attr:`exact` holds; see the module
    docstring for when it stops holding).

    A toy tokenizer whose pieces are words (and whose tokens are pieces) shows
    the interface; real use passes ``load_encoding(model)[0]`` from
    ``streamcore.adapters.encodings``:

    >>> import re
    >>> class Words:
    ...     def pieces(self, text):
    ...         return re.findall(r"\\s*\\S+|\\s+", text)
    ...     def count(self, text):
    ...         return len(self.pieces(text))
    >>> counter = TokenCounter(Words())
    >>> [counter.add(delta) for delta in ["The qu", "ick brown", " fox"]]
    [2, 3, 4]
    >>> counter.over(3), counter.over(TokenBudget(4))
    (True, False)
    """

    __slots__ = (
        "_committed",
        "_committed_chars",
        "_cuts",
        "_keep",
        "_max_tail",
        "_tail",
        "_tail_tokens",
        "_tokenizer",
    )

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        keep_pieces: int = 2,
        max_tail_chars: int = DEFAULT_MAX_TAIL_CHARS,
    ) -> None:
        if keep_pieces < 1:
            raise LocalProtocolError(
                f"keep_pieces must be at least 1 (the last piece is never final), "
                f"got {keep_pieces}",
                kind="bad_keep_pieces",
            )
        if max_tail_chars < 64:
            raise LocalProtocolError(
                f"max_tail_chars must be at least 64, got {max_tail_chars}; a smaller "
                "bound would cut ordinary words and make every count an estimate",
                kind="bad_max_tail_chars",
            )
        self._tokenizer = tokenizer
        self._keep = keep_pieces
        self._max_tail = max_tail_chars
        self._committed = 0
        self._committed_chars = 0
        self._tail = ""
        self._tail_tokens = 0
        self._cuts = 0

    @property
    def count(self) -> int:
        """Tokens in the text added so far."""
        return self._committed + self._tail_tokens

    @property
    def exact(self) -> bool:
        """False once an over-long piece forced a cut; the count is then an estimate."""
        return self._cuts == 0

    @property
    def chars(self) -> int:
        """Characters added so far."""
        return self._committed_chars + len(self._tail)

    def add(self, delta: str) -> int:
        """Append ``delta`` to the text and return the new token count."""
        if not delta:
            return self.count
        tail = self._tail + delta
        pieces = self._tokenizer.pieces(tail)
        if len(pieces) > self._keep:
            # Everything before the last `keep` pieces is final: no later text
            # can re-split it, so count it once and forget it. Piece by piece:
            # the pieces joined would end in a different place than they did
            # inside the longer text ("=", " ", " " re-splits as "=", "  ").
            count = self._tokenizer.count
            head = pieces[: -self._keep]
            self._committed += sum(count(piece) for piece in head)
            head_len = sum(map(len, head))
            self._committed_chars += head_len
            tail = tail[head_len:]
        if len(tail) > self._max_tail:
            # One piece longer than the bound: cut it where no boundary is
            # known, keeping half the bound open so ordinary text is unaffected.
            cut = len(tail) - self._max_tail // 2
            self._committed += self._tokenizer.count(tail[:cut])
            self._committed_chars += cut
            tail = tail[cut:]
            self._cuts += 1
        self._tail = tail
        self._tail_tokens = self._tokenizer.count(tail) if tail else 0
        return self._committed + self._tail_tokens

    def over(self, limit: int | TokenBudget) -> bool:
        """Whether the count goes over ``limit`` (a number of tokens or a :class:`TokenBudget`)."""
        if isinstance(limit, TokenBudget):
            return limit.exceeded(self.count)
        return self.count > limit

    def __repr__(self) -> str:
        return (
            f"TokenCounter(count={self.count}, chars={self.chars}, exact={self.exact}, "
            f"tail_chars={len(self._tail)})"
        )
