"""The service menus end to end with real peers and the real Japanese prompts (issue 10
acceptance): `softswitch run` in a child process on the shipped defaults; SIPp callers keying
RFC 4733 events from pcaps (scripts/make_dtmf_pcap.py, "," waits a second), authenticated as
a subscriber for the dial codes or as nobody for the remote-access number; PJSUA2 phones
keying RFC 2833 with `dtmf`. What each path changed is read with `softswitch show --json`,
and the next call to the subscriber is made to see that it behaves accordingly. No PIN keyed
in any of these calls appears in the server's log or its call records.

Every path, key by key and hung up at every step, is walked faster in tests/test_ivr_flows.py
and over sockets in tests/test_flows_calls.py; here is a handful of real calls.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from softswitch.media.prompts import PromptLibrary
from softswitch.media.wav import read_g711_wav

from .peers.sipp import SippCall, SippPhone, register_contact, run_caller, write_callers_csv
from .peers.softphone import Softphone, loudest_tone
from .support import DOMAIN, ServerProcess
from .test_calls import wait_for_record

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")
needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")

ROOT = Path(__file__).resolve().parents[1]
MAKE_PCAP = ROOT / "scripts" / "make_dtmf_pcap.py"
FAIL2BAN_FILTER = ROOT / "config" / "fail2ban" / "filter.d" / "softswitch.conf"
PASSWORDS = {"09011110001": "pw-one", "09011110002": "pw-two", "08022220003": "pw-three"}
A, B, C = "09011110001", "09011110002", "08022220003"
PIN = "1234"  # pin.default
WRONG_PINS = ("7305", "8416", "9527", "6038")
JA = PromptLibrary.load("ja")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The shipped defaults; afterwards no PIN keyed in the test is in its log or records."""
    process = ServerProcess(tmp_path).start()
    yield process
    process.stop()
    written = process.log_text()
    cdr = tmp_path / "var" / "cdr.jsonl"
    written += cdr.read_text() if cdr.exists() else ""
    assert "pin-" in written or "remote-change" in written or "answered" in written
    for pin in (PIN, *WRONG_PINS):
        assert not re.search(rf"(?<![0-9]){pin}(?![0-9])", written), f"PIN {pin} logged"


def pcap(directory: Path, keys: str) -> Path:
    path = directory / f"keys-{abs(hash(keys)):x}.pcap"
    subprocess.run([sys.executable, str(MAKE_PCAP), keys, str(path), "--duration-ms", "60",
                    "--gap-ms", "100"], check=True)
    return path


def key_in(server: ServerProcess, directory: Path, code: str, keys: str, *,
           caller: str | None, seconds: float) -> SippCall:
    """A SIPp call to `code` as subscriber `caller` (None: nobody, unauthenticated) that keys
    `keys` from its answer on and hangs up after `seconds`, unless the server hangs up
    first."""
    if caller is None:
        callers = directory / "nobody.csv"
        callers.write_text(f"SEQUENTIAL\n0312345678;[authentication];{DOMAIN}\n")
        auth_uri = None
    else:
        callers = write_callers_csv(directory / f"caller-{caller}.csv",
                                    [(caller, PASSWORDS[caller])], DOMAIN)
        auth_uri = f"{code}@{server.address}"
    call = run_caller("uac_auth_call.xml", server.port, code, callers, directory,
                      {"pcap": str(pcap(directory, keys))}, duration_ms=int(seconds * 1000),
                      auth_uri=auth_uri, timeout=seconds + 30)
    assert call.returncode == 0, call.failure(f"the call to {code} failed")
    return call


def call_subscriber(server: ServerProcess, directory: Path, caller: str, callee: str,
                    *, refused: bool = False) -> SippCall:
    callers = write_callers_csv(directory / f"caller-{caller}.csv",
                                [(caller, PASSWORDS[caller])], DOMAIN)
    if refused:
        return run_caller("uac_auth_rejected.xml", server.port, callee, callers, directory,
                          {"sdp": "none"}, auth_uri=f"{callee}@{server.address}")
    silent = directory / "silent.pcap"
    silent.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    return run_caller("uac_auth_call.xml", server.port, callee, callers, directory,
                      {"pcap": str(silent)}, duration_ms=1500,
                      auth_uri=f"{callee}@{server.address}")


# ---- the blocklist by dial code, and the next call ---------------------------------------------
@needs_sipp
def test_144_registers_a_keyed_number_whose_next_call_never_rings(
        tmp_path: Path, server: ServerProcess) -> None:
    key_in(server, tmp_path, "144", f"{PIN}#,1{B}#,1", caller=A, seconds=8)
    assert server.show(A)["blocklist"] == [B]
    phone = SippPhone(tmp_path, "answer")
    try:
        assert register_contact(server.port, A, PASSWORDS[A], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        call = call_subscriber(server, tmp_path, B, A, refused=True)
        assert call.finals() == [603], call.failure("not refused")
        assert phone.invites() == []  # rejected before the phone rang
    finally:
        phone.stop()


@needs_sipp
def test_1442_registers_the_last_caller_whose_next_call_never_rings(
        tmp_path: Path, server: ServerProcess) -> None:
    phone = SippPhone(tmp_path, "answer", talk_ms=300)
    try:
        assert register_contact(server.port, A, PASSWORDS[A], DOMAIN, phone.port,
                                tmp_path).returncode == 0
        first = call_subscriber(server, tmp_path, C, A)
        assert first.returncode == 0, first.failure("the first call was not answered")
        assert len(phone.invites()) == 1 and server.show(A)["last_caller"] == C
        done = key_in(server, tmp_path, "1442", f"{PIN}#", caller=A, seconds=20)
        assert "ENDED_BY=server" in done.log  # told, then the server hung up
        assert server.show(A)["blocklist"] == [C]
        again = call_subscriber(server, tmp_path, C, A, refused=True)
        assert again.finals() == [603], again.failure("not refused")
        assert len(phone.invites()) == 1  # the phone never rang again
    finally:
        phone.stop()


# ---- remote control -----------------------------------------------------------------------------
@needs_sipp
def test_remote_control_from_an_unregistered_caller_then_the_next_call(
        tmp_path: Path, server: ServerProcess) -> None:
    for setting in (("voicemail", A, "--off"),
                    ("forwarding", A, "--to", C, "--mode", "immediate")):
        assert server.cli(*setting).returncode == 0
    # Remote control is off until the subscriber turns it on with 1429 3 1 from the own phone.
    key_in(server, tmp_path, "1429", "3,1", caller=A, seconds=4)
    assert server.show(A)["remote_control"] == {"enabled": True}

    key_in(server, tmp_path, "1400", f"{A}#{PIN}#,9,1", caller=None, seconds=8)
    state = server.show(A)
    assert state["forwarding"]["enabled"] is False  # type: ignore[index]
    assert state["voicemail"]["enabled"] is True  # type: ignore[index]
    assert re.search(rf"remote-change source=udp:127\.0\.0\.1:\d+ number={A} "
                     "change=forwarding-off", server.log_text())
    # The next call to the subscriber: not forwarded; no phone registered, so voicemail.
    next_call = call_subscriber(server, tmp_path, B, A)
    assert next_call.returncode == 0, next_call.failure("not answered")
    records = wait_for_record(server, 3)
    assert [(r["callee"], r["outcome"]) for r in records] == [
        ("1429", "answered"), ("1400", "answered"), (A, "voicemail")]


@needs_sipp
def test_three_wrong_pins_end_the_call_and_the_fourth_switches_remote_control_off(
        tmp_path: Path, server: ServerProcess) -> None:
    key_in(server, tmp_path, "1429", "3,1", caller=A, seconds=4)
    keys = "".join(f"{A}#{wrong}#" for wrong in WRONG_PINS[:3])
    ended = key_in(server, tmp_path, "1400", keys, caller=None, seconds=40)
    assert "ENDED_BY=server" in ended.log  # the third failure ended the call
    assert server.show(A)["remote_control"] == {"enabled": True}
    key_in(server, tmp_path, "1400", f"{A}#{WRONG_PINS[3]}#", caller=None, seconds=5)
    state = server.show(A)
    assert state["remote_control"] == {"enabled": False}
    assert state["pin"]["failures"] == 4  # type: ignore[index]
    assert f"remote-control-disabled number={A} failures=4" in server.log_text()
    if shutil.which("fail2ban-regex"):  # each wrong PIN a line fail2ban bans the caller by
        found = subprocess.run(["fail2ban-regex", "-o", "ip", str(server.directory /
                                                                  "server.log"),
                                str(FAIL2BAN_FILTER)], capture_output=True, text=True,
                               timeout=60)
        assert found.returncode == 0, found.stderr
        assert found.stdout.split() == ["127.0.0.1"] * 4


# ---- PJSUA2 -----------------------------------------------------------------------------------
@pytest.fixture
def phone(tmp_path: Path, server: ServerProcess) -> Iterator[Callable[..., Softphone]]:
    made: list[Softphone] = []

    def make(number: str, **options: object) -> Softphone:
        softphone = Softphone(tmp_path, f"phone-{len(made)}", number, server=server.address,
                              password=PASSWORDS[number], domain=DOMAIN, **options)  # type: ignore[arg-type]
        made.append(softphone)
        softphone.registered()
        return softphone

    yield make
    for softphone in made:
        softphone.quit()
    assert all(softphone.close() == 0 for softphone in made)


def dial(phone: Softphone, server: ServerProcess, code: str) -> int:
    call = phone.call(f"sip:{code}@{server.address}")  # challenged (407) on the way
    phone.expect("media", call=call, status="active")
    return call


@needs_pjsua2
def test_pjsua2_sets_forwarding_by_1429_starts_it_by_1421_and_stops_voicemail_by_1410(
        server: ServerProcess, phone: Callable[..., Softphone]) -> None:
    own = phone(A)
    call = dial(own, server, "1429")
    own.send(f"dtmf 1{B}# {call}")
    time.sleep(3)  # the number read back
    own.send(f"dtmf 1 {call}")
    time.sleep(1)
    own.send(f"dtmf 21 {call}")  # mode: at once
    deadline = time.monotonic() + 15
    while server.show(A)["forwarding"] != {"enabled": False, "destination": B,
                                           "mode": "immediate"}:
        assert time.monotonic() < deadline, server.show(A)
        time.sleep(0.3)
    own.send(f"hangup {call}")
    own.expect("disconnected", call=call)
    for code, told in (("1421", "forwarding_started"), ("1410", "voicemail_stopped")):
        call = dial(own, server, code)
        ended = own.expect("disconnected", call=call, timeout=5 + JA.duration(told))
        assert ended["code"] == 200  # the server said so and hung up
    state = server.show(A)
    assert state["forwarding"] == {"enabled": True, "destination": B, "mode": "immediate"}
    assert state["voicemail"]["enabled"] is False  # type: ignore[index]


@needs_pjsua2
def test_pjsua2_records_a_personal_greeting_with_1419_and_it_is_what_the_phone_said(
        tmp_path: Path, server: ServerProcess, phone: Callable[..., Softphone]) -> None:
    own = phone(A, tone=1300)
    call = dial(own, server, "1419")
    own.send(f"dtmf 2 {call}")
    intro = JA.duration("greeting_record_intro") + JA.duration("voicemail_tone")
    time.sleep(intro + 3)  # the intro, the tone, then 2 s or so of the phone's tone
    own.send(f"dtmf # {call}")
    time.sleep(1.5)  # the greeting played back
    own.send(f"dtmf 1 {call}")  # keep it
    deadline = time.monotonic() + 10
    while not server.show(A)["voicemail"]["greeting"]:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.3)
    own.send(f"hangup {call}")
    own.expect("disconnected", call=call)
    [greeting] = (tmp_path / "var" / "voicemail" / A).glob("greeting-*.wav")
    codec, audio = read_g711_wav(greeting)
    pcm = codec.to_pcm16(audio)
    samples = [int.from_bytes(pcm[i:i + 2], "little", signed=True)
               for i in range(0, len(pcm), 2)]
    assert 1.0 < len(samples) / 8000 < 5.0
    assert loudest_tone(samples, (440, 1300, 2000)) == 1300
