#!/usr/bin/env python3
"""Profile the blocked-call path in one process: softswitch (softswitch.app.start) and a
minimal SIP caller on the same event loop, over real UDP sockets on 127.0.0.1, with cProfile
around the lot. The caller's own functions are in this file, so the profile separates them.

    .venv/bin/python scripts/bench/profile_calls.py [CALLS] [CONCURRENCY]     (2000 20)
    PROFILE=0 ...    no profiler: the CPU per call as it is (caller included)

Prints the server's CPU per call (process time minus the caller's, roughly) and the top
functions by cumulative and own time. A tool for finding where a call's CPU goes, not a
benchmark: scripts/bench/blocked.sh is that.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from softswitch.app import start  # noqa: E402
from softswitch.config import parse_config  # noqa: E402
from softswitch.sip.digest import authorization, parse_digest  # noqa: E402

CALLEE, CALLER, PASSWORD, DOMAIN = "09020000000", "09010000001", "pw-1", "bench.test"


class Caller(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[bytes]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if data.startswith(b"SIP/2.0 100"):
            return
        call_id = data.split(b"\r\nCall-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        waiter = self.waiting.pop(call_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)


def invite(port: int, local: int, call_id: str, cseq: int, branch: str,
           auth: str = "") -> bytes:
    return (f"INVITE sip:{CALLEE}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
            f"From: <sip:{CALLER}@{DOMAIN}>;tag={call_id}\r\nTo: <sip:{CALLEE}@{DOMAIN}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
            f"Contact: <sip:{CALLER}@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n{auth}"
            "Content-Length: 0\r\n\r\n").encode()


def ack(port: int, local: int, call_id: str, cseq: int, branch: str, to_tag: str) -> bytes:
    return (f"ACK sip:{CALLEE}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
            f"From: <sip:{CALLER}@{DOMAIN}>;tag={call_id}\r\n"
            f"To: <sip:{CALLEE}@{DOMAIN}>;tag={to_tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def header(message: bytes, name: bytes) -> str:
    return message.split(b"\r\n" + name + b": ", 1)[1].split(b"\r\n", 1)[0].decode()


async def one_call(transport: asyncio.DatagramTransport, caller: Caller, port: int, local: int,
                   number: int) -> int:
    loop = asyncio.get_running_loop()
    call_id = f"c{number}"
    challenged = b""
    for cseq in (1, 2):
        branch = f"z9hG4bK{number}x{cseq}"
        auth = ""
        if cseq == 2:
            challenge = parse_digest(header(challenged, b"Proxy-Authenticate"))
            assert challenge is not None
            value = authorization(challenge, "INVITE", f"sip:{CALLEE}@127.0.0.1:{port}",
                                  CALLER, PASSWORD, "abc", 1)
            auth = f"Proxy-Authorization: {value}\r\n"
        waiter: asyncio.Future[bytes] = loop.create_future()
        caller.waiting[call_id] = waiter
        transport.sendto(invite(port, local, call_id, cseq, branch, auth), ("127.0.0.1", port))
        answer = await asyncio.wait_for(waiter, 10)
        to_tag = header(answer, b"To").split("tag=")[1]
        transport.sendto(ack(port, local, call_id, cseq, branch, to_tag), ("127.0.0.1", port))
        challenged = answer
    return int(answer.split(b" ", 2)[1])


async def main(calls: int, concurrency: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="softswitch-profile-"))
    config = parse_config(yaml.safe_dump({
        "sip": {"listen": ["127.0.0.1:0"], "domain": DOMAIN, "transports": ["udp"]},
        "store": {"url": f"sqlite:///{work / 'store.db'}"},
        "security": {"calls_per_source": {"max_unconfirmed": 100000,
                                          "max_unauthenticated": 100000}},
        "calls": {"cdr_file": str(work / "cdr.jsonl")},
        "subscribers": [
            {"number": CALLEE, "sim": "voice", "line": "D", "sip_password": "pw-callee"},
            {"number": CALLER, "sim": "voice", "line": "D", "sip_password": PASSWORD}],
        "log_level": "warning",
    }))
    server = await start(config)
    await server.services.blocklist.add(CALLEE, CALLER)
    port = server.stack.bound[0][1].port
    loop = asyncio.get_running_loop()
    transport, caller = await loop.create_datagram_endpoint(Caller,
                                                            local_addr=("127.0.0.1", 0))
    local = transport.get_extra_info("sockname")[1]
    numbers = itertools.count()
    statuses: list[int] = []

    async def worker() -> None:
        for number in numbers:
            if number >= calls:
                return
            statuses.append(await one_call(transport, caller, port, local, number))

    profile = cProfile.Profile()
    profiling = os.environ.get("PROFILE", "1") != "0"
    started, cpu = time.perf_counter(), time.process_time()
    if profiling:
        profile.enable()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if profiling:
        profile.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    transport.close()
    await server.close()
    print(f"{len(statuses)} calls, statuses {sorted(set(statuses))}, {elapsed:.1f} s, "
          f"process CPU {1000 * cpu / calls:.3f} ms per call (caller and server, profiled)")
    if not profiling:
        return
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 20))
