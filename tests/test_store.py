"""The shared data store: namespaced values, lossless, persistent, safe with writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sample_modules import Numbers

import actorflow as af


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    made: af.Store = (
        af.MemoryStore() if request.param == "memory" else af.SQLiteStore(tmp_path / "s.db")
    )
    yield made
    made.close()


def test_values_round_trip_exactly_and_never_alias(store: af.Store) -> None:
    """What comes back equals what went in (types kept) and is a fresh object."""
    value = {"bounds": (1, 2), "tags": {"a", "b"}, "raw": b"\x00\x01", "n": 2**70}
    store.put("Calibrate", "table", value)
    back = store.get("Calibrate", "table")
    assert back == value
    assert back is not value
    back["n"] = 0
    assert store.get("Calibrate", "table")["n"] == 2**70


def test_names_are_namespaced_by_module(store: af.Store) -> None:
    """The same name under two modules is two values; names() lists one module's."""
    store.put("A", "x", 1)
    store.put("B", "x", 2)
    store.put("A", "y", 3)
    assert (store.get("A", "x"), store.get("B", "x")) == (1, 2)
    assert store.names("A") == ["x", "y"]
    store.delete("A", "x")
    store.delete("A", "missing")  # deleting what is not there is fine
    assert store.names("A") == ["y"]
    assert store.get("A", "x", None) is None
    with pytest.raises(KeyError, match="no shared data A/x"):
        store.get("A", "x")


def test_a_value_that_cannot_be_serialised_is_refused_and_changes_nothing(store: af.Store) -> None:
    """An object without a lossless msgpack form is refused, naming where it is."""
    store.put("A", "cfg", {"ok": 1})
    with pytest.raises(af.SerializationError, match=r"shared data A/cfg: value\['bad'\]"):
        store.put("A", "cfg", {"bad": object()})
    assert store.get("A", "cfg") == {"ok": 1}


def test_sqlite_data_survives_a_restart_of_the_program(tmp_path: Path) -> None:
    """A value written by one process is read back by the next."""
    path = tmp_path / "shared.db"
    opening = f"import actorflow as af; s = af.SQLiteStore({str(path)!r}); "
    write = opening + "s.put('Job', 'done', [1, 2]); s.close()"
    read = (
        f"import actorflow as af; s = af.SQLiteStore({str(path)!r}); print(s.get('Job', 'done'))"
    )
    subprocess.run([sys.executable, "-c", write], check=True)
    result = subprocess.run(
        [sys.executable, "-c", read], check=True, capture_output=True, text=True
    )
    assert result.stdout.strip() == "[1, 2]"


def test_concurrent_writers_never_corrupt_the_sqlite_store(tmp_path: Path) -> None:
    """Threads of this process and another process write at once; every write lands."""
    path = tmp_path / "busy.db"
    store = af.SQLiteStore(path)
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import actorflow as af\ns = af.SQLiteStore({str(path)!r})\n"
            "for i in range(300): s.put('Other', f'k{i}', i)\ns.close()",
        ]
    )

    def writer(index: int) -> None:
        for i in range(200):
            store.put(f"T{index}", f"k{i}", [index, i])
            store.put("Shared", "last", index)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert other.wait(timeout=60) == 0
    for index in range(4):
        assert len(store.names(f"T{index}")) == 200
        assert store.get(f"T{index}", "k199") == [index, 199]
    assert len(store.names("Other")) == 300
    assert store.get("Shared", "last") in range(4)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


class Counter(af.Sink):
    """Counts what it saw in the shared data of its kind."""

    def consume(self, data: int) -> None:
        self.shared.put("seen", self.shared.get("seen", 0) + 1)


async def test_modules_of_a_kind_share_their_data_through_the_system_store() -> None:
    """self.shared is namespaced by the module's class; the host sees the same store."""
    store = af.MemoryStore()
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
    assert store.get("Counter", "seen") == 7
    assert store.names("Numbers") == []
