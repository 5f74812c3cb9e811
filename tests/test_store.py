"""The store: provisioning, credentials, bindings, subscriber state, SQLite settings.

Runs on SQLite; set SOFTSWITCH_TEST_POSTGRES_URL=postgresql+asyncpg://... to run every
test on PostgreSQL too (its tables are dropped first; see tests/stores.py).
"""

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update

from softswitch.credentials import hash_secret, verify_secret
from softswitch.services.errors import UnknownSubscriber
from softswitch.store.provisioning import ProvisioningError, ProvisionSummary
from softswitch.store.repositories import sql_repositories
from softswitch.store.schema import (
    blocklist,
    metadata,
    pins,
    sip_credentials,
    subscribers,
    voicemail_settings,
)
from softswitch.store.store import BindingChange, BindingRow, SipCredentials, Store

from .stores import HIROSHI, KENJI, NOW, SAKURA, SUBSCRIBERS, binding, make_config


def changed(index: int, **fields: Any) -> list[dict[str, Any]]:
    """SUBSCRIBERS with some fields of one subscriber changed."""
    edited = copy.deepcopy(SUBSCRIBERS)
    edited[index].update(fields)
    return edited


def upsert(*rows: BindingRow) -> BindingChange:
    return BindingChange(upsert=rows)


async def table_rows(store: Store, table: Any) -> list[tuple[Any, ...]]:
    async with store.engine.connect() as connection:
        result = await connection.execute(select(table).order_by(*table.primary_key.columns))
    return [tuple(row) for row in result]


async def stored_value(store: Store, column: Any, number: str) -> Any:
    table = column.table
    async with store.engine.connect() as connection:
        return await connection.scalar(select(column).where(table.c.number == number))


# -- provisioning -----------------------------------------------------------------------------


async def test_provisioning_twice_changes_nothing_the_second_time(store: Store) -> None:
    first = await store.provision(make_config())
    assert first == ProvisionSummary(added=(SAKURA, KENJI, HIROSHI), updated=(), unchanged=())
    before = {table.name: await table_rows(store, table) for table in metadata.sorted_tables}

    second = await store.provision(make_config())

    assert second == ProvisionSummary(added=(), updated=(), unchanged=(SAKURA, KENJI, HIROSHI))
    assert str(second) == "0 added, 0 updated, 3 unchanged"
    after = {table.name: await table_rows(store, table) for table in metadata.sorted_tables}
    assert after == before  # not even a fresh salt on a password hash


async def test_new_subscribers_get_default_state_and_their_pin(provisioned: Store) -> None:
    assert verify_secret("4826", await stored_value(provisioned, pins.c.pin_hash, SAKURA))
    assert verify_secret("1234", await stored_value(provisioned, pins.c.pin_hash, KENJI))
    state = await provisioned.subscriber_state(KENJI, now_epoch=NOW)
    assert state == {
        "number": KENJI,
        "sim": "voice",
        "line": "A",
        "options": {"nuisance_blocking": True},
        "registrations": [],
        "blocklist": [],
        "last_caller": None,
        "voicemail": {"enabled": True, "ring_time": 15, "greeting": False, "new": 0, "saved": 0,
                      "messages": []},
        "forwarding": {"enabled": False, "destination": None, "mode": "no_answer"},
        "remote_control": {"enabled": False},
        "pin": {"locked": False, "failures": 0, "pending_change": False, "pending_apply_at": None},
    }


async def test_reprovisioning_updates_the_email_and_keeps_service_state(provisioned: Store) -> None:
    store = provisioned
    async with store.engine.begin() as connection:  # what the subscriber did meanwhile
        await connection.execute(
            update(pins).where(pins.c.number == SAKURA).values(pin_hash=hash_secret("9999"))
        )
        await connection.execute(
            insert(blocklist).values(number=SAKURA, blocked_number="0312345678", created_at=NOW)
        )
        await connection.execute(
            update(voicemail_settings)
            .where(voicemail_settings.c.number == SAKURA)
            .values(enabled=False, ring_time=30)
        )
    await store.write_bindings({SAKURA: upsert(binding(SAKURA, "sip:sakura@192.0.2.10:5062"))})

    summary = await store.provision(
        make_config(changed(0, email="sakura.new@example.jp", network_pin="5555"))
    )

    assert summary == ProvisionSummary(added=(), updated=(SAKURA,), unchanged=(KENJI, HIROSHI))
    assert await stored_value(store, subscribers.c.email, SAKURA) == "sakura.new@example.jp"
    pin_hash = await stored_value(store, pins.c.pin_hash, SAKURA)
    assert verify_secret("9999", pin_hash)  # neither reset to 4826 nor to the new 5555
    state = await store.subscriber_state(SAKURA, now_epoch=NOW)
    assert state is not None
    assert state["blocklist"] == ["0312345678"]
    assert (state["voicemail"]["enabled"], state["voicemail"]["ring_time"]) == (False, 30)
    assert [row["contact"] for row in state["registrations"]] == ["sip:sakura@192.0.2.10:5062"]


def ha1s(username: str, password: str, realm: str = "softswitch.test") -> tuple[str, str]:
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(text).hexdigest(), hashlib.sha256(text).hexdigest()


async def test_sip_password_is_stored_only_as_digest_ha1s_one_pair_per_username_form(
    provisioned: Store,
) -> None:
    credentials = await provisioned.load_credentials()
    sakura_forms = ("09012345678", "+819012345678", "819012345678", "090-1234-5678")
    kenji_forms = ("08023456789", "+818023456789", "818023456789", "080-2345-6789")
    assert set(credentials) == {*sakura_forms, *kenji_forms}  # the data SIM has none
    for username in sakura_forms:
        assert credentials[username] == SipCredentials(
            username, SAKURA, *ha1s(username, "pw-sakura"))
    assert {credentials[username].number for username in kenji_forms} == {KENJI}
    assert credentials[SAKURA].ha1_md5 not in repr(credentials[SAKURA])
    every_value = json.dumps(
        {table.name: await table_rows(provisioned, table) for table in metadata.sorted_tables},
        default=str,
    )
    for secret in ("pw-sakura", "pw-portal-sakura", "4826"):
        assert secret not in every_value


async def test_reprovisioning_the_same_config_leaves_the_credentials_alone(
    provisioned: Store,
) -> None:
    before = await table_rows(provisioned, sip_credentials)
    summary = await provisioned.provision(make_config())
    assert summary == ProvisionSummary(added=(), updated=(), unchanged=(SAKURA, KENJI, HIROSHI))
    assert await table_rows(provisioned, sip_credentials) == before


async def test_a_new_domain_or_password_updates_the_ha1s(provisioned: Store) -> None:
    summary = await provisioned.provision(make_config(domain="voice.example"))
    assert set(summary.updated) == {SAKURA, KENJI}  # the data SIM has no HA1
    credentials = await provisioned.load_credentials()
    assert credentials["+819012345678"].ha1_md5 == ha1s("+819012345678", "pw-sakura",
                                                        "voice.example")[0]

    summary = await provisioned.provision(
        make_config(changed(1, sip_password="pw-kenji-2"), "voice.example"))
    assert summary.updated == (KENJI,)
    credentials = await provisioned.load_credentials()
    assert credentials["080-2345-6789"].ha1_sha256 == ha1s("080-2345-6789", "pw-kenji-2",
                                                           "voice.example")[1]
    assert len(credentials) == 8


async def test_a_voice_sim_turned_data_sim_loses_its_credentials(provisioned: Store) -> None:
    data = changed(1, sim="data", options={"nuisance_blocking": False})
    del data[1]["sip_password"]
    summary = await provisioned.provision(make_config(data))
    assert summary.updated == (KENJI,)
    assert {c.number for c in (await provisioned.load_credentials()).values()} == {SAKURA}


async def test_a_changed_portal_password_is_rehashed(provisioned: Store) -> None:
    summary = await provisioned.provision(make_config(changed(0, portal_password="pw-new")))
    assert summary.updated == (SAKURA,)
    portal_hash = await stored_value(provisioned, subscribers.c.portal_password_hash, SAKURA)
    assert verify_secret("pw-new", portal_hash)
    assert not verify_secret("pw-portal-sakura", portal_hash)


async def test_two_subscribers_can_swap_emails(provisioned: Store) -> None:
    swapped = changed(0, email="kenji@example.jp")
    swapped[1]["email"] = "sakura@example.jp"
    summary = await provisioned.provision(make_config(swapped))
    assert summary.updated == (SAKURA, KENJI)
    assert await stored_value(provisioned, subscribers.c.email, SAKURA) == "kenji@example.jp"
    assert await stored_value(provisioned, subscribers.c.email, KENJI) == "sakura@example.jp"


async def test_a_login_still_held_by_a_removed_subscriber_is_refused(provisioned: Store) -> None:
    without_hiroshi = copy.deepcopy(SUBSCRIBERS[:2])
    without_hiroshi[0]["email"] = "hiroshi@example.jp"
    with pytest.raises(ProvisioningError, match="hiroshi@example.jp.*08098765432"):
        await provisioned.provision(make_config(without_hiroshi))
    assert await stored_value(provisioned, subscribers.c.email, SAKURA) == "sakura@example.jp"


async def test_a_subscriber_removed_from_the_config_stays_in_the_store(provisioned: Store) -> None:
    summary = await provisioned.provision(make_config(SUBSCRIBERS[:1]))
    assert summary == ProvisionSummary(added=(), updated=(), unchanged=(SAKURA,))
    # Its credentials too (app.py gives only the configured subscribers SIP access).
    numbers = {c.number for c in (await provisioned.load_credentials()).values()}
    assert numbers == {SAKURA, KENJI}


# -- bindings ---------------------------------------------------------------------------------


async def test_bindings_round_trip(provisioned: Store) -> None:
    sakura = [
        binding(SAKURA, "sip:sakura@192.0.2.10:5062;transport=udp", q=None),
        binding(SAKURA, "sip:sakura@[2001:db8::1]:5060", NOW + 60.25, cseq=2**31 - 1, q=1.0),
    ]
    stored = await provisioned.write_bindings({SAKURA: upsert(*sakura)})
    expected = {SAKURA: sorted(sakura, key=lambda row: row.contact)}
    assert stored.by_aor == expected  # read back in the write's own transaction
    assert (await provisioned.read_bindings()).by_aor == expected


async def test_a_write_changes_only_the_contacts_it_names(provisioned: Store) -> None:
    store = provisioned
    await store.write_bindings({
        SAKURA: upsert(binding(SAKURA, "sip:a@192.0.2.1"), binding(SAKURA, "sip:b@192.0.2.2")),
        KENJI: upsert(binding(KENJI, "sip:k@192.0.2.3")),
    })
    refreshed = binding(SAKURA, "sip:b@192.0.2.2", NOW + 900, cseq=8)
    added = binding(SAKURA, "sip:c@192.0.2.5")
    stored = await store.write_bindings({SAKURA: upsert(refreshed, added)})
    # sip:a, written by an earlier REGISTER (perhaps through another instance), stays
    assert stored.by_aor == {SAKURA: [binding(SAKURA, "sip:a@192.0.2.1"), refreshed, added]}

    stored = await store.write_bindings({
        SAKURA: BindingChange(remove=frozenset({"sip:a@192.0.2.1", "sip:never@192.0.2.9"})),
        KENJI: BindingChange(remove_all=True),
    })
    assert stored.by_aor == {SAKURA: [refreshed, added]}  # Kenji has none left: absent
    assert (await store.read_bindings()).by_aor == {SAKURA: [refreshed, added]}
    assert (await store.read_bindings([KENJI, HIROSHI])).by_aor == {}


async def test_two_stores_on_one_database_keep_each_others_contacts(store_url: str,
                                                                     backend: str) -> None:
    first = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    second = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    try:
        await first.provision(make_config())
        one, two = binding(SAKURA, "sip:one@192.0.2.1"), binding(SAKURA, "sip:two@192.0.2.2")
        assert (await first.write_bindings({SAKURA: upsert(one)})).by_aor == {SAKURA: [one]}
        stored = await second.write_bindings({SAKURA: upsert(two)})
        assert stored.by_aor == {SAKURA: [one, two]}
        assert (await first.read_bindings()).by_aor == {SAKURA: [one, two]}
    finally:
        await first.close()
        await second.close()


async def test_a_removal_then_an_upsert_of_one_contact_leaves_it_registered(
        provisioned: Store) -> None:
    again = binding(SAKURA, "sip:a@192.0.2.1", NOW + 60)
    change = BindingChange(upsert=(again,), remove=frozenset({"sip:a@192.0.2.1"}))
    assert (await provisioned.write_bindings({SAKURA: change})).by_aor == {SAKURA: [again]}


def test_changes_merge_as_if_written_one_after_the_other() -> None:
    a, b = binding(SAKURA, "sip:a@192.0.2.1"), binding(SAKURA, "sip:b@192.0.2.2")
    a2 = binding(SAKURA, "sip:a@192.0.2.1", NOW + 5)
    assert set(upsert(a, b).then(upsert(a2)).upsert) == {a2, b}
    removed = upsert(a, b).then(BindingChange(remove=frozenset({a.contact})))
    assert removed == BindingChange(upsert=(b,), remove=frozenset({a.contact}))
    assert set(removed.then(upsert(a2)).upsert) == {b, a2}  # written after the removal
    cleared = upsert(a).then(BindingChange(remove_all=True)).then(upsert(b))
    assert cleared == BindingChange(upsert=(b,), remove_all=True)


async def test_a_large_batch_is_written_in_one_call(store: Store) -> None:
    numbers = [f"090{index:08d}" for index in range(1250)]  # full and partial INSERT chunks
    async with store.engine.begin() as connection:
        await connection.execute(
            insert(subscribers),
            [{"number": n, "sim": "voice", "line": "D", "provisioned_at": NOW} for n in numbers],
        )
    stored = await store.write_bindings(
        {n: upsert(binding(n, f"sip:{n}@192.0.2.9")) for n in numbers})
    assert stored.by_aor == {n: [binding(n, f"sip:{n}@192.0.2.9")] for n in numbers}
    await store.write_bindings({n: BindingChange(remove_all=True) for n in numbers[:700]})
    loaded = (await store.read_bindings()).by_aor
    assert sorted(loaded) == numbers[700:]
    assert all(loaded[n] == [binding(n, f"sip:{n}@192.0.2.9")] for n in numbers[700:])


async def test_expired_rows_are_deleted_and_refreshed_ones_stay(provisioned: Store) -> None:
    await provisioned.write_bindings({
        SAKURA: upsert(binding(SAKURA, "sip:old@192.0.2.1", NOW - 1),
                       binding(SAKURA, "sip:now@192.0.2.3", NOW),
                       binding(SAKURA, "sip:refreshed@192.0.2.4", NOW - 1)),
        KENJI: upsert(binding(KENJI, "sip:live@192.0.2.2", NOW + 1)),
    })
    await provisioned.write_bindings(
        {SAKURA: upsert(binding(SAKURA, "sip:refreshed@192.0.2.4", NOW + 60))})
    assert await provisioned.delete_expired_bindings(NOW) == 2
    assert (await provisioned.read_bindings()).by_aor == {
        KENJI: [binding(KENJI, "sip:live@192.0.2.2", NOW + 1)],
        SAKURA: [binding(SAKURA, "sip:refreshed@192.0.2.4", NOW + 60)],
    }


async def test_a_binding_under_another_aor_is_refused(provisioned: Store) -> None:
    with pytest.raises(ValueError, match="listed under AOR"):
        await provisioned.write_bindings({SAKURA: upsert(binding(KENJI, "sip:k@192.0.2.3"))})


async def test_bindings_survive_a_restart(store_url: str) -> None:
    first = await Store.open(store_url)
    await first.provision(make_config())
    rows = {KENJI: [binding(KENJI, "sip:k@192.0.2.3")]}
    await first.write_bindings({KENJI: upsert(*rows[KENJI])})
    await first.close()

    second = await Store.open(store_url)
    try:
        assert (await second.read_bindings()).by_aor == rows
    finally:
        await second.close()


# -- subscriber state -------------------------------------------------------------------------


async def test_subscriber_state_shows_live_registrations_without_secrets(
    provisioned: Store,
) -> None:
    await provisioned.write_bindings({
        SAKURA: upsert(binding(SAKURA, "sip:gone@192.0.2.1", NOW - 5),
                       binding(SAKURA, "sip:live@192.0.2.2", NOW + 120.4)),
    })
    async with provisioned.engine.begin() as connection:
        await connection.execute(
            update(pins)
            .where(pins.c.number == SAKURA)
            .values(failures=2, pending_pin_hash=hash_secret("7777"), pending_apply_at=NOW + 9)
        )
    state = await provisioned.subscriber_state(SAKURA, now_epoch=NOW)
    assert state is not None
    assert state["registrations"] == [
        {
            "contact": "sip:live@192.0.2.2",
            "expires_in": 120,
            "source": "udp:192.0.2.10:5062",
            "user_agent": "Linphone/5.2",
        }
    ]
    assert state["pin"] == {
        "locked": False,
        "failures": 2,
        "pending_change": True,
        "pending_apply_at": NOW + 9,
    }
    shown = json.dumps(state)
    assert "$argon2" not in shown and "4826" not in shown and "7777" not in shown
    assert await provisioned.subscriber_state("09000000000") is None


# -- SQLite -----------------------------------------------------------------------------------


async def test_sqlite_runs_in_wal_mode_and_creates_its_directory(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "dir" / "softswitch.db"
    store = await Store.open(f"sqlite+aiosqlite:///{database}")
    try:
        async with store.engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(text("PRAGMA synchronous")) == 2  # FULL
            assert await connection.scalar(text("PRAGMA busy_timeout")) == 5000
            assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
    finally:
        await store.close()
    assert database.is_file()


async def test_bindings_need_a_known_subscriber(store: Store) -> None:
    with pytest.raises(Exception, match="(?i)foreign key"):
        await store.write_bindings({SAKURA: upsert(binding(SAKURA, "sip:a@192.0.2.1"))})


async def test_a_failed_batch_changes_nothing_and_the_next_one_is_written(
        provisioned: Store) -> None:
    before = {SAKURA: [binding(SAKURA, "sip:a@192.0.2.1")]}
    await provisioned.write_bindings({SAKURA: upsert(*before[SAKURA])})
    unknown = "09099999999"  # not provisioned: the foreign key fails the whole batch
    with pytest.raises(Exception, match="(?i)foreign key"):
        await provisioned.write_bindings({
            SAKURA: BindingChange(upsert=(binding(SAKURA, "sip:b@192.0.2.2"),),
                                  remove=frozenset({"sip:a@192.0.2.1"})),
            unknown: upsert(binding(unknown, "sip:x@192.0.2.3")),
        })
    assert (await provisioned.read_bindings()).by_aor == before  # the removal was rolled back
    after = {KENJI: [binding(KENJI, "sip:k@192.0.2.4")]}
    await provisioned.write_bindings({KENJI: upsert(*after[KENJI])})
    assert (await provisioned.read_bindings()).by_aor == {**before, **after}


async def test_counting_a_failure_for_no_subscriber_says_so_on_every_backend(
        provisioned: Store) -> None:
    """The SQLite fast path and the SQLAlchemy path (PostgreSQL's) answer alike."""
    repositories = sql_repositories(provisioned)
    with pytest.raises(UnknownSubscriber):
        await repositories.pins.attempt_failed("09099999999", 5)
    with pytest.raises(UnknownSubscriber):
        await repositories.remote_control.wrong_attempt("09099999999", 4)
