"""Every way a bridged call can end leaves nothing behind (issue 9 item 4: "every leg and port
released at the end"). The server runs in this process so that its counters can be read;
the phones are SIPp processes, driven from threads so the server's event loop runs on."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from softswitch.app import Server
from softswitch.config import parse_config

from .peers.sipp import (
    SippPhone,
    SippRun,
    register_contact,
    run_caller,
    write_callers_csv,
)
from .support import DOMAIN, SUBSCRIBERS, in_process_server
from .test_ivr_calls import free_udp_pair, write_test_prompts

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")

A, B = "09011110001", "09011110002"
PASSWORDS = {A: "pw-one", B: "pw-two"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    rtp = free_udp_pair()
    config = parse_config(yaml.safe_dump({
        "sip": {"listen": ["127.0.0.1:0"], "domain": DOMAIN, "transports": ["udp"]},
        "store": {"url": f"sqlite:///{tmp_path / 'softswitch.db'}"},
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + 1,
                  "prompts_dir": str(write_test_prompts(tmp_path / "prompts"))},
        "services": {"voicemail": {"audio_dir": str(tmp_path / "voicemail")}},
        "calls": {"cdr_file": str(tmp_path / "cdr.jsonl")},
        "subscribers": SUBSCRIBERS[:2],
    }))
    async with in_process_server(config) as running:
        yield running


async def settled(server: Server, timeout: float = 5.0) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(server.router.counters().values()) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return server.router.counters()


async def call_b(port: int, callers: Path, tmp_path: Path, duration_ms: int) -> SippRun:
    """A's call to B that waits for an answer, sends no RTP (an empty pcap) and hangs up
    `duration_ms` after it."""
    pcap = tmp_path / "silent.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return await asyncio.to_thread(run_caller, "uac_auth_call.xml", port, B, callers, tmp_path,
                                   {"pcap": str(pcap)}, duration_ms=duration_ms,
                                   auth_uri=f"{B}@127.0.0.1:{port}")


@pytest.mark.parametrize("mode", ["answer", "hangup", "486", "ring", "blocked"])
async def test_nothing_is_left_after_a_bridged_call(server: Server, tmp_path: Path,
                                                    mode: str) -> None:
    port = server.stack.bound[0][1].port
    if mode == "blocked":
        await server.services.blocklist.add(B, A)
    if mode == "486":
        await server.services.voicemail.set_enabled(B, False)
    if mode == "ring":
        await server.services.voicemail.set_ring_time(B, 1)  # then voicemail answers
    # a blocked caller's call must not reach the phone at all: it would answer
    phone = await asyncio.to_thread(SippPhone, tmp_path,
                                    "answer" if mode == "blocked" else mode, talk_ms=300)
    try:
        registered = await asyncio.to_thread(register_contact, port, B, PASSWORDS[B], DOMAIN,
                                             phone.port, tmp_path)
        assert registered.returncode == 0, registered.errors
        callers = write_callers_csv(tmp_path / "callers.csv", [(A, PASSWORDS[A])], DOMAIN)
        if mode in ("486", "blocked"):
            call = await asyncio.to_thread(run_caller, "uac_auth_rejected.xml", port, B,
                                           callers, tmp_path, {"sdp": "offer"},
                                           auth_uri=f"{B}@127.0.0.1:{port}")
            assert call.finals() == [486 if mode == "486" else 603], call.failure("?")
        else:
            call = await call_b(port, callers, tmp_path, duration_ms=1500)
            assert call.returncode == 0, call.failure("not answered")
        if mode == "blocked":
            assert phone.invites() == []
    finally:
        await asyncio.to_thread(phone.stop)
    assert await settled(server) == {"attempts": 0, "bridges": 0, "owned": 0, "calls": 0,
                                     "flows": 0, "rtp_ports": 0, "byes": 0}


def _answer_to(request: bytes, status: str, to_tag: str) -> bytes:
    """A response to `request` (Via, From, To with our tag, Call-ID, CSeq copied)."""
    lines = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    copied = [line for line in lines if line.split(b":", 1)[0].lower()
              in (b"via", b"from", b"call-id", b"cseq")]
    to = next(line for line in lines if line.lower().startswith(b"to:"))
    return b"\r\n".join([f"SIP/2.0 {status}".encode(), *copied, to + f";tag={to_tag}".encode(),
                         b"Content-Length: 0", b"", b""])


def _phone_with_a_late_183(sock: socket.socket) -> list[bytes]:
    """Rings (180); when CANCELled, a 183 that crossed the CANCEL arrives first, then 200 to
    the CANCEL and 487 to the INVITE. Returns the requests it received, until the ACK."""
    received: list[bytes] = []
    invite = b""
    while True:
        data, server = sock.recvfrom(65535)
        received.append(data)
        if data.startswith(b"INVITE "):
            invite = data
            sock.sendto(_answer_to(invite, "180 Ringing", "late"), server)
        elif data.startswith(b"CANCEL "):
            sock.sendto(_answer_to(invite, "183 Session Progress", "late"), server)
            sock.sendto(_answer_to(data, "200 OK", "late"), server)
            sock.sendto(_answer_to(invite, "487 Request Terminated", "late"), server)
        elif data.startswith(b"ACK "):
            return received


async def test_a_provisional_crossing_our_cancel_sends_no_second_cancel(
        server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The ring time ends, the fork is CANCELled, and the phone's 183 was already on its way:
    the fork is being cancelled, not cancelled again (found under load by relay.sh: a
    second CANCEL on the same branch was refused, with a warning per call)."""
    port = server.stack.bound[0][1].port
    await server.services.voicemail.set_ring_time(B, 1)  # then voicemail answers
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.settimeout(10)
    try:
        registered = await asyncio.to_thread(register_contact, port, B, PASSWORDS[B], DOMAIN,
                                             phone.getsockname()[1], tmp_path)
        assert registered.returncode == 0, registered.errors
        ringing = asyncio.ensure_future(asyncio.to_thread(_phone_with_a_late_183, phone))
        callers = write_callers_csv(tmp_path / "callers.csv", [(A, PASSWORDS[A])], DOMAIN)
        call = await call_b(port, callers, tmp_path, duration_ms=500)
        assert call.returncode == 0, call.failure("voicemail did not answer")
        received = await ringing
    finally:
        phone.close()
    assert [r.split(b" ", 1)[0] for r in received] == [b"INVITE", b"CANCEL", b"ACK"]
    assert "not sent" not in caplog.text
    assert await settled(server) == {"attempts": 0, "bridges": 0, "owned": 0, "calls": 0,
                                     "flows": 0, "rtp_ports": 0, "byes": 0}
