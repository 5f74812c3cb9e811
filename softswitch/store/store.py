"""The store: subscribers, their service state and SIP registrations.

Built from a URL: 'sqlite+aiosqlite:///var/softswitch.db' (a file; a relative path is
relative to the working directory; its directory is created; WAL journal) or
'postgresql+asyncpg://user:password@host/dbname' (state shared by several instances).
Tables are created on open. The domain's repositories (softswitch.store.repositories) build
their queries on `Store.engine` and the tables in softswitch.store.schema.

Two exceptions to "everything through SQLAlchemy", both for what runs at the call rate:
- on a SQLite file, the registrar's binding writes (its group commits, the hot path under
  REGISTER load) go through `SqliteBindingJournal` (softswitch.store.fast_sqlite), a plain
  sqlite3 connection on a thread of its own that runs a whole batch in one call. Through
  SQLAlchemy and aiosqlite the same batch costs four thread hops and ~1.3 ms of the event
  loop's CPU (statement compilation, greenlets); this way ~0.1 ms. PostgreSQL keeps the
  SQLAlchemy path.
- `Store.reader` runs the change feed polls, directory snapshots and binding reloads on a
  connection of its own: a sqlite3 thread, or one asyncpg connection for PostgreSQL.
- on a SQLite file, `Store.fast` runs the repositories' transactions that come at the call
  rate (the PIN check, remote control's changes) in one call each on those two threads
  (`SqliteTransactions`); None for PostgreSQL and with `binding_journal=False`, and the
  repositories then take the SQLAlchemy path.

Bindings are written per contact (RFC 3261 §10.3 across instances): a write adds, refreshes
or removes the contacts it names and leaves the AOR's other contacts, which another instance
may have registered, as they are; it returns each touched AOR's bindings as stored after it.

Every transaction that changes a subscriber's state records it in the change feed (the
`changes` table, `Store.record_changes`) before it commits; see softswitch.services.directory.

On SQLite, SQLAlchemy transactions begin with an explicit BEGIN (the driver's own would start
only at the first write, leaving earlier reads outside the transaction); `Store.writing()`
begins with BEGIN IMMEDIATE, so that a transaction that reads then writes holds the write lock
from its start instead of failing to upgrade when another writer came first.
"""

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, event, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from softswitch.config import Config
from softswitch.store.bindings import (
    BINDING_FIELDS,
    BindingChange,
    BindingRow,
    StoredBindings,
    checked_changes,
    rows_by_aor,
)
from softswitch.store.fast_postgres import PostgresReader
from softswitch.store.fast_sqlite import (
    MAX_KEYS_PER_IN,
    SqliteBindingJournal,
    SqliteReader,
    SqliteTransactions,
    chunks,
    configure_sqlite_connection,
)
from softswitch.store.provisioning import (
    PROVISIONED_COLUMNS,
    UNIQUE_COLUMNS,
    ProvisionSummary,
    plan_provisioning,
)
from softswitch.store.schema import (
    SUBSCRIBER_STATE_TABLES,
    blocklist,
    changes,
    forwarding,
    last_callers,
    metadata,
    pins,
    registrations,
    remote_control,
    settings,
    sip_credentials,
    subscribers,
    voicemail_greetings,
    voicemail_messages,
    voicemail_settings,
)

__all__ = ["BindingChange", "BindingRow", "SipCredentials", "Store", "StoredBindings"]

_WRITE_OPTION = "softswitch_write"  # execution option: this transaction writes
# pg_advisory_xact_lock key: transactions that write the change feed take it last and hold it
# to their commit, so on PostgreSQL too seq order is commit order (no reader ever sees seq 8
# committed while seq 7 is still in flight and later appears behind its position).
FEED_LOCK_KEY = 0x736F667473770001


@dataclass(slots=True, frozen=True)
class SipCredentials:
    """What digest authentication needs for one username a voice SIM's phone may use: the
    subscriber it names and the HA1s. An HA1 is as good as the password: never in a repr."""

    username: str  # as the phone sends it: 09012345678, +819012345678, 090-1234-5678 ...
    number: str  # the subscriber, national format
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)


class Store:
    def __init__(self, engine: AsyncEngine, instance: str,
                 reader: SqliteReader | PostgresReader,
                 journal: SqliteBindingJournal | None = None) -> None:
        self.engine = engine
        self.instance = instance  # this process's name in the change feed
        self._write_engine = engine.execution_options(**{_WRITE_OPTION: True})
        self._journal = journal
        # Feed polls, directory snapshots and binding reloads, on a connection of their own.
        self.reader = reader
        # The call-rate transactions of the repositories, one call each (SQLite file only).
        self.fast = (SqliteTransactions(journal.thread, reader.thread, instance)
                     if journal is not None and isinstance(reader, SqliteReader) else None)

    @classmethod
    async def open(cls, url: str, *, binding_journal: bool = True) -> "Store":
        """Connect and create any missing tables: a SQLite file or PostgreSQL.
        `binding_journal=False` sends the binding writes of a SQLite file through SQLAlchemy
        too, and the repositories' call-rate transactions (as for PostgreSQL; see the module
        doc)."""
        if make_url(url).get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("the store is a SQLite file or a PostgreSQL database")
        path = _sqlite_file(url)
        if make_url(url).get_backend_name() == "sqlite" and path is None:
            raise ValueError("the SQLite store must be a file: other instances share it")
        engine = _create_engine(url)
        try:
            async with engine.execution_options(**{_WRITE_OPTION: True}).begin() as connection:
                await connection.run_sync(metadata.create_all)
        except BaseException:
            await engine.dispose()
            raise
        instance = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        if path is None:
            return cls(engine, instance, PostgresReader(url))
        journal = SqliteBindingJournal(path, instance) if binding_journal else None
        return cls(engine, instance, SqliteReader(path), journal)

    async def close(self) -> None:
        if self._journal is not None:
            await self._journal.close()
        await self.reader.close()
        await self.engine.dispose()

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction that writes (on SQLite: holds the write lock from its start)."""
        return self._write_engine.begin()

    async def record_changes(self, connection: AsyncConnection, kind: str,
                             numbers: Collection[str]) -> int:
        """Add a change feed row of `kind` for each of `numbers` in the transaction of
        `connection`; returns the feed position of the last. Call it after the transaction's
        other writes (on PostgreSQL it takes the feed lock, held until the commit)."""
        if not numbers:
            return 0
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": FEED_LOCK_KEY})
        now = time.time()
        await connection.execute(changes.insert(), [
            {"number": number, "kind": kind, "instance": self.instance, "at": now}
            for number in numbers])
        return int((await connection.execute(select(func.max(changes.c.seq)))).scalar_one())

    # -- provisioning ------------------------------------------------------------------------

    async def provision(self, config: Config) -> ProvisionSummary:
        """Add and update the config's subscribers; never touches their service state.

        Raises ProvisioningError if a login of a subscriber in the config belongs to a
        subscriber that is in the store but no longer in the config.
        """
        async with self.engine.connect() as connection:
            columns = [subscribers.c[name] for name in ("number", *PROVISIONED_COLUMNS)]
            stored = {row.number: row for row in await connection.execute(select(*columns))}
            numbers_with_state = {
                table: set((await connection.execute(select(table.c.number))).scalars())
                for table in SUBSCRIBER_STATE_TABLES
            }
            stored_credentials = {
                row.username: (row.number, row.ha1_md5, row.ha1_sha256)
                for row in await connection.execute(select(sip_credentials))
            }
        # argon2 is slow on purpose: keep it off the event loop and out of the transaction.
        plan = await asyncio.to_thread(
            plan_provisioning, config, stored, numbers_with_state, time.time(),
            stored_credentials,
        )
        async with self.writing() as connection:
            changed = plan.changed_subscribers
            if plan.changing_logins:  # free them first, so that two subscribers can swap emails
                await connection.execute(
                    subscribers.update()
                    .where(subscribers.c.number.in_(plan.changing_logins))
                    .values(dict.fromkeys(UNIQUE_COLUMNS))
                )
            if changed:
                await connection.execute(
                    subscribers.update().where(subscribers.c.number == bindparam("key")),
                    [
                        {"key": row["number"], **{k: row[k] for k in PROVISIONED_COLUMNS}}
                        for row in changed
                    ],
                )
            if plan.new_subscribers:
                await connection.execute(subscribers.insert(), plan.new_subscribers)
            for table, rows in plan.state_rows.items():
                if rows:
                    await connection.execute(table.insert(), rows)
            for chunk in chunks(plan.stale_usernames, MAX_KEYS_PER_IN):
                await connection.execute(
                    sip_credentials.delete().where(sip_credentials.c.username.in_(chunk)))
            if plan.new_credentials:
                await connection.execute(sip_credentials.insert(), plan.new_credentials)
            await self.record_changes(connection, "subscriber",
                                      plan.summary.added + plan.summary.updated)
        return plan.summary

    # -- registrar ---------------------------------------------------------------------------

    async def load_credentials(self) -> dict[str, SipCredentials]:
        """The digest credentials of every voice SIM, by username (one per username form)."""
        async with self.engine.connect() as connection:
            result = await connection.execute(select(sip_credentials))
        return {
            row.username: SipCredentials(row.username, row.number, row.ha1_md5, row.ha1_sha256)
            for row in result
        }

    async def write_bindings(self, changes: Mapping[str, BindingChange]) -> StoredBindings:
        """Apply each AOR's change in one transaction (group commit), with a change feed row
        per AOR, and return every touched AOR's bindings as stored after it, read back in the
        same transaction (an AOR left without bindings is absent), at the transaction's feed
        position. Expired rows are included: the reader filters by time."""
        if not changes:
            return StoredBindings(0, {})
        batch = dict(changes)
        if self._journal is not None:
            return await self._journal.write(batch)
        cleared, removals, rows = checked_changes(batch)
        async with self.writing() as connection:
            for chunk in chunks(cleared, MAX_KEYS_PER_IN):
                await connection.execute(
                    registrations.delete().where(registrations.c.aor.in_(chunk)))
            if removals:
                await connection.execute(
                    registrations.delete().where(
                        registrations.c.aor == bindparam("removed_aor"),
                        registrations.c.contact == bindparam("removed_contact")),
                    [{"removed_aor": aor, "removed_contact": contact}
                     for aor, contact in removals])
            if rows:
                await connection.execute(
                    _upsert_bindings(connection.dialect.name),
                    [dict(zip(BINDING_FIELDS, row, strict=True)) for row in rows])
            position = await self.record_changes(connection, "bindings", list(batch))
            return StoredBindings(position, await _read_bindings(connection, list(batch)))

    async def read_bindings(self, aors: Collection[str] | None = None) -> StoredBindings:
        """The bindings of `aors` (None: every AOR) by AOR, expired ones included, and the feed
        position they are at least as new as."""
        return await self.reader.read_bindings(None if aors is None else list(aors))

    async def delete_expired_bindings(self, now_epoch: float) -> int:
        """Delete the rows that expired by `now_epoch`, whoever wrote them; how many went.
        A binding refreshed meanwhile has a later expiry and stays."""
        if self._journal is not None:
            return await self._journal.delete_expired(now_epoch)
        async with self.writing() as connection:
            result = await connection.execute(
                registrations.delete().where(registrations.c.expires_at <= now_epoch))
        return int(result.rowcount)

    async def shared_secret(self, name: str) -> bytes:
        """A random secret kept in the store, made on first use; the same for every instance."""
        query = select(settings.c.value).where(settings.c.name == name)
        async with self.engine.begin() as connection:
            value = (await connection.execute(query)).scalar()
            if value is None:
                value = secrets.token_hex(32)
                await connection.execute(settings.insert().values(name=name, value=value))
        return bytes.fromhex(value)

    # -- operator ----------------------------------------------------------------------------

    async def subscriber_state(
        self, number: str, now_epoch: float | None = None
    ) -> dict[str, Any] | None:
        """JSON-able state of one subscriber for `softswitch show`; None if unknown.

        Never includes the PIN, the passwords or their hashes. A data SIM has no voice
        service enabled, whatever its state rows say.
        """
        now = time.time() if now_epoch is None else now_epoch
        async with self.engine.connect() as connection:
            subscriber = await _one_subscriber_with_state(connection, number)
            if subscriber is None:
                return None
            blocked = await connection.execute(
                select(blocklist.c.blocked_number)
                .where(blocklist.c.number == number)
                .order_by(blocklist.c.id)
            )
            bindings = await connection.execute(
                select(
                    registrations.c.contact,
                    registrations.c.expires_at,
                    registrations.c.source,
                    registrations.c.user_agent,
                )
                .where(registrations.c.aor == number, registrations.c.expires_at > now)
                .order_by(registrations.c.contact)
            )
            m = voicemail_messages.c
            messages = (await connection.execute(
                select(m.caller, m.received_at, m.seconds, m.new)
                .where(m.number == number).order_by(m.new.desc(), m.received_at, m.id))).all()
            last = (await connection.execute(
                select(last_callers.c.caller).where(last_callers.c.number == number))).first()
        voice = subscriber.sim == "voice"
        new = sum(1 for message in messages if message.new)
        return {
            "number": subscriber.number,
            "sim": subscriber.sim,
            "line": subscriber.line,
            "options": {"nuisance_blocking": subscriber.nuisance_option},
            "registrations": [
                {
                    "contact": row.contact,
                    "expires_in": round(row.expires_at - now),
                    "source": row.source,
                    "user_agent": row.user_agent,
                }
                for row in bindings
            ],
            "blocklist": list(blocked.scalars()),
            # None: nobody has called; "withheld": the last caller withheld the number
            "last_caller": None if last is None else (last.caller or "withheld"),
            "voicemail": {
                "enabled": voice and bool(subscriber.voicemail_enabled),
                "ring_time": subscriber.ring_time,
                "greeting": subscriber.has_greeting,
                "new": new,
                "saved": len(messages) - new,
                "messages": [
                    {
                        "caller": message.caller,  # None: withheld
                        "time": _iso_time(message.received_at),
                        "duration": round(message.seconds, 1),
                        "new": bool(message.new),
                    }
                    for message in messages
                ],
            },
            "forwarding": {
                "enabled": voice and bool(subscriber.forwarding_active),
                "destination": subscriber.destination,
                "mode": subscriber.mode,
            },
            "remote_control": {"enabled": voice and bool(subscriber.remote_control_enabled)},
            "pin": {
                "locked": bool(subscriber.locked),
                "failures": subscriber.failures,
                "pending_change": subscriber.pending_pin_hash is not None,
                "pending_apply_at": subscriber.pending_apply_at,
            },
        }


def _iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


async def _one_subscriber_with_state(connection: AsyncConnection, number: str) -> Any:
    """The subscriber row joined with its one-row-per-subscriber state tables."""
    query = (
        select(
            subscribers.c.number,
            subscribers.c.sim,
            subscribers.c.line,
            subscribers.c.nuisance_option,
            voicemail_settings.c.enabled.label("voicemail_enabled"),
            voicemail_settings.c.ring_time,
            forwarding.c.active.label("forwarding_active"),
            forwarding.c.destination,
            forwarding.c.mode,
            remote_control.c.enabled.label("remote_control_enabled"),
            voicemail_greetings.c.number.is_not(None).label("has_greeting"),
            pins.c.locked,
            pins.c.failures,
            pins.c.pending_pin_hash,
            pins.c.pending_apply_at,
        )
        .select_from(subscribers)
        .outerjoin(voicemail_settings, voicemail_settings.c.number == subscribers.c.number)
        .outerjoin(forwarding, forwarding.c.number == subscribers.c.number)
        .outerjoin(remote_control, remote_control.c.number == subscribers.c.number)
        .outerjoin(voicemail_greetings, voicemail_greetings.c.number == subscribers.c.number)
        .outerjoin(pins, pins.c.number == subscribers.c.number)
        .where(subscribers.c.number == number)
    )
    return (await connection.execute(query)).first()


async def _read_bindings(connection: AsyncConnection,
                         aors: list[str]) -> dict[str, list[BindingRow]]:
    query = select(*(registrations.c[name] for name in BINDING_FIELDS)).order_by(
        registrations.c.aor, registrations.c.contact)
    rows: list[tuple[Any, ...]] = []
    for chunk in chunks(aors, MAX_KEYS_PER_IN):
        result = await connection.execute(query.where(registrations.c.aor.in_(chunk)))
        rows.extend(tuple(row) for row in result)
    return rows_by_aor(rows)


def _upsert_bindings(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT (aor, contact) DO UPDATE: SQLite and PostgreSQL spell it alike."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite_dialect.insert
    statement = insert(registrations)
    return statement.on_conflict_do_update(
        index_elements=[registrations.c.aor, registrations.c.contact],
        set_={name: statement.excluded[name] for name in BINDING_FIELDS[2:]})


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for other databases and in-memory or URI ones."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return database


def _create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed)
    database = _sqlite_file(url)
    if database is not None:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed)
    event.listen(engine.sync_engine, "connect", _connect_sqlite)
    event.listen(engine.sync_engine, "begin", _begin_sqlite)
    return engine


def _connect_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    configure_sqlite_connection(dbapi_connection, connection_record)
    dbapi_connection.isolation_level = None  # no implicit BEGIN: _begin_sqlite says when


def _begin_sqlite(connection: Connection) -> None:
    writes = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
