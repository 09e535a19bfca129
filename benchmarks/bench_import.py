"""Import time: what ``import actorflow`` costs a program, against ``import trio``.

    python benchmarks/bench_import.py               # 15 interleaved rounds
    python benchmarks/bench_import.py --rounds 3    # smoke run
    python benchmarks/bench_import.py --against ../main   # and another checkout's runtime

Each command runs in a fresh interpreter, in interleaved rounds; the medians of the wall
times and of the CPU times (user + system, which a busy machine disturbs less) are
compared. Byte code is compiled once beforehand into a private cache, as an
installed package has it (``PYTHONDONTWRITEBYTECODE`` would otherwise make every run
compile actorflow's sources, which no installed copy does).

* ``import actorflow``: the bare import (names are loaded on first use);
* ``import actorflow; actorflow.run``: the runtime a program that runs a graph loads;
* ``python -c pass``: the interpreter alone, for the distance that is Python's own.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c pass": "pass",
    "import trio": "import trio",
    "import actorflow": "import actorflow",
    "import actorflow; actorflow.run": "import actorflow; actorflow.run",
}


def timed(code: str, env: dict[str, str], path: str | None = None) -> tuple[float, float]:
    """The wall time and the CPU time of one fresh interpreter running ``code`` (in
    ``path``, and with it on its ``PYTHONPATH``, if given: ``-c`` imports from the
    working directory first)."""
    if path is not None:
        env = {**env, "PYTHONPATH": path}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=path, check=True)
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--against", help="another checkout whose runtime import is timed too")
    args = parser.parse_args()
    commands: dict[str, tuple[str, str | None]] = {k: (v, None) for k, v in COMMANDS.items()}
    if args.against:
        commands[f"... .run, from {args.against}"] = (
            COMMANDS["import actorflow; actorflow.run"],
            args.against,
        )
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for code, path in commands.values():
            timed(code, env, path)  # compile and cache the byte code once
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for _ in range(args.rounds):
            for label, (code, path) in commands.items():
                times[label].append(timed(code, env, path))
    wall = {label: statistics.median(w for w, _ in found) for label, found in times.items()}
    cpu = {label: statistics.median(c for _, c in found) for label, found in times.items()}
    print(f"fresh interpreters, {args.rounds} interleaved rounds, medians:")
    print(f"  {'':<34} {'wall ms':>8} {'x trio':>6} {'cpu ms':>8} {'x trio':>6}")
    for label in commands:
        print(
            f"  {label:<34} {wall[label] * 1000:>8.1f} {wall[label] / wall['import trio']:>6.2f}"
            f" {cpu[label] * 1000:>8.1f} {cpu[label] / cpu['import trio']:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
