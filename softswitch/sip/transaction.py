"""RFC 3261 §17 transactions, with RFC 6026's Accepted state, as state machines written as data.

`TRANSITIONS` is figures 5-8: which state an input (a response, an ACK, a timer) leads to;
an input missing from the table means nothing in that state and is absorbed. `STATE_TIMERS`
says which timers run in a state: entering a state starts them, leaving it stops the others.
The classes add only what the figures write on the arrows: send, resend, build the ACK.

Transactions know nothing of sockets or clocks: they send through, and set timers on, a
`TransactionHost` (the endpoint), and every call carries `now`.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from dataclasses import dataclass
from typing import Protocol

from . import abnf
from .entropy import random_bytes
from .events import Peer
from .headers import HeaderError
from .message import Request, Response, make_response
from .parser import parse_datagram


def random_token(nbytes: int = 8) -> str:
    return random_bytes(nbytes).hex()


def new_branch() -> str:
    """A branch with RFC 3261's magic cookie (§8.1.1.7)."""
    return "z9hG4bK" + random_token()


class _Enum(enum.Enum):
    """An Enum hashed by identity, which is what its equality is. Enum's own __hash__ is a
    Python function, called for every (kind, state, trigger) key looked up below, several
    times per request; the identity hash is computed in C."""

    __hash__ = object.__hash__


class Kind(_Enum):
    INVITE_CLIENT = "INVITE client"  # figure 5
    NON_INVITE_CLIENT = "non-INVITE client"  # figure 6
    INVITE_SERVER = "INVITE server"  # figure 7
    NON_INVITE_SERVER = "non-INVITE server"  # figure 8


class State(_Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"  # RFC 6026: a 2xx was sent or received
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Timer(_Enum):
    A = "A"  # INVITE request retransmission (unreliable transports)
    B = "B"  # INVITE client timeout
    D = "D"  # INVITE client: wait for retransmitted non-2xx finals
    E = "E"  # non-INVITE request retransmission (unreliable transports)
    F = "F"  # non-INVITE client timeout
    G = "G"  # INVITE server: non-2xx final retransmission (unreliable transports)
    H = "H"  # INVITE server: wait for the ACK
    I = "I"  # INVITE server: absorb ACK retransmissions  # noqa: E741
    J = "J"  # non-INVITE server: absorb request retransmissions
    K = "K"  # non-INVITE client: absorb response retransmissions
    L = "L"  # RFC 6026, server: absorb INVITE/ACK retransmissions after a 2xx
    M = "M"  # RFC 6026, client: pass up retransmitted (or forked) 2xx
    RETRANSMIT_2XX = "2xx"  # §13.3.1.4: the 2xx is resent until its ACK arrives


class Input(_Enum):
    PROVISIONAL = "1xx"  # received (client) or sent by the TU (server)
    SUCCESS = "2xx"
    FAILURE = "300-699"
    ACK = "ACK"


def classify(status: int) -> Input:
    if status < 200:
        return Input.PROVISIONAL
    return Input.SUCCESS if status < 300 else Input.FAILURE


Trigger = Input | Timer
_IC, _NIC = Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT
_IS, _NIS = Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER
_S, _I, _T = State, Input, Timer

TRANSITIONS: dict[tuple[Kind, State, Trigger], State] = {
    # Figure 5, with RFC 6026's Accepted state in place of Terminated on a 2xx.
    (_IC, _S.CALLING, _T.A): _S.CALLING,  # retransmit the INVITE
    (_IC, _S.CALLING, _T.B): _S.TERMINATED,  # timeout
    (_IC, _S.CALLING, _I.PROVISIONAL): _S.PROCEEDING,
    (_IC, _S.CALLING, _I.SUCCESS): _S.ACCEPTED,
    (_IC, _S.CALLING, _I.FAILURE): _S.COMPLETED,  # send the ACK
    (_IC, _S.PROCEEDING, _I.PROVISIONAL): _S.PROCEEDING,
    (_IC, _S.PROCEEDING, _I.SUCCESS): _S.ACCEPTED,
    (_IC, _S.PROCEEDING, _I.FAILURE): _S.COMPLETED,  # send the ACK
    (_IC, _S.ACCEPTED, _I.SUCCESS): _S.ACCEPTED,  # every 2xx goes up: the TU ACKs it
    (_IC, _S.ACCEPTED, _T.M): _S.TERMINATED,
    (_IC, _S.COMPLETED, _I.FAILURE): _S.COMPLETED,  # resend the ACK, absorb
    (_IC, _S.COMPLETED, _T.D): _S.TERMINATED,
    # Figure 6.
    (_NIC, _S.TRYING, _T.E): _S.TRYING,  # retransmit the request
    (_NIC, _S.TRYING, _T.F): _S.TERMINATED,  # timeout
    (_NIC, _S.TRYING, _I.PROVISIONAL): _S.PROCEEDING,
    (_NIC, _S.TRYING, _I.SUCCESS): _S.COMPLETED,
    (_NIC, _S.TRYING, _I.FAILURE): _S.COMPLETED,
    (_NIC, _S.PROCEEDING, _T.E): _S.PROCEEDING,  # retransmit the request
    (_NIC, _S.PROCEEDING, _T.F): _S.TERMINATED,  # timeout
    (_NIC, _S.PROCEEDING, _I.PROVISIONAL): _S.PROCEEDING,
    (_NIC, _S.PROCEEDING, _I.SUCCESS): _S.COMPLETED,
    (_NIC, _S.PROCEEDING, _I.FAILURE): _S.COMPLETED,
    (_NIC, _S.COMPLETED, _T.K): _S.TERMINATED,
    # Figure 7 (inputs are the TU's responses and the peer's ACK), with RFC 6026's Accepted.
    (_IS, _S.PROCEEDING, _I.PROVISIONAL): _S.PROCEEDING,
    (_IS, _S.PROCEEDING, _I.SUCCESS): _S.ACCEPTED,
    (_IS, _S.PROCEEDING, _I.FAILURE): _S.COMPLETED,
    (_IS, _S.ACCEPTED, _T.RETRANSMIT_2XX): _S.ACCEPTED,  # resend the 2xx
    (_IS, _S.ACCEPTED, _I.ACK): _S.ACCEPTED,  # the first ACK goes up, stops the 2xx
    (_IS, _S.ACCEPTED, _T.L): _S.TERMINATED,
    (_IS, _S.COMPLETED, _T.G): _S.COMPLETED,  # resend the final response
    (_IS, _S.COMPLETED, _T.H): _S.TERMINATED,  # no ACK: timeout
    (_IS, _S.COMPLETED, _I.ACK): _S.CONFIRMED,
    (_IS, _S.CONFIRMED, _I.ACK): _S.CONFIRMED,  # absorbed
    (_IS, _S.CONFIRMED, _T.I): _S.TERMINATED,
    # Figure 8.
    (_NIS, _S.TRYING, _I.PROVISIONAL): _S.PROCEEDING,
    (_NIS, _S.TRYING, _I.SUCCESS): _S.COMPLETED,
    (_NIS, _S.TRYING, _I.FAILURE): _S.COMPLETED,
    (_NIS, _S.PROCEEDING, _I.PROVISIONAL): _S.PROCEEDING,
    (_NIS, _S.PROCEEDING, _I.SUCCESS): _S.COMPLETED,
    (_NIS, _S.PROCEEDING, _I.FAILURE): _S.COMPLETED,
    (_NIS, _S.COMPLETED, _T.J): _S.TERMINATED,
}

STATE_TIMERS: dict[tuple[Kind, State], tuple[Timer, ...]] = {
    (_IC, _S.CALLING): (_T.A, _T.B),
    (_IC, _S.PROCEEDING): (),
    (_IC, _S.ACCEPTED): (_T.M,),
    (_IC, _S.COMPLETED): (_T.D,),
    (_NIC, _S.TRYING): (_T.E, _T.F),
    (_NIC, _S.PROCEEDING): (_T.E, _T.F),  # still running from Trying
    (_NIC, _S.COMPLETED): (_T.K,),
    (_IS, _S.PROCEEDING): (),
    (_IS, _S.ACCEPTED): (_T.RETRANSMIT_2XX, _T.L),
    (_IS, _S.COMPLETED): (_T.G, _T.H),
    (_IS, _S.CONFIRMED): (_T.I,),
    (_NIS, _S.TRYING): (),
    (_NIS, _S.PROCEEDING): (),
    (_NIS, _S.COMPLETED): (_T.J,),
}

# Timers that resend a message: they start at T1 and their interval grows.
_RETRANSMISSION_TIMERS = frozenset((_T.A, _T.E, _T.G, _T.RETRANSMIT_2XX))
_ONLY_UNRELIABLE = frozenset((_T.A, _T.E, _T.G))  # reliable transports retransmit themselves
_ZERO_IF_RELIABLE = frozenset((_T.D, _T.I, _T.J, _T.K))
# What names a request: all the endpoint's keys read from a finished transaction's request
# (§8.2.2.2 merging, the ACK of a 2xx), and what a response to it copies (§8.2.6.2).
_NAMING_HEADERS = ("via", "from", "to", "call-id", "cseq")


@dataclass(slots=True, frozen=True)
class Timers:
    """RFC 3261 Table 4 base values (seconds)."""

    t1: float = 0.5  # round-trip estimate
    t2: float = 4.0  # cap of the non-INVITE and response retransmission interval
    t4: float = 5.0  # how long the network keeps a message

    def duration(self, timer: Timer, reliable: bool) -> float | None:
        """How long `timer` runs once started; None when it is not used on this transport."""
        if reliable and timer in _ONLY_UNRELIABLE:
            return None
        if reliable and timer in _ZERO_IF_RELIABLE:
            return 0.0
        if timer in _RETRANSMISSION_TIMERS:
            return self.t1
        if timer is Timer.D:
            return max(32.0, 64 * self.t1)  # "at least 32 s"
        if timer in (Timer.I, Timer.K):
            return self.t4
        return 64 * self.t1  # B, F, H, J, L, M


class TransactionHost(Protocol):
    """What a transaction needs from the endpoint that owns it."""

    timers: Timers

    def transmit(self, peer: Peer, data: bytes) -> None: ...

    def arm(self, transaction: Transaction, timer: Timer, deadline: float) -> None: ...

    def disarm(self, transaction: Transaction, timer: Timer) -> None: ...

    def terminated(self, transaction: Transaction) -> None: ...


class Transaction:
    __slots__ = ("kind", "state", "request", "peer", "deadlines", "_host", "_interval")

    def __init__(self, host: TransactionHost, kind: Kind, request: Request, peer: Peer) -> None:
        self.kind = kind
        self.state = State.TERMINATED  # until `_enter` puts it in its first state
        self.request = request
        self.peer = peer
        self.deadlines: dict[Timer, float] = {}  # armed timers; the host's heap checks here
        self._host = host
        self._interval = host.timers.t1  # of the running retransmission timer

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def __repr__(self) -> str:
        return f"<{self.kind.value} transaction {self.method} {self.state.value}>"

    def _go(self, trigger: Trigger, now: float) -> None:
        new = TRANSITIONS[(self.kind, self.state, trigger)]
        if new is not self.state:
            self._enter(new, now)

    def _enter(self, state: State, now: float) -> None:
        if state is State.TERMINATED:
            self._terminate()
            return
        self.state = state
        host = self._host
        wanted = STATE_TIMERS[(self.kind, state)]
        for timer in [t for t in self.deadlines if t not in wanted]:
            host.disarm(self, timer)
        for timer in wanted:
            if timer in self.deadlines:
                continue
            duration = host.timers.duration(timer, self.peer.reliable)
            if duration is None:
                continue
            if duration == 0 and timer in _ZERO_IF_RELIABLE:  # Table 4: fire at once
                self._go(timer, now)
                return
            if timer in _RETRANSMISSION_TIMERS:
                self._interval = duration
            host.arm(self, timer, now + duration)

    def forget(self) -> None:
        """End now, whatever the state: the endpoint answered statelessly."""
        self._terminate()

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        for timer in list(self.deadlines):
            self._host.disarm(self, timer)
        self._host.terminated(self)

    def fire(self, timer: Timer, now: float) -> bool:
        """`timer` expired. True when the TU must be told of a timeout."""
        raise NotImplementedError

    def _rearm(self, timer: Timer, now: float, interval: float) -> None:
        self._interval = interval
        self._host.arm(self, timer, now + interval)


class ServerTransaction(Transaction):
    """Figures 7 and 8. Responses go back to `peer`, where the request came from (symmetric
    response routing, RFC 3581 §4, for every request)."""

    __slots__ = ("key", "merge_key", "datagram_digest", "internal", "acked", "_response_bytes",
                 "_to_tag")

    def __init__(self, host: TransactionHost, request: Request, peer: Peer,
                 key: tuple[object, ...], now: float, *, internal: bool = False) -> None:
        invite = request.method == "INVITE"
        super().__init__(host, _IS if invite else _NIS, request, peer)
        self.key = key
        # The endpoint's §8.2.2.2 key of the request, kept to forget it when this ends.
        self.merge_key: tuple[str, str, int, str] | None = None
        self.datagram_digest: bytes | None = None  # the endpoint's key of its UDP repeats
        self.internal = internal  # answered by the endpoint itself: the TU never hears of it
        self.acked = False  # the ACK of our 2xx has arrived
        self._response_bytes: bytes | None = None
        self._to_tag: str | None = None
        self._enter(State.PROCEEDING if invite else State.TRYING, now)

    @property
    def to_tag(self) -> str:
        """The To tag of this transaction's responses: the request's own inside a dialog,
        else made up once (or the TU's own)."""
        if self._to_tag is None:
            try:
                to = self.request.to
            except HeaderError:
                to = None
            self._to_tag = (to.tag if to is not None else None) or random_token(6)
        return self._to_tag

    @property
    def answered(self) -> bool:
        """A final response has been sent."""
        return self.state not in (State.TRYING, State.PROCEEDING)

    @property
    def last_response(self) -> Response | None:
        """The latest response sent, read back from the bytes kept to resend it: only those
        are kept while a finished transaction absorbs retransmissions."""
        if self._response_bytes is None:
            return None
        response = parse_datagram(self._response_bytes).message
        assert isinstance(response, Response)
        return response

    def respond(self, response: Response, now: float) -> bool:
        """Send the TU's response. False (and nothing sent) once a final one went out: a late
        answer, e.g. a 200 racing the 487 after a CANCEL."""
        if self.answered:
            return False
        if 200 <= response.status < 300 and self._trying_due:
            self._send(make_response(self.request, 100))  # a 2xx never comes without one
        if response.status > 100:
            self._apply_to_tag(response)
        self._send(response)
        self._go(classify(response.status), now)
        if self.kind is _NIS and self.state is State.COMPLETED:
            # Timer J keeps this transaction 32 s for retransmissions, which need only the
            # bytes of the response: hold the headers that name the request, not all of it.
            self.request = _naming_part(self.request)
        return True

    def send_trying(self) -> None:
        """The step in which the INVITE arrived is over: if the TU has answered nothing yet,
        100 Trying now (pyVoIP waits for a provisional response before it takes a 200)."""
        if self._trying_due and self.state is State.PROCEEDING:
            self._send(make_response(self.request, 100))

    @property
    def _trying_due(self) -> bool:
        """§17.2.1: an INVITE gets 100 Trying at once, unless the TU answers it in the step it
        arrived in (a digest challenge needs none): due while nothing has been sent."""
        return self.kind is _IS and self._response_bytes is None

    def receive_retransmission(self, peer: Peer) -> None:
        """The request came again: resend the latest response where figures 7/8 say so, to
        where this copy came from (a NAT may have moved the phone's port meanwhile), which is
        also where the retransmissions of the response go from now on."""
        self.peer = peer
        if self._response_bytes is None or self.state is State.CONFIRMED:
            return
        if self.state is State.ACCEPTED and self.acked:
            return
        self._host.transmit(self.peer, self._response_bytes)

    def receive_ack(self, now: float) -> bool:
        """An ACK for this INVITE. True for the first ACK of a 2xx: that one is the TU's."""
        if self.state is State.ACCEPTED:
            if self.acked:
                return False
            self.acked = True
            self._host.disarm(self, Timer.RETRANSMIT_2XX)
            return True
        if (self.kind, self.state, Input.ACK) in TRANSITIONS:
            self._go(Input.ACK, now)
        return False

    def fire(self, timer: Timer, now: float) -> bool:
        """`timer` expired. True when the TU must be told of a timeout."""
        if timer is Timer.G or timer is Timer.RETRANSMIT_2XX:
            assert self._response_bytes is not None
            self._host.transmit(self.peer, self._response_bytes)
            self._rearm(timer, now, min(2 * self._interval, self._host.timers.t2))
        else:
            self._go(timer, now)  # H, I, J, L: to Terminated
            no_ack = timer is Timer.H or (timer is Timer.L and not self.acked)
            return no_ack and not self.internal
        return False

    def _send(self, response: Response) -> None:
        self._response_bytes = response.to_bytes()
        self._host.transmit(self.peer, self._response_bytes)

    def _apply_to_tag(self, response: Response) -> None:
        """Every response but 100 carries a To tag (§8.2.6.2), the same in all of them."""
        value = response.get("to")
        if value is None or (self._to_tag is not None and value.endswith(f";tag={self._to_tag}")):
            return  # the usual case, seen without parsing
        try:
            to = response.to
        except HeaderError:
            return  # a To we could not read is sent back as it came
        if to is None:
            return
        if to.tag is None:
            response.set("to", f"{value};tag={self.to_tag}")
        elif self._to_tag is None:
            self._to_tag = to.tag


def _naming_part(request: Request) -> Request:
    """A copy of `request` with only the headers that name it (the same header objects):
    no body, no other headers, no parse caches."""
    return Request(headers=[h for h in request.headers if h[0] in _NAMING_HEADERS],
                   method=request.method, uri=request.uri, version=request.version)


class ClientTransaction(Transaction):
    """Figures 5 and 6. The request is sent when the transaction is made."""

    __slots__ = ("key", "response", "_request_bytes", "_ack_bytes")

    def __init__(self, host: TransactionHost, request: Request, peer: Peer,
                 key: tuple[str, str], now: float) -> None:
        invite = request.method == "INVITE"
        super().__init__(host, _IC if invite else _NIC, request, peer)
        self.key = key  # (branch, method), matched as §17.1.3
        self.response: Response | None = None  # the latest one passed to the TU
        self._ack_bytes: bytes | None = None
        self._request_bytes = request.to_bytes()
        host.transmit(peer, self._request_bytes)
        self._enter(State.CALLING if invite else State.TRYING, now)

    @property
    def branch(self) -> str:
        return self.key[0]

    def receive_response(self, response: Response, now: float) -> bool:
        """True when the TU must see `response`; retransmitted finals are absorbed."""
        trigger = classify(response.status)
        if (self.kind, self.state, trigger) not in TRANSITIONS:
            return False
        if self.kind is _IC and trigger is Input.FAILURE:  # §17.1.1.3: the ACK is ours
            if self.state is State.COMPLETED:
                assert self._ack_bytes is not None
                self._host.transmit(self.peer, self._ack_bytes)
                return False
            self._ack_bytes = self._make_ack(response).to_bytes()
            self._host.transmit(self.peer, self._ack_bytes)
        self.response = response
        self._go(trigger, now)
        return True

    def fire(self, timer: Timer, now: float) -> bool:
        """`timer` expired. True when the TU must be told of a timeout (B, F)."""
        if timer is Timer.A:
            self._host.transmit(self.peer, self._request_bytes)
            self._rearm(timer, now, 2 * self._interval)
        elif timer is Timer.E:
            self._host.transmit(self.peer, self._request_bytes)
            t2 = self._host.timers.t2
            interval = t2 if self.state is State.PROCEEDING else min(2 * self._interval, t2)
            self._rearm(timer, now, interval)
        else:
            self._go(timer, now)
            return timer is Timer.B or timer is Timer.F
        return False

    def transport_failed(self) -> None:
        """The connection carrying the request closed (§17.1.4): end, as a timeout would."""
        self._terminate()

    def make_cancel(self) -> Request:
        """The CANCEL for this INVITE (§9.1): same Request-URI, top Via, Call-ID, From, To and
        CSeq number; the INVITE's Route copied. Send it with `SipEndpoint.send_request`."""
        return self._derived("CANCEL", self.request.get("to") or "")

    def _make_ack(self, response: Response) -> Request:
        """§17.1.1.3: the ACK of a non-2xx final takes the To of the response."""
        return self._derived("ACK", response.get("to") or "")

    def _derived(self, method: str, to: str) -> Request:
        request = self.request
        cseq = request.cseq
        assert cseq is not None  # checked when the transaction was made
        headers = [("via", abnf.split_list(request.get("via") or "")[0])]
        headers += [(k, v) for k, v in request.headers if k == "route"]
        headers += [
            ("max-forwards", "70"), ("from", request.get("from") or ""), ("to", to),
            ("call-id", request.get("call-id") or ""), ("cseq", f"{cseq.number} {method}"),
        ]
        return Request(headers=headers, method=method, uri=request.uri)


class TimerHeap:
    """One heap for the timers of every transaction. Disarming only forgets the deadline in
    the transaction; the heap entry is skipped when it comes up (lazy deletion), and the heap
    is rebuilt when stale entries outnumber live ones."""

    __slots__ = ("_heap", "_order", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Transaction, Timer]] = []
        self._order = itertools.count()  # ties: first armed fires first
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def arm(self, transaction: Transaction, timer: Timer, deadline: float) -> None:
        if timer not in transaction.deadlines:
            self._live += 1
        transaction.deadlines[timer] = deadline
        heapq.heappush(self._heap, (deadline, next(self._order), transaction, timer))
        if len(self._heap) > 4 * self._live + 1024:
            self._heap = [e for e in self._heap if e[2].deadlines.get(e[3]) == e[0]]
            heapq.heapify(self._heap)

    def disarm(self, transaction: Transaction, timer: Timer) -> None:
        if transaction.deadlines.pop(timer, None) is not None:
            self._live -= 1

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, transaction, timer = heap[0]
            if transaction.deadlines.get(timer) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> tuple[Transaction, Timer] | None:
        """The earliest timer due at `now`, disarmed; None when none is."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction, timer = heapq.heappop(heap)
            if transaction.deadlines.get(timer) == deadline:
                del transaction.deadlines[timer]
                self._live -= 1
                return transaction, timer
        return None
