"""Shared fixtures: log capture and a clean structlog configuration per test."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from redis_server import ExternalRedis, RedisServer, require_redis_server

from actorflow._logging import _release_owned_stream


def pytest_configure(config: pytest.Config) -> None:
    """The Ctrl-C tests need SIGINT to raise KeyboardInterrupt, here and in the commands
    they start. A shell starts a background job with SIGINT ignored, and an ignored
    signal stays ignored across exec: run that way, they would fail for the wrong reason."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever the previous one configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    _release_owned_stream()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event emitted during the test, as dicts."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ExternalRedis | RedisServer]:
    """One real Redis server for the session (tests keep apart by their graph names):
    the one ``.ci/run`` started (``ACTORFLOW_REDIS_URL``), else one of our own."""
    external = os.environ.get("ACTORFLOW_REDIS_URL")
    if external:
        yield ExternalRedis(external)
        return
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, for tests that restart it."""
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; killed if the test ends before they do."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()
