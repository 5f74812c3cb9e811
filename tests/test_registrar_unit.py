"""The registrar's decisions against an in-memory store that can fail: what is answered,
and what the bindings in memory are, before and after the store commits."""

import asyncio
import uuid
from collections.abc import Iterable, Mapping

import pytest

from softswitch.config import RegistrarConfig, SecurityConfig
from softswitch.credentials import username_forms
from softswitch.sip.digest import DigestAuthenticator, authorization, ha1, parse_digest
from softswitch.sip.events import Peer
from softswitch.sip.message import Response
from softswitch.sip.parser import check_request, parse_datagram
from softswitch.store.store import BindingChange, BindingRow, SipCredentials, StoredBindings
from softswitch.switch.auth import SipAuthenticator
from softswitch.switch.registrar import BindingWriter, Registrar

REALM = "softswitch.test"
NUMBER = "09011110001"
PEER = Peer("udp", "127.0.0.1", 5999)


class MemoryStore:
    """The store's binding semantics (per contact, read back after the write) in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, BindingRow]] = {}
        self.fail = False
        self.commits = 0

    async def write_bindings(self, changes: Mapping[str, BindingChange]) -> StoredBindings:
        await asyncio.sleep(0)
        if self.fail:
            raise OSError("disk gone")
        self.commits += 1
        for aor, change in changes.items():
            rows = {} if change.remove_all else self.rows.get(aor, {})
            rows = {contact: row for contact, row in rows.items() if contact not in change.remove}
            rows.update((row.contact, row) for row in change.upsert)
            self.rows[aor] = rows
        return self.read(changes)

    async def read_bindings(self, aors: frozenset[str] | None) -> StoredBindings:
        await asyncio.sleep(0)
        return self.read(self.rows if aors is None else aors)

    def read(self, aors: Iterable[str]) -> StoredBindings:
        return StoredBindings(self.commits, {
            aor: sorted(self.rows[aor].values(), key=lambda row: row.contact)
            for aor in aors if self.rows.get(aor)})

    async def delete_expired_bindings(self, now: float) -> int:
        expired = [(aor, contact) for aor, rows in self.rows.items()
                   for contact, row in rows.items() if row.expires_at <= now]
        for aor, contact in expired:
            del self.rows[aor][contact]
        return len(expired)

    def contacts(self, aor: str) -> list[str]:
        return sorted(self.rows.get(aor, {}))


def make_registrar(store: MemoryStore, clock: list[float]) -> Registrar:
    credentials = {username: SipCredentials(username, NUMBER, ha1("MD5", username, REALM, "pw"),
                                            ha1("SHA-256", username, REALM, "pw"))
                   for username in username_forms(NUMBER)}
    authenticator = SipAuthenticator(
        digest=DigestAuthenticator(REALM, b"k" * 32, 300, ("MD5",)), credentials=credentials,
        security=SecurityConfig(), clock=lambda: clock[0], monotonic=lambda: clock[0])
    return Registrar(
        config=RegistrarConfig(min_expires=60, max_expires=3600, default_expires=600),
        domain=REALM, authenticator=authenticator,
        writer=BindingWriter(store, window=0.001),  # type: ignore[arg-type]
        clock=lambda: clock[0])


class Client:
    def __init__(self, registrar: Registrar, number: str = NUMBER, password: str = "pw") -> None:
        self.registrar, self.number, self.password = registrar, number, password
        self.call_id, self.cseq, self.nc, self.challenge = uuid.uuid4().hex, 0, 0, None

    def send(self, contacts: list[str], expires: int | None = 600) -> "asyncio.Future[Response]":
        self.cseq += 1
        lines = [f"REGISTER sip:{REALM} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{uuid.uuid4().hex}",
                 f"From: <sip:{self.number}@{REALM}>;tag=f", f"To: <sip:{self.number}@{REALM}>",
                 f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} REGISTER"]
        lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if self.challenge is not None:
            self.nc += 1
            lines.append("Authorization: " + authorization(
                self.challenge, "REGISTER", f"sip:{REALM}", self.number, self.password, "c",
                self.nc))
        raw = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        request = check_request(parse_datagram(raw))
        answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.registrar.register(request, PEER, "tag", answer.set_result)
        return answer

    async def register(self, contacts: list[str], expires: int | None = 600) -> Response:
        first = await self.send(contacts, expires)
        if first.status != 401:
            return first
        self.challenge = parse_digest(first.get_all("www-authenticate")[0])
        return await self.send(contacts, expires)


async def test_200_only_after_commit_and_memory_follows_the_store() -> None:
    store, clock = MemoryStore(), [1000.0]
    registrar = make_registrar(store, clock)
    client = Client(registrar)
    first = await client.send(["<sip:a@127.0.0.1:5999>"])
    assert first.status == 401 and store.commits == 0
    client.challenge = parse_digest(first.get_all("www-authenticate")[0])
    pending = client.send(["<sip:a@127.0.0.1:5999>"])
    assert not pending.done() and registrar.contacts(NUMBER) == []  # not before the commit
    ok = await pending
    assert ok.status == 200 and store.commits == 1
    assert [b.contact for b in registrar.contacts(NUMBER)] == ["sip:a@127.0.0.1:5999"]
    assert store.contacts(NUMBER) == ["sip:a@127.0.0.1:5999"]


async def test_a_failed_write_answers_500_and_changes_nothing() -> None:
    store, clock = MemoryStore(), [1000.0]
    registrar = make_registrar(store, clock)
    client = Client(registrar)
    assert (await client.register(["<sip:a@127.0.0.1:5999>"])).status == 200
    store.fail = True
    removal = await client.send(["<sip:a@127.0.0.1:5999>"], expires=0)
    assert removal.status == 500 and removal.get("retry-after") == "5"
    assert [b.contact for b in registrar.contacts(NUMBER)] == ["sip:a@127.0.0.1:5999"]
    added = await client.send(["<sip:b@127.0.0.1:5998>"])
    assert added.status == 500
    assert [b.contact for b in registrar.contacts(NUMBER)] == ["sip:a@127.0.0.1:5999"]
    store.fail = False
    query = await client.send([], expires=None)
    assert [str(c.uri) for c in query.contacts] == ["sip:a@127.0.0.1:5999"]


async def test_two_registers_in_one_batch_build_on_each_other() -> None:
    store, clock = MemoryStore(), [1000.0]
    registrar = make_registrar(store, clock)
    client = Client(registrar)
    assert (await client.register(["<sip:a@127.0.0.1:1>"])).status == 200
    second, third = client.send(["<sip:b@127.0.0.1:2>"]), client.send(["<sip:c@127.0.0.1:3>"])
    query = client.send([], expires=None)  # answered after the pending writes, not before
    answers = await asyncio.gather(second, third, query)
    assert [a.status for a in answers] == [200, 200, 200]
    expected = {"sip:a@127.0.0.1:1", "sip:b@127.0.0.1:2", "sip:c@127.0.0.1:3"}
    assert {str(c.uri) for c in answers[2].contacts} == expected
    assert set(store.contacts(NUMBER)) == expected


async def test_rfc3261_rules() -> None:
    store, clock = MemoryStore(), [1000.0]
    registrar = make_registrar(store, clock)
    client = Client(registrar)
    assert (await client.register(["<sip:a@127.0.0.1:1>"])).status == 200
    client.cseq -= 1  # the same Call-ID with an old CSeq: out of order (§10.3 step 7)
    assert (await client.send(["<sip:a@127.0.0.1:1>"])).status == 500
    client.cseq += 5
    too_many = [f"<sip:x{i}@127.0.0.1:{i + 10}>" for i in range(10)]
    assert (await client.send(too_many)).status == 403
    assert len(registrar.contacts(NUMBER)) == 1
    brief = await client.send(["<sip:a@127.0.0.1:1>;expires=30"])
    assert brief.status == 423 and brief.get("min-expires") == "60"
    stale_star = await client.send(["*"], expires=0)
    assert stale_star.status == 200 and registrar.contacts(NUMBER) == []


async def test_data_sim_and_unknown_numbers_are_challenged_then_refused() -> None:
    store, clock = MemoryStore(), [1000.0]
    registrar = make_registrar(store, clock)
    for number in ("07033330004", "09099990000"):
        client = Client(registrar, number, "")
        first = await client.send(["<sip:x@127.0.0.1:1>"])
        assert first.status == 401  # the same first answer as for a real subscriber
        client.challenge = parse_digest(first.get_all("www-authenticate")[0])
        assert (await client.send(["<sip:x@127.0.0.1:1>"])).status == 403
    assert store.commits == 0


async def test_sweep_removes_expired_bindings_from_memory_and_store() -> None:
    store, clock = MemoryStore(), [1000.0]
    registrar = make_registrar(store, clock)
    client = Client(registrar)
    assert (await client.register(["<sip:a@127.0.0.1:1>;expires=60",
                                   "<sip:b@127.0.0.1:2>;expires=600"])).status == 200
    clock[0] += 61
    assert await registrar.sweep() == 1
    assert store.contacts(NUMBER) == ["sip:b@127.0.0.1:2"]
    assert [b.contact for b in registrar.contacts(NUMBER)] == ["sip:b@127.0.0.1:2"]
    assert list(registrar.bindings[NUMBER]) == ["sip:b@127.0.0.1:2"]  # gone from memory too


async def test_a_contact_another_instance_registered_is_kept_and_listed() -> None:
    store, clock = MemoryStore(), [1000.0]
    here, there = make_registrar(store, clock), make_registrar(store, clock)
    assert (await Client(there).register(["<sip:there@127.0.0.1:2>"])).status == 200
    ok = await Client(here).register(["<sip:here@127.0.0.1:1>"])
    assert ok.status == 200
    both = {"sip:here@127.0.0.1:1", "sip:there@127.0.0.1:2"}
    assert {str(c.uri) for c in ok.contacts} == both  # the store's word, not only this one's
    assert set(store.contacts(NUMBER)) == both
    assert {b.contact for b in here.contacts(NUMBER)} == both
    removed = await Client(here).register(["<sip:here@127.0.0.1:1>"], expires=0)
    assert [str(c.uri) for c in removed.contacts] == ["sip:there@127.0.0.1:2"]
    assert store.contacts(NUMBER) == ["sip:there@127.0.0.1:2"]


async def test_a_hung_store_times_out_with_500(monkeypatch: pytest.MonkeyPatch) -> None:
    from softswitch.switch import registrar as module

    class HungStore(MemoryStore):
        async def write_bindings(self, changes: Mapping[str, BindingChange]) -> StoredBindings:
            await asyncio.sleep(3600)
            raise AssertionError("never written")

    monkeypatch.setattr(module, "STORE_WRITE_TIMEOUT", 0.05)
    registrar = make_registrar(HungStore(), [1000.0])
    assert (await Client(registrar).register(["<sip:a@127.0.0.1:1>"])).status == 500
    await registrar.writer.drain()


async def test_reload_brings_in_other_instances_bindings_but_never_an_older_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = MemoryStore(), [1000.0]
    here, there = make_registrar(store, clock), make_registrar(store, clock)
    assert (await Client(there).register(["<sip:there@127.0.0.1:2>"])).status == 200
    assert here.contacts(NUMBER) == []  # written elsewhere: not here until reloaded
    await here.reload(frozenset({NUMBER}))
    assert [b.contact for b in here.contacts(NUMBER)] == ["sip:there@127.0.0.1:2"]

    assert (await Client(here).register(["<sip:here@127.0.0.1:1>"])).status == 200
    both = {"sip:here@127.0.0.1:1", "sip:there@127.0.0.1:2"}
    # A read that began before that commit and ends after it is older: memory keeps the new.
    monkeypatch.setattr(store, "read", lambda aors: StoredBindings(1, {}))
    await here.reload(frozenset({NUMBER}))
    await here.reload(None)
    assert {b.contact for b in here.contacts(NUMBER)} == both
    monkeypatch.undo()
    store.rows[NUMBER].pop("sip:there@127.0.0.1:2")  # as if the other instance removed it
    store.commits += 1
    await here.reload(None)
    assert [b.contact for b in here.contacts(NUMBER)] == ["sip:here@127.0.0.1:1"]
