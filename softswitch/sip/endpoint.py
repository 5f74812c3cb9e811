"""The sans-IO SIP endpoint: bytes and time in; events, bytes to send and deadlines out.

Shaped like aioquic's `QuicConnection`: the asyncio shell feeds `receive_datagram` /
`receive_stream`, sends what `outputs()` returns, drains `next_event()`, and keeps one
`loop.call_at(get_timer())` that calls `handle_timer(now)`. The endpoint frames and checks
messages (parser.py), matches them to transactions (§17.1.3, §17.2.3) and answers by itself
what needs no transaction user: malformed requests (400/505/513 and a Warning naming the
defect), CANCEL (200 or 481), merged requests (482), retransmissions.

Policies:
- Responses always go back to where the request came from (source address and port, same
  TCP connection): RFC 3581 symmetric response routing for every request, so phones behind
  NAT get their answers. The top Via gets `received` (and `rport`'s value, if asked for) as
  RFC 3581 says, written into the header text so that responses copy it.
- INVITE: the server transaction sends 100 Trying at once (§17.2.1): with the outputs of the
  step that handed the INVITE to the TU (`outputs()` is called once the events are handled),
  unless the TU answered it in that same step (a challenge needs no 100); a 2xx is always
  preceded by one. A 2xx is retransmitted (T1 doubling to T2, on every transport, as
  §13.3.1.4 wants it end to end) until its ACK arrives (the ACK must carry the 2xx's To
  tag); that first ACK is passed up as `RequestReceived(ack, transaction=None)`, later ones
  are absorbed.
- Requests sent without a Via get ours (`sent_by`, the peer's transport, a fresh branch and
  `rport`); a request that has a Via keeps it (a CANCEL carries its INVITE's).
- A UDP datagram identical, byte for byte, to the one that opened a live server transaction
  is that request's retransmission (phones and SIPp resend the same bytes): it is matched by
  a digest of the datagram before any parsing. Under overload, when answers come later than
  T1 and every request is sent again, a repeat then costs a hash, not a parse. A request
  answered statelessly (a digest challenge) has no transaction, but its answer is kept, by
  that digest, for the latest MAX_STATELESS_ANSWERS: a repeat from the same host gets the
  same bytes again, not a fresh challenge. A phone (and SIPp) takes an identical answer as a
  retransmission; a new nonce and To tag arriving after it moved on would be a stray
  response that fails the registration, so a server running late would fail every
  registration it answers late instead of only delaying it.
- The ACK of a 3xx-6xx (every blocked or challenged call sends one) is matched before
  parsing, as Kamailio's sl/tm modules do: its one Via line and its To line are read, and an
  ACK on the branch of an INVITE transaction that answered 3xx-6xx, or of a challenge
  answered statelessly (with that challenge's To tag), is absorbed there. Anything else
  (the ACK of a 2xx, another shape) is parsed and checked as every message is; the outcome
  is the same either way.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from . import abnf
from .events import (
    CancelReceived,
    CloseConnection,
    Event,
    Output,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    Transmit,
)
from .headers import HeaderError, Via, parse_name_addr, parse_via
from .message import Request, Response, make_response
from .parser import (
    BadMessage,
    FramingError,
    Parsed,
    StreamFramer,
    Unparseable,
    check_request,
    check_response,
    parse_datagram,
)
from .transaction import (
    ClientTransaction,
    Kind,
    ServerTransaction,
    State,
    Timer,
    TimerHeap,
    Timers,
    Transaction,
    new_branch,
    random_token,
)

__all__ = ["EndpointStats", "SipEndpoint", "Timers"]

ServerKey = tuple[object, ...]
DEFAULT_TIMERS = Timers()
# INVITEs challenged statelessly whose ACK is absorbed unparsed: the latest ones, by key. An
# ACK comes within a round trip; one that finds its entry gone is parsed, and dropped.
MAX_CHALLENGED = 16384
MAX_CHALLENGE_KEY_CHARS = 256  # branch and To tag of one entry (phones write 20-60)
# Stateless answers kept for the repeats of their requests (see the module doc): at 3,000
# challenges a second, the last five seconds, past SIPp's and most phones' third resend. An
# answer copies its request's Via, From, To, Call-ID and CSeq, which a sender may make tens
# of kilobytes long: the bytes kept are bounded too (a usual challenge is under 1 kB).
MAX_STATELESS_ANSWERS = 16384
MAX_STATELESS_ANSWER_BYTES = 16 * 1024 * 1024
_AWAITING = (State.CALLING, State.TRYING, State.PROCEEDING)  # a client still without final
_RPORT = re.compile(r";\s*rport\s*(?=;|$)", re.IGNORECASE)
# An old `received` of the top Via, with or without a value, quoted or not (the grammar
# reads a quoted-string there as a generic-param), to be replaced by ours.
_RECEIVED = re.compile(r';\s*received\s*(?:=\s*(?:"(?:[^"\\]|\\.)*"|[^;"]*))?(?=;|$)',
                       re.IGNORECASE)


@dataclass(slots=True)
class EndpointStats:
    received: int = 0  # messages read off the wire (a datagram, or one framed from a stream)
    dropped: int = 0  # garbage, stray or broken responses, unmatched or broken ACKs
    rejected: int = 0  # requests the endpoint answered 4xx/5xx itself
    retransmissions_absorbed: int = 0  # repeats that reached no transaction user
    transactions: int = 0  # live


class SipEndpoint:
    def __init__(self, *, timers: Timers = DEFAULT_TIMERS, max_message_size: int = 65535,
                 server_name: str | None = None, sent_by: str = "localhost") -> None:
        self.timers = timers
        self.max_message_size = max_message_size
        self.server_name = server_name  # Server header of the endpoint's own answers
        self.sent_by = sent_by  # host[:port] for the Via of requests we send
        self.stats = EndpointStats()
        self._events: deque[Event] = deque()
        self._outputs: list[Output] = []
        self._timers = TimerHeap()
        self._server: dict[ServerKey, ServerTransaction] = {}
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        # §8.2.2.2: (Call-ID, From tag, CSeq) of live requests that came without a To tag.
        self._merge: dict[tuple[str, str, int, str], ServerTransaction] = {}
        # INVITE transactions whose 2xx awaits its ACK, by (Call-ID, From tag, CSeq number,
        # our To tag): that ACK has a branch of its own, so it is matched like this. An ACK
        # with another To tag belongs to no dialog of ours and stops nothing.
        self._accepted: dict[tuple[str, str | None, int, str], ServerTransaction] = {}
        self._framers: dict[int | None, StreamFramer] = {}
        # Server transactions by the digest of the datagram that opened them.
        self._by_datagram: dict[bytes, ServerTransaction] = {}
        # INVITE server transactions handed to the TU since the last `outputs()`: each gets
        # its 100 Trying then, unless the TU has answered it.
        self._trying: list[ServerTransaction] = []
        # INVITEs answered statelessly (challenges), by transaction key: the To tag of the
        # answer, which their ACK carries. Oldest first: the oldest goes when it is full (an
        # OrderedDict: a dict's first key is found by a scan past every deleted one).
        self._challenged: OrderedDict[ServerKey, str] = OrderedDict()
        # Stateless answers by the digest of the datagram they answered: (its source host,
        # the answer's bytes). Oldest first, as above.
        self._stateless: OrderedDict[bytes, tuple[str, bytes]] = OrderedDict()
        self._stateless_bytes = 0

    # ---- input ------------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, peer: Peer, now: float) -> None:
        """One UDP datagram: one message; octets after its Content-Length are ignored."""
        self.stats.received += 1
        if data[:4] == b"ACK " and self._absorbed_ack(data, now):
            return
        digest = _datagram_digest(data)
        repeated = self._by_datagram.get(digest)
        if repeated is not None:
            repeated.receive_retransmission(peer)
            self.stats.retransmissions_absorbed += 1
            return
        answered = self._stateless.get(digest)
        if answered is not None and answered[0] == peer.host:
            self._outputs.append(Transmit(peer, answered[1]))
            self.stats.retransmissions_absorbed += 1
            return
        try:
            parsed = parse_datagram(data)
        except Unparseable:
            self.stats.dropped += 1
            return
        parsed.datagram_digest = digest
        self._receive(parsed, peer, now, too_big=len(data) > self.max_message_size)

    def receive_stream(self, data: bytes, peer: Peer, now: float) -> None:
        """Bytes from a TCP connection (`peer.connection`). A stream that cannot be framed is
        answered if the message can be (400, 513) and closed."""
        framer = self._framers.get(peer.connection)
        if framer is None:
            framer = self._framers[peer.connection] = StreamFramer(self.max_message_size)
        while True:
            try:
                batch = framer.feed(data)
            except FramingError as error:
                self.stats.received += 1
                self._framing_failed(error, peer, now)
                return
            except Unparseable:
                self.stats.received += 1
                self.stats.dropped += 1
                self._close(peer)
                return
            for parsed in batch:
                self.stats.received += 1
                self._receive(parsed, peer, now, too_big=False)
            if not batch or not framer.pending:
                return
            data = b""  # a framing error may follow the messages just handled

    def buffered(self, connection: int) -> int:
        """Octets of an incomplete message waiting on a TCP connection (0: none), for the
        transport's header timeout."""
        framer = self._framers.get(connection)
        return 0 if framer is None else framer.pending

    def connection_lost(self, connection: int) -> None:
        """The transport saw the connection close. Client transactions waiting on it end as
        timeouts (§17.1.4). A server transaction's later answer on that connection is
        dropped by the transport: it does not reconnect to the Via (§18.2.2) — a phone
        behind NAT could not be reached that way anyway, and it retransmits over a new one."""
        self._framers.pop(connection, None)
        for transaction in list(self._client.values()):
            if transaction.peer.connection == connection and transaction.state in _AWAITING:
                transaction.transport_failed()
                self._events.append(TransactionTimedOut(transaction))

    # ---- the transaction user's calls -------------------------------------------------------
    def respond(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        """Send `response` in `transaction`. A response after the final one is ignored (a
        200 racing the 487 of a CANCEL, say); a To tag is added where the TU left it out."""
        if transaction.respond(response, now) and transaction.state is State.ACCEPTED:
            key = _accepted_key(transaction)
            if key is not None:
                self._accepted[key] = transaction

    def respond_statelessly(self, transaction: ServerTransaction, response: Response) -> None:
        """Answer and end the transaction at once (a stateless UAS, RFC 3261 §8.2.7). Meant
        for digest challenges, most of a registrar's traffic: the transaction's memory and its
        32 s timer J are saved. Only the answer's bytes are kept, for a UDP repeat of the
        request (see the module doc)."""
        if transaction.answered:
            return
        data = response.to_bytes()
        peer = transaction.peer
        self._outputs.append(Transmit(peer, data))
        transaction.forget()
        if transaction.datagram_digest is not None:
            self._keep_stateless(transaction.datagram_digest, peer.host, data)
        if transaction.kind is Kind.INVITE_SERVER:
            self._remember_challenge(transaction.key, transaction.to_tag)

    def _remember_challenge(self, key: ServerKey, to_tag: str) -> None:
        """Only keys of the shape `_ack_fields` finds (RFC 3261 branches) and of a usual size:
        a sender picks the branch and the To tag, and huge ones would make these 16,384
        entries gigabytes. Any other ACK is parsed and dropped: the same outcome."""
        if len(key) != 4 or len(str(key[0])) + len(to_tag) > MAX_CHALLENGE_KEY_CHARS:
            return
        challenged = self._challenged
        challenged[key] = to_tag
        if len(challenged) > MAX_CHALLENGED:
            challenged.popitem(last=False)

    def _keep_stateless(self, digest: bytes, host: str, data: bytes) -> None:
        answers = self._stateless
        replaced = answers.pop(digest, None)  # the same bytes from another host, answered anew
        if replaced is not None:
            self._stateless_bytes -= len(replaced[1])
        answers[digest] = (host, data)
        self._stateless_bytes += len(data)
        while len(answers) > MAX_STATELESS_ANSWERS \
                or self._stateless_bytes > MAX_STATELESS_ANSWER_BYTES:
            self._stateless_bytes -= len(answers.popitem(last=False)[1][1])

    def send_request(self, request: Request, peer: Peer, now: float) -> ClientTransaction:
        """Send `request` in a new client transaction; its responses come back as
        ResponseReceived. A request without Via gets ours (see the module doc)."""
        if request.method == "ACK":
            raise ValueError("an ACK is no transaction: use send_stateless")
        if request.cseq is None:
            raise ValueError("request without CSeq")
        key = (self._ensure_via(request, peer), request.method)
        if key in self._client:
            raise ValueError(f"a client transaction with branch {key[0]} is running")
        transaction = ClientTransaction(self, request, peer, key, now)
        self._client[key] = transaction
        self.stats.transactions += 1
        return transaction

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        """Send outside any transaction, e.g. the ACK of a 2xx (a request without a Via
        gets ours with a fresh branch)."""
        if isinstance(message, Request):
            self._ensure_via(message, peer)
        self._outputs.append(Transmit(peer, message.to_bytes()))

    # ---- output -----------------------------------------------------------------------------
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def outputs(self) -> list[Output]:
        """What to send and close, in order; the list is handed over. Call it once the events
        handed out before it are handled: an INVITE still unanswered then gets 100 Trying."""
        if self._trying:
            for transaction in self._trying:
                transaction.send_trying()
            self._trying.clear()
        outputs, self._outputs = self._outputs, []
        return outputs

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction; call `handle_timer` then."""
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Run every timer due at `now`: retransmissions, timeouts, ends of transactions."""
        while (due := self._timers.pop_due(now)) is not None:
            transaction, timer = due
            if transaction.fire(timer, now):
                assert isinstance(transaction, ClientTransaction | ServerTransaction)
                self._events.append(TransactionTimedOut(transaction))

    # ---- TransactionHost: called by the transactions -----------------------------------------
    def transmit(self, peer: Peer, data: bytes) -> None:
        self._outputs.append(Transmit(peer, data))

    def arm(self, transaction: Transaction, timer: Timer, deadline: float) -> None:
        self._timers.arm(transaction, timer, deadline)

    def disarm(self, transaction: Transaction, timer: Timer) -> None:
        self._timers.disarm(transaction, timer)

    def terminated(self, transaction: Transaction) -> None:
        self.stats.transactions -= 1
        if isinstance(transaction, ClientTransaction):
            if self._client.get(transaction.key) is transaction:
                del self._client[transaction.key]
            return
        assert isinstance(transaction, ServerTransaction)
        if self._server.get(transaction.key) is transaction:
            del self._server[transaction.key]
        merge_key = transaction.merge_key
        if merge_key is not None and self._merge.get(merge_key) is transaction:
            del self._merge[merge_key]
        digest = transaction.datagram_digest
        if digest is not None and self._by_datagram.get(digest) is transaction:
            del self._by_datagram[digest]
        if transaction.kind is Kind.INVITE_SERVER:  # only those wait for an ACK of a 2xx
            ack_key = _accepted_key(transaction)
            if ack_key is not None and self._accepted.get(ack_key) is transaction:
                del self._accepted[ack_key]

    # ---- requests ---------------------------------------------------------------------------
    def _receive(self, parsed: Parsed, peer: Peer, now: float, *, too_big: bool) -> None:
        message = parsed.message
        if isinstance(message, Response):
            self._receive_response(parsed, message, now)
        else:
            self._receive_request(parsed, message, peer, now, too_big)

    def _receive_request(self, parsed: Parsed, request: Request, peer: Peer, now: float,
                         too_big: bool) -> None:
        defect: BadMessage | None = None
        try:
            check_request(parsed)
            _check_contacts(request)
        except BadMessage as error:
            defect = error
        if too_big and defect is None:
            defect = BadMessage(513, "message too large")
        via = _top_via(request)
        method = request.method
        key = _server_key(request, via, method)
        if key is not None:
            transaction = self._server.get(key)
            if transaction is not None:
                self._repeated(transaction, request, peer, now)
                return
        if method == "ACK":
            if defect is None:
                self._receive_2xx_ack(request, peer, now)
            else:
                self.stats.dropped += 1  # an ACK is never answered
            return
        if via is not None:
            _fill_via(request, via, peer)
        digest = parsed.datagram_digest
        if defect is not None:
            self._reject(request, key, peer, defect.status, defect.reason, now, digest)
            return
        assert key is not None  # a request that passed the checks has all the key needs
        if method == "CANCEL":
            self._receive_cancel(request, key, via, peer, now, digest)
            return
        merge_key = _merge_key(request)
        if merge_key is not None and merge_key in self._merge:
            self._reject(request, key, peer, 482, "merged request", now, digest)
            return
        transaction = self._new_server(request, key, peer, now, digest)
        if merge_key is not None:
            self._merge[merge_key] = transaction
            transaction.merge_key = merge_key
        if method == "INVITE":
            self._trying.append(transaction)
        self._events.append(RequestReceived(request, transaction, peer))

    def _absorbed_ack(self, data: bytes, now: float) -> bool:
        """Absorb the ACK of a 3xx-6xx without parsing it (see the module doc): True when
        done, with what parsing would have led to."""
        fields = _ack_fields(data)
        if fields is None:
            return False
        key, to_value = fields
        transaction = self._server.get(key)
        if transaction is not None:
            state = transaction.state
            if state is not State.COMPLETED and state is not State.CONFIRMED:
                return False  # a 2xx's ACK on the INVITE's branch goes up, parsed
            transaction.receive_ack(now)
            if state is State.CONFIRMED:
                self.stats.retransmissions_absorbed += 1
            return True
        challenge_tag = self._challenged.get(key)
        if challenge_tag is None or to_value is None or _tag_of(to_value) != challenge_tag:
            return False
        # The ACK of a stateless challenge: no transaction, and no 2xx bears that To tag.
        del self._challenged[key]
        self.stats.dropped += 1
        return True

    def _repeated(self, transaction: ServerTransaction, request: Request, peer: Peer,
                  now: float) -> None:
        """A request that matches a live transaction: a retransmission, or the ACK."""
        if request.method != "ACK":
            transaction.receive_retransmission(peer)
            self.stats.retransmissions_absorbed += 1
            return
        repeat = transaction.state is State.CONFIRMED or transaction.acked
        # The 2xx's ACK on the INVITE's branch (RFC 2543, or a phone that reuses it): the
        # branch names the transaction (§17.2.3), whatever To tag the phone wrote.
        if transaction.receive_ack(now):
            self._events.append(RequestReceived(request, None, peer, invite=transaction))
        elif repeat:
            self.stats.retransmissions_absorbed += 1

    def _receive_2xx_ack(self, request: Request, peer: Peer, now: float) -> None:
        key = _ack_key(request)
        transaction = None if key is None else self._accepted.get((*key, _to_tag(request)))
        if transaction is None:
            self.stats.dropped += 1  # its INVITE transaction is over or never was
        elif transaction.receive_ack(now):
            self._events.append(RequestReceived(request, None, peer, invite=transaction))
        else:
            self.stats.retransmissions_absorbed += 1

    def _receive_cancel(self, cancel: Request, key: ServerKey, via: Via | None, peer: Peer,
                        now: float, digest: bytes | None) -> None:
        """§9.2: the CANCEL is answered here; the TU hears of it only if its INVITE is still
        unanswered."""
        invite_key = _server_key(cancel, via, "INVITE")
        invite = None if invite_key is None else self._server.get(invite_key)
        if invite is None or invite.kind is not Kind.INVITE_SERVER:
            self._reject(cancel, key, peer, 481, "no transaction to cancel", now, digest)
            return
        transaction = self._new_server(cancel, key, peer, now, digest, internal=True)
        transaction.respond(make_response(cancel, 200, to_tag=invite.to_tag), now)
        if not invite.answered:
            self._events.append(CancelReceived(cancel, invite))

    def _reject(self, request: Request, key: ServerKey | None, peer: Peer, status: int,
                detail: str, now: float, digest: bytes | None = None) -> None:
        """Answer `status` ourselves: in a transaction so that retransmissions get the same
        answer, or statelessly when the request is too broken to key one."""
        headers = [("warning", f"399 softswitch {abnf.quote(_printable(detail))}")]
        if self.server_name:
            headers.append(("server", self.server_name))
        self.stats.rejected += 1
        if key is None:
            response = make_response(request, status, to_tag=random_token(6), headers=headers)
            self._outputs.append(Transmit(peer, response.to_bytes()))
            return
        transaction = self._new_server(request, key, peer, now, digest, internal=True)
        transaction.respond(make_response(request, status, to_tag=transaction.to_tag,
                                          headers=headers), now)

    def _new_server(self, request: Request, key: ServerKey, peer: Peer, now: float,
                    digest: bytes | None, *, internal: bool = False) -> ServerTransaction:
        """`digest`: of the datagram the request came in, whose repeats this absorbs."""
        transaction = ServerTransaction(self, request, peer, key, now, internal=internal)
        self._server[key] = transaction
        if digest is not None:
            transaction.datagram_digest = digest
            self._by_datagram[digest] = transaction
        self.stats.transactions += 1
        return transaction

    def _framing_failed(self, error: FramingError, peer: Peer, now: float) -> None:
        """Answered statelessly: the connection closes, no retransmission will come."""
        message = error.parsed.message if error.parsed is not None else None
        if isinstance(message, Request) and message.method != "ACK":
            self._reject(message, None, peer, error.status, error.reason, now)
        else:
            self.stats.dropped += 1
        self._close(peer)

    def _close(self, peer: Peer) -> None:
        self._framers.pop(peer.connection, None)
        if peer.connection is not None:
            self._outputs.append(CloseConnection(peer.connection))

    # ---- responses --------------------------------------------------------------------------
    def _receive_response(self, parsed: Parsed, response: Response, now: float) -> None:
        try:
            check_response(parsed)
        except BadMessage:
            self.stats.dropped += 1
            return
        via, cseq = response.top_via, response.cseq  # parsed by check_response
        assert via is not None and cseq is not None
        transaction = self._client.get((via.branch or "", cseq.method))
        if transaction is None:
            self.stats.dropped += 1  # stray: RFC 4475 unreason, bcast ...
        elif transaction.receive_response(response, now):
            self._events.append(ResponseReceived(response, transaction))
        else:
            self.stats.retransmissions_absorbed += 1

    def _ensure_via(self, request: Request, peer: Peer) -> str:
        """The branch of the request's top Via, which is ours if it had none."""
        if not request.has("via"):
            branch = new_branch()
            request.prepend("via", f"SIP/2.0/{peer.transport.upper()} {self.sent_by}"
                                   f";branch={branch};rport")
            return branch
        via = request.top_via
        if via is None or not via.branch:
            raise ValueError("the request's top Via has no branch")
        return via.branch


# ---- keys and header fix-ups ------------------------------------------------------------------
def _top_via(request: Request) -> Via | None:
    try:
        return request.top_via
    except HeaderError:
        return None


def _server_key(request: Request, via: Via | None, method: str) -> ServerKey | None:
    """§17.2.3: the branch names the transaction when it has the magic cookie; RFC 2543
    requests are matched on Request-URI, From tag, Call-ID, CSeq and top Via. (The To tag is
    left out: the ACK of a non-2xx carries our tag, the INVITE had none.)"""
    if via is None:
        return None
    if method == "ACK":
        method = "INVITE"
    if via.is_rfc3261:
        return (via.branch, via.host, via.port, method)
    dialog_part = _ack_key(request)  # Call-ID, From tag, CSeq number
    if dialog_part is None:
        return None
    return (request.uri, *dialog_part, method, via.transport, via.host, via.port, via.branch)


def _merge_key(request: Request) -> tuple[str, str, int, str] | None:
    """§8.2.2.2: what a request without To tag shares with its copies from other paths."""
    try:
        to, from_, cseq = request.to, request.from_, request.cseq
    except HeaderError:
        return None
    call_id = request.call_id
    if to is None or to.tag is not None or from_ is None or from_.tag is None \
            or cseq is None or call_id is None:
        return None
    return (call_id, from_.tag, cseq.number, cseq.method)


def _ack_key(request: Request) -> tuple[str, str | None, int] | None:
    """Call-ID, From tag and CSeq number: what an ACK shares with the INVITE it acknowledges
    (and, with the rest of §17.2.3's fields, what names an RFC 2543 transaction)."""
    try:
        from_, cseq = request.from_, request.cseq
    except HeaderError:
        return None
    call_id = request.call_id
    if from_ is None or cseq is None or call_id is None:
        return None
    return (call_id, from_.tag, cseq.number)


def _accepted_key(transaction: ServerTransaction) -> tuple[str, str | None, int, str] | None:
    """What the ACK of this transaction's 2xx carries: the INVITE's Call-ID, From tag and
    CSeq number, and the To tag of our 2xx."""
    key = _ack_key(transaction.request)
    return None if key is None else (*key, transaction.to_tag)


def _to_tag(request: Request) -> str:
    try:
        to = request.to
    except HeaderError:
        return ""
    return (to.tag or "") if to is not None else ""


def _check_contacts(request: Request) -> None:
    """A Contact we cannot read is a 400 (RFC 4475 §3.1.2.13): dialogs and bindings need it."""
    if not request.has("contact") or request.contact_star:
        return
    try:
        request.contacts  # noqa: B018 - parse now, cached for the TU
    except HeaderError as error:
        raise BadMessage(400, f"bad Contact: {error}") from None


def _fill_via(request: Request, via: Via, peer: Peer) -> None:
    """RFC 3261 §18.2.1 `received` and RFC 3581 `rport`, written into the top Via's text (for
    make_response to copy) and into its parsed form (for the TU to read)."""
    source = peer.host.strip("[]")
    empty_rport = "rport" in via.params and via.params["rport"] is None
    if not empty_rport and via.host.strip("[]").lower() == source.lower():
        return
    index = next((i for i, (name, _) in enumerate(request.headers) if name == "via"), None)
    if index is None:
        return
    elements = abnf.split_list(request.headers[index][1])
    top = _RECEIVED.sub("", elements[0])
    if empty_rport:
        top = _RPORT.sub(f";rport={peer.port}", top, count=1)
        via.params["rport"] = str(peer.port)
    elements[0] = f"{top};received={source}"
    via.params["received"] = source
    request.replace_line(index, ", ".join(elements), keep_parsed=True)


# A Via or To header line, under any spelling the parser takes, for `_ack_fields`.
_VIA_OR_TO_LINE = re.compile(rb"\r\n(?:(via|v)|to|t)[ \t]*:([^\r\n]*)", re.IGNORECASE)


def _ack_fields(data: bytes) -> tuple[ServerKey, bytes | None] | None:
    """The server key and the first To line's value of an ACK datagram, read without parsing
    it whole; None when it is not of the plain shape for which this gives what the parser
    would: CRLF line ends, a readable request line, one Via line of one via-parm, no folded
    Via or To line. (The key has the shape of an RFC 3261 transaction's: an RFC 2543 one's is
    never found by it. More than one To line is a 400 for the parser: an ACK it drops all the
    same.)"""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    start_line = data[:data.find(b"\r\n")].split()
    if len(start_line) < 3 or not start_line[-1].startswith(b"SIP/"):
        return None  # the parser would drop it, or answer 400
    via_values: list[bytes] = []
    to_values: list[bytes] = []
    for line in _VIA_OR_TO_LINE.finditer(data, 0, end + 2):
        after = line.end()
        if data[after:after + 2] != b"\r\n" or data[after + 2:after + 3] in (b" ", b"\t"):
            return None  # a bare CR or LF, or a continuation line: the parser joins them
        (via_values if line.group(1) else to_values).append(line.group(2))
    if len(via_values) != 1:
        return None
    elements = abnf.split_list(_text(via_values[0]))
    if len(elements) != 1:
        return None
    try:
        via = parse_via(elements[0])
    except HeaderError:
        return None
    return (via.branch, via.host, via.port, "INVITE"), to_values[0] if to_values else None


def _tag_of(to_value: bytes) -> str | None:
    """The tag of a To line's value; None if it has none or cannot be read."""
    try:
        return parse_name_addr(_text(to_value)).tag
    except HeaderError:
        return None


def _text(value: bytes) -> str:
    """A header value as the parser reads it."""
    return value.decode("utf-8", "surrogateescape").strip(abnf.LWS)


def _datagram_digest(data: bytes) -> bytes:
    """128 bits: no two different datagrams share one, even if a sender tried."""
    return hashlib.blake2b(data, digest_size=16).digest()


def _printable(text: str, limit: int = 120) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])
