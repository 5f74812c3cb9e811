"""SipAuthenticator without sockets: username forms, uniform refusals, the digest uri, bans,
accounts under attack, bounded memory and the security log lines."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator

import pytest

from softswitch.config import (
    AccountFailuresConfig,
    ListenAddress,
    SecurityConfig,
    SourceFailuresConfig,
)
from softswitch.credentials import username_forms
from softswitch.sip import digest
from softswitch.sip.digest import DigestAuthenticator, authorization, ha1, parse_digest
from softswitch.sip.events import Peer
from softswitch.sip.message import Request
from softswitch.sip.parser import check_request, parse_datagram
from softswitch.store.store import SipCredentials
from softswitch.switch.auth import (
    Authenticated,
    FailureLimits,
    Rejected,
    SipAuthenticator,
    log_value,
)

REALM = "softswitch.test"
SAKURA, KENJI = "09012345678", "08023456789"
PASSWORDS = {SAKURA: "pw-sakura", KENJI: "pw-kenji"}
HOME = Peer("udp", "198.51.100.7", 5062)
ATTACKER = Peer("udp", "203.0.113.5", 5060)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def credentials() -> dict[str, SipCredentials]:
    return {
        username: SipCredentials(username, number, ha1("MD5", username, REALM, password),
                                 ha1("SHA-256", username, REALM, password))
        for number, password in PASSWORDS.items()
        for username in username_forms(number)
    }


def make_authenticator(clock: Clock, security: SecurityConfig | None = None,
                       instance: bytes = b"instance", **kwargs: object) -> SipAuthenticator:
    authenticator = SipAuthenticator(
        digest=DigestAuthenticator(REALM, b"s" * 32, 300, ("MD5",), instance),
        credentials=credentials(), security=security or SecurityConfig(), clock=clock,
        monotonic=clock, **kwargs)  # type: ignore[arg-type]
    authenticator.listening([ListenAddress("127.0.0.1", 5070)])
    return authenticator


def request(method: str = "REGISTER", uri: str = f"sip:{REALM}", to: str = SAKURA,
            auth: str | None = None, proxy: bool = False, via: str = "") -> Request:
    lines = [f"{method} {uri} SIP/2.0",
             f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{uuid.uuid4().hex}",
             *([via] if via else []),
             f"From: <sip:{to}@{REALM}>;tag=f", f"To: <sip:{to}@{REALM}>",
             f"Call-ID: {uuid.uuid4().hex}", f"CSeq: 1 {method}", "Max-Forwards: 70"]
    if auth is not None:
        lines.append(f"{'Proxy-Authorization' if proxy else 'Authorization'}: {auth}")
    raw = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
    return check_request(parse_datagram(raw))


def answer(authenticator: SipAuthenticator, *, username: str = SAKURA, password: str | None = None,
           peer: Peer = HOME, method: str = "REGISTER", uri: str = f"sip:{REALM}",
           digest_uri: str | None = None, expected: str | None = SAKURA, proxy: bool = False,
           challenge: Rejected | None = None, nc: int = 1) -> Authenticated | Rejected:
    """Ask for a challenge from `peer` (unless given), answer it, return the outcome."""
    if challenge is None:
        challenge = authenticator.authenticate(request(method, uri, proxy=proxy), peer,
                                               proxy=proxy, expected_number=expected)
        assert isinstance(challenge, Rejected) and challenge.status == (407 if proxy else 401)
    params = parse_digest(challenge.headers[0][1])
    assert params is not None
    number = next((n for n in PASSWORDS if username in username_forms(n)), SAKURA)
    value = authorization(params, method, digest_uri or uri, username,
                          password or PASSWORDS[number], "cnonce", nc)
    return authenticator.authenticate(request(method, uri, auth=value, proxy=proxy), peer,
                                      proxy=proxy, expected_number=expected)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every digest hash the server computes (HA2 and the response), by algorithm; the
    client's own hashing (digest.authorization) is not counted."""
    calls: list[str] = []
    verifying = [False]
    real_hash, real_verify = digest._hex_hash, DigestAuthenticator.verify

    def counting(algorithm: str, text: str) -> str:
        if verifying[0]:
            calls.append(algorithm)
        return real_hash(algorithm, text)

    def verify(self: DigestAuthenticator, *args: object) -> digest.AuthResult:
        verifying[0] = True
        try:
            return real_verify(self, *args)  # type: ignore[arg-type]
        finally:
            verifying[0] = False

    monkeypatch.setattr(digest, "_hex_hash", counting)
    monkeypatch.setattr(DigestAuthenticator, "verify", verify)
    yield calls


# ---- who is who -----------------------------------------------------------------------------


@pytest.mark.parametrize("username", username_forms(SAKURA))
def test_every_username_form_authenticates_as_the_subscriber(clock: Clock, username: str) -> None:
    outcome = answer(make_authenticator(clock), username=username)
    assert outcome == Authenticated(SAKURA, username)


def test_the_subscriber_must_be_the_expected_number(clock: Clock) -> None:
    """Kenji's right password does not register (or call as) Sakura."""
    authenticator = make_authenticator(clock)
    assert answer(authenticator, username=KENJI, expected=SAKURA) == Rejected(403, "Forbidden")
    assert answer(authenticator, username=KENJI, expected=None) == Authenticated(KENJI, KENJI)
    assert answer(authenticator, username=SAKURA, expected="") == Rejected(403, "Forbidden")


@pytest.mark.parametrize("username", ["090 1234 5678", "+81 90-1234-5678", "81-90-1234-5678",
                                      "０９０１２３４５６７８"])
def test_a_number_in_a_form_we_hold_no_ha1_for_is_told_the_national_form(
        clock: Clock, username: str) -> None:
    outcome = answer(make_authenticator(clock), username=username)
    assert isinstance(outcome, Rejected) and outcome.status == 403
    assert outcome.headers == (
        ("warning", f'399 {REALM} "Use the SIP username 09012345678: the phone number in '
                    'national form, digits only"'),)


def test_the_warning_does_not_depend_on_the_number_being_a_subscriber(clock: Clock) -> None:
    outcome = answer(make_authenticator(clock), username="090 9999 0000", password="x")
    assert isinstance(outcome, Rejected)
    assert outcome.headers and "09099990000" in outcome.headers[0][1]


def test_unknown_users_and_data_sims_are_refused_exactly_like_a_wrong_password(
        clock: Clock, hash_calls: list[str]) -> None:
    authenticator = make_authenticator(clock)
    outcomes, work = [], []
    for username, password in [(SAKURA, "wrong"), ("09099999999", "x"),  # unknown
                               ("07033330004", "x"),  # a data SIM: no credentials at all
                               ("sakura", "x")]:  # not a number
        hash_calls.clear()
        outcomes.append(answer(authenticator, username=username, password=password,
                               peer=Peer("udp", f"192.0.2.{len(work) + 10}", 5060)))
        work.append(list(hash_calls))
    assert outcomes == [Rejected(403, "Forbidden")] * 4
    # The same hash work for each, so the timing tells nothing either (a challenge's nonce
    # is an HMAC, not a digest hash).
    assert work == [["MD5", "MD5"]] * 4


# ---- challenges: 401 or 407, stale, bad nonces --------------------------------------------------


def test_proxy_authentication_for_invite(clock: Clock) -> None:
    authenticator = make_authenticator(clock)
    invite = request("INVITE", f"sip:1400@{REALM}")
    challenge = authenticator.authenticate(invite, HOME, proxy=True, expected_number=SAKURA)
    assert isinstance(challenge, Rejected)
    assert (challenge.status, challenge.reason) == (407, "Proxy Authentication Required")
    assert [name for name, _ in challenge.headers] == ["proxy-authenticate"]
    outcome = answer(authenticator, method="INVITE", uri=f"sip:1400@{REALM}", proxy=True,
                     challenge=challenge)
    assert outcome == Authenticated(SAKURA, SAKURA)
    # An Authorization header is not what a 407 asks for: challenged again.
    params = parse_digest(challenge.headers[0][1])
    assert params is not None
    value = authorization(params, "INVITE", f"sip:1400@{REALM}", SAKURA, "pw-sakura", "c", 2)
    wrong_header = request("INVITE", f"sip:1400@{REALM}", auth=value, proxy=False)
    again = authenticator.authenticate(wrong_header, HOME, proxy=True, expected_number=SAKURA)
    assert isinstance(again, Rejected) and again.status == 407


def test_a_nonce_from_another_instance_is_answered_stale(clock: Clock) -> None:
    first = make_authenticator(clock, instance=b"first-01")
    second = make_authenticator(clock, instance=b"second-2")
    challenge = first.authenticate(request(), HOME, proxy=False, expected_number=SAKURA)
    assert isinstance(challenge, Rejected)
    outcome = answer(second, challenge=challenge)
    assert isinstance(outcome, Rejected) and outcome.status == 401
    params = parse_digest(outcome.headers[0][1])
    assert params is not None and params.stale


def test_a_nonce_issued_to_another_address_is_challenged_afresh_and_not_counted(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Spoofed sources never received a challenge: they cannot get an address banned."""
    authenticator = make_authenticator(clock)
    challenge = authenticator.authenticate(request(), HOME, proxy=False, expected_number=SAKURA)
    assert isinstance(challenge, Rejected)
    caplog.set_level(logging.INFO, "softswitch.security")
    for _ in range(30):
        outcome = answer(authenticator, password="guess", peer=ATTACKER, challenge=challenge)
        assert isinstance(outcome, Rejected) and outcome.status == 401
        params = parse_digest(outcome.headers[0][1])
        assert params is not None and not params.stale
    assert authenticator.limits.tracked == (0, 0)
    assert "reason=bad-nonce" in caplog.text and "source-banned" not in caplog.text


# ---- the digest uri (RFC 3261 §22.4) --------------------------------------------------------


@pytest.mark.parametrize(("uri", "digest_uri"), [
    (f"sip:{REALM}", f"sip:{REALM}"),
    (f"sip:{REALM}", f"sip:{REALM}:5060"),
    (f"sip:{REALM}", f"sip:{REALM};transport=udp"),
    (f"sip:{REALM}", "sip:127.0.0.1:5070"),  # a listen address
    ("sip:127.0.0.1", "sip:127.0.0.1;transport=UDP"),  # pyVoIP
    ("sip:127.0.0.1:5070", f"sip:{REALM}"),
    (f"sip:1400@{REALM}", "sip:1400@127.0.0.1:5070;user=phone"),
    ("sip:192.0.2.80:5080", "sip:192.0.2.80:5080"),  # not ours, but the same URI
])
def test_equivalent_digest_uris_are_accepted(clock: Clock, uri: str, digest_uri: str) -> None:
    outcome = answer(make_authenticator(clock), uri=uri, digest_uri=digest_uri)
    assert outcome == Authenticated(SAKURA, SAKURA)


@pytest.mark.parametrize(("uri", "digest_uri"), [
    (f"sip:{REALM}", "sip:evil.example"),
    (f"sip:{REALM}", "sip:127.0.0.1:5999"),  # not our port
    (f"sip:{REALM}", "sip:127.0.0.2:5070"),  # not our address
    (f"sip:{REALM}", f"sips:{REALM}"),
    (f"sip:1400@{REALM}", f"sip:09011110001@{REALM}"),  # another callee
    (f"sip:1400@{REALM}", f"sip:{REALM}"),
    ("sip:192.0.2.80:5080", "sip:192.0.2.80"),
    (f"sip:{REALM}", "not a uri"),
])
def test_a_digest_uri_for_another_request_is_refused(clock: Clock, uri: str,
                                                      digest_uri: str) -> None:
    outcome = answer(make_authenticator(clock), uri=uri, digest_uri=digest_uri)
    assert outcome == Rejected(403, "Forbidden")


def test_listening_on_any_address_accepts_ip_literals(clock: Clock) -> None:
    authenticator = make_authenticator(clock)
    authenticator.listening([ListenAddress("0.0.0.0", 5070)])
    assert answer(authenticator, digest_uri="sip:10.1.2.3:5070") == Authenticated(SAKURA, SAKURA)
    assert answer(authenticator, digest_uri="sip:elsewhere.example") == Rejected(403, "Forbidden")


# ---- failures per source --------------------------------------------------------------------


def test_more_than_max_failures_ban_the_source_without_further_digest_work(
        clock: Clock, hash_calls: list[str]) -> None:
    authenticator = make_authenticator(clock)
    challenge = authenticator.authenticate(request(), ATTACKER, proxy=False,
                                           expected_number=SAKURA)
    assert isinstance(challenge, Rejected)
    for nc in range(1, 11):  # ten failures: not yet
        assert answer(authenticator, password=f"guess{nc}", peer=ATTACKER,
                      challenge=challenge, nc=nc) == Rejected(403, "Forbidden")
    assert authenticator.limits.tracked == (1, 0)
    assert answer(authenticator, password="guess11", peer=ATTACKER, challenge=challenge,
                  nc=11) == Rejected(403, "Forbidden")
    assert authenticator.limits.tracked == (0, 1)
    hash_calls.clear()
    # Banned: even the right password is refused, unread; no challenge is handed out either.
    banned = Rejected(403, "Forbidden", stateless=True)  # no transaction kept for it
    assert answer(authenticator, peer=ATTACKER, challenge=challenge, nc=12) == banned
    assert authenticator.authenticate(request(), ATTACKER, proxy=False,
                                      expected_number=SAKURA) == banned
    assert hash_calls == []
    assert authenticator.refuse_if_banned(request(), ATTACKER) == banned
    # Another address is served meanwhile; the ban ends after ban_seconds.
    assert answer(authenticator) == Authenticated(SAKURA, SAKURA)
    clock.now += 900
    assert answer(authenticator, peer=ATTACKER) == Authenticated(SAKURA, SAKURA)


def test_failures_spread_wider_than_the_window_do_not_ban(clock: Clock) -> None:
    authenticator = make_authenticator(clock)
    for _ in range(20):  # (twenty: the account does not come under attack)
        assert answer(authenticator, password="guess", peer=ATTACKER) == Rejected(403, "Forbidden")
        clock.now += 6.1  # 10 failures take 61 s: never 11 within 60 s
    assert authenticator.limits.tracked[1] == 0
    assert answer(authenticator, peer=ATTACKER) == Authenticated(SAKURA, SAKURA)


@pytest.mark.parametrize("reason_username", ["09099999999", "090 1234 5678", KENJI])
def test_every_kind_of_failure_counts_for_the_source(clock: Clock, reason_username: str) -> None:
    authenticator = make_authenticator(clock)
    for _ in range(11):
        outcome = answer(authenticator, username=reason_username, password="x", peer=ATTACKER)
        assert isinstance(outcome, Rejected) and outcome.status == 403
    assert authenticator.refuse_if_banned(request(), ATTACKER) is not None


def test_behind_a_trusted_peer_the_source_is_the_client_it_received_from(clock: Clock) -> None:
    """A load balancer forwards for everyone: banning it would lock everyone out."""
    import ipaddress

    authenticator = make_authenticator(
        clock, trusted_peers=(ipaddress.ip_network("10.0.0.0/24"),))
    balancer = Peer("udp", "10.0.0.2", 5060)
    attacker_via = "Via: SIP/2.0/UDP 10.9.9.9:5060;received=203.0.113.5;rport=40000;branch=z9hG4bKa"
    for _ in range(11):
        challenge = authenticator.authenticate(request(via=attacker_via), balancer, proxy=False,
                                               expected_number=SAKURA)
        assert isinstance(challenge, Rejected) and challenge.status == 401
        params = parse_digest(challenge.headers[0][1])
        assert params is not None
        value = authorization(params, "REGISTER", f"sip:{REALM}", SAKURA, "guess", "c", 1)
        assert authenticator.authenticate(request(auth=value, via=attacker_via), balancer,
                                          proxy=False, expected_number=SAKURA).status == 403
    assert authenticator.limits.banned("203.0.113.5", clock())
    assert not authenticator.limits.banned("10.0.0.2", clock())
    owner_via = "Via: SIP/2.0/UDP 198.51.100.7:5062;rport=5062;branch=z9hG4bKb"
    challenge = authenticator.authenticate(request(via=owner_via), balancer, proxy=False,
                                           expected_number=SAKURA)
    assert isinstance(challenge, Rejected) and challenge.status == 401


# ---- failures per account -------------------------------------------------------------------


def attack_account(authenticator: SipAuthenticator, failures: int) -> None:
    """`failures` wrong passwords for Sakura from ten-failure sources (none banned)."""
    for index in range(failures):
        source = Peer("udp", f"203.0.113.{index // 10 + 10}", 5060)
        assert answer(authenticator, password="guess", peer=source) == Rejected(403, "Forbidden")


def test_an_account_under_attack_answers_only_its_known_addresses(
        clock: Clock, hash_calls: list[str]) -> None:
    authenticator = make_authenticator(clock)
    assert answer(authenticator) == Authenticated(SAKURA, SAKURA)  # the owner, from home
    clock.now += 60
    attack_account(authenticator, 20)
    assert not authenticator.limits.under_attack(SAKURA, clock())
    attack_account(authenticator, 1)
    assert authenticator.limits.under_attack(SAKURA, clock())
    # A stranger with the right password is refused without digest work ...
    challenge = authenticator.authenticate(request(), Peer("udp", "192.0.2.99", 5060),
                                           proxy=False, expected_number=SAKURA)
    assert isinstance(challenge, Rejected)
    hash_calls.clear()
    assert answer(authenticator, peer=Peer("udp", "192.0.2.99", 5060), challenge=challenge) \
        == Rejected(403, "Forbidden")
    assert hash_calls == []
    # ... while the owner still gets in from home (another port of the same address too),
    # and other accounts are not affected.
    assert answer(authenticator) == Authenticated(SAKURA, SAKURA)
    assert answer(authenticator, peer=Peer("udp", HOME.host, 40000)) \
        == Authenticated(SAKURA, SAKURA)
    assert answer(authenticator, username=KENJI, expected=KENJI,
                  peer=Peer("udp", "192.0.2.99", 5060)) == Authenticated(KENJI, KENJI)
    # Refusals keep the state; window_seconds of quiet end it.
    clock.now += 599
    assert answer(authenticator, peer=Peer("udp", "192.0.2.99", 5060)) \
        == Rejected(403, "Forbidden")
    clock.now += 600
    assert answer(authenticator, peer=Peer("udp", "192.0.2.99", 5060)) \
        == Authenticated(SAKURA, SAKURA)


def test_known_addresses_expire_and_are_seeded_from_stored_bindings(clock: Clock) -> None:
    security = SecurityConfig(account_failures=AccountFailuresConfig(
        max_failures=2, window_seconds=600, known_source_seconds=3600))
    authenticator = make_authenticator(clock, security)
    authenticator.remember(SAKURA, "udp:192.0.2.50:5062")
    authenticator.remember(SAKURA, "tcp:[2001:db8::7]:5062")
    attack_account(authenticator, 3)
    assert answer(authenticator, peer=Peer("udp", "192.0.2.50", 1)) \
        == Authenticated(SAKURA, SAKURA)
    assert answer(authenticator, peer=Peer("tcp", "2001:db8::7", 1)) \
        == Authenticated(SAKURA, SAKURA)
    clock.now += 3601
    attack_account(authenticator, 3)  # under attack again
    assert answer(authenticator, peer=Peer("tcp", "2001:db8::7", 1)) \
        == Rejected(403, "Forbidden")


# ---- memory under a spoofed-source flood ----------------------------------------------------


def test_tables_stay_bounded_and_the_oldest_goes_first() -> None:
    limits = FailureLimits(SecurityConfig(source_failures=SourceFailuresConfig(
        max_failures=1, window_seconds=60, ban_seconds=900)), max_sources=100, max_bans=50)
    for index in range(10_000):
        limits.source_failed(f"10.{index >> 16}.{(index >> 8) & 255}.{index & 255}", 0.0)
    assert limits.tracked == (100, 0)
    for index in range(200):  # two failures each: banned
        host = f"192.0.{index >> 8}.{index & 255}"
        limits.source_failed(host, 1.0)
        assert limits.source_failed(host, 1.0) == 2
    assert limits.tracked[1] == 50
    assert limits.banned("192.0.0.199", 2.0) and not limits.banned("192.0.0.0", 2.0)
    for index in range(100):
        limits.succeeded("09012345678", f"10.0.0.{index}", 0.0)
    assert limits.known("09012345678", "10.0.0.99", 0.0)
    assert not limits.known("09012345678", "10.0.0.0", 0.0)


# ---- the log lines --------------------------------------------------------------------------


def test_log_lines_have_the_documented_format_and_no_secret(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    authenticator = make_authenticator(clock)
    answer(authenticator)
    challenge = authenticator.authenticate(request(), ATTACKER, proxy=False,
                                           expected_number=SAKURA)
    assert isinstance(challenge, Rejected)
    for nc in range(1, 13):  # the eleventh bans the address, the twelfth is refused unread
        answer(authenticator, password="guess", peer=ATTACKER, challenge=challenge, nc=nc)
    for _ in range(10):  # 21 failures for the account: under attack
        answer(authenticator, password="guess", peer=Peer("tcp", "2001:db8::1", 40000))
    answer(authenticator, password="guess", peer=Peer("tcp", "2001:db8::2", 40000))
    lines = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records]
    assert lines[0] == (f"INFO softswitch.security: auth-ok source=udp:198.51.100.7:5062 "
                        f"user={SAKURA} number={SAKURA} method=REGISTER")
    failed = (f"INFO softswitch.security: auth-failed source=udp:203.0.113.5:5060 "
              f"user={SAKURA} method=REGISTER reason=")
    assert lines[1:12] == [failed + "wrong-password"] * 11
    assert lines[12:14] == [
        "WARNING softswitch.security: source-banned source=udp:203.0.113.5:5060 failures=11 "
        "ban_seconds=900",
        failed + "source-banned"]
    assert lines[-3:] == [
        "INFO softswitch.security: auth-failed source=tcp:[2001:db8::1]:40000 "
        f"user={SAKURA} method=REGISTER reason=wrong-password",
        f"WARNING softswitch.security: account-under-attack number={SAKURA} failures=21",
        "INFO softswitch.security: auth-failed source=tcp:[2001:db8::2]:40000 "
        f"user={SAKURA} method=REGISTER reason=account-under-attack"]
    assert len(lines) == 1 + 11 + 2 + 10 + 1 + 1
    text = "\n".join(lines)
    for secret in ("pw-sakura", "guess", ha1("MD5", SAKURA, REALM, "pw-sakura"), "response"):
        assert secret not in text


def test_attacker_text_is_sanitised_in_log_lines(clock: Clock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    authenticator = make_authenticator(clock)
    answer(authenticator, username='x reason=ok\\"é' + "a" * 100, password="x")
    [record] = caplog.records
    assert record.getMessage() == (
        'auth-failed source=udp:198.51.100.7:5062 user="x reason=ok???' + "a" * 50 + '" '
        "method=REGISTER reason=unknown-user")


@pytest.mark.parametrize(("text", "shown"), [
    ("09012345678", "09012345678"), ("", '""'), ("a b", '"a b"'), ("\r\nINFO x", '"??INFO x"'),
    ("a" * 70, "a" * 64), ('q"\\', "q??"),
])
def test_log_value(text: str, shown: str) -> None:
    assert log_value(text) == shown


def test_credentials_never_show_their_ha1s() -> None:
    c = credentials()[SAKURA]
    assert c.ha1_md5 not in repr(c) and c.ha1_sha256 not in repr(c)
    assert dataclasses.fields(c)[0].name == "username"
