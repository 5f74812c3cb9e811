"""The B2BUA: a call between a caller and a subscriber's phones, as two separate dialogs.

A `Bridge` carries out one `Ring` decision of the router for the caller's INVITE (leg A, an
`InviteSession` we are the UAS of): it sends an INVITE to every registered phone of the
callee at once (parallel forking; each fork is a UAC `InviteSession` with its own Call-ID),
with the caller's SDP passed through, so that media flows phone to phone, not through us.

- 180/183 from a fork are relayed to A (the first early SDP with them); the first 2xx wins:
  it is ACKed, every other fork is CANCELed (or, answered too, ACKed and hung up), and A
  gets the 2xx with the winner's SDP.
- The ring time runs out, every fork fails, or none can be reached: the forks are
  CANCELed and the bridge reports `no_answer`, `busy` or `unreachable` to its owner, which
  asks the router what comes next (forwarding on no answer, voicemail, a status) — A's
  INVITE is still open for that.
- A CANCELs: the forks are CANCELed, A gets 487.
- Once answered: BYE from either side ends both (200 to it, BYE to the other);
  re-INVITE, UPDATE (hold and resume) and INFO are relayed to the other side and its answer
  back; a re-INVITE that crosses one of ours gets 491. A's missing ACK ends both sides.
- `calls.max_call_seconds` bounds a call whose ends vanished without a BYE.

Requests to a phone go to where its REGISTER came from (its NAT binding); requests to A go
to where A's requests come from. Every transaction and dialog is claimed in the owner table
and released when done; `B2bua.counters()` shows what is live (leak tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..sip.dialog import incoming_dialog_id
from ..sip.events import (
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.invite_session import (
    Answered,
    Failed,
    InviteSession,
    Progress,
    SessionState,
    StrayAnswer,
)
from ..sip.message import Request, Response, make_response
from ..sip.transaction import ClientTransaction, ServerTransaction
from .owners import Owners
from .router import RingResult

log = logging.getLogger(__name__)

BUSY_STATUSES = frozenset((486, 600, 603))
RELAYED_METHODS = frozenset(("INVITE", "UPDATE", "INFO"))
# Headers of an in-dialog request or response that travel to the other leg as they are.
PASSED_HEADERS = ("content-type", "allow", "supported", "accept", "event", "info-package",
                  "content-disposition")


class SipSender(Protocol):
    def respond(self, transaction: ServerTransaction, response: Response) -> None: ...

    def send_request(self, request: Request, peer: Peer) -> ClientTransaction: ...

    def send_stateless(self, message: Request | Response, peer: Peer) -> None: ...


@dataclass(slots=True, frozen=True)
class Target:
    """One registered phone of the callee: its Contact URI and where to reach it."""

    uri: str
    peer: Peer


@dataclass(slots=True, frozen=True)
class LegIdentity:
    """How the callee's phones see the call."""

    from_uri: str  # sip:<caller number>@<domain>, or the anonymous URI
    from_display: str | None
    to_uri: str  # sip:<callee>@<domain>
    headers: tuple[tuple[str, str], ...] = ()  # History-Info, Diversion, Privacy ...


class BridgeOwner(Protocol):
    """What the bridge reports to the call it belongs to (switch/calls.py)."""

    def answered(self) -> None: ...

    def confirmed(self) -> None: ...

    def unanswered(self, result: RingResult) -> None: ...

    def ended(self, outcome: str) -> None: ...


@dataclass(slots=True, eq=False)
class Fork:
    session: InviteSession
    transaction: ClientTransaction
    peer: Peer
    status: int = 0  # the final status it got, 0 while it rings
    cancel_when_early: bool = False  # CANCEL as soon as a provisional response arrives
    cancelled: bool = False  # its CANCEL is sent: a provisional that crossed it changes nothing

    @property
    def ringing(self) -> bool:
        return self.session.state in (SessionState.CALLING, SessionState.EARLY)


@dataclass(slots=True, eq=False)
class Relay:
    """A request we sent on one leg on behalf of the other: where its answer goes."""

    incoming: ServerTransaction
    to_a: bool  # the answer goes back to leg A (the request came from A)
    method: str


class B2bua:
    def __init__(self, *, sip: SipSender, owners: Owners, server_name: str,
                 contact: Callable[[str, Peer], str], max_call_seconds: float) -> None:
        self.sip = sip
        self.owners = owners
        self.server_name = server_name
        self.contact = contact  # our Contact for a user part and a transport
        self.max_call_seconds = max_call_seconds
        self.bridges: set[Bridge] = set()

    def counters(self) -> dict[str, int]:
        return {"bridges": len(self.bridges), "owned": self.owners.claimed}

    def ring(self, a: InviteSession, a_invite: ServerTransaction, a_peer: Peer,
             targets: Sequence[Target], identity: LegIdentity, ring_time: float,
             owner: BridgeOwner) -> Bridge:
        bridge = Bridge(self, a, a_invite, a_peer, owner)
        self.bridges.add(bridge)
        bridge.start(targets, identity, ring_time)
        return bridge

    async def close(self) -> None:
        for bridge in list(self.bridges):
            bridge.hang_up("server shutting down")


class Bridge:
    """One call between leg A and the callee's phones (see the module doc)."""

    def __init__(self, b2bua: B2bua, a: InviteSession, a_invite: ServerTransaction,
                 a_peer: Peer, owner: BridgeOwner) -> None:
        self.b2bua = b2bua
        self.a = a
        self.a_invite = a_invite
        self.a_peer = a_peer
        self.owner = owner
        self.forks: list[Fork] = []
        self.winner: Fork | None = None
        self.relays: dict[ClientTransaction, Relay] = {}
        self.byes: set[ClientTransaction] = set()
        self.label = f"{a.call_id}"
        self.ended = False  # the whole call is over
        self.handed_back = False  # unanswered: A went back to the owner
        self._early_sdp_sent = False
        self._timer: asyncio.TimerHandle | None = None

    # ---- starting ---------------------------------------------------------------------------
    def start(self, targets: Sequence[Target], identity: LegIdentity, ring_time: float) -> None:
        owners = self.b2bua.owners
        owners.claim_invite(self.a_invite, self)
        if self.a.id is not None:  # A already has an early dialog (a 180 of an earlier hop)
            owners.claim_dialog(self.a.id, self)
        max_forwards = _max_forwards(self.a.invite)
        for target in targets:
            session = InviteSession.outgoing(
                request_uri=target.uri, from_uri=identity.from_uri,
                from_display=identity.from_display, to_uri=identity.to_uri,
                local_contact=self.b2bua.contact(_user(identity.to_uri), target.peer),
                body=self.a.remote_sdp,
                headers=[("max-forwards", str(max_forwards)),
                         ("user-agent", self.b2bua.server_name),
                         ("allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"),
                         *identity.headers])
            try:
                transaction = self.b2bua.sip.send_request(session.invite, target.peer)
            except (ValueError, OSError) as error:
                log.warning("call %s: INVITE to %s not sent: %s", self.label, target.uri, error)
                continue
            owners.claim_client(transaction, self)
            self.forks.append(Fork(session, transaction, target.peer))
        if not self.forks:
            self._hand_back("unreachable")
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(ring_time, self._ring_time_over)
        log.info("call %s: ringing %d phone(s) for %ss", self.label, len(self.forks), ring_time)

    # ---- events (Owner) -------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, ResponseReceived):
            self._response(event.response, event.transaction)
        elif isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, CancelReceived):
            self._cancelled_by_a()
        elif isinstance(event, TransactionTimedOut):
            self._timed_out(event.transaction)

    # ---- responses ------------------------------------------------------------------------------
    def _response(self, response: Response, transaction: ClientTransaction) -> None:
        fork = self._fork_of(transaction)
        if fork is not None:
            self._fork_response(fork, response)
            return
        relay = self.relays.get(transaction)
        if relay is not None:
            self._relay_response(transaction, relay, response)
            return
        if transaction in self.byes and response.status >= 200:
            self._forget_client(transaction)
            self.byes.discard(transaction)
            self._maybe_done()
        elif response.status >= 200:  # a CANCEL's answer
            self._forget_client(transaction)

    def _fork_response(self, fork: Fork, response: Response) -> None:
        outcome = fork.session.response(response)
        if outcome is None:
            return
        if isinstance(outcome, Progress):
            if fork.cancel_when_early or self.winner is not None or self.handed_back \
                    or self.ended:
                self._cancel(fork)
                return
            self._relay_progress(outcome.response)
        elif isinstance(outcome, Answered):
            self.b2bua.sip.send_stateless(outcome.ack, fork.peer)
            if not outcome.first:
                return
            fork.status = response.status
            if self.winner is not None or self.handed_back or self.ended:
                self._send_bye(fork.session, fork.peer)  # answered too late: hang it up
                return
            self._won(fork, response)
        elif isinstance(outcome, StrayAnswer):
            self.b2bua.sip.send_stateless(outcome.ack, fork.peer)
            self._send_request(outcome.bye, fork.peer, self.byes)
        elif isinstance(outcome, Failed):
            fork.status = response.status
            self._forget_client(fork.transaction)
            if response.status >= 600 and self.winner is None:
                self._cancel_forks()  # §16.7: a 6xx ends the search
            self._maybe_unanswered()
            self._maybe_done()

    def _relay_progress(self, response: Response) -> None:
        if self.a.state not in (SessionState.INCOMING, SessionState.EARLY):
            return
        body = b""
        if response.body and response.status == 183 and not self._early_sdp_sent:
            body = response.body
            self._early_sdp_sent = True
        status = 183 if body else (response.status if response.status != 183 else 180)
        self._reply_a(self.a.provisional(status, body=body))
        assert self.a.id is not None
        self.b2bua.owners.claim_dialog(self.a.id, self)

    def _won(self, fork: Fork, response: Response) -> None:
        self.winner = fork
        self._stop_timer()
        for other in self.forks:
            if other is not fork and other.ringing:
                self._cancel(other)
        assert fork.session.id is not None
        self.b2bua.owners.claim_dialog(fork.session.id, self)
        self._forget_client(fork.transaction)
        answer = self.a.accept(body=fork.session.remote_sdp, headers=[
            ("allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE")])
        self._reply_a(answer)
        assert self.a.id is not None
        self.b2bua.owners.claim_dialog(self.a.id, self)
        self._timer = asyncio.get_running_loop().call_later(self.b2bua.max_call_seconds,
                                                            self._too_long)
        log.info("call %s: answered by %s", self.label, fork.session.invite.uri)
        self.owner.answered()

    # ---- requests -------------------------------------------------------------------------------
    def _request(self, event: RequestReceived) -> None:
        request, transaction = event.request, event.transaction
        dialog_id = incoming_dialog_id(request)
        from_a = dialog_id == self.a.id
        if transaction is None:  # an ACK: A's, of the 2xx we relayed to it
            if (event.invite is self.a_invite or from_a) and self.a.acked():
                self.a_peer = event.peer
                self.owner.confirmed()
            return
        winner = self.winner
        if winner is None or self.ended:
            self._reply(transaction, 481 if winner is None else 487)
            return
        session = self.a if from_a else winner.session
        other, other_peer = (winner.session, winner.peer) if from_a else (self.a, self.a_peer)
        status = session.receive_request(request)
        if status is not None:
            self._reply(transaction, status)
            return
        if from_a:
            self.a_peer = event.peer
        else:
            winner.peer = event.peer
        method = request.method
        if method == "BYE":
            self._reply(transaction, 200)
            log.info("call %s: %s hung up", self.label, "caller" if from_a else "callee")
            self._send_bye(other, other_peer)
            self._finish("answered")
        elif method in RELAYED_METHODS:
            if method == "INVITE" and any(r.method == "INVITE" for r in self.relays.values()):
                self._reply(transaction, 491)  # one re-INVITE at a time on a bridged call
                return
            relayed = other.request(method, body=request.body,
                                    headers=_passed(request, skip_content_type=True))
            if method != "INVITE" and request.body and request.content_type:
                relayed.set("content-type", request.content_type)
            sent = self._send_request(relayed, other_peer, None)
            if sent is not None:
                self.relays[sent] = Relay(transaction, to_a=from_a, method=method)
            else:
                self._reply(transaction, 500)
        else:
            self._reply(transaction, 405, headers=[
                ("allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE")])

    def _relay_response(self, transaction: ClientTransaction, relay: Relay,
                        response: Response) -> None:
        status = response.status
        if status < 200:
            return
        del self.relays[transaction]
        self._forget_client(transaction)
        winner = self.winner
        if relay.method == "INVITE" and status < 300 and winner is not None:
            # We are the UAC of that re-INVITE: ACK it now; the other side's ACK is ours.
            sender, peer = (winner.session, winner.peer) if relay.to_a else (self.a,
                                                                               self.a_peer)
            if sender.dialog is not None:
                cseq = transaction.request.cseq
                ack = sender.dialog.create_ack(cseq.number if cseq else 1)
                self.b2bua.sip.send_stateless(ack, peer)
            if response.body:
                sender.remote_sdp = response.body
        target = self.a if relay.to_a else (winner.session if winner else None)
        headers = _passed(response, skip_content_type=False)
        if target is not None and relay.method in ("INVITE", "UPDATE"):
            headers.append(("contact", target.local_contact))
            if response.body:
                target.local_sdp = response.body
        reply = make_response(relay.incoming.request, status, response.reason,
                              to_tag=relay.incoming.to_tag, headers=headers, body=response.body)
        self._send_reply(relay.incoming, reply)

    # ---- CANCEL, timeouts, endings ----------------------------------------------------------
    def _cancelled_by_a(self) -> None:
        if self.a_invite.answered:
            return
        self._reply_a(self.a.reject(487))
        log.info("call %s: caller cancelled", self.label)
        self._cancel_forks()
        self._finish("cancelled")

    def _ring_time_over(self) -> None:
        self._timer = None
        if self.winner is not None or self.ended or self.handed_back:
            return
        log.info("call %s: no answer within the ring time", self.label)
        self._cancel_forks()
        self._hand_back("no_answer")

    def _too_long(self) -> None:
        self._timer = None
        self.hang_up("longer than calls.max_call_seconds")

    def _timed_out(self, transaction: ClientTransaction | ServerTransaction) -> None:
        if transaction is self.a_invite:  # no ACK for the 2xx we relayed: end both sides
            log.info("call %s: no ACK from the caller", self.label)
            self.hang_up("no ACK from the caller")
            return
        if not isinstance(transaction, ClientTransaction):
            return
        self._forget_client(transaction)
        fork = self._fork_of(transaction)
        if fork is not None:
            if fork.status == 0:
                fork.status = 408
                fork.session.end()
            self._maybe_unanswered()
            self._maybe_done()
            return
        relay = self.relays.pop(transaction, None)
        if relay is not None:
            self._send_reply(relay.incoming, make_response(
                relay.incoming.request, 408, to_tag=relay.incoming.to_tag))
            return
        self.byes.discard(transaction)
        self._maybe_done()

    def hang_up(self, reason: str) -> None:
        """End the call from our side: BYE (or CANCEL) everywhere."""
        if self.ended:
            return
        log.info("call %s: hung up by us: %s", self.label, reason)
        if self.winner is not None:
            self._send_bye(self.winner.session, self.winner.peer)
        else:
            self._cancel_forks()
        if self.a.state in (SessionState.INCOMING, SessionState.EARLY) and not self.handed_back:
            self._reply_a(self.a.reject(480))
        else:
            self._send_bye(self.a, self.a_peer)
        self._finish("answered" if self.winner is not None else "failed")

    def _maybe_unanswered(self) -> None:
        if self.winner is not None or self.handed_back or self.ended:
            return
        if any(fork.status == 0 for fork in self.forks):
            return
        busy = any(fork.status in BUSY_STATUSES for fork in self.forks)
        self._hand_back("busy" if busy else "unreachable")

    def _hand_back(self, result: RingResult) -> None:
        """Unanswered: A goes back to the owner, who decides what follows."""
        self.handed_back = True
        self._stop_timer()
        owners = self.b2bua.owners
        owners.release_invite(self.a_invite, self)
        owners.release_dialog(self.a.id, self)
        self._maybe_done()
        self.owner.unanswered(result)

    def _finish(self, outcome: str) -> None:
        self.ended = True
        self._stop_timer()
        owners = self.b2bua.owners
        owners.release_invite(self.a_invite, self)
        owners.release_dialog(self.a.id, self)
        if self.winner is not None:
            owners.release_dialog(self.winner.session.id, self)
        for relay in self.relays.values():
            self._send_reply(relay.incoming, make_response(relay.incoming.request, 487,
                                                           to_tag=relay.incoming.to_tag))
        for transaction in list(self.relays):
            self._forget_client(transaction)
        self.relays.clear()
        self._maybe_done()
        self.owner.ended(outcome)

    def _maybe_done(self) -> None:
        """Forget the bridge once nothing of it is pending any more."""
        if not (self.ended or self.handed_back):
            return
        if self.byes or any(fork.status == 0 for fork in self.forks):
            return
        self.b2bua.bridges.discard(self)

    # ---- helpers ------------------------------------------------------------------------------
    def _cancel_forks(self) -> None:
        for fork in self.forks:
            if fork.ringing:
                self._cancel(fork)

    def _cancel(self, fork: Fork) -> None:
        """§9.1: CANCEL once the phone answered provisionally; before that, as soon as it
        does. A phone that never answers is ended by its transaction's timer B."""
        if fork.cancelled:
            return
        if fork.session.cancel_allowed():
            cancel = fork.transaction.make_cancel()
            fork.cancel_when_early = False
            fork.cancelled = True
            self._send_request(cancel, fork.peer, None)
        else:
            fork.cancel_when_early = True

    def _send_bye(self, session: InviteSession, peer: Peer) -> None:
        bye = session.bye(headers=[("user-agent", self.b2bua.server_name)])
        if bye is not None:
            self._send_request(bye, peer, self.byes)

    def _send_request(self, request: Request, peer: Peer,
                      track: set[ClientTransaction] | None) -> ClientTransaction | None:
        try:
            transaction = self.b2bua.sip.send_request(request, peer)
        except (ValueError, OSError) as error:
            log.warning("call %s: %s not sent: %s", self.label, request.method, error)
            return None
        self.b2bua.owners.claim_client(transaction, self)
        if track is not None:
            track.add(transaction)
        return transaction

    def _forget_client(self, transaction: ClientTransaction) -> None:
        self.b2bua.owners.release_client(transaction, self)

    def _fork_of(self, transaction: ClientTransaction) -> Fork | None:
        for fork in self.forks:
            if fork.transaction is transaction:
                return fork
        return None

    def _reply_a(self, response: Response) -> None:
        self._send_reply(self.a_invite, response)

    def _reply(self, transaction: ServerTransaction, status: int,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        self._send_reply(transaction, make_response(transaction.request, status,
                                                    to_tag=transaction.to_tag,
                                                    headers=list(headers)))

    def _send_reply(self, transaction: ServerTransaction, response: Response) -> None:
        response.add("server", self.b2bua.server_name)
        self.b2bua.sip.respond(transaction, response)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _passed(message: Request | Response, *, skip_content_type: bool) -> list[tuple[str, str]]:
    return [(name, value) for name, value in message.headers
            if name in PASSED_HEADERS and not (skip_content_type and name == "content-type")]


def _max_forwards(request: Request) -> int:
    value = request.get("max-forwards")
    try:
        return max(0, int(value) - 1) if value is not None else 69
    except ValueError:
        return 69


def _user(uri: str) -> str:
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else ""
