"""The phones and SIPp scenarios of the call tests, through Kamailio 5.6 in softswitch's place.

scripts/bench/kamailio-calls.cfg (tests/peers/kamailio.py) does on the call path what
softswitch's B2BUA will: digest on REGISTER and INVITE, the caller must be the authenticated
subscriber, a blocklist check before any phone rings, a relay to every registered phone of
the callee (Record-Route, so BYE and re-INVITE follow), 486/487 relayed. So each flow of the
call-routing acceptance is run here with the real peers and checked on both ends; the same
test with `ServerProcess` and the `softswitch blocklist` CLI in Kamailio's place is the B2BUA's
acceptance test. (Kamailio has no media: a blocked caller gets a bare 603, never the
announcement, and the media here flows phone to phone.) Skipped without kamailio.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .peers.kamailio import KAMAILIO, KamailioProxy
from .peers.linphone import LinphoneConsole, write_linphonerc
from .peers.sipp import SippPhone, register_contact, run_caller, write_callers_csv
from .peers.softphone import Softphone, packets

needs_kamailio = pytest.mark.skipif(KAMAILIO is None,
                                    reason="kamailio not installed (Debian package kamailio)")
needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")
needs_linphonec = pytest.mark.skipif(shutil.which("linphonec") is None,
                                     reason="linphonec not installed (Debian package linphone-cli)")
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")
pytestmark = needs_kamailio

DOMAIN = "softswitch.test"
PASSWORDS = {"09011110001": "pw-one", "09011110002": "pw-two", "08022220003": "pw-three"}
A, B, C = "09011110001", "09011110002", "08022220003"
PACKETS = 25


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[KamailioProxy]:
    """Kamailio with the test subscribers; B has blocked C."""
    proxy = KamailioProxy(tmp_path, PASSWORDS, DOMAIN, blocked=[(B, C)]).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def phones(tmp_path: Path, kamailio: KamailioProxy) -> Iterator[Callable[..., Softphone]]:
    """PJSUA2 phones registered (digest) to Kamailio as the given subscriber."""
    made: list[Softphone] = []

    def make(name: str, number: str, **options: object) -> Softphone:
        phone = Softphone(tmp_path, name, number, server=kamailio.address,  # type: ignore[arg-type]
                          password=PASSWORDS[number], domain=DOMAIN, **options)
        made.append(phone)
        phone.registered()
        return phone

    yield make
    for phone in made:
        phone.quit()
    codes = {phone.name: phone.close() for phone in made}
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
def silent_pcap(tmp_path: Path) -> Path:
    path = tmp_path / "silent.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


@needs_pjsua2
def test_pjsua2_phones_call_through_kamailio_and_media_flows_phone_to_phone(
        kamailio: KamailioProxy, phones: Callable[..., Softphone]) -> None:
    alice = phones("alice", A, display="Yamada Taro")
    bob = phones("bob", B)
    outgoing = alice.call(f"sip:{B}@{kamailio.address}")  # challenged (407) on the way
    incoming = bob.expect("incoming")
    assert (incoming["from_user"], incoming["display"]) == (A, "Yamada Taro")
    assert incoming["source"] == kamailio.address  # it came through the proxy
    assert "Record-Route: " in str(incoming["invite"])
    callee = int(str(incoming["call"]))
    alice.expect("state", call=outgoing, state="CONFIRMED")
    alice_media = alice.expect("media", call=outgoing, status="active")
    bob_media = bob.expect("media", call=callee, status="active")
    assert alice_media["remote_rtp"] == bob_media["local_rtp"]  # not through the proxy
    bob.wait_for_packets(callee, rx=PACKETS, tx=PACKETS)

    bob.send(f"hangup {callee}")  # a BYE from the callee, along the Record-Route
    ended = alice.expect("disconnected", call=outgoing)
    assert ended["code"] == 200 and packets(ended, "rx") >= PACKETS
    bob.expect("disconnected", call=callee)


@needs_pjsua2
@needs_linphonec
def test_pjsua2_calls_linphonec_registered_through_kamailio(
        tmp_path: Path, kamailio: KamailioProxy, phones: Callable[..., Softphone]) -> None:
    home = tmp_path / "linphone-home"
    home.mkdir()
    linphone = LinphoneConsole(write_linphonerc(home, kamailio.port, B, PASSWORDS[B], DOMAIN),
                               auto_answer=True)
    try:
        linphone.wait_registered(timeout=20)
        alice = phones("alice", A)
        outgoing = alice.call(f"sip:{B}@{kamailio.address}")
        call, caller = linphone.incoming()
        assert f"sip:{A}@{DOMAIN}" in caller
        alice.expect("state", call=outgoing, state="CONFIRMED")
        alice_media = alice.expect("media", call=outgoing, status="active")
        alice.wait_for_packets(outgoing, rx=PACKETS, tx=PACKETS)
        assert linphone.wait_for_audio().remote_rtp == alice_media["local_rtp"]
        alice.send(f"hangup {outgoing}")
        linphone.wait_for(rf"Call {call} with .* ended")
    finally:
        linphone.close()


@needs_sipp
def test_blocked_caller_gets_603_and_the_phone_no_invite_an_allowed_one_rings_it(
        tmp_path: Path, kamailio: KamailioProxy, silent_pcap: Path) -> None:
    phone = SippPhone(tmp_path, "answer")
    try:
        registered = register_contact(kamailio.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                      tmp_path)
        assert registered.returncode == 0, registered.errors
        blocked = write_callers_csv(tmp_path / "blocked.csv", [(C, PASSWORDS[C])], DOMAIN)
        for sdp in ("none", "offer"):
            call = run_caller("uac_auth_rejected.xml", kamailio.port, B, blocked, tmp_path,
                              {"sdp": sdp})
            assert call.returncode == 0, call.failure("not refused")
            assert call.finals() == [603]
            assert "FINAL=603 CSEQ=2 " in call.log  # after the 407 challenge
            assert "Reason: SIP;cause=603" in call.messages
        assert phone.invites() == []  # the phone never rang

        allowed = write_callers_csv(tmp_path / "allowed.csv", [(A, PASSWORDS[A])], DOMAIN)
        call = run_caller("uac_auth_call.xml", kamailio.port, B, allowed, tmp_path,
                          {"pcap": str(silent_pcap)}, duration_ms=200)
        assert call.returncode == 0, call.failure("not answered")
        assert "ANSWERED=200 CSEQ=2" in call.log
        [invite] = phone.invites()
        assert f"FROM=<sip:{A}@{DOMAIN}>" in invite
        phone.wait_for("BYE_RECEIVED")  # the BYE followed the Record-Route
    finally:
        phone.stop()


@needs_sipp
def test_callee_on_two_phones_both_ring_the_answer_cancels_the_other(
        tmp_path: Path, kamailio: KamailioProxy, silent_pcap: Path) -> None:
    answering = SippPhone(tmp_path, "answer", name="answering")
    ringing = SippPhone(tmp_path, "ring", name="ringing")
    try:
        for phone in (answering, ringing):
            assert register_contact(kamailio.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                    tmp_path).returncode == 0
        callers = write_callers_csv(tmp_path / "callers.csv", [(A, PASSWORDS[A])], DOMAIN)
        call = run_caller("uac_auth_call.xml", kamailio.port, B, callers, tmp_path,
                          {"pcap": str(silent_pcap)}, duration_ms=200)
        assert call.returncode == 0, call.failure("not answered")
        assert len(answering.invites()) == len(ringing.invites()) == 1  # forked
        ringing.wait_for("CANCEL_RECEIVED")
        answering.wait_for("BYE_RECEIVED")
    finally:
        answering.stop()
        ringing.stop()


@needs_sipp
@pytest.mark.parametrize("mode", ["486", "hangup"])
def test_busy_phone_and_a_bye_from_the_callee_reach_the_caller(
        tmp_path: Path, kamailio: KamailioProxy, silent_pcap: Path, mode: str) -> None:
    phone = SippPhone(tmp_path, mode, talk_ms=300)
    try:
        assert register_contact(kamailio.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        callers = write_callers_csv(tmp_path / "callers.csv", [(A, PASSWORDS[A])], DOMAIN)
        if mode == "486":
            call = run_caller("uac_auth_rejected.xml", kamailio.port, B, callers, tmp_path,
                              {"sdp": "offer"})
            assert call.returncode == 0 and call.finals() == [486], call.failure("not busy")
        else:
            call = run_caller("uac_auth_call.xml", kamailio.port, B, callers, tmp_path,
                              {"pcap": str(silent_pcap)}, duration_ms=5000)
            assert call.returncode == 0, call.failure("failed")
            assert "ENDED_BY=server" in call.log  # the callee's BYE came through
            phone.wait_for("BYE_SENT")
        assert len(phone.invites()) == 1
    finally:
        phone.stop()


@needs_sipp
@needs_pjsua2
def test_caller_cancels_before_the_answer(
        tmp_path: Path, kamailio: KamailioProxy, phones: Callable[..., Softphone]) -> None:
    phone = SippPhone(tmp_path, "ring")
    try:
        assert register_contact(kamailio.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        alice = phones("alice", A)
        call = alice.call(f"sip:{B}@{kamailio.address}")
        alice.expect("state", call=call, state="EARLY", code=180)
        alice.send(f"hangup {call}")
        assert alice.expect("disconnected", call=call)["code"] == 487
        phone.wait_for("CANCEL_RECEIVED")
    finally:
        phone.stop()


@needs_sipp
def test_a_from_that_is_not_the_authenticated_subscriber_gets_403(
        tmp_path: Path, kamailio: KamailioProxy) -> None:
    # From says A, the credentials are B's.
    callers = tmp_path / "impostor.csv"
    callers.write_text(f"SEQUENTIAL\n{A};[authentication username={B} "
                       f"password={PASSWORDS[B]}];{DOMAIN}\n")
    call = run_caller("uac_auth_rejected.xml", kamailio.port, C, callers, tmp_path,
                      {"sdp": "none"})
    assert call.returncode == 0 and call.finals() == [403], call.failure("not refused")
