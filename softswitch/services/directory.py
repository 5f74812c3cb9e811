"""Every subscriber's routing view in memory, kept current from the store's change feed.

The router asks `await directory.sync()` and then `directory.callee(number)`, a dict lookup.
`sync()` is a read barrier: it returns once every change committed to the store before it was
called is applied, whichever instance (or the CLI, or the portal) made it. Callers that arrive
together share one poll of the feed, and polls run at most every `min_interval`, so at
thousands of calls a second the store sees a few hundred small queries a second, not a round
trip per call. Where the store has a commit stamp (SQLite's data_version, read in a few
microseconds on the event loop), a sync that finds it unchanged since the last poll began
returns at once: nothing was committed that this poll did not see. Between calls a poll
runs every `idle_interval` all the same, so that the position stays recent and bindings
other instances register reach this one's registrar.

Changes to bindings made by other instances are passed to the bindings listeners (the
registrar reloads those AORs) within the poll, so after `sync()` routing sees them too.
Old feed rows are pruned; an instance that fell behind the pruned range reloads everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from .feed import ChangeFeed
from .model import CalleeView

log = logging.getLogger(__name__)

# Told which AORs other instances changed the bindings of; None: possibly every AOR.
BindingsListener = Callable[[frozenset[str] | None], Awaitable[None]]

POLL_TIMEOUT = 5.0  # seconds; a hung store fails the sync instead of stalling every call


class SubscriberDirectory:
    def __init__(self, feed: ChangeFeed, *, min_interval: float = 0.005,
                 idle_interval: float = 1.0, retention: float = 300.0,
                 prune_interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._feed = feed
        self.min_interval = min_interval  # seconds between the starts of two polls, at least
        self.idle_interval = idle_interval  # a poll at least this often
        self.retention = retention  # feed rows are kept this long
        self.prune_interval = prune_interval
        self._clock = clock
        self._views: dict[str, CalleeView] = {}
        self._position = 0
        self._listeners: list[BindingsListener] = []
        self._waiters: list[asyncio.Future[None]] = []  # callers of sync() for the next poll
        self._wanted = asyncio.Event()
        self._last_poll = float("-inf")
        self._polled_stamp: object | None = None  # the store's commit stamp as the last poll began
        self._positions: deque[tuple[float, int]] = deque()  # (when, position), for pruning
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # feed polls made so far

    @property
    def position(self) -> int:
        """The feed position every view is current to."""
        return self._position

    def on_bindings(self, listener: BindingsListener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        """Load every subscriber's view and begin following the feed."""
        await self._reload_all(tell_listeners=False)
        self._task = asyncio.create_task(self._follow(), name="subscriber-directory")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def callee(self, number: str) -> CalleeView | None:
        """The subscriber's routing view; None for a number that is no subscriber."""
        return self._views.get(number)

    async def sync(self) -> None:
        """Return once every change committed before this call is applied (see the module
        doc); raises what the store raised if the poll failed."""
        if self._task is None:
            raise RuntimeError("the directory is not started")
        if self._polled_stamp is not None and self._feed.commit_stamp() == self._polled_stamp:
            return
        # A future per caller (not one shared): a caller's cancellation is its own.
        waiter = self._task.get_loop().create_future()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._wanted.set()
        await waiter

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiters:
                self._wanted.clear()
                try:
                    async with asyncio.timeout(self.idle_interval):
                        await self._wanted.wait()
                except TimeoutError:
                    pass
            pause = self._last_poll + self.min_interval - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            # Whoever calls sync() from here on waits for the next poll: this one may have
            # started reading before their change committed.
            waiters, self._waiters = self._waiters, []
            self._last_poll = loop.time()
            stamp = self._feed.commit_stamp()  # before the poll reads: what it will see
            try:
                async with asyncio.timeout(POLL_TIMEOUT):
                    await self._poll()
            except Exception as error:
                self._polled_stamp = None
                log.warning("reading the change feed failed: %s", error)
                for waiter in waiters:
                    if not waiter.done():  # not cancelled
                        waiter.set_exception(error)
                continue
            self._polled_stamp = stamp
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            await self._prune()

    async def _poll(self) -> None:
        self.polls += 1
        polled = await self._feed.poll(self._position)
        if polled.behind:
            log.warning("the change feed was pruned past position %d: reloading every "
                        "subscriber", self._position)
            await self._reload_all(tell_listeners=True)
            return
        if not polled.changes:
            return
        for number, view in polled.views.items():
            if view is None:
                self._views.pop(number, None)
            else:
                self._views[number] = view
        others = frozenset(change.number for change in polled.changes
                           if change.kind == "bindings" and change.instance != self._feed.instance)
        if others:
            for listener in self._listeners:
                await listener(others)
        # Only now: if a listener failed, the next poll reads these changes again.
        self._position = polled.changes[-1].seq

    async def _reload_all(self, *, tell_listeners: bool) -> None:
        snapshot = await self._feed.start()
        self._views = dict(snapshot.views)
        if tell_listeners:
            for listener in self._listeners:
                await listener(None)
        self._position = snapshot.position

    async def _prune(self) -> None:
        """Every prune_interval, delete the feed rows before the position this instance had
        reached `retention` ago: every instance that polled since has moved past them."""
        now = self._clock()
        samples = self._positions
        if samples and now - samples[-1][0] < self.prune_interval:
            return
        samples.append((now, self._position))
        before = None
        while samples and now - samples[0][0] >= self.retention:
            before = samples.popleft()[1]
        if before is None:
            return
        try:
            pruned = await self._feed.prune(before)
        except Exception as error:
            log.warning("pruning the change feed failed: %s", error)
            return
        if pruned:
            log.debug("pruned %d change feed rows before position %d", pruned, before)
