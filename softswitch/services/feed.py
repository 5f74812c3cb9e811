"""The change feed's contract between the store and the directory.

Every transaction that changes a subscriber's state adds one `Change` per subscriber in the
same transaction. `seq` is the feed position: it only grows, in commit order, so "every change
up to position p" is a well-defined state that several instances agree on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from .model import CalleeView

ChangeKind = Literal[
    "subscriber",  # provisioning added or changed the line
    "bindings",
    "blocklist",
    "voicemail",  # settings or greeting
    "messages",  # voicemail messages
    "forwarding",
    "remote_control",
    "pin",
    "started",  # an instance started reading the feed (number '')
]
# Kinds that change what CalleeView shows.
VIEW_KINDS: frozenset[str] = frozenset(
    {"subscriber", "blocklist", "voicemail", "forwarding", "remote_control"})


@dataclass(slots=True, frozen=True)
class Change:
    seq: int
    number: str
    kind: str
    instance: str  # the process that wrote it


@dataclass(slots=True, frozen=True)
class DirectorySnapshot:
    position: int  # every change up to here is in `views`
    views: dict[str, CalleeView]


@dataclass(slots=True, frozen=True)
class FeedPoll:
    behind: bool  # changes after the position asked from were pruned: reload everything
    changes: list[Change]  # after the position asked from, in seq order
    views: dict[str, CalleeView | None]  # fresh views of the numbers whose view changed


class ChangeFeed(Protocol):
    """The store side of the directory."""

    @property
    def instance(self) -> str:
        """This process's name in `Change.instance`."""

    async def start(self) -> DirectorySnapshot:
        """Mark this instance's start in the feed, then every subscriber's view and the position
        they are as of."""

    async def poll(self, after: int) -> FeedPoll:
        """The changes after position `after` (which must still be in the feed, else `behind`),
        with the views they changed read after them."""

    async def prune(self, before: int) -> int:
        """Delete changes before position `before`; how many went."""

    def commit_stamp(self) -> object | None:
        """A token, read at once, that changes whenever anything is committed to the store
        (SQLite's data_version); None where the store has none (PostgreSQL)."""
