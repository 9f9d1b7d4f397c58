"""Chunking for decoder tests: a body cut at chosen offsets, as a transport hands it over."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def pieces(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    """``data`` cut at ``cuts`` (sorted, repeats dropped), in order; a piece may be empty.

    >>> list(pieces(b"abcdef", [4, 2, 2]))
    [b'ab', b'cd', b'ef']
    """
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        yield data[start:cut]
        start = cut
