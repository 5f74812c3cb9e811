"""The hot paths of a SQLite file, on plain sqlite3 connections in threads of their own.

Through SQLAlchemy and aiosqlite a statement costs the event loop a thread hop, statement
compilation and greenlet switches (~0.3 ms); here a whole batch is one call into a thread.
That thread must win the GIL back after every SQLite statement, and under load the event loop
holds it for up to the switch interval (5 ms) each time, so each call runs few statements:
multi-row INSERTs and IN lists rather than a statement per row.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from softswitch.services.feed import DirectorySnapshot, FeedPoll
from softswitch.store.bindings import (
    BINDING_FIELDS,
    BindingChange,
    BindingRow,
    StoredBindings,
    checked_changes,
    rows_by_aor,
)
from softswitch.store.feed_sql import (
    BINDINGS,
    BLOCKLISTS,
    FEED,
    FEED_POSITION,
    VIEWS,
    build_views,
    changes_after,
    polled,
    view_numbers,
)
from softswitch.store.schema import changes as feed
from softswitch.store.schema import registrations

SQLITE_BUSY_TIMEOUT_MS = 5000  # wait this long for another writer (another process) to finish
SQLITE_PRAGMAS = (
    "journal_mode=WAL",  # readers never wait for the writer
    # FULL: a commit is on disk before the registrar answers 200, even across a power cut;
    # group commit makes that one fsync per batch, not per REGISTER.
    "synchronous=FULL",
    f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "foreign_keys=ON",  # SQLite enforces them only when asked
)
MAX_KEYS_PER_IN = 500  # stays well under every backend's limit on bound parameters
ROWS_PER_INSERT = 100  # 800 parameters: under SQLite's oldest limit of 999 a statement
FEED_ROWS_PER_INSERT = 200  # 4 parameters each

T = TypeVar("T")

_BINDINGS = registrations.name
_UPSERT_TAIL = " ON CONFLICT (aor, contact) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in BINDING_FIELDS[2:])
_FEED_INSERT_HEAD = f"INSERT INTO {feed.name} (number, kind, instance, at) VALUES "


def configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any = None) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


class SqliteThread:
    """One sqlite3 connection, made on and used by one thread of its own."""

    def __init__(self, path: str, name: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._connection: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, work)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        if connection is None:
            connection = self._connection = sqlite3.connect(
                self._path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            configure_sqlite_connection(connection)
        return work(connection)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def in_transaction(connection: sqlite3.Connection, begin: str,
                   work: Callable[[sqlite3.Connection], T]) -> T:
    connection.execute(begin)
    try:
        result = work(connection)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result


class SqliteBindingJournal:
    """The registrar's binding writes: one call, one transaction per group commit, with a
    change feed row per AOR written (by `instance`). Its thread is the store's writer thread
    (`SqliteTransactions` writes there too)."""

    def __init__(self, path: str, instance: str) -> None:
        self.thread = self._thread = SqliteThread(path, "binding-journal")
        self._instance = instance
        self._insert_head = f"INSERT INTO {_BINDINGS} ({', '.join(BINDING_FIELDS)}) VALUES "
        self._row = f"({placeholders(len(BINDING_FIELDS))})"

    async def write(self, changes: dict[str, BindingChange]) -> StoredBindings:
        """Apply `changes` in one transaction; the touched AORs' bindings read back in it."""
        cleared, removals, rows = checked_changes(changes)
        aors = list(changes)

        def write(connection: sqlite3.Connection) -> StoredBindings:
            return in_transaction(  # IMMEDIATE: take the write lock now, no upgrade deadlock
                connection, "BEGIN IMMEDIATE",
                lambda connection: self._write(connection, aors, cleared, removals, rows))

        return await self._thread.run(write)

    async def delete_expired(self, now: float) -> int:
        def delete(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(f"DELETE FROM {_BINDINGS} WHERE expires_at <= ?", (now,))
            return cursor.rowcount

        return await self._thread.run(delete)

    async def close(self) -> None:
        await self._thread.close()

    def _write(self, connection: sqlite3.Connection, aors: list[str], cleared: list[str],
               removals: list[tuple[str, str]], rows: list[tuple[Any, ...]],
               ) -> StoredBindings:
        for keys in chunks(cleared, MAX_KEYS_PER_IN):
            connection.execute(
                f"DELETE FROM {_BINDINGS} WHERE aor IN ({placeholders(len(keys))})", keys)
        if removals:
            connection.executemany(
                f"DELETE FROM {_BINDINGS} WHERE aor = ? AND contact = ?", removals)
        for chunk in chunks(rows, ROWS_PER_INSERT):
            # the same text for every full chunk: sqlite3's statement cache keeps it parsed
            statement = self._insert_head + ", ".join([self._row] * len(chunk)) + _UPSERT_TAIL
            connection.execute(statement, [value for row in chunk for value in row])
        now = time.time()
        position = 0
        for names in chunks(aors, FEED_ROWS_PER_INSERT):
            cursor = connection.execute(
                _FEED_INSERT_HEAD + ", ".join(["(?, 'bindings', ?, ?)"] * len(names)),
                [value for aor in names for value in (aor, self._instance, now)])
            position = cursor.lastrowid or position
        return StoredBindings(position, read_bindings(connection, aors))


class SqliteTransactions:
    """Whole transactions of the domain's repositories in one call each, on the store's
    writer thread (the binding journal's) or its reader thread: what a call needs at the call
    rate (the PIN check's counters, remote control's changes).

    Through SQLAlchemy and aiosqlite each statement of a transaction is a thread hop and an
    event-loop turn (BEGIN IMMEDIATE, the UPDATE, the change feed row, COMMIT: five to seven
    of them), and SQLite's write lock is held across all of them. Under load each hop waits
    for the GIL (the busy event loop keeps it for up to the switch interval), the lock is held
    for tens of milliseconds, the other writers sleep in SQLite's busy handler, and some give
    up after its timeout with "database is locked": with 25 remote-control calls a second
    beside 500 calls' media, PIN checks took seconds (scripts/bench/remote.sh). Here a
    transaction's statements run back to back in the thread, the lock held for microseconds.
    """

    def __init__(self, writer: SqliteThread, reader: SqliteThread, instance: str) -> None:
        self._writer = writer
        self._reader = reader
        self._instance = instance

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one write transaction (BEGIN IMMEDIATE: the write lock from its start)."""
        return await self._writer.run(lambda c: in_transaction(c, "BEGIN IMMEDIATE", work))

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one read transaction (one snapshot)."""
        return await self._reader.run(lambda c: in_transaction(c, "BEGIN", work))

    def record_change(self, connection: sqlite3.Connection, kind: str, number: str) -> None:
        """A change feed row for `number`, in the write transaction of `connection` (after its
        other writes, as Store.record_changes)."""
        connection.execute(_FEED_INSERT_HEAD + "(?, ?, ?, ?)",
                           (number, kind, self._instance, time.time()))


class SqliteReader:
    """The reads that run at the call rate: change feed polls, directory snapshots, binding
    reloads; each one call into the thread, in one read transaction (one snapshot)."""

    def __init__(self, path: str) -> None:
        self.thread = self._thread = SqliteThread(path, "store-reader")
        self._path = path
        self._stamp: sqlite3.Connection | None = None  # the event loop thread's own

    def commit_stamp(self) -> int | None:
        """SQLite's data_version as this process's event loop sees it: it changes whenever
        any connection (another instance, the CLI, our own writer threads) commits. Read on
        the event loop: a few microseconds of shared memory, no disk read, no thread hop.
        Never waits for a lock (the loop must not): None when SQLite is busy (a WAL recovery
        after another instance crashed), and the directory then polls."""
        if self._stamp is None:
            self._stamp = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        try:
            value: int = self._stamp.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.OperationalError:
            return None
        return value

    async def snapshot(self) -> DirectorySnapshot:
        return await self._thread.run(lambda c: in_transaction(c, "BEGIN", _snapshot))

    async def poll(self, after: int) -> FeedPoll:
        return await self._thread.run(
            lambda c: in_transaction(c, "BEGIN", lambda c: _poll(c, after)))

    async def read_bindings(self, aors: list[str] | None) -> StoredBindings:
        def read(connection: sqlite3.Connection) -> StoredBindings:
            position = connection.execute(FEED_POSITION).fetchone()[0]  # first: rows as new
            return StoredBindings(position, read_bindings(connection, aors))

        return await self._thread.run(lambda c: in_transaction(c, "BEGIN", read))

    async def close(self) -> None:
        if self._stamp is not None:
            self._stamp.close()
            self._stamp = None
        await self._thread.close()


def _snapshot(connection: sqlite3.Connection) -> DirectorySnapshot:
    position = connection.execute(FEED_POSITION).fetchone()[0]  # first: the views are as new
    views = build_views(connection.execute(VIEWS).fetchall(),
                        connection.execute(f"{BLOCKLISTS} ORDER BY id").fetchall())
    return DirectorySnapshot(position, views)


def _poll(connection: sqlite3.Connection, after: int) -> FeedPoll:
    found = changes_after(connection.execute(FEED.format(after="?"), (after,)).fetchall(), after)
    touched = view_numbers(found)
    view_rows: list[Any] = []
    blocked_rows: list[Any] = []
    for keys in chunks(touched, MAX_KEYS_PER_IN):
        marks = placeholders(len(keys))
        view_rows += connection.execute(f"{VIEWS} WHERE s.number IN ({marks})", keys).fetchall()
        blocked_rows += connection.execute(
            f"{BLOCKLISTS} WHERE number IN ({marks}) ORDER BY id", keys).fetchall()
    return polled(found, touched, build_views(view_rows, blocked_rows))


def read_bindings(connection: sqlite3.Connection,
                  aors: list[str] | None) -> dict[str, list[BindingRow]]:
    """The bindings of `aors` (None: every AOR), expired ones included."""
    if aors is None:
        return rows_by_aor(connection.execute(f"{BINDINGS} ORDER BY aor, contact").fetchall())
    stored: list[tuple[Any, ...]] = []
    for chunk in chunks(aors, MAX_KEYS_PER_IN):
        stored += connection.execute(
            f"{BINDINGS} WHERE aor IN ({placeholders(len(chunk))}) ORDER BY aor, contact",
            chunk).fetchall()
    return rows_by_aor(stored)
