"""What the SIP endpoint hands out: events for the transaction user, outputs for the transport.

Small dataclasses in the manner of aioquic's `events.py`: the endpoint queues them, the
asyncio shell drains them with `next_event()` and `outputs()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .message import Request, Response

if TYPE_CHECKING:  # transaction.py imports Peer from here
    from .transaction import ClientTransaction, ServerTransaction


@dataclass(frozen=True, slots=True)
class Peer:
    """The far end of a message: where a request came from, where a response goes."""

    transport: str  # "udp" | "tcp" (anything but "udp" counts as reliable)
    host: str
    port: int
    connection: int | None = None  # which TCP connection (None for UDP)
    local: int | None = None  # which of our UDP sockets it came in on; answers leave from it

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def source(self) -> str:
        return source_text(self.transport, self.host, self.port)


def source_text(transport: str, host: str, port: int) -> str:
    """'udp:192.0.2.1:5060', 'tcp:[2001:db8::1]:5061': a source as the log lines write it."""
    return f"{transport}:[{host}]:{port}" if ":" in host else f"{transport}:{host}:{port}"


# ---- outputs: what the transport must do --------------------------------------------------------
@dataclass(slots=True)
class Transmit:
    peer: Peer
    data: bytes


@dataclass(slots=True)
class CloseConnection:
    connection: int


Output = Transmit | CloseConnection


# ---- events: what the transaction user must know ----------------------------------------------
@dataclass(slots=True)
class RequestReceived:
    """A new request. `transaction` is None only for the ACK of a 2xx: it is a transaction of
    its own and belongs to the dialog (RFC 3261 §13.2.2.4, §17.1.1.1); `invite` is then the
    INVITE transaction whose 2xx it acknowledges (some phones make up the ACK's To tag, so
    the dialog id alone would not find the call)."""

    request: Request
    transaction: ServerTransaction | None
    peer: Peer
    invite: ServerTransaction | None = None


@dataclass(slots=True)
class ResponseReceived:
    response: Response
    transaction: ClientTransaction


@dataclass(slots=True)
class CancelReceived:
    """A CANCEL for `transaction` (the INVITE's). The endpoint has answered the CANCEL 200; the
    transaction user must answer the INVITE 487 unless it has answered it finally already."""

    cancel: Request
    transaction: ServerTransaction


@dataclass(slots=True)
class TransactionTimedOut:
    """Client: timer B or F fired, or the connection was lost (the TU treats it as 408).
    Server INVITE: no ACK came for the final response (timer H, or timer L after a 2xx: the
    TU should end the dialog with BYE, §13.3.1.4)."""

    transaction: ClientTransaction | ServerTransaction


Event = RequestReceived | ResponseReceived | CancelReceived | TransactionTimedOut
