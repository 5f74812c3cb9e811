"""Calls answered by voice flows, end to end over real sockets on 127.0.0.1 (issue 4).

Two kinds of server:
- in this process (`softswitch.app.start` in the test's event loop), driven by a hand-written
  SIP phone, so that the call handler's counters (calls, flow tasks, RTP ports) can be read:
  leak tests, CANCEL, 488, INFO digits, hold. Its prompts are short test tones whose first
  octet tells which prompt is playing, so the test hears what the flow says.
- `softswitch run` in a child process with the real prompts, called by SIPp keying digits
  from pcaps made by scripts/make_dtmf_pcap.py: RFC 4733 events (also duplicated and
  reordered) and in-band G.711 tones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from softswitch.app import Server
from softswitch.config import parse_config
from softswitch.media.g711 import Codec
from softswitch.media.prompts import CATALOGUE
from softswitch.media.session import RtpSession
from softswitch.media.wav import g711_wav
from softswitch.net.rtp import MediaStream, RtpEngine, RtpPortPool
from softswitch.sip.transaction import Timers
from softswitch.switch.ivr_calls import IvrCalls

from .support import SUBSCRIBERS, ServerProcess, free_port, in_process_server

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scripts" / "sipp" / "uac_dtmf.xml"
MAKE_PCAP = ROOT / "scripts" / "make_dtmf_pcap.py"

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="sipp not installed (Debian package sip-tester)")

# ---- test prompts: each prompt a constant μ-law octet, so RTP tells what is being said ------
SILENCE = 0xFF
MARKS = {"dtmf_test_intro": 0x11, "you_entered": 0x12, "goodbye": 0x13, "no_input": 0x14,
         **{f"digit_{name}": 0x20 + i for i, name in enumerate(
             ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "hash",
              "a", "b", "c", "d"])}}
OTHER_MARK = 0x40
PROMPT_FRAMES = {"dtmf_test_intro": 500}  # 10 s: long enough to hang up in the middle
DEFAULT_PROMPT_FRAMES = 3
SPOKEN = {mark: prompt for prompt, mark in MARKS.items()}


def write_test_prompts(directory: Path) -> Path:
    (directory / "ja").mkdir(parents=True)
    for prompt_id in CATALOGUE:
        frames = PROMPT_FRAMES.get(prompt_id, DEFAULT_PROMPT_FRAMES)
        audio = bytes([MARKS.get(prompt_id, OTHER_MARK)]) * (160 * frames)
        (directory / "ja" / f"{prompt_id}.wav").write_bytes(g711_wav(Codec.PCMU, audio))
    return directory


def heard(payloads: list[bytes]) -> list[str]:
    """The prompts in a run of received PCMU payloads, in order (silence left out)."""
    said: list[str] = []
    for mark, run in itertools.groupby(p[0] for p in payloads):
        if mark in SPOKEN:  # a run of one prompt said n times in a row, or cut short
            prompt = SPOKEN[mark]
            frames = PROMPT_FRAMES.get(prompt, DEFAULT_PROMPT_FRAMES)
            said += [prompt] * max(1, round(len(list(run)) / frames))
    return said


def free_udp_pair() -> int:
    """A port p with p and p+1 free for UDP on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(30000, 60000)
        with contextlib.ExitStack() as stack:
            try:
                for port in (base, base + 1):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError("no two free consecutive ports")


# ---- the in-process server -------------------------------------------------------------------
@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The server; a test may add media keys with `@pytest.mark.parametrize("server",
    [{...}], indirect=True)`."""
    rtp = free_udp_pair()
    media_overrides = getattr(request, "param", {})
    config = parse_config(yaml.safe_dump({
        "sip": {"listen": ["127.0.0.1:0"], "domain": "softswitch.test"},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'softswitch.db'}"},
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + 1,
                  "prompts_dir": str(write_test_prompts(tmp_path / "prompts")),
                  **media_overrides},
        "services": {"voicemail": {"audio_dir": str(tmp_path / "voicemail")}},
        "calls": {"cdr_file": str(tmp_path / "cdr.jsonl")},
        "subscribers": SUBSCRIBERS[:1],
    }))
    async with in_process_server(config) as running:
        yield running


def handler_of(server: Server) -> IvrCalls:
    return server.calls


def sip_port(server: Server, transport: str = "udp") -> int:
    return next(address.port for kind, address in server.stack.bound if kind == transport)


async def settled(handler: IvrCalls, timeout: float = 3.0) -> dict[str, int]:
    """The counters once they are all zero, or as they are when `timeout` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(handler.counters().values()) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return handler.counters()


# ---- a phone written by hand -------------------------------------------------------------------
@dataclass
class Message:
    start: str
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> Message:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = [(name.strip().lower(), value.strip()) for name, _, value in
                   (line.partition(":") for line in lines[1:])]
        return cls(lines[0], headers, body)

    @property
    def status(self) -> int | None:
        return int(self.start.split()[1]) if self.start.startswith("SIP/2.0") else None

    @property
    def method(self) -> str | None:
        return None if self.status is not None else self.start.split()[0]

    def header(self, name: str) -> str:
        return next(value for key, value in self.headers if key == name)

    @property
    def to_tag(self) -> str:
        return self.header("to").split(";tag=")[1].split(";")[0]

    @property
    def media_port(self) -> int:
        return int(re.search(rb"m=audio (\d+)", self.body).group(1))  # type: ignore[union-attr]


def sdp_offer(rtp_port: int, formats: str = "0 101", direction: str | None = None,
              address: str = "127.0.0.1") -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", f"c=IN IP4 {address}", "t=0 0",
             f"m=audio {rtp_port} RTP/AVP {formats}"]
    if "101" in formats.split():
        lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
    if "18" in formats.split():
        lines += ["a=rtpmap:18 G729/8000"]
    if direction:
        lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n"


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.queue.put_nowait(data)


@dataclass
class Dialog:
    call_id: str
    from_tag: str
    to_tag: str = ""
    cseq: int = 1
    number: str = "1999"
    invite_branch: str = ""
    answer: Message | None = None


@dataclass
class Phone:
    """A UDP SIP phone (requests and answers written out in full) with an RTP socket."""

    server_port: int
    sip: asyncio.DatagramTransport
    sip_inbox: _Inbox
    rtp: asyncio.DatagramTransport
    rtp_inbox: _Inbox
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    host: str = "127.0.0.1"

    @classmethod
    async def open(cls, server_port: int, host: str = "127.0.0.1") -> Phone:
        loop = asyncio.get_running_loop()
        sip, sip_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(host, 0))
        rtp, rtp_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(host, 0))
        return cls(server_port, sip, sip_inbox, rtp, rtp_inbox, host=host)

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()

    @property
    def port(self) -> int:
        return int(self.sip.get_extra_info("sockname")[1])

    @property
    def rtp_port(self) -> int:
        return int(self.rtp.get_extra_info("sockname")[1])

    def send(self, text: str) -> None:
        self.sip.sendto(text.encode(), ("127.0.0.1", self.server_port))

    async def receive(self, timeout: float = 5.0) -> Message:
        """The next SIP message, 100 Trying skipped."""
        while True:
            message = Message.parse(await asyncio.wait_for(self.sip_inbox.queue.get(), timeout))
            if message.status != 100:
                return message

    async def receive_or_none(self, timeout: float) -> Message | None:
        try:
            return await self.receive(timeout)
        except TimeoutError:
            return None

    def request(self, dialog: Dialog, method: str, *, body: str = "", content_type: str = "",
                cseq: int | None = None, branch: str | None = None) -> str:
        number = next(self.counter)
        branch = branch or f"z9hG4bK-{dialog.call_id}-{number}"
        to_tag = f";tag={dialog.to_tag}" if dialog.to_tag else ""
        lines = [
            f"{method} sip:{dialog.number}@127.0.0.1:{self.server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport",
            f"From: <sip:caller@{self.host}:{self.port}>;tag={dialog.from_tag}",
            f"To: <sip:{dialog.number}@127.0.0.1:{self.server_port}>{to_tag}",
            f"Call-ID: {dialog.call_id}",
            f"CSeq: {cseq if cseq is not None else dialog.cseq} {method}",
            f"Contact: <sip:caller@{self.host}:{self.port}>",
            "Max-Forwards: 70",
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    async def call(self, number: str = "1999", sdp: str | None = None,
                   ack: bool = True) -> tuple[Dialog, Message]:
        dialog = Dialog(call_id=f"call-{random.getrandbits(40):x}", from_tag="caller",
                        number=number)
        dialog.invite_branch = f"z9hG4bK-{dialog.call_id}-invite"
        body = sdp if sdp is not None else sdp_offer(self.rtp_port, address=self.host)
        self.send(self.request(dialog, "INVITE", body=body, content_type="application/sdp",
                               branch=dialog.invite_branch))
        answer = await self.receive()
        assert answer.status is not None
        if answer.status >= 200:
            dialog.to_tag = answer.to_tag
        if 200 <= answer.status < 300:
            dialog.answer = answer
            if ack:
                self.ack(dialog)
        elif answer.status >= 300:  # the ACK of a failure is hop-by-hop: the INVITE's branch
            self.send(self.request(dialog, "ACK", cseq=1, branch=dialog.invite_branch))
        return dialog, answer

    def ack(self, dialog: Dialog, cseq: int = 1) -> None:
        """The ACK of a 2xx to the INVITE with CSeq `cseq`."""
        self.send(self.request(dialog, "ACK", cseq=cseq))

    async def in_dialog(self, dialog: Dialog, method: str, *, body: str = "",
                        content_type: str = "") -> Message:
        dialog.cseq += 1
        self.send(self.request(dialog, method, body=body, content_type=content_type))
        response = await self.receive()
        assert response.header("cseq") == f"{dialog.cseq} {method}", response
        return response

    async def answer_bye(self, timeout: float = 5.0) -> Message:
        """Wait for the server's BYE and answer it 200."""
        bye = await self.receive(timeout)
        assert bye.method == "BYE", bye.start
        self.ok(bye)
        return bye

    def ok(self, request: Message) -> None:
        copied = [f"{name.title()}: {value}" for name, value in request.headers
                  if name in ("via", "from", "to", "call-id", "cseq")]
        self.send("SIP/2.0 200 OK\r\n" + "\r\n".join(copied) + "\r\nContent-Length: 0\r\n\r\n")

    def drain_rtp(self) -> list[bytes]:
        """RTP payloads received so far (12-octet headers stripped)."""
        return [packet[12:] for packet in self.drain_rtp_packets()]

    def drain_rtp_packets(self) -> list[bytes]:
        """RTP packets received so far, headers included."""
        packets = []
        while not self.rtp_inbox.queue.empty():
            packets.append(self.rtp_inbox.queue.get_nowait())
        return packets

    async def rtp_for(self, seconds: float) -> list[bytes]:
        await asyncio.sleep(seconds)
        return self.drain_rtp()


@pytest.fixture
async def phone(server: Server) -> AsyncIterator[Phone]:
    caller = await Phone.open(sip_port(server))
    yield caller
    caller.close()


def dtmf_relay(digit: str) -> tuple[str, str]:
    return "application/dtmf-relay", f"Signal={digit}\r\nDuration=160\r\n"


# ---- in-process tests -------------------------------------------------------------------------
async def test_hangup_during_prompt_frees_everything_and_the_port_is_reused(
        server: Server, phone: Phone) -> None:
    handler = handler_of(server)
    dialog, answer = await phone.call()
    assert answer.status == 200
    assert answer.header("content-type") == "application/sdp"
    assert b"a=sendrecv" in answer.body and b"telephone-event/8000" in answer.body
    assert f"sip:1999@127.0.0.1:{sip_port(server)}" in answer.header("contact")
    first_port = answer.media_port
    payloads = await phone.rtp_for(0.3)
    assert heard(payloads) == ["dtmf_test_intro"]  # the intro is playing (it lasts 10 s)
    assert 10 <= len(payloads) <= 25  # one frame per 20 ms
    assert all(len(p) == 160 for p in payloads)
    assert handler.counters() == {"calls": 1, "flows": 1, "rtp_ports": 1, "byes": 0}

    bye = await phone.in_dialog(dialog, "BYE")
    assert bye.status == 200
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", first_port))  # the socket is closed, not only counted free
    phone.drain_rtp()
    await asyncio.sleep(0.1)
    assert phone.drain_rtp() == []  # and nothing is sent any more

    # The range has two ports; a freed port rests behind the other one, then is used again.
    ports = []
    for _ in range(2):
        dialog, answer = await phone.call()
        assert answer.status == 200
        ports.append(answer.media_port)
        assert (await phone.in_dialog(dialog, "BYE")).status == 200
        assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}
    assert ports[0] != first_port
    assert ports[1] == first_port


@pytest.mark.parametrize("server", [{}, {"silence": "send"}, {"keepalive_seconds": 0.06}],
                         ids=["suppress", "send", "keepalive-60ms"], indirect=True)
async def test_hangup_during_collection(server: Server, phone: Phone) -> None:
    handler = handler_of(server)
    media = server.config.media
    dialog, _ = await phone.call()
    await asyncio.sleep(0.1)
    content_type, body = dtmf_relay("5")
    info = await phone.in_dialog(dialog, "INFO", body=body, content_type=content_type)
    assert info.status == 200
    await asyncio.sleep(0.06)
    phone.drain_rtp()
    # the key stopped the intro (barge-in): the flow now waits for more keys, in silence
    await asyncio.sleep(0.2)
    packets = phone.drain_rtp_packets()
    if media.silence == "send":  # a silence frame every 20 ms
        assert len(packets) >= 8 and {p[12] for p in packets} == {SILENCE}
        assert not any(p[1] & 0x80 for p in packets)
    elif media.keepalive_seconds == 0.06:  # a lone silence frame (a talkspurt) every 60 ms
        assert 2 <= len(packets) <= 5 and {p[12] for p in packets} == {SILENCE}
        assert all(p[1] & 0x80 for p in packets)
        timestamps = [struct.unpack_from("!I", p, 4)[0] for p in packets]
        assert {b - a for a, b in itertools.pairwise(timestamps)} == {3 * 160}
    else:  # suppressed: the first keepalive is due 1 s after the intro's last frame
        assert packets == []
    assert handler.counters() == {"calls": 1, "flows": 1, "rtp_ports": 1, "byes": 0}
    assert (await phone.in_dialog(dialog, "BYE")).status == 200
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}


async def test_info_digits_are_collected_read_back_and_logged(
        server: Server, phone: Phone, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="softswitch")
    handler = handler_of(server)
    dialog, _ = await phone.call()
    await asyncio.sleep(0.1)
    for content_type, body in [dtmf_relay("1"), ("application/dtmf", "2"), dtmf_relay("10"),
                               dtmf_relay("#")]:
        response = await phone.in_dialog(dialog, "INFO", body=body, content_type=content_type)
        assert response.status == 200
    bye = await phone.answer_bye()  # the flow said its piece and hung up
    assert bye.header("call-id") == dialog.call_id
    assert heard(phone.drain_rtp()) == [
        "dtmf_test_intro", "you_entered", "digit_1", "digit_2", "digit_star", "goodbye"]
    lines = [r.getMessage() for r in caplog.records if "dtmf-test digits=" in r.getMessage()]
    assert lines == ["dtmf-test digits=12*"]
    keys = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dtmf-test key")]
    assert keys == ["dtmf-test key 1 by info", "dtmf-test key 2 by info",
                    "dtmf-test key * by info", "dtmf-test key # by info"]
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}


async def test_info_without_a_digit_and_of_other_types(server: Server, phone: Phone) -> None:
    dialog, _ = await phone.call()
    bad = await phone.in_dialog(dialog, "INFO", body="Signal=Z\r\n",
                                content_type="application/dtmf-relay")
    assert bad.status == 400
    other = await phone.in_dialog(dialog, "INFO", body="<xml/>", content_type="application/xml")
    assert other.status == 415
    assert "application/dtmf-relay" in other.header("accept")
    assert (await phone.in_dialog(dialog, "INFO")).status == 200  # empty: a keepalive
    assert (await phone.in_dialog(dialog, "BYE")).status == 200


async def test_rfc4733_digits_over_rtp(server: Server, phone: Phone,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="softswitch")
    dialog, answer = await phone.call()
    session = RtpSession(0x1234, 0, 101, ("127.0.0.1", answer.media_port))
    for key in "4D#":
        for packet in session.send_dtmf(key):
            phone.rtp.sendto(packet, ("127.0.0.1", answer.media_port))
            phone.rtp.sendto(packet, ("127.0.0.1", answer.media_port))  # duplicated
        await asyncio.sleep(0.05)
    await phone.answer_bye()
    assert [r.getMessage() for r in caplog.records if "digits=" in r.getMessage()] == [
        "dtmf-test digits=4D"]


async def test_rtp_from_a_third_address_neither_keys_nor_hears_the_call(
        server: Server, phone: Phone, caplog: pytest.LogCaptureFixture) -> None:
    """RFC 4733 keys from 127.0.0.2, sent to the call's port before the caller's first packet,
    are not read and do not take our audio; the caller's own keys are read."""
    caplog.set_level(logging.INFO, logger="softswitch")
    dialog, answer = await phone.call()
    media = ("127.0.0.1", answer.media_port)
    loop = asyncio.get_running_loop()
    attacker, attacker_inbox = await loop.create_datagram_endpoint(
        _Inbox, local_addr=("127.0.0.2", 0))
    try:
        injector = RtpSession(0x666, 0, 101, media)
        for key in "9#":
            for packet in injector.send_dtmf(key):
                attacker.sendto(packet, media)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert heard(phone.drain_rtp()) == ["dtmf_test_intro"]  # still to the caller
        caller = RtpSession(0x1234, 0, 101, media)
        for key in "12#":
            for packet in caller.send_dtmf(key):
                phone.rtp.sendto(packet, media)
            await asyncio.sleep(0.05)
        await phone.answer_bye()
        assert attacker_inbox.queue.empty()  # not one packet of ours went there
        attacker_port = attacker.get_extra_info("sockname")[1]
    finally:
        attacker.close()
    assert [r.getMessage() for r in caplog.records if "digits=" in r.getMessage()] == [
        "dtmf-test digits=12"]
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "softswitch.security"] == [
        ("WARNING", f"rtp-rejected source=127.0.0.2:{attacker_port} call={dialog.call_id} "
                    "reason=unexpected-source")]  # once, for the 18 packets


async def test_no_ack_ends_the_call_without_media_or_bye(server: Server, phone: Phone) -> None:
    """A caller that never ACKs (a spoofed source, a flood) gets the 2xx retransmitted and
    nothing else: no RTP before the ACK, no BYE to an address nobody verified (item 11)."""
    handler = handler_of(server)
    server.stack.endpoint.timers = Timers(t1=0.01, t2=0.04)  # timer L: 64 * T1 = 0.64 s
    dialog, answer = await phone.call(ack=False)
    assert answer.status == 200
    retransmissions = 0
    while (message := await phone.receive_or_none(timeout=1.5)) is not None:
        assert message.status == 200, message.start  # the 2xx, again until timer L; no BYE
        retransmissions += 1
    assert retransmissions >= 5
    assert await phone.rtp_for(0.1) == [] and phone.rtp_inbox.queue.empty()
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}


async def test_an_ack_for_another_dialog_does_not_start_the_call(server: Server,
                                                                 phone: Phone) -> None:
    """An ACK whose To tag is not our 2xx's matches nothing: the 2xx goes on, no media, and
    the call ends by its timer (issue 8 item 3)."""
    handler = handler_of(server)
    server.stack.endpoint.timers = Timers(t1=0.01, t2=0.04)
    dialog, answer = await phone.call(ack=False)
    assert answer.status == 200
    real_tag, dialog.to_tag = dialog.to_tag, "another-tag"
    phone.ack(dialog)
    dialog.to_tag = real_tag
    assert (await phone.receive(timeout=1)).status == 200  # still retransmitted
    assert await phone.rtp_for(0.2) == []
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}


@pytest.mark.parametrize("server", [{"rtp_port_min": 41000, "rtp_port_max": 41039}],
                         indirect=True)
async def test_a_never_acked_flood_from_one_source_leaves_ports_for_another(
        server: Server, phone: Phone, caplog: pytest.LogCaptureFixture) -> None:
    """Unanswered and unauthenticated calls are bounded per source (issue 8 item 11): one
    address sending INVITEs it never ACKs holds at most security.calls_per_source of them
    (10 unauthenticated by default), and a caller from another address still gets through."""
    handler = handler_of(server)
    limits = server.config.security.calls_per_source
    answers = [(await phone.call(ack=False))[1].status
               for _ in range(limits.max_unauthenticated + 5)]
    assert answers == [200] * limits.max_unauthenticated + [503] * 5
    assert handler.counters()["rtp_ports"] == limits.max_unauthenticated
    assert "call-refused source=udp:127.0.0.1:" in caplog.text
    other = await Phone.open(sip_port(server), host="127.0.0.2")
    try:
        dialog, answer = await other.call()
        assert answer.status == 200
        assert (await other.in_dialog(dialog, "BYE")).status == 200
    finally:
        other.close()


async def test_cancel_before_answer_gets_487(server: Server) -> None:
    """INVITE and CANCEL in one TCP segment: the CANCEL is read while the INVITE waits for its
    routing (the directory's read barrier), so the INVITE is still unanswered: 487, no call."""
    handler = handler_of(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", sip_port(server, "tcp"))
    local = writer.get_extra_info("sockname")[1]
    sdp = sdp_offer(40000)

    def request(method: str, extra: str = "", body: str = "") -> str:
        return (f"{method} sip:1999@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bK-cancel-me\r\n"
                "From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:1999@127.0.0.1>\r\n"
                f"Call-ID: cancel-test\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n{body}")

    writer.write((request("INVITE", f"Contact: <sip:caller@127.0.0.1:{local};transport=tcp>\r\n"
                          "Content-Type: application/sdp\r\n", sdp)
                  + request("CANCEL")).encode())
    await writer.drain()
    answers = {}
    while len(answers) < 2:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        message = Message.parse(head + await reader.readexactly(length))
        if message.status != 100:
            answers[message.header("cseq")] = message.status
    assert answers == {"1 CANCEL": 200, "1 INVITE": 487}
    writer.write(request("ACK").encode())
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}
    for _ in range(100):  # the attempt ends when its routing wakes up and finds it cancelled
        if not server.router.attempts:
            break
        await asyncio.sleep(0.01)
    assert server.router.attempts == set()
    writer.close()


async def test_g729_only_offer_gets_488(server: Server, phone: Phone) -> None:
    _, answer = await phone.call(sdp=sdp_offer(phone.rtp_port, formats="18"))
    assert answer.status == 488
    assert "no common codec" in answer.header("warning")
    assert handler_of(server).counters()["rtp_ports"] == 0


def sdp_to(address: str, port: int, addrtype: str = "IP4") -> str:
    return sdp_offer(port).replace("c=IN IP4 127.0.0.1", f"c=IN {addrtype} {address}")


@pytest.mark.parametrize(("address", "port", "addrtype", "warning"), [
    ("255.255.255.255", 40000, "IP4", '399 softswitch "255.255.255.255 is a broadcast address"'),
    ("224.0.0.1", 40000, "IP4", '330 softswitch "multicast media is not available"'),
    ("239.255.0.1/32", 40000, "IP4", '330 softswitch "multicast media is not available"'),
    ("0.0.0.0", 40000, "IP4",
     '399 softswitch "0.0.0.0 in an initial offer gives no address to send media to"'),
    ("127.0.0.1", 1, "IP4", '399 softswitch "media port 1 is a reserved port (below 1024)"'),
    ("no-such-host.invalid", 40000, "IP4", "301 softswitch \"c= address 'no-such-host.invalid'"
     ' is not an IP address (names are not resolved)"'),
], ids=["broadcast", "multicast", "multicast-ttl", "unspecified", "port-1", "name"])
async def test_offers_aiming_media_elsewhere_get_488_and_nothing_is_sent(
        server: Server, phone: Phone, address: str, port: int, addrtype: str,
        warning: str) -> None:
    handler = handler_of(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as service:
        if address == "127.0.0.1":  # a service on port 1 here (root only) hears nothing
            with contextlib.suppress(PermissionError):
                service.bind((address, port))
        service.setblocking(False)
        _, answer = await phone.call(sdp=sdp_to(address, port, addrtype))
        assert answer.status == 488
        assert answer.header("warning") == warning
        assert handler.counters() == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}
        assert len(server.calls.media.clock) == 0  # no stream: nothing is sent anywhere
        await asyncio.sleep(0.1)
        with pytest.raises(BlockingIOError):
            service.recv(2048)


async def test_reinvite_to_a_broadcast_address_is_refused_and_the_call_goes_on(
        server: Server, phone: Phone) -> None:
    dialog, answer = await phone.call()
    refused = await phone.in_dialog(dialog, "INVITE", body=sdp_to("255.255.255.255", 40000),
                                    content_type="application/sdp")
    assert refused.status == 488 and "broadcast" in refused.header("warning")
    phone.send(phone.request(dialog, "ACK", cseq=dialog.cseq,
                             branch=f"z9hG4bK-{dialog.call_id}-refused"))
    phone.drain_rtp()
    assert len(await phone.rtp_for(0.2)) >= 5  # still to the caller's address
    assert (await phone.in_dialog(dialog, "BYE")).status == 200
    assert await settled(handler_of(server)) == {"calls": 0, "flows": 0, "rtp_ports": 0,
                                                 "byes": 0}


async def test_a_huge_offer_gets_a_small_answer(server: Server, phone: Phone) -> None:
    """1,000 t= lines and a 20 kB fmtp, and the answer is what a plain offer gets."""
    plain = sdp_offer(phone.rtp_port)
    huge = plain.replace("t=0 0\r\n", "".join(f"t={3034423619 + i} 0\r\n"
                                                for i in range(1000)))
    huge = huge.replace("a=fmtp:101 0-15", "a=fmtp:101 " + ",".join(["0-15"] * 4000))
    assert len(huge) > 35_000
    dialog, answer = await phone.call(sdp=huge)
    assert answer.status == 200
    assert len(answer.body) < 250
    assert answer.body.count(b"t=") == 1 and b"a=fmtp:101 0-15\r\n" in answer.body
    assert (await phone.in_dialog(dialog, "BYE")).status == 200


async def test_pcma_is_answered_with_the_offerers_order(server: Server, phone: Phone) -> None:
    dialog, answer = await phone.call(sdp=sdp_offer(phone.rtp_port, formats="8 0 101"))
    assert answer.status == 200
    assert re.search(rb"m=audio \d+ RTP/AVP 8 101\r\n", answer.body)
    payloads = await phone.rtp_for(0.1)
    # the intro's μ-law octet, transcoded to A-law once at load
    assert payloads and payloads[-1] == Codec.PCMU.transcode_to(Codec.PCMA, bytes([0x11]) * 160)
    assert (await phone.in_dialog(dialog, "BYE")).status == 200


async def test_known_and_unknown_numbers_look_alike(server: Server, phone: Phone) -> None:
    """A scanner without credentials learns nothing: a subscriber's number, an unknown number
    and a data SIM's all get the same challenge, with the same headers (issue 8 item 9)."""
    answers = [(await phone.call(number=number))[1]
               for number in ("0312345678", SUBSCRIBERS[0]["number"], SUBSCRIBERS[3]["number"])]
    assert {a.status for a in answers} == {407}
    assert len({tuple(name for name, _ in a.headers) for a in answers}) == 1


async def test_hold_and_resume_keep_the_call(server: Server, phone: Phone) -> None:
    handler = handler_of(server)
    dialog, _ = await phone.call()
    assert len(await phone.rtp_for(0.1)) >= 3
    hold = await phone.in_dialog(dialog, "INVITE", body=sdp_offer(phone.rtp_port,
                                                                  direction="sendonly"),
                                 content_type="application/sdp")
    assert hold.status == 200 and b"a=recvonly" in hold.body
    phone.ack(dialog, cseq=dialog.cseq)
    await asyncio.sleep(0.05)
    phone.drain_rtp()
    assert await phone.rtp_for(0.2) == []  # on hold we send nothing
    old_hold = await phone.in_dialog(dialog, "INVITE", body=sdp_offer(
        phone.rtp_port, address="0.0.0.0"), content_type="application/sdp")
    assert old_hold.status == 200  # RFC 2543 hold: c=0.0.0.0
    assert await phone.rtp_for(0.1) == []
    resume = await phone.in_dialog(dialog, "INVITE", body=sdp_offer(phone.rtp_port),
                                   content_type="application/sdp")
    assert resume.status == 200 and b"a=sendrecv" in resume.body
    versions = [int(m.body.split(b"\r\n")[1].split()[2]) for m in (hold, old_hold, resume)]
    assert versions[0] == 2 and versions[2] > versions[0]  # a changed answer, a new version
    assert len(await phone.rtp_for(0.2)) >= 8
    assert handler.counters()["calls"] == 1
    assert (await phone.in_dialog(dialog, "BYE")).status == 200
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}


async def test_no_port_free_gets_503(server: Server, phone: Phone) -> None:
    handler = handler_of(server)
    calls = [(await phone.call())[0] for _ in range(2)]
    _, busy = await phone.call()
    assert busy.status == 503
    for dialog in calls:
        assert (await phone.in_dialog(dialog, "BYE")).status == 200
    assert await settled(handler) == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}


async def test_shutdown_sends_bye(server: Server, phone: Phone) -> None:
    handler = handler_of(server)
    await phone.call()
    await handler.close()  # what Server.close does first
    bye = await phone.receive()
    assert bye.method == "BYE"
    assert handler.counters() == {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 1}


# ---- the media clock and the port pool ----------------------------------------------------------
class _TimedInbox(asyncio.DatagramProtocol):
    """Every datagram with the loop time it arrived at."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.received.append((asyncio.get_running_loop().time(), data))


@dataclass(frozen=True)
class Rtp:
    at: float  # when it arrived
    marker: bool
    sequence: int
    timestamp: int
    payload: bytes

    @classmethod
    def parse(cls, at: float, data: bytes) -> Rtp:
        first, second, sequence, timestamp, _ = struct.unpack_from("!BBHII", data)
        assert first == 0x80 and second & 0x7F == 0  # RTP version 2, PCMU
        return cls(at, bool(second & 0x80), sequence, timestamp, data[12:])


@contextlib.asynccontextmanager
async def clocked_stream(**policy: object) -> AsyncIterator[tuple[MediaStream, _TimedInbox]]:
    """A started stream of an RtpEngine with `policy`, sending to a socket of the test."""
    loop = asyncio.get_running_loop()
    sink, inbox = await loop.create_datagram_endpoint(_TimedInbox, local_addr=("127.0.0.1", 0))
    base = free_udp_pair()
    engine = RtpEngine("127.0.0.1", base, base + 1, **policy)  # type: ignore[arg-type]
    stream = engine.open_stream()
    assert stream is not None
    stream.start(RtpSession(7, 0, None, sink.get_extra_info("sockname"),
                            initial_sequence=65530, initial_timestamp=0), Codec.PCMU,
                 sending=True)
    try:
        yield stream, inbox
    finally:
        stream.close()
        engine.close()
        sink.close()
        assert engine.ports_in_use == 0 and len(engine.clock) == 0


async def test_send_policy_paces_frames_every_20_ms_and_silence_between() -> None:
    loop = asyncio.get_running_loop()
    async with clocked_stream(silence="send") as (stream, inbox):
        clip = [bytes([0x10 + i]) * 160 for i in range(10)]
        started = loop.time()
        assert await stream.play([clip]) is True
        elapsed = loop.time() - started
        await asyncio.sleep(0.1)  # silence follows
    packets = [Rtp.parse(*item) for item in inbox.received]
    assert 0.15 <= elapsed <= 0.5
    assert [p.payload[0] for p in packets[:10]] == [0x10 + i for i in range(10)]
    assert {p.payload for p in packets[10:]} == {bytes([SILENCE]) * 160} and len(packets) >= 13
    assert [p.sequence for p in packets[:8]] == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]
    assert [p.sequence for p in packets] == [(65530 + i) & 0xFFFF for i in range(len(packets))]
    assert [p.timestamp for p in packets] == [160 * i for i in range(len(packets))]
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)  # one stream


async def test_suppress_policy_sends_the_clip_then_only_keepalives() -> None:
    keepalive = 0.1  # 5 ticks
    loop = asyncio.get_running_loop()
    async with clocked_stream(silence="suppress", keepalive_seconds=keepalive) as (stream,
                                                                                   inbox):
        clip = [bytes([0x10 + i]) * 160 for i in range(10)]
        assert await stream.play([clip]) is True
        deadline = loop.time() + 2.0
        while len(inbox.received) < 13 and loop.time() < deadline:  # the clip, 3 keepalives
            await asyncio.sleep(0.01)
        # A talkspurt after a pause that is not a whole keepalive interval long.
        await asyncio.sleep(0.03)
        assert await stream.play([[b"\x30" * 160, b"\x31" * 160]]) is True
        await asyncio.sleep(0.05)
    packets = [Rtp.parse(*item) for item in inbox.received]
    clip_sent, keepalives, talkspurt = packets[:10], packets[10:13], packets[13:15]
    # The clip: one talkspurt, contiguous numbers and timestamps.
    assert [p.payload[0] for p in clip_sent] == [0x10 + i for i in range(10)]
    assert [p.marker for p in clip_sent] == [True] + [False] * 9
    assert [p.sequence for p in clip_sent] == [(65530 + i) & 0xFFFF for i in range(10)]
    assert [p.timestamp for p in clip_sent] == [160 * i for i in range(10)]
    # Then nothing for 5 ticks at a time but one silence frame: a talkspurt of one packet,
    # the next sequence number, the timestamp 5 ticks on.
    assert [p.payload for p in keepalives] == [bytes([SILENCE]) * 160] * 3
    assert all(p.marker for p in keepalives)
    assert [p.sequence for p in keepalives] == [4, 5, 6]  # 65530 + 10, wrapped
    assert [p.timestamp for p in keepalives] == [1440 + 800, 1440 + 1600, 1440 + 2400]
    spacing = [b.at - a.at for a, b in itertools.pairwise([clip_sent[-1], *keepalives])]
    assert all(0.05 <= gap <= 0.3 for gap in spacing), spacing
    # The next prompt starts a talkspurt too; its timestamp tells how long the pause was.
    assert [p.payload[0] for p in talkspurt] == [0x30, 0x31]
    assert [p.marker for p in talkspurt] == [True, False]
    assert [p.sequence for p in talkspurt] == [7, 8]
    pause = talkspurt[0].timestamp - keepalives[-1].timestamp
    assert pause % 160 == 0 and 160 <= pause < 800
    assert abs(pause / 8000 - (talkspurt[0].at - keepalives[-1].at)) < 0.05
    assert talkspurt[1].timestamp == talkspurt[0].timestamp + 160
    assert len(packets) == 15  # nothing else: no keepalive yet after the second clip


async def test_suppress_policy_tick_by_tick_through_hold_and_a_stalled_loop() -> None:
    """The clock's ticks called one by one (no wall clock): PCMA keepalives, nothing on hold,
    a keepalive at once on resume (the pause was longer than the interval), and ticks the loop
    missed counting towards the interval; timestamps always on the 20 ms grid."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(1.0)
        base = free_udp_pair()
        engine = RtpEngine("127.0.0.1", base, base + 1, keepalive_seconds=0.1)  # 5 ticks
        stream = engine.open_stream()
        assert stream is not None
        stream.start(RtpSession(7, 8, None, sink.getsockname(), initial_sequence=100,
                                initial_timestamp=0), Codec.PCMA, sending=True)
        sent: list[tuple[int, bytes, bool, int, int]] = []  # tick, first octet, marker, seq, ts
        tick = 0

        def ticks(count: int, *, missed: bool = False) -> None:
            nonlocal tick
            for _ in range(count):
                tick += 1
                if missed:
                    stream._skip()
                else:
                    stream._send_next()

        def arrived() -> None:
            sink.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    data = sink.recv(2048)
                    first, second, sequence, timestamp = struct.unpack_from("!BBHI", data)
                    assert first == 0x80 and second & 0x7F == 8 and len(data) == 12 + 160
                    sent.append((timestamp // 160, data[12], bool(second & 0x80), sequence,
                                 timestamp % 160))
            sink.setblocking(True)

        try:
            ticks(5)  # quiet: the 5th tick is a keepalive
            stream.update(None, sending=False)  # hold
            ticks(7)
            stream.update(sink.getsockname(), sending=True)  # resume
            ticks(1)  # quiet for 8 ticks already: a keepalive now
            ticks(5, missed=True)  # the loop stalled: those ticks count as quiet too
            ticks(1)
            assert stream.play([[b"\x11" * 160, b"\x12" * 160]]).done() is False
            ticks(2)
            time.sleep(0.05)
            arrived()
        finally:
            stream.close()
            engine.close()
    silence = Codec.PCMA.silence(1)[0]
    assert silence == 0xD5
    # (tick index from 0, first payload octet, marker, sequence, timestamp off the grid)
    assert sent == [(4, silence, True, 100, 0), (12, silence, True, 101, 0),
                    (18, silence, True, 102, 0),
                    (19, 0x11, False, 103, 0),  # right after the keepalive: no pause, no mark
                    (20, 0x12, False, 104, 0)]


async def test_rtp_engine_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="silence must be"):
        RtpEngine("127.0.0.1", 40000, 40001, silence="comfort-noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keepalive_seconds must be above 0"):
        RtpEngine("127.0.0.1", 40000, 40001, keepalive_seconds=0)


async def test_port_pool_hands_out_the_longest_rested_port_and_skips_busy_ones() -> None:
    base = free_udp_pair()
    pool = RtpPortPool("127.0.0.1", base, base + 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", base))
        first = pool.open()
        assert first is not None and first[1] == base + 1  # base is taken by someone else
        assert pool.open() is None
    pool.release(*first)
    second = pool.open()
    assert second is not None and second[1] == base  # free again, and it rested longer
    third = pool.open()
    assert third is not None and third[1] == base + 1
    assert pool.in_use == 2
    pool.release(*second)
    pool.release(*third)
    assert pool.in_use == 0


def free_udp_range(size: int) -> int:
    """A port p with p..p+size-1 free for UDP on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(30000, 60000 - size)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + size):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {size} free consecutive ports")


async def test_port_pool_draws_at_random_from_the_rested_half() -> None:
    """A call's port cannot be predicted, and a freed port still rests: freed among 37 free
    ports, it is drawn again no sooner than 18 calls later (handed out in order: always 36)."""
    base = free_udp_range(40)
    pool = RtpPortPool("127.0.0.1", base, base + 39)
    orders = []
    for _ in range(2):
        opened = [pool.open() for _ in range(12)]
        orders.append([item[1] for item in opened if item is not None])
        for item in opened:
            assert item is not None
            pool.release(*item)
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])
    in_use = deque(item for item in (pool.open() for _ in range(4)) if item is not None)
    released_at: dict[int, int] = {}
    rests = []
    for opening in range(400):
        sock, port = in_use.popleft()
        pool.release(sock, port)
        released_at[port] = opening
        opened = pool.open()
        assert opened is not None
        if opened[1] in released_at:
            rests.append(opening - released_at[opened[1]])
        in_use.append(opened)
    for item in in_use:
        pool.release(*item)
    assert pool.in_use == 0
    assert min(rests) >= 18
    assert len(set(rests)) > 5  # drawn, not queued


# ---- SIPp, with the real prompts ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sipp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("sipp-ivr")).start()
    yield process
    process.stop()


KEY_MS, GAP_MS = 60, 100  # short presses keep the tests quick; the detectors need >= 40 ms


def make_pcap(path: Path, digits: str, *options: str) -> Path:
    subprocess.run([sys.executable, str(MAKE_PCAP), digits, str(path), "--duration-ms",
                    str(KEY_MS), "--gap-ms", str(GAP_MS), *options], check=True)
    return path


def sipp_dtmf_call(server: ServerProcess, pcap: Path, digits: int, *,
                   scenario: Path = SCENARIO) -> subprocess.CompletedProcess[str]:
    """One call to 1999 that plays `pcap`, then hangs up ~0.8 s after its last key (while
    the digits are read back)."""
    pause_ms = (KEY_MS + GAP_MS) * (digits + 1) + 800
    return subprocess.run(
        ["sipp", server.address, "-sf", str(scenario), "-s", "1999", "-key", "pcap", str(pcap),
         "-d", str(pause_ms), "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()),
         "-mi", "127.0.0.1", "-mp", str(free_port()), "-cp", str(free_port()),
         "-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err"],
        cwd=pcap.parent, capture_output=True, text=True, timeout=40)


def new_log_lines(server: ServerProcess, offset: int) -> list[str]:
    return server.log_text()[offset:].splitlines()


def collected(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.search(r"dtmf-test digits=(\S*)$", line))]


@needs_sipp
@pytest.mark.parametrize(("digits", "options"), [
    ("09011110001", []),
    ("*0123456789ABCD", ["--duplicate", "1.0", "--reorder", "0.3", "--seed", "4"]),
    ("1#", ["--duplicate", "0.5", "--reorder", "0.5", "--seed", "9", "--with-audio"]),
], ids=["events", "duplicated-and-reordered", "with-audio"])
def test_sipp_keys_rfc4733_digits(sipp_server: ServerProcess, tmp_path: Path, digits: str,
                                  options: list[str]) -> None:
    keyed = digits if digits.endswith("#") else f"{digits}#"
    pcap = make_pcap(tmp_path / "digits.pcap", keyed, *options)
    offset = len(sipp_server.log_text())
    done = sipp_dtmf_call(sipp_server, pcap, len(keyed))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = new_log_lines(sipp_server, offset)
    assert collected(lines) == [keyed.removesuffix("#")]
    keys = [line.rsplit(" ", 3)[-3:] for line in lines if "dtmf-test key" in line]
    assert keys == [[key, "by", "rfc4733"] for key in keyed]  # each key once, in order
    assert any("ended: caller hung up" in line for line in lines)


@needs_sipp
def test_sipp_inband_tones(sipp_server: ServerProcess, tmp_path: Path) -> None:
    scenario = SCENARIO.read_text().replace("RTP/AVP 0 101", "RTP/AVP 0")
    scenario = re.sub(r"\n\s*a=(rtpmap|fmtp):101[^\n]*", "", scenario)
    assert "101" not in scenario
    (tmp_path / "uac_inband.xml").write_text(scenario)
    keyed = "09011110001*AD#"
    pcap = make_pcap(tmp_path / "tones.pcap", keyed, "--inband")
    offset = len(sipp_server.log_text())
    done = sipp_dtmf_call(sipp_server, pcap, len(keyed), scenario=tmp_path / "uac_inband.xml")
    assert done.returncode == 0, done.stdout[-2000:]
    lines = new_log_lines(sipp_server, offset)
    assert collected(lines) == ["09011110001*AD"]
    assert all(line.endswith("by inband") for line in lines if "dtmf-test key" in line)


@needs_sipp
def test_sipp_inband_tones_with_telephone_event_offered(sipp_server: ServerProcess,
                                                        tmp_path: Path) -> None:
    """pyVoIP and many gateways offer telephone-event and key tones in the audio."""
    assert "RTP/AVP 0 101" in SCENARIO.read_text()
    keyed = "09011110001*AD#"
    pcap = make_pcap(tmp_path / "tones.pcap", keyed, "--inband")
    offset = len(sipp_server.log_text())
    done = sipp_dtmf_call(sipp_server, pcap, len(keyed))
    assert done.returncode == 0, done.stdout[-2000:]
    lines = new_log_lines(sipp_server, offset)
    assert any("answered: PCMU+events" in line for line in lines)
    assert collected(lines) == ["09011110001*AD"]
    keys = [line.rsplit(" ", 3)[-3:] for line in lines if "dtmf-test key" in line]
    assert keys == [[key, "by", "inband"] for key in keyed]


@needs_sipp
def test_sipp_keys_sent_both_as_events_and_tones_count_once(sipp_server: ServerProcess,
                                                            tmp_path: Path) -> None:
    """Each key as RFC 4733 events and as its tone in the audio beside them; keys repeated
    at the keypad's pace still count once per press."""
    keyed = "5599*#"
    pcap = make_pcap(tmp_path / "both.pcap", keyed, "--both")
    offset = len(sipp_server.log_text())
    done = sipp_dtmf_call(sipp_server, pcap, len(keyed))
    assert done.returncode == 0, done.stdout[-2000:]
    lines = new_log_lines(sipp_server, offset)
    assert collected(lines) == ["5599*"]
    keys = [line.rsplit(" ", 3)[-3:] for line in lines if "dtmf-test key" in line]
    assert keys == [[key, "by", "rfc4733"] for key in keyed]  # the event came first, each time
