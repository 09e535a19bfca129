"""Run actorflow systems inside an asyncio application, through trio's guest mode::

    import asyncio
    from actorflow import aio

    async def main():
        async with aio.open_system(graph) as system:
            await system.send("requests", item)
            async for result in system.receive("results"):
                ...

    asyncio.run(main())

See :func:`open_system` for the lifetime rules and what cancellation does.
"""

from ._aio import AioSystem, SystemEndedError, open_system, run

__all__ = ["AioSystem", "SystemEndedError", "open_system", "run"]
