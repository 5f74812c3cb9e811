"""The change feed as the directory reads it (softswitch.services.feed.ChangeFeed): the
store's reader polls (softswitch.store.feed_sql); marking a start and pruning, rare, go
through SQLAlchemy."""

from __future__ import annotations

from sqlalchemy import delete

from softswitch.services.feed import DirectorySnapshot, FeedPoll
from softswitch.store.fast_sqlite import SqliteReader
from softswitch.store.schema import changes
from softswitch.store.store import Store


class SqlChangeFeed:
    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def instance(self) -> str:
        return self._store.instance

    async def start(self) -> DirectorySnapshot:
        async with self._store.writing() as connection:
            await self._store.record_changes(connection, "started", [""])
        return await self._store.reader.snapshot()

    async def poll(self, after: int) -> FeedPoll:
        return await self._store.reader.poll(after)

    def commit_stamp(self) -> object | None:
        reader = self._store.reader
        return reader.commit_stamp() if isinstance(reader, SqliteReader) else None

    async def prune(self, before: int) -> int:
        async with self._store.writing() as connection:
            result = await connection.execute(delete(changes).where(changes.c.seq < before))
        return int(result.rowcount)
