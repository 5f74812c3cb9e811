"""Where a new INVITE goes: who is calling, what the router decides, who carries it out.

`CallRouter.invite` runs for every INVITE outside a dialog:

1. identity (switch/identity.py): a trusted peer asserts the caller; a call to a public
   number needs nothing; anything else is challenged (407) and must come from the
   subscriber who authenticated — answered at once, so a challenge costs no 100 Trying;
2. admission (switch/admission.py): the per-source limits on calls in progress;
3. a read barrier on the subscriber directory (`sync()`: every change committed anywhere
   before this call is seen; in the same step when nothing was committed since the last
   poll, else in a task), then the pure router (switch/router.py) decides;
4. a `CallAttempt` carries the decision out, and the next one when a ring goes unanswered:
   `Reject` -> a status; `Announce` -> early media then 603 (switch/ivr_calls.py);
   `RunFlow`/`Voicemail` -> a voice flow answers; `Ring`/`RouteOut` -> the B2BUA forks to
   the callee's phones (switch/b2bua.py); no answer, busy, unreachable -> the router again.

Each attempt ends in one call record (caller, callee, outcome, times), and a call that
reached a subscriber's phones or mailbox makes the caller that subscriber's last caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..config import ListenAddress
from ..sip.events import Peer
from ..sip.invite_session import InviteSession
from ..sip.message import Request, make_response
from ..sip.sdp import SdpError, check_offer_destinations, parse_sdp
from ..sip.transaction import ServerTransaction
from ..sip.uri import SipUri, UriError, parse_uri
from .admission import Admission, CallAdmission
from .auth import Rejected
from .b2bua import B2bua, LegIdentity, Target
from .identity import CallerIdentity
from .ivr_calls import CallParty, Flow, IvrCalls
from .router import (
    Announce,
    CalleeView,
    Caller,
    Decision,
    Reject,
    Ring,
    RingResult,
    RouteOut,
    Router,
    RunFlow,
    Voicemail,
    diversion_headers,
    history_info,
)

log = logging.getLogger(__name__)


class Directory(Protocol):
    """The subscribers' routing state in memory (services/directory.py)."""

    async def sync(self) -> None: ...

    def current(self) -> bool: ...

    def callee(self, number: str) -> CalleeView | None: ...


class Contacts(Protocol):
    """Registered phones of a subscriber (the registrar)."""

    def targets(self, number: str) -> Sequence[Target]: ...


class CallLog(Protocol):
    """Where call attempts are recorded (services: call records, last caller)."""

    def record(self, call_id: str, caller: str | None, callee: str, outcome: str,
               started_at: float, answered_at: float | None, ended_at: float,
               detail: str) -> None: ...

    def last_caller(self, number: str, caller: str | None) -> None: ...


class Bindings(Protocol):
    def contacts(self, aor: str) -> Sequence[BindingLike]: ...


class BindingLike(Protocol):
    @property
    def contact(self) -> str: ...

    @property
    def source(self) -> str: ...


@dataclass(slots=True, frozen=True)
class RegisteredPhones:
    """The callee's phones from the registrar, each reached as `phone_peer` says."""

    bindings: Bindings

    def targets(self, number: str) -> list[Target]:
        targets = []
        for binding in self.bindings.contacts(number):
            peer = phone_peer(binding.contact, binding.source)
            if peer is not None:
                targets.append(Target(binding.contact, peer))
        return targets


def phone_peer(contact: str, source: str) -> Peer | None:
    """Where to send a phone's calls. Its REGISTER came from `source` ('udp:192.0.2.1:5060');
    over UDP, when the Contact names that same IP, the Contact's port is the phone's own;
    when it names another (a private address behind NAT) or a host name (which we never
    resolve), the source is the NAT binding that reaches it. Over TCP, the connection the
    REGISTER came on."""
    transport, _, hostport = source.partition(":")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or transport not in ("udp", "tcp"):
        return None
    if transport == "udp":
        try:
            uri = parse_uri(contact)
        except UriError:
            uri = None
        if isinstance(uri, SipUri) and uri.host.strip("[]") == host \
                and uri.transport in (None, "udp"):
            return Peer("udp", host, uri.port or 5060)
    return Peer(transport, host, int(port))


@dataclass(slots=True, frozen=True)
class Lookup:
    """The router's view of the switch after a read barrier."""

    directory: Directory
    contacts: Contacts

    def callee(self, number: str) -> CalleeView | None:
        return self.directory.callee(number)

    def has_contacts(self, number: str) -> bool:
        return bool(self.contacts.targets(number))


class CallRouter:
    def __init__(self, *, identity: CallerIdentity, router: Router, directory: Directory,
                 contacts: Contacts, ivr: IvrCalls, b2bua: B2bua, admission: CallAdmission,
                 flows: Mapping[str, Flow], voicemail: Callable[[str], Flow],
                 call_log: CallLog, domain: str, outbound: ListenAddress | None) -> None:
        self.identity = identity
        self.router = router
        self.directory = directory
        self.lookup = Lookup(directory, contacts)
        self.contacts = contacts
        self.ivr = ivr
        self.b2bua = b2bua
        self.admission = admission
        self.flows = dict(flows)  # flow name (a DialCodes field) -> flow
        self.voicemail = voicemail  # mailbox -> the deposit flow
        self.call_log = call_log
        self.domain = domain
        self.outbound = outbound
        self.attempts: set[CallAttempt] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def counters(self) -> dict[str, int]:
        return {"attempts": len(self.attempts), **self.b2bua.counters(),
                **self.ivr.counters()}

    def invite(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None:
        dialled = request_user(request)
        identified = self.identity.identify(request, peer, dialled)
        if isinstance(identified, Rejected):
            response = make_response(request, identified.status, identified.reason,
                                     to_tag=transaction.to_tag,
                                     headers=list(identified.headers))
            # A challenge and a banned source's refusal are answered statelessly (a repeat
            # of the datagram gets the same bytes from the endpoint): see Rejected.stateless.
            self.ivr.reply(transaction, response, stateless=identified.stateless)
            return
        admission = self.admission.admit(peer, authenticated=identified.verified,
                                         trusted=identified.caller.trusted)
        if admission is None:
            self.ivr.respond(transaction, 503, headers=[("retry-after", "30")],
                             warning="too many calls from your address")
            return
        session = self.ivr.session_for(request, transaction, peer, dialled or "softswitch")
        attempt = CallAttempt(self, session, transaction, peer, identified.caller, dialled,
                              identified.verified, admission)
        self.attempts.add(attempt)
        if self.directory.current():  # the read barrier holds already: route in this step
            attempt.decide()
            return
        task = asyncio.get_running_loop().create_task(attempt.route())
        self._tasks.add(task)
        task.add_done_callback(self._routed)

    def _routed(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("routing a call failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.b2bua.close()
        await self.ivr.close()


class CallAttempt:
    """One caller's INVITE, from routing to its call record (the B2BUA's BridgeOwner)."""

    def __init__(self, calls: CallRouter, session: InviteSession,
                 transaction: ServerTransaction, peer: Peer, caller: Caller, dialled: str,
                 verified: bool, admission: Admission) -> None:
        self.calls = calls
        self.session = session
        self.transaction = transaction
        self.peer = peer
        self.caller = caller
        self.dialled = dialled
        self.verified = verified
        self.admission = admission
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.ring: Ring | None = None
        self.forwarded = False
        self.done = False

    async def route(self) -> None:
        try:
            await self.calls.directory.sync()
        except Exception as error:  # the store is down: no routing decision can be trusted
            log.error("call %s: directory unavailable: %s", self.session.call_id, error)
            self.execute(Reject(503, outcome="failed", warning="service unavailable"))
            return
        self.decide()

    def decide(self) -> None:
        """Route, once the directory is current, and carry the decision out."""
        if self.transaction.answered:
            self.ended("cancelled")  # CANCELed while we waited
            return
        self.execute(self.calls.router.route(self.caller, self.dialled, self.calls.lookup))

    def execute(self, decision: Decision) -> None:
        calls = self.calls
        if isinstance(decision, Reject):
            headers = []
            if decision.warning:
                headers.append(("warning", f'399 softswitch "{decision.warning}"'))
            calls.ivr.reply(self.transaction, self.session.reject(decision.status,
                                                                  headers=headers))
            self.ended(decision.outcome, str(decision.status))
        elif isinstance(decision, Announce):
            calls.ivr.announce(self.session, self.transaction, self.peer, self._party(),
                               decision.prompt, decision.status, decision.reason,
                               self.admission, on_end=lambda: self.ended("blocked"))
            log.info("call %s: caller %s blocked by %s", self.session.call_id,
                     self.caller.number, decision.callee)
        elif isinstance(decision, RunFlow):
            flow = calls.flows.get(decision.flow)
            if flow is None:
                self.execute(Reject(404, warning="no service on this code"))
                return
            self._answer(flow, CallParty(self._caller_number(), decision.subscriber,
                                         self.dialled, self.verified), "answered")
        elif isinstance(decision, Voicemail):
            calls.call_log.last_caller(decision.mailbox, self.caller.presented)
            self.forwarded = self.forwarded or bool(decision.diversions)
            self._answer(calls.voicemail(decision.mailbox),
                         CallParty(self._caller_number(), None, decision.mailbox,
                                   self.verified), "voicemail")
        elif isinstance(decision, Ring):
            self._ring(decision)
        elif isinstance(decision, RouteOut):
            self._route_out(decision)

    # ---- carrying decisions out ---------------------------------------------------------------
    def _answer(self, flow: Flow, party: CallParty, outcome: str) -> None:
        def on_end() -> None:
            self.ended(outcome)

        self.answered_at = time.time()
        self.calls.ivr.answer(self.session, self.transaction, self.peer, party, flow,
                              self.admission, on_end=on_end)

    def _ring(self, ring: Ring) -> None:
        calls = self.calls
        if not self._offer_acceptable():
            return
        self.ring = ring
        self.forwarded = self.forwarded or bool(ring.diversions)
        calls.call_log.last_caller(ring.callee, self.caller.presented)
        targets = calls.contacts.targets(ring.callee)
        calls.b2bua.ring(self.session, self.transaction, self.peer, targets,
                         self._leg_identity(ring.callee, ring), ring.ring_time, self)

    def _route_out(self, decision: RouteOut) -> None:
        outbound = self.calls.outbound
        if outbound is None or not self._offer_acceptable():
            if outbound is None:
                self.execute(Reject(404))
            return
        host = str(outbound)
        target = Target(f"sip:{decision.destination}@{host}",
                        Peer("udp", outbound.host, outbound.port))
        ring = Ring(decision.destination, self.calls.router.max_ring_seconds,
                    decision.diversions, (decision.destination,))
        self.ring = ring
        self.forwarded = self.forwarded or bool(decision.diversions)
        self.calls.b2bua.ring(self.session, self.transaction, self.peer, [target],
                              self._leg_identity(decision.destination, ring),
                              ring.ring_time, self)

    def _offer_acceptable(self) -> bool:
        """The caller's SDP goes to the callee's phone as it is: refuse destinations no
        phone of ours should send media to (issue 8 item 12)."""
        if not self.session.remote_sdp:
            return True  # an offer in the answer (RFC 3261 §13.2.1): passed through too
        try:
            check_offer_destinations(parse_sdp(self.session.remote_sdp), initial=True)
        except SdpError as error:
            self.execute(Reject(488, warning=f"bad SDP: {error}"))
            return False
        return True

    def _leg_identity(self, callee: str, ring: Ring) -> LegIdentity:
        domain = self.calls.domain
        headers: list[tuple[str, str]] = []
        if ring.diversions:
            original = ring.chain[0] if ring.chain else callee
            headers += [("history-info", entry) for entry in
                        history_info(original, ring.diversions, callee, domain)]
            headers += [("diversion", value) for value in
                        diversion_headers(ring.diversions, domain)]
        number = self.caller.presented
        if number is None:
            headers.append(("privacy", "id"))
            return LegIdentity("sip:anonymous@anonymous.invalid", "Anonymous",
                               f"sip:{callee}@{domain}", tuple(headers))
        return LegIdentity(f"sip:{number}@{domain}", number, f"sip:{callee}@{domain}",
                           tuple(headers))

    def _party(self) -> CallParty:
        return CallParty(self._caller_number(), self.caller.subscriber, self.dialled,
                         self.verified)

    def _caller_number(self) -> str:
        return self.caller.number or ""

    # ---- BridgeOwner -----------------------------------------------------------------------
    def answered(self) -> None:
        self.answered_at = time.time()

    def confirmed(self) -> None:
        self.admission.confirmed()

    def unanswered(self, result: RingResult) -> None:
        ring = self.ring
        assert ring is not None
        if self.transaction.answered:  # CANCELed meanwhile
            self.ended("cancelled")
            return
        self.execute(self.calls.router.after_ring(self.caller, ring, result,
                                                  self.calls.lookup))

    def ended(self, outcome: str, detail: str = "") -> None:
        if self.done:
            return
        self.done = True
        self.calls.attempts.discard(self)
        self.admission.release()
        if outcome == "answered" and self.forwarded:
            outcome = "forwarded"
        now = time.time()
        callee = self.ring.chain[0] if self.ring is not None and self.ring.chain else \
            self.dialled
        self.calls.call_log.record(self.session.call_id, self.caller.presented, callee,
                                   outcome, self.started_at, self.answered_at, now, detail)


def request_user(request: Request) -> str:
    try:
        uri = request.request_uri
    except UriError:
        return ""
    return (uri.user_text or "") if isinstance(uri, SipUri) else ""
