"""Running SIPp scenarios of scripts/sipp/ against a test server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
