"""The README's code is code that runs: its Python blocks compile, the core example decodes a
real transcript, and the asyncio snippet is the tested example file, line for line."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def _without_docstring(source: str) -> str:
    body = ast.parse(source).body
    first = body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    lines = source.splitlines(keepends=True)
    return "".join(lines[first.end_lineno :]).lstrip("\n")


def test_every_python_block_compiles() -> None:
    assert len(BLOCKS) >= 3
    for block in BLOCKS:
        compile(block, "README.md", "exec")


def test_the_core_example_decodes_a_real_stream_split_anywhere() -> None:
    (core,) = [b for b in BLOCKS if "body_chunks" in b]
    body = (ROOT / "tests" / "transcripts" / "anthropic" / "text_emoji_cjk.txt").read_bytes()
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(core, {"body_chunks": chunks})
    assert out.getvalue().rstrip().endswith("complete")
    assert len(out.getvalue()) > len("complete\n")


def test_the_asyncio_snippet_is_the_tested_example() -> None:
    example = (ROOT / "examples" / "asyncio_20_lines.py").read_text(encoding="utf-8")
    assert _without_docstring(example) in BLOCKS


def test_the_nginx_block_is_the_tested_config() -> None:
    # tests/test_nginx.py runs a real nginx with docs/nginx.conf; the README shows that file.
    (block,) = re.findall(r"```nginx\n(.*?)```", README, flags=re.DOTALL)
    assert block == (ROOT / "docs" / "nginx.conf").read_text(encoding="utf-8")


def test_every_picture_the_readme_shows_exists() -> None:
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", README)
    assert pictures
    for picture in pictures:
        assert (ROOT / picture).is_file(), picture
