"""An asyncio driver: one streamed chat answer over ``asyncio.open_connection``.

Theory of operation
-------------------
The protocol work is the blocking driver's :class:`~streamcore.adapters.blocking.Exchange`
(h11 + the dialect decoder + the stream machine, no I/O); this module is the
asyncio loop around it, and reads time from ``loop.time()``::

    open_connection (TLS), write, drain    asyncio.wait_for: the time left to the next deadline
    reader.read -> Exchange.receive_data   yields the accepted events
    read timed out -> Exchange.check_deadlines
    ... until the machine is terminal; then the transport is aborted

Deadlines use ``asyncio.wait_for`` on each await (``asyncio.timeout`` needs
Python 3.11). Cancellation is the caller's: cancelling the task that iterates
(or leaving ``async with``, or ``aclose()``) aborts the connection and ends
the attempt ``CANCELLED``; the ``CancelledError`` propagates unchanged.
Copy this module's loop to drive the core from any event loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Iterable
from types import TracebackType

from streamcore.adapters.blocking import READ_SIZE, Exchange
from streamcore.events import Event
from streamcore.machine import Deadlines, Outcome
from streamcore.request import ChatRequest

__all__ = ["ChatStream", "stream_chat"]


class ChatStream:
    """One streamed answer: ``async for`` its events, then read :attr:`outcome`.

    Iterating connects, sends the request and yields each event as it is
    decoded, until the attempt ends -- completed, cut off, timed out, refused:
    the iteration itself raises only for a bug or a cancellation. Stopping
    early needs :meth:`aclose` (``async with`` calls it): the socket closes and
    the outcome is ``CANCELLED``, with everything received so far.
    """

    def __init__(self, exchange: Exchange, ssl_context: ssl.SSLContext | None = None) -> None:
        self._exchange = exchange
        self._ssl_context = ssl_context
        self._events = self._run()

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def outcome(self) -> Outcome:
        """How the attempt ended; raises ``LocalProtocolError`` while it is still going."""
        return self._exchange.outcome

    async def aclose(self) -> None:
        """Stop reading and close the connection; a no-op once the stream is over."""
        if not self._exchange.started:  # never iterated: nothing to close but the attempt
            now = asyncio.get_running_loop().time()
            self._exchange.start(now)
            self._exchange.cancel(now, "closed before it started")
        await self._events.aclose()

    async def _run(self) -> AsyncGenerator[Event, None]:
        ex = self._exchange
        loop = asyncio.get_running_loop()
        payload = ex.start(loop.time())
        writer: asyncio.StreamWriter | None = None
        reason = "the caller closed the stream"
        try:
            connected = await self._connect_and_send(loop, payload)
            if connected is None:
                return
            reader, writer = connected
            while not ex.done:
                try:
                    data = await asyncio.wait_for(
                        reader.read(READ_SIZE), ex.read_timeout(loop.time())
                    )
                except asyncio.TimeoutError:
                    ex.check_deadlines(loop.time())
                    continue
                except OSError as exc:
                    ex.connection_failed(exc, loop.time())
                    break
                for event in ex.receive_data(data, loop.time()):
                    yield event
        except GeneratorExit:
            raise
        except BaseException as exc:  # CancelledError, or a bug: end the attempt, re-raise
            reason = f"stopped by {type(exc).__name__}"
            raise
        finally:
            if writer is not None:
                # The answer is over or abandoned: nothing is left to say, and a
                # graceful close (a TLS close_notify) could wait on the server.
                writer.transport.abort()
            if not ex.done:
                ex.cancel(loop.time(), reason)

    async def _connect_and_send(
        self, loop: asyncio.AbstractEventLoop, payload: bytes
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The connection with the request sent, or ``None`` (the attempt has then ended)."""
        ex = self._exchange
        origin = ex.origin
        context = None
        if origin.tls:
            context = self._ssl_context or ssl.create_default_context()

        async def connect_and_send() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection(
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
            try:
                writer.write(payload)
                await writer.drain()
            except BaseException:
                writer.transport.abort()
                raise
            return reader, writer

        try:
            return await asyncio.wait_for(connect_and_send(), ex.read_timeout(loop.time()))
        except asyncio.TimeoutError as exc:
            if not ex.check_deadlines(loop.time()):
                ex.connection_failed(exc, loop.time())
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError), reset
            ex.connection_failed(exc, loop.time())
        return None


def stream_chat(
    base_url: str,
    dialect: str,
    request: ChatRequest,
    *,
    api_key: str | None = None,
    deadlines: Deadlines | None = None,
    headers: Iterable[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> ChatStream:
    """Stream ``request`` from the provider at ``base_url`` speaking ``dialect``, on asyncio.

    Nothing happens until the stream is iterated. Arguments as in
    :func:`streamcore.adapters.blocking.stream_chat`: ``dialect`` is a name of
    :data:`streamcore.providers.DIALECTS`; ``deadlines`` default to
    :data:`~streamcore.adapters.blocking.DEFAULT_DEADLINES` (``Deadlines()``
    for none); ``headers`` are extra request headers. A bad URL, dialect or
    header raises :class:`~streamcore.LocalProtocolError` here.

    >>> from streamcore.events import TextDelta
    >>> from streamcore.request import ChatRequest, Message
    >>> async def main():
    ...     request = ChatRequest("claude-sonnet-4-5", (Message("user", "Explain SSE"),))
    ...     async with stream_chat("http://127.0.0.1:8000", "anthropic", request) as stream:
    ...         async for event in stream:
    ...             if isinstance(event, TextDelta):
    ...                 print(event.text, end="", flush=True)
    ...     return stream.outcome.state
    >>> asyncio.run(main())  # doctest: +SKIP
    <State.COMPLETED: 'completed'>
    """
    exchange = Exchange(
        base_url, dialect, request, api_key=api_key, deadlines=deadlines, headers=headers
    )
    return ChatStream(exchange, ssl_context)
