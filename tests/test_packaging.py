"""One distribution, one namespace: `pip install .` and `pip install -e .` both give
`streamcore`, `streamcore.adapters`, `streamcore.cli` and a working `streamcore` script,
and never top-level `adapters`/`cli` packages that would collide in site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".*_cache", "fuzz"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy so the build leaves nothing in the working tree.
    src = tmp_path_factory.mktemp("src") / "streamcore"
    shutil.copytree(REPO, src, ignore=IGNORE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("streamcore-*.whl")
    return built


@pytest.mark.slow
def test_wheel_puts_adapters_and_cli_inside_the_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "streamcore/adapters/__init__.py" in names
    assert "streamcore/cli/main.py" in names
    assert "streamcore/py.typed" in names
    assert "streamcore/adapters/serve/static/index.html" in names  # the serve demo page
    assert "streamcore/adapters/serve/static/vendor/purify.min.js" in names
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"streamcore"}


@pytest.mark.slow
def test_wheel_install_imports_and_runs_the_script(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import streamcore, streamcore.adapters, streamcore.cli.main;"
        "print(streamcore.__file__); print(streamcore.adapters.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert all(path.startswith(str(target)) for path in out), out
    script = target / "bin" / "streamcore"
    run = subprocess.run(
        [str(script), "--help"], env=env, check=True, capture_output=True, text=True
    )
    assert "chat" in run.stdout


def test_installed_script_and_namespace_work_in_this_install() -> None:
    # The suite itself runs in `pip install -e .` (make test): the mapping must hold there.
    import streamcore.adapters
    import streamcore.cli

    core = Path(streamcore.__file__).resolve().parent
    adapters = Path(streamcore.adapters.__file__).resolve().parent
    cli = Path(streamcore.cli.__file__).resolve().parent
    if core == REPO / "streamcore":  # editable: the mapping points at this checkout's folders
        assert (adapters, cli) == (REPO / "adapters", REPO / "cli")
    else:  # plain install: everything sits inside the installed package
        assert (adapters.parent, cli.parent) == (core, core)
    script = Path(sys.executable).parent / "streamcore"
    run = subprocess.run([str(script), "--help"], check=True, capture_output=True, text=True)
    assert "chat" in run.stdout
