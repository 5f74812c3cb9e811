"""Real SIP peers register to a running softswitch over loopback (issue 3 acceptance).

SIPp, PJSUA2, pyVoIP and Linphone's console client each register a subscriber of the test
config through the digest challenge; every outcome is checked in softswitch's own state
(`softswitch show --json`), not only in the peer's word. PJSUA2 and pyVoIP run in child
processes (tests/peers/*_phone.py): pjsua2 allows one library instance per process and
pyVoIP runs threads of its own. Tests skip only when a peer is not installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from .peers.child import ChildProcess
from .peers.linphone import LinphoneConsole, write_linphonerc
from .peers.sipp import run_sipp, write_users_csv
from .support import DOMAIN, ServerProcess, free_port

PEERS = Path(__file__).parent / "peers"

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")
needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")
needs_pyvoip = pytest.mark.skipif(importlib.util.find_spec("pyVoIP") is None,
                                  reason="pyVoIP not installed (PyPI package pyVoIP)")
needs_linphonec = pytest.mark.skipif(shutil.which("linphonec") is None,
                                     reason="linphonec not installed (Debian package linphone-cli)")


def registrations(server: ServerProcess, number: str) -> list[dict[str, object]]:
    found = server.show(number)["registrations"]
    assert isinstance(found, list)
    return found


# ---- SIPp ----------------------------------------------------------------------------------
@needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_registers_through_the_digest_challenge(server: ServerProcess,
                                                     tmp_path: Path, transport: str) -> None:
    users = write_users_csv(tmp_path / "users.csv", [("09011110001", "pw-one")], DOMAIN)
    local_port = free_port()
    run = run_sipp("register_auth.xml", server.port, local_port, users, tmp_path,
                   transport)
    assert run.returncode == 0, f"{run.errors}\n{run.stdout[-2000:]}"
    assert "401 Unauthorized" in run.messages and "Authorization: Digest" in run.messages
    [binding] = registrations(server, "09011110001")
    assert binding["contact"] == f"sip:09011110001@127.0.0.1:{local_port}"
    assert str(binding["source"]).startswith(f"{transport}:127.0.0.1:")
    assert 290 <= int(binding["expires_in"]) <= 300


@needs_sipp
def test_sipp_with_a_wrong_password_is_refused(server: ServerProcess,
                                               tmp_path: Path) -> None:
    users = write_users_csv(tmp_path / "users.csv", [("09011110001", "not-pw-one")], DOMAIN)
    run = run_sipp("register_auth.xml", server.port, free_port(), users, tmp_path)
    assert run.returncode != 0, run.stdout[-2000:]
    assert "403 Forbidden" in run.errors  # refused at once, not challenged again
    assert registrations(server, "09011110001") == []


# ---- PJSUA2 ---------------------------------------------------------------------------------
@needs_pjsua2
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pjsua2_account_registers_and_unregisters(server: ServerProcess, tmp_path: Path,
                                                  transport: str) -> None:
    phone = ChildProcess(
        [sys.executable, PEERS / "pjsua2_phone.py", "--registrar",
         f"sip:127.0.0.1:{server.port}", "--user", "09011110002", "--password", "pw-two",
         "--realm", DOMAIN, "--transport", transport, "--log", tmp_path / "pjsua2.log"],
        name="pjsua2", stderr_path=tmp_path / "pjsua2.stderr")
    try:
        registered = phone.expect_event("reg_state", timeout=15)
        assert registered["code"] == 200, phone.failure(f"registration: {registered}")
        assert 290 <= int(registered["expires"]) <= 300
        [binding] = registrations(server, "09011110002")
        contact = str(binding["contact"])
        assert contact.startswith("sip:09011110002@127.0.0.1:")
        assert str(binding["source"]).startswith(f"{transport}:127.0.0.1:")
        if transport == "tcp":
            assert "transport=tcp" in contact.lower()

        phone.send("unregister")
        unregistered = phone.expect_event("reg_state", timeout=15)
        assert (unregistered["code"], unregistered["expires"]) == (200, 0), unregistered
        assert registrations(server, "09011110002") == []
        phone.send("quit")
        phone.expect_event("stopped", timeout=10)
    finally:
        code = phone.finish(timeout=10)
    assert code == 0, phone.failure("did not exit cleanly")


@needs_pjsua2
def test_pjsua2_answers_sha256_when_it_is_offered_first(tmp_path: Path) -> None:
    """SHA-256 stays available as an option: PJSUA2 (pjproject 2.15) takes the first
    challenge whose algorithm it knows, so [SHA-256, MD5] gets a SHA-256 answer."""
    server = ServerProcess(tmp_path, sip_overrides={"auth": {"algorithms": ["SHA-256", "MD5"]}})
    server.start()
    log = tmp_path / "pjsua2.log"
    phone = ChildProcess(
        [sys.executable, PEERS / "pjsua2_phone.py", "--registrar",
         f"sip:127.0.0.1:{server.port}", "--user", "09011110002", "--password", "pw-two",
         "--realm", DOMAIN, "--log", log],
        name="pjsua2", stderr_path=tmp_path / "pjsua2.stderr")
    try:
        registered = phone.expect_event("reg_state", timeout=15)
        assert registered["code"] == 200, phone.failure(f"registration: {registered}")
        [binding] = registrations(server, "09011110002")
        phone.send("quit")
        phone.expect_event("stopped", timeout=10)
    finally:
        phone.finish(timeout=10)
        server.stop()
    authorizations = [line for line in log.read_text(errors="replace").splitlines()
                      if line.startswith("Authorization:")]
    assert authorizations and all("algorithm=SHA-256" in line for line in authorizations), \
        authorizations


# ---- pyVoIP ---------------------------------------------------------------------------------
@needs_pyvoip
def test_pyvoip_phone_registers_and_unregisters(server: ServerProcess, tmp_path: Path) -> None:
    sip_port, rtp_port = free_port(), free_port()
    phone = ChildProcess(
        [sys.executable, PEERS / "pyvoip_phone.py", "--server", "127.0.0.1", "--port",
         str(server.port), "--user", "08022220003", "--password", "pw-three",
         "--sip-port", str(sip_port), "--rtp-low", str(rtp_port), "--rtp-high", str(rtp_port)],
        name="pyVoIP", stderr_path=tmp_path / "pyvoip.stderr")
    try:
        # pyVoIP's start() itself waits up to 30 s for each answer.
        status = phone.expect_event("status", timeout=40)
        assert status["status"] == "REGISTERED", phone.failure(f"status {status}")
        [binding] = registrations(server, "08022220003")
        assert binding["contact"] == f"sip:08022220003@127.0.0.1:{sip_port};transport=UDP"
        assert binding["source"] == f"udp:127.0.0.1:{sip_port}"
        assert binding["user_agent"] == "pyVoIP 1.6.8"

        phone.send("stop")  # pyVoIP unregisters with Expires: 0
        stopped = phone.expect_event("status", timeout=40)
        assert stopped["status"] == "INACTIVE", phone.failure(f"status {stopped}")
        assert registrations(server, "08022220003") == []
        phone.send("quit")
        phone.expect_event("stopped", timeout=10)
    finally:
        code = phone.finish(timeout=10)
    assert code == 0, phone.failure("did not exit cleanly")


# ---- Linphone -------------------------------------------------------------------------------
@needs_linphonec
def test_linphonec_registers_and_unregisters_on_quit(server: ServerProcess,
                                                    tmp_path: Path) -> None:
    home = tmp_path / "linphone-home"
    home.mkdir()
    config = write_linphonerc(home, server.port, "09011110001", "pw-one", DOMAIN)
    linphone = LinphoneConsole(config)
    try:
        said = linphone.wait_registered(timeout=20)
        assert f"identity=sip:09011110001@{DOMAIN}" in said
        [binding] = registrations(server, "09011110001")
        assert binding["contact"] == f"sip:09011110001@127.0.0.1:{config.sip_port};transport=udp"
        assert binding["source"] == f"udp:127.0.0.1:{config.sip_port}"
        assert str(binding["user_agent"]).startswith("Linphonec/")
        assert linphone.quit(timeout=15) == 0
    finally:
        linphone.close()
    assert registrations(server, "09011110001") == []  # quit sent REGISTER with Expires: 0
