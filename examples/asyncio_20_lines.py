"""Stream an answer on asyncio: `python examples/asyncio_20_lines.py [BASE_URL]`."""

import asyncio
import os
import sys

from streamcore.adapters.aio import stream_chat  # blocking: streamcore.adapters.blocking
from streamcore.events import TextDelta
from streamcore.machine import Deadlines
from streamcore.request import ChatRequest, Message


async def main(base_url: str) -> None:
    request = ChatRequest("claude-sonnet-4-5", (Message("user", "Explain server-sent events"),))
    key = os.environ.get("ANTHROPIC_API_KEY")  # none needed for `streamcore mock`
    deadlines = Deadlines(connect=10, first_token=60, idle=30)
    async with stream_chat(base_url, "anthropic", request, api_key=key, deadlines=deadlines) as s:
        async for event in s:
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
    print(f"\n[{s.outcome.state.value}] {s.outcome.reason}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
