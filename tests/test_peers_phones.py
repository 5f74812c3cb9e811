"""The test phones themselves, phone to phone over loopback, with no server between them.

The B2BUA tests put softswitch between these same phones; here each phone is checked against
another real one, so that a failure there is the switch's, not the test peer's:
- PJSUA2 (tests/peers/pjsua2_softphone.py, driven through tests/peers/softphone.py) calls,
  rings, answers (at once, on command, or never), rejects (486), cancels, hangs up from either
  side, holds and resumes (re-INVITE), keys RFC 2833 digits, and counts the RTP it sends and
  receives and to whom: the other phone's address, nothing in between.
- Linphone's console client (tests/peers/linphone.py) takes and makes calls with PJSUA2.
- The SIPp scenarios of scripts/sipp/ for callee phones and callers (tests/peers/sipp.py)
  against each other.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .peers.linphone import LinphoneConsole, write_linphonerc
from .peers.sipp import SippCall, SippPhone, run_caller, write_callers_csv
from .peers.softphone import Softphone, loudest_tone, packets, wav_samples

needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")
needs_linphonec = pytest.mark.skipif(shutil.which("linphonec") is None,
                                     reason="linphonec not installed (Debian package linphone-cli)")
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")

PACKETS = 25  # half a second of 20 ms packets: media flows, it is not a one-off


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Callable[..., Softphone]]:
    """Make PJSUA2 phones; each is quit at the end and must have exited cleanly."""
    made: list[Softphone] = []

    def make(name: str, user: str, **options: object) -> Softphone:
        phone = Softphone(tmp_path, name, user, **options)  # type: ignore[arg-type]
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.quit()  # all at once: each takes a second to tear down
    codes = {phone.name: phone.close() for phone in made}
    assert all(code == 0 for code in codes.values()), f"a phone did not exit cleanly: {codes}"


def answered_call(caller: Softphone, callee: Softphone) -> tuple[int, int]:
    """`caller` dials `callee` directly; both see the call confirmed with media. The call
    numbers in the caller's and the callee's reports."""
    outgoing = caller.call(callee.uri)
    incoming = int(str(callee.expect("incoming")["call"]))
    caller.expect("state", call=outgoing, state="CONFIRMED")
    callee.expect("state", call=incoming, state="CONFIRMED")
    return outgoing, incoming


# ---- PJSUA2 ---------------------------------------------------------------------------------
@needs_pjsua2
@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_pjsua2_phones_call_each_other_and_media_flows_phone_to_phone(
        phones: Callable[..., Softphone], hangs_up: str) -> None:
    alice = phones("alice", "09011110001", display="Yamada Taro", tone=440)
    bob = phones("bob", "09011110002", display="Suzuki Hanako", tone=1000, record=True)

    outgoing = alice.call(bob.uri)
    incoming = bob.expect("incoming")
    assert (incoming["from_user"], incoming["display"]) == ("09011110001", "Yamada Taro")
    assert incoming["request_uri"] == bob.uri
    assert str(incoming["invite"]).startswith(f"INVITE {bob.uri} SIP/2.0\r\n")
    callee_call = int(str(incoming["call"]))
    alice.expect("state", call=outgoing, state="EARLY", code=180)  # it rang first
    alice.expect("state", call=outgoing, state="CONFIRMED", code=200)
    bob.expect("state", call=callee_call, state="CONFIRMED")

    # Each phone sends to the other's RTP address: media flows phone to phone.
    alice_media = alice.expect("media", call=outgoing, status="active")
    bob_media = bob.expect("media", call=callee_call, status="active")
    assert alice_media["remote_rtp"] == bob_media["local_rtp"]
    assert bob_media["remote_rtp"] == alice_media["local_rtp"]
    assert alice_media["codec"] == bob_media["codec"] == "PCMU"
    alice.wait_for_packets(outgoing, rx=PACKETS, tx=PACKETS)
    bob.wait_for_packets(callee_call, rx=PACKETS, tx=PACKETS)

    (alice if hangs_up == "caller" else bob).send("hangup")
    alice_end = alice.expect("disconnected", call=outgoing)
    bob_end = bob.expect("disconnected", call=callee_call)
    assert alice_end["code"] == bob_end["code"] == 200
    for end, media in ((alice_end, alice_media), (bob_end, bob_media)):
        assert packets(end, "rx") >= PACKETS and packets(end, "tx") >= PACKETS
        assert end["remote_rtp"] == media["remote_rtp"]
    heard = wav_samples(Path(str(bob_end["recording"])))
    assert loudest_tone(heard, (440, 1000)) == 440  # alice's voice


@needs_pjsua2
def test_pjsua2_hold_and_resume_by_reinvite_and_rfc2833_digits(
        phones: Callable[..., Softphone]) -> None:
    alice = phones("alice", "09011110001")
    bob = phones("bob", "09011110002")
    outgoing, incoming = answered_call(alice, bob)
    bob.wait_for_packets(incoming, rx=PACKETS, tx=PACKETS)

    alice.send(f"dtmf 12#9 {outgoing}")
    alice.expect("dtmf_sent", call=outgoing, digits="12#9")
    heard = [str(bob.expect("dtmf", call=incoming)["digit"]) for _ in range(4)]
    assert heard == ["1", "2", "#", "9"]

    alice.send(f"hold {outgoing}")
    alice.expect("media", call=outgoing, status="local_hold", dir="sendonly")
    bob.expect("media", call=incoming, status="remote_hold", dir="recvonly")
    on_hold = bob.stats(incoming)
    alice.wait_for_packets(outgoing, tx=packets(alice.stats(outgoing), "tx") + PACKETS)
    still = bob.stats(incoming)  # alice sent PACKETS more meanwhile; bob sent nothing
    assert packets(still, "tx") == packets(on_hold, "tx")
    assert packets(still, "rx") > packets(on_hold, "rx")

    alice.send(f"resume {outgoing}")
    alice.expect("media", call=outgoing, status="active", dir="sendrecv")
    bob.expect("media", call=incoming, status="active", dir="sendrecv")
    bob.wait_for_packets(incoming, tx=packets(still, "tx") + PACKETS)

    bob.send(f"hangup {incoming}")
    assert alice.expect("disconnected", call=outgoing)["code"] == 200
    bob.expect("disconnected", call=incoming)


@needs_pjsua2
def test_pjsua2_busy_phone_rejects_with_486(phones: Callable[..., Softphone]) -> None:
    alice = phones("alice", "09011110001")
    bob = phones("bob", "09011110002", incoming=486)
    outgoing = alice.call(bob.uri)
    incoming = int(str(bob.expect("incoming")["call"]))
    ended = alice.expect("disconnected", call=outgoing)
    assert ended["code"] == 486 and ended["rx_packets"] == 0, ended
    assert bob.expect("disconnected", call=incoming)["code"] == 486


@needs_pjsua2
def test_pjsua2_rings_until_cancelled_or_answered_on_command(
        phones: Callable[..., Softphone]) -> None:
    alice = phones("alice", "09011110001")
    bob = phones("bob", "09011110002", incoming=180)  # rings; answers only when told

    first = alice.call(bob.uri)
    ringing = int(str(bob.expect("incoming")["call"]))
    alice.expect("state", call=first, state="EARLY", code=180)
    alice.send(f"hangup {first}")  # CANCEL
    assert alice.expect("disconnected", call=first)["code"] == 487
    assert bob.expect("disconnected", call=ringing)["code"] == 487

    second = alice.call(bob.uri)
    ringing = int(str(bob.expect("incoming")["call"]))
    alice.expect("state", call=second, state="EARLY", code=180)
    bob.send(f"answer 200 {ringing}")
    alice.expect("state", call=second, state="CONFIRMED")
    alice.wait_for_packets(second, rx=PACKETS, tx=PACKETS)
    alice.send(f"hangup {second}")
    assert bob.expect("disconnected", call=ringing)["code"] == 200


# ---- Linphone's console client --------------------------------------------------------------
@pytest.fixture
def linphone_home(tmp_path: Path) -> Path:
    home = tmp_path / "linphone-home"
    home.mkdir()
    return home


@needs_linphonec
@needs_pjsua2
def test_linphonec_answers_a_pjsua2_call_and_audio_flows_phone_to_phone(
        phones: Callable[..., Softphone], linphone_home: Path) -> None:
    config = write_linphonerc(linphone_home, None, "09011110002", display="Suzuki Hanako",
                              tone=800)
    linphone = LinphoneConsole(config, auto_answer=True, record=linphone_home / "heard.wav")
    try:
        alice = phones("alice", "09011110001", display="Yamada Taro", tone=440)
        outgoing = alice.call(config.uri)
        call, caller = linphone.incoming()
        assert caller == '"Yamada Taro" <sip:09011110001@127.0.0.1>'
        linphone.wait_for(rf"Call {call} with .* connected\.")
        alice.expect("state", call=outgoing, state="CONFIRMED")
        alice_media = alice.expect("media", call=outgoing, status="active")
        alice.wait_for_packets(outgoing, rx=PACKETS, tx=PACKETS)
        assert linphone.call_states() == {call: "StreamsRunning"}
        running = linphone.wait_for_audio()
        assert running.remote_rtp == alice_media["local_rtp"]  # phone to phone

        alice.send(f"dtmf 1# {outgoing}")
        linphone.wait_for(r"Receiving tone 1 from")
        linphone.wait_for(r"Receiving tone # from")
        alice.send(f"hangup {outgoing}")
        linphone.wait_for(rf"Call {call} with .* ended")
        ended = alice.expect("disconnected", call=outgoing)
        assert packets(ended, "rx") >= PACKETS, ended  # linphonec's tone reached alice
        stopped = linphone.media()
        assert stopped.sent >= PACKETS and stopped.received >= PACKETS, stopped
        assert linphone.call_states() == {}
    finally:
        linphone.close()
    assert loudest_tone(wav_samples(linphone_home / "heard.wav"), (440, 800)) == 440


@needs_linphonec
@needs_pjsua2
def test_linphonec_calls_a_busy_then_an_answering_pjsua2_phone_and_answers_on_command(
        phones: Callable[..., Softphone], linphone_home: Path) -> None:
    config = write_linphonerc(linphone_home, None, "09011110002", display="Suzuki Hanako")
    linphone = LinphoneConsole(config)  # answers only when told
    try:
        alice = phones("alice", "09011110001", incoming=180)

        busy = linphone.call(alice.uri)
        incoming = alice.expect("incoming")
        assert (incoming["from_user"], incoming["display"]) == ("09011110002", "Suzuki Hanako")
        linphone.wait_for(rf"Call {busy} to .* ringing\.")
        alice.send(f"answer 486 {incoming['call']}")
        linphone.wait_for(rf"Call {busy} with .* error\.")
        assert linphone.last_final_status() == 486

        answered = linphone.call(alice.uri)
        incoming = alice.expect("incoming")
        alice.send(f"answer 200 {incoming['call']}")
        linphone.wait_for(rf"Call {answered} with .* connected\.")
        alice.wait_for_packets(int(str(incoming["call"])), rx=PACKETS, tx=PACKETS)
        linphone.terminate(answered)
        assert alice.expect("disconnected", call=incoming["call"])["code"] == 200

        outgoing = alice.call(config.uri)
        ringing, _ = linphone.incoming()
        alice.expect("state", call=outgoing, state="EARLY", code=180)
        assert linphone.call_states() == {ringing: "IncomingReceived"}
        linphone.answer(ringing)
        alice.expect("state", call=outgoing, state="CONFIRMED")
        alice.wait_for_packets(outgoing, rx=PACKETS, tx=PACKETS)
        alice.send(f"hangup {outgoing}")
        linphone.wait_for(rf"Call {ringing} with .* ended")
    finally:
        linphone.close()


# ---- SIPp: the callee phone and the callers of scripts/sipp/ --------------------------------
CALLER = ("09011110001", "pw-one")


@pytest.fixture
def silent_pcap(tmp_path: Path) -> Path:
    """A pcap with no packets: uac_auth_call.xml plays it, so the SIPp caller sends no RTP."""
    path = tmp_path / "silent.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


@needs_sipp
@pytest.mark.parametrize("mode", ["answer", "hangup"])
def test_sipp_caller_and_sipp_phone_make_a_call_and_either_hangs_up(
        tmp_path: Path, silent_pcap: Path, mode: str) -> None:
    phone = SippPhone(tmp_path, mode, talk_ms=300, calls=1)
    try:
        callers = write_callers_csv(tmp_path / "callers.csv", [CALLER], "softswitch.test")
        call = run_caller("uac_auth_call.xml", phone.port, "09011110002", callers, tmp_path,
                          {"pcap": str(silent_pcap)}, duration_ms=2000 if mode == "hangup"
                          else 300)
        assert call.returncode == 0, call.failure("the call failed")
        assert "ANSWERED=200 CSEQ=1" in call.log  # no challenge: straight to the phone
        ended_by = "server" if mode == "hangup" else "caller"
        assert f"ENDED_BY={ended_by}" in call.log, call.failure("ended the wrong way")
        [invite] = phone.invites()
        assert f"RURI=sip:09011110002@127.0.0.1:{phone.port} " in invite
        assert "FROM=<sip:09011110001@softswitch.test>;tag=" in invite
        phone.wait_for("BYE_SENT" if mode == "hangup" else "BYE_RECEIVED")
        assert len(call.response_times_ms) == 1  # rtd 1: INVITE to the 180
    finally:
        code = phone.stop()
    assert code == 0, phone.log_lines()


@needs_sipp
@pytest.mark.parametrize(("status", "sdp"), [(486, "offer"), (603, "none"), (480, "none")])
def test_sipp_refused_caller_logs_the_status_of_a_refusing_sipp_phone(
        tmp_path: Path, status: int, sdp: str) -> None:
    phone = SippPhone(tmp_path, str(status), calls=1)
    try:
        callers = write_callers_csv(tmp_path / "callers.csv", [CALLER], "softswitch.test")
        call = run_caller("uac_auth_rejected.xml", phone.port, "09011110002", callers,
                          tmp_path, {"sdp": sdp})
        assert call.returncode == 0, call.failure("not counted as refused")
        assert call.finals() == [status]
        assert "EARLY=183" not in call.log
        phone.wait_for(f"REJECTED={status}")
        [invite] = [message for message in call.messages.split("\n----") if
                    "message sent" in message and "\nINVITE sip:" in message]
        assert ("m=audio " in invite) == (sdp == "offer"), invite
    finally:
        code = phone.stop()
    assert code == 0, phone.log_lines()


@needs_sipp
def test_sipp_answered_caller_is_counted_as_failed_by_the_refused_scenario(
        tmp_path: Path) -> None:
    """uac_auth_rejected.xml must fail when the call is answered: the check can fail."""
    phone = SippPhone(tmp_path, "answer", calls=1)
    try:
        callers = write_callers_csv(tmp_path / "callers.csv", [CALLER], "softswitch.test")
        call = run_caller("uac_auth_rejected.xml", phone.port, "09011110002", callers,
                          tmp_path, {"sdp": "offer"})
        assert call.returncode != 0 and call.finals() == [200], call.failure("not failed")
        phone.wait_for("BYE_RECEIVED")  # and it hung up the answered call
    finally:
        phone.stop()


@needs_sipp
@needs_pjsua2
def test_sipp_refused_caller_hears_early_media_then_603(
        tmp_path: Path, phones: Callable[..., Softphone]) -> None:
    """PJSUA2 plays the switch's part for a blocked caller that offered SDP: 183 with SDP and
    RTP (a tone for the announcement), then 603."""
    switch = phones("switch", "announcer", incoming=183)
    callers = write_callers_csv(tmp_path / "callers.csv", [CALLER], "softswitch.test")
    outcome: list[SippCall] = []
    caller = threading.Thread(target=lambda: outcome.append(run_caller(
        "uac_auth_rejected.xml", switch.sip_port, "09011110002", callers, tmp_path,
        {"sdp": "offer"})))
    caller.start()
    try:
        call = int(str(switch.expect("incoming")["call"]))
        switch.wait_for_packets(call, tx=PACKETS)  # the announcement, as early media
        switch.send(f"answer 603 {call}")
        assert switch.expect("disconnected", call=call)["code"] == 603
    finally:
        caller.join(timeout=30)
    [sipp] = outcome
    assert sipp.returncode == 0, sipp.failure("not counted as refused")
    assert sipp.finals() == [603]
    early = re.search(r"^EARLY=183 CALL=\S+ MS=(\d+)$", sipp.log, re.MULTILINE)
    final = re.search(r"^FINAL=603 CSEQ=1 CALL=\S+ MS=(\d+)$", sipp.log, re.MULTILINE)
    assert early and final, sipp.failure("no EARLY/FINAL lines")
    # the 603 came only after PACKETS packets of 20 ms: the caller heard the early media
    assert int(final.group(1)) - int(early.group(1)) >= (PACKETS - 2) * 20


@needs_sipp
@needs_pjsua2
def test_sipp_phone_takes_a_reinvite_and_rings_until_cancelled(
        tmp_path: Path, phones: Callable[..., Softphone]) -> None:
    alice = phones("alice", "09011110001")
    answering = SippPhone(tmp_path, "answer", name="answering", calls=1)
    ringing = SippPhone(tmp_path, "ring", name="ringing", calls=1)
    try:
        call = alice.call(answering.uri)
        alice.expect("state", call=call, state="CONFIRMED")
        alice.send(f"hold {call}")
        alice.expect("media", call=call, status="local_hold")
        answering.wait_for("REINVITE_RECEIVED")
        alice.send(f"hangup {call}")
        assert alice.expect("disconnected", call=call)["code"] == 200
        answering.wait_for("BYE_RECEIVED")

        call = alice.call(ringing.uri)
        alice.expect("state", call=call, state="EARLY", code=180)
        alice.send(f"hangup {call}")
        assert alice.expect("disconnected", call=call)["code"] == 487
        ringing.wait_for("CANCEL_RECEIVED")
    finally:
        codes = (answering.stop(), ringing.stop())
    assert codes == (0, 0), (answering.log_lines(), ringing.log_lines())
