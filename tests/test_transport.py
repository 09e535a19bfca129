"""The transport seam: the system asks for a backend by URL, imports it only for remote
links, and drives its pumps through one small protocol."""

from __future__ import annotations

import subprocess
import sys
import uuid

import trio
from redis_server import RedisServer

import actorflow as af
from actorflow._graph import LinkSpec
from actorflow._link import Mailbox
from actorflow._transport import PumpStatistics, RemoteInLink, backend_for, load_backend


def test_neither_import_nor_a_local_run_loads_the_redis_backend() -> None:
    """``import actorflow`` and a graph without remote links never import
    ``actorflow._redis``; asking for ``RedisStore`` does."""
    code = (
        "import sys, actorflow as af\n"
        "g = af.Graph(); g.add('v', af.Variable, initial=1); g.add('o', af.Outlet)\n"
        "g.link('v', 'o')\n"
        "async def main():\n"
        "    async with af.open_system(g) as system:\n"
        "        await system.stop()\n"
        "import trio; trio.run(main)\n"
        "assert 'actorflow._redis' not in sys.modules, 'imported by a local run'\n"
        "assert af.RedisStore.__name__ == 'RedisStore'\n"
        "assert 'actorflow._redis' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_backend_is_chosen_by_the_url_scheme() -> None:
    """Every Redis scheme finds the Redis backend; the module is imported once."""
    redis = load_backend("redis")
    for url in ("redis://h:1/0", "rediss://h/0", "unix:///tmp/redis.sock"):
        assert backend_for(url) is redis


def test_a_url_no_backend_claims_goes_to_the_default_backend() -> None:
    """An unknown scheme (a bad ``Settings.remote_url``) is handed to Redis, as it
    always was: the link then waits for a server it cannot reach, saying so."""
    assert backend_for("http://h/") is load_backend("redis")


async def test_pumps_carry_a_link_and_report_what_they_carried(
    redis_server: RedisServer,
) -> None:
    """The sending pump writes what its link holds, the receiving pump delivers it to
    the mailbox it was given; each reports its count in a frozen snapshot."""
    remote = af.Remote(url=redis_server.url, stream=f"transport-{uuid.uuid4().hex[:8]}")
    spec = LinkSpec("a", "out", "b", "in", remote=remote)
    transport = backend_for(redis_server.url)
    sender = transport.sender(spec, url=redis_server.url, graph="g", bound=10)
    mailbox = Mailbox()
    receiver = transport.receiver(spec, mailbox, url=redis_server.url, graph="g", shared=False)
    assert isinstance(receiver.link, RemoteInLink)
    assert receiver.link.mailbox is mailbox
    assert sender.statistics() == PumpStatistics(sender.link.name, remote.stream or "", True, 0)
    sender.link.offer([1, 2, 3])
    sender.link.close()
    got: list[int] = []
    with trio.fail_after(20):
        await sender.run()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver.run)
            link = receiver.link
            while not (link.closed and not link.items):
                if link.items:
                    got.extend(link.take(10))
                else:
                    await mailbox.wait()
            link.settle()
    assert got == [1, 2, 3]
    assert sender.statistics().moved == 3
    received = receiver.statistics()
    assert (received.sending, received.moved, received.claimed) == (False, 1, 0)
