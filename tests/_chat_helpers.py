"""What the `streamcore chat` tests share: the prompt, the emulator's answer, a clean environment.

``streamcore chat`` picks its provider from the environment (an API key, ``STREAMCORE_PROVIDER``),
so the tests run it without those variables: every answer then comes from the built-in emulator,
whose answers are deterministic. ``ANSWER`` is what it answers ``PROMPT``, character for
character, so a test can check a whole answer exactly and a cut-short one as a strict beginning.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from streamcore.adapters.emulator import answer_for

__all__ = [
    "ANSWER",
    "PROMPT",
    "PROVIDER_VARIABLES",
    "STREAMCORE",
    "emulator_environment",
    "is_partial_answer",
]

PROMPT = "Explain SSE"
ANSWER = answer_for(PROMPT)

# The console script pip installed next to this interpreter: the real command.
STREAMCORE = str(Path(sys.executable).parent / "streamcore")

# The variables that would send the chat to a real provider or change which one it picks.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "STREAMCORE_PROVIDER",
    "STREAMCORE_MODEL",
)


def emulator_environment(data_dir: Path) -> dict[str, str]:
    """This process's environment without ``PROVIDER_VARIABLES``, keeping chat data in ``data_dir``.

    A child process started with it answers from the emulator and writes its sessions under
    ``data_dir``, never under the user's real data folder.
    """
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env["STREAMCORE_DATA_DIR"] = str(data_dir)
    return env


def is_partial_answer(text: str) -> bool:
    """Whether ``text`` is a non-empty strict beginning of ``ANSWER``: the answer, cut short.

    >>> is_partial_answer(ANSWER[:10]), is_partial_answer(ANSWER), is_partial_answer("")
    (True, False, False)
    """
    return bool(text) and ANSWER.startswith(text) and len(text) < len(ANSWER)
