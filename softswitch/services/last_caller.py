"""Each subscriber's last incoming caller, for "register the last caller" (1442).

Recorded at the call rate, so writes are batched (GroupWriter); until a batch is written,
this instance answers from what it holds."""

from __future__ import annotations

import time
from collections.abc import Callable

from .batching import GroupWriter
from .model import LastCaller
from .repositories import LastCallerRepository


class LastCallerService:
    def __init__(self, repository: LastCallerRepository, *, window: float = 0.05,
                 clock: Callable[[], float] = time.time) -> None:
        self._repository = repository
        self._clock = clock
        self._pending: dict[str, LastCaller] = {}
        self._writer: GroupWriter[tuple[str, LastCaller]] = GroupWriter(
            self._write, window=window, what="last callers")

    def record(self, number: str, caller: str | None) -> None:
        """`caller` called subscriber `number` (None: the caller withheld the number)."""
        last = LastCaller(caller, self._clock())
        self._pending[number] = last
        self._writer.add((number, last))

    async def get(self, number: str) -> LastCaller | None:
        """The last caller; None if nobody has called yet."""
        pending = self._pending.get(number)
        if pending is not None:
            return pending
        return await self._repository.last_caller(number)

    async def drain(self) -> None:
        await self._writer.drain()

    async def _write(self, batch: list[tuple[str, LastCaller]]) -> None:
        latest = dict(batch)  # a subscriber called twice in one batch: the later call counts
        try:
            await self._repository.set_last_callers(
                [(number, last.caller, last.at) for number, last in latest.items()])
        finally:
            for number, last in latest.items():
                if self._pending.get(number) is last:
                    del self._pending[number]
