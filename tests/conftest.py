"""Shared test fixtures: paths to test data."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from .stores import backend, provisioned, store, store_url  # noqa: F401 - fixtures for all
from .support import ServerProcess

DATA = Path(__file__).parent / "data"
RFC4475 = DATA / "rfc4475"


def rfc4475_message(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


def rfc4475_index() -> list[dict[str, str]]:
    lines = (RFC4475 / "INDEX.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


@pytest.fixture
def corpus() -> list[dict[str, str]]:
    return rfc4475_index()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """softswitch on the test config as shipped (MD5 digest alone, prompts in Japanese,
    debug log), on free ports with its own SQLite file. Modules may override it."""
    process = ServerProcess(tmp_path).start()
    yield process
    process.stop()
