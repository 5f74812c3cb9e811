"""The domain's repositories (softswitch.services.repositories) over SQLAlchemy Core.

Each method is one transaction. A check-then-write (is the list full? is the mailbox?) first
locks the subscriber's row (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the write transaction
holds the database's write lock from its BEGIN IMMEDIATE), so two instances cannot both pass
the check. Counters move in single UPDATE ... RETURNING statements. Every change to a
subscriber's state is recorded in the change feed in the same transaction.

What a call does at the call rate (the PIN check and its counters, remote control's and the
dial codes' voicemail and forwarding changes, the line lookups they make) runs, on a SQLite
file, as plain SQL in one call per transaction (`Store.fast`, see
softswitch.store.fast_sqlite.SqliteTransactions): the same statements as the SQLAlchemy path
below them, which PostgreSQL takes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Table, case, delete, false, func, insert, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from softswitch.services.errors import UnknownSubscriber
from softswitch.services.model import (
    CALL_RECORD_FIELDS,
    CallRecord,
    ForwardingMode,
    ForwardingSettings,
    LastCaller,
    Line,
    VoicemailMessage,
    VoicemailSettings,
)
from softswitch.services.repositories import BlockResult, PinRecord, Repositories
from softswitch.store.directory import SqlChangeFeed
from softswitch.store.feed_sql import DEFAULT_RING_TIME
from softswitch.store.schema import (
    blocklist,
    call_records,
    forwarding,
    last_callers,
    pin_source_failures,
    pins,
    remote_control,
    subscribers,
    voicemail_greetings,
    voicemail_messages,
    voicemail_settings,
)
from softswitch.store.store import Store

__all__ = ["SqlBlocklist", "SqlCallRecords", "SqlForwarding", "SqlLastCallers", "SqlPins",
           "SqlRemoteControl", "SqlSubscribers", "SqlVoicemail", "sql_repositories"]


def sql_repositories(store: Store) -> Repositories:
    return Repositories(
        subscribers=SqlSubscribers(store),
        blocklist=SqlBlocklist(store),
        voicemail=SqlVoicemail(store),
        forwarding=SqlForwarding(store),
        remote_control=SqlRemoteControl(store),
        last_callers=SqlLastCallers(store),
        call_records=SqlCallRecords(store),
        pins=SqlPins(store),
        feed=SqlChangeFeed(store),
    )


async def _lock_subscriber(connection: AsyncConnection, number: str) -> bool:
    """Hold the subscriber's row until the commit (see the module doc); False if unknown."""
    found = await connection.execute(
        select(subscribers.c.number).where(subscribers.c.number == number).with_for_update())
    return found.first() is not None


def _upsert(connection: AsyncConnection, table: Table) -> Any:
    """INSERT ... ON CONFLICT for this dialect (SQLite and PostgreSQL spell it alike)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite_dialect
    return dialect.insert(table)


class SqlSubscribers:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def line(self, number: str) -> Line | None:
        if (fast := self._store.fast) is not None:
            found = await fast.read(lambda c: c.execute(
                "SELECT number, sim, line, nuisance_option FROM subscribers WHERE number = ?",
                (number,)).fetchone())
            return None if found is None else Line(found[0], found[1], found[2], bool(found[3]))
        query = select(subscribers.c.number, subscribers.c.sim, subscribers.c.line,
                       subscribers.c.nuisance_option).where(subscribers.c.number == number)
        async with self._store.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else Line(row.number, row.sim, row.line,
                                             bool(row.nuisance_option))


class SqlBlocklist:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, number: str, blocked: str, now: float, limit: int) -> BlockResult:
        async with self._store.writing() as connection:
            await _lock_subscriber(connection, number)
            listed = set((await connection.execute(
                select(blocklist.c.blocked_number).where(blocklist.c.number == number)))
                .scalars())
            if blocked in listed:
                return BlockResult.DUPLICATE
            if len(listed) >= limit:
                return BlockResult.FULL
            await connection.execute(insert(blocklist).values(
                number=number, blocked_number=blocked, created_at=now))
            await self._store.record_changes(connection, "blocklist", [number])
        return BlockResult.ADDED

    async def remove(self, number: str, blocked: str) -> bool:
        async with self._store.writing() as connection:
            result = await connection.execute(delete(blocklist).where(
                blocklist.c.number == number, blocklist.c.blocked_number == blocked))
            if result.rowcount:
                await self._store.record_changes(connection, "blocklist", [number])
        return bool(result.rowcount)

    async def numbers(self, number: str) -> list[str]:
        query = (select(blocklist.c.blocked_number).where(blocklist.c.number == number)
                 .order_by(blocklist.c.id))
        async with self._store.engine.connect() as connection:
            return list((await connection.execute(query)).scalars())

    async def remove_last(self, number: str) -> str | None:
        async with self._store.writing() as connection:
            last = (await connection.execute(
                select(blocklist.c.id, blocklist.c.blocked_number)
                .where(blocklist.c.number == number).order_by(blocklist.c.id.desc()).limit(1)
            )).first()
            if last is None:
                return None
            await connection.execute(delete(blocklist).where(blocklist.c.id == last.id))
            await self._store.record_changes(connection, "blocklist", [number])
        return str(last.blocked_number)

    async def remove_all(self, number: str) -> int:
        async with self._store.writing() as connection:
            result = await connection.execute(delete(blocklist).where(blocklist.c.number == number))
            if result.rowcount:
                await self._store.record_changes(connection, "blocklist", [number])
        return int(result.rowcount)


class SqlVoicemail:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def settings(self, number: str) -> VoicemailSettings | None:
        if (fast := self._store.fast) is not None:
            found = await fast.read(lambda c: c.execute(
                "SELECT s.enabled, s.ring_time, g.number IS NOT NULL FROM voicemail_settings s "
                "LEFT OUTER JOIN voicemail_greetings g ON g.number = s.number "
                "WHERE s.number = ?", (number,)).fetchone())
            if found is None:
                return None
            ring_time = DEFAULT_RING_TIME if found[1] is None else int(found[1])
            return VoicemailSettings(bool(found[0]), ring_time, bool(found[2]))
        query = (select(voicemail_settings.c.enabled, voicemail_settings.c.ring_time,
                        voicemail_greetings.c.number.is_not(None).label("has_greeting"))
                 .select_from(voicemail_settings)
                 .outerjoin(voicemail_greetings,
                            voicemail_greetings.c.number == voicemail_settings.c.number)
                 .where(voicemail_settings.c.number == number))
        async with self._store.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        ring_time = DEFAULT_RING_TIME if row.ring_time is None else int(row.ring_time)
        return VoicemailSettings(bool(row.enabled), ring_time, bool(row.has_greeting))

    async def update_settings(self, number: str, *, enabled: bool | None,
                              ring_time: int | None) -> None:
        values: dict[str, Any] = {}
        if enabled is not None:
            values["enabled"] = enabled
        if ring_time is not None:
            values["ring_time"] = ring_time
        if not values:
            return
        if (fast := self._store.fast) is not None:
            assignments = ", ".join(f"{name} = ?" for name in values)

            def write(connection: sqlite3.Connection) -> None:
                connection.execute(f"UPDATE voicemail_settings SET {assignments} WHERE number = ?",
                                   (*values.values(), number))
                fast.record_change(connection, "voicemail", number)

            await fast.write(write)
            return
        async with self._store.writing() as connection:
            await connection.execute(update(voicemail_settings)
                                     .where(voicemail_settings.c.number == number).values(values))
            await self._store.record_changes(connection, "voicemail", [number])

    async def count_messages(self, number: str) -> int:
        query = select(func.count()).select_from(voicemail_messages).where(
            voicemail_messages.c.number == number)
        async with self._store.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def add_message(self, number: str, caller: str | None, received_at: float,
                          seconds: float, audio_file: str, limit: int) -> int | None:
        async with self._store.writing() as connection:
            await _lock_subscriber(connection, number)
            held = (await connection.execute(select(func.count()).select_from(voicemail_messages)
                                             .where(voicemail_messages.c.number == number)))
            if held.scalar_one() >= limit:
                return None
            added = await connection.execute(
                insert(voicemail_messages).values(
                    number=number, caller=caller, received_at=received_at, seconds=seconds,
                    new=True, audio_file=audio_file).returning(voicemail_messages.c.id))
            message_id = int(added.scalar_one())
            await self._store.record_changes(connection, "messages", [number])
        return message_id

    async def messages(self, number: str) -> list[VoicemailMessage]:
        m = voicemail_messages.c
        query = (select(m.id, m.number, m.caller, m.received_at, m.seconds, m.new, m.audio_file)
                 .where(m.number == number).order_by(m.new.desc(), m.received_at, m.id))
        async with self._store.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [VoicemailMessage(row.id, row.number, row.caller, row.received_at, row.seconds,
                                 bool(row.new), row.audio_file) for row in rows]

    async def mark_heard(self, number: str, message_id: int) -> bool:
        async with self._store.writing() as connection:
            result = await connection.execute(
                update(voicemail_messages).where(voicemail_messages.c.id == message_id,
                                                 voicemail_messages.c.number == number)
                .values(new=False))
            if result.rowcount:
                await self._store.record_changes(connection, "messages", [number])
        return bool(result.rowcount)

    async def delete_message(self, number: str, message_id: int) -> str | None:
        async with self._store.writing() as connection:
            gone = (await connection.execute(
                delete(voicemail_messages).where(voicemail_messages.c.id == message_id,
                                                 voicemail_messages.c.number == number)
                .returning(voicemail_messages.c.audio_file))).first()
            if gone is None:
                return None
            await self._store.record_changes(connection, "messages", [number])
        return str(gone.audio_file)

    async def delete_messages_before(self, received_before: float) -> list[str]:
        async with self._store.writing() as connection:
            gone = (await connection.execute(
                delete(voicemail_messages)
                .where(voicemail_messages.c.received_at < received_before)
                .returning(voicemail_messages.c.number, voicemail_messages.c.audio_file))).all()
            await self._store.record_changes(connection, "messages",
                                             sorted({row.number for row in gone}))
        return [row.audio_file for row in gone]

    async def greeting(self, number: str) -> str | None:
        query = select(voicemail_greetings.c.audio_file).where(
            voicemail_greetings.c.number == number)
        async with self._store.engine.connect() as connection:
            found = (await connection.execute(query)).scalar()
        return None if found is None else str(found)

    async def set_greeting(self, number: str, audio_file: str, now: float) -> str | None:
        async with self._store.writing() as connection:
            previous = await _delete_greeting(connection, number)
            await connection.execute(insert(voicemail_greetings).values(
                number=number, audio_file=audio_file, recorded_at=now))
            await self._store.record_changes(connection, "voicemail", [number])
        return previous

    async def reset_greeting(self, number: str) -> str | None:
        async with self._store.writing() as connection:
            previous = await _delete_greeting(connection, number)
            if previous is not None:
                await self._store.record_changes(connection, "voicemail", [number])
        return previous


async def _delete_greeting(connection: AsyncConnection, number: str) -> str | None:
    gone = (await connection.execute(
        delete(voicemail_greetings).where(voicemail_greetings.c.number == number)
        .returning(voicemail_greetings.c.audio_file))).first()
    return None if gone is None else str(gone.audio_file)


class SqlForwarding:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def settings(self, number: str) -> ForwardingSettings | None:
        if (fast := self._store.fast) is not None:
            found = await fast.read(lambda c: c.execute(
                "SELECT active, destination, mode FROM forwarding WHERE number = ?",
                (number,)).fetchone())
            return None if found is None else ForwardingSettings(bool(found[0]), found[1],
                                                                 found[2])
        async with self._store.engine.connect() as connection:
            return await _forwarding_of(connection, number)

    async def update(self, number: str, *, destination: str | None = None,
                     mode: ForwardingMode | None = None,
                     enabled: bool | None = None) -> ForwardingSettings:
        values: dict[str, Any] = {}
        if destination is not None:
            values["destination"] = destination
        if mode is not None:
            values["mode"] = mode
        if enabled is not None:
            values["active"] = enabled
        if (fast := self._store.fast) is not None:
            assignments = ", ".join(f"{name} = ?" for name in values)

            def write(connection: sqlite3.Connection) -> ForwardingSettings:
                if values:
                    connection.execute(f"UPDATE forwarding SET {assignments} WHERE number = ?",
                                       (*values.values(), number))
                    fast.record_change(connection, "forwarding", number)
                row = connection.execute("SELECT active, destination, mode FROM forwarding "
                                         "WHERE number = ?", (number,)).fetchone()
                assert row is not None  # provisioning writes every subscriber's row
                return ForwardingSettings(bool(row[0]), row[1], row[2])

            return await fast.write(write)
        async with self._store.writing() as connection:
            if values:
                await connection.execute(update(forwarding).where(forwarding.c.number == number)
                                         .values(values))
                await self._store.record_changes(connection, "forwarding", [number])
            settings = await _forwarding_of(connection, number)
        assert settings is not None  # provisioning writes every subscriber's row
        return settings


async def _forwarding_of(connection: AsyncConnection, number: str) -> ForwardingSettings | None:
    row = (await connection.execute(
        select(forwarding.c.active, forwarding.c.destination, forwarding.c.mode)
        .where(forwarding.c.number == number))).first()
    if row is None:
        return None
    return ForwardingSettings(bool(row.active), row.destination, row.mode)


class SqlRemoteControl:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def enabled(self, number: str) -> bool | None:
        if (fast := self._store.fast) is not None:
            row = await fast.read(lambda c: c.execute(
                "SELECT enabled FROM remote_control WHERE number = ?", (number,)).fetchone())
            return None if row is None else bool(row[0])
        query = select(remote_control.c.enabled).where(remote_control.c.number == number)
        async with self._store.engine.connect() as connection:
            found = (await connection.execute(query)).scalar()
        return None if found is None else bool(found)

    async def set_enabled(self, number: str, enabled: bool) -> None:
        async with self._store.writing() as connection:
            await connection.execute(update(remote_control)
                                     .where(remote_control.c.number == number)
                                     .values(enabled=enabled, wrong_streak=0))
            await self._store.record_changes(connection, "remote_control", [number])

    async def wrong_attempt(self, number: str, disable_after: int) -> tuple[int, bool]:
        if (fast := self._store.fast) is not None:
            def write(connection: sqlite3.Connection) -> tuple[int, bool]:
                row = connection.execute(
                    "UPDATE remote_control SET wrong_streak = wrong_streak + 1, enabled = CASE "
                    "WHEN wrong_streak + 1 >= ? THEN 0 ELSE enabled END WHERE number = ? "
                    "RETURNING wrong_streak, enabled", (disable_after, number)).fetchone()
                if row is None:
                    raise UnknownSubscriber(number)
                fast.record_change(connection, "remote_control", number)
                return int(row[0]), bool(row[1])

            return await fast.write(write)
        streak = remote_control.c.wrong_streak + 1
        async with self._store.writing() as connection:
            row = (await connection.execute(
                update(remote_control).where(remote_control.c.number == number)
                .values(wrong_streak=streak,
                        enabled=case((streak >= disable_after, false()),
                                     else_=remote_control.c.enabled))
                .returning(remote_control.c.wrong_streak, remote_control.c.enabled))).first()
            if row is None:
                raise UnknownSubscriber(number)
            await self._store.record_changes(connection, "remote_control", [number])
        return int(row.wrong_streak), bool(row.enabled)

    async def right_attempt(self, number: str) -> None:
        if (fast := self._store.fast) is not None:
            def write(connection: sqlite3.Connection) -> None:
                if connection.execute("UPDATE remote_control SET wrong_streak = 0 "
                                      "WHERE number = ? AND wrong_streak != 0",
                                      (number,)).rowcount:
                    fast.record_change(connection, "remote_control", number)

            await fast.write(write)
            return
        async with self._store.writing() as connection:
            result = await connection.execute(
                update(remote_control)
                .where(remote_control.c.number == number, remote_control.c.wrong_streak != 0)
                .values(wrong_streak=0))
            if result.rowcount:
                await self._store.record_changes(connection, "remote_control", [number])


class SqlLastCallers:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def set_last_callers(self, calls: Sequence[tuple[str, str | None, float]]) -> None:
        if (fast := self._store.fast) is not None:
            upserts = [(number, caller, at, number) for number, caller, at in calls]
            await fast.write(lambda c: c.executemany(_LAST_CALLER_UPSERT, upserts))
            return
        async with self._store.writing() as connection:
            known = set((await connection.execute(
                select(subscribers.c.number)
                .where(subscribers.c.number.in_({number for number, _, _ in calls}))))
                .scalars())
            rows = [{"number": number, "caller": caller, "at": at}
                    for number, caller, at in calls if number in known]
            if not rows:
                return
            statement = _upsert(connection, last_callers)
            await connection.execute(statement.on_conflict_do_update(
                index_elements=[last_callers.c.number],
                set_={"caller": statement.excluded.caller, "at": statement.excluded.at}), rows)

    async def last_caller(self, number: str) -> LastCaller | None:
        query = select(last_callers.c.caller, last_callers.c.at).where(
            last_callers.c.number == number)
        async with self._store.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else LastCaller(row.caller, row.at)


# A subscriber's last caller, unless the subscriber is gone meanwhile (SQLite's dialect).
_LAST_CALLER_UPSERT = (
    f"INSERT INTO {last_callers.name} (number, caller, at) SELECT ?, ?, ? WHERE EXISTS "
    f"(SELECT 1 FROM {subscribers.name} WHERE number = ?) "
    "ON CONFLICT (number) DO UPDATE SET caller = excluded.caller, at = excluded.at")


class SqlCallRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add_call_records(self, records: Sequence[CallRecord]) -> None:
        if (fast := self._store.fast) is not None:
            inserts = [tuple(getattr(record, name) for name in CALL_RECORD_FIELDS)
                       for record in records]
            await fast.write(lambda c: c.executemany(_CALL_RECORD_INSERT, inserts))
            return
        async with self._store.writing() as connection:
            await connection.execute(insert(call_records), [asdict(record) for record in records])


_CALL_RECORD_INSERT = (f"INSERT INTO {call_records.name} ({', '.join(CALL_RECORD_FIELDS)}) "
                       f"VALUES ({', '.join('?' * len(CALL_RECORD_FIELDS))})")


class SqlPins:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def pin(self, number: str) -> PinRecord | None:
        if (fast := self._store.fast) is not None:
            found = await fast.read(lambda c: c.execute(
                "SELECT pin_hash, pending_pin_hash, pending_apply_at, failures, locked "
                "FROM pins WHERE number = ?", (number,)).fetchone())
            return None if found is None else PinRecord(
                number, found[0], found[1], found[2], int(found[3]), bool(found[4]))
        query = select(pins.c.pin_hash, pins.c.pending_pin_hash, pins.c.pending_apply_at,
                       pins.c.failures, pins.c.locked).where(pins.c.number == number)
        async with self._store.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        return PinRecord(number, row.pin_hash, row.pending_pin_hash, row.pending_apply_at,
                         int(row.failures), bool(row.locked))

    async def reserve_attempt(self, number: str, max_failures: int) -> int | None:
        if (fast := self._store.fast) is not None:
            def write(connection: sqlite3.Connection) -> int | None:
                row = connection.execute(
                    "UPDATE pins SET failures = failures + 1 WHERE number = ? AND locked = 0 "
                    "AND failures < ? RETURNING failures", (number, max_failures)).fetchone()
                if row is None:
                    return None
                fast.record_change(connection, "pin", number)
                return int(row[0])

            return await fast.write(write)
        async with self._store.writing() as connection:
            taken = (await connection.execute(
                update(pins)
                .where(pins.c.number == number, pins.c.locked == false(),
                       pins.c.failures < max_failures)
                .values(failures=pins.c.failures + 1).returning(pins.c.failures))).scalar()
            if taken is not None:
                await self._store.record_changes(connection, "pin", [number])
        return None if taken is None else int(taken)

    async def attempt_succeeded(self, number: str) -> bool:
        if (fast := self._store.fast) is not None:
            def write(connection: sqlite3.Connection) -> bool:
                if not connection.execute("UPDATE pins SET failures = 0 "
                                          "WHERE number = ? AND locked = 0", (number,)).rowcount:
                    return False
                fast.record_change(connection, "pin", number)
                return True

            return await fast.write(write)
        async with self._store.writing() as connection:
            result = await connection.execute(
                update(pins).where(pins.c.number == number, pins.c.locked == false())
                .values(failures=0))
            if result.rowcount:
                await self._store.record_changes(connection, "pin", [number])
        return bool(result.rowcount)

    async def attempt_failed(self, number: str, max_failures: int) -> tuple[int, bool]:
        if (fast := self._store.fast) is not None:
            def write(connection: sqlite3.Connection) -> tuple[int, bool]:
                row = connection.execute(
                    "UPDATE pins SET locked = CASE WHEN failures >= ? THEN 1 ELSE locked END "
                    "WHERE number = ? RETURNING failures, locked",
                    (max_failures, number)).fetchone()
                if row is None:
                    raise UnknownSubscriber(number)
                fast.record_change(connection, "pin", number)
                return int(row[0]), bool(row[1])

            return await fast.write(write)
        async with self._store.writing() as connection:
            row = (await connection.execute(
                update(pins).where(pins.c.number == number)
                .values(locked=case((pins.c.failures >= max_failures, true()),
                                    else_=pins.c.locked))
                .returning(pins.c.failures, pins.c.locked))).first()
            if row is None:
                raise UnknownSubscriber(number)
            await self._store.record_changes(connection, "pin", [number])
        return int(row.failures), bool(row.locked)

    async def unlock(self, number: str) -> bool:
        async with self._store.writing() as connection:
            result = await connection.execute(
                update(pins).where(pins.c.number == number).values(failures=0, locked=False))
            if result.rowcount:
                await self._store.record_changes(connection, "pin", [number])
        return bool(result.rowcount)

    async def source_failures(self, source: str, now: float, window: float) -> int:
        if (fast := self._store.fast) is not None:
            row = await fast.read(lambda c: c.execute(
                "SELECT failures FROM pin_source_failures WHERE source = ? AND window_start > ?",
                (source, now - window)).fetchone())
            return 0 if row is None else int(row[0])
        query = select(pin_source_failures.c.failures).where(
            pin_source_failures.c.source == source,
            pin_source_failures.c.window_start > now - window)
        async with self._store.engine.connect() as connection:
            found = (await connection.execute(query)).scalar()
        return 0 if found is None else int(found)

    async def add_source_failure(self, source: str, now: float, window: float) -> int:
        if (fast := self._store.fast) is not None:
            def write(connection: sqlite3.Connection) -> int:
                # in DO UPDATE, the bare column names are the stored row's
                expired = "window_start <= ?"
                row = connection.execute(
                    "INSERT INTO pin_source_failures (source, failures, window_start) "
                    "VALUES (?, 1, ?) ON CONFLICT (source) DO UPDATE SET "
                    f"failures = CASE WHEN {expired} THEN 1 ELSE failures + 1 END, "
                    f"window_start = CASE WHEN {expired} THEN ? ELSE window_start END "
                    "RETURNING failures",
                    (source, now, now - window, now - window, now)).fetchone()
                return int(row[0])

            return await fast.write(write)
        table = pin_source_failures
        expired = table.c.window_start <= now - window
        async with self._store.writing() as connection:
            statement = _upsert(connection, table).values(
                source=source, failures=1, window_start=now)
            counted = await connection.execute(statement.on_conflict_do_update(
                index_elements=[table.c.source],
                set_={"failures": case((expired, 1), else_=table.c.failures + 1),
                      "window_start": case((expired, now), else_=table.c.window_start)},
            ).returning(table.c.failures))
            return int(counted.scalar_one())

