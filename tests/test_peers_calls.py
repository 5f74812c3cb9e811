"""Real phones make calls through a running softswitch over loopback (issues 8 and 9).

Each peer runs in a child process (tests/peers/*.py) and the outcome is checked in
softswitch's own log and state, not only in the peer's word.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

from .peers.child import ChildProcess
from .support import ServerProcess, free_port

PEERS = Path(__file__).parent / "peers"

needs_pyvoip = pytest.mark.skipif(importlib.util.find_spec("pyVoIP") is None,
                                  reason="pyVoIP not installed (PyPI package pyVoIP)")


def wait_for_log(server: ServerProcess, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log_text()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the server log:\n{server.log_text()[-3000:]}")


@needs_pyvoip
def test_pyvoip_calls_the_dtmf_test_number_and_keys_in_band(server: ServerProcess,
                                                            tmp_path: Path) -> None:
    """pyVoIP 1.6 waits for a provisional response before it takes the 200 (issue 8 item 2),
    and offers telephone-event while it keys tones in the audio (item 4)."""
    sip_port, rtp_port = free_port(), free_port()
    phone = ChildProcess(
        [sys.executable, PEERS / "pyvoip_caller.py", "--server", "127.0.0.1", "--port",
         str(server.port), "--user", "08022220003", "--password", "pw-three",
         "--sip-port", str(sip_port), "--rtp-low", str(rtp_port), "--rtp-high", str(rtp_port),
         "--number", "1999", "--keys", "42#", "--listen-seconds", "3"],
        name="pyVoIP", stderr_path=tmp_path / "pyvoip.stderr")
    try:
        status = phone.expect_event("status", timeout=40)
        assert status["status"] == "REGISTERED", phone.failure(f"status {status}")
        call = phone.expect_event("call", timeout=15)
        assert call["state"] == "ANSWERED", phone.failure(f"call {call}")
        audio = phone.expect_event("audio", timeout=15)
        assert audio["loud"] > 0, phone.failure("heard no prompt")  # sent after the ACK
        phone.expect_event("ended", timeout=10)
    finally:
        phone.finish(timeout=10)
    log = wait_for_log(server, "dtmf-test digits=")
    assert "dtmf-test digits=42\n" in log
    wait_for_log(server, "caller hung up")
