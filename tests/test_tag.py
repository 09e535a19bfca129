"""Tag modules: return key/value pairs; the runtime merges them into each item."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from sample_modules import Collect, Items

import actorflow as af


class Unit(af.Tag):
    def tag(self, data: Any) -> dict[str, Any]:
        return {"unit": "C", "sensor": "replaced"}


class AsyncSite(af.Tag):
    into = "tags"

    async def tag(self, data: Any) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"site": "lab"}


class KeepExisting(af.Tag):
    overwrite = False

    def tag(self, data: Any) -> dict[str, Any]:
        return {"unit": "F", "sensor": "ignored"}


class Nothing(af.Tag):
    def tag(self, data: Any) -> None:
        return None


async def run_one(tag: type[af.Tag], item: Any) -> Any:
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Items, items=[item])
    graph.add("tag", tag)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "tag", "sink")
    async with af.open_system(graph):
        pass
    [result] = out
    return result


async def test_tag_pairs_are_merged_into_data_fields_keeping_the_id() -> None:
    """By default the pairs go into fields, replacing existing keys; the id is kept."""
    item = af.Data(fields={"sensor": "t0", "value": 21.5})
    result = await run_one(Unit, item)
    assert result.fields == {"sensor": "replaced", "value": 21.5, "unit": "C"}
    assert result.id == item.id


async def test_an_async_tag_can_write_into_tags() -> None:
    """tag() may be async, and into='tags' merges into the item's tags."""
    item = af.Data(fields={"value": 1}, tags={"sensor": "t0"})
    result = await run_one(AsyncSite, item)
    assert result.tags == {"sensor": "t0", "site": "lab"}
    assert result.fields == {"value": 1}


async def test_overwrite_false_keeps_existing_keys() -> None:
    """With overwrite=False, keys the item already has win."""
    result = await run_one(KeepExisting, af.Data(fields={"sensor": "t0"}))
    assert result.fields == {"sensor": "t0", "unit": "F"}


async def test_a_plain_dict_item_is_its_own_fields() -> None:
    """A dict item gets the pairs as keys."""
    assert await run_one(Unit, {"value": 3}) == {"value": 3, "unit": "C", "sensor": "replaced"}


async def test_no_pairs_forward_the_item_unchanged() -> None:
    """tag() returning None leaves the item as it is."""
    item = af.Data(fields={"value": 1})
    assert await run_one(Nothing, item) is item


async def test_tagging_an_item_that_cannot_take_pairs_names_the_type() -> None:
    """A Tag module given an int fails the item with a clear message (dead-lettered)."""
    graph = af.Graph()
    graph.add("src", Items, items=[5])
    graph.add("tag", Unit)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "tag", "sink")
    async with af.open_system(graph) as system:
        pass
    [letter] = system.dead_letters
    assert "merges into Data (fields or tags) or into a dict's keys; got int" in str(letter.error)


def test_tag_modules_are_processors() -> None:
    """A Tag is a processor: it links like one."""
    assert issubclass(af.Tag, af.Processor)
    with pytest.raises(NotImplementedError, match="must implement tag"):
        af.Tag().tag(1)
