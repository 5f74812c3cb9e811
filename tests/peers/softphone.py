"""The test side of tests/peers/pjsua2_softphone.py: start one, send it commands, await its
reports by kind and by field. A report read while awaiting another is kept for a later
`expect`, so a test need not know in which order a phone reports its call state and its media
(that order is pjsua's business), and each report is taken once."""

from __future__ import annotations

import array
import contextlib
import json
import math
import sys
import time
import wave
from collections.abc import Iterable, Sequence
from pathlib import Path

from .child import ChildProcess

SCRIPT = Path(__file__).with_name("pjsua2_softphone.py")


class Softphone:
    """One PJSUA2 phone in a child process. Without `server` (HOST:PORT) it registers nowhere
    and is called by `uri`; with it, it registers `user` (digest, realm `domain`) there unless
    `register=False`, and answers a 407 to its INVITEs with the same credentials. SIP on
    `sip_port` and RTP from `rtp_port` (0: any free port)."""

    def __init__(self, directory: Path, name: str, user: str, *, server: str = "",
                 password: str = "", domain: str = "", display: str = "",
                 incoming: int = 200, tone: int = 440, register: bool = True,
                 record: bool = False, sip_port: int = 0, rtp_port: int = 0,
                 rtp_ports: int = 40, extra: tuple[str, ...] = ()) -> None:
        self.name = name
        args: list[str | Path] = [sys.executable, SCRIPT, "--log", directory / f"{name}.log",
                                  "--user", user, "--incoming", str(incoming),
                                  "--tone", str(tone), "--sip-port", str(sip_port),
                                  "--rtp-port", str(rtp_port), "--rtp-ports", str(rtp_ports)]
        if display:
            args += ["--display", display]
        if server:
            args += ["--server", server, "--password", password, "--domain", domain]
            if not register:
                args.append("--no-register")
        if record:
            recordings = directory / f"{name}-recordings"
            recordings.mkdir(exist_ok=True)
            args += ["--record-dir", recordings]
        args += list(extra)
        self.child = ChildProcess(args, name=name, stderr_path=directory / f"{name}.stderr")
        self.backlog: list[dict[str, object]] = []  # reports read, not yet expected
        started = self.child.expect_event("started", timeout=15)
        self.sip_port = int(str(started["sip_port"]))
        self.uri = str(started["uri"])  # sip:USER@127.0.0.1:PORT, for direct calls

    def send(self, command: str) -> None:
        self.child.send(command)

    def expect(self, event: str, timeout: float = 10, **fields: object) -> dict[str, object]:
        """The first report not taken yet of kind `event` whose fields have these values."""
        def matches(report: dict[str, object]) -> bool:
            return report.get("event") == event and all(
                report.get(key) == value for key, value in fields.items())

        for index, report in enumerate(self.backlog):
            if matches(report):
                return self.backlog.pop(index)
        deadline = time.monotonic() + timeout
        while (line := self.child.read_line(deadline)) is not None:
            if not line.startswith("{"):
                continue  # pjsua's banner before its log goes to the file
            report = json.loads(line)
            if matches(report):
                return report
            self.backlog.append(report)
        described = ", ".join(f"{key}={value!r}" for key, value in fields.items())
        raise AssertionError(self.child.failure(
            f"no {event!r} report ({described}) within {timeout:g} s"))

    def registered(self, timeout: float = 15) -> dict[str, object]:
        report = self.expect("reg_state", timeout)
        assert report["code"] == 200, self.child.failure(f"registration: {report}")
        return report

    def call(self, uri: str) -> int:
        """Dial `uri`; the call's number in this phone's reports."""
        self.send(f"call {uri}")
        return int(str(self.expect("calling", uri=uri)["call"]))

    def stats(self, call: int) -> dict[str, object]:
        self.send(f"stats {call}")
        return self.expect("stats", call=call)

    def wait_for_packets(self, call: int, rx: int = 0, tx: int = 0,
                         timeout: float = 10) -> dict[str, object]:
        """The call's counters once it has received `rx` and sent `tx` RTP packets."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(call)
            if packets(stats, "rx") >= rx and packets(stats, "tx") >= tx:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(self.child.failure(
                    f"RTP short of rx {rx}, tx {tx}: {stats}"))
            time.sleep(0.1)

    def failure(self, problem: str) -> str:
        return self.child.failure(problem)

    def quit(self) -> None:
        """Ask it to hang up, unregister and stop (it takes a second or so: quit several
        phones, then `close` them)."""
        if self.child.exit_code is None and self.child.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):  # it has gone already
                self.child.send("quit")

    def close(self) -> int:
        """Quit and reap it; its exit code (0: it tore down cleanly)."""
        self.quit()
        return self.child.finish(timeout=10)


def packets(report: dict[str, object], direction: str) -> int:
    """RTP packets received ("rx") or sent ("tx") in a stats or disconnected report."""
    return int(str(report[f"{direction}_packets"]))


def wav_samples(path: Path) -> array.array[int]:
    """The samples of an 8 kHz 16-bit mono PCM WAV file (a phone's recording)."""
    with wave.open(str(path)) as wav:
        samples = array.array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def loudest_tone(samples: Sequence[int], candidates: Iterable[int]) -> int:
    """Which of the `candidates` (Hz) is loudest in 8 kHz audio, by the Goertzel filter: what
    a phone "said" with --tone is what the other heard (or a voicemail stored, once decoded
    from G.711 with softswitch.media.g711)."""

    def power(frequency: int) -> float:
        coefficient = 2 * math.cos(2 * math.pi * frequency / 8000)
        previous = before = 0.0
        for sample in samples:
            previous, before = sample + coefficient * previous - before, previous
        return previous * previous + before * before - coefficient * previous * before

    return max(candidates, key=power)
