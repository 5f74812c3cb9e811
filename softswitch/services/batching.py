"""Group commit for records written at the call rate (call records, last callers): what
arrives within one window is written in one store transaction, off the caller's path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class GroupWriter(Generic[T]):
    """`add` queues an item; a task writes the queue every `window` seconds while it is not
    empty. A failed write is logged with how many items it lost; the next batch goes on."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, window: float,
                 what: str) -> None:
        self._write = write
        self.window = window
        self._what = what  # "call records", in log lines
        self._queue: list[T] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._queue.append(item)
        if self._task is None:
            self._task = asyncio.create_task(self._flush(), name=f"write {self._what}")

    async def drain(self) -> None:
        """Wait until everything added is written (at shutdown)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _flush(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(self.window)
                batch, self._queue = self._queue, []
                try:
                    await self._write(batch)
                except Exception as error:
                    log.error("writing %d %s failed: %s", len(batch), self._what, error)
        finally:
            self._task = None
