"""The registrar over real UDP and TCP sockets: digest challenge, bindings, expiry, restart."""

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from softswitch.sip.digest import authorization, parse_digest
from softswitch.sip.parser import check_response, parse_datagram

from .support import DOMAIN, ServerProcess, SipClient


class Phone:
    """A hand-driven SIP phone registering over one socket."""

    def __init__(self, server: ServerProcess, number: str, password: str,
                 transport: str = "udp") -> None:
        self.client = SipClient(server.port, transport)
        self.number, self.password, self.transport = number, password, transport
        self.call_id = f"{uuid.uuid4().hex}@test"
        self.cseq = 0
        self.nc = 0
        self.challenge = None

    def request(self, contacts: list[str], expires: int | None = None,
                authenticate: bool = True, algorithm: str = "MD5",
                password: str | None = None, extra: str = ""):
        self.cseq += 1
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/{self.transport.upper()} 127.0.0.1:{self.client.local_port};"
            f"branch=z9hG4bK{uuid.uuid4().hex};rport",
            f"From: <sip:{self.number}@{DOMAIN}>;tag=ft{self.cseq}",
            f"To: <sip:{self.number}@{DOMAIN}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
            "User-Agent: softswitch-test",
        ]
        lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authenticate and self.challenge is not None:
            self.nc += 1
            lines.append("Authorization: " + authorization(
                self.challenge, "REGISTER", f"sip:{DOMAIN}", self.number,
                password or self.password, cnonce=uuid.uuid4().hex[:8], nc=self.nc))
        if extra:
            lines.append(extra)
        self.client.send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
        answer = self.client.receive()
        assert answer is not None, "no answer"
        return check_response(parse_datagram(answer))

    def register(self, contacts: list[str], expires: int | None = 300, algorithm: str = "MD5",
                 password: str | None = None, extra: str = ""):
        first = self.request(contacts, expires, authenticate=False, extra=extra)
        if first.status != 401:
            return first
        challenges = [parse_digest(v) for v in first.get_all("www-authenticate")]
        self.challenge = next(c for c in challenges if c and c.algorithm == algorithm)
        self.nc = 0
        return self.request(contacts, expires, algorithm=algorithm, password=password,
                            extra=extra)

    def close(self) -> None:
        self.client.close()


REGISTRAR = {"min_expires": 2, "max_expires": 3600, "default_expires": 600}


@pytest.fixture
def server(tmp_path: Path):
    process = ServerProcess(tmp_path, sip_overrides={"registrar": REGISTRAR}).start()
    yield process
    process.stop()


def contact_expiries(response) -> dict[str, int]:
    return {str(c.uri): int(c.params["expires"]) for c in response.contacts}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("offered", "algorithm"), [
    (["MD5"], "MD5"),  # the shipped default
    (["SHA-256", "MD5"], "SHA-256"),  # the stronger option, MD5 kept for older phones
])
def test_register_through_a_digest_challenge(tmp_path: Path, transport: str,
                                             offered: list[str], algorithm: str) -> None:
    auth = {} if offered == ["MD5"] else {"auth": {"algorithms": offered}}
    server = ServerProcess(tmp_path, sip_overrides={"registrar": REGISTRAR, **auth}).start()
    phone = Phone(server, "09011110001", "pw-one", transport)
    try:
        first = phone.request(["<sip:09011110001@127.0.0.1:5999>"], 300, authenticate=False)
        assert first.status == 401
        challenges = [parse_digest(v) for v in first.get_all("www-authenticate")]
        assert [c.algorithm for c in challenges] == offered
        phone.challenge = next(c for c in challenges if c.algorithm == algorithm)
        ok = phone.request(["<sip:09011110001@127.0.0.1:5999>"], 300, algorithm=algorithm)
        assert ok.status == 200
        expiries = contact_expiries(ok)
        assert list(expiries) == ["sip:09011110001@127.0.0.1:5999"]
        assert 295 <= expiries["sip:09011110001@127.0.0.1:5999"] <= 300
        assert ok.get("date") is not None
        state = server.show("090-1111-0001")
        assert [r["contact"] for r in state["registrations"]] == [
            "sip:09011110001@127.0.0.1:5999"]
    finally:
        phone.close()
        server.stop()


def test_refusals(server: ServerProcess) -> None:
    wrong = Phone(server, "09011110001", "not-the-password")
    data_sim = Phone(server, "07033330004", "anything")
    unknown = Phone(server, "09099999999", "anything")
    try:
        assert wrong.register(["<sip:x@127.0.0.1:5999>"]).status == 403
        assert data_sim.register(["<sip:x@127.0.0.1:5999>"]).status == 403
        assert unknown.register(["<sip:x@127.0.0.1:5999>"]).status == 403
        # A replayed nonce count is refused too.
        replay = Phone(server, "09011110002", "pw-two")
        assert replay.register(["<sip:b@127.0.0.1:5999>"]).status == 200
        replay.nc -= 1
        assert replay.request(["<sip:b@127.0.0.1:5999>"], 300).status == 403
        replay.close()
    finally:
        wrong.close()
        data_sim.close()
        unknown.close()
    assert server.show("09011110001")["registrations"] == []


def test_a_resent_register_gets_the_same_challenge_byte_for_byte(server: ServerProcess) -> None:
    """A phone whose 401 is late resends its REGISTER; were the copy challenged afresh, the
    second 401 (another nonce, another To tag) would reach the phone after it answered the
    first, as a stray response (SIPp fails the registration on it, and under overload every
    late registration failed so). The copy gets the first answer again, and the phone's
    answer to it registers."""
    phone = Phone(server, "09011110001", "pw-one")
    try:
        register = (
            f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{phone.client.local_port};branch=z9hG4bKresent\r\n"
            f"From: <sip:09011110001@{DOMAIN}>;tag=resent\r\nTo: <sip:09011110001@{DOMAIN}>\r\n"
            f"Call-ID: resent@test\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:09011110001@127.0.0.1:5999>\r\nExpires: 300\r\n"
            f"Content-Length: 0\r\n\r\n").encode()
        answers = []
        for _ in range(3):
            phone.client.send(register)
            answers.append(phone.client.receive())
        assert answers[0] is not None and answers[0].startswith(b"SIP/2.0 401 ")
        assert answers[1] == answers[0] and answers[2] == answers[0]
        assert phone.client.receive(timeout=0.3) is None  # one answer per copy
        phone.challenge = parse_digest(
            check_response(parse_datagram(answers[0])).get("www-authenticate") or "")
        phone.call_id, phone.cseq = "resent@test", 1
        assert phone.request(["<sip:09011110001@127.0.0.1:5999>"], 300).status == 200
    finally:
        phone.close()


def test_bindings_lifecycle(server: ServerProcess) -> None:
    phone = Phone(server, "08022220003", "pw-three")
    try:
        brief = phone.register(["<sip:a@127.0.0.1:6001>"], expires=1)
        assert brief.status == 423 and brief.get("min-expires") == "2"
        ok = phone.request(["<sip:a@127.0.0.1:6001>", "<sip:b@127.0.0.1:6002>;expires=120"],
                           expires=7200)
        assert ok.status == 200
        expiries = contact_expiries(ok)
        assert 3590 <= expiries["sip:a@127.0.0.1:6001"] <= 3600  # capped at max_expires
        assert 115 <= expiries["sip:b@127.0.0.1:6002"] <= 120
        query = phone.request([], None)
        assert set(contact_expiries(query)) == {"sip:a@127.0.0.1:6001", "sip:b@127.0.0.1:6002"}
        removed = phone.request(["<sip:a@127.0.0.1:6001>"], expires=0)
        assert set(contact_expiries(removed)) == {"sip:b@127.0.0.1:6002"}
        assert phone.request(["*"], expires=300).status == 400  # * needs Expires: 0
        cleared = phone.request(["*"], expires=0)
        assert cleared.status == 200 and cleared.contacts == []
    finally:
        phone.close()
    assert server.show("08022220003")["registrations"] == []


def test_restart_keeps_bindings_and_expiry_removes_them(server: ServerProcess) -> None:
    phone = Phone(server, "09011110001", "pw-one")
    try:
        assert phone.register(["<sip:long@127.0.0.1:6001>"], expires=600).status == 200
        # Long enough to outlive a restart and a `show` on a busy machine.
        assert phone.request(["<sip:short@127.0.0.1:6002>"], expires=8).status == 200
        short_expires = time.monotonic() + 8
    finally:
        phone.close()
    server.restart()
    contacts = {r["contact"] for r in server.show("09011110001")["registrations"]}
    assert contacts == {"sip:long@127.0.0.1:6001", "sip:short@127.0.0.1:6002"}
    time.sleep(max(0.0, short_expires - time.monotonic()) + 1.5)  # the sweeper runs every 1 s
    contacts = {r["contact"] for r in server.show("09011110001")["registrations"]}
    assert contacts == {"sip:long@127.0.0.1:6001"}
    # Gone from the store itself, not only hidden by `show`: the sweeper removed the row.
    with sqlite3.connect(server.directory / "softswitch.db") as db:
        rows = db.execute("select contact from registrations").fetchall()
    assert rows == [("sip:long@127.0.0.1:6001",)]
    # The restarted server still authenticates and refreshes the binding.
    again = Phone(server, "09011110001", "pw-one")
    try:
        assert again.register(["<sip:long@127.0.0.1:6001>"], expires=600).status == 200
    finally:
        again.close()
