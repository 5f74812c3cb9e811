"""Nuisance-call blocking (迷惑電話ストップサービス): each subscriber's list of blocked callers."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import NotSubscribed
from .lines import other_number, voice_line
from .repositories import BlocklistRepository, BlockResult, SubscriberRepository

__all__ = ["BlockResult", "BlocklistService"]


class BlocklistService:
    def __init__(self, subscribers: SubscriberRepository, blocklist: BlocklistRepository, *,
                 max_entries: int, clock: Callable[[], float] = time.time) -> None:
        self._subscribers = subscribers
        self._blocklist = blocklist
        self.max_entries = max_entries  # services.blocklist_max
        self._clock = clock

    async def add(self, number: str, caller: str) -> BlockResult:
        """Block `caller` (any written form of a phone number) for subscriber `number`.
        A duplicate or a full list is a result, told to the user, that changes nothing."""
        await self._blocking_line(number)
        blocked = other_number(caller, number, "blocked number")
        return await self._blocklist.add(number, blocked, self._clock(), self.max_entries)

    async def remove(self, number: str, caller: str) -> bool:
        """False if `caller` was not on the list."""
        await voice_line(self._subscribers, number)
        return await self._blocklist.remove(number, other_number(caller, number,
                                                                 "blocked number"))

    async def list(self, number: str) -> list[str]:
        """The blocked numbers in the order they were registered."""
        await voice_line(self._subscribers, number)
        return await self._blocklist.numbers(number)

    async def count(self, number: str) -> int:
        return len(await self.list(number))

    async def delete_last(self, number: str) -> str | None:
        """Remove the most recently registered number; which one, or None if none."""
        await voice_line(self._subscribers, number)
        return await self._blocklist.remove_last(number)

    async def delete_all(self, number: str) -> int:
        """Empty the list; how many numbers it held."""
        await voice_line(self._subscribers, number)
        return await self._blocklist.remove_all(number)

    async def _blocking_line(self, number: str) -> None:
        line = await voice_line(self._subscribers, number)
        if not line.blocking_available:
            raise NotSubscribed(number)
