"""Two softswitch processes on one store (issue 8 item 13): a REGISTER through one instance
never drops a binding that the other acknowledged (RFC 3261 §10.3 across instances). On a
SQLite file, and on PostgreSQL when SOFTSWITCH_TEST_POSTGRES_URL is set (tests/stores.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from .stores import POSTGRES_URL, empty_postgres
from .support import ServerProcess
from .test_registrar import Phone, contact_expiries

AOR = "09011110001"


@pytest.fixture(params=["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
def two_instances(request: pytest.FixtureRequest,
                  tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    else:
        assert POSTGRES_URL is not None
        empty_postgres(POSTGRES_URL)
        url = POSTGRES_URL
    first = ServerProcess(tmp_path / "a", store_url=url).start()
    try:
        second = ServerProcess(tmp_path / "b", store_url=url).start()
    except BaseException:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()


def stored_contacts(server: ServerProcess) -> set[str]:
    registrations = server.show(AOR)["registrations"]
    assert isinstance(registrations, list)
    return {registration["contact"] for registration in registrations}


def test_each_instance_keeps_the_others_binding(
        two_instances: tuple[ServerProcess, ServerProcess]) -> None:
    first, second = two_instances
    desk, mobile = Phone(first, AOR, "pw-one"), Phone(second, AOR, "pw-one")
    try:
        one = desk.register(["<sip:desk@127.0.0.1:6001>"], expires=600)
        assert one.status == 200 and list(contact_expiries(one)) == ["sip:desk@127.0.0.1:6001"]
        two = mobile.register(["<sip:mobile@127.0.0.1:6002>"], expires=300)
        assert two.status == 200
        listed = contact_expiries(two)
        both = {"sip:desk@127.0.0.1:6001", "sip:mobile@127.0.0.1:6002"}
        assert set(listed) == both
        assert 590 <= listed["sip:desk@127.0.0.1:6001"] <= 600  # as the first instance wrote it
        assert stored_contacts(first) == both
        # A refresh through the first instance lists the binding the second one wrote.
        again = desk.request(["<sip:desk@127.0.0.1:6001>"], expires=600)
        assert again.status == 200 and set(contact_expiries(again)) == both
        # Removing one's own contact leaves the other instance's.
        gone = desk.request(["<sip:desk@127.0.0.1:6001>"], expires=0)
        assert gone.status == 200
        assert list(contact_expiries(gone)) == ["sip:mobile@127.0.0.1:6002"]
    finally:
        desk.close()
        mobile.close()
    assert stored_contacts(second) == {"sip:mobile@127.0.0.1:6002"}
