"""Run every fuzz harness for a fixed time, a few at once, and report what they found.

    python fuzz/run_all.py --seconds 30 [--jobs 2] [ndjson jsonarray ...]

Each ``fuzz/fuzz_<name>.py`` runs in its own process under libFuzzer (atheris),
time-boxed by ``-max_total_time``, with its corpus in ``fuzz/corpus-<name>/``
(created, and seeded from ``fuzz/seeds/<name>/`` when that folder exists) and
crashing inputs written to ``fuzz/crashes/<name>-*``. At most ``--jobs``
harnesses run at once, so the whole run takes about ``ceil(n / jobs) * seconds``.

For every harness it prints the status, the number of executions and the time
taken. A harness that crashes, hangs, runs out of memory or cannot even start
(an import error, say) is a failure: the exit status is 1 and, for a crash,
the crashing input's path and a preview of its bytes are printed. Reproduce
one with ``python fuzz/fuzz_<name>.py <crash file>``.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
RSS_LIMIT_MB = 2048
# A single input that runs this long is a hang (libFuzzer reports it as a timeout).
MAX_INPUT_SECONDS = 10
# Start-up (instrumenting imports, loading the corpus) on top of -max_total_time
# before the runner gives up on a harness that ignores its time box.
KILL_GRACE_SECONDS = 60
PREVIEW_BYTES = 64
LOG_TAIL_LINES = 25

_EXECUTED = re.compile(r"^stat::number_of_executed_units:\s*(\d+)", re.M)
_DONE = re.compile(r"^Done (\d+) runs", re.M)
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_STARTED = re.compile(r"^INFO: Seed: \d+", re.M)

HINTS = {
    "crash": "an invariant failed or an unexpected exception escaped (exit status {rc})",
    "timeout": f"one input ran longer than the per-input limit (at most {MAX_INPUT_SECONDS}s)",
    "oom": f"the harness went over {RSS_LIMIT_MB} MB of memory",
    "hung": "the harness ignored -max_total_time and was killed",
    "error": (
        "the harness did not fuzz (exit status {rc}): it failed to start (an import error?) "
        "or never called atheris.Setup()/atheris.Fuzz() under if __name__ == '__main__'"
    ),
}


@dataclass(frozen=True, slots=True)
class Result:
    """How one harness run ended."""

    name: str
    status: str
    """``ok``, or a failure: ``crash``, ``timeout``, ``oom``, ``hung``, ``error``."""
    executions: int | None
    seconds: float
    artifact: Path | None
    log: str
    returncode: int | None
    """None when the runner had to kill the harness."""

    @property
    def failed(self) -> bool:
        return self.status != "ok"


def discover() -> dict[str, Path]:
    """Every harness, by name: ``fuzz/fuzz_ndjson.py`` is ``ndjson``."""
    return {p.stem.removeprefix("fuzz_"): p for p in sorted(FUZZ_DIR.glob("fuzz_*.py"))}


def prepare_corpus(name: str) -> Path:
    """Create ``fuzz/corpus-<name>/`` and copy in any seeds it does not have yet."""
    corpus = FUZZ_DIR / f"corpus-{name}"
    corpus.mkdir(exist_ok=True)
    seeds = FUZZ_DIR / "seeds" / name
    if seeds.is_dir():
        for seed in sorted(seeds.iterdir()):
            target = corpus / f"seed-{seed.name}"
            if seed.is_file() and not target.exists():
                shutil.copyfile(seed, target)
    return corpus


def command(name: str, harness: Path, seconds: int) -> list[str]:
    return [
        sys.executable,
        str(harness.relative_to(ROOT)),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix=fuzz/crashes/{name}-",
        f"-timeout={min(seconds, MAX_INPUT_SECONDS)}",
        "-print_final_stats=1",
        f"fuzz/corpus-{name}/",
    ]


def executions(log: str) -> int | None:
    """libFuzzer's count of executed inputs: the final stats, else the last progress line."""
    for pattern in (_EXECUTED, _DONE):
        found = pattern.findall(log)
        if found:
            return int(found[-1])
    progress = _PROGRESS.findall(log)
    return int(progress[-1]) if progress else None


def classify(returncode: int, log: str) -> str:
    if returncode == 0:
        # A harness that exits 0 without fuzzing (no Fuzz() call, say) ran nothing.
        return "ok" if _DONE.search(log) else "error"
    if "ERROR: libFuzzer: timeout" in log:
        return "timeout"
    if "ERROR: libFuzzer: out-of-memory" in log:
        return "oom"
    if _STARTED.search(log) and _ARTIFACT.search(log):
        return "crash"
    return "error"  # died before fuzzing: an import error, a bad flag


def run_one(name: str, harness: Path, seconds: int) -> Result:
    prepare_corpus(name)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command(name, harness, seconds),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=seconds + KILL_GRACE_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        log = "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else (part or "")
            for part in (exc.stdout, exc.stderr)
        )
        elapsed = time.monotonic() - started
        return Result(name, "hung", executions(log), elapsed, None, log, None)
    elapsed = time.monotonic() - started
    # atheris prints the Python exception on stdout and libFuzzer's report on stderr.
    log = proc.stdout + proc.stderr
    found = _ARTIFACT.findall(log)
    artifact = ROOT / found[-1] if found else None
    status = classify(proc.returncode, log)
    return Result(name, status, executions(log), elapsed, artifact, log, proc.returncode)


def preview(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"    (cannot read it: {exc})"
    head = data[:PREVIEW_BYTES]
    more = " ..." if len(data) > PREVIEW_BYTES else ""
    return f"    {len(data)} bytes\n    hex:  {head.hex(' ')}{more}\n    repr: {head!r}{more}"


def python_exception(log: str) -> str:
    """The 'Uncaught Python exception' block atheris prints, if any."""
    start = log.find("=== Uncaught Python exception: ===")
    if start < 0:
        return ""
    block = log[start:].split("\n\n", 1)[0]
    return "\n".join("    " + line for line in block.splitlines()[1:])


def report(result: Result) -> None:
    runs = "?" if result.executions is None else f"{result.executions:,}"
    print(
        f"{result.name:<20} {result.status:<8} executions={runs:<12} {result.seconds:6.1f}s",
        flush=True,
    )
    if not result.failed:
        return
    print("  " + HINTS[result.status].format(rc=result.returncode))
    if result.artifact is not None:
        artifact = result.artifact.relative_to(ROOT)
        print(f"  input: {artifact}")
        print(preview(result.artifact))
        print(f"  reproduce: python {FUZZ_DIR.name}/fuzz_{result.name}.py {artifact}")
    exception = python_exception(result.log)
    if exception:
        print("  exception:\n" + exception)
    else:
        tail = result.log.rstrip().splitlines()[-LOG_TAIL_LINES:] or ["(no output)"]
        print("  last output:\n" + "\n".join("    " + line for line in tail))
    print(flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, required=True, help="fuzzing time per harness")
    parser.add_argument("--jobs", type=int, default=2, help="harnesses run at once (default 2)")
    parser.add_argument("names", nargs="*", help="harnesses to run (default: all)")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.jobs < 1:
        parser.error("--seconds and --jobs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    harnesses = discover()
    if not harnesses:
        print(f"no fuzz_*.py harness found in {FUZZ_DIR}", file=sys.stderr)
        return 2
    wanted = [Path(n).stem.removeprefix("fuzz_") for n in args.names] or list(harnesses)
    unknown = [n for n in wanted if n not in harnesses]
    if unknown:
        print(
            f"unknown harness(es): {', '.join(unknown)}; found: {', '.join(harnesses)}",
            file=sys.stderr,
        )
        return 2
    (FUZZ_DIR / "crashes").mkdir(exist_ok=True)
    rounds = math.ceil(len(wanted) / args.jobs)
    print(
        f"fuzzing {len(wanted)} harness(es) for {args.seconds}s each, {args.jobs} at a time "
        f"(about {rounds * args.seconds}s)",
        flush=True,
    )
    results: list[Result] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, n, harnesses[n], args.seconds) for n in wanted]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            report(result)
    failed = sorted(r.name for r in results if r.failed)
    total = sum(r.executions or 0 for r in results)
    if failed:
        print(f"FAILED: {', '.join(failed)} ({total:,} executions in all)")
        return 1
    print(f"all {len(results)} harness(es) ok ({total:,} executions in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
