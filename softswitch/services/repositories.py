"""What the domain needs from the store: small Protocols with typed rows, each method one
atomic operation (softswitch.store.repositories implements them over SQLAlchemy).

Every method that changes a subscriber's state records the change in the change feed in its
own transaction. Numbers are national numbers the service has already checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from .feed import ChangeFeed
from .model import (
    CallRecord,
    ForwardingMode,
    ForwardingSettings,
    LastCaller,
    Line,
    VoicemailMessage,
    VoicemailSettings,
)


class BlockResult(StrEnum):
    ADDED = "added"
    DUPLICATE = "duplicate"  # already on the list: nothing changed
    FULL = "full"  # the list holds services.blocklist_max numbers: nothing changed


@dataclass(slots=True, frozen=True)
class PinRecord:
    """A subscriber's network PIN as stored: hashes only, and never in a repr."""

    number: str
    pin_hash: str = field(repr=False)
    pending_hash: str | None = field(repr=False)  # a change made in the portal ...
    pending_apply_at: float | None  # ... that applies from then on
    failures: int  # consecutive wrong entries (and attempts in progress)
    locked: bool

    def hash_at(self, now: float) -> str:
        """The hash of the PIN in force at `now`."""
        if self.pending_hash is not None and self.pending_apply_at is not None \
                and self.pending_apply_at <= now:
            return self.pending_hash
        return self.pin_hash


class SubscriberRepository(Protocol):
    async def line(self, number: str) -> Line | None: ...


class BlocklistRepository(Protocol):
    async def add(self, number: str, blocked: str, now: float, limit: int) -> BlockResult: ...
    async def remove(self, number: str, blocked: str) -> bool: ...
    async def numbers(self, number: str) -> list[str]:
        """In the order they were registered."""
    async def remove_last(self, number: str) -> str | None:
        """The most recently registered number, removed; None if the list was empty."""
    async def remove_all(self, number: str) -> int: ...


class VoicemailRepository(Protocol):
    async def settings(self, number: str) -> VoicemailSettings | None: ...
    async def update_settings(self, number: str, *, enabled: bool | None,
                              ring_time: int | None) -> None: ...
    async def count_messages(self, number: str) -> int: ...
    async def add_message(self, number: str, caller: str | None, received_at: float,
                          seconds: float, audio_file: str, limit: int) -> int | None:
        """The new message's id; None (nothing added) when the mailbox holds `limit`."""
    async def messages(self, number: str) -> list[VoicemailMessage]:
        """New ones first, each group oldest first; `audio` relative to the audio directory."""
    async def mark_heard(self, number: str, message_id: int) -> bool: ...
    async def delete_message(self, number: str, message_id: int) -> str | None:
        """The deleted message's audio file; None if there was no such message."""
    async def delete_messages_before(self, received_before: float) -> list[str]:
        """Delete every message received before then, of every subscriber; their files."""
    async def greeting(self, number: str) -> str | None: ...
    async def set_greeting(self, number: str, audio_file: str, now: float) -> str | None:
        """The file of the greeting it replaced, if any."""
    async def reset_greeting(self, number: str) -> str | None:
        """The file of the greeting removed, if any."""


class ForwardingRepository(Protocol):
    async def settings(self, number: str) -> ForwardingSettings | None: ...
    async def update(self, number: str, *, destination: str | None = None,
                     mode: ForwardingMode | None = None,
                     enabled: bool | None = None) -> ForwardingSettings:
        """Change the given fields (None: unchanged); the settings after."""


class RemoteControlRepository(Protocol):
    async def enabled(self, number: str) -> bool | None: ...
    async def set_enabled(self, number: str, enabled: bool) -> None:
        """Also clears the wrong-PIN streak."""
    async def wrong_attempt(self, number: str, disable_after: int) -> tuple[int, bool]:
        """Count a failed remote-access attempt, switching remote control off when the streak
        reaches `disable_after`: (the streak, enabled after)."""
    async def right_attempt(self, number: str) -> None: ...


class LastCallerRepository(Protocol):
    async def set_last_callers(self, calls: Sequence[tuple[str, str | None, float]]) -> None:
        """(number, caller or None if withheld, when) each; numbers that are no subscriber's
        are skipped."""
    async def last_caller(self, number: str) -> LastCaller | None: ...


class CallRecordRepository(Protocol):
    async def add_call_records(self, records: Sequence[CallRecord]) -> None: ...


class PinRepository(Protocol):
    async def pin(self, number: str) -> PinRecord | None: ...
    async def reserve_attempt(self, number: str, max_failures: int) -> int | None:
        """Count an attempt as a failure before it is checked, if the PIN is not locked and
        fewer than `max_failures` are counted: the count after; None when no try is left."""
    async def attempt_succeeded(self, number: str) -> bool:
        """Clear the failures; False if the PIN was locked meanwhile."""
    async def attempt_failed(self, number: str, max_failures: int) -> tuple[int, bool]:
        """The reserved attempt was wrong: lock at `max_failures`. (failures, locked)."""
    async def unlock(self, number: str) -> bool: ...
    async def source_failures(self, source: str, now: float, window: float) -> int: ...
    async def add_source_failure(self, source: str, now: float, window: float) -> int:
        """Count a failure for the source in its current window; the count after."""


@dataclass(slots=True, frozen=True)
class Repositories:
    subscribers: SubscriberRepository
    blocklist: BlocklistRepository
    voicemail: VoicemailRepository
    forwarding: ForwardingRepository
    remote_control: RemoteControlRepository
    last_callers: LastCallerRepository
    call_records: CallRecordRepository
    pins: PinRepository
    feed: ChangeFeed
