"""The vocabulary of states and reasons (actorflow/_status.py)."""

from __future__ import annotations

import json

from actorflow._status import DropReason, EndReason


def test_reasons_compare_equal_to_the_strings_logs_have_always_shown() -> None:
    """End and drop reasons are StrEnums: equal to, hashed like and serialised as strings."""
    assert EndReason.NORMAL == "normal"
    assert EndReason.NOT_STARTED == "not_started"
    assert DropReason.CONSUMER_TERMINATED == "consumer_terminated"
    counts = {DropReason.SHUTDOWN: 2}
    assert counts == {"shutdown": 2}
    assert counts["shutdown"] == 2
    assert json.dumps(counts) == '{"shutdown": 2}'
    assert f"{EndReason.KILLED}" == "killed"
