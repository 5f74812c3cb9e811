#!/usr/bin/env python3
"""One step of scripts/bench/remote.sh: N concurrent remote-control calls, measured.

    remote_step.py --calls 500 --work /tmp/step --template /tmp/store.db --subscribers 750 \
        [--ramp 20] [--lead-ms 6000] [--hold-ms 20000] [--pin-cost shipped|cheap]
        [--preload sipp_rawconnect.so] [--pin] [--realtime 10] [--profile]

The machinery is ivr_step.py's (a fresh `softswitch run` per step, tcpdump, /proc sampling,
send gaps: read its doc); what differs is the call and how a call is judged.

The subscribers: --subscribers voice SIMs 09050000000, 09050000001, ... with the shipped PIN
(pin.default), remote control switched on (it is off until the subscriber turns it on), and
voicemail off for the odd ones (it is on for a new subscriber). The store is provisioned
once into --template (argon2 hashes every PIN: about 35 ms each) and copied for each step.
Call i (SIPp's i-th call, CSV line i) is subscriber i's: every call its own subscriber, so
neither the per-subscriber PIN counters nor the per-source PIN throttle are what is measured.

One call (SIPp, a scenario written to the work directory): INVITE the remote-access number
(dial_codes.remote_access) without authentication, wait --lead-ms after the answer (the
5.6 s "enter your number" prompt), key the subscriber's number and `#`, wait 5 s (the 4.6 s
PIN prompt), key the PIN and `#`, wait 2 s (the menu starts), key `2` (voicemail off) for an
even subscriber or `1` (on) for an odd one, listen --hold-ms (the confirmation, the menu
again), and hang up. Keys are RFC 4733 events from pcaps made by make_dtmf_pcap.py, 100 ms
keys 400 ms apart with G.711 silence frames between them as a phone sends; one RTP stream
(one SSRC, sequence numbers and timestamps running on) cut into pieces: the fixed part of
the number, one piece per digit position and digit value, the PIN part and the choice. SIPp
3.6.1 reads a pcap when it loads the scenario and cannot pick one per call, so the scenario
plays each position's piece under a condition on the call's CSV digit.

Judged per call: its number and PIN were taken (a `pin-ok ... via=remote-access` line for
its subscriber), its choice was made (a `remote-change` line), and afterwards the store
says so (voicemail_settings.enabled is on for odd subscribers, off for even ones). A call
that misses one of these lost a key. The delay of the PIN check: from the press of the PIN's
`#` (its place in the keys after the answer, the call found by its Call-ID: SIPp's call k
keys CSV line k) to its `pin-ok` line; SIPp's own lateness in playing is in it too.

argon2's cost: --pin-cost cheap replaces every PIN hash in the step's store by an argon2id
hash of the same PIN at the smallest parameters (8 KiB, 1 pass: ~0.1 ms), so the same calls
run the same code with the PIN check all but free: the send gaps of the two at the same
concurrency show whether the check reaches the media clock, and the server's CPU outside the
loop thread, the difference. The PIN checks' own processes (the server's children at
SCHED_IDLE) are measured directly (/proc/PID/task/TID/schedstat) and divided by the checks
made.

Prints one JSON object (the figures) on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import sqlite3
import struct
import sys
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ivr_step import (
    RTP_PORT_MAX,
    RTP_PORT_MIN,
    Result,
    add_step_options,
    drive,
    free_port,
    log_time,
    measure,
    percentiles,
    wait_until_quiet,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import make_dtmf_pcap  # noqa: E402  (a standalone script, imported for its packet builders)

NUMBER_BASE = "0905"  # subscribers 0905NNNNNNN
NUMBER_DIGITS = 11
PIN_THROTTLE = {"max_failures": 10000, "window_seconds": 600}  # see remote.sh's header
KEY_MS = 100  # a key's events
GAP_MS = 400  # silence after each key
SLOT_MS = KEY_MS + GAP_MS
PAUSE_MS = 1000  # make_dtmf_pcap's ","
PIN_PROMPT_WAIT = ",,,,,"  # the PIN prompt (4.6 s) plays out
MENU_WAIT = ",,"  # the menu starts before the caller chooses
CHOICE_ON, CHOICE_OFF = "1", "2"  # menus.remote voicemail_on / voicemail_off (shipped keys)
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
PIN_CHECK_THREAD = "pin-check"  # what ivr_step.thread_runtimes names them


@dataclass(slots=True)
class RemoteResult(Result):
    ramp_seconds: float = 0.0
    pin_cost: str = "shipped"
    pin_ok: int = 0  # pin-ok lines of the step's subscribers (via remote-access)
    pin_failed: int = 0  # pin-failed lines: none expected
    changes: int = 0  # remote-change lines for the step's subscribers
    state_right: int = 0  # subscribers whose voicemail is as their call set it
    calls_losing_keys: int = 0  # calls placed that missed any of the three above
    pin_delay_ms: dict[str, float] = field(default_factory=dict)  # the PIN's # to pin-ok
    pin_thread_cpu_s: float = 0.0  # the PIN-check processes (SCHED_IDLE), whole step
    other_threads_cpu_s: float = 0.0  # all threads but the loop, whole step
    argon2_cpu_ms_per_call: float = 0.0  # pin_thread_cpu_s / pin checks


def number(index: int) -> str:
    return f"{NUMBER_BASE}{index:0{NUMBER_DIGITS - len(NUMBER_BASE)}d}"


def choice(index: int) -> str:
    """Even subscribers start with voicemail on and turn it off; odd ones the other way."""
    return CHOICE_ON if index % 2 else CHOICE_OFF


# ---- the store --------------------------------------------------------------------------------
def subscribers(count: int) -> list[dict[str, object]]:
    return [{"number": number(i), "sim": "voice", "line": "D", "sip_password": f"pw-{i}"}
            for i in range(count)]


async def provision(config_path: Path, count: int) -> None:
    """Provision the template store as the server would, then switch remote control on for
    every subscriber and voicemail off for the odd ones, through the services."""
    from softswitch.config import load_config
    from softswitch.services import build_services
    from softswitch.store.repositories import sql_repositories
    from softswitch.store.store import Store

    config = load_config(config_path)
    store = await Store.open(config.store.url)
    try:
        await store.provision(config)
        services = build_services(config, sql_repositories(store))
        try:
            for i in range(count):
                await services.remote_control.set_enabled(number(i), True)
                if choice(i) == CHOICE_ON:
                    await services.voicemail.set_enabled(number(i), False)
        finally:
            await services.close()
    finally:
        await store.close()


def template_store(template: Path, count: int, sections: dict[str, object]) -> None:
    """Build `template` once (the first step of a run does it)."""
    if template.exists():
        return
    building = template.with_name(template.name + ".building")
    building.mkdir(parents=True, exist_ok=True)
    config = write_config(building, free_port(), subscribers=subscribers(count),
                          sections=sections)
    asyncio.run(provision(config, count))
    (building / "bench.db").rename(template)
    shutil.rmtree(building)


def cheapen_pins(database: Path, pin: str) -> None:
    from argon2 import PasswordHasher

    cheap = PasswordHasher(**CHEAP_ARGON2).hash(pin)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE pins SET pin_hash = ?", (cheap,))


def voicemail_states(database: Path) -> dict[str, bool]:
    with sqlite3.connect(database) as connection:
        return {row[0]: bool(row[1]) for row in connection.execute(
            "SELECT number, enabled FROM voicemail_settings")}


# ---- the keys ---------------------------------------------------------------------------------
def slots(keys: str) -> list[tuple[float, float]]:
    """(start, end) in seconds of each key or pause of `keys` in make_dtmf_pcap's timing."""
    at, spans = 0.0, []
    for key in keys:
        length = (PAUSE_MS if key == make_dtmf_pcap.PAUSE else SLOT_MS) / 1000
        spans.append((at, at + length))
        at += length
    return spans


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    """The packets as a pcap, times from the first packet's (SIPp plays relative to it)."""
    start = packets[0][0]
    with open(path, "wb") as out:
        out.write(make_dtmf_pcap.PCAP_HEADER)
        for at, rtp in packets:
            data = make_dtmf_pcap.frame(rtp)
            seconds, micros = divmod(round((at - start) * 1e6), 1_000_000)
            out.write(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)


@dataclass(slots=True, frozen=True)
class Keying:
    """What a call keys and when (seconds from the start of its keys)."""

    fixed: str  # the digits of the number every call shares
    variable: int  # the digits that differ per call
    pin: str

    def keys(self, digits: str, chosen: str) -> str:
        return (self.fixed + digits + "#" + PIN_PROMPT_WAIT + self.pin + "#" + MENU_WAIT
                + chosen)

    @property
    def pin_end_key_at(self) -> float:
        """When the PIN's # is pressed (its first event: the entry ends there)."""
        spans = slots(self.keys("0" * self.variable, CHOICE_ON))
        return spans[len(self.fixed) + self.variable + 1 + len(PIN_PROMPT_WAIT)
                     + len(self.pin)][0]

    def pieces(self, directory: Path) -> list[tuple[str, list[tuple[str, str]], float]]:
        """Write the pcaps; the plays in order: (name, [(condition, pcap path)], seconds)
        with condition "" for a piece every call plays."""
        def cut(keys: str, first: int, last: int) -> list[tuple[float, bytes]]:
            spans = slots(keys)
            start, end = spans[first][0], spans[last][1]
            return [(at, rtp) for at, rtp in make_dtmf_pcap.event_packets(
                keys, 101, KEY_MS, GAP_MS, 10, True, "PCMU")
                if start - 1e-6 <= at < end - 1e-6]  # the times are sums of 0.02 s

        plays: list[tuple[str, list[tuple[str, str]], float]] = []
        base = self.keys("0" * self.variable, CHOICE_ON)
        fixed = len(self.fixed)
        path = directory / "fixed.pcap"
        write_pcap(path, cut(base, 0, fixed - 1))
        plays.append(("fixed", [("", str(path))], fixed * SLOT_MS / 1000))
        for position in range(self.variable):
            options = []
            for digit in "0123456789":
                path = directory / f"digit{position}-{digit}.pcap"
                keys = self.keys(digit * self.variable, CHOICE_ON)
                write_pcap(path, cut(keys, fixed + position, fixed + position))
                options.append((f"d{position}_is_{digit}", str(path)))
            plays.append((f"digit {position}", options, SLOT_MS / 1000))
        first = fixed + self.variable
        last = len(base) - 2  # the PIN part ends before the choice
        path = directory / "pin.pcap"
        write_pcap(path, cut(base, first, last))
        plays.append(("pin", [("", str(path))], slots(base)[last][1] - slots(base)[first][0]))
        options = []
        for chosen in (CHOICE_ON, CHOICE_OFF):
            path = directory / f"choice-{chosen}.pcap"
            keys = self.keys("0" * self.variable, chosen)
            write_pcap(path, cut(keys, len(keys) - 1, len(keys) - 1))
            options.append((f"choice_is_{chosen}", str(path)))
        plays.append(("choice", options, SLOT_MS / 1000))
        return plays


def scenario(path: Path, plays: list[tuple[str, list[tuple[str, str]], float]],
             variable: int, lead_ms: int, hold_ms: int) -> None:
    """The SIPp scenario of one call (see the module doc). CSV fields: the variable digits
    of the number one per field, then the choice."""
    conditions = []
    for position in range(variable):
        conditions.append(f'<assignstr assign_to="d{position}" value="[field{position}]"/>')
        conditions += [f'<strcmp assign_to="d{position}_is_{digit}" variable="d{position}" '
                       f'value="{digit}"/>' for digit in "0123456789"]
    conditions.append(f'<assignstr assign_to="choice" value="[field{variable}]"/>')
    conditions += [f'<strcmp assign_to="choice_is_{chosen}" variable="choice" '
                   f'value="{chosen}"/>' for chosen in (CHOICE_ON, CHOICE_OFF)]
    steps = []
    for name, options, seconds in plays:
        steps.append(f"  <!-- {name} -->")
        for condition, pcap in options:
            # strcmp gives 0 for equal strings, which condexec reads as not set
            when = (f' condexec="{condition}" condexec_inverse="true"' if condition else "")
            steps.append(f'  <nop{when}><action><exec play_pcap_audio="{pcap}"/></action>'
                         "</nop>")
        steps.append(f'  <pause milliseconds="{round(seconds * 1000)}"/>')
    body = "\n".join(steps)
    actions = "\n      ".join(conditions)
    path.write_text(f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- Written by scripts/bench/remote_step.py: one remote-control call (see its doc). -->
<scenario name="remote control load">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      {actions}
    </action>
  </nop>
  <pause milliseconds="{lead_ms}"/>
{body}
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
""")


# ---- judging ----------------------------------------------------------------------------------
PIN_OK = re.compile(r"pin-ok source=\S+ number=(\d+) via=remote-access$")
CHANGE = re.compile(r"remote-change source=\S+ number=(\d+) change=(\S+)")
ANSWERED = re.compile(r" call (\d+)-\S+ to \S+ answered: ")


def judge(log: list[str], calls: int, states: dict[str, bool], pin_end_key_at: float,
          lead_ms: int, result: RemoteResult) -> None:
    placed = {number(i): i for i in range(calls)}
    answered_at: dict[int, float] = {}  # subscriber index: when its call was answered
    authenticated: dict[str, float] = {}
    changed: Counter[str] = Counter()
    for line in log:
        if (match := ANSWERED.search(line)) and (at := log_time(line)) is not None:
            answered_at[int(match.group(1)) - 1] = at  # SIPp call k takes CSV line k - 1
        elif (match := PIN_OK.search(line)) and match.group(1) in placed:
            at = log_time(line)
            authenticated[match.group(1)] = at if at is not None else 0.0
        elif " pin-failed " in line:
            result.pin_failed += 1
        elif (match := CHANGE.search(line)) and match.group(1) in placed:
            expected = "voicemail-on" if choice(placed[match.group(1)]) == CHOICE_ON \
                else "voicemail-off"
            changed[match.group(1)] += match.group(2) == expected
    result.pin_ok, result.changes = len(authenticated), sum(changed.values())
    right = [n for n, i in placed.items() if states.get(n) == (choice(i) == CHOICE_ON)]
    result.state_right = len(right)
    result.calls_losing_keys = sum(
        1 for n in placed if n not in authenticated or not changed[n] or n not in right)
    delays = [authenticated[n] - answered_at[i] - lead_ms / 1000 - pin_end_key_at
              for n, i in placed.items() if n in authenticated and i in answered_at]
    result.pin_delay_ms = percentiles(array("d", delays))


def run(args: argparse.Namespace) -> RemoteResult:
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    sections: dict[str, object] = {"pin": {"throttle": PIN_THROTTLE}}
    template_store(args.template, max(args.subscribers, args.calls), sections)
    wait_until_quiet(limit=5.0, patience=args.patience)
    from softswitch.config import load_config

    port = free_port()
    config_path = write_config(work, port, subscribers=subscribers(
        max(args.subscribers, args.calls)), sections=sections)
    config = load_config(config_path)
    shutil.copyfile(args.template, work / "bench.db")
    if args.pin_cost == "cheap":
        cheapen_pins(work / "bench.db", config.pin.default)

    variable = len(str(max(args.subscribers, args.calls) - 1))
    keying = Keying(number(0)[:NUMBER_DIGITS - variable], variable, config.pin.default)
    plays = keying.pieces(work)
    scenario(work / "remote.xml", plays, variable, args.lead_ms, args.hold_ms)
    with open(work / "callers.csv", "w") as csv:
        csv.write("SEQUENTIAL\n")
        for i in range(args.calls):
            csv.write(";".join([*number(i)[NUMBER_DIGITS - variable:], choice(i)]) + "\n")

    result = RemoteResult(target=args.calls, rate=math.ceil(args.calls / args.ramp),
                          ramp_seconds=args.ramp, pin_cost=args.pin_cost)
    sipp = ["-sf", str(work / "remote.xml"), "-s", config.dial_codes.remote_access,
            "-inf", str(work / "callers.csv")]
    keyed = sum(seconds for _, _, seconds in plays)
    sampler = drive(args, result, config_path, port, sipp,  # while the PIN checks run
                    profile_after=args.lead_ms / 1000 + keying.pin_end_key_at + args.ramp / 2 - 4)
    log = (work / "server.log").read_text(errors="replace").splitlines()
    measure(args, result, sampler, log)
    result.digits_sent = args.calls * (NUMBER_DIGITS + 1 + len(config.pin.default) + 1 + 1)
    judge(log, args.calls, voicemail_states(work / "bench.db"), keying.pin_end_key_at, args.lead_ms,
          result)
    threads = result.server_thread_cpu
    result.pin_thread_cpu_s = round(sum(cpu for name, cpu in threads.items()
                                        if name.startswith(PIN_CHECK_THREAD)), 3)
    result.other_threads_cpu_s = round(sum(cpu for name, cpu in threads.items()
                                           if name != "loop"), 3)
    checks = result.pin_ok + result.pin_failed
    if checks and result.pin_thread_cpu_s:
        result.argon2_cpu_ms_per_call = round(1000 * result.pin_thread_cpu_s / checks, 2)
    print(f"keys take {keyed:.1f} s of each call; RTP ports {RTP_PORT_MIN}-{RTP_PORT_MAX}",
          file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--template", type=Path, required=True,
                        help="the provisioned store to copy (built if missing)")
    parser.add_argument("--subscribers", type=int, default=0,
                        help="subscribers in the template (at least --calls)")
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds to place all calls")
    parser.add_argument("--lead-ms", type=int, default=6000,
                        help="after the answer, before the first key")
    parser.add_argument("--hold-ms", type=int, default=20000,
                        help="after the choice, before the caller hangs up")
    parser.add_argument("--pin-cost", choices=("shipped", "cheap"), default="shipped")
    add_step_options(parser)
    result = run(parser.parse_args())
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
