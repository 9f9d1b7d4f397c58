"""Provider dialects: each turns one provider's wire format into streamcore's event model.

One module per provider, each with ``build_request(...)`` and a decoder class:

- ``openai-chat``: ``openai_chat``, SSE (also OpenAI-compatible servers)
- ``openai-responses``: ``openai_responses``, SSE
- ``anthropic``: ``anthropic``, SSE
- ``gemini``: ``gemini``, SSE (``alt=sse``)
- ``gemini-json-array``: ``gemini``, the streamed JSON array
- ``ollama``: ``ollama``, NDJSON

>>> decoder = decoder_for("anthropic")
>>> decoder.feed(b'event: ping\\ndata: {"type": "ping"}\\n\\n')
[KeepAlive(text='ping')]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from streamcore._errors import LocalProtocolError
from streamcore.providers._base import DialectDecoder

__all__ = ["DIALECTS", "DialectDecoder", "decoder_for"]

# name -> (module, decoder class, keyword arguments). Modules load on first use,
# so importing the registry costs nothing for dialects a program never uses.
DIALECTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "openai-chat": ("openai_chat", "OpenAIChatDecoder", {}),
    "openai-responses": ("openai_responses", "OpenAIResponsesDecoder", {}),
    "anthropic": ("anthropic", "AnthropicDecoder", {}),
    "gemini": ("gemini", "GeminiDecoder", {"framing": "sse"}),
    "gemini-json-array": ("gemini", "GeminiDecoder", {"framing": "json-array"}),
    "ollama": ("ollama", "OllamaDecoder", {}),
}


def decoder_for(name: str) -> DialectDecoder:
    """A fresh decoder for the dialect called ``name`` (see the table above)."""
    try:
        module_name, class_name, kwargs = DIALECTS[name]
    except KeyError:
        raise LocalProtocolError(
            f"unknown dialect {name!r}; known: {', '.join(sorted(DIALECTS))}",
            kind="unknown_dialect",
        ) from None
    module = importlib.import_module(f"streamcore.providers.{module_name}")
    factory: Callable[..., DialectDecoder] = getattr(module, class_name)
    return factory(**kwargs)
