"""Import time: what ``import actorflow`` costs a program, against ``import trio``.

    python benchmarks/bench_import.py               # 15 interleaved rounds
    python benchmarks/bench_import.py --rounds 3    # smoke run

Each command runs in a fresh interpreter, in interleaved rounds; the medians of the wall
times are compared. Byte code is compiled once beforehand into a private cache, as an
installed package has it (``PYTHONDONTWRITEBYTECODE`` would otherwise make every run
compile actorflow's sources, which no installed copy does).

* ``import actorflow``: the bare import (names are loaded on first use);
* ``import actorflow; actorflow.run``: the runtime a program that runs a graph loads;
* ``python -c pass``: the interpreter alone, for the distance that is Python's own.
"""

from __future__ import annotations

import argparse
import os
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


def wall(code: str, env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for code in COMMANDS.values():
            wall(code, env)  # compile and cache the byte code once
        times: dict[str, list[float]] = {label: [] for label in COMMANDS}
        for _ in range(args.rounds):
            for label, code in COMMANDS.items():
                times[label].append(wall(code, env))
    medians = {label: statistics.median(found) for label, found in times.items()}
    trio_time = medians["import trio"]
    print(f"fresh interpreters, {args.rounds} interleaved rounds, median wall time:")
    for label, median in medians.items():
        print(f"  {label:<34} {median * 1000:>7.1f} ms  {median / trio_time:>5.2f}x import trio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
