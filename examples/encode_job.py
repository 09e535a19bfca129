"""A media-encoding style job: probe, encode, package, one after another, with progress.

Every task is built and validated before the first runs; a failure names the task and
phase, stops the job, and cleanup still runs for what started.

Run it with ``python examples/encode_job.py`` (``--fail`` makes the encoder fail).
"""

from __future__ import annotations

import sys
import time

import actorflow as af


class Probe(af.Task):
    def __init__(self, source: str) -> None:
        self.source = source

    def validate(self) -> None:
        if not self.source.endswith(".mov"):
            raise ValueError(f"{self.source!r} is not a .mov file")

    def run(self) -> None:
        time.sleep(0.02)  # reading headers
        self.report(100, "1920x1080, 24 fps, 48 frames")


class Encode(af.Task):
    def __init__(self, frames: int, fail_at: int | None = None) -> None:
        self.frames = frames
        self.fail_at = fail_at

    def run(self) -> None:
        for frame in range(1, self.frames + 1):
            time.sleep(0.002)  # encoding a frame
            if frame == self.fail_at:
                raise RuntimeError(f"encoder crashed at frame {frame}")
            if frame % 12 == 0:
                self.report(100 * frame / self.frames, f"frame {frame}/{self.frames}")
                print(f"  encode: {self.progress:3.0f}%  {self.info}", flush=True)

    def cleanup(self) -> None:
        print("  encode: temporary files removed", flush=True)


class Package(af.Task):
    def run(self) -> None:
        time.sleep(0.01)
        self.report(100, "movie.mp4")


def main(argv: list[str]) -> int:
    job = af.Job("encode-movie")
    job.add("probe", Probe, source="holiday.mov")
    job.add("encode", Encode, frames=48, fail_at=30 if "--fail" in argv else None)
    job.add("package", Package)
    result = job.run_blocking()
    for task in result.tasks:
        took = f"{task.duration:.2f} s" if task.duration is not None else "-"
        print(f"{task.name:<8} {task.state:<9} {took:>7}  {task.info or ''}")
    if result.error is not None:
        print(f"job failed: {result.error}")
        return 1
    print(f"job done: {', '.join(result.succeeded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
