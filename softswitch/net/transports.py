"""The asyncio shell around the sans-IO SIP endpoint: UDP and TCP sockets in, bytes out.

Like aioquic's asyncio protocol, it only feeds received bytes to the endpoint, hands the
endpoint's events to the switch, sends what the endpoint outputs, and keeps one timer armed
at the endpoint's earliest deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
from collections.abc import Callable
from typing import cast

from ..config import ListenAddress
from ..sip.endpoint import SipEndpoint
from ..sip.events import CloseConnection, Event, Peer, Transmit
from ..sip.message import Request, Response
from ..sip.transaction import ClientTransaction, ServerTransaction

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 600.0  # seconds without a byte before we drop a TCP connection
MAX_TCP_CONNECTIONS = 4096  # beyond this a new connection is closed at once
MAX_TCP_WRITE_BUFFER = 1 << 20  # a peer that does not read its answers is dropped past 1 MiB


class SipStack:
    """Sockets for every listen address and transport, all feeding one endpoint."""

    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.handler: Callable[[Event], None] = lambda event: None
        self._loop = asyncio.get_running_loop()
        self._udp: list[tuple[str, asyncio.DatagramTransport]] = []  # (host, socket); index =
        # Peer.local
        self._servers: list[asyncio.Server] = []
        self._connections: dict[int, _TcpConnection] = {}
        self._connection_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.bound: list[tuple[str, ListenAddress]] = []
        self._trace = log.isEnabledFor(logging.DEBUG)  # the SIP trace of log_level: debug
        self._flushing = False

    # ---- setting up -----------------------------------------------------------------------------
    async def listen(self, address: ListenAddress, transports: tuple[str, ...]) -> None:
        if "udp" in transports:
            index = len(self._udp)
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, index), local_addr=(address.host, address.port),
                reuse_port=False)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    # bursts of REGISTERs must not overflow the kernel's default buffer
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
            bound = transport.get_extra_info("sockname")
            self._udp.append((address.host, transport))
            self.bound.append(("udp", ListenAddress(address.host, bound[1])))
        if "tcp" in transports:
            server = await self._loop.create_server(
                lambda: _TcpConnection(self), host=address.host, port=address.port,
                reuse_address=True)
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
        transaction = self.endpoint.send_request(request, peer, self._loop.time())
        self.flush()
        return transaction

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self.endpoint.send_stateless(message, peer)
        self.flush()

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

    def _datagram(self, data: bytes, addr: tuple[str, int], local: int) -> None:
        if self._trace:
            log.debug("SIP from udp %s:%s\n%s", addr[0], addr[1], _redacted(data))
        peer = Peer("udp", addr[0], addr[1], local=local)
        self.endpoint.receive_datagram(data, peer, self._loop.time())
        self.flush()

    def _stream(self, connection: _TcpConnection, data: bytes) -> None:
        if self._trace:
            log.debug("SIP from tcp %s:%s\n%s", connection.peer.host, connection.peer.port,
                      _redacted(data))
        self.endpoint.receive_stream(data, connection.peer, self._loop.time())
        self.flush()

    def _connection_made(self, connection: _TcpConnection) -> int | None:
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            log.warning("%d TCP connections open: refusing another", len(self._connections))
            return None
        number = next(self._connection_ids)
        self._connections[number] = connection
        return number

    def _connection_gone(self, number: int) -> None:
        self._connections.pop(number, None)
        self.endpoint.connection_lost(number)



class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, stack: SipStack, index: int) -> None:
        self.stack = stack
        self.index = index

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            self.stack._datagram(data, addr, self.index)
        except Exception:  # one bad datagram must never stop the socket
            log.exception("datagram from %s dropped", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable from a phone that went away


class _TcpConnection(asyncio.Protocol):
    def __init__(self, stack: SipStack) -> None:
        self.stack = stack
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self.peer = Peer("tcp", "", 0)
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        host, port = transport.get_extra_info("peername")[:2]
        number = self.stack._connection_made(self)
        if number is None:
            self.transport.close()
            return
        self.number = number
        self.peer = Peer("tcp", host, port, self.number)
        self._touch()

    def data_received(self, data: bytes) -> None:
        if not self.number:
            return  # refused at connection_made
        self._touch()
        try:
            self.stack._stream(self, data)
        except Exception:
            log.exception("TCP data from %s dropped; closing", self.peer.host)
            self.close()

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
        if self._idle is not None:
            self._idle.cancel()
        if self.number:
            self.stack._connection_gone(self.number)

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT, self.close)


_DIGEST_RESPONSE = re.compile(rb'(response\s*=\s*)"?[0-9a-fA-F]+"?')


def _redacted(data: bytes) -> str:
    """A message for the debug trace, with digest responses hidden: nonce and response
    together would allow an offline guess of the phone's password."""
    return _DIGEST_RESPONSE.sub(rb'\1"..."', data).decode("utf-8", "replace")
