#!/usr/bin/env python3
"""Where a call's CPU goes: softswitch and a minimal SIP peer (callers, the callee's phone) on
one event loop, over real UDP sockets on 127.0.0.1, with cProfile around the lot. The peer's
own functions are in this file, so the profile separates them.

    .venv/bin/python scripts/bench/profile_calls.py [--case CASE] [CALLS] [CONCURRENCY]
        blocked   (default; 2000 20) a blocked caller without SDP: INVITE, 407, ACK, INVITE
                  with credentials, 603, ACK
        relay     (2000 20) a subscriber's call relayed by the B2BUA to the callee's phone,
                  registered first: INVITE, 407, ACK, INVITE with credentials, 100, 180, 200,
                  ACK, BYE, 200 on the caller's side; INVITE, 180, 200, ACK, BYE, 200 on the
                  phone's
        register  (8000 100) REGISTER, 401, REGISTER with credentials, 200 (200 users)
    PROFILE=0 ...    no profiler: the CPU per call of the process (peer included)
    --spawn          the server in a process of its own (`softswitch run`, uvloop as
                     deployed, the config of call_bench.py): its CPU per call from /proc,
                     the peer's apart; no profile

Prints the CPU per call and, profiled, the top functions by cumulative and own time. A tool
for finding where a call's CPU goes and for comparing changes (--spawn is the steadiest
figure: it counts the server alone); scripts/bench/blocked.sh, relay.sh and register.sh are
the benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import call_bench  # noqa: E402

from softswitch.config import parse_config  # noqa: E402
from softswitch.sip.digest import authorization, parse_digest  # noqa: E402

CALLEE, CALLEE_PASSWORD, DOMAIN = call_bench.CALLEE, call_bench.CALLEE_PASSWORD, "bench.test"
DEFAULTS = {"blocked": (2000, 20), "relay": (2000, 20), "register": (8000, 100)}
CALLERS = call_bench.callers(200)  # (number, password); the first 30 are blocked
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")


def header(message: bytes, name: bytes) -> str:
    return message.split(b"\r\n" + name + b": ", 1)[1].split(b"\r\n", 1)[0].decode()


def status_of(message: bytes) -> int:
    return int(message.split(b" ", 2)[1])


class Peer(asyncio.DatagramProtocol):
    """One UDP socket: answers to our requests go to whoever awaits that Call-ID and method;
    requests go to `on_request`."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, str], asyncio.Future[bytes]] = {}
        self.on_request: Callable[[bytes], None] = lambda data: None
        self.transport: asyncio.DatagramTransport
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if not data.startswith(b"SIP/2.0 "):
            self.on_request(data)
            return
        if status_of(data) < 200:
            return
        key = (header(data, b"Call-ID"), header(data, b"CSeq").split(" ")[1])
        waiter = self.waiting.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    async def ask(self, request: str, call_id: str, method: str, server: int) -> bytes:
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[(call_id, method)] = waiter
        self.transport.sendto(request.encode(), ("127.0.0.1", server))
        return await asyncio.wait_for(waiter, 10)

    def send(self, message: str, server: int) -> None:
        self.transport.sendto(message.encode(), ("127.0.0.1", server))


def request(method: str, uri: str, local: int, branch: str, from_: str, to: str, call_id: str,
            cseq: int, extra: str = "", body: str = "") -> str:
    content = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
            f"From: {from_}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{from_[5:].split('@')[0]}@127.0.0.1:{local}>\r\n"
            f"Max-Forwards: 70\r\n{extra}{content}Content-Length: {len(body)}\r\n\r\n{body}")


def credentials(challenge: bytes, name: bytes, method: str, uri: str, user: str,
                password: str) -> str:
    params = parse_digest(header(challenge, name))
    assert params is not None
    return authorization(params, method, uri, user, password, "abc", 1)


async def invite_with_credentials(peer: Peer, server: int, caller: tuple[str, str],
                                  call_id: str, body: str) -> bytes:
    """INVITE, 407, ACK, INVITE with credentials: the final answer to the second INVITE."""
    (number, password), uri = caller, f"sip:{CALLEE}@127.0.0.1:{server}"
    from_, to = f"<sip:{number}@{DOMAIN}>;tag={call_id}", f"<sip:{CALLEE}@{DOMAIN}>"
    challenged = await peer.ask(request("INVITE", uri, peer.port, f"z9hG4bK{call_id}x1", from_,
                                        to, call_id, 1, body=body), call_id, "INVITE", server)
    assert status_of(challenged) == 407, challenged
    peer.send(request("ACK", uri, peer.port, f"z9hG4bK{call_id}x1", from_,
                      header(challenged, b"To"), call_id, 1), server)
    auth = credentials(challenged, b"Proxy-Authenticate", "INVITE", uri, number, password)
    return await peer.ask(request("INVITE", uri, peer.port, f"z9hG4bK{call_id}x2", from_, to,
                                  call_id, 2, f"Proxy-Authorization: {auth}\r\n", body),
                          call_id, "INVITE", server)


async def blocked_call(peer: Peer, server: int, number: int) -> None:
    call_id, caller = f"b{number}", CALLERS[number % 30]
    answer = await invite_with_credentials(peer, server, caller, call_id, "")
    assert status_of(answer) == 603, answer
    uri = f"sip:{CALLEE}@127.0.0.1:{server}"
    peer.send(request("ACK", uri, peer.port, f"z9hG4bK{call_id}x2",
                      f"<sip:{caller[0]}@{DOMAIN}>;tag={call_id}", header(answer, b"To"), call_id,
                      2), server)


async def relayed_call(peer: Peer, server: int, number: int) -> None:
    call_id, caller = f"r{number}", CALLERS[number % len(CALLERS)]
    answer = await invite_with_credentials(peer, server, caller, call_id,
                                           SDP.format(port=40000))
    assert status_of(answer) == 200, answer
    from_ = f"<sip:{caller[0]}@{DOMAIN}>;tag={call_id}"
    target, to = header(answer, b"Contact")[1:-1], header(answer, b"To")
    peer.send(request("ACK", target, peer.port, f"z9hG4bK{call_id}x3", from_, to, call_id, 2),
              server)
    bye = await peer.ask(request("BYE", target, peer.port, f"z9hG4bK{call_id}x4", from_, to,
                                 call_id, 3), call_id, "BYE", server)
    assert status_of(bye) == 200, bye


def phone_answers(phone: Peer, server: int) -> Callable[[bytes], None]:
    """The callee's phone: 180 and 200 to an INVITE at once, 200 to a BYE."""

    def answer(data: bytes) -> None:
        method = data.split(b" ", 1)[0]
        if method == b"ACK":
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        copied = "".join(line + "\r\n" for line in head[1:]
                         if line.split(":", 1)[0] in ("Via", "From", "Call-ID", "CSeq"))
        to = header(data, b"To")
        if method == b"INVITE":
            to = f"{to};tag=phone{header(data, b'Call-ID')}"
            contact = f"Contact: <sip:{CALLEE}@127.0.0.1:{phone.port}>\r\n"
            phone.send(f"SIP/2.0 180 Ringing\r\n{copied}To: {to}\r\n{contact}"
                       "Content-Length: 0\r\n\r\n", server)
            body = SDP.format(port=41000)
            phone.send(f"SIP/2.0 200 OK\r\n{copied}To: {to}\r\n{contact}"
                       f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
                       f"{body}", server)
        elif method == b"BYE":
            phone.send(f"SIP/2.0 200 OK\r\n{copied}To: {to}\r\nContent-Length: 0\r\n\r\n",
                       server)

    return answer


async def register(peer: Peer, server: int, user: str, password: str, contact_port: int,
                   call_id: str, cseq: int) -> None:
    uri = f"sip:{DOMAIN}"
    aor = f"<sip:{user}@{DOMAIN}>"

    def register_request(branch: str, number: int, extra: str = "") -> str:
        return (f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};"
                f"branch={branch}\r\nFrom: {aor};tag={call_id}\r\nTo: {aor}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {number} REGISTER\r\n"
                f"Contact: <sip:{user}@127.0.0.1:{contact_port}>\r\nExpires: 3600\r\n"
                f"Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n")

    challenged = await peer.ask(register_request(f"z9hG4bK{call_id}-{cseq}", cseq), call_id,
                                "REGISTER", server)
    assert status_of(challenged) == 401, challenged
    auth = credentials(challenged, b"WWW-Authenticate", "REGISTER", uri, user, password)
    done = await peer.ask(register_request(f"z9hG4bK{call_id}-{cseq + 1}", cseq + 1,
                                           f"Authorization: {auth}\r\n"),
                          call_id, "REGISTER", server)
    assert status_of(done) == 200, done


def config_text(work: Path, users: list[tuple[str, str]]) -> str:
    """call_bench.py's softswitch config (a port of 0: any)."""
    path = call_bench.write_softswitch_config(work, 0, users)
    return path.read_text()


async def drive(case: str, calls: int, concurrency: int, server: int,
                phone: Peer | None) -> tuple[Callable[[], Awaitable[None]], Peer]:
    """The workers' coroutine factory and the callers' socket, once the phone is registered."""
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    if phone is not None:
        await register(peer, server, CALLEE, CALLEE_PASSWORD, phone.port, "phone-reg", 1)
    numbers = itertools.count()
    users = CALLERS

    async def worker() -> None:
        for number in numbers:
            if number >= calls:
                return
            if case == "blocked":
                await blocked_call(peer, server, number)
            elif case == "relay":
                await relayed_call(peer, server, number)
            else:
                user, password = users[number % len(users)]
                await register(peer, server, user, password, 30000 + number % len(users),
                               f"reg{number % len(users)}", 2 * number + 1)

    return worker, peer


async def in_process(case: str, calls: int, concurrency: int) -> None:
    from softswitch.app import start

    work = Path(tempfile.mkdtemp(prefix="softswitch-profile-"))
    users = CALLERS[:30] if case == "blocked" else CALLERS
    config = parse_config(config_text(work, users))
    server = await start(config)
    if case == "blocked":
        for number, _ in users:
            await server.services.blocklist.add(CALLEE, number)
    port = server.stack.bound[0][1].port
    phone = await _phone(case, port)
    worker, peer = await drive(case, calls, concurrency, port, phone)
    profile = cProfile.Profile()
    profiling = os.environ.get("PROFILE", "1") != "0"
    started, cpu = time.perf_counter(), time.process_time()
    if profiling:
        profile.enable()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if profiling:
        profile.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    peer.transport.close()
    await server.close()
    print(f"{case}: {calls} calls in {elapsed:.1f} s, process CPU {1000 * cpu / calls:.3f} ms "
          f"per call (server and peer{', profiled' if profiling else ''})")
    if profiling:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)


async def _phone(case: str, server: int) -> Peer | None:
    if case != "relay":
        return None
    _, phone = await asyncio.get_running_loop().create_datagram_endpoint(
        Peer, local_addr=("127.0.0.1", 0))
    phone.on_request = phone_answers(phone, server)
    return phone


async def spawned(case: str, calls: int, concurrency: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="softswitch-profile-"))
    users = CALLERS[:30] if case == "blocked" else CALLERS
    server = call_bench.softswitch(work, users,
                                   [number for number, _ in users] if case == "blocked" else [])
    try:
        phone = await _phone(case, server.port)
        worker, peer = await drive(case, calls, concurrency, server.port, phone)
        pids = server.pids()
        before, started = _user_system(pids), time.perf_counter()
        machine = call_bench.process_ticks()
        ours = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        user, system = (after - first for after, first in zip(_user_system(pids), before,
                                                              strict=True))
        cpu, ours = user + system, time.process_time() - ours
        others = call_bench.others_seconds(machine, call_bench.process_ticks(),
                                           {os.getpid(), *pids})
        peer.transport.close()
    finally:
        call_bench.stop(server.process)
    print(f"{case}: {calls} calls in {elapsed:.1f} s = {calls / elapsed:.0f}/s; server CPU "
          f"{1000 * cpu / calls:.3f} ms per call ({100 * system / max(cpu, 1e-9):.0f}% in the "
          f"kernel); peer {1000 * ours / calls:.3f} ms; other processes used "
          f"{100 * others / elapsed:.0f}% of a core meanwhile")


def _user_system(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / call_bench.TICKS, system / call_bench.TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(DEFAULTS), default="blocked")
    parser.add_argument("--spawn", action="store_true")
    parser.add_argument("calls", type=int, nargs="?")
    parser.add_argument("concurrency", type=int, nargs="?")
    args = parser.parse_args()
    calls, concurrency = DEFAULTS[args.case]
    calls, concurrency = args.calls or calls, args.concurrency or concurrency
    run = spawned if args.spawn else in_process
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.case, calls, concurrency))
    else:
        uvloop.run(run(args.case, calls, concurrency))


if __name__ == "__main__":
    main()
