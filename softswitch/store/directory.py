"""The change feed as the directory reads it (softswitch.services.feed.ChangeFeed).

A poll is one query when nothing changed, plus two when routing state did (the views of the
changed subscribers and their blocklists). On a SQLite file they run on the store's reader
thread in raw sqlite3, in one read transaction; elsewhere through SQLAlchemy. The SQL is plain
text that SQLite and PostgreSQL both accept, so both paths run the same statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, text
from sqlalchemy.ext.asyncio import AsyncConnection

from softswitch.services.feed import VIEW_KINDS, Change, DirectorySnapshot, FeedPoll
from softswitch.services.model import CalleeView, ForwardingSettings, Line, VoicemailSettings
from softswitch.store.fast_sqlite import FEED_POSITION, MAX_KEYS_PER_IN, chunks, in_transaction
from softswitch.store.schema import changes
from softswitch.store.store import Store

DEFAULT_RING_TIME = 15  # provisioning writes every state row; this only covers a missing one

_VIEWS = """SELECT s.number, s.sim, s.line, s.nuisance_option, v.enabled, v.ring_time,
 g.number IS NOT NULL, f.active, f.destination, f.mode, r.enabled
FROM subscribers s
LEFT JOIN voicemail_settings v ON v.number = s.number
LEFT JOIN voicemail_greetings g ON g.number = s.number
LEFT JOIN forwarding f ON f.number = s.number
LEFT JOIN remote_control r ON r.number = s.number"""
_BLOCKLISTS = "SELECT number, blocked_number FROM blocklist"
_FEED = "SELECT seq, number, kind, instance FROM changes WHERE seq >= {after} ORDER BY seq"

Rows = Sequence[Sequence[Any]]


def callee_view(row: Sequence[Any], blocked: Iterable[str]) -> CalleeView:
    """A row of _VIEWS and the subscriber's blocked numbers as a CalleeView; a data SIM has
    every voice service off, whatever its state rows say."""
    (number, sim, line_type, option, voicemail_on, ring_time, has_greeting, forwarding_on,
     destination, mode, remote_control_on) = row
    line = Line(number, sim, line_type, bool(option))
    voice = line.is_voice
    return CalleeView(
        line=line,
        blocklist=frozenset(blocked),
        voicemail=VoicemailSettings(
            voice and bool(voicemail_on),
            DEFAULT_RING_TIME if ring_time is None else int(ring_time), bool(has_greeting)),
        forwarding=ForwardingSettings(voice and bool(forwarding_on), destination,
                                      mode or "no_answer"),
        remote_control=voice and bool(remote_control_on),
    )


def build_views(view_rows: Rows, blocked_rows: Rows) -> dict[str, CalleeView]:
    blocked: dict[str, list[str]] = {}
    for number, caller in blocked_rows:
        blocked.setdefault(number, []).append(caller)
    return {row[0]: callee_view(row, blocked.get(row[0], ())) for row in view_rows}


def changes_after(feed_rows: Rows, after: int) -> list[Change] | None:
    """The changes among the feed rows at and after position `after`; None if the row at
    `after` is gone (pruned: rows after it may have gone unseen too)."""
    if after and (not feed_rows or feed_rows[0][0] != after):
        return None
    return [Change(*row) for row in feed_rows if row[0] != after]


def view_numbers(found: list[Change] | None) -> list[str]:
    """The subscribers whose routing state the changes changed."""
    return sorted({change.number for change in found or () if change.kind in VIEW_KINDS})


def polled(found: list[Change] | None, touched: list[str],
           views: dict[str, CalleeView]) -> FeedPoll:
    """The poll's answer: the changes, and the fresh views of the `touched` subscribers (None
    for a number that is no longer a subscriber)."""
    if found is None:
        return FeedPoll(True, [], {})
    fresh: dict[str, CalleeView | None] = dict.fromkeys(touched)
    fresh.update(views)
    return FeedPoll(False, found, fresh)


class SqlChangeFeed:
    """ChangeFeed over the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def instance(self) -> str:
        return self._store.instance

    async def start(self) -> DirectorySnapshot:
        async with self._store.writing() as connection:
            await self._store.record_changes(connection, "started", [""])
        reader = self._store.reader
        if reader is not None:
            return await reader.run(lambda connection: in_transaction(
                connection, "BEGIN", _sqlite_snapshot))
        async with self._store.engine.connect() as connection:
            position = int((await connection.execute(text(FEED_POSITION))).scalar_one())
            views = build_views(*await _views_of(connection, None))
        return DirectorySnapshot(position, views)

    async def poll(self, after: int) -> FeedPoll:
        reader = self._store.reader
        if reader is not None:
            return await reader.run(lambda connection: in_transaction(
                connection, "BEGIN", lambda connection: _sqlite_poll(connection, after)))
        async with self._store.engine.connect() as connection:
            rows = (await connection.execute(text(_FEED.format(after=":after")),
                                             {"after": after})).all()
            found = changes_after(rows, after)
            touched = view_numbers(found)
            views = build_views(*await _views_of(connection, touched)) if touched else {}
        return polled(found, touched, views)

    async def prune(self, before: int) -> int:
        async with self._store.writing() as connection:
            result = await connection.execute(delete(changes).where(changes.c.seq < before))
        return int(result.rowcount)


def _sqlite_snapshot(connection: sqlite3.Connection) -> DirectorySnapshot:
    position = connection.execute(FEED_POSITION).fetchone()[0]  # first: the views are as new
    views = build_views(connection.execute(_VIEWS).fetchall(),
                        connection.execute(f"{_BLOCKLISTS} ORDER BY id").fetchall())
    return DirectorySnapshot(position, views)


def _sqlite_poll(connection: sqlite3.Connection, after: int) -> FeedPoll:
    found = changes_after(connection.execute(_FEED.format(after="?"), (after,)).fetchall(), after)
    touched = view_numbers(found)
    view_rows: list[Any] = []
    blocked_rows: list[Any] = []
    for keys in chunks(touched, MAX_KEYS_PER_IN):
        marks = ", ".join("?" * len(keys))
        view_rows += connection.execute(f"{_VIEWS} WHERE s.number IN ({marks})", keys).fetchall()
        blocked_rows += connection.execute(
            f"{_BLOCKLISTS} WHERE number IN ({marks}) ORDER BY id", keys).fetchall()
    return polled(found, touched, build_views(view_rows, blocked_rows))


async def _views_of(connection: AsyncConnection, numbers: list[str] | None) -> tuple[Rows, Rows]:
    if numbers is None:
        return ((await connection.execute(text(_VIEWS))).all(),
                (await connection.execute(text(f"{_BLOCKLISTS} ORDER BY id"))).all())
    view_rows: list[Any] = []
    blocked_rows: list[Any] = []
    views = text(f"{_VIEWS} WHERE s.number IN :numbers").bindparams(
        bindparam("numbers", expanding=True))
    blocked = text(f"{_BLOCKLISTS} WHERE number IN :numbers ORDER BY id").bindparams(
        bindparam("numbers", expanding=True))
    for keys in chunks(numbers, MAX_KEYS_PER_IN):
        view_rows += (await connection.execute(views, {"numbers": keys})).all()
        blocked_rows += (await connection.execute(blocked, {"numbers": keys})).all()
    return view_rows, blocked_rows
