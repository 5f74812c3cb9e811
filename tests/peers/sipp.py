"""Running SIPp scenarios of scripts/sipp/ against a test server, and as a callee phone."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..support import free_port

SCENARIOS = Path(__file__).resolve().parents[2] / "scripts" / "sipp"


def write_users_csv(path: Path, users: Sequence[tuple[str, str]], domain: str) -> Path:
    """An injection file for register_auth.xml: number;password;domain;[authentication ...].

    SIPp does not expand a keyword nested inside [authentication], so the whole keyword
    travels in field3 with the credentials already written in.
    """
    lines = ["SEQUENTIAL"]
    for number, password in users:
        lines.append(f"{number};{password};{domain};"
                     f"[authentication username={number} password={password}]")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(slots=True)
class SippRun:
    returncode: int
    stdout: str
    errors: str  # SIPp's <scenario>_<pid>_errors.log, where it says why a call failed
    messages: str  # <scenario>_<pid>_messages.log: every message sent and received


def run_sipp(scenario: str, server_port: int, local_port: int, users_csv: Path,
             directory: Path, transport: str = "udp", calls: int = 1,
             timeout: float = 30) -> SippRun:
    """Run `calls` calls of scripts/sipp/`scenario` from 127.0.0.1:`local_port`."""
    args = ["sipp", f"127.0.0.1:{server_port}", "-sf", str(SCENARIOS / scenario),
            "-inf", str(users_csv), "-m", str(calls), "-i", "127.0.0.1", "-p", str(local_port),
            "-t", "t1" if transport == "tcp" else "u1",
            "-timeout", f"{int(timeout) - 5}s", "-timeout_error",
            "-trace_err", "-trace_msg", "-nostdin"]
    for old in directory.glob(f"{Path(scenario).stem}_*.log"):
        old.unlink()
    done = subprocess.run(args, cwd=directory, capture_output=True, text=True, timeout=timeout)
    stem = Path(scenario).stem
    return SippRun(done.returncode, done.stdout + done.stderr,
                   _read_all(directory.glob(f"{stem}_*_errors.log")),
                   _read_all(directory.glob(f"{stem}_*_messages.log")))


def _read_all(paths: Iterable[Path]) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(paths))


def write_callers_csv(path: Path, callers: Sequence[tuple[str, str]], domain: str) -> Path:
    """An injection file for uac_auth_call.xml and uac_auth_rejected.xml:
    number;[authentication username=number password=password];domain."""
    lines = ["SEQUENTIAL"]
    for number, password in callers:
        lines.append(f"{number};[authentication username={number} password={password}];{domain}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class SippPhone:
    """scripts/sipp/uas_phone.xml in the background: a callee phone on 127.0.0.1:`port` that
    answers, hangs up after `talk_ms`, rings for ever, or refuses (486, 480, 603), and logs one
    line per INVITE (`invites`), so a test can tell whether a call reached it."""

    def __init__(self, directory: Path, mode: str = "answer", *, name: str = "phone",
                 talk_ms: int = 1000, calls: int | None = None) -> None:
        self.port = free_port()
        self.log_path = directory / f"{name}.log"
        self.messages_path = directory / f"{name}-messages.log"
        args = ["sipp", "-sf", str(SCENARIOS / "uas_phone.xml"), "-key", "mode", mode,
                "-d", str(talk_ms), "-i", "127.0.0.1", "-p", str(self.port),
                "-mp", str(free_port()), "-nostdin", "-trace_logs", "-log_file",
                str(self.log_path), "-trace_msg", "-message_file", str(self.messages_path),
                "-trace_err", "-error_file", str(directory / f"{name}-errors.log")]
        if calls is not None:
            args += ["-m", str(calls)]
        self.process = subprocess.Popen(args, cwd=directory, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (self.log_path.exists() and _port_taken(self.port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SIPp phone did not start (exit {self.process.returncode})")
            time.sleep(0.02)

    @property
    def uri(self) -> str:
        return f"sip:phone@127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def invites(self) -> list[str]:
        """One INVITE_RECEIVED line per call that reached the phone (not re-INVITEs)."""
        return [line for line in self.log_lines() if line.startswith("INVITE_RECEIVED ")]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 10) -> list[str]:
        """The log lines starting with `prefix` once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while len(found := [line for line in self.log_lines() if line.startswith(prefix)]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"SIPp phone: {count} x {prefix!r} not logged in "
                                     f"{timeout:g} s:\n" + "\n".join(self.log_lines()))
            time.sleep(0.05)
        return found

    def stop(self) -> int:
        """SIGTERM (SIPp prints its stats and exits) unless it has exited; its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


@dataclass(slots=True)
class SippCall:
    returncode: int
    log: str  # the scenario's <log> lines (-trace_logs)
    errors: str
    messages: str
    response_times_ms: list[float]  # rtd 1 of each call (-trace_rtt)

    def finals(self) -> list[int]:
        """The FINAL=code of each call (uac_auth_rejected.xml)."""
        return [int(code) for code in re.findall(r"^FINAL=(\d{3}) ", self.log, re.MULTILINE)]

    def failure(self, problem: str) -> str:
        return f"{problem}\n--- log ---\n{self.log}\n--- errors ---\n{self.errors}\n" \
               f"--- messages ---\n{self.messages[-4000:]}"


def run_caller(scenario: str, server_port: int, service: str, callers_csv: Path,
               directory: Path, keys: Mapping[str, str], *, calls: int = 1,
               duration_ms: int = 0, auth_uri: str | None = None,
               timeout: float = 30) -> SippCall:
    """`calls` calls of scripts/sipp/`scenario` (uac_auth_call.xml, uac_auth_rejected.xml)
    to `service` at 127.0.0.1:`server_port`, from a free port, one after the other."""
    stem = Path(scenario).stem
    for old in directory.glob(f"{stem}_*"):
        old.unlink()
    log_path = directory / f"{stem}.log"
    args = ["sipp", f"127.0.0.1:{server_port}", "-sf", str(SCENARIOS / scenario),
            "-inf", str(callers_csv), "-s", service, "-m", str(calls), "-l", "1",
            "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()),
            "-d", str(duration_ms), "-nostdin", "-timeout", f"{int(timeout) - 5}s",
            "-timeout_error", "-trace_logs", "-log_file", str(log_path), "-trace_err",
            "-trace_msg", "-trace_rtt", "-rtt_freq", "1"]
    for name, value in keys.items():
        args += ["-key", name, value]
    if auth_uri is not None:
        args += ["-auth_uri", auth_uri]
    done = subprocess.run(args, cwd=directory, capture_output=True, text=True, timeout=timeout)
    rtt = _read_all(directory.glob(f"{stem}_*_rtt.csv")).splitlines()
    return SippCall(done.returncode, log_path.read_text(errors="replace"),
                    _read_all(directory.glob(f"{stem}_*_errors.log")) + done.stderr[-2000:],
                    _read_all(directory.glob(f"{stem}_*_messages.log")),
                    [float(row.split(";")[1]) for row in rtt if row and row[0].isdigit()])


def register_contact(server_port: int, number: str, password: str, domain: str,
                     contact_port: int, directory: Path, expires: int = 300) -> SippRun:
    """REGISTER `number` with a Contact at 127.0.0.1:`contact_port` (where a SippPhone
    listens) through the digest challenge: the server then sends the number's calls there."""
    users = write_users_csv(directory / f"register-{number}.csv", [(number, password)], domain)
    args = ["sipp", f"127.0.0.1:{server_port}", "-sf", str(SCENARIOS / "register_contact.xml"),
            "-inf", str(users), "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()),
            "-key", "contact_port", str(contact_port), "-key", "expires", str(expires),
            "-timeout", "10s", "-timeout_error", "-trace_err", "-trace_msg", "-nostdin"]
    for old in directory.glob("register_contact_*.log"):
        old.unlink()
    done = subprocess.run(args, cwd=directory, capture_output=True, text=True, timeout=20)
    return SippRun(done.returncode, done.stdout + done.stderr,
                   _read_all(directory.glob("register_contact_*_errors.log")),
                   _read_all(directory.glob("register_contact_*_messages.log")))
