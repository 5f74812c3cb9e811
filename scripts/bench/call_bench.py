#!/usr/bin/env python3
"""Call benchmarks: SIPp drives softswitch, then Kamailio 5.6 doing the same job with the same
load, in the same run (scripts/bench/blocked.sh and relay.sh run this).

    call_bench.py blocked     [--rate 4000] [--count 40000] [--callers 30]
    call_bench.py blocked-sdp [--rate 250]  [--count 5000]  [--callers 30]     (softswitch only)
    call_bench.py relay       [--rate 1000] [--count 20000] [--callers 200] [--hold-ms 1000]
    common: [--only softswitch|kamailio] [--work DIR] [--children 2] [--no-rtp-count]

The subscribers: one callee, 09020000000, whose phone is a SIPp UAS (scripts/sipp/uas_phone.xml,
mode answer) registered to the server with register_contact.xml, and --callers callers
0901NNNNNNN with password pw-N (as register.sh's users). Every call is a subscriber's call:
INVITE, 407, ACK, INVITE with credentials (digest uri = the Request-URI, -auth_uri), then
- blocked: the caller is on the callee's blocklist (all --callers of them: at most 30, the
  list's size) and offers no SDP: 603 with a Reason header, ACK. scripts/sipp/
  uac_auth_rejected.xml -key sdp none.
- blocked-sdp: the same callers offer SDP: softswitch answers 183 with SDP, plays the whole
  announcement (blocked_call) as RTP, then 603. Kamailio has no media, so it is not run.
  How long each caller had early media (183 to 603: the announcement) is read from the SIPp
  log; the RTP packets that reached the callers are counted with tcpdump on lo when it is
  installed (it costs CPU of its own: --no-rtp-count leaves it out).
- relay: the callers are not blocked; the call is relayed to the callee's registered phone,
  which rings (180), answers 100 ms later (200), and is hung up by the caller after --hold-ms
  (scripts/sipp/uac_auth_call.xml with an empty pcap: signalling only, as the media would
  flow phone to phone).
In the blocked cases the callee's phone must receive no INVITE at all (its log is counted).

Reported per server: the calls that went as the case wants (refused with 603, read from SIPp's
FINAL= log lines / answered and hung up: SIPp's successful calls) and the others, failed, with
SIPp's count and the final statuses seen; those calls per second of the SIPp run; the response
time (SIPp rtd 1: from the INVITE with credentials to its first answer other than 100, i.e. the
603, the 183, or the relayed 180; SIPp's clock steps in 4 ms under load) p50/p99/max; and the
server's CPU (user+system ticks of all its processes from /proc) per call and in % of a core;
SIPp's CPU too, since it shares the two cores. Then the ratios softswitch/Kamailio.

softswitch's config: the generated subscribers on the shipped defaults, except where a
benchmark must differ and says so: one SIPp address plays every subscriber, so
security.calls_per_source allows 100,000 calls; the RTP port range is 20000-23999 (blocked-sdp
holds ~900 announcements at once); call records go to the work directory. The blocklist is
written with `softswitch blocklist add CALLEE CALLER --config PATH` when that command exists,
else straight into the store's blocklist table with sqlite3, before the server starts.

Kamailio: scripts/bench/kamailio-calls.cfg (htable blocklist, stateless 603; tm relay with
usrloc lookup and Record-Route), CHILDREN UDP workers (--children, default 2: the cores).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SIPP = ROOT / "scripts" / "sipp"
KAMAILIO_CONFIG = ROOT / "scripts" / "bench" / "kamailio-calls.cfg"
DOMAIN = "bench.test"
CALLEE, CALLEE_PASSWORD = "09020000000", "pw-callee"
MAX_BLOCKLIST = 30  # SERVICES.md: at most 30 numbers on a blocklist
TICKS = os.sysconf("SC_CLK_TCK")
CASES = {
    "blocked": {"rate": 4000, "count": 40000, "callers": 30},
    "blocked-sdp": {"rate": 250, "count": 5000, "callers": 30},
    "relay": {"rate": 1000, "count": 20000, "callers": 200},
}


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 (softswitch listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def callers(count: int) -> list[tuple[str, str]]:
    return [(f"0901{i:07d}", f"pw-{i}") for i in range(count)]


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # gone: its ticks are lost, say so by a low number rather than crash
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def process_ticks() -> dict[int, int]:
    """user+system ticks of every process on the machine now."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def others_seconds(before: dict[int, int], after: dict[int, int], ours: set[int]) -> float:
    """CPU seconds that processes not in `ours` used between two `process_ticks` (one that
    started meanwhile counts from 0; one that ended is lost)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()
               if pid not in ours) / TICKS


def wait_until_quiet(limit: float = 10.0, patience: float = 300.0) -> None:
    """This machine is shared: wait (at most `patience` seconds) until other processes use
    less than `limit` % of a core over 2 s, so that they do not take the run's CPU."""
    deadline = time.monotonic() + patience
    while True:
        before = process_ticks()
        time.sleep(2.0)
        busy = 100 * others_seconds(before, process_ticks(), {os.getpid()}) / 2.0
        if busy < limit:
            return
        if time.monotonic() > deadline:
            print(f"  other processes still use {busy:.0f}% of a core; measuring anyway")
            return
        print(f"  other processes use {busy:.0f}% of a core; waiting", flush=True)


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (Kamailio's main process and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_port_taken(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on UDP {port} after {timeout:g} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


# ---- the servers ----------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        return group_pids(self.process.pid)


def write_softswitch_config(work: Path, port: int, users: list[tuple[str, str]]) -> Path:
    subscribers = [{"number": number, "sim": "voice", "line": "D", "sip_password": password}
                   for number, password in [(CALLEE, CALLEE_PASSWORD), *users]]
    config = {
        "sip": {"listen": [f"127.0.0.1:{port}"], "domain": DOMAIN, "transports": ["udp"]},
        "store": {"url": f"sqlite+aiosqlite:///{work}/softswitch.db"},
        # One SIPp address plays every subscriber: the per-source caps would refuse it.
        "security": {"calls_per_source": {"max_unconfirmed": 100000,
                                          "max_unauthenticated": 100000}},
        "media": {"rtp_port_min": 20000, "rtp_port_max": 23999},
        "calls": {"cdr_file": str(work / "cdr.jsonl")},
        "subscribers": subscribers,
        "log_level": "warning",
    }
    path = work / "softswitch.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def softswitch_command(*args: str) -> list[str]:
    venv = ROOT / ".venv" / "bin" / "softswitch"
    return [str(venv), *args] if venv.exists() else [sys.executable, "-m", "softswitch.cli",
                                                      *args]


def start_softswitch(work: Path, port: int, config: Path) -> Server:
    stdout = work / "softswitch.stdout"
    with open(stdout, "wb") as out, open(work / "softswitch.log", "ab") as log:
        process = subprocess.Popen(softswitch_command("run", "--config", str(config)),
                                   stdout=out, stderr=log, cwd=work, start_new_session=True)
    deadline = time.monotonic() + 60
    while b"listening on" not in stdout.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError("softswitch did not start:\n"
                               + (work / "softswitch.log").read_text()[-3000:])
        time.sleep(0.1)
    return Server("softswitch", port, process)


def block_in_softswitch(work: Path, config: Path, blocked: list[str]) -> str:
    """Put `blocked` on the callee's list; how it was done."""
    probe = subprocess.run(softswitch_command("blocklist", "--help"), capture_output=True)
    if probe.returncode == 0:
        for caller in blocked:
            done = subprocess.run(softswitch_command("blocklist", "add", CALLEE, caller,
                                                     "--config", str(config)),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"softswitch blocklist add: {done.stderr}")
        return "softswitch blocklist add"
    with sqlite3.connect(work / "softswitch.db") as db:  # until the CLI command lands
        db.executemany("INSERT INTO blocklist (number, blocked_number, created_at) "
                       "VALUES (?, ?, ?)", [(CALLEE, caller, time.time()) for caller in blocked])
    return "sqlite3 INSERT INTO blocklist (no `softswitch blocklist` command yet)"


def softswitch(work: Path, users: list[tuple[str, str]], blocked: list[str]) -> Server:
    """Provision (a first start writes the subscribers to the store), block, then run."""
    port = free_port()
    config = write_softswitch_config(work, port, users)
    if blocked:
        stop(start_softswitch(work, port, config).process)
        how = block_in_softswitch(work, config, blocked)
        print(f"  softswitch: {len(blocked)} callers blocked by {CALLEE} ({how})")
    return start_softswitch(work, port, config)


def kamailio(work: Path, users: list[tuple[str, str]], blocked: list[str],
             children: int) -> Server:
    binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
    port = free_port()
    tables = work / "kamailio-tables"
    tables.mkdir()
    columns = "key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n"
    (tables / "version").write_text(
        "table_name(str) table_version(int)\ncredentials:1\nblocklist:1\n")
    (tables / "credentials").write_text(columns + "".join(
        f"{number}:0:0:{password}:0\n" for number, password in [(CALLEE, CALLEE_PASSWORD),
                                                                 *users]))
    (tables / "blocklist").write_text(columns + "".join(
        f"{CALLEE}\\:{caller}:0:1:1:0\n" for caller in blocked))
    text = KAMAILIO_CONFIG.read_text()
    for placeholder, value in (("LISTEN", f"udp:127.0.0.1:{port}"), ("CHILDREN", str(children)),
                               ("DBDIR", str(tables)), ("REALM", DOMAIN), ("RING_MS", "15000")):
        text = text.replace(placeholder, value)
    config = work / "kamailio.cfg"
    config.write_text(text)
    with open(work / "kamailio.log", "wb") as log:
        # -m: shared memory (MB) for the transactions in flight; 64 MB, the default, ran out
        # at 1,000 relayed calls/s.
        process = subprocess.Popen([binary, "-f", str(config), "-DD", "-E", "-m", "1024",
                                    "-M", "16", "-Y", str(work),
                                    "-P", str(work / "kamailio.pid")],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port_taken(port, process, 15)
    except RuntimeError as error:
        stop(process)
        log = (work / "kamailio.log").read_text()[-3000:]
        raise RuntimeError(f"kamailio: {error}\n{log}") from error
    time.sleep(0.5)  # the workers bind after the main process
    return Server("kamailio", port, process)


# ---- SIPp -----------------------------------------------------------------------------------
def sipp_phone(work: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The callee's phone: uas_phone.xml answering every call."""
    port, log = free_port(), work / "phone.log"
    process = subprocess.Popen(
        ["sipp", "-sf", str(SIPP / "uas_phone.xml"), "-key", "mode", "answer", "-i",
         "127.0.0.1", "-p", str(port), "-mp", str(free_port()), "-nostdin", "-trace_logs",
         "-log_file", str(log), "-buff_size", "4194304", "-max_socket", "65000"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port_taken(port, process, 10)
    return process, port, log


def register_phone(work: Path, server_port: int, phone_port: int) -> None:
    users = work / "callee.csv"
    users.write_text(f"SEQUENTIAL\n{CALLEE};{CALLEE_PASSWORD};{DOMAIN};"
                     f"[authentication username={CALLEE} password={CALLEE_PASSWORD}]\n")
    done = subprocess.run(
        ["sipp", f"127.0.0.1:{server_port}", "-sf", str(SIPP / "register_contact.xml"), "-inf",
         str(users), "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()), "-key",
         "contact_port", str(phone_port), "-key", "expires", "3600", "-timeout", "10s",
         "-timeout_error", "-nostdin"], cwd=work, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"the callee's phone could not register (SIPp exit "
                           f"{done.returncode})")


@dataclass
class Outcome:
    server: str
    attempted: int  # calls SIPp placed (completed + failed by its count)
    ok: int  # calls that went as the case wants: refused with 603 / answered and hung up
    sipp_failed: int
    finals: dict[int, int]  # blocked cases: final status -> calls (uac_auth_rejected's FINAL=)
    seconds: float
    response_ms: list[float]
    server_cpu: float
    sipp_cpu: float  # the callers' SIPp
    phone_cpu: float  # the callee phone's SIPp
    phone_invites: int
    early_ms: list[float]  # blocked-sdp: 183 to 603, per call
    rtp_packets: int | None
    others_cpu: float  # seconds other processes on the machine used during the run

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.server_cpu / self.ok if self.ok else float("nan")

    def report(self) -> str:
        r = self.response_ms
        failed = self.attempted - self.ok
        text = (f"{self.server}: {self.ok} ok, {failed} failed")
        if failed:
            text += f" (SIPp: {self.sipp_failed} failed"
            if self.finals:
                text += "; finals " + ", ".join(f"{code}: {calls}" for code, calls
                                                in sorted(self.finals.items()))
            text += ")"
        text += (f" in {self.seconds:.1f} s = {self.rate:.0f} calls/s; response time p50 "
                 f"{percentile(r, 0.5):.1f} / p99 {percentile(r, 0.99):.1f} / max "
                 f"{max(r, default=float('nan')):.1f} ms; server CPU {self.server_cpu:.2f} s = "
                 f"{self.cpu_ms_per_call:.3f} ms per call "
                 f"({100 * self.server_cpu / self.seconds:.0f}% of one core); "
                 f"SIPp CPU: callers {100 * self.sipp_cpu / self.seconds:.0f}%, phone "
                 f"{100 * self.phone_cpu / self.seconds:.0f}%; "
                 f"INVITEs at the callee's phone: {self.phone_invites}")
        if self.early_ms:
            e = self.early_ms
            text += (f"; early media (183 to 603) min {min(e):.0f} / p50 "
                     f"{percentile(e, 0.5):.0f} / max {max(e):.0f} ms")
        if self.rtp_packets is not None:
            text += (f"; RTP packets at the callers: {self.rtp_packets} = "
                     f"{self.rtp_packets / max(self.ok, 1):.0f} per call")
        if self.others_cpu / self.seconds > 0.1:
            text += (f" (other processes used {100 * self.others_cpu / self.seconds:.0f}% of "
                     "a core meanwhile)")
        return text


def rtp_counter(media_port: int) -> subprocess.Popen[str] | None:
    """tcpdump on lo counting the UDP packets to the callers' RTP port, if installed (headers
    only, written nowhere: it prints its counts when it stops)."""
    if shutil.which("tcpdump") is None:
        return None
    # --immediate-mode: without it, packets still in libpcap's buffer at SIGINT are counted
    # as "received by filter" (twice on lo) but not "captured"
    return subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "16384",
                             "--immediate-mode", "-w", "/dev/null",
                             f"udp and dst port {media_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def drive(args: argparse.Namespace, server: Server, work: Path, users: list[tuple[str, str]],
          silent_pcap: Path) -> Outcome:
    name = server.name
    phone, phone_port, phone_log = sipp_phone(work)
    try:
        register_phone(work, server.port, phone_port)
        csv = work / "callers.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(
            f"{number};[authentication username={number} password={password}];{DOMAIN}\n"
            for number, password in users))
        media_port = free_port()
        scenario, keys = (("uac_auth_call.xml", ["-key", "pcap", str(silent_pcap)])
                          if args.case == "relay" else
                          ("uac_auth_rejected.xml",
                           ["-key", "sdp", "offer" if args.case == "blocked-sdp" else "none"]))
        log = work / f"sipp-{name}.log"
        command = [
            "sipp", f"127.0.0.1:{server.port}", "-sf", str(SIPP / scenario), "-inf", str(csv),
            "-s", CALLEE, "-auth_uri", f"{CALLEE}@127.0.0.1:{server.port}", *keys,
            "-r", str(args.rate), "-m", str(args.count), "-l", str(args.limit),
            "-d", str(args.hold_ms), "-i", "127.0.0.1", "-p", str(free_port()),
            "-mp", str(media_port), "-nostdin", "-recv_timeout", "20000",
            "-timeout", "600s", "-buff_size", "4194304", "-max_socket", "65000",
            "-trace_stat", "-stf", str(work / f"stat-{name}.csv"), "-fd", "1",
            "-trace_rtt", "-rtt_freq", "1", "-trace_logs", "-log_file", str(log),
            "-trace_err", "-error_file", str(work / f"sipp-{name}-errors.log")]
        counter = (rtp_counter(media_port)
                   if args.case == "blocked-sdp" and not args.no_rtp_count else None)
        if counter is not None:
            time.sleep(1)  # tcpdump starts capturing
        wait_until_quiet()
        pids = server.pids()
        before = cpu_seconds(pids)
        machine_before = process_ticks()
        phone_before = cpu_seconds([phone.pid])
        start = time.monotonic()
        with open(work / f"sipp-{name}.stderr", "wb") as stderr:
            sipp = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL, stderr=stderr)
        sipp_cpu = 0.0
        while sipp.poll() is None:  # SIPp's ticks, read while it still exists
            sipp_cpu = cpu_seconds([sipp.pid]) or sipp_cpu
            time.sleep(0.2)
        seconds = time.monotonic() - start
        server_cpu = cpu_seconds(pids) - before
        phone_cpu = cpu_seconds([phone.pid]) - phone_before
        ours = {os.getpid(), sipp.pid, phone.pid, *pids}
        if counter is not None:
            ours.add(counter.pid)
        others = others_seconds(machine_before, process_ticks(), ours)
        rtp_packets = None
        if counter is not None:
            time.sleep(0.5)
            counter.send_signal(signal.SIGINT)
            said = counter.communicate(timeout=20)[1]
            captured = re.search(r"(\d+) packets? captured", said)
            dropped = re.search(r"(\d+) packets? dropped by kernel", said)
            if captured:
                rtp_packets = int(captured.group(1)) + (int(dropped.group(1)) if dropped else 0)
    finally:
        stop(phone)
    stats = (work / f"stat-{name}.csv").read_text().splitlines()
    header, last = stats[0].split(";"), stats[-1].split(";")
    row = dict(zip(header, last, strict=False))
    completed, sipp_failed = int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])
    text = log.read_text(errors="replace") if log.exists() else ""
    finals = Counter(int(code) for code in re.findall(r"^FINAL=(\d{3}) ", text, re.MULTILINE))
    # uac_auth_rejected.xml counts any refusal as a success; only a 603 is the wanted one
    ok = completed if args.case == "relay" else min(completed, finals[603])
    early_ms: list[float] = []
    if args.case == "blocked-sdp":
        early = dict(re.findall(r"^EARLY=183 CALL=(\S+) MS=(\d+)", text, re.MULTILINE))
        for call, at in re.findall(r"^FINAL=603 CSEQ=\d CALL=(\S+) MS=(\d+)", text, re.MULTILINE):
            if call in early:
                early_ms.append(float(int(at) - int(early[call])))
    response_ms = []
    for rtt in work.glob(f"{Path(scenario).stem}_{sipp.pid}_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2] == "1":
                response_ms.append(float(parts[1]))
    invites = sum(1 for line in phone_log.read_text(errors="replace").splitlines()
                  if line.startswith("INVITE_RECEIVED ")) if phone_log.exists() else 0
    return Outcome(name, completed + sipp_failed, ok, sipp_failed, dict(finals), seconds,
                   response_ms, server_cpu, sipp_cpu, phone_cpu, invites, early_ms, rtp_packets,
                   others)


def announcement_seconds() -> float | None:
    try:
        from softswitch.media.prompts import DEFAULT_DIRECTORY, prompt_path, read_prompt_audio
    except ImportError:
        return None
    return len(read_prompt_audio(prompt_path(DEFAULT_DIRECTORY, "ja", "blocked_call"))) / 8000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--rate", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--callers", type=int)
    parser.add_argument("--hold-ms", type=int, default=1000,
                        help="relay: how long the caller stays in the answered call")
    parser.add_argument("--limit", type=int, default=10000, help="SIPp -l: calls at once")
    parser.add_argument("--only", choices=["softswitch", "kamailio"])
    parser.add_argument("--children", type=int, default=2, help="Kamailio UDP workers")
    parser.add_argument("--no-rtp-count", action="store_true")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    for key, value in CASES[args.case].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.case != "relay":
        args.hold_ms = 0
        if args.callers > MAX_BLOCKLIST:
            parser.error(f"a blocklist holds at most {MAX_BLOCKLIST} numbers")
    work = args.work or Path(tempfile.mkdtemp(prefix=f"softswitch-{args.case}-bench."))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{args.case}: {args.count} calls at {args.rate}/s from {args.callers} callers "
          f"to {CALLEE}; work directory {work}")
    if args.case == "blocked-sdp" and (seconds := announcement_seconds()):
        print(f"  the announcement (blocked_call, ja) lasts {seconds:.2f} s = "
              f"{round(seconds / 0.02)} RTP packets of 20 ms")
    users = callers(args.callers)
    blocked = [number for number, _ in users] if args.case != "relay" else []
    silent_pcap = work / "silent.pcap"
    silent_pcap.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    servers = ["softswitch"] if args.case == "blocked-sdp" else ["softswitch", "kamailio"]
    if args.only:
        servers = [name for name in servers if name == args.only]
    outcomes: dict[str, Outcome] = {}
    for name in servers:
        directory = work / name
        directory.mkdir(exist_ok=True)
        if name == "kamailio" and not (shutil.which("kamailio")
                                       or Path("/usr/sbin/kamailio").exists()):
            print("kamailio not installed: no anchor run (apt-get install kamailio)")
            continue
        try:
            server = (softswitch(directory, users, blocked) if name == "softswitch"
                      else kamailio(directory, users, blocked, args.children))
        except RuntimeError as error:
            print(f"{name}: could not start: {error}")
            continue
        try:
            outcomes[name] = drive(args, server, directory, users, silent_pcap)
        except RuntimeError as error:
            print(f"{name}: {error}")
        finally:
            stop(server.process)
        if name in outcomes:
            print(outcomes[name].report(), flush=True)
    if len(outcomes) == 2 and not all(outcome.ok for outcome in outcomes.values()):
        print("no ratio: a server handled no call as the case wants")
    elif len(outcomes) == 2:
        ours, theirs = outcomes["softswitch"], outcomes["kamailio"]
        print(f"ratio softswitch/kamailio: rate {ours.rate / theirs.rate:.2f}, CPU per call "
              f"{ours.cpu_ms_per_call / theirs.cpu_ms_per_call:.1f}x")
    return 0 if outcomes else 1


if __name__ == "__main__":
    sys.exit(main())
