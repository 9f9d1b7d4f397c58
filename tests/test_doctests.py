"""Every example in the core's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streamcore


def _core_modules() -> list[str]:
    names = ["streamcore"]
    for info in pkgutil.walk_packages(streamcore.__path__, "streamcore."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _core_modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
