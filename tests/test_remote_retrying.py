"""`Retrying` says an outage once, and its end only when a call that failed went
through: a call with nothing to send (a no-op) used to count as a recovery while Redis
was still down, so one outage logged several unreachable/recovered pairs."""

from __future__ import annotations

from typing import Any

import trio
from redis_server import RedisServer

from actorflow._redis import connect
from actorflow._redis._client import Retrying


class Events:
    def __init__(self) -> None:
        self.said: list[str] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.said.append(event)

    def info(self, event: str, **fields: Any) -> None:
        self.said.append(event)


async def test_a_call_with_nothing_to_send_is_no_recovery(
    own_redis_server: RedisServer,
) -> None:
    events = Events()
    retry = Retrying(events, poll=0.01)

    async def nothing() -> None:
        """What a pump's call does when it has nothing to send."""

    with trio.fail_after(30):
        async with connect(own_redis_server.url, reply_within=0.5) as client:
            await retry(client.ping)
            await trio.to_thread.run_sync(own_redis_server.stop)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(retry, client.ping)
                while not events.said:  # the failing call has said it
                    await trio.sleep(0.01)
                for _ in range(5):
                    await retry(nothing)
                assert events.said == ["remote.unreachable"]
                await trio.to_thread.run_sync(own_redis_server.start)
    assert events.said == ["remote.unreachable", "remote.recovered"]
