"""The core stays sans-IO: standard library only, no I/O modules, no clock of its own."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import streamcore

CORE = Path(streamcore.__file__).parent
# Modules that do I/O or concurrency; the core must never import them.
IO_MODULES = {
    "asyncio",
    "trio",
    "anyio",
    "socket",
    "ssl",
    "selectors",
    "select",
    "threading",
    "multiprocessing",
    "subprocess",
    "h11",
    "wsproto",
    "http",
    "urllib",
}
CLOCK_CALLS = {"time", "monotonic", "perf_counter", "monotonic_ns", "time_ns", "perf_counter_ns"}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no core sources found under {CORE}"
    return files


def test_core_imports_only_the_standard_library_and_itself() -> None:
    bad = []
    for path in _core_files():
        for lineno, top in _imports(ast.parse(path.read_text(), str(path))):
            if top == "streamcore" or top == "__future__":
                continue
            if top in IO_MODULES or top not in sys.stdlib_module_names:
                bad.append(f"{path.relative_to(CORE)}:{lineno}: import {top}")
    assert bad == []


def test_core_reads_no_clock() -> None:
    bad = []
    for path in _core_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in CLOCK_CALLS
                and isinstance(node.value, ast.Name)
                and node.value.id == "time"
            ):
                bad.append(f"{path.relative_to(CORE)}:{node.lineno}: time.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module in {"time", "datetime"}:
                bad.append(f"{path.relative_to(CORE)}:{node.lineno}: from {node.module} import")
    assert bad == []


def test_boundary_check_catches_an_io_import() -> None:
    # The checks above must be able to fail: a core file importing trio is flagged.
    tree = ast.parse("import trio\nfrom socket import socket\n")
    tops = {top for _, top in _imports(tree)}
    assert tops & IO_MODULES == {"trio", "socket"}
