"""What a caller asks for, and the HTTP request a dialect builds from it.

A :class:`ChatRequest` is provider-neutral. Each dialect turns it into an
:class:`HTTPRequest` -- plain data (method, target, headers, body) that any
transport can send. Nothing here opens a socket.

Secrets: an :class:`HTTPRequest` carries the API key in a header, so its
``repr`` redacts every credential header; never log ``headers`` by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ChatRequest", "HTTPRequest", "Message", "Role", "Tool", "ToolCall", "redact_headers"]

Role = Literal["system", "user", "assistant", "tool"]

# Header names (lower case) whose values are credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"}
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call made by the model: its id, the tool's name and JSON arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation.

    ``tool_calls`` is set on assistant turns that called tools; ``tool_call_id``
    on ``tool`` turns, naming the call whose result ``content`` is.

    >>> Message("user", "Hello").role
    'user'
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, object] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A provider-neutral streaming chat request.

    A final ``assistant`` message is a *prefill*: the answer continues from its
    text (used to resume a cut-off answer). ``extra`` is merged into the JSON
    body as is, for provider options streamcore does not model.
    """

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    tools: tuple[Tool, ...] = ()
    stop: tuple[str, ...] = ()
    extra: Mapping[str, object] = field(default_factory=dict)


def redact_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Return ``headers`` with every credential value replaced by ``"<redacted>"``.

    >>> redact_headers((("Authorization", "Bearer sk-123"), ("Accept", "text/event-stream")))
    (('Authorization', '<redacted>'), ('Accept', 'text/event-stream'))
    """
    return tuple(
        (name, "<redacted>" if name.lower() in SECRET_HEADERS else value) for name, value in headers
    )


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """A request ready to send: ``target`` is the path plus query (``/v1/chat/completions``)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:
        return (
            f"HTTPRequest(method={self.method!r}, target={self.target!r}, "
            f"headers={redact_headers(self.headers)!r}, body=<{len(self.body)} bytes>)"
        )
