"""Linphone's console client (`linphonec`) as a headless phone, one HOME per test.

A test writes a linphonerc (`write_linphonerc`: registered to a server, or no account at all
for calls straight to a URI) and runs `LinphoneConsole` on it. linphonec reads commands on
stdin and says what happens on stdout; the SIP and media details are in its log file:

    command (sent by the methods here)     what linphonec prints (waited for with `wait_for`)
    call URI                               Establishing call id to URI, assigned id N
                                           Call N to URI in progress. / ringing. / early media.
                                           Call N with URI connected.  / error.
    answer [N]   (or auto_answer=True)     Receiving new incoming call from FROM, assigned id N
                                           Call N with FROM connected.
    terminate [N]                          Call N with PEER ended (REASON).
    pause / resume                         Call N with PEER is now paused. / Resuming call N ...
    one digit a line (in a call)           RFC 2833 telephone-event; received ones print
                                           "Receiving tone D from PEER"
    calls                                  a table: Id | Destination | State (StreamsRunning...)
    Media streams established with PEER for call N (audio).

Media: there is no sound card here, and without one linphonec receives RTP but sends none.
So the console switches to "files" (`soundcard use files`) and plays a WAV tone into every
call (`play FILE`); `record FILE` keeps what it hears. The log (level 6) then shows, once a
second, "Bandwidth usage ... RTP : [d=DOWN,u=UP] (kbits/sec)" while a call's audio runs,
"RtpSession ... sending to rtp [::ffff:IP]:PORT" (where its RTP goes), and, when a stream
stops, "AUDIO SESSION'S RTP STATISTICS" with the packets it sent and received: `media()`
reads them.

Quirks met (linphonec 5.1.65):
- At the end of its stdin it does not exit: it spins on the closed input. Always send quit.
- On quit it unregisters (REGISTER with Expires: 0) and rewrites its linphonerc.
- It prints no SIP status for a failed call ("Call N with ... error."); `last_final_status`
  reads it from the log.
- With an account, every call goes to the account's proxy, whatever host the URI names.
- Without an account it offered the host's IPv6 (then its default-route IPv4) address in
  From and SDP; the template pins IPv4 and 127.0.0.1 (use_ipv6, ipv6_migration_done,
  [rtp] bind_address, guess_hostname=0 and an explicit contact).
- "No sound card" errors in the log ("Could not find a suitable soundcard") are harmless.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from ..support import free_port
from .child import ChildProcess

TEMPLATE = Path(__file__).with_name("linphonerc.template")
# "registered, identity=sip:... duration=300"; not "registered=-1" (not yet) nor "unregistered".
REGISTERED = re.compile(r"(?<![a-z])registered, identity=")
ACCOUNT = Template("""
[proxy_0]
reg_proxy=<sip:127.0.0.1:$server_port;transport=udp>
reg_identity=$identity
reg_expires=300
reg_sendregister=1
publish=0
dial_escape_plus=0

[auth_info_0]
username=$number
passwd=$password
realm=$realm
domain=$realm
""")
LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} ", re.MULTILINE)
BANDWIDTH = re.compile(r"RTP : \[d=([\d.]+),u=([\d.]+)\]")
# "sending to rtp 127.0.0.1:4000 rtcp ..." (IPv4 socket) or "[::ffff:127.0.0.1]:4000" (IPv6)
SENDING_TO = re.compile(r"RtpSession \[\w+\] sending to rtp \[?(?:::ffff:)?([^\]\s]+?)\]?:(\d+) ")
STATISTICS = re.compile(r"AUDIO SESSION'S RTP STATISTICS.*?sent\s+(\d+) packets.*?"
                        r"received\s+(\d+) packets", re.DOTALL)
RECEIVED_STATUS = re.compile(r"received \[\d+\] new bytes from \[[^\]]+\]:\nSIP/2\.0 (\d{3}) ")
CALL_ID = re.compile(r"assigned id (\d+)")


@dataclass(slots=True, frozen=True)
class LinphoneConfig:
    home: Path
    path: Path
    sip_port: int  # the UDP port its Contact names
    tone: Path  # the WAV it plays into its calls

    @property
    def uri(self) -> str:
        """Where to call it directly (any user part reaches it)."""
        return f"sip:linphone@127.0.0.1:{self.sip_port}"


def write_tone_wav(path: Path, frequency: int, seconds: float = 60.0) -> Path:
    """8 kHz 16-bit mono sine at -12 dBFS: linphonec plays it into its calls."""
    amplitude = 8000
    samples = [round(amplitude * math.sin(2 * math.pi * frequency * n / 8000))
               for n in range(8000)]  # one second; whole periods for any whole frequency
    second = struct.pack(f"<{len(samples)}h", *samples)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(second * int(seconds))
    return path


def write_linphonerc(home: Path, server_port: int | None, number: str, password: str = "",
                     realm: str = "", *, display: str = "", tone: int = 800) -> LinphoneConfig:
    """A linphonerc with free local ports that registers `number` to
    127.0.0.1:`server_port` (digest, realm `realm`), or, with `server_port` None, has no
    account: it is called at its `uri` and calls URIs directly, as `number` at 127.0.0.1."""
    # Without this directory linphonec cannot open its call-log database.
    (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
    sip_port = free_port()
    name = f'"{display}" ' if display else ""
    if server_port is None:
        account, default_proxy, guess_hostname = "", -1, 0
        contact = f"{name}<sip:{number}@127.0.0.1>"
    else:
        identity = f"{name}<sip:{number}@{realm}>" if display else f"sip:{number}@{realm}"
        account = ACCOUNT.substitute(server_port=server_port, identity=identity, number=number,
                                     password=password, realm=realm)
        default_proxy, guess_hostname = 0, 1
        contact = f"{name}<sip:{number}@127.0.0.1>"
    text = Template(TEMPLATE.read_text()).substitute(
        sip_port=sip_port, sip_tcp_port=free_port(), audio_rtp_port=free_port(),
        video_rtp_port=free_port(), text_rtp_port=free_port(), home=home,
        default_proxy=default_proxy, guess_hostname=guess_hostname, contact=contact,
        account=account)
    path = home / "linphonerc"
    path.write_text(text)
    return LinphoneConfig(home, path, sip_port, write_tone_wav(home / "tone.wav", tone))


@dataclass(slots=True)
class LinphoneMedia:
    """What linphonec's log says about its audio since it started."""

    bandwidth: list[tuple[float, float]] = field(default_factory=list)  # (down, up) kbit/s
    remote_rtp: str = ""  # the last address:port it sent RTP to
    sent: int = 0  # RTP packets of the streams that have stopped
    received: int = 0

    @property
    def flowing_both_ways(self) -> bool:
        """A once-a-second report saw audio going out and coming in."""
        return any(down > 0 and up > 0 for down, up in self.bandwidth)


class LinphoneConsole:
    """linphonec -c CONFIG reading commands on stdin; its SIP and media log goes to
    linphone.log. It answers calls itself with `auto_answer`, else on `answer()`."""

    def __init__(self, config: LinphoneConfig, *, auto_answer: bool = False,
                 record: Path | None = None) -> None:
        self.config = config
        self.log_path = config.home / "linphone.log"
        env = dict(os.environ, HOME=str(config.home))
        self.child = ChildProcess(
            ["linphonec", "-c", config.path, "-S", "-d", "6", "-l", self.log_path],
            name="linphonec", stderr_path=config.home / "linphonec.stderr", cwd=config.home,
            env=env)
        self.command("soundcard use files", "Using wav files instead of soundcard")
        self.child.send(f"play {config.tone}")  # silent on success
        if record is not None:
            self.child.send(f"record {record}")
        if auto_answer:
            self.command("autoanswer enable", "Auto answer enabled")

    def command(self, line: str, answer: str, timeout: float = 10) -> str:
        """Send `line`; the first output line containing `answer`."""
        self.child.send(line)
        return self.child.wait_for(lambda said: answer in said, timeout, repr(answer))

    def wait_for(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The next output line matching the regular expression `pattern`."""
        compiled = re.compile(pattern)
        line = self.child.wait_for(lambda said: compiled.search(said) is not None, timeout,
                                   f"a line matching {pattern!r}")
        match = compiled.search(line)
        assert match is not None
        return match

    def wait_registered(self, timeout: float) -> str:
        """Ask `status register` until it says registered; the line that said so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.child.process.poll() is not None:
                break
            self.child.send("status register")
            answer_by = min(deadline, time.monotonic() + 0.5)
            while (line := self.child.read_line(answer_by)) is not None:
                if REGISTERED.search(line):
                    return line
        raise AssertionError(self.child.failure(f"not registered within {timeout:g} s")
                             + f"\n--- SIP log: {self.log_path}")

    def call(self, uri: str) -> int:
        """Dial `uri`; linphonec's id of the call."""
        return int(self.command(f"call {uri}", "Establishing call id to").rsplit(" ", 1)[1])

    def incoming(self, timeout: float = 10) -> tuple[int, str]:
        """The next incoming call: (its id, the From as linphonec shows it)."""
        match = self.wait_for(r"Receiving new incoming call from (.*), assigned id (\d+)",
                              timeout)
        return int(match.group(2)), match.group(1)

    def answer(self, call: int | None = None) -> None:
        self.child.send("answer" if call is None else f"answer {call}")

    def terminate(self, call: int | None = None) -> None:
        self.child.send("terminate" if call is None else f"terminate {call}")

    def send_digits(self, digits: str) -> None:
        """Key digits in the current call, as RFC 2833 events (one command a digit)."""
        for digit in digits:
            self.child.send(digit)

    def call_states(self) -> dict[int, str]:
        """`calls`: each call's id and liblinphone state (IncomingReceived, OutgoingRinging,
        StreamsRunning, Paused...); empty when there is none."""
        self.child.send("calls")
        line = self.child.wait_for(
            lambda said: "No active call" in said or "Call states" in said, 5, "call table")
        if "No active call" in line:
            return {}
        states: dict[int, str] = {}
        while (row := self.child.read_line(time.monotonic() + 0.3)) is not None:
            cells = [cell.strip() for cell in row.split("|")]
            if len(cells) >= 3 and cells[0].isdigit():
                states[int(cells[0])] = cells[2]
            elif states and not row.startswith("-"):
                break
        return states

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def media(self) -> LinphoneMedia:
        log = self.log_text()
        report = LinphoneMedia(
            bandwidth=[(float(d), float(u)) for d, u in BANDWIDTH.findall(log)])
        if targets := SENDING_TO.findall(log):
            report.remote_rtp = ":".join(targets[-1])
        for sent, received in STATISTICS.findall(log):
            report.sent += int(sent)
            report.received += int(received)
        return report

    def wait_for_audio(self, timeout: float = 10) -> LinphoneMedia:
        """The media report once a once-a-second report saw audio both ways."""
        deadline = time.monotonic() + timeout
        while not (report := self.media()).flowing_both_ways:
            if time.monotonic() > deadline:
                raise AssertionError(self.child.failure(f"no audio both ways: {report}")
                                     + f"\n--- log: {self.log_path}")
            time.sleep(0.2)
        return report

    def last_final_status(self) -> int | None:
        """The status of the last final response (>= 200) linphonec received, from its log:
        it prints only "error." for a failed call."""
        statuses = [int(code) for code in RECEIVED_STATUS.findall(self.log_text())
                    if int(code) >= 200]
        return statuses[-1] if statuses else None

    def quit(self, timeout: float) -> int:
        """`quit`: linphonec unregisters (Expires: 0) and exits; its exit code."""
        self.child.send("quit")
        self.child.wait_for(lambda line: "Terminating" in line, timeout, "'Terminating...'")
        return self.child.finish(timeout)

    def close(self) -> None:
        """Quit and reap it: at the end of its input linphonec keeps running (spinning)."""
        if self.child.exit_code is None and self.child.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):  # it has gone already
                self.child.send("quit")
        self.child.finish(timeout=5)
