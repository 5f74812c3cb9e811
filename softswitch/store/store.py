"""The store: subscribers, their service state and SIP registrations.

Built from a URL: 'sqlite+aiosqlite:///var/softswitch.db' (a file; a relative path is
relative to the working directory; its directory is created; WAL journal) or
'postgresql+asyncpg://user:password@host/dbname' (state shared by several instances).
Tables are created on open. Services build their own queries on `Store.engine` and the
tables in softswitch.store.schema.

One exception to "everything through SQLAlchemy": on a SQLite file, the registrar's binding
writes (its group commits, the hot path under REGISTER load) go through `SqliteBindingJournal`,
a plain sqlite3 connection on a thread of its own that runs a whole batch in one call. Through
SQLAlchemy and aiosqlite the same batch costs four thread hops and ~1.3 ms of the event loop's
CPU (statement compilation, greenlets); this way ~0.1 ms. PostgreSQL keeps the SQLAlchemy path.
"""

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from softswitch.config import Config
from softswitch.store.provisioning import (
    PROVISIONED_COLUMNS,
    UNIQUE_COLUMNS,
    ProvisionSummary,
    plan_provisioning,
)
from softswitch.store.schema import (
    SUBSCRIBER_STATE_TABLES,
    blocklist,
    forwarding,
    metadata,
    pins,
    registrations,
    remote_control,
    settings,
    sip_credentials,
    subscribers,
    voicemail_settings,
)

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


@dataclass(slots=True, frozen=True)
class SipCredentials:
    """What digest authentication needs for one username a voice SIM's phone may use: the
    subscriber it names and the HA1s. An HA1 is as good as the password: never in a repr."""

    username: str  # as the phone sends it: 09012345678, +819012345678, 090-1234-5678 ...
    number: str  # the subscriber, national format
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)


@dataclass(slots=True, frozen=True)
class BindingRow:
    """One registered contact of an address-of-record (the subscriber number)."""

    aor: str
    contact: str
    expires_at: float  # wall-clock epoch seconds
    call_id: str
    cseq: int
    q: float | None
    source: str  # 'udp:host:port' the REGISTER came from
    user_agent: str


_BINDING_FIELDS = tuple(spec.name for spec in fields(BindingRow))
_binding_values = attrgetter(*_BINDING_FIELDS)  # a BindingRow as a tuple in column order


class Store:
    def __init__(self, engine: AsyncEngine, journal: "SqliteBindingJournal | None" = None) -> None:
        self.engine = engine
        self._journal = journal

    @classmethod
    async def open(cls, url: str, *, binding_journal: bool = True) -> "Store":
        """Connect and create any missing tables. `binding_journal=False` sends binding writes
        of a SQLite file through SQLAlchemy too (as for PostgreSQL; see the module doc)."""
        engine = _create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
        except BaseException:
            await engine.dispose()
            raise
        path = _sqlite_file(url)
        journal = SqliteBindingJournal(path) if binding_journal and path is not None else None
        return cls(engine, journal)

    async def close(self) -> None:
        if self._journal is not None:
            await self._journal.close()
        await self.engine.dispose()

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
        async with self.engine.begin() as connection:
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
            for chunk in _chunks(plan.stale_usernames, MAX_KEYS_PER_IN):
                await connection.execute(
                    sip_credentials.delete().where(sip_credentials.c.username.in_(chunk)))
            if plan.new_credentials:
                await connection.execute(sip_credentials.insert(), plan.new_credentials)
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

    async def write_bindings(self, changes: Mapping[str, Sequence[BindingRow]]) -> None:
        """Replace the whole binding set of each AOR in `changes`, all in one transaction.

        An empty sequence removes all of that AOR's bindings. Made for group commit: one
        DELETE ... IN and one executemany INSERT for the whole batch.
        """
        if not changes:
            return
        aors = list(changes)
        rows = _binding_rows(changes)
        if self._journal is not None:
            await self._journal.replace(aors, rows)
            return
        async with self.engine.begin() as connection:
            for chunk in _chunks(aors, MAX_KEYS_PER_IN):
                await connection.execute(
                    registrations.delete().where(registrations.c.aor.in_(chunk))
                )
            if rows:
                named = [dict(zip(_BINDING_FIELDS, row, strict=True)) for row in rows]
                await connection.execute(registrations.insert(), named)

    async def load_bindings(self, now_epoch: float) -> dict[str, list[BindingRow]]:
        """All unexpired bindings by AOR; expired rows are deleted on the way."""
        columns = [registrations.c[name] for name in _BINDING_FIELDS]
        query = select(*columns).order_by(registrations.c.aor, registrations.c.contact)
        async with self.engine.begin() as connection:
            await connection.execute(
                registrations.delete().where(registrations.c.expires_at <= now_epoch)
            )
            result = await connection.execute(query)
        bindings: dict[str, list[BindingRow]] = {}
        for row in result:
            bindings.setdefault(row.aor, []).append(BindingRow(*row))
        return bindings

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

        Never includes the PIN, the passwords or their hashes.
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
            "voicemail": {
                "enabled": subscriber.voicemail_enabled,
                "ring_time": subscriber.ring_time,
            },
            "forwarding": {
                "active": subscriber.forwarding_active,
                "destination": subscriber.destination,
                "mode": subscriber.mode,
            },
            "remote_control": {"enabled": subscriber.remote_control_enabled},
            "pin": {
                "locked": subscriber.locked,
                "failures": subscriber.failures,
                "pending_change": subscriber.pending_pin_hash is not None,
                "pending_apply_at": subscriber.pending_apply_at,
            },
        }


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
            pins.c.locked,
            pins.c.failures,
            pins.c.pending_pin_hash,
            pins.c.pending_apply_at,
        )
        .select_from(subscribers)
        .outerjoin(voicemail_settings, voicemail_settings.c.number == subscribers.c.number)
        .outerjoin(forwarding, forwarding.c.number == subscribers.c.number)
        .outerjoin(remote_control, remote_control.c.number == subscribers.c.number)
        .outerjoin(pins, pins.c.number == subscribers.c.number)
        .where(subscribers.c.number == number)
    )
    return (await connection.execute(query)).first()


class SqliteBindingJournal:
    """Binding writes to a SQLite file on a thread of their own: one call per batch.

    The thread must win the GIL back after every SQLite statement, and under load the event
    loop holds it for up to the switch interval (5 ms) each time; a batch written row by row
    (executemany) waited for that once per row. So a batch is a few statements: one DELETE
    and one multi-row INSERT per chunk of rows."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="binding-journal")
        self._connection: sqlite3.Connection | None = None  # made on, and used by, the thread
        self._insert_head = (
            f"INSERT INTO {registrations.name} ({', '.join(_BINDING_FIELDS)}) VALUES ")
        self._row = f"({', '.join('?' * len(_BINDING_FIELDS))})"

    async def replace(self, aors: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Replace the bindings of `aors` by `rows` in one transaction."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._replace, aors, rows)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()

    def _replace(self, aors: list[str], rows: list[tuple[Any, ...]]) -> None:
        connection = self._connection
        if connection is None:
            connection = self._connection = sqlite3.connect(
                self._path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            _configure_sqlite_connection(connection, None)
        connection.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock
        try:
            for chunk in _chunks(aors, MAX_KEYS_PER_IN):
                connection.execute(
                    f"DELETE FROM {registrations.name} WHERE aor IN "
                    f"({', '.join('?' * len(chunk))})", chunk)
            for start in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[start : start + ROWS_PER_INSERT]
                # the same text for every full chunk: sqlite3's statement cache keeps it parsed
                statement = self._insert_head + ", ".join([self._row] * len(chunk))
                connection.execute(statement, [value for row in chunk for value in row])
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _binding_rows(changes: Mapping[str, Sequence[BindingRow]]) -> list[tuple[Any, ...]]:
    """The rows to write, as tuples in column order; a contact listed twice: the last counts."""
    rows: list[tuple[Any, ...]] = []
    for aor, bindings in changes.items():
        by_contact: dict[str, BindingRow] = {}
        for binding in bindings:
            if binding.aor != aor:
                raise ValueError(f"binding for {binding.aor!r} listed under AOR {aor!r}")
            by_contact[binding.contact] = binding
        rows.extend(_binding_values(binding) for binding in by_contact.values())
    return rows


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
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
