"""Shared fixtures: log capture and a clean structlog configuration per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from actorflow._logging import _release_owned_stream


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
