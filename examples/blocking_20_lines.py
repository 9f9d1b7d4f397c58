"""Stream an answer, blocking: `python examples/blocking_20_lines.py [BASE_URL]`."""

import os
import sys

from streamcore.adapters.blocking import stream_chat
from streamcore.events import TextDelta
from streamcore.machine import Deadlines
from streamcore.request import ChatRequest, Message


def main(base_url: str) -> None:
    request = ChatRequest("gpt-4.1-mini", (Message("user", "Explain server-sent events"),))
    key = os.environ.get("OPENAI_API_KEY")  # none needed for `streamcore mock`
    deadlines = Deadlines(connect=10, first_token=60, idle=30)
    with stream_chat(base_url, "openai-chat", request, api_key=key, deadlines=deadlines) as s:
        for event in s:
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
    print(f"\n[{s.outcome.state.value}] {s.outcome.reason}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
