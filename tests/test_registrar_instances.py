"""Two softswitch processes on one store (issue 8 item 13): a REGISTER through one instance
never drops a binding that the other acknowledged (RFC 3261 §10.3 across instances)."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import ServerProcess
from .test_registrar import Phone, contact_expiries

AOR = "09011110001"


@pytest.fixture
def two_instances(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first = ServerProcess(tmp_path / "a", store_url=url).start()
    try:
        second = ServerProcess(tmp_path / "b", store_url=url).start()
    except BaseException:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()


def stored_contacts(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute("select contact from registrations where aor = ?",
                                             (AOR,))}


def test_each_instance_keeps_the_others_binding(two_instances: tuple[ServerProcess, ServerProcess],
                                                tmp_path: Path) -> None:
    first, second = two_instances
    desk, mobile = Phone(first, AOR, "pw-one"), Phone(second, AOR, "pw-one")
    try:
        one = desk.register(["<sip:desk@127.0.0.1:6001>"], expires=600)
        assert one.status == 200 and list(contact_expiries(one)) == ["sip:desk@127.0.0.1:6001"]
        two = mobile.register(["<sip:mobile@127.0.0.1:6002>"], expires=300)
        assert two.status == 200
        listed = contact_expiries(two)
        assert set(listed) == {"sip:desk@127.0.0.1:6001", "sip:mobile@127.0.0.1:6002"}
        assert 590 <= listed["sip:desk@127.0.0.1:6001"] <= 600  # as the first instance wrote it
        both = {"sip:desk@127.0.0.1:6001", "sip:mobile@127.0.0.1:6002"}
        assert stored_contacts(tmp_path / "shared.db") == both
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
    assert stored_contacts(tmp_path / "shared.db") == {"sip:mobile@127.0.0.1:6002"}
    assert [r["contact"] for r in second.show(AOR)["registrations"]] == [
        "sip:mobile@127.0.0.1:6002"]
