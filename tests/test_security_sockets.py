"""Who may register, with which username, how often, and that nothing can be replayed:
a real softswitch on the shipped defaults, raw SIP over real sockets (several source
addresses on 127.0.0.0/8), PJSUA2 as a real phone, fail2ban-regex on the log it wrote."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from softswitch.sip.digest import DigestParams, authorization, parse_digest
from softswitch.sip.message import Response
from softswitch.sip.parser import check_response, parse_datagram

from .peers.child import ChildProcess
from .support import DOMAIN, ServerProcess, free_port

FAIL2BAN_FILTER = Path(__file__).parents[1] / "config" / "fail2ban" / "filter.d" / "softswitch.conf"
PEERS = Path(__file__).parent / "peers"
ONE, ONE_PASSWORD = "09011110001", "pw-one"

needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")
SVCRACK = Path(sys.executable).with_name("sipvicious_svcrack")
needs_svcrack = pytest.mark.skipif(not SVCRACK.exists(),
                                   reason="sipvicious not installed (PyPI package sipvicious)")
needs_fail2ban = pytest.mark.skipif(shutil.which("fail2ban-regex") is None,
                                    reason="fail2ban-regex not installed (Debian package fail2ban)")


class RawPhone:
    """Hand-written REGISTERs from one UDP socket bound to `host` (any 127.x address)."""

    def __init__(self, server: ServerProcess, host: str = "127.0.0.1") -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(5)
        self.host, self.port = self.sock.getsockname()
        self.call_id = f"{uuid.uuid4().hex}@{host}"
        self.cseq = 0
        self.last_sent = b""

    def send(self, data: bytes) -> Response:
        self.last_sent = data
        self.sock.sendto(data, ("127.0.0.1", self.server.port))
        answer, _ = self.sock.recvfrom(65535)
        return check_response(parse_datagram(answer))

    def register(self, *, to_user: str = ONE, contact: str | None = None, expires: int = 300,
                 authorization_value: str | None = None, uri: str | None = None) -> Response:
        self.cseq += 1
        uri = uri or f"sip:{DOMAIN}"
        contact = contact or f"<sip:{ONE}@{self.host}:{self.port}>"
        lines = [f"REGISTER {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport",
                 f"From: <sip:{to_user}@{DOMAIN}>;tag=t{self.cseq}",
                 f"To: <sip:{to_user}@{DOMAIN}>", f"Call-ID: {self.call_id}",
                 f"CSeq: {self.cseq} REGISTER", "Max-Forwards: 70", f"Contact: {contact}",
                 f"Expires: {expires}"]
        if authorization_value is not None:
            lines.append(f"Authorization: {authorization_value}")
        return self.send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())

    def challenge(self, **fields: object) -> DigestParams:
        first = self.register(**fields)  # type: ignore[arg-type]
        assert first.status == 401, (first.status, first.reason)
        params = parse_digest(first.get_all("www-authenticate")[0])
        assert params is not None
        return params

    def answer(self, challenge: DigestParams, *, username: str = ONE,
               password: str = ONE_PASSWORD, nc: int = 1, digest_uri: str | None = None,
               **fields: object) -> Response:
        uri = str(fields.get("uri") or f"sip:{DOMAIN}")
        value = authorization(challenge, "REGISTER", digest_uri or uri, username, password,
                              uuid.uuid4().hex[:8], nc)
        return self.register(authorization_value=value, **fields)  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()


def contacts(server: ServerProcess, number: str = ONE) -> set[str]:
    registrations = server.show(number)["registrations"]
    assert isinstance(registrations, list)
    return {str(r["contact"]) for r in registrations}


def security_lines(server: ServerProcess) -> list[str]:
    return [line.split(" ", 2)[2] for line in server.log_text().splitlines()
            if " softswitch.security: " in line]


@pytest.fixture
def phones(server: ServerProcess):
    made: list[RawPhone] = []

    def make(host: str = "127.0.0.1") -> RawPhone:
        made.append(RawPhone(server, host))
        return made[-1]

    yield make
    for phone in made:
        phone.close()


# ---- who is who (issue 8 item 5) ------------------------------------------------------------


@pytest.mark.parametrize(("username", "to_user"), [
    ("09011110001", "09011110001"),
    ("+819011110001", "+819011110001"),
    ("819011110001", "09011110001"),
    ("090-1111-0001", "090-1111-0001"),
    ("+819011110001", "09011110001"),
])
def test_each_username_form_registers_the_same_subscriber(server: ServerProcess, phones,
                                                          username: str, to_user: str) -> None:
    phone = phones()
    ok = phone.answer(phone.challenge(to_user=to_user), username=username, to_user=to_user)
    assert ok.status == 200, (ok.status, ok.reason)
    assert contacts(server) == {f"sip:{ONE}@127.0.0.1:{phone.port}"}
    assert (f"INFO softswitch.security: auth-ok source=udp:127.0.0.1:{phone.port} "
            f"user={username} number={ONE} method=REGISTER") in security_lines(server)


def test_a_spelling_we_hold_no_ha1_for_is_told_the_national_form(server: ServerProcess,
                                                                  phones) -> None:
    phone = phones()
    refused = phone.answer(phone.challenge(), username="090 1111 0001")
    assert refused.status == 403
    assert refused.get("warning") == (
        f'399 {DOMAIN} "Use the SIP username 09011110001: the phone number in national form, '
        'digits only"')
    assert contacts(server) == set()


def test_unknown_numbers_and_data_sims_get_the_answer_of_a_wrong_password(
        server: ServerProcess, phones) -> None:
    answers = []
    for username, to_user, password in [(ONE, ONE, "wrong"), ("09099999999", "09099999999", "x"),
                                        ("07033330004", "07033330004", "x")]:
        phone = phones()
        refused = phone.answer(phone.challenge(to_user=to_user), username=username,
                               to_user=to_user, password=password)
        answers.append((refused.status, refused.reason,
                        sorted(k for k, _ in refused.headers if k not in ("via", "from", "to",
                                                                          "call-id", "cseq"))))
    assert answers[0][:2] == (403, "Forbidden")
    assert answers == [answers[0]] * 3


def test_one_subscriber_cannot_register_another(server: ServerProcess, phones) -> None:
    phone = phones()
    refused = phone.answer(phone.challenge(to_user=ONE), username="09011110002",
                           password="pw-two", to_user=ONE)
    assert refused.status == 403
    assert contacts(server) == set()


@needs_pjsua2
def test_pjsua2_registers_with_the_international_username(server: ServerProcess,
                                                          tmp_path: Path) -> None:
    phone = ChildProcess(
        [sys.executable, PEERS / "pjsua2_phone.py", "--registrar",
         f"sip:127.0.0.1:{server.port}", "--user", "+819011110002", "--password", "pw-two",
         "--realm", DOMAIN, "--log", tmp_path / "pjsua2.log"],
        name="pjsua2", stderr_path=tmp_path / "pjsua2.stderr")
    try:
        registered = phone.expect_event("reg_state", timeout=15)
        assert registered["code"] == 200, phone.failure(f"registration: {registered}")
        [contact] = contacts(server, "09011110002")
        assert contact.startswith("sip:+819011110002@127.0.0.1:")
        phone.send("quit")
        phone.expect_event("stopped", timeout=10)
    finally:
        phone.finish(timeout=10)
    assert any("user=+819011110002 number=09011110002 method=REGISTER" in line
               for line in security_lines(server))


# ---- password guessing (item 7) -------------------------------------------------------------


@needs_fail2ban
def test_a_password_guesser_is_banned_while_another_source_registers(
        server: ServerProcess, phones) -> None:
    guesser = phones("127.0.0.1")
    challenge = guesser.challenge()
    answers = []
    for attempt in range(1, 201):
        answers.append(guesser.answer(challenge, password=f"guess-{attempt}", nc=attempt).status)
        if attempt == 100:  # meanwhile the subscriber's own phone, from another address
            owner = phones("127.0.0.2")
            assert owner.answer(owner.challenge()).status == 200
    assert answers == [403] * 200
    # Banned: refused before any digest work. No challenge is handed out, and even the right
    # password is refused unread.
    assert guesser.register().status == 403
    assert guesser.answer(challenge, nc=201).status == 403
    assert contacts(server) == {f"sip:{ONE}@127.0.0.2:{owner.port}"}
    # ... nor calls the remote-access number to guess PINs instead (the DTMF test stands in)
    invite = (f"INVITE sip:1999@127.0.0.1:{server.port} SIP/2.0\r\n"
              f"Via: SIP/2.0/UDP 127.0.0.1:{guesser.port};branch=z9hG4bK-banned-call\r\n"
              f"From: <sip:guess@{DOMAIN}>;tag=g\r\nTo: <sip:1999@{DOMAIN}>\r\n"
              "Call-ID: banned-call\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
              f"Contact: <sip:guess@127.0.0.1:{guesser.port}>\r\nContent-Length: 0\r\n\r\n")
    assert guesser.send(invite.encode()).status == 403

    lines = security_lines(server)
    source = f"source=udp:127.0.0.1:{guesser.port}"
    failed = [line for line in lines
              if line.startswith(f"INFO softswitch.security: auth-failed {source} ")]
    assert len(failed) == 203  # one line for every refused request
    assert failed[-3].endswith(" user=- method=REGISTER reason=source-banned")  # no credentials
    assert failed[-1].endswith(" user=- method=INVITE reason=source-banned")  # at 1999 too
    assert sum(line.endswith("reason=wrong-password") for line in failed) == 11
    assert sum(line.endswith("reason=source-banned") for line in failed) == 192
    assert [line for line in lines if "WARNING" in line] == [
        f"WARNING softswitch.security: source-banned {source} failures=11 ban_seconds=900"]
    assert any(line.startswith("INFO softswitch.security: auth-ok source=udp:127.0.0.2:")
               for line in lines)

    found = subprocess.run(["fail2ban-regex", "-o", "ip", str(server.directory / "server.log"),
                            str(FAIL2BAN_FILTER)], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    addresses = found.stdout.split()
    assert set(addresses) == {"127.0.0.1"}
    assert len(addresses) == 11  # the failures that proved their source


@needs_svcrack
def test_svcrack_is_banned_before_it_reaches_the_password(server: ServerProcess,
                                                          tmp_path: Path) -> None:
    """SIPVicious's password cracker, with the password 20th in its dictionary: without a
    limit it finds it in a fraction of a second."""
    guesses = [f"guess{index:02d}" for index in range(40)]
    guesses[19] = ONE_PASSWORD
    dictionary = tmp_path / "passwords.txt"
    dictionary.write_text("\n".join(guesses) + "\n")
    cracker = subprocess.Popen(
        [SVCRACK, "-u", ONE, "-d", dictionary, "-b", "127.0.0.1", "-P", str(free_port()),
         f"udp://127.0.0.1:{server.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:  # refused without a challenge, it asks for one again and again: it never ends
        said, _ = cracker.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        cracker.kill()
        said, _ = cracker.communicate()
    assert ONE_PASSWORD not in said
    lines = security_lines(server)
    assert sum(line.endswith("reason=wrong-password") for line in lines) == 11
    assert sum("WARNING softswitch.security: source-banned source=udp:127.0.0.1:" in line
               for line in lines) == 1
    assert sum(line.endswith("reason=source-banned") for line in lines) > 10
    assert contacts(server) == set()


@needs_fail2ban
def test_the_fail2ban_jail_loads_with_the_filter(tmp_path: Path) -> None:
    """The shipped jail and filter, dropped into a copy of the system's fail2ban config."""
    config = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", config)
    shutil.rmtree(config / "jail.d")  # Debian's enables sshd, whose log is not here
    (config / "jail.d").mkdir()
    shutil.copy(FAIL2BAN_FILTER, config / "filter.d")
    log = tmp_path / "softswitch.log"
    log.touch()
    jail = (FAIL2BAN_FILTER.parents[1] / "jail.d" / "softswitch.conf").read_text()
    (config / "jail.d" / "softswitch.conf").write_text(
        jail.replace("/var/log/softswitch/softswitch.log", str(log)))
    checked = subprocess.run(["fail2ban-client", "-c", str(config), "-t"], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dumped = subprocess.run(["fail2ban-client", "-c", str(config), "-d"], capture_output=True,
                            text=True, timeout=60).stdout
    assert "['add', 'softswitch', 'auto']" in dumped
    assert "['set', 'softswitch', 'maxretry', 10]" in dumped


def test_an_account_under_attack_still_registers_from_its_owners_address(
        server: ServerProcess, phones) -> None:
    owner = phones("127.0.0.1")
    assert owner.answer(owner.challenge()).status == 200
    for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # ten guesses each: none banned
        guesser = phones(host)
        challenge = guesser.challenge()
        for nc in range(1, 11):
            assert guesser.answer(challenge, password="guess", nc=nc).status == 403
    stranger = phones("127.0.0.5")
    challenge = stranger.challenge()  # anyone is still challenged ...
    assert stranger.answer(challenge).status == 403  # ... but not heard, right password or not
    again = owner.challenge()
    assert owner.answer(again).status == 200
    assert contacts(server) == {f"sip:{ONE}@127.0.0.1:{owner.port}"}
    lines = security_lines(server)
    assert f"WARNING softswitch.security: account-under-attack number={ONE} failures=21" in lines
    assert (f"INFO softswitch.security: auth-failed source=udp:127.0.0.5:{stranger.port} "
            f"user={ONE} method=REGISTER reason=account-under-attack") in lines


def test_after_a_restart_the_owner_is_known_by_the_address_of_its_binding(
        server: ServerProcess, phones) -> None:
    owner = phones("127.0.0.1")
    assert owner.answer(owner.challenge()).status == 200
    server.restart()  # what this process learnt is gone; the binding in the store is not
    for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        guesser = phones(host)
        challenge = guesser.challenge()
        for nc in range(1, 11):
            assert guesser.answer(challenge, password="guess", nc=nc).status == 403
    stranger = phones("127.0.0.5")
    assert stranger.answer(stranger.challenge()).status == 403
    assert owner.answer(owner.challenge()).status == 200


# ---- replay (item 8) ------------------------------------------------------------------------


def register_then_unregister(server: ServerProcess, phone: RawPhone) -> bytes:
    """Register (the REGISTER that got 200 is returned, as an eavesdropper saw it), then
    remove the binding with the next nonce count."""
    challenge = phone.challenge(contact="<sip:phone@127.0.0.1:5999>")
    assert phone.answer(challenge, nc=1, contact="<sip:phone@127.0.0.1:5999>").status == 200
    captured = phone.last_sent
    assert phone.answer(challenge, nc=2, contact="*", expires=0).status == 200
    assert contacts(server) == set()
    return captured


def replayed(captured: bytes) -> bytes:
    """The captured REGISTER as a new request (a fresh Via branch and From tag), so that it
    is neither a retransmission nor a merged request (§8.2.2.2): what the digest covers is
    unchanged."""
    fresh = uuid.uuid4().hex
    request = re.sub(rb"branch=z9hG4bK[0-9a-f]+", f"branch=z9hG4bK{fresh}".encode(), captured)
    return re.sub(rb";tag=t[0-9]+", f";tag=r{fresh}".encode(), request)


def assert_replay_refused(server: ServerProcess, replayer: RawPhone, captured: bytes) -> None:
    answer = replayer.send(replayed(captured))
    assert answer.status == 401  # challenged again, stale: the nonce is not accepted here
    params = parse_digest(answer.get_all("www-authenticate")[0])
    assert params is not None and params.stale
    assert contacts(server) == set()


def test_a_register_replayed_after_a_kill_and_restart_is_refused(server: ServerProcess,
                                                                 phones) -> None:
    phone = phones()
    captured = register_then_unregister(server, phone)
    # The same request again, to this process: its nonce count is spent.
    assert phone.send(replayed(captured)).status == 403
    assert contacts(server) == set()
    server.stop(9)  # kill -9: the nonce-count record is gone with the process
    server.start()
    assert_replay_refused(server, phone, captured)


def test_a_register_replayed_to_a_second_instance_on_the_same_store_is_refused(
        server: ServerProcess, phones, tmp_path: Path) -> None:
    phone = phones()
    captured = register_then_unregister(server, phone)
    (tmp_path / "second").mkdir()
    second = ServerProcess(tmp_path / "second", store_url=f"sqlite+aiosqlite:///"
                           f"{server.directory / 'softswitch.db'}").start()
    try:
        replayer = RawPhone(second)  # the same address: the nonce is bound to it
        try:
            assert_replay_refused(second, replayer, captured)
            # The second instance itself works: a phone registers through it.
            fresh = RawPhone(second)
            assert fresh.answer(fresh.challenge()).status == 200
            fresh.close()
        finally:
            replayer.close()
    finally:
        second.stop()


def test_the_digest_uri_must_name_the_request_uri(server: ServerProcess, phones) -> None:
    phone = phones()
    challenge = phone.challenge()
    assert phone.answer(challenge, nc=1, digest_uri="sip:elsewhere.example").status == 403
    assert phone.answer(challenge, nc=2, digest_uri=f"sip:{DOMAIN}:5090").status == 403
    assert contacts(server) == set()
    # Equivalent forms of our own URI are fine.
    for nc, digest_uri in enumerate([f"sip:127.0.0.1:{server.port}", f"sip:{DOMAIN}:5060",
                                     f"sip:{DOMAIN};transport=udp"], start=3):
        assert phone.answer(challenge, nc=nc, digest_uri=digest_uri).status == 200, digest_uri
    assert any(re.search(r"reason=uri-mismatch$", line) for line in security_lines(server))
