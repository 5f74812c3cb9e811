"""The asyncio shell around the sans-IO SIP endpoint: UDP and TCP sockets in, bytes out.

Like aioquic's asyncio protocol, it only feeds received bytes to the endpoint, hands the
endpoint's events to the switch, sends what the endpoint outputs, and keeps one timer armed
at the endpoint's earliest deadline.

TCP connections are bounded (`security.tcp`): at most `max_connections_per_source` from one
IP address (so that one source cannot take every connection and lock the others out) and
`MAX_TCP_CONNECTIONS` in all; each message, the first one included, must arrive whole within
`header_timeout_seconds` of its first byte (of the connection, for the first), so that a
sender trickling a byte now and then cannot hold a connection and its buffer for ever; and a
connection without a byte for `idle_timeout_seconds` is closed. Refusals and header timeouts
are logged on `softswitch.security` with the source, in the format of docs/SECURITY.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import cast

from ..config import ListenAddress, TcpLimitsConfig
from ..sip.endpoint import SipEndpoint
from ..sip.events import CloseConnection, Event, Peer, Transmit, source_text
from ..sip.message import Request, Response
from ..sip.transaction import ClientTransaction, ServerTransaction

log = logging.getLogger(__name__)
security_log = logging.getLogger("softswitch.security")

MAX_TCP_CONNECTIONS = 4096  # beyond this a new connection is closed at once
MAX_TCP_WRITE_BUFFER = 1 << 20  # a peer that does not read its answers is dropped past 1 MiB
MAX_UDP_PEERS_KEPT = 4096  # source addresses whose Peer a UDP socket keeps for reuse
# The endpoint's timers (T1 = 500 ms and up) run up to this late: the loop timer is armed at
# the end of the slot the earliest deadline falls in, so one firing serves every deadline of
# the slot, a new transaction's timers rarely move it (no re-arming per message), and the
# process wakes for timers at most 50 times a second (a wake-up costs ~80 us of CPU here).
TIMER_SLOT = 0.02


class SipStack:
    """Sockets for every listen address and transport, all feeding one endpoint."""

    def __init__(self, endpoint: SipEndpoint, *, tcp: TcpLimitsConfig | None = None) -> None:
        """`tcp`: the limits on TCP connections (security.tcp; its defaults when None)."""
        self.endpoint = endpoint
        self.tcp = tcp if tcp is not None else TcpLimitsConfig()
        self.handler: Callable[[Event], None] = lambda event: None
        self._loop = asyncio.get_running_loop()
        self._udp: list[tuple[str, asyncio.DatagramTransport]] = []  # (host, socket); index =
        # Peer.local
        self._servers: list[asyncio.Server] = []
        self._connections: dict[int, _TcpConnection] = {}
        self._by_address: dict[tuple[str, int], int] = {}  # (host, port) -> connection
        self._connections_per_host: dict[str, int] = {}
        self._connection_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.bound: list[tuple[str, ListenAddress]] = []
        self._trace = log.isEnabledFor(logging.DEBUG)  # the SIP trace of log_level: debug
        self._flushing = False

    # ---- setting up -----------------------------------------------------------------------------
    async def listen(self, address: ListenAddress, transports: tuple[str, ...]) -> None:
        """Bind `address` for each transport. A port that cannot be bound raises OSError
        naming the transport, the address and the system's reason."""
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        if "udp" in transports:
            index = len(self._udp)
            sock = _bound(socket.socket(family, socket.SOCK_DGRAM), "udp", address)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                # bursts of REGISTERs must not overflow the kernel's default buffer
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, index), sock=sock)
            self._udp.append((address.host, transport))
            self.bound.append(("udp", ListenAddress(address.host, sock.getsockname()[1])))
        if "tcp" in transports:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio's create_server: [::] is IPv6 only, so
                # IPv4 clients are not seen as ::ffff:a.b.c.d (trusted peers, bans) and
                # 0.0.0.0 can listen on the same port
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            server = await self._loop.create_server(
                lambda: _TcpConnection(self), sock=_bound(sock, "tcp", address))
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.bound.append(("tcp", ListenAddress(address.host, port)))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        for _, transport in self._udp:
            transport.close()

    # ---- the endpoint's API, as the switch uses it ---------------------------------------------
    def respond(self, transaction: ServerTransaction, response: Response) -> None:
        self.endpoint.respond(transaction, response, self._loop.time())
        self.flush()

    def respond_statelessly(self, transaction: ServerTransaction, response: Response) -> None:
        self.endpoint.respond_statelessly(transaction, response)
        self.flush()

    def send_request(self, request: Request, peer: Peer) -> ClientTransaction:
        transaction = self.endpoint.send_request(request, self._connected(peer),
                                                 self._loop.time())
        self.flush()
        return transaction

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self.endpoint.send_stateless(message, self._connected(peer))
        self.flush()

    def _connected(self, peer: Peer) -> Peer:
        """A TCP peer named by its address (a phone's registration) gets the connection it
        has open to us: we open none towards phones (they are behind NAT, RFC 5626)."""
        if peer.transport == "udp" or peer.connection is not None:
            return peer
        number = self._by_address.get((peer.host, peer.port))
        return peer if number is None else replace(peer, connection=number)

    # ---- the loop between endpoint and sockets -------------------------------------------------
    def flush(self) -> None:
        """Deliver events, send outputs, re-arm the timer. Called after every input.

        Not re-entrant: a handler that answers (respond -> flush) only feeds the endpoint,
        and this loop goes on until nothing is left, so a burst of pipelined requests on
        one TCP read is handled in a loop, not in a recursion as deep as the burst."""
        if self._flushing:
            return
        self._flushing = True
        endpoint = self.endpoint
        try:
            while True:
                while (event := endpoint.next_event()) is not None:
                    try:
                        self.handler(event)
                    except Exception:
                        log.exception("handling %s failed", type(event).__name__)
                outputs = endpoint.outputs()
                if not outputs:
                    break
                for output in outputs:
                    if isinstance(output, Transmit):
                        self._transmit(output)
                    elif isinstance(output, CloseConnection):
                        connection = self._connections.get(output.connection)
                        if connection is not None:
                            connection.close()
        finally:
            self._flushing = False
        deadline = endpoint.get_timer()
        if deadline is not None:
            deadline = math.ceil(deadline / TIMER_SLOT) * TIMER_SLOT
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self.endpoint.handle_timer(self._loop.time())
        self.flush()

    def _transmit(self, output: Transmit) -> None:
        peer = output.peer
        if self._trace:
            log.debug("SIP to %s %s:%s\n%s", peer.transport, peer.host, peer.port,
                      _redacted(output.data))
        if peer.transport == "udp":
            transport = self._udp_for(peer)
            if transport is None:
                log.warning("no UDP socket to reach %s", peer.host)
                return
            transport.sendto(output.data, (peer.host, peer.port))
        else:
            connection = self._connections.get(peer.connection or -1)
            if connection is None:
                log.info("TCP connection to %s:%s is gone; message dropped", peer.host, peer.port)
                return
            connection.write(output.data)

    def _udp_for(self, peer: Peer) -> asyncio.DatagramTransport | None:
        """The socket the peer's request came in on (RFC 3581 §4: answer from there), else
        the first of the peer's address family."""
        if peer.local is not None:
            return self._udp[peer.local][1]
        family_v6 = ":" in peer.host
        for host, transport in self._udp:
            if (":" in host) == family_v6:
                return transport
        return None

    def _datagram(self, data: bytes, peer: Peer) -> None:
        if self._trace:
            log.debug("SIP from udp %s:%s\n%s", peer.host, peer.port, _redacted(data))
        self.endpoint.receive_datagram(data, peer, self._loop.time())
        self.flush()

    def _stream(self, connection: _TcpConnection, data: bytes) -> None:
        if self._trace:
            log.debug("SIP from tcp %s:%s\n%s", connection.peer.host, connection.peer.port,
                      _redacted(data))
        self.endpoint.receive_stream(data, connection.peer, self._loop.time())
        self.flush()

    def _connection_made(self, connection: _TcpConnection, host: str, port: int) -> int | None:
        """A number for a new connection, or None if it is refused."""
        from_host = self._connections_per_host.get(host, 0)
        if from_host >= self.tcp.max_connections_per_source:
            reason = "per-source-limit"
        elif len(self._connections) >= MAX_TCP_CONNECTIONS:
            reason = "connection-limit"
        else:
            number = next(self._connection_ids)
            self._connections[number] = connection
            self._connections_per_host[host] = from_host + 1
            self._by_address[(host, port)] = number
            return number
        security_log.warning("tcp-refused source=%s reason=%s", source_text("tcp", host, port),
                             reason)
        return None

    def _connection_gone(self, number: int, host: str) -> None:
        connection = self._connections.pop(number, None)
        if connection is not None and self._by_address.get(
                (host, connection.peer.port)) == number:
            del self._by_address[(host, connection.peer.port)]
        left = self._connections_per_host.pop(host, 1) - 1
        if left:
            self._connections_per_host[host] = left
        self.endpoint.connection_lost(number)



def _bound(sock: socket.socket, transport: str, address: ListenAddress) -> socket.socket:
    try:
        sock.bind((address.host, address.port))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"{transport} {address}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, stack: SipStack, index: int) -> None:
        self.stack = stack
        self.index = index
        # The Peer of each source address, made once: a phone sends many datagrams.
        self._peers: dict[tuple[str, int], Peer] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = self._peers.get(addr)
        if peer is None:
            if len(self._peers) >= MAX_UDP_PEERS_KEPT:  # spoofed sources: start afresh
                self._peers.clear()
            peer = self._peers[addr] = Peer("udp", addr[0], addr[1], local=self.index)
        try:
            self.stack._datagram(data, peer)
        except Exception:  # one bad datagram must never stop the socket
            log.exception("datagram from %s dropped", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable from a phone that went away


class _TcpConnection(asyncio.Protocol):
    """One accepted connection. Its one timer is re-armed lazily: a read only notes the time,
    and the timer, when it fires, closes the connection or sleeps until the next deadline."""

    def __init__(self, stack: SipStack) -> None:
        self.stack = stack
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self.peer = Peer("tcp", "", 0)
        self._loop = asyncio.get_running_loop()
        self._last_read = 0.0
        self._incomplete_since: float | None = None  # the first byte of a message not whole
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        host, port = transport.get_extra_info("peername")[:2]
        number = self.stack._connection_made(self, host, port)
        if number is None:
            self.transport.close()
            return
        self.number = number
        self.peer = Peer("tcp", host, port, self.number)
        now = self._loop.time()
        self._last_read = now
        self._incomplete_since = now  # the first message is awaited from now on
        self._arm(now + self.stack.tcp.header_timeout_seconds)

    def data_received(self, data: bytes) -> None:
        if not self.number:
            return  # refused at connection_made
        now = self._loop.time()
        self._last_read = now
        try:
            self.stack._stream(self, data)
        except Exception:
            log.exception("TCP data from %s dropped; closing", self.peer.host)
            self.close()
            return
        buffered = self.stack.endpoint.buffered(self.number)
        if not buffered:
            self._incomplete_since = None
        elif self._incomplete_since is None or buffered < len(data):
            # A message began in this read: what is buffered now is part of this read only
            # when the message before it was completed by it.
            self._incomplete_since = now
            self._arm(now + self.stack.tcp.header_timeout_seconds)

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > MAX_TCP_WRITE_BUFFER:
            log.warning("TCP peer %s:%s reads no answers; closing", self.peer.host,
                        self.peer.port)
            self.close()
            return
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.number:
            self.stack._connection_gone(self.number, self.peer.host)

    def _arm(self, deadline: float) -> None:
        """Make sure the timer fires by `deadline`."""
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)
        self._timer_at = deadline

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        limits = self.stack.tcp
        idle_at = self._last_read + limits.idle_timeout_seconds
        deadline = idle_at
        if self._incomplete_since is not None:
            header_at = self._incomplete_since + limits.header_timeout_seconds
            if now >= header_at:
                security_log.warning("tcp-refused source=%s reason=header-timeout",
                                     self.peer.source)
                self.close()
                return
            deadline = min(deadline, header_at)
        if now >= idle_at:
            log.info("TCP connection from %s:%s idle for %d s: closing", self.peer.host,
                     self.peer.port, limits.idle_timeout_seconds)
            self.close()
            return
        self._arm(deadline)


_DIGEST_RESPONSE = re.compile(rb'(response\s*=\s*)"?[0-9a-fA-F]+"?')
_DTMF_BODY = re.compile(rb"^(content-type|c)[ \t]*:[ \t]*application/dtmf", re.I | re.M)
_DTMF_SIGNAL = re.compile(rb"^(signal[ \t]*=[ \t]*)\S+", re.I | re.M)


def _redacted(data: bytes) -> str:
    """A message for the debug trace, with digest responses hidden (nonce and response
    together would allow an offline guess of the phone's password) and the key of a DTMF INFO
    (one of a PIN's digits, maybe)."""
    data = _DTMF_SIGNAL.sub(rb"\1*", _DIGEST_RESPONSE.sub(rb'\1"..."', data))
    head, blank, body = data.partition(b"\r\n\r\n")  # the whole of a datagram's body
    if body and _DTMF_BODY.search(head):
        data = head + blank + b"(a key: not logged)"
    return data.decode("utf-8", "replace")
