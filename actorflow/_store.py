"""The shared data store: values every module of a kind can read and write.

Values are namespaced by module (by default a module's class name, so every instance of
a kind shares them) and stored as msgpack with actorflow's lossless codec, so what comes
back is equal to what went in and never aliases it. :class:`MemoryStore` lives as long as
the process; :class:`SQLiteStore` keeps the data in a file, across restarts of the
program, and is safe with several writers (threads or processes); ``RedisStore`` (the
``redis`` extra) shares it between processes and machines. Every operation is async.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import attrs
import trio

from ._data import decode, encode
from ._exceptions import SerializationError, StoreError

__all__ = ["Encoded", "MemoryStore", "ModuleData", "SQLiteStore", "Store"]

T = TypeVar("T")

MISSING: Any = object()
"""The default of ``get`` that means "raise KeyError"; shared with every store."""


@attrs.frozen
class Encoded:
    """A value already encoded by the caller (a snapshot, checked as it was encoded):
    a store whose ``takes_encoded`` is true stores ``payload`` as it is, not encoding
    the value a second time."""

    payload: bytes


def encode_value(module: str, name: str, value: Any) -> bytes:
    """``value`` as stored bytes; a value that cannot be stored names its key."""
    if type(value) is Encoded:
        return value.payload
    try:
        return encode(value)
    except SerializationError as error:
        raise SerializationError(
            f"shared data {module}/{name}: {error.path}", str(error).split(": ", 1)[-1]
        ) from None


class Store(Protocol):
    """What a shared data store offers; see :class:`MemoryStore`, :class:`SQLiteStore`
    and :class:`RedisStore`. Every operation is async: a store may be a file or a server."""

    async def get(self, module: str, name: str, default: Any = ...) -> Any: ...

    async def put(self, module: str, name: str, value: Any) -> None: ...

    async def delete(self, module: str, name: str) -> None: ...

    async def names(self, module: str) -> list[str]: ...

    async def aclose(self) -> None: ...


def decode_value(module: str, name: str, payload: bytes | None, default: Any) -> Any:
    """What a store read back for ``module``/``name``: the value, ``default``, or KeyError."""
    if payload is None:
        if default is MISSING:
            raise KeyError(f"no shared data {module}/{name}")
        return default
    return decode(payload)


class MemoryStore:
    """Shared data in memory, for the life of the process. The default."""

    takes_encoded: ClassVar[bool] = True

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], bytes] = {}

    async def get(self, module: str, name: str, default: Any = MISSING) -> Any:
        """The value of ``module``/``name``.

        Raises:
            KeyError: It is not set and no ``default`` was given.
        """
        return decode_value(module, name, self._values.get((module, name)), default)

    async def put(self, module: str, name: str, value: Any) -> None:
        """Set ``module``/``name``.

        Raises:
            SerializationError: ``value`` has no lossless msgpack form; nothing changed.
        """
        self._values[(module, name)] = encode_value(module, name, value)

    async def delete(self, module: str, name: str) -> None:
        """Remove ``module``/``name`` (no error if it is not set)."""
        self._values.pop((module, name), None)

    async def names(self, module: str) -> list[str]:
        """The names set under ``module``, sorted."""
        return sorted(name for mod, name in self._values if mod == module)

    async def aclose(self) -> None:
        """Nothing to release."""


def _why_not(path: Path, error: Exception) -> str:
    """What is wrong with ``path``, in words, rather than SQLite's "unable to open"."""
    try:
        if path.is_dir():
            return "it is a directory"
        if not path.parent.is_dir():
            return f"its directory {str(path.parent)!r} does not exist"
        if path.exists() and not path.is_file():
            return "it is not a regular file"
        if path.exists() and not os.access(path, os.W_OK):
            return "it is not writable"
        if not path.exists() and not os.access(path.parent, os.W_OK):
            return f"no permission to create files in {str(path.parent)!r}"
    except (OSError, ValueError):
        pass
    return str(error) or type(error).__name__


class SQLiteStore:
    """Shared data in an SQLite file: it survives restarts of the program.

    Every write is its own transaction, and SQLite serialises writers (threads of this
    process through a lock, other processes through the file lock, waiting up to
    ``timeout`` seconds), so concurrent writers never corrupt it. Each operation runs in
    a worker thread, so a slow disk never holds the event loop.
    """

    takes_encoded: ClassVar[bool] = True

    def __init__(self, path: str | Path, *, timeout: float = 10.0) -> None:
        """Open (or create) the store at ``path``.

        Raises:
            StoreError: ``path`` is empty, a directory, in a missing directory, not an
                SQLite database, or cannot be opened for writing; the message names it.
        """
        import sqlite3  # only a run that asks for this store pays for the import

        self.path = Path(path)
        self._lock = threading.Lock()
        if not str(path):
            raise StoreError(path, "the path is empty")
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a NUL byte in the path
            raise StoreError(path, _why_not(self.path, exc)) from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._set_up()
                return
            except sqlite3.OperationalError as exc:
                # Two processes opening a new file at once: switching it to WAL does
                # not wait for the other's lock as writes do, so wait here.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                self._db.close()
                raise StoreError(path, _why_not(self.path, exc)) from exc
            except sqlite3.Error as exc:
                self._db.close()
                raise StoreError(path, _why_not(self.path, exc)) from exc

    def _set_up(self) -> None:
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS shared ("
                "module TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, "
                "PRIMARY KEY (module, name))"
            )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    def _load(self, module: str, name: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM shared WHERE module = ? AND name = ?", (module, name)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def _store(self, module: str, name: str, payload: bytes) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO shared (module, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (module, name) DO UPDATE SET value = excluded.value",
                (module, name, payload),
            )

    def _remove(self, module: str, name: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM shared WHERE module = ? AND name = ?", (module, name))

    def _names(self, module: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM shared WHERE module = ? ORDER BY name", (module,)
            ).fetchall()
        return [row[0] for row in rows]

    async def get(self, module: str, name: str, default: Any = MISSING) -> Any:
        """The value of ``module``/``name`` (see :meth:`MemoryStore.get`)."""
        return decode_value(module, name, await self._run(self._load, module, name), default)

    async def put(self, module: str, name: str, value: Any) -> None:
        """Set ``module``/``name`` (see :meth:`MemoryStore.put`)."""
        payload = encode_value(module, name, value)
        await self._run(self._store, module, name, payload)

    async def delete(self, module: str, name: str) -> None:
        """Remove ``module``/``name`` (no error if it is not set)."""
        await self._run(self._remove, module, name)

    async def names(self, module: str) -> list[str]:
        """The names set under ``module``, sorted."""
        return await self._run(self._names, module)

    async def aclose(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


class ModuleData:
    """A module's view of the store: ``await self.shared.get(name)`` and so on, in the
    module's namespace."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    async def get(self, name: str, default: Any = MISSING) -> Any:
        """The value of ``name`` in this module's namespace (see :meth:`MemoryStore.get`)."""
        if default is MISSING:
            return await self.store.get(self.namespace, name)
        return await self.store.get(self.namespace, name, default)

    async def put(self, name: str, value: Any) -> None:
        """Set ``name`` in this module's namespace."""
        await self.store.put(self.namespace, name, value)

    async def delete(self, name: str) -> None:
        """Remove ``name`` from this module's namespace."""
        await self.store.delete(self.namespace, name)

    async def names(self) -> list[str]:
        """The names set in this module's namespace."""
        return await self.store.names(self.namespace)
