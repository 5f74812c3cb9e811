"""The service menus over real sockets (issue 10 acceptance), with the server in this process
(`softswitch.app.start`) so that its counters of calls, flow tasks and RTP ports can be read,
and short test prompts (tests/test_ivr_calls.py: 60 ms each). The phone is written by hand:
it authenticates its INVITEs (407, digest) as a subscriber for the dial codes, or calls the
remote-access number unauthenticated, and keys RFC 4733 telephone-events over RTP (SIP INFO
where said). After each path the subscriber's state is read as `softswitch show --json` prints
it (Store.subscriber_state; the CLI itself where the test says so).

The real prompts, SIPp and PJSUA2 are in tests/test_flows_peers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from softswitch.app import Server
from softswitch.config import load_config
from softswitch.media.g711 import Codec
from softswitch.media.session import RtpSession
from softswitch.media.wav import g711_wav
from softswitch.sip.digest import authorization, parse_digest

from .support import DOMAIN, SUBSCRIBERS, in_process_server, softswitch
from .test_ivr_calls import (
    Dialog,
    Message,
    Phone,
    free_udp_range,
    sdp_offer,
    settled,
    write_test_prompts,
)

D1, D2, A_OPTION, DATA = (s["number"] for s in SUBSCRIBERS)
PASSWORDS = {s["number"]: str(s.get("sip_password", "")) for s in SUBSCRIBERS}
PIN = "1234"  # pin.default
IDLE = {"calls": 0, "flows": 0, "rtp_ports": 0, "byes": 0}
VOICE = bytes([0x10]) * 160  # a loud μ-law frame


def write_server_config(directory: Path, store: Path) -> Path:
    """The test config as shipped but for the addresses, the store, the short test prompts and
    where files go (under `directory`, not the working directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    rtp = free_udp_range(10)
    document = {
        "sip": {"listen": ["127.0.0.1:0"], "domain": DOMAIN},
        "store": {"url": f"sqlite+aiosqlite:///{store}"},
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + 9,
                  "prompts_dir": str(write_test_prompts(directory / "prompts"))},
        "services": {"voicemail": {"audio_dir": str(store.parent / "voicemail")}},
        "calls": {"cdr_file": str(directory / "cdr.jsonl")},
        "subscribers": SUBSCRIBERS,
        "log_level": "debug",
    }
    path = directory / "softswitch.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


@dataclass
class Switch:
    server: Server
    config: Path

    @property
    def port(self) -> int:
        return next(a.port for kind, a in self.server.stack.bound if kind == "udp")

    async def state(self, number: str = D1) -> dict[str, Any]:
        """What `softswitch show NUMBER --json` prints."""
        await self.server.services.last_caller.drain()
        state = await self.server.store.subscriber_state(number)
        assert state is not None
        return state

    async def eventually(self, check: Callable[[dict[str, Any]], bool],
                         number: str = D1) -> dict[str, Any]:
        """The state once `check` holds (the flow acts on keys as they arrive)."""
        for _ in range(250):
            state = await self.state(number)
            if check(state):
                return state
            await asyncio.sleep(0.02)
        raise AssertionError(f"not so: {state}")

    async def idle(self) -> None:
        assert await settled(self.server.calls) == IDLE


@contextlib.asynccontextmanager
async def open_switch(directory: Path, store: Path) -> AsyncIterator[Switch]:
    config = load_config(write_server_config(directory, store))
    async with in_process_server(config) as server:
        yield Switch(server, directory / "softswitch.yaml")


@pytest.fixture
async def switch(tmp_path: Path) -> AsyncIterator[Switch]:
    async with open_switch(tmp_path, tmp_path / "softswitch.db") as opened:
        yield opened


# ---- the phone ------------------------------------------------------------------------------
@dataclass
class Caller(Phone):
    """The hand-written phone of tests/test_ivr_calls.py, calling as `user` (a subscriber,
    with digest credentials) or as nobody in particular."""

    user: str = "caller"
    extra: list[str] = field(default_factory=list)

    def request(self, dialog: Dialog, method: str, *, body: str = "", content_type: str = "",
                cseq: int | None = None, branch: str | None = None) -> str:
        text = super().request(dialog, method, body=body, content_type=content_type,
                               cseq=cseq, branch=branch)
        text = text.replace("From: <sip:caller@", f"From: <sip:{self.user}@", 1)
        for header in self.extra:
            text = text.replace("Content-Length:", f"{header}\r\nContent-Length:", 1)
        return text

    async def invite(self, number: str) -> tuple[Dialog, Message]:
        """INVITE `number`, answering a 407 with the credentials of `user`: the dialog and
        the final answer (the 2xx not ACKed yet)."""
        dialog = Dialog(call_id=f"call-{random.getrandbits(40):x}", from_tag="caller",
                        number=number)
        dialog.invite_branch = f"z9hG4bK-{dialog.call_id}-1"
        body = sdp_offer(self.rtp_port, address=self.host)
        self.send(self.request(dialog, "INVITE", body=body, content_type="application/sdp",
                               branch=dialog.invite_branch))
        answer = await self.provisional_skipped()
        if answer.status == 407 and self.user in PASSWORDS:
            dialog.to_tag = answer.to_tag
            self.send(self.request(dialog, "ACK", cseq=1, branch=dialog.invite_branch))
            challenge = parse_digest(answer.header("proxy-authenticate"))
            assert challenge is not None
            uri = f"sip:{number}@127.0.0.1:{self.server_port}"
            dialog.to_tag, dialog.cseq = "", 2
            dialog.invite_branch = f"z9hG4bK-{dialog.call_id}-2"
            self.extra = ["Proxy-Authorization: " + authorization(
                challenge, "INVITE", uri, self.user, PASSWORDS[self.user], "c0ffee", 1)]
            self.send(self.request(dialog, "INVITE", body=body, content_type="application/sdp",
                                   branch=dialog.invite_branch))
            self.extra = []
            answer = await self.provisional_skipped()
        dialog.to_tag = answer.to_tag
        if answer.status is not None and answer.status >= 300:  # its ACK: hop by hop
            self.send(self.request(dialog, "ACK", cseq=dialog.cseq,
                                   branch=dialog.invite_branch))
        return dialog, answer

    async def provisional_skipped(self) -> Message:
        while True:
            message = await self.receive()
            if message.status is None or message.status >= 200:
                return message

    async def dial(self, number: str) -> Line:
        """A call to `number` the server answers."""
        dialog, answer = await self.invite(number)
        assert answer.status == 200, answer.start
        self.ack(dialog, cseq=dialog.cseq)
        return Line(self, dialog, RtpSession(random.getrandbits(32), 0, 101,
                                             ("127.0.0.1", answer.media_port)))


@dataclass
class Line:
    """One answered call, keyed from the phone's RTP socket."""

    phone: Caller
    dialog: Dialog
    rtp: RtpSession

    def _send(self, packet: bytes) -> None:
        assert self.rtp.remote is not None
        self.phone.rtp.sendto(packet, self.rtp.remote)

    async def keys(self, keys: str) -> None:
        """RFC 4733 events, one key after another ("," waits a while)."""
        for key in keys:
            if key == ",":
                await asyncio.sleep(0.3)
                continue
            for packet in self.rtp.send_dtmf(key, duration_ms=60):
                self._send(packet)
            await asyncio.sleep(0.04)

    async def info_keys(self, keys: str) -> None:
        """The keys as SIP INFO (application/dtmf-relay), each answered 200."""
        for key in keys:
            response = await self.phone.in_dialog(
                self.dialog, "INFO", body=f"Signal={key}\r\nDuration=100\r\n",
                content_type="application/dtmf-relay")
            assert response.status == 200

    async def speak(self, seconds: float) -> None:
        """Voice into the call, frame by frame at the 20 ms pace."""
        for _ in range(int(seconds * 50)):
            self._send(self.rtp.next_frame(VOICE))
            await asyncio.sleep(0.02)

    async def hang_up(self) -> None:
        """BYE, answered 200 (a BYE of the server's crossing ours is answered too)."""
        self.dialog.cseq += 1
        self.phone.send(self.phone.request(self.dialog, "BYE"))
        while True:
            message = await self.phone.receive()
            if message.method == "BYE":
                self.phone.ok(message)
            elif message.header("cseq") == f"{self.dialog.cseq} BYE":
                assert message.status in (200, 481), message.start
                return

    async def ended_by_server(self, timeout: float = 10.0) -> None:
        """The flow said its piece and hung up: its BYE, answered."""
        await self.phone.answer_bye(timeout)


@pytest.fixture
async def phones(switch: Switch) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Caller] = []

    async def open_phone(user: str = "caller", host: str = "127.0.0.1") -> Caller:
        phone = await Caller.open(switch.port, host=host)
        phone.user = user
        opened.append(phone)
        return phone

    yield open_phone
    for phone in opened:
        phone.close()


async def leave_message(switch: Switch, caller: str) -> None:
    path = switch.config.parent / f"message-{random.getrandbits(32):x}.wav"
    path.write_bytes(g711_wav(Codec.PCMU, VOICE * 50))
    await switch.server.services.voicemail.store_message(D1, caller, path, 1.0)


# ---- every menu path, and what `show` says after it -------------------------------------------
async def test_1442_registers_the_last_caller_whose_next_call_is_refused(
        switch: Switch, phones: Callable[..., Any]) -> None:
    d1, d2 = await phones(D1), await phones(D2)
    first = await d2.dial(D1)  # D1 has no phone: voicemail answers; D2 is D1's last caller
    await first.hang_up()
    assert (await switch.state())["last_caller"] == D2
    line = await d1.dial("1442")
    await line.keys(f"{PIN}#")
    await line.ended_by_server()
    assert (await switch.state())["blocklist"] == [D2]
    _, refused = await d2.invite(D1)
    assert refused.status == 603 and "cause=603" in refused.header("reason")
    await switch.idle()


async def test_144_register_count_delete_last_and_delete_all(switch: Switch,
                                                             phones: Callable[..., Any]) -> None:
    line = await (await phones(D1)).dial("144")
    await line.keys(f"{PIN}#1{D2}#2{A_OPTION}#1")  # key it again, then confirm
    await switch.eventually(lambda s: s["blocklist"] == [A_OPTION])
    await line.keys(f"1{D2}#1")
    await switch.eventually(lambda s: s["blocklist"] == [A_OPTION, D2])
    await line.keys("23")  # the count, then delete the last
    await switch.eventually(lambda s: s["blocklist"] == [A_OPTION])
    await line.keys("42")  # delete all, not confirmed
    await line.keys(f"1{D2}#1")
    await switch.eventually(lambda s: s["blocklist"] == [A_OPTION, D2])
    await line.keys("41")
    await switch.eventually(lambda s: s["blocklist"] == [])
    await line.hang_up()
    await switch.idle()


async def test_144_a_duplicate_and_the_limit_of_30_change_nothing(
        switch: Switch, phones: Callable[..., Any]) -> None:
    for index in range(29):
        await switch.server.services.blocklist.add(D1, f"0501234{index:04d}")
    line = await (await phones(D1)).dial("144")
    await line.keys(f"{PIN}#105012340000#1")  # already on the list
    await line.keys(f"1{D2}#1")  # the 30th
    full = await switch.eventually(lambda s: len(s["blocklist"]) == 30)
    assert full["blocklist"][-1] == D2 and full["blocklist"].count("05012340000") == 1
    await line.hang_up()
    await switch.idle()
    # The 31st is refused before any number is asked for: test_ivr_flows.py hears
    # "blocklist_full" said and the list unchanged.


async def test_1411_1410_voicemail_on_and_off(switch: Switch,
                                             phones: Callable[..., Any]) -> None:
    phone = await phones(D1)
    for code, enabled in (("1410", False), ("1411", True)):
        line = await phone.dial(code)
        await line.ended_by_server()
        assert (await switch.state())["voicemail"]["enabled"] is enabled
    await switch.idle()


async def test_1417_playback_save_and_delete(switch: Switch,
                                             phones: Callable[..., Any]) -> None:
    await leave_message(switch, D2)
    await leave_message(switch, A_OPTION)
    line = await (await phones(D1)).dial("1417")
    await line.keys("97")  # save the first, delete the second
    state = await switch.eventually(lambda s: s["voicemail"]["saved"] == 1
                                    and len(s["voicemail"]["messages"]) == 1)
    assert state["voicemail"]["messages"][0]["caller"] == D2
    await line.ended_by_server()  # no saved messages when the call began: the end
    await switch.idle()


async def test_1419_ring_time_and_personal_greeting(switch: Switch,
                                                    phones: Callable[..., Any]) -> None:
    line = await (await phones(D1)).dial("1419")
    await line.keys("125#1")
    await switch.eventually(lambda s: s["voicemail"]["ring_time"] == 25)
    await line.keys("2")
    await asyncio.sleep(0.4)  # the intro and the tone, then the recording
    await line.speak(1.0)
    await line.keys("#,1")
    await switch.eventually(lambda s: s["voicemail"]["greeting"] is True)
    greetings = list((switch.config.parent / "voicemail" / D1).glob("greeting-*.wav"))
    assert len(greetings) == 1
    await line.keys("3")
    await switch.eventually(lambda s: s["voicemail"]["greeting"] is False)
    assert not greetings[0].exists()
    await line.hang_up()
    await switch.idle()


async def test_1421_1420_1429_forwarding(switch: Switch, phones: Callable[..., Any]) -> None:
    phone = await phones(D1)
    line = await phone.dial("1421")
    await line.keys(f"{D2}#1")
    await line.ended_by_server()
    assert (await switch.state())["forwarding"] == {"enabled": True, "destination": D2,
                                                    "mode": "no_answer"}
    line = await phone.dial("1420")
    await line.ended_by_server()
    assert (await switch.state())["forwarding"]["enabled"] is False
    line = await phone.dial("1429")
    await line.keys(f"1{A_OPTION}#1")
    await switch.eventually(lambda s: s["forwarding"]["destination"] == A_OPTION)
    await line.keys("21")
    await switch.eventually(lambda s: s["forwarding"]["mode"] == "immediate")
    await line.keys("31")
    await switch.eventually(lambda s: s["remote_control"]["enabled"] is True)
    await line.keys("32")
    await switch.eventually(lambda s: s["remote_control"]["enabled"] is False)
    await line.hang_up()
    await switch.idle()


async def test_remote_control_from_an_unregistered_caller_and_the_next_call(
        switch: Switch, phones: Callable[..., Any]) -> None:
    services = switch.server.services
    await services.remote_control.set_enabled(D1, True)
    await services.forwarding.configure(D1, destination=A_OPTION, mode="immediate",
                                        enabled=True)
    await services.voicemail.set_enabled(D1, False)
    line = await (await phones()).dial("1400")  # no credentials: a public number
    await line.keys(f"{D1}#{PIN}#91")  # forwarding off, voicemail on
    state = await switch.eventually(lambda s: s["voicemail"]["enabled"] is True)
    assert state["forwarding"]["enabled"] is False
    await line.hang_up()
    # The next call to D1 is not forwarded: D1 has no phone, so voicemail answers it.
    call = await (await phones(D2)).dial(D1)
    await call.speak(1.0)
    await call.hang_up()
    state = await switch.eventually(lambda s: s["voicemail"]["new"] == 1)
    assert state["voicemail"]["messages"][0]["caller"] == D2
    await switch.idle()


# ---- failures, limits and leaks -----------------------------------------------------------------
async def test_three_failed_remote_logins_end_the_call(switch: Switch,
                                                       phones: Callable[..., Any]) -> None:
    await switch.server.services.remote_control.set_enabled(D1, True)
    line = await (await phones()).dial("1400")
    await line.keys(f"{D1}#7305#{D1}#8416#{D1}#9527#")
    await line.ended_by_server()
    state = await switch.state()
    assert state["pin"]["failures"] == 3 and state["remote_control"]["enabled"] is True
    await switch.idle()


async def test_hanging_up_at_each_step_over_sockets_leaks_nothing_and_changes_nothing(
        switch: Switch, phones: Callable[..., Any]) -> None:
    await switch.server.services.remote_control.set_enabled(D1, True)

    async def state() -> dict[str, Any]:  # a PIN check cut short counts as a failure
        return {k: v for k, v in (await switch.state()).items() if k != "pin"}

    before = await state()
    keys = f"{D1}#{PIN}#8{D2}#1"
    phone = await phones()
    for cut in (0, 5, len(D1) + 1, len(D1) + 3, len(D1) + 6, len(D1) + 7, len(D1) + 12,
                len(keys) - 1):
        line = await phone.dial("1400")
        await line.keys(keys[:cut])
        await asyncio.sleep(0.2)
        await line.hang_up()
        await switch.idle()
        assert await state() == before, f"hung up after {keys[:cut]!r}"
    line = await phone.dial("1400")
    await line.keys(keys)
    await switch.eventually(lambda s: s["forwarding"]["enabled"] is True)
    await line.hang_up()
    await switch.idle()


async def test_five_wrong_pins_lock_even_the_right_pin_until_the_cli_unlocks(
        switch: Switch, phones: Callable[..., Any]) -> None:
    phone = await phones(D1)
    line = await phone.dial("144")
    await line.keys("7305#8416#9527#")
    await line.ended_by_server()
    line = await phone.dial("144")
    await line.keys("6038#5149#")  # the fifth locks
    await line.ended_by_server()
    line = await phone.dial("144")
    await line.keys(f"{PIN}#")  # the right PIN: refused, locked
    await line.ended_by_server()
    state = await switch.state()
    assert state["pin"] == {"locked": True, "failures": 5, "pending_change": False,
                            "pending_apply_at": None}
    unlocked = await asyncio.to_thread(softswitch, "pin", "unlock", D1, "--config",
                                       str(switch.config))
    assert unlocked.returncode == 0, unlocked.stderr
    line = await phone.dial("144")
    await line.keys(f"{PIN}#1{D2}#1")
    await switch.eventually(lambda s: s["blocklist"] == [D2])
    await line.hang_up()
    shown = await asyncio.to_thread(softswitch, "show", D1, "--json", "--config",
                                    str(switch.config))
    assert '"pin": {"locked": false, "failures": 0' in shown.stdout
    await switch.idle()


async def test_one_source_trying_many_numbers_is_throttled_another_is_served(
        switch: Switch, phones: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    await switch.server.services.remote_control.set_enabled(D1, True)
    sweeper = await phones()
    numbers = [D1, D2, A_OPTION, "09012340000"]
    for call in range(4):  # three tries a call, never twice on one number in a row
        line = await sweeper.dial("1400")
        await line.keys("".join(f"{numbers[(call + n) % 4]}#0{call}{n}0#" for n in range(3)))
        await line.ended_by_server()
    throttled = [r.getMessage() for r in caplog.records if "result=throttled" in r.getMessage()]
    assert len(throttled) == 2 and all("source=udp:127.0.0.1:" in t for t in throttled)
    line = await (await phones(host="127.0.0.2")).dial("1400")
    await line.keys(f"{D1}#{PIN}#2")  # served: voicemail off
    await switch.eventually(lambda s: s["voicemail"]["enabled"] is False)
    await line.hang_up()
    assert re.search(r"pin-ok source=udp:127\.0\.0\.2:\d+ number=" + D1, caplog.text)
    await switch.idle()


async def test_two_instances_on_one_store_cannot_exceed_the_lock_count(
        switch: Switch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from softswitch.services import pin as pin_module

    checked: list[str] = []  # PINs checked against the subscriber's own hash (not the decoy)
    real_check = pin_module._check  # noqa: SLF001

    async def counting_check(pin: str, pin_hash: str | None) -> bool:
        if pin_hash is not None:
            checked.append(pin)
        return await real_check(pin, pin_hash)

    monkeypatch.setattr(pin_module, "_check", counting_check)
    await switch.server.services.remote_control.set_enabled(D1, True)
    async with open_switch(tmp_path / "second", tmp_path / "softswitch.db") as other:
        phones = [await Caller.open(s.port, host=host) for s in (switch, other)
                  for host in ("127.0.0.1", "127.0.0.2")]
        lines = await asyncio.gather(*(phone.dial("1400") for phone in phones))
        await asyncio.gather(*(line.keys(f"{D1}#7{n}05#{D1}#8{n}16#{D1}#9{n}27#")
                               for n, line in enumerate(lines)))
        await asyncio.gather(*(line.ended_by_server() for line in lines))
        for phone in phones:
            phone.close()
        await other.idle()
    # Twelve wrong PINs, four calls at once through two instances: pin.max_failures of them
    # were checked, the rest refused as locked unchecked.
    assert len(checked) == 5
    state = await switch.state()
    assert state["pin"]["failures"] == 5 and state["pin"]["locked"] is True
    await switch.idle()


async def test_a_pin_keyed_as_sip_info_is_not_in_the_debug_trace(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "softswitch")  # before the start: the SIP trace is on
    async with open_switch(tmp_path, tmp_path / "softswitch.db") as switch:
        phone = await Caller.open(switch.port)
        try:
            await switch.server.services.remote_control.set_enabled(D1, True)
            line = await phone.dial("1400")
            await line.info_keys(f"{D1}#7305#")  # wrong
            await line.info_keys(f"{D1}#{PIN}#2")
            await switch.eventually(lambda s: s["voicemail"]["enabled"] is False)
            await line.hang_up()
            await switch.idle()
        finally:
            phone.close()
    trace = "\n".join(r.getMessage() for r in caplog.records)
    assert "INFO sip:1400@" in trace and "(a key: not logged)" in trace  # the trace was on
    assert not re.search(r"Signal=[0-9]", trace)
    for pin in ("7305", PIN):
        assert not re.search(rf"(?<![0-9]){pin}(?![0-9])", trace), pin
