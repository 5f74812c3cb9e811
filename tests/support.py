"""Running a real softswitch process for tests, and talking to it over real sockets."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from softswitch.app import Server, start
from softswitch.config import Config

DOMAIN = "softswitch.test"

# Subscribers of the test config: three voice SIMs (types D and A) and one data SIM.
SUBSCRIBERS = [
    {"number": "09011110001", "sim": "voice", "line": "D", "sip_password": "pw-one",
     "mio_id": "mio0001", "email": "one@example.jp", "portal_password": "portal-one",
     "name": "Yamada Taro", "birth_date": "1980-04-01", "iccid": "8981100000000000001",
     "postal_address": "Tokyo"},
    {"number": "09011110002", "sim": "voice", "line": "D", "sip_password": "pw-two",
     "mio_id": "mio0002", "email": "two@example.jp", "portal_password": "portal-two",
     "name": "Suzuki Hanako", "birth_date": "1990-12-24", "iccid": "8981100000000000002",
     "postal_address": "Osaka"},
    {"number": "08022220003", "sim": "voice", "line": "A", "sip_password": "pw-three",
     "mio_id": "mio0003", "email": "three@example.jp", "portal_password": "portal-three",
     "name": "Sato Ken", "birth_date": "1975-07-07", "iccid": "8981100000000000003",
     "postal_address": "Nagoya", "options": {"nuisance_blocking": True}},
    {"number": "07033330004", "sim": "data", "line": "D",
     "mio_id": "mio0004", "email": "four@example.jp", "portal_password": "portal-four",
     "name": "Data Only", "birth_date": "2000-01-01", "iccid": "8981100000000000004",
     "postal_address": "Sapporo"},
]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def write_config(directory: Path, port: int, store_url: str | None = None, *,
                 sections: dict[str, object] | None = None, **sip_overrides: object) -> Path:
    """A config with only listen, domain, store and subscribers set; the store is a SQLite file
    in `directory` unless `store_url` names another (several instances on one store).
    `sip_overrides` go under sip:, `sections` are further top-level keys (only for a test
    about that setting)."""
    sip: dict[str, object] = {"listen": [f"127.0.0.1:{port}"], "domain": DOMAIN}
    sip.update(sip_overrides)
    config = {
        "sip": sip,
        "store": {"url": store_url or f"sqlite+aiosqlite:///{directory / 'softswitch.db'}"},
        "subscribers": SUBSCRIBERS,
        "log_level": "debug",
        **(sections or {}),
    }
    path = directory / "softswitch.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path


def softswitch(*args: str, timeout: float = 60,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softswitch.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


@dataclass
class ServerProcess:
    """`softswitch run` in a child process, on a free port, with its own SQLite file (or the
    store at `store_url`, which another ServerProcess may share)."""

    directory: Path
    port: int = field(default_factory=free_port)
    sip_overrides: dict[str, object] = field(default_factory=dict)
    sections: dict[str, object] = field(default_factory=dict)  # other top-level config keys
    store_url: str | None = None
    process: subprocess.Popen[str] | None = None
    config: Path | None = None
    open_files: tuple[int, int] | None = None  # (soft, hard) RLIMIT_NOFILE for the child
    store_url: str | None = None  # another instance's store; default: a file in `directory`

    def start(self) -> ServerProcess:
        self.config = write_config(self.directory, self.port, self.store_url,
                                   sections=self.sections,
                                   **self.sip_overrides)
        self.log = open(self.directory / "server.log", "a")  # noqa: SIM115 - closed in stop()
        stdout_path = self.directory / "stdout.log"
        stdout = open(stdout_path, "w")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "softswitch.cli", "run", "--config", str(self.config)],
            stdout=stdout, stderr=self.log, text=True, env=python_env(),
            cwd=self.directory,  # relative paths of the config (var/...) land here
            preexec_fn=None if self.open_files is None else self._limit_open_files)
        stdout.close()
        deadline = time.monotonic() + 30
        while stdout_path.read_text().count("listening on") < 2:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()  # never leave a half-started server behind
                self.process.wait(timeout=10)
                raise RuntimeError(f"softswitch did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def stop(self, sig: int = 15) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=20)
        self.log.close()
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        path = self.directory / "server.log"
        return path.read_text() if path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`softswitch ARGS --config <this server's config>`, where the server runs."""
        assert self.config is not None
        return softswitch(*args, "--config", str(self.config), cwd=self.directory)

    def show(self, number: str) -> dict[str, object]:
        assert self.config is not None
        result = self.cli("show", number, "--json")
        assert result.returncode == 0, result.stderr
        state: dict[str, object] = json.loads(result.stdout)
        return state

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SipClient:
    """A raw SIP socket for sending hand-written messages and reading the answers."""

    def __init__(self, port: int, transport: str = "udp", host: str = "127.0.0.1",
                 source: str | None = None) -> None:
        """A socket to the server at `host`:`port`, from `source` (default: `host`)."""
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, kind)
        self.sock.settimeout(5)
        self.sock.bind((source or host, 0))
        self.local_port = self.sock.getsockname()[1]
        self.server = (host, port)
        if transport == "tcp":
            self.sock.connect(self.server)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def receive(self, timeout: float = 5.0) -> bytes | None:
        """One message, or None when nothing comes within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(65535)
                return data
            while True:
                message = self._split()
                if message is not None:
                    return message
                chunk = self.sock.recv(65535)
                if not chunk:
                    return None
                self._buffer += chunk
        except TimeoutError:
            return None

    def _split(self) -> bytes | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buffer[:end].decode("utf-8", "replace")
        length = 0
        for line in head.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() in ("content-length", "l"):
                length = int(value.strip())
        total = end + 4 + length
        if len(self._buffer) < total:
            return None
        message, self._buffer = self._buffer[:total], self._buffer[total:]
        return message

    def close(self) -> None:
        self.sock.close()


def status_of(message: bytes | None) -> int | None:
    if message is None:
        return None
    return int(message.split(b" ", 2)[1])


def options(port: int, call_id: str = "options-check", transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:probe@{DOMAIN}>;tag=probe\r\n"
        f"To: <sip:{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def in_process_server(config: Config) -> AsyncIterator[Server]:
    """softswitch started in this process on `config`, closed on the way out. start() freezes
    what it built (gc.freeze) and sets the collector's thresholds: both are given back, so the
    next test builds and collects its own."""
    thresholds = gc.get_threshold()
    running = await start(config)
    try:
        yield running
    finally:
        await running.close()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
