"""Linphone's console client (`linphonec`) as a headless phone, one HOME per test."""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from ..support import free_port
from .child import ChildProcess

TEMPLATE = Path(__file__).with_name("linphonerc.template")
# "registered, identity=sip:... duration=300"; not "registered=-1" (not yet) nor "unregistered".
REGISTERED = re.compile(r"(?<![a-z])registered, identity=")


@dataclass(slots=True, frozen=True)
class LinphoneConfig:
    home: Path
    path: Path
    sip_port: int  # the UDP port its Contact names


def write_linphonerc(home: Path, server_port: int, number: str, password: str,
                     realm: str) -> LinphoneConfig:
    """A linphonerc registering `number` to 127.0.0.1:`server_port`, with free local ports."""
    # Without this directory linphonec cannot open its call-log database.
    (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
    sip_port = free_port()
    text = Template(TEMPLATE.read_text()).substitute(
        sip_port=sip_port, sip_tcp_port=free_port(), audio_rtp_port=free_port(),
        video_rtp_port=free_port(), text_rtp_port=free_port(), home=home,
        server_port=server_port, number=number, password=password, realm=realm)
    path = home / "linphonerc"
    path.write_text(text)
    return LinphoneConfig(home, path, sip_port)


class LinphoneConsole:
    """linphonec -c CONFIG reading commands on stdin; its SIP log goes to linphone.log."""

    def __init__(self, config: LinphoneConfig) -> None:
        self.config = config
        self.log_path = config.home / "linphone.log"
        env = dict(os.environ, HOME=str(config.home))
        self.child = ChildProcess(
            ["linphonec", "-c", config.path, "-S", "-d", "6", "-l", self.log_path],
            name="linphonec", stderr_path=config.home / "linphonec.stderr", cwd=config.home,
            env=env)

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
