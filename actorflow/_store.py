"""The shared data store: values every module of a kind can read and write.

Values are namespaced by module (by default a module's class name, so every instance of
a kind shares them) and stored as msgpack with actorflow's lossless codec, so what comes
back is equal to what went in and never aliases it. :class:`MemoryStore` lives as long as
the process; :class:`SQLiteStore` keeps the data in a file, across restarts of the
program, and is safe with several writers (threads or processes).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from ._data import decode, encode
from ._exceptions import SerializationError

__all__ = ["MemoryStore", "ModuleData", "SQLiteStore", "Store"]

_MISSING: Any = object()


def _encode(module: str, name: str, value: Any) -> bytes:
    try:
        return encode(value)
    except SerializationError as error:
        raise SerializationError(
            f"shared data {module}/{name}: {error.path}", str(error).split(": ", 1)[-1]
        ) from None


class Store(Protocol):
    """What a shared data store offers; see :class:`MemoryStore` and :class:`SQLiteStore`."""

    def get(self, module: str, name: str, default: Any = ...) -> Any: ...

    def put(self, module: str, name: str, value: Any) -> None: ...

    def delete(self, module: str, name: str) -> None: ...

    def names(self, module: str) -> list[str]: ...

    def close(self) -> None: ...


class _Base:
    def get(self, module: str, name: str, default: Any = _MISSING) -> Any:
        """The value of ``module``/``name``.

        Raises:
            KeyError: It is not set and no ``default`` was given.
        """
        payload = self._load(module, name)
        if payload is None:
            if default is _MISSING:
                raise KeyError(f"no shared data {module}/{name}")
            return default
        return decode(payload)

    def _load(self, module: str, name: str) -> bytes | None:
        raise NotImplementedError


class MemoryStore(_Base):
    """Shared data in memory, for the life of the process. The default."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def _load(self, module: str, name: str) -> bytes | None:
        return self._values.get((module, name))

    def put(self, module: str, name: str, value: Any) -> None:
        """Set ``module``/``name``.

        Raises:
            SerializationError: ``value`` has no lossless msgpack form; nothing changed.
        """
        payload = _encode(module, name, value)
        with self._lock:
            self._values[(module, name)] = payload

    def delete(self, module: str, name: str) -> None:
        """Remove ``module``/``name`` (no error if it is not set)."""
        with self._lock:
            self._values.pop((module, name), None)

    def names(self, module: str) -> list[str]:
        """The names set under ``module``, sorted."""
        return sorted(name for mod, name in list(self._values) if mod == module)

    def close(self) -> None:
        """Nothing to release."""


class SQLiteStore(_Base):
    """Shared data in an SQLite file: it survives restarts of the program.

    Every write is its own transaction, and SQLite serialises writers (threads of this
    process through a lock, other processes through the file lock, waiting up to
    ``timeout`` seconds), so concurrent writers never corrupt it.
    """

    def __init__(self, path: str | Path, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS shared ("
                "module TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, "
                "PRIMARY KEY (module, name))"
            )

    def _load(self, module: str, name: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM shared WHERE module = ? AND name = ?", (module, name)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, module: str, name: str, value: Any) -> None:
        """Set ``module``/``name``.

        Raises:
            SerializationError: ``value`` has no lossless msgpack form; nothing changed.
        """
        payload = _encode(module, name, value)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO shared (module, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (module, name) DO UPDATE SET value = excluded.value",
                (module, name, payload),
            )

    def delete(self, module: str, name: str) -> None:
        """Remove ``module``/``name`` (no error if it is not set)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM shared WHERE module = ? AND name = ?", (module, name))

    def names(self, module: str) -> list[str]:
        """The names set under ``module``, sorted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM shared WHERE module = ? ORDER BY name", (module,)
            ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


class ModuleData:
    """A module's view of the store: ``self.shared.get(name)`` and so on, in the
    module's namespace."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The value of ``name`` in this module's namespace (see :meth:`MemoryStore.get`)."""
        if default is _MISSING:
            return self.store.get(self.namespace, name)
        return self.store.get(self.namespace, name, default)

    def put(self, name: str, value: Any) -> None:
        """Set ``name`` in this module's namespace."""
        self.store.put(self.namespace, name, value)

    def delete(self, name: str) -> None:
        """Remove ``name`` from this module's namespace."""
        self.store.delete(self.namespace, name)

    def names(self) -> list[str]:
        """The names set in this module's namespace."""
        return self.store.names(self.namespace)
