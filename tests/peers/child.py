"""A peer in a child process: lines read from its stdout with deadlines, commands on stdin."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class ChildProcess:
    """Runs `args` with stdin and stdout piped; stderr goes to a file for post-mortems.

    Every line read is kept in `transcript`, so a failed expectation shows what the peer
    did say. `finish` always leaves no process behind: it closes stdin (the peers take
    that as quit), waits, and kills the child if it does not go.
    """

    def __init__(self, args: Sequence[str | Path], *, name: str, stderr_path: Path,
                 cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.stderr_path = stderr_path
        self.transcript: list[str] = []
        self._pending = b""
        self.exit_code: int | None = None  # set by finish()
        with open(stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [str(a) for a in args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, cwd=cwd, env=None if env is None else dict(env))
        assert self.process.stdout is not None
        self._stdout = self.process.stdout.fileno()
        os.set_blocking(self._stdout, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout, selectors.EVENT_READ)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def read_line(self, deadline: float) -> str | None:
        """The next line before `deadline` (monotonic); None at end of output or deadline."""
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                return None
            chunk = os.read(self._stdout, 65536)
            if not chunk:
                if not self._pending:
                    return None
                self._pending += b"\n"  # a last line without its newline
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        text = line.decode("utf-8", "replace").rstrip("\r")
        self.transcript.append(text)
        return text

    def wait_for(self, matches: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first line that `matches` within `timeout` seconds; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise AssertionError(self.failure(f"no {what} within {timeout:g} s"))
            if matches(line):
                return line

    def expect_event(self, event: str, timeout: float) -> dict[str, object]:
        """The next JSON report of kind `event` (non-JSON lines, e.g. library banners, skipped)."""
        line = self.wait_for(lambda text: _event_of(text) == event, timeout, f"{event!r} event")
        report: dict[str, object] = json.loads(line)
        return report

    def failure(self, problem: str) -> str:
        stderr = self.stderr_path.read_text(errors="replace")[-3000:]
        said = "\n".join(self.transcript[-40:])
        return (f"{self.name}: {problem} (exit code {self.process.poll()})\n"
                f"--- stdout ---\n{said}\n--- stderr ({self.stderr_path}) ---\n{stderr}")

    def finish(self, timeout: float = 10) -> int:
        """Close stdin, wait for the exit code; kill the child if it outstays `timeout`."""
        if self.exit_code is not None:
            return self.exit_code
        try:
            if self.process.stdin is not None and not self.process.stdin.closed:
                self.process.stdin.close()
        except BrokenPipeError:
            pass  # it has gone already
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self._drain()
        self._selector.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.exit_code = code
        return code

    def _drain(self) -> None:
        """Keep what the child printed on its way out, for the transcript."""
        while self.read_line(time.monotonic() + 0.2) is not None:
            pass


def _event_of(line: str) -> object:
    if not line.startswith("{"):
        return None
    try:
        report = json.loads(line)
    except json.JSONDecodeError:
        return None
    return report.get("event") if isinstance(report, dict) else None
