"""The store: provisioning, credentials, bindings, subscriber state, SQLite settings.

Runs on SQLite; set SOFTSWITCH_TEST_POSTGRES_URL=postgresql+asyncpg://... to run every
test on PostgreSQL too (its tables are dropped first).
"""

import copy
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from softswitch.config import Config, parse_config
from softswitch.credentials import hash_secret, verify_secret
from softswitch.store.provisioning import ProvisioningError, ProvisionSummary
from softswitch.store.schema import (
    blocklist,
    metadata,
    pins,
    registrations,
    sip_credentials,
    subscribers,
    voicemail_settings,
)
from softswitch.store.store import BindingRow, SipCredentials, Store

POSTGRES_URL = os.environ.get("SOFTSWITCH_TEST_POSTGRES_URL")
NOW = 1_800_000_000.0

SAKURA, KENJI, HIROSHI = "09012345678", "08023456789", "08098765432"
SUBSCRIBERS: list[dict[str, Any]] = [
    {
        "number": "090-1234-5678",
        "sim": "voice",
        "line": "D",
        "sip_password": "pw-sakura",
        "mio_id": "sakura.tanaka",
        "email": "sakura@example.jp",
        "portal_password": "pw-portal-sakura",
        "name": "田中 さくら",
        "birth_date": "1988-04-12",
        "iccid": "8981100000123456789",
        "postal_address": "東京都千代田区千代田1-1-1",
        "network_pin": "4826",
    },
    {
        "number": "+81 80-2345-6789",
        "sim": "voice",
        "line": "A",
        "sip_password": "pw-kenji",
        "mio_id": "kenji.sato",
        "email": "kenji@example.jp",
        "portal_password": "pw-portal-kenji",
        "options": {"nuisance_blocking": True},
    },
    {"number": "080-9876-5432", "sim": "data", "line": "D", "email": "hiroshi@example.jp"},
]


def make_config(
    subscriber_list: list[dict[str, Any]] | None = None, domain: str = "softswitch.test"
) -> Config:
    document = {"sip": {"domain": domain}, "subscribers": subscriber_list or SUBSCRIBERS}
    return parse_config(yaml.safe_dump(document, allow_unicode=True), "test.yaml")


def changed(index: int, **fields: Any) -> list[dict[str, Any]]:
    """SUBSCRIBERS with some fields of one subscriber changed."""
    edited = copy.deepcopy(SUBSCRIBERS)
    edited[index].update(fields)
    return edited


def binding(aor: str, contact: str, expires_at: float = NOW + 3600, **fields: Any) -> BindingRow:
    values: dict[str, Any] = {
        "call_id": f"call-{contact}",
        "cseq": 7,
        "q": 0.5,
        "source": "udp:192.0.2.10:5062",
        "user_agent": "Linphone/5.2",
    }
    values.update(fields)
    return BindingRow(aor=aor, contact=contact, expires_at=expires_at, **values)


# "sqlite": binding writes by the SqliteBindingJournal; "sqlite-sqlalchemy": by SQLAlchemy,
# the path PostgreSQL takes, so that it is tested without a PostgreSQL server too.
BACKENDS = ["sqlite", "sqlite-sqlalchemy", *(["postgresql"] if POSTGRES_URL else [])]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(backend: str, tmp_path: Path) -> str:
    if backend.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path}/var/softswitch.db"
    assert POSTGRES_URL is not None
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
    await engine.dispose()
    return POSTGRES_URL


@pytest.fixture
async def store(store_url: str, backend: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    yield opened
    await opened.close()


@pytest.fixture
async def provisioned(store: Store) -> Store:
    await store.provision(make_config())
    return store


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
        "voicemail": {"enabled": True, "ring_time": 15},
        "forwarding": {"active": False, "destination": None, "mode": "no_answer"},
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
    await store.write_bindings({SAKURA: [binding(SAKURA, "sip:sakura@192.0.2.10:5062")]})

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
    assert state["voicemail"] == {"enabled": False, "ring_time": 30}
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
    await provisioned.write_bindings({SAKURA: sakura})
    assert await provisioned.load_bindings(NOW) == {
        SAKURA: sorted(sakura, key=lambda row: row.contact)
    }


async def test_write_bindings_replaces_each_listed_aor_as_a_group(provisioned: Store) -> None:
    store = provisioned
    await store.write_bindings(
        {
            SAKURA: [binding(SAKURA, "sip:a@192.0.2.1"), binding(SAKURA, "sip:b@192.0.2.2")],
            KENJI: [binding(KENJI, "sip:k@192.0.2.3")],
        }
    )
    await store.write_bindings({HIROSHI: [binding(HIROSHI, "sip:h@192.0.2.4")]})

    refreshed = binding(SAKURA, "sip:b@192.0.2.2", NOW + 900, cseq=8)
    await store.write_bindings({SAKURA: [refreshed], KENJI: []})

    assert await store.load_bindings(NOW) == {
        SAKURA: [refreshed],  # sip:a removed, sip:b replaced
        HIROSHI: [binding(HIROSHI, "sip:h@192.0.2.4")],  # not in the batch: untouched
    }


async def test_a_large_batch_is_written_in_one_call(store: Store) -> None:
    numbers = [f"090{index:08d}" for index in range(1250)]  # full and partial INSERT chunks
    async with store.engine.begin() as connection:
        await connection.execute(
            insert(subscribers),
            [{"number": n, "sim": "voice", "line": "D", "provisioned_at": NOW} for n in numbers],
        )
    await store.write_bindings({n: [binding(n, f"sip:{n}@192.0.2.9")] for n in numbers})
    await store.write_bindings({n: [] for n in numbers[:700]})
    loaded = await store.load_bindings(NOW)
    assert sorted(loaded) == numbers[700:]
    assert all(loaded[n] == [binding(n, f"sip:{n}@192.0.2.9")] for n in numbers[700:])


async def test_expired_bindings_are_dropped_on_load(provisioned: Store) -> None:
    await provisioned.write_bindings(
        {
            SAKURA: [binding(SAKURA, "sip:old@192.0.2.1", NOW - 1)],
            KENJI: [binding(KENJI, "sip:live@192.0.2.2", NOW + 1)],
        }
    )
    assert list(await provisioned.load_bindings(NOW)) == [KENJI]
    async with provisioned.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(registrations)) == 1


async def test_a_binding_under_another_aor_is_refused(provisioned: Store) -> None:
    with pytest.raises(ValueError, match="listed under AOR"):
        await provisioned.write_bindings({SAKURA: [binding(KENJI, "sip:k@192.0.2.3")]})


async def test_bindings_survive_a_restart(store_url: str) -> None:
    first = await Store.open(store_url)
    await first.provision(make_config())
    rows = {KENJI: [binding(KENJI, "sip:k@192.0.2.3")]}
    await first.write_bindings(rows)
    await first.close()

    second = await Store.open(store_url)
    try:
        assert await second.load_bindings(NOW) == rows
    finally:
        await second.close()


# -- subscriber state -------------------------------------------------------------------------


async def test_subscriber_state_shows_live_registrations_without_secrets(
    provisioned: Store,
) -> None:
    await provisioned.write_bindings(
        {
            SAKURA: [
                binding(SAKURA, "sip:gone@192.0.2.1", NOW - 5),
                binding(SAKURA, "sip:live@192.0.2.2", NOW + 120.4),
            ]
        }
    )
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
        await store.write_bindings({SAKURA: [binding(SAKURA, "sip:a@192.0.2.1")]})


async def test_a_failed_batch_changes_nothing_and_the_next_one_is_written(
        provisioned: Store) -> None:
    before = {SAKURA: [binding(SAKURA, "sip:a@192.0.2.1")]}
    await provisioned.write_bindings(before)
    unknown = "09099999999"  # not provisioned: the foreign key fails the whole batch
    with pytest.raises(Exception, match="(?i)foreign key"):
        await provisioned.write_bindings({
            SAKURA: [binding(SAKURA, "sip:b@192.0.2.2")],
            unknown: [binding(unknown, "sip:x@192.0.2.3")],
        })
    assert await provisioned.load_bindings(NOW) == before  # Sakura's delete was rolled back
    after = {KENJI: [binding(KENJI, "sip:k@192.0.2.4")]}
    await provisioned.write_bindings(after)
    assert await provisioned.load_bindings(NOW) == {**before, **after}
