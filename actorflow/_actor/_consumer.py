"""The consumer driver: processors and sinks handle what arrives, batch by batch.

The main loop takes a batch from one link at a time (round robin) and hands it to that
link's *item handler*, built once per incarnation from the hook's shape (sync, async,
generator; with or without the port; collecting results or not; in a thread when the
module blocks). Links with ``workers != 1`` are served by a crew of their own tasks,
including one added while the incarnation runs (:meth:`ConsumerDriver.link_added`).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from itertools import islice
from operator import length_hint
from typing import Any

import trio

from .._exceptions import RunError
from .._hooks import (
    HookStyle,
    accepts_port,
    call_item_hook,
    hook_style,
    learn_style,
    learned_sync,
    result_style,
    results_of,
)
from .._link import Link, Mailbox
from .._module import BATCH_HOOKS, Many, ModuleKind, Tag, batch_hook
from .._status import ActorState
from ._batching import BatchHook
from ._fusion import Fusion
from ._incarnation import Incarnation, Stop
from ._pacing import Pacing
from ._room import Room, spans_done

__all__ = ["ConsumerDriver"]

_Handler = Callable[[Link, list[Any]], Awaitable[None]]


class ConsumerDriver:
    """Runs one incarnation of a processor or a sink."""

    __slots__ = (
        "_added",
        "_batch",
        "_crew",
        "_failure",
        "_fusion",
        "_handlers",
        "_journal",
        "_main_ended",
        "collect",
        "hook",
        "hook_name",
        "incarnation",
        "probe_key",
        "room",
        "style",
        "with_port",
    )

    def __init__(self, room: Room, incarnation: Incarnation) -> None:
        self.room = room
        self.incarnation = incarnation
        module: Any = room.module
        processor = room.kind is ModuleKind.PROCESSOR
        hook, self.hook_name, shape = _item_hook(module, processor)
        self.probe_key: Callable[..., Any] | None = shape
        self.collect = processor
        self.style = hook_style(shape)
        self.with_port = accepts_port(hook)
        self._batch: BatchHook | None = None
        """Set for a module with a batch hook: its calls, one per batch."""
        if self.hook_name.removesuffix("()") in BATCH_HOOKS:
            batch = self._batch = BatchHook(
                room, incarnation, shape, self.hook_name, self._give_back, self._item_failed
            )
            self.probe_key = None
            if module.blocking and batch.style is HookStyle.SYNC:
                batch.style, batch.probing = HookStyle.ASYNC, False
                hook = partial(room.in_thread, _batch_in_thread, hook)
        elif module.blocking and self.style in (HookStyle.SYNC, HookStyle.SYNC_GEN):
            hook = self._threaded(hook, gathered=self.style is HookStyle.SYNC_GEN)
            self.style = HookStyle.ASYNC
        if self.style is not HookStyle.SYNC or learned_sync(shape):
            self.probe_key = None
        self.hook: Callable[..., Any] = hook
        self._handlers: dict[Link, _Handler] = {}
        self._crew: trio.Nursery | None = None
        """Open while links with their own workers are served."""
        self._failure: RunError | None = None
        """The first module failure in the crew; it ends the incarnation."""
        self._added: list[Link] | None = None
        """Links with their own workers added before a crew was open to serve them."""
        self._main_ended = False
        """The crew's main loop returned (no regular input was left to read)."""
        self._journal = incarnation.journal
        """Set for a module with snapshot(): its handlers journal what they handle."""
        self._fusion: Fusion | None = None
        if room.settings.fuse and not module.blocking and self._journal is None:
            self._fusion = Fusion(room, incarnation, self._handler_for, self._fusable)

    def _fusable(self) -> bool:
        """Whether a producer may run this incarnation's hook by call now: a plain sync
        hook (its shape learned), served by the main loop alone."""
        if self._batch is not None:
            sync = self._batch.fusable
        else:
            sync = self.style is HookStyle.SYNC and self.probe_key is None
        return sync and self._crew is None and self._added is None

    def _threaded(self, hook: Callable[..., Any], *, gathered: bool) -> Callable[..., Any]:
        """A blocking module's sync hook, called in a worker thread."""
        in_thread = self.room.in_thread

        async def threaded(*args: Any) -> Any:
            if gathered:
                return Many(await in_thread(lambda: list(hook(*args))))
            # A decorator without functools.wraps can hide an async def (what it
            # returns is awaited by the thread call itself, Threads.run) or a
            # generator function (gathered in the thread too, or here if async).
            result = await in_thread(lambda: _gathered(hook(*args)))
            style = result_style(result)
            return await results_of(result, style) if style is HookStyle.ASYNC_GEN else result

        return threaded

    def _for_port(self, link: Link) -> Callable[..., Any]:
        hook = self.hook
        if not self.with_port:
            return hook
        port = link.spec.target_port
        return lambda item: hook(item, port)

    def _handler(self, link: Link) -> _Handler:
        """The item handler of ``link`` (made once per incarnation and link)."""
        handle = self._bare_handler(link)
        journal = self._journal
        if journal is None:
            return handle
        return journal.wrap(handle, self._requeue)

    def _bare_handler(self, link: Link) -> _Handler:
        fn = self._for_port(link)
        if self._batch is not None:
            return self._batch.handler(fn)
        if self.probe_key is not None:
            return partial(self._handle_probe, fn)
        if self.style is HookStyle.SYNC:
            return partial(self._handle_sync, fn)
        return partial(self._handle_general, fn)

    def run(self) -> Awaitable[None]:
        """The loop of this incarnation (given back, not awaited here: an idle actor
        waits inside it, and one frame fewer is less memory per actor)."""
        dedicated = [link for link in self.room.mailbox.links if link.dedicated]
        if dedicated:
            return self._run_crew(dedicated)
        if self._fusion is not None:
            return self._fused_main_loop(self._fusion)
        return self._main_loop()

    async def _fused_main_loop(self, fusion: Fusion) -> None:
        """The main loop, after which no producer's call may still be in the module."""
        try:
            await self._main_loop()
        finally:
            await fusion.release()

    async def _run_crew(self, dedicated: list[Link]) -> None:
        """The main loop plus the worker tasks of links with ``workers != 1``; the first
        module failure in any of them cancels the others (their items go back)."""
        try:
            async with trio.open_nursery() as crew:
                self._crew = crew
                crew.start_soon(self._guarded, self._crew_main_loop)
                for link in dedicated:
                    self._start_workers(crew, link)
        finally:
            self._crew = None
        if self._failure is not None:
            raise self._failure

    async def _crew_main_loop(self) -> None:
        """The crew's main loop, noting its end so a regular link added later gets one."""
        await self._main_loop()
        self._main_ended = True

    async def _guarded(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run one task of the crew: a stop ends it; a failure ends the whole crew."""
        try:
            await work(*args)
        except Stop:
            pass
        except RunError as error:
            if self._failure is None:
                self._failure = error
            if self._crew is not None:
                self._crew.cancel_scope.cancel()

    def _start_workers(self, crew: trio.Nursery, link: Link) -> None:
        fn = self._for_port(link)
        handle: _Handler
        if self._batch is not None:
            handle = self._batch.handler(fn)  # a batch of one item at a time
        else:
            handle = partial(self._handle_general, fn)
        if self._journal is not None:
            handle = self._journal.wrap(handle, self._requeue)
        if link.spec.workers == 0:
            crew.start_soon(self._guarded, self._spawner, link, handle)
        else:
            for _ in range(link.spec.workers):
                crew.start_soon(self._guarded, self._link_worker, link, handle)

    def link_added(self, link: Link) -> None:
        """A link was added into this actor while it runs: one with workers of its own
        gets them now; the main loop serves the others as it finds them (a crew whose
        main loop had ended, all its inputs having workers, starts a new one)."""
        crew = self._crew
        if self._fusion is not None:
            self._fusion.unlink()  # it re-arms only while one link feeds it
        if not link.dedicated:
            if crew is not None and self._main_ended:
                self._main_ended = False
                crew.start_soon(self._guarded, self._crew_main_loop)
            return
        if crew is not None:
            self._start_workers(crew, link)
            return
        # No crew yet: the main loop opens one when it wakes. Links removed again
        # meanwhile, drained, are forgotten: add/remove cycles leave nothing waiting.
        if self._added is None:
            self._added = []
        self._added = [held for held in self._added if not (held.removed and not held.items)]
        self._added.append(link)
        self.room.mailbox.notify()

    async def _serve_added(self) -> bool:
        """Start the workers of links added meanwhile. True when this main loop has
        handed over to a crew (which ran its own main loop to the end)."""
        added, self._added = self._added or [], None
        added = [link for link in added if not (link.removed and not link.items)]
        crew = self._crew
        if crew is not None:
            for link in added:
                self._start_workers(crew, link)
            return False
        await self._run_crew(added)
        return True

    def _took_one(self, link: Link) -> list[Any]:
        room = self.room
        batch = link.take(1)
        _received(room, link, batch)
        room.set_state(ActorState.RUNNING)
        return batch

    async def _link_worker(self, link: Link, handle: _Handler) -> None:
        """One of a link's N workers: take one item at a time, in turn with the others."""
        incarnation, mailbox = self.incarnation, self.room.mailbox
        while not incarnation.stopping:
            if link.items:
                batch = self._took_one(link)
                try:
                    await handle(link, batch)
                finally:
                    spans_done(self.room, batch)
            elif link.closed:
                return
            else:
                await mailbox.wait()

    async def _spawner(self, link: Link, handle: _Handler) -> None:
        """Spawn mode: a fresh task per item, at most ``spawn_limit`` at once."""
        incarnation, mailbox = self.incarnation, self.room.mailbox
        slots = trio.Semaphore(link.spec.spawn_limit)

        async def one(batch: list[Any]) -> None:
            try:
                await handle(link, batch)
            finally:
                slots.release()
                spans_done(self.room, batch)

        async with trio.open_nursery() as tasks:
            while not incarnation.stopping:
                if link.items:
                    await slots.acquire()
                    if not link.items or incarnation.stopping:
                        slots.release()
                        continue
                    tasks.start_soon(self._guarded, one, self._took_one(link))
                elif link.closed:
                    return
                else:
                    await mailbox.wait()

    async def _main_loop(self) -> None:
        room, incarnation = self.room, self.incarnation
        mailbox, pacing = room.mailbox, room.pacing
        limit = room.settings.max_batch
        handlers = self._handlers
        isolated = room.retries.isolated  # while set, batches of one (see _batching)
        if self._batch is None:
            isolated.clear()  # a per-item hook names the item it fails on itself
        feedback_closed = not any(link.spec.feedback for link in mailbox.links)
        while not incarnation.stopping:
            if self._added is not None and await self._serve_added():
                return
            got = mailbox.take(1 if isolated else limit)
            if got is None:
                isolated.clear()  # none is waiting any more (a link removed, say)
                if mailbox.exhausted():
                    if not mailbox.links and room.wait_for_links():
                        room.set_state(ActorState.BLOCKED, blocked_on="links")
                        await mailbox.wait()  # a link added, or another actor ended
                        continue
                    if feedback_closed:
                        return
                    _close_feedback(mailbox.links)
                    feedback_closed = True
                    continue
                room.set_state(ActorState.BLOCKED, blocked_on="input")
                await self._idle(mailbox)
                pacing.restart()
                continue
            link, batch = got
            _received(room, link, batch)
            room.set_state(ActorState.RUNNING)
            handle = handlers.get(link)
            if handle is None:
                handle = handlers[link] = self._handler(link)
            try:
                await handle(link, batch)
            finally:
                spans_done(room, batch)
            if link.removed and not link.items:
                del handlers[link]  # drained and released: keep nothing of it
            if mailbox.remote:
                link.settle()  # acknowledged now, not when this link is next read

    async def _idle(self, mailbox: Mailbox) -> None:
        """Wait for input; while fusable, the producer may run batches in meanwhile."""
        fusion = self._fusion
        if fusion is None:
            await mailbox.wait()
            return
        fusion.arm()
        try:
            await mailbox.wait()
        finally:
            fusion.parked = False
        await fusion.disarm()

    def _handler_for(self, link: Link) -> _Handler:
        """The item handler of ``link``, made on first use."""
        handle = self._handlers.get(link)
        if handle is None:
            handle = self._handlers[link] = self._handler(link)
        return handle

    def _give_back(self, link: Link, items: list[Any]) -> None:
        """Put items taken but not handled back at the front of their link."""
        if items and self._journal is not None:
            self._journal.given_back(link, items)
        self._requeue(link, items)

    def _requeue(self, link: Link, items: list[Any]) -> None:
        """:meth:`_give_back` for items the journal already knows were not handled."""
        if items:
            link.requeue(items)
            self.room.received -= len(items)
            if self.room.watched and self.room.hops is not None:  # their spans are dropped
                self.room.hops("message.returned", items)

    def _item_failed(
        self, exc: Exception, link: Link, item: Any, rest: list[Any], sequence: int
    ) -> RunError:
        """The module raised on ``item``: retry it later or dead-letter it; requeue the rest."""
        if self.room.hops is not None:
            self.room.hops("message.failed", [item])
        if self._journal is not None:  # retried or dead-lettered: never replayed
            self._journal.given_back(link, [item, *rest])
        give_back = partial(self._requeue if self._journal else self._give_back, link)
        return self.room.retries.failed(exc, self.hook_name, item, sequence, give_back, rest)

    async def _handle_sync(self, fn: Callable[[Any], Any], link: Link, batch: list[Any]) -> None:
        """A sync hook: items are handled in strides, without awaiting, until the
        quantum is spent; then the outputs go out and the actor yields.

        Each stride is one ``map`` run in C (a raising item stops it: the iterator then
        holds exactly the items after it, ``out`` the results of those before it; a
        sink's are dropped); ``None`` and :class:`Many` results are sorted out after.
        """
        room = self.room
        pacing, outbox = room.pacing, room.outbox
        base = room.received - len(batch)
        items = iter(batch)
        left = len(batch)
        out: list[Any] = []
        collect = self.collect
        try:
            began = None if room.fused_scope is None else pacing.now()  # a call's one read
            if began is not None and began >= pacing.deadline:
                began = await _yield_first(pacing)
            while True:
                out = []
                for size in pacing.strides(left, began):
                    run = items if size == left else islice(items, size)
                    left -= size
                    if collect:
                        before = len(out)
                        out.extend(map(fn, run))
                        stopped = len(out) - before != size
                    else:  # a sink's results are not kept
                        _drain(map(fn, run))
                        stopped = length_hint(items) != left
                    if stopped:
                        # The C loop took a StopIteration from the hook for the end of
                        # the stride: the item that raised it failed like any other.
                        raise _stopped_iteration(self.hook_name)
                began = None
                if out:
                    sending, out = _results(out, room), []
                    await outbox.send(sending, outbox.main)
                # One clock read per batch of cheap items; it also shrinks the stride
                # when the batch cost much of the quantum.
                if pacing.spent(pacing.deadline):
                    await pacing.yield_()
                if not left:
                    return
                if self.incarnation.stopping:
                    raise Stop
        except Exception as exc:
            if isinstance(exc, RunError | Stop):
                self._give_back(link, list(items))
                raise
            # The last item taken raised: the outputs of those before it go out first.
            outbox.owe(_results(out, room), outbox.main)
            rest = list(items)
            sequence = base + len(batch) - len(rest)
            item = batch[len(batch) - len(rest) - 1]
            raise self._item_failed(exc, link, item, rest, sequence) from exc
        except BaseException:
            self._give_back(link, list(items))
            raise

    async def _handle_probe(self, fn: Callable[[Any], Any], link: Link, batch: list[Any]) -> None:
        """The first item for a hook that looks sync: if it returns an awaitable (a
        decorator hid an ``async def``), await it and treat the hook as async from now
        on; either way the answer is remembered and the batch goes on as it should."""
        key = self.probe_key
        if key is None:  # another link's first item settled it
            await self._bare_handler(link)(link, batch)
            return
        room = self.room
        base = room.received - len(batch)
        item, rest = batch[0], batch[1:]
        try:
            result = fn(item)
            style = learn_style(key, result)
            result = await results_of(result, style)
        except Exception as exc:
            raise self._item_failed(exc, link, item, rest, base + 1) from exc
        except BaseException:
            self._give_back(link, batch)
            raise
        self.probe_key = None
        self.style = style
        self._handlers.clear()
        try:
            if self.collect:
                if result is None or (type(result) is Many and not result.items):
                    room.filtered += 1
                else:
                    items = list(result.items) if type(result) is Many else [result]
                    await room.outbox.send(items, room.outbox.main)
        except BaseException:
            self._give_back(link, rest)
            raise
        if rest:
            await self._bare_handler(link)(link, rest)

    async def _handle_general(
        self, fn: Callable[[Any], Any], link: Link, batch: list[Any]
    ) -> None:
        """Any other hook: one item at a time, awaiting each.

        With metrics on, each run of items between two yields is timed by the clock
        reads the quantum makes anyway, its items at the run's mean (sending their
        results on included).
        """
        room, style, collect = self.room, self.style, self.collect
        pacing, timings = room.pacing, room.pacing.timings
        base = room.received - len(batch)
        timed = timings is not None  # without metrics, no clock read beyond the quantum's
        began, first = pacing.now() if timed else 0.0, 0
        for index, item in enumerate(batch):
            try:
                results = await call_item_hook(fn, style, item)
            except Exception as exc:
                if timings is not None:
                    timings.observe(pacing.now() - began, index + 1 - first)
                rest = batch[index + 1 :]
                raise self._item_failed(exc, link, item, rest, base + index + 1) from exc
            except BaseException:
                # Cancelled inside the hook: the item was not handled; keep it.
                self._give_back(link, batch[index:])
                raise
            try:
                if collect:
                    if results:
                        await room.outbox.send(results, room.outbox.main)
                    else:
                        room.filtered += 1
                now = pacing.now()
                if now >= pacing.deadline or index + 1 == len(batch):
                    if timings is not None:
                        timings.observe(now - began, index + 1 - first)
                    if now >= pacing.deadline:
                        await pacing.yield_()
                        began, first = pacing.now() if timed else 0.0, index + 1
                if self.incarnation.stopping:
                    raise Stop
            except BaseException:
                self._give_back(link, batch[index + 1 :])
                raise


async def _yield_first(pacing: Pacing) -> float | None:
    """A stage called by a producer whose quantum is spent yields first: the others
    run, or items turned costly would overrun the quantum by a stride per fused stage.
    ``None``: its strides then read the clock afresh (a called stage's strides begin
    with the one read it made to tell)."""
    await pacing.yield_()
    return None


def _stopped_iteration(hook_name: str) -> RuntimeError:
    """The error for a hook that raised StopIteration, which the C loop running a stride
    took for its end (as a generator would, PEP 479, it becomes a RuntimeError)."""
    return RuntimeError(
        f"StopIteration escaped {hook_name} (Python would take it for the end of a loop)"
    )


_SPECIAL = frozenset((type(None), Many))

_drain = deque[Any](maxlen=0).extend
"""Runs an iterator to its end in C, keeping nothing (a sink's stride)."""


def _results(out: list[Any], room: Room) -> list[Any]:
    """What a processor's results send on: ``None`` is filtered out, a :class:`Many`
    gives its items (none: filtered). Checked by type in C; rebuilt only if needed."""
    if _SPECIAL.isdisjoint(map(type, out)):
        return out
    sent: list[Any] = []
    for result in out:
        if result is None:
            room.filtered += 1
        elif type(result) is Many:
            if result.items:
                sent.extend(result.items)
            else:
                room.filtered += 1
        else:
            sent.append(result)
    return sent


def _received(room: Room, link: Link, batch: list[Any]) -> None:
    """Count ``batch`` taken from ``link`` and trace it; if tracing raises, the batch
    goes back to the link first, so the failure loses nothing (it is retaken)."""
    if room.watched:
        try:
            room.trace("message.received", batch, link=link)
        except BaseException:
            link.requeue(batch)
            raise
    room.received += len(batch)


def _batch_in_thread(hook: Callable[..., Any], *args: Any) -> Any:
    """A blocking module's batch hook, in a worker thread: a generator it returns runs
    there too."""
    result = hook(*args)
    return list(result) if inspect.isgenerator(result) else result


def _gathered(result: Any) -> Any:
    """A generator's items in :class:`Many` (in the worker thread that runs it), or
    ``result`` itself."""
    if inspect.isgenerator(result):
        items: Iterable[Any] = result
        return Many(list(items))
    return result


def _item_hook(module: Any, processor: bool) -> tuple[Callable[..., Any], str, Callable[..., Any]]:
    """The hook to call per item (or per batch: a batch hook), the name the user knows
    it by, and the function whose shape decides how it is called (a ``Tag``'s
    ``tag()``, per instance)."""
    batched = batch_hook(module)
    if batched is not None:
        fn = getattr(module, batched)
        return fn, f"{batched}()", fn
    if not processor:
        return module.consume, "consume()", module.consume
    if isinstance(module, Tag) and type(module).process in _TAG_PROCESS:
        tag = module.tag
        if hook_style(tag) is HookStyle.ASYNC:
            return module._process_async, "tag()", tag
        return module._process_sync, "tag()", tag
    return module.process, "process()", module.process


_TAG_PROCESS = (Tag._process_sync, Tag._process_async)


def _close_feedback(links: list[Link]) -> None:
    """The real inputs are done: feedback links close too; what they already hold is
    still handled."""
    for link in links:
        if link.spec.feedback:
            link.close_receiver()
