"""A store per test, on every backend: SQLite through the fast paths, SQLite through
SQLAlchemy (the path PostgreSQL takes, so that it is tested without a PostgreSQL server),
and PostgreSQL when SOFTSWITCH_TEST_POSTGRES_URL=postgresql+asyncpg://... is set (its tables
are dropped first). The fixtures are offered to every test module by conftest.py."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.ext.asyncio import create_async_engine

from softswitch.config import Config, parse_config
from softswitch.store.schema import metadata
from softswitch.store.store import BindingRow, Store

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


# "sqlite": binding writes and feed polls by raw sqlite3 threads; "sqlite-sqlalchemy": by
# SQLAlchemy, as for PostgreSQL.
BACKENDS = ["sqlite", "sqlite-sqlalchemy", *(["postgresql"] if POSTGRES_URL else [])]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(backend: str, tmp_path: Path) -> str:
    if backend.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path}/var/softswitch.db"
    assert POSTGRES_URL is not None
    await _drop_tables(POSTGRES_URL)
    return POSTGRES_URL


def empty_postgres(url: str) -> None:
    """Drop softswitch's tables (from a test that runs no event loop of its own)."""
    asyncio.run(_drop_tables(url))


async def _drop_tables(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
    await engine.dispose()


@pytest.fixture
async def store(store_url: str, backend: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    yield opened
    await opened.close()


@pytest.fixture
async def provisioned(store: Store) -> Store:
    await store.provision(make_config())
    return store
