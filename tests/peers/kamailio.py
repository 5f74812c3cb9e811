"""Kamailio 5.6 as the registrar and proxy between real phones (scripts/bench/kamailio-calls.cfg).

It does softswitch's job on the call path without media: digest on REGISTER (401) and INVITE
(407), 603 to a caller on the callee's blocklist, a stateful relay with Record-Route to every
registered phone of the callee. The tests point the phones at it to check the phones
themselves before softswitch's B2BUA takes its place; the benchmarks use the same config.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..support import free_port

CONFIG = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "kamailio-calls.cfg"
KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
HASH_COLUMNS = "key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n"


def db_text_escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\t", "\\t"))


def write_tables(directory: Path, passwords: Mapping[str, str],
                 blocked: Iterable[tuple[str, str]]) -> None:
    """The db_text files the config loads into its hash tables: credentials (number ->
    password) and blocklist ("callee:caller" -> 1)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "version").write_text(
        "table_name(str) table_version(int)\ncredentials:1\nblocklist:1\n")
    (directory / "credentials").write_text(HASH_COLUMNS + "".join(
        f"{db_text_escape(number)}:0:0:{db_text_escape(password)}:0\n"
        for number, password in passwords.items()))
    (directory / "blocklist").write_text(HASH_COLUMNS + "".join(
        f"{db_text_escape(f'{callee}:{caller}')}:0:1:1:0\n" for callee, caller in blocked))


def write_config(path: Path, port: int, tables: Path, realm: str, children: int = 2,
                 ring_ms: int = 15000) -> Path:
    text = CONFIG.read_text()
    for placeholder, value in (("LISTEN", f"udp:127.0.0.1:{port}"), ("CHILDREN", str(children)),
                               ("DBDIR", str(tables)), ("REALM", realm),
                               ("RING_MS", str(ring_ms))):
        text = text.replace(placeholder, value)
    path.write_text(text)
    return path


@dataclass
class KamailioProxy:
    """`kamailio -DD` on a free UDP port of 127.0.0.1 with its own config and tables."""

    directory: Path
    passwords: Mapping[str, str]
    realm: str
    blocked: list[tuple[str, str]] = field(default_factory=list)  # (callee, caller)
    ring_ms: int = 15000
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> KamailioProxy:
        assert KAMAILIO is not None, "kamailio is not installed"
        tables = self.directory / "kamailio-tables"
        write_tables(tables, self.passwords, self.blocked)
        config = write_config(self.directory / "kamailio.cfg", self.port, tables, self.realm,
                              ring_ms=self.ring_ms)
        self.log_path = self.directory / "kamailio.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [KAMAILIO, "-f", str(config), "-DD", "-E", "-Y", str(self.directory),
                 "-P", str(self.directory / "kamailio.pid")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_until_answering(timeout=15)
        return self

    def _wait_until_answering(self, timeout: float) -> None:
        """An OPTIONS answered (405 from this config) means the workers are up."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(0.2)
            local = probe.getsockname()[1]
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    break
                probe.sendto((
                    f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-probe{time.time_ns()}\r\n"
                    f"From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1>\r\n"
                    "Call-ID: kamailio-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", self.port))
                try:
                    if probe.recv(65535).startswith(b"SIP/2.0 "):
                        return
                except TimeoutError:
                    continue
        self.stop()
        raise RuntimeError(f"kamailio did not start:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # the main process stops its workers
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
