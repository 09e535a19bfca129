"""The shared data store: namespaced values, lossless, persistent, safe with writers; in
memory, in an SQLite file, or on a Redis server, behind one async API."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from redis_server import RedisServer
from sample_modules import Numbers

import actorflow as af


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[af.Store]:
    if request.param == "memory":
        yield af.MemoryStore()
    elif request.param == "sqlite":
        made = af.SQLiteStore(tmp_path / "s.db")
        yield made
        await made.aclose()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"test:{uuid.uuid4().hex[:8]}"
        async with af.RedisStore(server.url, prefix=prefix) as redis_store:
            yield redis_store


async def test_values_round_trip_exactly_and_never_alias(store: af.Store) -> None:
    """What comes back equals what went in (types kept) and is a fresh object."""
    value = {"bounds": (1, 2), "tags": {"a", "b"}, "raw": b"\x00\x01", "n": 2**70}
    await store.put("Calibrate", "table", value)
    back = await store.get("Calibrate", "table")
    assert back == value
    assert back is not value
    back["n"] = 0
    assert (await store.get("Calibrate", "table"))["n"] == 2**70


async def test_names_are_namespaced_by_module(store: af.Store) -> None:
    """The same name under two modules is two values; names() lists one module's."""
    await store.put("A", "x", 1)
    await store.put("B", "x", 2)
    await store.put("A", "y", 3)
    assert (await store.get("A", "x"), await store.get("B", "x")) == (1, 2)
    assert await store.names("A") == ["x", "y"]
    await store.delete("A", "x")
    await store.delete("A", "missing")  # deleting what is not there is fine
    assert await store.names("A") == ["y"]
    assert await store.get("A", "x", None) is None
    with pytest.raises(KeyError, match="no shared data A/x"):
        await store.get("A", "x")


async def test_a_value_that_cannot_be_serialised_is_refused_and_changes_nothing(
    store: af.Store,
) -> None:
    """An object without a lossless msgpack form is refused, naming where it is."""
    await store.put("A", "cfg", {"ok": 1})
    with pytest.raises(af.SerializationError, match=r"shared data A/cfg: value\['bad'\]"):
        await store.put("A", "cfg", {"bad": object()})
    assert await store.get("A", "cfg") == {"ok": 1}


def run_script(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip()


def test_sqlite_data_survives_a_restart_of_the_program(tmp_path: Path) -> None:
    """A value written by one process is read back by the next."""
    path = tmp_path / "shared.db"
    opening = f"import trio, actorflow as af\ns = af.SQLiteStore({str(path)!r})\n"
    run_script(opening + "trio.run(s.put, 'Job', 'done', [1, 2])\ntrio.run(s.aclose)")
    assert run_script(opening + "print(trio.run(s.get, 'Job', 'done'))") == "[1, 2]"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("{tmp}", "it is a directory"),
        ("{tmp}/missing/x.db", "its directory '{tmp}/missing' does not exist"),
        ("{tmp}/junk.db", "file is not a database"),
        ("", "the path is empty"),
        ("/dev/null", "it is not a regular file"),
        ("{tmp}/a\0b", "embedded null byte"),
        ("/proc/no-such.db", ""),
    ],
)
def test_a_path_sqlite_cannot_open_is_a_store_error_naming_it(
    tmp_path: Path, where: str, reason: str
) -> None:
    """Not a raw sqlite3.OperationalError ("unable to open database file") without the path."""
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    path = where.format(tmp=tmp_path)
    with pytest.raises(af.StoreError) as caught:
        af.SQLiteStore(path)
    assert str(caught.value).startswith(
        f"{path!r}: cannot open it as a store: {reason.format(tmp=tmp_path)}"
    )
    assert isinstance(caught.value, OSError)
    assert caught.value.path == path


def test_redis_data_is_shared_between_processes(redis_server: RedisServer) -> None:
    """What one process puts, another (on another machine, as well) reads."""
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    script = """
import sys, trio, actorflow as af
async def main():
    async with af.RedisStore({url!r}, prefix={prefix!r}) as store:
        {body}
trio.run(main)
"""
    run_script(
        script.format(
            url=redis_server.url, prefix=prefix, body="await store.put('Job', 'done', [1, 2])"
        )
    )
    read = "print(await store.get('Job', 'done'))"
    assert run_script(script.format(url=redis_server.url, prefix=prefix, body=read)) == "[1, 2]"


async def test_a_redis_store_used_without_opening_it_says_how() -> None:
    store = af.RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(RuntimeError, match="use `async with RedisStore"):
        await store.get("A", "x")


async def test_concurrent_writers_never_corrupt_the_sqlite_store(tmp_path: Path) -> None:
    """Tasks of this process (each write in a worker thread) and another process write
    at once; every write lands and the file is intact."""
    path = tmp_path / "busy.db"
    store = af.SQLiteStore(path)
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import trio, actorflow as af\ns = af.SQLiteStore({str(path)!r})\n"
            "async def main():\n"
            "    for i in range(300): await s.put('Other', f'k{i}', i)\n"
            "trio.run(main)",
        ]
    )

    async def writer(index: int) -> None:
        for i in range(200):
            await store.put(f"T{index}", f"k{i}", [index, i])
            await store.put("Shared", "last", index)

    async with trio.open_nursery() as nursery:
        for index in range(4):
            nursery.start_soon(writer, index)
    assert await trio.to_thread.run_sync(lambda: other.wait(timeout=60)) == 0
    for index in range(4):
        assert len(await store.names(f"T{index}")) == 200
        assert await store.get(f"T{index}", "k199") == [index, 199]
    assert len(await store.names("Other")) == 300
    assert await store.get("Shared", "last") in range(4)
    await store.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


class Counter(af.Sink):
    """Notes what it saw in the shared data of its kind."""

    async def consume(self, data: int) -> None:
        await self.shared.put(f"{self.name}:{data}", data)


async def test_modules_of_a_kind_share_their_data_through_the_system_store(
    store: af.Store,
) -> None:
    """self.shared is namespaced by the module's class; the host sees the same store."""
    graph = af.Graph()
    graph.add("a", Numbers, count=3)
    graph.add("b", Numbers, count=4)
    graph.add("count_a", Counter)
    graph.add("count_b", Counter)
    graph.link("a", "count_a")
    graph.link("b", "count_b")
    async with af.open_system(graph, store=store) as system:
        pass
    assert system.store is store
    names = await store.names("Counter")
    assert len(names) == 7
    assert await store.get("Counter", "count_b:3") == 3
    assert await store.names("Numbers") == []


def test_processes_opening_a_new_sqlite_store_at_once_all_open_it(tmp_path: Path) -> None:
    """A producer and a consumer process started together on one new SQLite file: the
    switch to WAL did not wait for the other's lock (``database is locked`` at once);
    every process now opens it."""
    path = tmp_path / "state.db"
    code = (
        "import sys, trio, actorflow as af\n"
        "store = af.SQLiteStore(sys.argv[1])\n"
        "for _ in range(20):\n    trio.run(store.put, 'm', sys.argv[2], 1)\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), f"p{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(16)
    ]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 16, errors
    store = af.SQLiteStore(path)
    assert trio.run(store.names, "m") == sorted(f"p{n}" for n in range(16))
