"""What remote links leave behind: no key without an expiry or an owner after a finished
run, no dead consumer in a group, no password in any log line, error message or repr.
Against real redis-servers (see redis_server.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import structlog
import trio
from redis_server import RedisServer
from test_remote import Keep, Numbers, unique, wait_until

import actorflow as af
from actorflow._data import encode
from actorflow._heartbeat import HttpReporter
from actorflow._redis import connect
from actorflow._redis._client import _secrets_hidden
from actorflow._urls import hide_secrets, redact_url


def graph_of(name: str, count: int, remote: af.Remote, into: list[af.Data]) -> af.Graph:
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=count)
    graph.add("keep", Keep, into=into)
    graph.link("numbers", "keep", remote=remote, buffer=100)
    return graph


async def leftovers(url: str, name: str) -> dict[str, Any]:
    """Every key of the graph with no expiry, and the consumers of its stream's group."""
    stream = f"actorflow:{name}:numbers.out>keep.in"
    async with connect(url) as client:
        keys = [key async for key in client.scan_iter(match=f"actorflow:{name}*")]
        forever = sorted([key.decode() for key in keys if await client.ttl(key) == -1])
        consumers = await client.xinfo_consumers(stream, "keep") if keys else ()
    return {"keys": len(keys), "forever": forever, "consumers": len(consumers)}


async def test_a_finished_run_leaves_only_keys_that_expire(redis_server: RedisServer) -> None:
    """Stream, run counter, producer state and end mark expire (after `ttl`), the lease
    is given back and the consumer leaves its group."""
    name = unique("tidy")
    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, ttl=600)
    with trio.fail_after(20):
        async with af.open_system(graph_of(name, 50, remote, got)):
            pass
    assert len(got) == 50
    assert await leftovers(redis_server.url, name) == {"keys": 4, "forever": [], "consumers": 0}
    async with connect(redis_server.url) as client:
        stream = f"actorflow:{name}:numbers.out>keep.in"
        assert 0 < await client.ttl(stream) <= 600


async def test_a_rerun_keeps_the_keys_a_finished_run_let_expire(
    redis_server: RedisServer,
) -> None:
    """A new run of the producer takes the expiry off again (its consumer may be far
    behind); the keys expire again once that run has ended too."""
    name = unique("again")
    remote = af.Remote(url=redis_server.url, ttl=600)
    async with af.open_system(graph_of(name, 5, remote, [])):
        pass
    got: list[af.Data] = []
    with trio.fail_after(20):
        async with af.open_system(graph_of(name, 5, remote, got), only={"numbers"}):
            pass
        forever = (await leftovers(redis_server.url, name))["forever"]
        assert f"actorflow:{name}:numbers.out>keep.in" in forever
        async with af.open_system(graph_of(name, 5, remote, got), only={"keep"}):
            pass
    assert len(got) == 5
    assert (await leftovers(redis_server.url, name))["forever"] == []


async def test_a_dead_consumer_is_removed_from_its_group(redis_server: RedisServer) -> None:
    """A consumer cut off while it holds entries stays in the group until its entries
    are taken over; then the one that took them removes it."""
    name = unique("dead")
    remote = af.Remote(url=redis_server.url, claim_idle=0.3, batch=10)
    first: list[af.Data] = []
    second: list[af.Data] = []
    with trio.fail_after(20):
        async with af.open_system(graph_of(name, 300, remote, []), only={"numbers"}):
            async with af.open_system(graph_of(name, 300, remote, first), only={"keep"}) as one:
                await wait_until(lambda: len(first) >= 50)
                one.cancel()
            async with af.open_system(graph_of(name, 300, remote, second), only={"keep"}):
                pass
    assert {d.fields["n"] for d in [*first, *second]} == set(range(300))
    assert await leftovers(redis_server.url, name) == {"keys": 4, "forever": [], "consumers": 0}


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://bob:s3cret@h/0") == "redis://bob:***@h/0"
    assert redact_url("rediss://h/0?password=s3cret&db=1") == "rediss://h/0?password=***&db=1"
    assert redact_url("http://u:p%40ss@h/x") == "http://u:***@h/x"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("not a url") == "not a url"
    text = "cannot reach redis://:p%40ss@h/0 (password p@ss)"
    assert (
        hide_secrets(text, "redis://:p%40ss@h/0") == "cannot reach redis://:***@h/0 (password ***)"
    )
    secret = "redis://:s3cret@h:6379/0"
    shown = [
        repr(af.Remote(url=secret)),
        repr(af.Settings(remote_url=secret)),
        repr(af.Graph().link("a", "b", remote=secret)),
        repr(af.RedisStore(secret)),
    ]
    assert all("s3cret" not in text for text in shown), shown
    with pytest.raises(ValueError, match=r"got 'http://:\*\*\*@h/'") as refused:
        af.Remote(url="http://:s3cret@h/")
    assert "s3cret" not in str(refused.value)


@pytest.fixture
def every_log_line(tmp_path: Any) -> Any:
    """Every log line of the test, as JSON text, both structlog's and the stdlib's
    (coredis logs through the stdlib)."""
    path = tmp_path / "log.jsonl"
    af.configure_logging(format="json", file=str(path), level="debug")
    handler = logging.FileHandler(tmp_path / "stdlib.log")
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    yield lambda: path.read_text() + (tmp_path / "stdlib.log").read_text()
    logging.getLogger().removeHandler(handler)
    handler.close()
    structlog.reset_defaults()


async def test_no_password_reaches_a_log_line_or_an_error(
    own_redis_server: RedisServer, every_log_line: Any
) -> None:
    """Redis with a password: a run, Redis killed and restarted under it (warnings with
    the client's errors), then a wrong password (an error): the secrets are nowhere in
    the logs, the error or the status."""
    secret, wrong = "s3cret-pw", "wr0ng-pw"

    async def start_with_password() -> None:
        await trio.to_thread.run_sync(own_redis_server.start)
        async with connect(own_redis_server.url) as client:
            await client.config_set({"requirepass": secret})

    async with connect(own_redis_server.url) as client:
        await client.config_set({"requirepass": secret})
    url = own_redis_server.url.replace("redis://", f"redis://:{secret}@")
    got: list[af.Data] = []
    name = unique("secret")
    remote = af.Remote(url=url, timeout=0.5)
    with trio.fail_after(30):
        async with af.open_system(graph_of(name, 500, remote, got)) as system:
            await wait_until(lambda: len(got) >= 50)
            await trio.to_thread.run_sync(own_redis_server.stop)
            await wait_until(lambda: "remote.unreachable" in every_log_line())
            await start_with_password()
            shown = repr(system.status())
        assert len(got) == 500
        bad = af.Remote(url=url.replace(secret, wrong), timeout=0.5)
        with pytest.raises(Exception) as failed:  # noqa: PT011 - whatever coredis raises
            async with af.open_system(graph_of(unique("wrong"), 5, bad, [])):
                pass
        reporter = HttpReporter(f"http://user:{secret}@127.0.0.1:1/")
        await reporter.report({})
        await reporter.aclose()
    lines = every_log_line()
    assert "remote.unreachable" in lines
    assert "reporter.failing" in lines
    for text in (lines, shown, str(failed.value), repr(failed.value)):
        assert secret not in text
        assert wrong not in text
    assert all(json.loads(line) for line in lines.splitlines() if line.startswith("{"))


class Picky(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def test_an_error_that_quotes_the_password_is_raised_without_it() -> None:
    """Errors raised while a client is open are rewritten only when they quote the
    secret: as their own type where it can be rebuilt from a message, else RuntimeError."""
    url = "redis://:pw-1234@h/0"
    with pytest.raises(ValueError, match=r"^no \*\*\* here$"), _secrets_hidden(url):
        raise ValueError("no pw-1234 here")
    with pytest.raises(RuntimeError, match=r"^\*\*\* refused$"), _secrets_hidden(url):
        raise Picky(1, "pw-1234 refused")
    original = KeyError("nothing secret")
    with pytest.raises(KeyError) as kept, _secrets_hidden(url):
        raise original
    assert kept.value is original


async def test_a_take_over_of_many_pages_takes_all_in_order_and_forgets_the_dead(
    redis_server: RedisServer,
) -> None:
    """More entries left pending by a dead consumer than one XAUTOCLAIM page (500): all
    come first, in order, and the dead consumer is removed from the group."""
    name = unique("pages")
    stream = f"actorflow:{name}:numbers.out>keep.in"
    left = 1200
    async with connect(redis_server.url) as client:
        await client.xgroup_create(stream, "keep", identifier="0", mkstream=True)
        for n in range(-left, 0):
            await client.xadd(stream, {b"p": encode([af.Data(fields={"n": n})])})
        await client.xreadgroup("keep", "dead", streams={stream: ">"}, count=left)
    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, ttl=600)
    with trio.fail_after(30):
        async with af.open_system(graph_of(name, 3, remote, got)):
            pass
    assert [d.fields["n"] for d in got] == [*range(-left, 0), 0, 1, 2]
    assert (await leftovers(redis_server.url, name))["consumers"] == 0
