"""Stream an answer with the trio adapter: `python examples/trio_quickstart.py [BASE_URL]`.

With a BASE_URL (say `streamcore mock`'s), no key is needed; without one it calls Anthropic
with ANTHROPIC_API_KEY. Drops, stalls and overloads are recovered (resume with context).
"""

import sys

import trio

from streamcore.adapters.client import Provider, open_stream


async def main(base_url: str | None) -> None:
    if base_url:
        provider = Provider.anthropic(api_key="not-needed-by-the-emulator", base_url=base_url)
    else:
        provider = Provider.anthropic()  # ANTHROPIC_API_KEY
    async with open_stream(provider, "Explain server-sent events") as stream:
        async for text in stream.text():  # one uninterrupted answer, across retries and resumes
            print(text, end="", flush=True)
    result = stream.result()
    print(f"\n[{result.state.value}] {len(result.attempts)} attempt(s), {result.usage}")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
