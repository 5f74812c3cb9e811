"""Calls between subscribers through a running softswitch, with real phones (issue 9).

PJSUA2 and Linphone phones register to `softswitch run` on the test config (shipped defaults)
and call each other; SIPp plays callee phones that count every INVITE they get, and callers
whose call must be refused. The operator CLI sets the services the calls meet (blocklist,
voicemail, forwarding), as an operator would, and `softswitch show --json` checks the outcome.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from softswitch.media.wav import read_g711_wav

from .peers.linphone import LinphoneConsole, write_linphonerc
from .peers.sipp import SippPhone, register_contact, run_caller, write_callers_csv
from .peers.softphone import Softphone, loudest_tone, packets
from .support import DOMAIN, ServerProcess, SipClient, status_of

needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")
needs_linphonec = pytest.mark.skipif(shutil.which("linphonec") is None,
                                     reason="linphonec not installed (Debian package linphone-cli)")
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")

PASSWORDS = {"09011110001": "pw-one", "09011110002": "pw-two", "08022220003": "pw-three"}
A, B, C = "09011110001", "09011110002", "08022220003"
PACKETS = 25


def cli(server: ServerProcess, *args: str) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def records(server: ServerProcess, timeout: float = 5.0) -> list[dict[str, object]]:
    """The call records the server wrote to calls.cdr_file (var/cdr.jsonl by default)."""
    path = server.directory / "var" / "cdr.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_record(server: ServerProcess, count: int, timeout: float = 10.0
                    ) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = records(server, 0.1)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} call records expected: {records(server, 0)}")


@pytest.fixture
def phones(tmp_path: Path, server: ServerProcess) -> Iterator[Callable[..., Softphone]]:
    """PJSUA2 phones registered (digest) to softswitch as the given subscriber."""
    made: list[Softphone] = []

    def make(name: str, number: str, **options: object) -> Softphone:
        phone = Softphone(tmp_path, name, number, server=server.address,  # type: ignore[arg-type]
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


def callers(tmp_path: Path, *numbers: str) -> Path:
    return write_callers_csv(tmp_path / f"callers-{'-'.join(numbers)}.csv",
                             [(n, PASSWORDS[n]) for n in numbers], DOMAIN)


# ---- a call between two phones -------------------------------------------------------------------
@needs_pjsua2
def test_a_calls_b_b_answers_media_flows_phone_to_phone_and_either_hangs_up(
        server: ServerProcess, phones: Callable[..., Softphone]) -> None:
    alice = phones("alice", A, display="Yamada Taro")
    bob = phones("bob", B)
    for hangs_up in ("callee", "caller"):
        outgoing = alice.call(f"sip:{B}@{server.address}")  # challenged (407) on the way
        incoming = bob.expect("incoming")
        assert incoming["from_user"] == A  # the callee sees the caller's number
        callee = int(str(incoming["call"]))
        alice.expect("state", call=outgoing, state="CONFIRMED")
        alice_media = alice.expect("media", call=outgoing, status="active")
        bob_media = bob.expect("media", call=callee, status="active")
        assert alice_media["remote_rtp"] == bob_media["local_rtp"]  # not through us
        assert bob_media["remote_rtp"] == alice_media["local_rtp"]
        bob.wait_for_packets(callee, rx=PACKETS, tx=PACKETS)
        alice.wait_for_packets(outgoing, rx=PACKETS, tx=PACKETS)
        if hangs_up == "callee":
            bob.send(f"hangup {callee}")
            assert alice.expect("disconnected", call=outgoing)["code"] == 200
            bob.expect("disconnected", call=callee)
        else:
            alice.send(f"hangup {outgoing}")
            ended = bob.expect("disconnected", call=callee)
            assert packets(ended, "rx") >= PACKETS
            alice.expect("disconnected", call=outgoing)
    found = wait_for_record(server, 2)
    assert [(r["caller"], r["callee"], r["outcome"]) for r in found] == [(A, B, "answered")] * 2
    assert all(float(str(r["duration"])) > 0 for r in found)
    assert server.show(B)["last_caller"] == A


@needs_pjsua2
def test_hold_resume_and_digits_are_relayed_between_the_legs(
        server: ServerProcess, phones: Callable[..., Softphone]) -> None:
    """re-INVITE (hold, resume) from the caller reaches the callee through the other dialog,
    and its answer comes back; RFC 2833 digits flow phone to phone."""
    alice = phones("alice", A)
    bob = phones("bob", B)
    outgoing = alice.call(f"sip:{B}@{server.address}")
    incoming = int(str(bob.expect("incoming")["call"]))
    alice.expect("state", call=outgoing, state="CONFIRMED")
    bob.wait_for_packets(incoming, rx=PACKETS, tx=PACKETS)
    alice.send(f"dtmf 12# {outgoing}")
    assert [str(bob.expect("dtmf", call=incoming)["digit"]) for _ in range(3)] == [
        "1", "2", "#"]

    alice.send(f"hold {outgoing}")
    alice.expect("media", call=outgoing, status="local_hold", dir="sendonly")
    bob.expect("media", call=incoming, status="remote_hold", dir="recvonly")
    on_hold = bob.stats(incoming)
    alice.wait_for_packets(outgoing, tx=packets(alice.stats(outgoing), "tx") + PACKETS)
    assert packets(bob.stats(incoming), "tx") == packets(on_hold, "tx")  # bob is silent

    alice.send(f"resume {outgoing}")
    alice.expect("media", call=outgoing, status="active", dir="sendrecv")
    bob.expect("media", call=incoming, status="active", dir="sendrecv")
    bob.wait_for_packets(incoming, tx=packets(on_hold, "tx") + PACKETS)
    bob.send(f"hold {incoming}")  # and from the callee's side
    alice.expect("media", call=outgoing, status="remote_hold")
    alice.send(f"hangup {outgoing}")
    bob.expect("disconnected", call=incoming)


@needs_pjsua2
@needs_linphonec
def test_pjsua2_calls_linphonec(tmp_path: Path, server: ServerProcess,
                                phones: Callable[..., Softphone]) -> None:
    home = tmp_path / "linphone-home"
    home.mkdir()
    linphone = LinphoneConsole(write_linphonerc(home, server.port, B, PASSWORDS[B], DOMAIN),
                               auto_answer=True)
    try:
        linphone.wait_registered(timeout=20)
        alice = phones("alice", A)
        outgoing = alice.call(f"sip:{B}@{server.address}")
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


# ---- screening before ringing --------------------------------------------------------------------
@needs_sipp
def test_a_blocked_caller_hears_the_announcement_and_the_phone_gets_no_invite(
        tmp_path: Path, server: ServerProcess, silent_pcap: Path) -> None:
    phone = SippPhone(tmp_path, "answer")
    try:
        assert register_contact(server.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        cli(server, "blocklist", "add", B, A)
        blocked = callers(tmp_path, A)
        with_sdp = run_caller("uac_auth_rejected.xml", server.port, B, blocked, tmp_path,
                              {"sdp": "offer"}, auth_uri=f"{B}@{server.address}")
        assert with_sdp.returncode == 0, with_sdp.failure("not refused")
        assert "EARLY=183" in with_sdp.log and with_sdp.finals() == [603]
        without = run_caller("uac_auth_rejected.xml", server.port, B, blocked, tmp_path,
                             {"sdp": "none"}, auth_uri=f"{B}@{server.address}")
        assert without.returncode == 0 and without.finals() == [603], without.failure("?")
        assert "Reason: SIP;cause=603" in without.messages
        assert phone.invites() == []  # the phone never rang

        cli(server, "blocklist", "remove", B, A)
        allowed = run_caller("uac_auth_call.xml", server.port, B, blocked, tmp_path,
                             {"pcap": str(silent_pcap)}, duration_ms=200,
                             auth_uri=f"{B}@{server.address}")
        assert allowed.returncode == 0, allowed.failure("not answered")
        [invite] = phone.invites()
        assert f"<sip:{A}@{DOMAIN}>" in invite.split(" FROM=")[1]  # the caller's number
        phone.wait_for("BYE_RECEIVED")
    finally:
        phone.stop()
    outcomes = [r["outcome"] for r in wait_for_record(server, 3)]
    assert outcomes == ["blocked", "blocked", "answered"]


@needs_pjsua2
def test_the_announcement_is_what_a_blocked_caller_hears(
        tmp_path: Path, server: ServerProcess, phones: Callable[..., Softphone]) -> None:
    cli(server, "blocklist", "add", B, A)
    alice = phones("alice", A, record=True)
    call = alice.call(f"sip:{B}@{server.address}")
    alice.expect("state", call=call, state="EARLY", code=183)
    ended = alice.expect("disconnected", call=call, timeout=15)
    assert ended["code"] == 603
    assert packets(ended, "rx") > 100  # the whole announcement, about 4 s of it


# ---- ringing, forking, and how it ends -----------------------------------------------------------
@needs_sipp
def test_callee_on_two_phones_both_ring_the_answer_cancels_the_other(
        tmp_path: Path, server: ServerProcess, silent_pcap: Path) -> None:
    answering = SippPhone(tmp_path, "answer", name="answering")
    ringing = SippPhone(tmp_path, "ring", name="ringing")
    try:
        for phone in (answering, ringing):
            assert register_contact(server.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                    tmp_path).returncode == 0
        call = run_caller("uac_auth_call.xml", server.port, B, callers(tmp_path, A), tmp_path,
                          {"pcap": str(silent_pcap)}, duration_ms=200,
                          auth_uri=f"{B}@{server.address}")
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
        tmp_path: Path, server: ServerProcess, silent_pcap: Path, mode: str) -> None:
    cli(server, "voicemail", B, "--off")  # else busy goes to voicemail
    phone = SippPhone(tmp_path, mode, talk_ms=300)
    try:
        assert register_contact(server.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        caller = callers(tmp_path, A)
        if mode == "486":
            call = run_caller("uac_auth_rejected.xml", server.port, B, caller, tmp_path,
                              {"sdp": "offer"}, auth_uri=f"{B}@{server.address}")
            assert call.returncode == 0 and call.finals() == [486], call.failure("not busy")
        else:
            call = run_caller("uac_auth_call.xml", server.port, B, caller, tmp_path,
                              {"pcap": str(silent_pcap)}, duration_ms=5000,
                              auth_uri=f"{B}@{server.address}")
            assert call.returncode == 0, call.failure("failed")
            assert "ENDED_BY=server" in call.log  # the callee's BYE came through
            phone.wait_for("BYE_SENT")
        assert len(phone.invites()) == 1
    finally:
        phone.stop()
    [record] = wait_for_record(server, 1)
    assert record["outcome"] == ("busy" if mode == "486" else "answered")


@needs_sipp
@needs_pjsua2
def test_caller_cancels_before_the_answer(
        tmp_path: Path, server: ServerProcess, phones: Callable[..., Softphone]) -> None:
    phone = SippPhone(tmp_path, "ring")
    try:
        assert register_contact(server.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        alice = phones("alice", A)
        call = alice.call(f"sip:{B}@{server.address}")
        alice.expect("state", call=call, state="EARLY", code=180)
        alice.send(f"hangup {call}")
        assert alice.expect("disconnected", call=call)["code"] == 487
        phone.wait_for("CANCEL_RECEIVED")
    finally:
        phone.stop()
    [record] = wait_for_record(server, 1)
    assert record["outcome"] == "cancelled"


# ---- voicemail --------------------------------------------------------------------------------
@needs_pjsua2
def test_no_answer_within_the_ring_time_reaches_voicemail_and_the_message_is_kept(
        tmp_path: Path, server: ServerProcess, phones: Callable[..., Softphone]) -> None:
    cli(server, "voicemail", B, "--on", "--ring-time", "2")
    bob = phones("bob", B, incoming=180)  # rings, never answers
    alice = phones("alice", A, tone=1300)
    call = alice.call(f"sip:{B}@{server.address}")
    bob.expect("incoming")
    alice.expect("state", call=call, state="EARLY", code=180)
    alice.expect("state", call=call, state="CONFIRMED", timeout=10)  # voicemail answers
    bob.expect("disconnected")  # its ringing was CANCELed
    time.sleep(9)  # the greeting and the tone, then about 3 s of message
    alice.send(f"hangup {call}")
    alice.expect("disconnected", call=call)
    deadline = time.monotonic() + 10
    while not (voicemail := server.show(B)["voicemail"])["messages"]:  # type: ignore[index]
        assert time.monotonic() < deadline, voicemail
        time.sleep(0.2)
    assert voicemail["new"] == 1  # type: ignore[index]
    [message] = voicemail["messages"]  # type: ignore[index]
    assert message["caller"] == A and message["new"] is True and message["duration"] > 1
    [stored] = (server.directory / "var" / "voicemail" / B).glob("*.wav")
    codec, audio = read_g711_wav(stored)
    samples = codec.to_pcm16(audio)
    heard = wav_samples_from_pcm(samples)
    assert loudest_tone(heard, (440, 1300, 2000)) == 1300  # what A sent
    [record] = wait_for_record(server, 1)
    assert record["outcome"] == "voicemail"


def wav_samples_from_pcm(pcm16: bytes) -> list[int]:
    return [int.from_bytes(pcm16[i:i + 2], "little", signed=True)
            for i in range(0, len(pcm16), 2)]


# ---- forwarding ----------------------------------------------------------------------------------
@needs_sipp
def test_immediate_forwarding_rings_the_destination_with_history_info(
        tmp_path: Path, server: ServerProcess, silent_pcap: Path) -> None:
    cli(server, "forwarding", B, "--to", C, "--mode", "immediate")
    at_b = SippPhone(tmp_path, "answer", name="at-b")
    at_c = SippPhone(tmp_path, "answer", name="at-c")
    try:
        for number, phone in ((B, at_b), (C, at_c)):
            assert register_contact(server.port, number, PASSWORDS[number], DOMAIN,
                                    phone.port, tmp_path).returncode == 0
        call = run_caller("uac_auth_call.xml", server.port, B, callers(tmp_path, A), tmp_path,
                          {"pcap": str(silent_pcap)}, duration_ms=200,
                          auth_uri=f"{B}@{server.address}")
        assert call.returncode == 0, call.failure("not answered")
        assert at_b.invites() == [] and len(at_c.invites()) == 1
        invite = at_c.messages_path.read_text()
        assert "History-Info: " in invite and "Diversion: " in invite
        assert f"<sip:{B}@{DOMAIN}>;reason=unconditional" in invite
    finally:
        at_b.stop()
        at_c.stop()
    [record] = wait_for_record(server, 1)
    assert record["outcome"] == "forwarded"


@needs_pjsua2
def test_forwarding_on_no_answer_after_the_ring_time(
        tmp_path: Path, server: ServerProcess, phones: Callable[..., Softphone]) -> None:
    cli(server, "forwarding", B, "--to", C, "--mode", "no-answer")
    cli(server, "voicemail", B, "--on", "--ring-time", "1")
    bob = phones("bob", B, incoming=180)
    carol = phones("carol", C)
    alice = phones("alice", A)
    call = alice.call(f"sip:{B}@{server.address}")
    bob.expect("incoming")
    incoming = carol.expect("incoming", timeout=10)
    assert incoming["from_user"] == A
    alice.expect("state", call=call, state="CONFIRMED", timeout=10)
    alice.send(f"hangup {call}")
    alice.expect("disconnected", call=call)


@needs_sipp
def test_a_forwarding_loop_is_stopped(tmp_path: Path, server: ServerProcess) -> None:
    cli(server, "forwarding", B, "--to", C, "--mode", "immediate")
    cli(server, "forwarding", C, "--to", B, "--mode", "immediate")
    call = run_caller("uac_auth_rejected.xml", server.port, B, callers(tmp_path, A), tmp_path,
                      {"sdp": "offer"}, auth_uri=f"{B}@{server.address}")
    assert call.returncode == 0 and call.finals() == [482], call.failure("not stopped")


# ---- who may call -----------------------------------------------------------------------------
@needs_sipp
def test_an_unauthenticated_caller_reaches_only_the_public_numbers(
        tmp_path: Path, server: ServerProcess, silent_pcap: Path) -> None:
    nobody = tmp_path / "nobody.csv"
    nobody.write_text(f"SEQUENTIAL\n0312345678;[authentication];{DOMAIN}\n")
    for public in ("1999", "1400"):
        call = run_caller("uac_auth_call.xml", server.port, public, nobody, tmp_path,
                          {"pcap": str(silent_pcap)}, duration_ms=300)
        assert call.returncode == 0, call.failure(f"{public} not answered")
        assert "ANSWERED=200 CSEQ=1" in call.log  # no challenge
    for private in (B, "1411"):
        call = run_caller("uac_auth_rejected.xml", server.port, private, nobody, tmp_path,
                          {"sdp": "offer"})
        assert "SIP/2.0 407 Proxy Authentication Required" in call.messages, call.failure(
            "not challenged")
        assert call.finals() == [403]  # SIPp answered with no credentials to give


@needs_sipp
def test_a_from_that_is_not_the_authenticated_subscriber_gets_403(
        tmp_path: Path, server: ServerProcess) -> None:
    impostor = tmp_path / "impostor.csv"  # From says A, the credentials are B's
    impostor.write_text(f"SEQUENTIAL\n{A};[authentication username={B} "
                        f"password={PASSWORDS[B]}];{DOMAIN}\n")
    call = run_caller("uac_auth_rejected.xml", server.port, C, impostor, tmp_path,
                      {"sdp": "none"}, auth_uri=f"{C}@{server.address}")
    assert call.returncode == 0 and call.finals() == [403], call.failure("not refused")


# ---- a trusted peer, and numbers outside our subscribers ----------------------------------------
def trunk_invite(server: ServerProcess, client: SipClient, callee: str, *, asserted: str,
                 privacy: str = "") -> bytes:
    host = f"127.0.0.2:{client.local_port}"
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 0\r\n")
    return (f"INVITE sip:{callee}@{server.address} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host};branch=z9hG4bK-trunk-{callee}\r\n"
            f"From: <sip:anyone@carrier.example>;tag=trunk\r\nTo: <sip:{callee}@{DOMAIN}>\r\n"
            f"Call-ID: trunk-{callee}@carrier.example\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:trunk@{host}>\r\nMax-Forwards: 70\r\n"
            f"P-Asserted-Identity: {asserted}\r\n{privacy}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


@needs_sipp
def test_a_trusted_peer_asserts_the_caller_without_a_challenge(tmp_path: Path) -> None:
    """An interconnect in sip.trusted_peers (the setting under test) is not challenged; its
    P-Asserted-Identity, normalised to national format, is the caller the callee sees and the
    blocklist is checked against."""
    server = ServerProcess(tmp_path, sip_overrides={"trusted_peers": ["127.0.0.2"]}).start()
    phone = SippPhone(tmp_path, "ring")
    client = SipClient(server.port, source="127.0.0.2")
    try:
        assert register_contact(server.port, B, PASSWORDS[B], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        client.send(trunk_invite(server, client, B, asserted="<tel:+81-90-1111-0001>"))
        [invite] = phone.wait_for("INVITE_RECEIVED")
        assert f"<sip:{A}@{DOMAIN}>" in invite.split(" FROM=")[1]
        cli(server, "blocklist", "add", B, A)
        answers = []
        client.send(trunk_invite(server, client, B, asserted="<sip:+819011110001@x;user=phone>")
                    .replace(b"trunk-09011110002", b"again-09011110002"))
        while (message := client.receive(timeout=5)) is not None:
            if b"Call-ID: again-" not in message:  # the first call, still ringing
                continue
            answers.append(status_of(message))
            if answers[-1] >= 200:
                break
        assert 407 not in answers and answers[-1] == 603  # screened, no challenge
        assert len(phone.invites()) == 1  # the blocked call never rang it
    finally:
        client.close()
        phone.stop()
        server.stop()


def _header(message: bytes, name: bytes) -> bytes:
    return next(line for line in message.split(b"\r\n")
                if line.lower().startswith(name.lower() + b":"))


def dial_code_through_the_trunk(server: ServerProcess, client: SipClient, code: str,
                                asserted: str) -> int:
    """A call from the trunk (127.0.0.2) to a dial code; its final status. A refusal is ACKed;
    an answered call is ACKed and ended by the server with a BYE, which is answered."""
    client.send(trunk_invite(server, client, code, asserted=asserted))
    final = 0
    while (message := client.receive(timeout=15)) is not None:
        if message.startswith(b"SIP/2.0 ") and (status := status_of(message) or 0) >= 200:
            final = status
            headers = b"\r\n".join(_header(message, name) for name in
                                    (b"Via", b"From", b"To", b"Call-ID"))
            client.send(b"ACK sip:%s@%s SIP/2.0\r\n%s\r\nCSeq: 1 ACK\r\n"
                        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                        % (code.encode(), server.address.encode(), headers))
            if final >= 300:
                return final
        elif message.startswith(b"BYE "):
            headers = b"\r\n".join(_header(message, name) for name in
                                    (b"Via", b"From", b"To", b"Call-ID", b"CSeq"))
            client.send(b"SIP/2.0 200 OK\r\n%s\r\nContent-Length: 0\r\n\r\n" % headers)
            return final
    raise AssertionError(f"the call to {code} did not end")


@pytest.mark.parametrize(("peers", "final"), [
    ({"trusted_peers": ["127.0.0.2"]}, 404),  # an interconnect: caller ID, no more
    ({"subscriber_peers": ["127.0.0.2"]}, 200),  # a load balancer that authenticated B
])
def test_only_a_peer_that_authenticates_phones_puts_its_caller_on_their_own_line(
        tmp_path: Path, peers: dict[str, object], final: int) -> None:
    """A PSTN caller spoofing B's number through an interconnect must not reach B's dial codes
    (here 1410, voicemail off): refused as a caller who is no subscriber on their own phone.
    Behind a load balancer in sip.subscriber_peers the same call is B's own."""
    server = ServerProcess(tmp_path, sip_overrides=peers).start()
    client = SipClient(server.port, source="127.0.0.2")
    try:
        assert server.show(B)["voicemail"]["enabled"] is True  # type: ignore[index]
        assert dial_code_through_the_trunk(server, client, "1410",
                                           asserted=f"<sip:{B}@{DOMAIN}>") == final
        stopped = final == 200
        assert server.show(B)["voicemail"]["enabled"] is not stopped  # type: ignore[index]
    finally:
        client.close()
        server.stop()


def test_withheld_callers_follow_the_policy(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, sip_overrides={"trusted_peers": ["127.0.0.2"]},
                           sections={"calls": {"anonymous_callers": "reject"}}).start()
    client = SipClient(server.port, source="127.0.0.2")
    try:
        client.send(trunk_invite(server, client, B, asserted="<tel:+819011110001>",
                                 privacy="Privacy: id\r\n"))
        answers: list[int | None] = []
        while not answers or (answers[-1] or 0) < 200:
            answers.append(status_of(client.receive()))
            assert answers[-1] is not None, answers
        assert answers[-1] == 433, answers  # Anonymity Disallowed (RFC 5079)
    finally:
        client.close()
        server.stop()


@needs_sipp
def test_numbers_outside_our_subscribers_go_out_only_by_a_configured_route(
        tmp_path: Path, silent_pcap: Path) -> None:
    gateway = SippPhone(tmp_path, "answer", name="gateway")
    server = ServerProcess(tmp_path, sections={
        "calls": {"outbound_route": f"127.0.0.1:{gateway.port}"}}).start()
    (tmp_path / "plain").mkdir()
    plain = ServerProcess(tmp_path / "plain").start()  # the shipped default: no route
    try:
        refused = run_caller("uac_auth_rejected.xml", plain.port, "0312345678",
                             callers(tmp_path, A), tmp_path, {"sdp": "offer"},
                             auth_uri=f"0312345678@{plain.address}")
        assert refused.finals() == [404], refused.failure("dialled out?")
        call = run_caller("uac_auth_call.xml", server.port, "0312345678", callers(tmp_path, A),
                          tmp_path, {"pcap": str(silent_pcap)}, duration_ms=200,
                          auth_uri=f"0312345678@{server.address}")
        assert call.returncode == 0, call.failure("not routed out")
        [invite] = gateway.invites()
        assert f"RURI=sip:0312345678@127.0.0.1:{gateway.port}" in invite
    finally:
        gateway.stop()
        plain.stop()
        server.stop()
