"""Small modules the runtime tests build graphs from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import trio

import actorflow as af


class Numbers(af.Source):
    """Emits ``range(count)`` from a sync generator."""

    outputs: ClassVar = {"out": int}

    def __init__(self, count: int = 10, journal: list[str] | None = None) -> None:
        self.count = count
        self.journal = journal if journal is not None else []

    def start(self) -> Iterable[int]:
        self.journal.append(f"start:{self.name}")
        yield from range(self.count)

    def cleanup(self) -> None:
        self.journal.append(f"cleanup:{self.name}")


class Items(af.Source):
    """Emits the given items as they are (the same objects)."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = list(items)

    def start(self) -> list[Any]:
        return self.items


class Add(af.Processor):
    """Adds ``amount`` to each item."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, amount: int = 1, journal: list[str] | None = None) -> None:
        self.amount = amount
        self.journal = journal if journal is not None else []

    def process(self, data: int) -> int:
        return data + self.amount

    def cleanup(self) -> None:
        self.journal.append(f"cleanup:{self.name}")


class Collect(af.Sink):
    """Appends every item to ``into``."""

    def __init__(self, into: list[Any], journal: list[str] | None = None) -> None:
        self.into = into
        self.journal = journal if journal is not None else []

    def consume(self, data: Any) -> None:
        self.into.append(data)

    def cleanup(self) -> None:
        self.journal.append(f"cleanup:{self.name}")


class Forever(af.Source):
    """Emits increasing ints while active, sleeping ``interval`` between them."""

    outputs: ClassVar = {"out": int}

    def __init__(self, interval: float = 1.0, journal: list[str] | None = None) -> None:
        self.interval = interval
        self.journal = journal if journal is not None else []

    async def start(self) -> None:
        n = 0
        while self.active:
            await self.emit(n)
            n += 1
            await trio.sleep(self.interval)

    def stop(self) -> None:
        self.journal.append(f"stop:{self.name}")

    def cleanup(self) -> None:
        self.journal.append(f"cleanup:{self.name}")


class Pass(af.Processor):
    """Passes each item on unchanged."""

    def process(self, data: Any) -> Any:
        return data
