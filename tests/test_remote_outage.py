"""One outage, one warning: each pump says `remote.unreachable` once when Redis goes
away and `remote.recovered` once, only after a command of its own went through again
(it used to flap: a call with nothing to send counted as a recovery while Redis was
still down)."""

from __future__ import annotations

from typing import Any

import trio
from redis_server import RedisServer
from test_remote import unique, wait_until
from test_remote_faults import chain

import actorflow as af


async def test_a_redis_restart_is_one_unreachable_and_one_recovered_per_pump(
    own_redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    got: list[af.Data] = []
    remote = af.Remote(url=own_redis_server.url, batch=10, claim_idle=1.0, timeout=0.5)
    graph = chain(unique("flap"), 400, remote, got, delay=0.002)
    with trio.fail_after(40):
        async with af.open_system(graph):
            await wait_until(lambda: len(got) >= 50)
            await trio.to_thread.run_sync(own_redis_server.stop)
            await wait_until(lambda: any(e["event"] == "remote.unreachable" for e in logs))
            await trio.sleep(3 * remote.claim_idle)  # the outage itself, not a wait
            back = len(logs)
            await trio.to_thread.run_sync(own_redis_server.start)
    assert {d.fields["n"] for d in got} == set(range(400))
    for side in ("producer", "consumer"):
        events = [(i, e["event"]) for i, e in enumerate(logs) if pump_of(e) == side]
        unreachable = [i for i, event in events if event == "remote.unreachable"]
        recovered = [i for i, event in events if event == "remote.recovered"]
        assert len(unreachable) == 1, (side, events)
        assert len(recovered) == 1, (side, events)
        assert recovered[0] >= back  # not while Redis was down


def pump_of(event: dict[str, Any]) -> str | None:
    if "stream" not in event:
        return None
    return "consumer" if "consumer" in event else "producer"
