"""The reads that run at the call rate (change feed polls, binding reloads) on PostgreSQL, on
one asyncpg connection of their own: a poll costs ~40 µs of CPU here against ~450 µs through
SQLAlchemy's pool and compiler. The SQL is softswitch.store.feed_sql's, with $n placeholders.
A broken connection is dropped and made again by the next read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from softswitch.services.feed import DirectorySnapshot, FeedPoll
from softswitch.store.bindings import StoredBindings, rows_by_aor
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

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0  # seconds


class PostgresReader:
    def __init__(self, url: str) -> None:
        # asyncpg's own DSN: the SQLAlchemy URL without the '+asyncpg' driver name
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._connection: Any = None  # an asyncpg.Connection, made on first use
        self._lock = asyncio.Lock()  # a connection runs one query at a time

    async def snapshot(self) -> DirectorySnapshot:
        async def read(connection: Any) -> DirectorySnapshot:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                position = await connection.fetchval(FEED_POSITION)
                views = build_views(await connection.fetch(VIEWS),
                                    await connection.fetch(f"{BLOCKLISTS} ORDER BY id"))
            return DirectorySnapshot(position, views)

        return await self._run(read)

    async def poll(self, after: int) -> FeedPoll:
        async def read(connection: Any) -> FeedPoll:
            found = changes_after(await connection.fetch(FEED.format(after="$1"), after), after)
            touched = view_numbers(found)
            views = {}
            if touched:  # read after the feed rows: as new as they are, or newer
                views = build_views(
                    await connection.fetch(f"{VIEWS} WHERE s.number = ANY($1::text[])", touched),
                    await connection.fetch(
                        f"{BLOCKLISTS} WHERE number = ANY($1::text[]) ORDER BY id", touched))
            return polled(found, touched, views)

        return await self._run(read)

    async def read_bindings(self, aors: list[str] | None) -> StoredBindings:
        async def read(connection: Any) -> StoredBindings:
            position = await connection.fetchval(FEED_POSITION)  # first: the rows are as new
            if aors is None:
                rows = await connection.fetch(f"{BINDINGS} ORDER BY aor, contact")
            else:
                rows = await connection.fetch(
                    f"{BINDINGS} WHERE aor = ANY($1::text[]) ORDER BY aor, contact", aors)
            return StoredBindings(position, rows_by_aor(rows))

        return await self._run(read)

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None

    async def _run(self, read: Callable[[Any], Awaitable[T]]) -> T:
        import asyncpg  # type: ignore[import-untyped]  # here: SQLite users never load it

        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
            try:
                return await read(self._connection)
            except asyncpg.PostgresError as error:
                if isinstance(error, asyncpg.PostgresConnectionError):
                    self._drop()
                raise
            except BaseException:  # a broken socket, a cancelled query: start afresh
                self._drop()
                raise

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        connection.terminate()
