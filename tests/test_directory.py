"""The change feed and the subscriber directory: a read barrier over a store that other
processes write to (issue 9: "a change made through any instance holds for the next call")."""

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from softswitch.config import RegistrarConfig, SecurityConfig
from softswitch.services.directory import SubscriberDirectory
from softswitch.services.feed import Change, DirectorySnapshot, FeedPoll
from softswitch.services.model import CalleeView, ForwardingSettings, Line, VoicemailSettings
from softswitch.sip.digest import DigestAuthenticator
from softswitch.store.directory import SqlChangeFeed
from softswitch.store.fast_sqlite import SqliteReader
from softswitch.store.schema import blocklist, changes, voicemail_settings
from softswitch.store.store import BindingChange, Store
from softswitch.switch.auth import SipAuthenticator
from softswitch.switch.registrar import BindingWriter, Registrar

from .stores import HIROSHI, KENJI, NOW, POSTGRES_URL, SAKURA, binding, empty_postgres
from .support import ServerProcess, python_env
from .test_registrar import Phone


@pytest.fixture
async def directory(provisioned: Store) -> AsyncIterator[SubscriberDirectory]:
    # idle polls far apart: the tests decide when the feed is read
    opened = SubscriberDirectory(SqlChangeFeed(provisioned), idle_interval=60)
    await opened.start()
    yield opened
    await opened.close()


def in_another_process(url: str, code: str) -> None:
    """Run `code` (with `store` open on `url`) in a child Python process, as the CLI would."""
    program = textwrap.dedent("""
        import asyncio, sys
        from sqlalchemy import insert, update
        from softswitch.store.schema import blocklist, forwarding
        from softswitch.store.store import Store

        async def main():
            store = await Store.open(sys.argv[1])
            try:
        {body}
            finally:
                await store.close()

        asyncio.run(main())
    """).format(body=textwrap.indent(textwrap.dedent(code), " " * 16))
    result = subprocess.run([sys.executable, "-c", program, url], capture_output=True,
                            text=True, timeout=60, env=python_env())
    assert result.returncode == 0, result.stderr


async def test_views_are_loaded_at_start(directory: SubscriberDirectory) -> None:
    sakura = directory.callee(SAKURA)
    assert sakura == CalleeView(
        line=Line(SAKURA, "voice", "D", False),
        blocklist=frozenset(),
        voicemail=VoicemailSettings(enabled=True, ring_time=15, has_greeting=False),
        forwarding=ForwardingSettings(enabled=False, destination=None, mode="no_answer"),
        remote_control=False,
    )
    kenji = directory.callee(KENJI)
    assert kenji is not None and kenji.line.blocking_available  # type A with the option
    hiroshi = directory.callee(HIROSHI)  # a data SIM: its voicemail row says on, but no
    assert hiroshi is not None and not hiroshi.line.is_voice
    assert not hiroshi.voicemail.enabled and not hiroshi.line.blocking_available
    assert directory.callee("09000000000") is None


async def test_a_change_committed_by_another_process_is_seen_by_the_next_sync(
        directory: SubscriberDirectory, store_url: str, backend: str) -> None:
    if backend == "sqlite-sqlalchemy":
        pytest.skip("the child process writes the same way for both SQLite paths")
    in_another_process(store_url, f"""
        async with store.writing() as connection:
            await connection.execute(insert(blocklist).values(
                number="{SAKURA}", blocked_number="0312345678", created_at=0))
            await connection.execute(update(forwarding).where(forwarding.c.number == "{SAKURA}")
                                     .values(destination="{KENJI}", active=True))
            await store.record_changes(connection, "blocklist", ["{SAKURA}"])
            await store.record_changes(connection, "forwarding", ["{SAKURA}"])
    """)
    before = directory.callee(SAKURA)
    assert before is not None and before.blocklist == frozenset()  # not before sync()
    await directory.sync()
    after = directory.callee(SAKURA)
    assert after is not None and after.blocklist == frozenset({"0312345678"})
    assert after.blocks("0312345678") and not after.blocks(None)
    assert after.forwarding == ForwardingSettings(True, KENJI, "no_answer")


async def test_every_kind_of_routing_change_refreshes_the_view(
        directory: SubscriberDirectory, provisioned: Store) -> None:
    async with provisioned.writing() as connection:
        await connection.execute(update(voicemail_settings)
                                 .where(voicemail_settings.c.number == KENJI)
                                 .values(enabled=False, ring_time=40))
        await provisioned.record_changes(connection, "voicemail", [KENJI])
    await directory.sync()
    kenji = directory.callee(KENJI)
    assert kenji is not None and kenji.voicemail == VoicemailSettings(False, 40, False)


async def test_concurrent_syncs_share_one_poll(directory: SubscriberDirectory,
                                               provisioned: Store) -> None:
    directory.min_interval = 0.05  # wide enough that every caller below arrives inside it
    await directory.sync()
    async with provisioned.writing() as connection:  # something to read
        await provisioned.record_changes(connection, "blocklist", [KENJI])
    before = directory.polls
    await asyncio.gather(*(directory.sync() for _ in range(200)))
    assert directory.polls - before == 1


async def test_a_sync_with_nothing_committed_since_the_last_poll_reads_nothing(
        directory: SubscriberDirectory, provisioned: Store) -> None:
    """SQLite's data_version, read on the event loop, tells that no connection committed
    since the last poll began: the barrier holds without a poll."""
    await directory.sync()
    before = directory.polls
    for _ in range(100):
        await directory.sync()
    no_commit = directory.polls - before
    async with provisioned.writing() as connection:
        await connection.execute(insert(blocklist).values(
            number=KENJI, blocked_number="0612345678", created_at=NOW))
        await provisioned.record_changes(connection, "blocklist", [KENJI])
    await directory.sync()
    kenji = directory.callee(KENJI)
    assert kenji is not None and kenji.blocklist == frozenset({"0612345678"})
    assert (no_commit, directory.polls - before) == (0, 1)


async def test_a_failed_poll_fails_the_sync_and_the_next_one_recovers(
        directory: SubscriberDirectory, provisioned: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = directory._feed  # noqa: SLF001 - the test breaks the store under it
    real_poll = feed.poll

    async def broken(after: int) -> FeedPoll:
        raise OSError("database gone")

    monkeypatch.setattr(feed, "poll", broken)
    with pytest.raises(OSError, match="database gone"):
        await directory.sync()
    monkeypatch.setattr(feed, "poll", real_poll)
    async with provisioned.writing() as connection:
        await connection.execute(insert(blocklist).values(
            number=KENJI, blocked_number="0612345678", created_at=NOW))
        await provisioned.record_changes(connection, "blocklist", [KENJI])
    await directory.sync()
    kenji = directory.callee(KENJI)
    assert kenji is not None and kenji.blocklist == frozenset({"0612345678"})


async def test_an_instance_that_fell_behind_the_pruned_feed_reloads_everything(
        directory: SubscriberDirectory, provisioned: Store) -> None:
    told: list[frozenset[str] | None] = []

    async def listener(aors: frozenset[str] | None) -> None:
        told.append(aors)

    directory.on_bindings(listener)
    async with provisioned.writing() as connection:
        await connection.execute(insert(blocklist).values(
            number=SAKURA, blocked_number="0312345678", created_at=NOW))
        await provisioned.record_changes(connection, "blocklist", [SAKURA])
    feed = SqlChangeFeed(provisioned)
    async with provisioned.engine.connect() as connection:
        newest = await connection.scalar(select(func.max(changes.c.seq)))
    assert await feed.prune(newest + 1) > 0  # another instance pruned past our position
    await directory.sync()
    sakura = directory.callee(SAKURA)
    assert sakura is not None and sakura.blocklist == frozenset({"0312345678"})
    assert told == [None]  # the registrar is told to reread every AOR
    assert directory.position > newest


async def test_bindings_of_other_instances_reach_the_listener(
        directory: SubscriberDirectory, store_url: str, backend: str,
        provisioned: Store) -> None:
    told: list[frozenset[str] | None] = []

    async def listener(aors: frozenset[str] | None) -> None:
        told.append(aors)

    directory.on_bindings(listener)
    other = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    try:
        await other.write_bindings({KENJI: BindingChange((binding(KENJI, "sip:k@192.0.2.1"),))})
    finally:
        await other.close()
    # Our own writes are ours already: not told again.
    await provisioned.write_bindings(
        {SAKURA: BindingChange((binding(SAKURA, "sip:s@192.0.2.2"),))})
    await directory.sync()
    assert told == [frozenset({KENJI})]


async def test_concurrent_writers_are_seen_in_commit_order(provisioned: Store) -> None:
    """Writers that took feed positions in one order and commit in another: a poll must never
    move past a position whose transaction is still to commit (PostgreSQL: the feed lock)."""
    feed = SqlChangeFeed(provisioned)
    position = (await feed.start()).position
    done = asyncio.Event()

    async def write(pause: float) -> None:
        async with provisioned.writing() as connection:
            await provisioned.record_changes(connection, "pin", [SAKURA])
            await asyncio.sleep(pause)  # commits after writers that came later

    seen: list[int] = []

    async def follow() -> None:
        nonlocal position
        while True:
            finished = done.is_set()
            polled = await feed.poll(position)
            assert not polled.behind
            seen.extend(change.seq for change in polled.changes)
            if polled.changes:
                position = polled.changes[-1].seq
            if finished:
                return
            await asyncio.sleep(0.001)

    follower = asyncio.create_task(follow())
    await asyncio.gather(*(write(0.05 * (index % 3)) for index in range(12)))
    done.set()
    await follower
    async with provisioned.engine.connect() as connection:
        written = list((await connection.execute(
            select(changes.c.seq).where(changes.c.kind == "pin").order_by(changes.c.seq)))
            .scalars())
    assert seen == written  # each once, in order, none skipped


# -- the read barrier, step by step with a feed the test controls ------------------------------


class GatedFeed:
    """A feed whose polls wait for the test to open a gate; commits are plain appends."""

    instance = "here"

    def __init__(self) -> None:
        self.committed: list[Change] = []
        self.gate = asyncio.Event()
        self.polls_started = 0

    async def start(self) -> DirectorySnapshot:
        return DirectorySnapshot(0, {})

    async def poll(self, after: int) -> FeedPoll:
        self.polls_started += 1
        seen = [change for change in self.committed if change.seq > after]  # read at the start
        await self.gate.wait()
        self.gate.clear()
        return FeedPoll(False, seen, {})

    async def prune(self, before: int) -> int:
        return 0

    def commit_stamp(self) -> object | None:
        return None  # as on PostgreSQL: every sync waits for a poll

    def commit(self, number: str) -> None:
        self.committed.append(Change(len(self.committed) + 1, number, "bindings", "there"))


async def test_sync_waits_for_a_poll_that_started_after_it_was_called() -> None:
    feed = GatedFeed()
    directory = SubscriberDirectory(feed, min_interval=0, idle_interval=60)
    told: list[frozenset[str] | None] = []

    async def listener(aors: frozenset[str] | None) -> None:
        told.append(aors)

    directory.on_bindings(listener)
    await directory.start()
    try:
        first = asyncio.create_task(directory.sync())
        while feed.polls_started < 1:
            await asyncio.sleep(0)
        feed.commit(SAKURA)  # committed while the first poll is already reading
        second = asyncio.create_task(directory.sync())
        feed.gate.set()
        await first
        assert told == [] and not second.done()  # the first poll could not have seen it
        while feed.polls_started < 2:
            await asyncio.sleep(0)
        feed.gate.set()
        await second
        assert told == [frozenset({SAKURA})] and directory.position == 1
    finally:
        await directory.close()


async def test_a_cancelled_caller_leaves_the_others_waiting_for_the_poll() -> None:
    feed = GatedFeed()
    directory = SubscriberDirectory(feed, min_interval=0, idle_interval=60)
    await directory.start()
    try:
        leaving = asyncio.create_task(directory.sync())
        staying = asyncio.create_task(directory.sync())
        while feed.polls_started < 1:
            await asyncio.sleep(0)
        leaving.cancel()
        feed.gate.set()
        await staying
        assert leaving.cancelled()
    finally:
        await directory.close()


async def test_old_feed_rows_are_pruned_behind_every_recent_position() -> None:
    pruned: list[int] = []
    clock = [0.0]

    class Feed(GatedFeed):
        async def poll(self, after: int) -> FeedPoll:
            return FeedPoll(False, [c for c in self.committed if c.seq > after], {})

        async def prune(self, before: int) -> int:
            pruned.append(before)
            return 1

    feed = Feed()
    directory = SubscriberDirectory(feed, min_interval=0, idle_interval=60, retention=300,
                                    prune_interval=10, clock=lambda: clock[0])
    await directory.start()
    try:
        for step in range(40):  # a change and a sync every 10 s
            feed.commit(SAKURA)
            clock[0] = step * 10.0
            await directory.sync()
        # At 390 s the newest position at least 300 s old is the one seen at 90 s (10th poll).
        assert pruned[0] == 1 and pruned[-1] == 10
    finally:
        await directory.close()


# -- across real processes ----------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
async def test_a_binding_registered_on_another_instance_is_routable_after_sync(
        tmp_path: Path, database: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    if database == "postgresql":
        assert POSTGRES_URL is not None
        await asyncio.to_thread(empty_postgres, POSTGRES_URL)
        url = POSTGRES_URL
    other = ServerProcess(tmp_path, store_url=url).start()  # instance B, a real process
    here = await Store.open(url)  # instance A, in this process
    directory = SubscriberDirectory(SqlChangeFeed(here), idle_interval=60)
    registrar = Registrar(
        config=RegistrarConfig(), domain="softswitch.test",
        authenticator=SipAuthenticator(
            digest=DigestAuthenticator("softswitch.test", b"k" * 32, 300, ("MD5",)),
            credentials={}, security=SecurityConfig()),
        writer=BindingWriter(here))
    directory.on_bindings(registrar.reload)
    try:
        await directory.start()
        registrar.load(await here.read_bindings())
        phone = Phone(other, "09011110002", "pw-two")
        try:
            ok = await asyncio.to_thread(phone.register, ["<sip:two@127.0.0.1:6002>"], 300)
            assert ok.status == 200
        finally:
            phone.close()
        await directory.sync()
        assert [b.contact for b in registrar.contacts("09011110002")] == [
            "sip:two@127.0.0.1:6002"]
        removed = Phone(other, "09011110002", "pw-two")
        try:
            gone = await asyncio.to_thread(removed.register, ["*"], 0)
            assert gone.status == 200
        finally:
            removed.close()
        await directory.sync()
        assert registrar.contacts("09011110002") == []
    finally:
        await directory.close()
        await here.close()
        other.stop()


async def test_a_postgresql_reader_connection_killed_by_the_server_is_made_again(
        directory: SubscriberDirectory, provisioned: Store, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's reader keeps a connection of its own")
    from sqlalchemy import text

    await directory.sync()
    pid = provisioned.reader._connection.get_server_pid()  # noqa: SLF001
    async with provisioned.engine.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(Exception):  # noqa: B017 - whichever error asyncpg reports
        await directory.sync()
    async with provisioned.writing() as connection:
        await connection.execute(insert(blocklist).values(
            number=SAKURA, blocked_number="0312345678", created_at=NOW))
        await provisioned.record_changes(connection, "blocklist", [SAKURA])
    await directory.sync()
    sakura = directory.callee(SAKURA)
    assert sakura is not None and sakura.blocklist == frozenset({"0312345678"})


async def test_the_commit_stamp_never_waits_for_a_lock_on_the_event_loop(tmp_path: Path) -> None:
    """A connection holding SQLite's exclusive lock (as a WAL recovery does): the stamp is
    None at once (the directory then polls in its thread) instead of a 5 s wait on the loop."""
    path = str(tmp_path / "locked.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")
    reader = SqliteReader(path)
    try:
        started = time.monotonic()
        assert reader.commit_stamp() is None
        assert time.monotonic() - started < 1.0
        holder.execute("COMMIT")
        holder.execute("PRAGMA locking_mode=NORMAL")
        holder.execute("SELECT x FROM t").fetchall()  # the exclusive lock goes at this read
        assert isinstance(reader.commit_stamp(), int)
    finally:
        await reader.close()
        holder.close()
