#!/usr/bin/env python3
"""One step of scripts/bench/ivr.sh: N concurrent calls to the DTMF test number, measured.

    ivr_step.py --calls 1000 --work /tmp/step --pcap digits.pcap --digits 1234567890 \
        [--lead-ms 8000] [--ramp 8] [--preload sipp_rawconnect.so] [--profile]

A fresh `softswitch run` (RTP ports 20000-22999, log level info) for each step, so that its
memory growth belongs to this step's calls. Its config is on the shipped defaults but for
security.calls_per_source: one SIPp address places every call, so it allows 100,000 (the
default 10 unauthenticated calls per source would refuse the rest). SIPp
(scripts/sipp/uac_ivr_load.xml) places N calls at N/ramp calls/s; each waits --lead-ms after
the answer (the intro prompt plays), keys the pcap's RFC 4733 digits, and waits for the
server to read them back and hang up.

Measured:
- calls: SIPp's successful and failed calls; how many were up at once, from the server's
  log ("answered" +1, "ended" -1), and the window during which that peak was held.
- digits: every `dtmf-test digits=` line against --digits; answered calls with no such line
  lost all their digits.
- CPU: user+system ticks of the server, SIPp and tcpdump from /proc/PID/stat, sampled every
  0.25 s, over the peak window and over the whole step, in % of one core. The softirq time of
  the kernel's loopback delivery is not in any process's ticks on this kernel, and
  /proc/stat undercounts on this VM (its busy time came out below the processes' sum), so
  per-process ticks are all that is reported. Other processes' ticks are summed too: this
  machine is shared, so a step first waits until they are quiet, and reports what they used.
- memory: the server's VmRSS before SIPp starts and its highest sample, per call at the peak.
- threads: the CPU time each of the server's threads ran during the step
  (/proc/PID/task/TID/schedstat, nanoseconds), the event loop's apart ("loop").
- send gaps: tcpdump on lo captures the headers of every RTP packet the server sends (source
  ports 20000-22999, 64 octets: link, IPv4, UDP and RTP headers); for each stream (source
  port, SSRC) the time between consecutive packets of one talkspurt; percentiles over all
  streams, for the whole step and for the peak window. With silence suppression
  (media.silence: suppress, the default) a stream pauses between prompts, sending only a
  keepalive silence frame every media.keepalive_seconds; a packet with the RTP marker bit
  starts a talkspurt after such a pause (RFC 3551 §4.1), so the gap that ends at it is a
  pause, not pacing, and is left out of the gap percentiles. Those talkspurt starts are
  counted instead (rtp_talkspurts; rtp_keepalives: the talkspurts of a single packet), and
  their timing is judged by the RTP timestamp: the gap before each start less the pause its
  timestamp announces (talkspurt_start_gap_ms: 20 ms when on time, like the other gaps).
  libpcap keeps the incoming copy of each loopback packet, and its timestamp is taken when
  the sender's sendto() queues it for delivery (net.core.netdev_tstamp_prequeue=1, the
  default), so the timestamps are send times.

Prints one JSON object (the figures) on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass, field, fields
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scripts" / "sipp" / "uac_ivr_load.xml"
RTP_PORT_MIN, RTP_PORT_MAX = 20000, 22999
SAMPLE_EVERY = 0.25  # seconds between /proc samples
BUSIEST_WINDOW = 2.0  # seconds: shorter windows magnify the sampler's own scheduling delays
TICKS = os.sysconf("SC_CLK_TCK")
PTIME = 0.020  # seconds of audio per RTP packet
RTP_CLOCK = 8000  # RTP timestamp units per second (G.711)
# Octets before the IP header by pcap link type. tcpdump -i lo on Linux writes EN10MB: lo
# has an all-zero 14-octet Ethernet header. The others, for captures made elsewhere.
LINK_HEADER_BYTES = {0: 4, 1: 14, 101: 0, 113: 16, 276: 20}  # NULL, EN10MB, RAW, SLL, SLL2
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


@dataclass(slots=True)
class Sample:
    at: float  # time.time()
    server_ticks: int
    server_system_ticks: int
    sipp_ticks: int
    tcpdump_ticks: int
    server_rss_kb: int
    others_ticks: int  # every other process (kernel threads too), not this script


@dataclass(slots=True)
class Result:
    target: int
    rate: int
    sipp_successful: int = 0
    sipp_failed: int = 0
    answered: int = 0
    peak_concurrent: int = 0
    peak_seconds: float = 0.0  # how long the peak was held
    digit_lines: int = 0
    calls_with_wrong_digits: int = 0
    digits_sent: int = 0
    digits_lost: int = 0
    server_warnings: int = 0
    server_cpu_peak: float = 0.0  # % of one core
    server_system_cpu_peak: float = 0.0  # the kernel's part of server_cpu_peak
    server_cpu_busiest: float = 0.0
    server_cpu_step: float = 0.0
    others_cpu_peak: float = 0.0  # other processes: more than a few % means a disturbed step
    sipp_cpu_peak: float = 0.0
    tcpdump_cpu_peak: float = 0.0
    rss_before_kb: int = 0
    rss_peak_kb: int = 0
    rss_per_call_kb: float = 0.0
    rtp_packets: int = 0
    rtp_streams: int = 0
    rtp_talkspurts: int = 0  # marker-bit packets after a stream's first: gaps not counted
    rtp_keepalives: int = 0  # of those, talkspurts of one packet (suppression's keepalives)
    capture_dropped: int = -1
    gap_ms_step: dict[str, float] = field(default_factory=dict)  # within talkspurts
    gap_ms_peak: dict[str, float] = field(default_factory=dict)
    talkspurt_start_gap_ms: dict[str, float] = field(default_factory=dict)  # whole step
    # CPU seconds of each of the server's threads over the step ("loop": the main thread, the
    # event loop and media clock; the others by their OS name and thread id)
    server_thread_cpu: dict[str, float] = field(default_factory=dict)


# ---- processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# One SIPp address places every call: the per-source call limits (security.calls_per_source,
# 20 unconfirmed and 10 unauthenticated calls by default) would refuse all but the first few.
CALLS_FROM_ONE_SOURCE = {"calls_per_source": {"max_unconfirmed": 100000,
                                              "max_unauthenticated": 100000}}


def write_config(work: Path, port: int, *, subscribers: Sequence[dict[str, object]] = (),
                 sections: dict[str, object] | None = None) -> Path:
    """The bench's config: listen, domain, store, the RTP port range, log level info and the
    per-source call limits raised (CALLS_FROM_ONE_SOURCE); `sections` add top-level keys. All
    else on the shipped defaults."""
    path = work / "bench.yaml"
    config = {
        "log_level": "info",
        "sip": {"domain": "bench.test", "listen": [f"127.0.0.1:{port}"],
                "transports": ["udp"]},
        "store": {"url": f"sqlite+aiosqlite:///{work}/bench.db"},
        "media": {"rtp_port_min": RTP_PORT_MIN, "rtp_port_max": RTP_PORT_MAX},
        "security": CALLS_FROM_ONE_SOURCE,
        **(sections or {}),
        "subscribers": list(subscribers),
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_for_text(path: Path, text: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"{process.args[0]} did not start: see {path}")


def cpu_ticks(pid: int | None, *, system_only: bool = False) -> int:
    """User+system (or only system) CPU ticks of a process so far; 0 once it is gone."""
    if pid is None:
        return 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    user, system = int(stat[11]), int(stat[12])  # utime, stime: fields 14, 15 of stat
    return system if system_only else user + system


def rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


SCHED_IDLE = 5  # the scheduling policy of the server's PIN-check processes


def with_descendants(pid: int) -> list[int]:
    """`pid` and the processes it started, and theirs (the server's PIN-check processes and
    their forkserver)."""
    found, index = [pid], 0
    while index < len(found):
        try:
            tasks = os.listdir(f"/proc/{found[index]}/task")
        except FileNotFoundError:
            tasks = []
        for tid in tasks:
            try:
                children = Path(f"/proc/{found[index]}/task/{tid}/children").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            found.extend(int(child) for child in children.split())
        index += 1
    return found


def thread_runtimes(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread of a process and of its descendants: its name ("pin-check" for one at
    SCHED_IDLE) and the nanoseconds it has run (/proc/PID/task/TID/schedstat, finer than the
    ticks of stat)."""
    runtimes: dict[int, tuple[str, int]] = {}
    for process in with_descendants(pid):
        try:
            tids = os.listdir(f"/proc/{process}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                name = Path(f"/proc/{process}/task/{tid}/comm").read_text().strip()
                stat = Path(f"/proc/{process}/task/{tid}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[38]) == SCHED_IDLE:
                    name = "pin-check"
                runtime = int(Path(f"/proc/{process}/task/{tid}/schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            runtimes[int(tid)] = (name, runtime)
    return runtimes


class Sampler(threading.Thread):
    """Reads the processes' CPU ticks (the server's with its descendants') and the server's
    RSS every SAMPLE_EVERY seconds, and what each of the server's threads has run since the
    first sample."""

    def __init__(self, server: int, tcpdump: int) -> None:
        super().__init__(daemon=True)
        self.server, self.tcpdump = server, tcpdump
        self.sipp: int | None = None
        self.samples: list[Sample] = []
        # tid: (name, nanoseconds run at the first sample that saw it, at the latest)
        self.threads: dict[int, tuple[str, int, int]] = {}
        self._others: dict[int, int] = {}
        self._others_total = 0
        self.done = threading.Event()

    def others(self, server: list[int]) -> int:
        """CPU ticks other processes used since the first sample (a process that started
        since counts from 0, one that ended keeps what it had)."""
        ours = {*server, self.tcpdump, self.sipp, os.getpid()}
        first = not self._others
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) not in ours:
                pid = int(entry.name)
                ticks = cpu_ticks(pid)
                before = self._others.get(pid, ticks if first else 0)
                self._others_total += max(0, ticks - before)
                self._others[pid] = ticks
        return self._others_total

    def run(self) -> None:
        while not self.done.is_set():
            server = with_descendants(self.server)
            self.samples.append(Sample(time.time(), sum(map(cpu_ticks, server)),
                                       sum(cpu_ticks(pid, system_only=True) for pid in server),
                                       cpu_ticks(self.sipp),
                                       cpu_ticks(self.tcpdump), rss_kb(self.server),
                                       self.others(server)))
            first_sample = not self.threads
            for tid, (name, runtime) in thread_runtimes(self.server).items():
                # a thread started since the first sample ran all its time in the step
                first = (self.threads[tid][1] if tid in self.threads
                         else runtime if first_sample else 0)
                self.threads[tid] = (name, first, runtime)
            self.done.wait(SAMPLE_EVERY)

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds of each server thread between the samples: "loop" for the main thread,
        else "NAME:TID"."""
        return {("loop" if tid == self.server else f"{name}:{tid}"):
                round((last - first) / 1e9, 3)
                for tid, (name, first, last) in sorted(self.threads.items())}


# ---- analysis ---------------------------------------------------------------------------------
def log_time(line: str) -> float | None:
    match = LOG_TIME.match(line)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def concurrency(log: list[str]) -> tuple[int, int, float, float]:
    """Answered calls, the most calls up at once, and the window (start, end) it was held."""
    events: list[tuple[float, int]] = []
    for line in log:
        if " answered: " in line or " ended: " in line:
            at = log_time(line)
            if at is not None:
                events.append((at, 1 if " answered: " in line else -1))
    events.sort()
    up = peak = 0
    for _, change in events:
        up += change
        peak = max(peak, up)
    start = end = 0.0
    up = 0
    for at, change in events:
        up += change
        if up == peak and start == 0.0:
            start = at
        elif up < peak and start and not end:
            end = at
    answered = sum(1 for _, change in events if change > 0)
    return answered, peak, start, end or start


def digits_lost(log: list[str], expected: str, answered: int, result: Result) -> None:
    got = [m.group(1) for line in log if (m := re.search(r"dtmf-test digits=(\S*)$", line))]
    result.digit_lines = len(got)
    result.digits_sent = answered * len(expected)
    want = Counter(expected)
    lost = 0
    for digits in got:
        if digits != expected:
            result.calls_with_wrong_digits += 1
        lost += sum((want - Counter(digits)).values())
    result.digits_lost = lost + (answered - len(got)) * len(expected)


def rate(samples: list[Sample], start: float, end: float, attribute: str) -> float:
    """% of one core between the first sample at or after `start` and the last before `end`."""
    times = [s.at for s in samples]
    first, last = bisect_left(times, start), bisect_right(times, end) - 1
    if last <= first:
        return 0.0
    a, b = samples[first], samples[last]
    return 100.0 * (getattr(b, attribute) - getattr(a, attribute)) / TICKS / (b.at - a.at)


def busiest(samples: list[Sample], attribute: str) -> float:
    """The highest % of one core over any BUSIEST_WINDOW seconds of samples."""
    per_second = round(BUSIEST_WINDOW / SAMPLE_EVERY)
    return max((rate(samples, a.at, b.at, attribute)
                for a, b in zip(samples, samples[per_second:], strict=False)), default=0.0)


def percentiles(gaps: array[float]) -> dict[str, float]:
    if not gaps:
        return {}
    ordered = sorted(gaps)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999),
            "max": round(1000 * ordered[-1], 2), "over_25ms_pct": round(
                100 * (len(ordered) - bisect_right(ordered, 0.025)) / len(ordered), 3)}


def pcap_layout(data: bytes) -> tuple[str, float, int]:
    """Byte order, seconds per timestamp fraction and link-header octets of a pcap file."""
    for order in "<>":
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            link_type = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
            if link_type not in LINK_HEADER_BYTES:
                raise SystemExit(f"capture: pcap link type {link_type} is not supported")
            return order, 1e-9 if magic == 0xA1B23C4D else 1e-6, LINK_HEADER_BYTES[link_type]
    raise SystemExit("capture: not a pcap file (pcapng is not read)")


def send_gaps(pcap: Path, peak: tuple[float, float], result: Result) -> None:
    """Per-stream inter-packet gaps of the captured RTP within talkspurts, and the talkspurt
    starts counted and timed apart (see the module doc)."""
    data = pcap.read_bytes()
    order, scale, link = pcap_layout(data)
    # per stream: the last packet's time and RTP timestamp, and whether it began a talkspurt
    last: dict[tuple[int, int], tuple[float, int, bool]] = {}
    step_gaps: array[float] = array("d")
    peak_gaps: array[float] = array("d")
    start_gaps: array[float] = array("d")
    record = struct.Struct(order + "IIII")
    offset, packets = 24, 0
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = record.unpack_from(data, offset)
        body = offset + 16
        offset = body + captured
        ip = body + link
        if captured <= link or data[ip] >> 4 != 4:
            continue
        rtp = ip + (data[ip] & 0x0F) * 4 + 8
        if rtp + 12 > offset:
            continue
        port = (data[rtp - 8] << 8) | data[rtp - 7]  # the UDP source port
        marker = data[rtp + 1] & 0x80 != 0
        timestamp = int.from_bytes(data[rtp + 4:rtp + 8], "big")
        ssrc = int.from_bytes(data[rtp + 8:rtp + 12], "big")
        at = seconds + fraction * scale
        packets += 1
        previous = last.get((port, ssrc))
        last[port, ssrc] = (at, timestamp, marker and previous is not None)
        if previous is None:
            continue
        before, before_timestamp, lone_start = previous
        gap = at - before
        if marker:
            result.rtp_talkspurts += 1
            result.rtp_keepalives += lone_start
            pause = ((timestamp - before_timestamp) & 0xFFFFFFFF) / RTP_CLOCK - PTIME
            start_gaps.append(gap - pause)
            continue
        step_gaps.append(gap)
        if peak[0] <= at <= peak[1]:
            peak_gaps.append(gap)
    result.rtp_keepalives += sum(lone_start for _, _, lone_start in last.values())
    result.rtp_packets, result.rtp_streams = packets, len(last)
    result.gap_ms_step, result.gap_ms_peak = percentiles(step_gaps), percentiles(peak_gaps)
    result.talkspurt_start_gap_ms = percentiles(start_gaps)


def sipp_counts(stat: Path) -> tuple[int, int]:
    lines = stat.read_text().splitlines() if stat.exists() else []
    if len(lines) < 2:
        return 0, 0
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last, strict=False))
    return int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])


# ---- the step ---------------------------------------------------------------------------------
def pin(args: argparse.Namespace, cpu: int) -> list[str]:
    """With --pin: the server alone on CPU 0, the load (SIPp, tcpdump) on CPU 1."""
    return ["taskset", "-c", str(cpu)] if args.pin else []


def priority(args: argparse.Namespace) -> list[str]:
    """With --nice N: the server at that nice value (negative: ahead of SIPp). With
    --realtime N: under the round-robin real-time policy at priority N, as an operator runs a
    media server (`CPUSchedulingPolicy=rr` in its systemd unit): it then runs whenever it is
    ready, ahead of every ordinary process such as SIPp."""
    if args.realtime:
        return ["chrt", "--rr", str(args.realtime)]
    return ["nice", "-n", str(args.nice)] if args.nice else []


def wait_until_quiet(limit: float, patience: float) -> None:
    """This machine is shared: wait (at most `patience` seconds) until other processes use
    less than `limit` % of a core, measured over 2 s, so that they do not take the step's CPU."""
    deadline = time.monotonic() + patience
    probe = Sampler(0, 0)
    while True:
        before = probe.others([])
        time.sleep(2.0)
        busy = 100.0 * (probe.others([]) - before) / TICKS / 2.0
        if busy < limit:
            return
        if time.monotonic() > deadline:
            print(f"other processes still use {busy:.0f}% of a core; measuring anyway",
                  file=sys.stderr)
            return
        print(f"other processes use {busy:.0f}% of a core; waiting", file=sys.stderr)


def drive(args: argparse.Namespace, result: Result, config: Path, port: int,
          scenario: Sequence[str], *, profile_after: float) -> Sampler:
    """Run the server (on `config`, listening on `port`), tcpdump and SIPp (`scenario`: its
    scenario's arguments, -sf and what it needs) for one step; the sampler, with the /proc
    samples taken meanwhile. With --profile, py-spy records the server for 8 s from
    `profile_after` seconds after SIPp starts. Whatever happens, no process is left behind."""
    work: Path = args.work
    softswitch = Path(sys.executable).with_name("softswitch")
    running: list[subprocess.Popen[bytes]] = []
    try:
        with open(work / "server.stdout", "wb") as out, open(work / "server.log", "wb") as err:
            server = subprocess.Popen([*pin(args, 0), *priority(args), str(softswitch), "run",
                                       "--config", str(config)],
                                      stdout=out, stderr=err, cwd=work)
        running.append(server)
        wait_for_text(work / "server.stdout", "listening on", 120, server)
        with open(work / "tcpdump.err", "wb") as err:
            tcpdump = subprocess.Popen(
                [*pin(args, 1), "tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "65536",
                 "-w", str(work / "rtp.pcap"),
                 f"udp and src host 127.0.0.1 and src portrange {RTP_PORT_MIN}-{RTP_PORT_MAX}"],
                stderr=err)
        running.append(tcpdump)
        wait_for_text(work / "tcpdump.err", "listening on", 10, tcpdump)
        time.sleep(1.0)  # the server settles after start-up
        result.rss_before_kb = rss_kb(server.pid)
        sampler = Sampler(server.pid, tcpdump.pid)
        sampler.start()

        env = dict(os.environ)
        if args.preload:
            env["LD_PRELOAD"] = str(args.preload)
        sipp_args = [
            *pin(args, 1), "sipp", f"127.0.0.1:{port}", *scenario,
            "-m", str(args.calls), "-l", str(args.calls), "-r", str(result.rate),
            "-i", "127.0.0.1", "-p", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(free_port()),
            "-trace_stat", "-stf", str(work / "sipp-stat.csv"), "-fd", "1", "-trace_err",
            "-timeout", "300s", "-nostdin"]
        with open(work / "sipp.out", "wb") as out:
            sipp = subprocess.Popen(sipp_args, stdout=out, stderr=subprocess.STDOUT, cwd=work,
                                    env=env)
        running.append(sipp)
        sampler.sipp = sipp.pid
        if args.profile:  # for as long as the peak lasts
            time.sleep(profile_after)
            running.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(server.pid),
                 "-f", "raw", "-o", str(work / "profile.txt"), "-d", "8", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for process in running[2:]:
            process.wait(timeout=400)
        time.sleep(1.0)
        sampler.done.set()
        sampler.join()
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=30)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    return sampler


def measure(args: argparse.Namespace, result: Result, sampler: Sampler,
            log: list[str]) -> tuple[float, float]:
    """What every step reports: SIPp's counts, calls held at once, CPU, memory and the send
    gaps (see the module doc). The peak window (start, end) it used."""
    work: Path = args.work
    samples = sampler.samples
    result.sipp_successful, result.sipp_failed = sipp_counts(work / "sipp-stat.csv")
    result.server_warnings = sum(1 for line in log if " WARNING " in line or " ERROR " in line)
    answered, peak, start, end = concurrency(log)
    result.answered, result.peak_concurrent = answered, peak
    result.peak_seconds = round(end - start, 2)
    if end - start < 2 * SAMPLE_EVERY:  # a peak too short to measure: the busiest 2 s
        start, end = max(start - 1.0, samples[0].at), start + 1.0
    result.server_cpu_peak = round(rate(samples, start, end, "server_ticks"), 1)
    result.server_system_cpu_peak = round(rate(samples, start, end, "server_system_ticks"), 1)
    result.server_cpu_busiest = round(busiest(samples, "server_ticks"), 1)
    result.server_cpu_step = round(rate(samples, samples[0].at, samples[-1].at,
                                        "server_ticks"), 1)
    result.sipp_cpu_peak = round(rate(samples, start, end, "sipp_ticks"), 1)
    result.tcpdump_cpu_peak = round(rate(samples, start, end, "tcpdump_ticks"), 1)
    result.others_cpu_peak = round(rate(samples, start, end, "others_ticks"), 1)
    result.server_thread_cpu = sampler.thread_cpu()
    with open(work / "samples.csv", "w") as out:  # for a closer look at a step
        out.write(",".join(("seconds", *(f.name for f in fields(Sample)[1:]))) + "\n")
        for s in samples:
            values = astuple(s)
            out.write(",".join((f"{s.at - samples[0].at:.2f}", *map(str, values[1:]))) + "\n")
    result.rss_peak_kb = max(s.server_rss_kb for s in samples)
    result.rss_per_call_kb = round((result.rss_peak_kb - result.rss_before_kb) / max(peak, 1), 1)
    dropped = re.search(r"(\d+) packets? dropped by kernel",
                        (work / "tcpdump.err").read_text(errors="replace"))
    result.capture_dropped = int(dropped.group(1)) if dropped else -1
    send_gaps(work / "rtp.pcap", (start, end), result)
    return start, end


def run(args: argparse.Namespace) -> Result:
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    wait_until_quiet(limit=5.0, patience=args.patience)
    result = Result(target=args.calls, rate=math.ceil(args.calls / args.ramp))
    port = free_port()
    scenario = ["-sf", str(SCENARIO), "-s", "1999", "-key", "pcap", str(args.pcap),
                "-d", str(args.lead_ms)]
    sampler = drive(args, result, write_config(work, port), port, scenario,
                    profile_after=args.ramp + 1)  # once the ramp is over
    log = (work / "server.log").read_text(errors="replace").splitlines()
    measure(args, result, sampler, log)
    digits_lost(log, args.digits, result.answered, result)
    return result


def add_step_options(parser: argparse.ArgumentParser) -> None:
    """The options of a step's machinery (drive(), wait_until_quiet()), remote_step.py's too."""
    parser.add_argument("--preload", type=Path, help="LD_PRELOAD for SIPp")
    parser.add_argument("--pin", action="store_true",
                        help="the server on CPU 0, SIPp and tcpdump on CPU 1")
    parser.add_argument("--patience", type=float, default=600.0,
                        help="seconds to wait for other processes to go quiet first")
    parser.add_argument("--nice", type=int, default=0, help="the server's nice value")
    parser.add_argument("--realtime", type=int, default=0,
                        help="the server's SCHED_RR priority (1-99; 0: ordinary scheduling)")
    parser.add_argument("--profile", action="store_true", help="py-spy the server at the peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--pcap", type=Path, required=True)
    parser.add_argument("--digits", required=True, help="the digits the pcap keys, without #")
    parser.add_argument("--lead-ms", type=int, default=8000)
    parser.add_argument("--ramp", type=float, default=8.0, help="seconds to place all calls")
    add_step_options(parser)
    result = run(parser.parse_args())
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
