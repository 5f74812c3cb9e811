"""The call router: who called what, and what becomes of the call — a pure function.

`Router.route` turns a call attempt (the caller as identity established it, the number
dialled) and what the switch knows of the callee (a `Lookup`: the subscriber's services and
registered phones, read from memory) into one decision, with no I/O. The B2BUA and the
IVR-call runner carry decisions out (switch/calls.py). Each step is a small function a test
calls with plain data:

    dial code?  -> RunFlow (the caller's own line) ................ code_decision
    screening   -> Announce "おかけになった電話番号への通話は..." ...... screen
    forwarding  -> the next hop, History-Info and Diversion ....... forward
    ringing     -> Ring every registered phone for the ring time .. ring
    no answer / busy / unreachable -> forward on no answer, else
                   voicemail, else the matching status ............ after_ring

Forwarding chains are followed here: each hop is screened against the hop's own blocklist,
and a loop (a number already on the chain) or a chain longer than calls.max_forwarding_hops
stops with 482 Loop Detected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..numbering import normalise_number

Outcome = Literal["answered", "blocked", "forwarded", "voicemail", "no_answer", "busy",
                  "unreachable", "rejected", "cancelled", "failed"]
RingResult = Literal["no_answer", "busy", "unreachable"]
DiversionReason = Literal["unconditional", "no-answer", "user-busy", "unavailable"]
# RFC 7044 §4.2 cause values of History-Info for each diversion reason
HISTORY_CAUSE: Mapping[DiversionReason, int] = {
    "unconditional": 302, "no-answer": 408, "user-busy": 486, "unavailable": 480}
RING_DIVERSION: Mapping[RingResult, DiversionReason] = {
    "no_answer": "no-answer", "busy": "user-busy", "unreachable": "unavailable"}
BLOCKED_REASON = 'SIP;cause=603;text="Call blocked by the called subscriber"'


# ---- what the router reads (services/model.py has the real ones) ------------------------------
class LineView(Protocol):
    @property
    def number(self) -> str: ...

    @property
    def is_voice(self) -> bool: ...

    @property
    def blocking_available(self) -> bool: ...


class VoicemailView(Protocol):
    @property
    def enabled(self) -> bool: ...

    @property
    def ring_time(self) -> int: ...


class ForwardingView(Protocol):
    @property
    def enabled(self) -> bool: ...

    @property
    def destination(self) -> str | None: ...

    @property
    def mode(self) -> str: ...  # "immediate" | "no_answer"


class CalleeView(Protocol):
    @property
    def line(self) -> LineView: ...

    @property
    def blocklist(self) -> frozenset[str]: ...

    @property
    def voicemail(self) -> VoicemailView: ...

    @property
    def forwarding(self) -> ForwardingView: ...


class Lookup(Protocol):
    """The callee's state, as the switch holds it in memory after a read barrier."""

    def callee(self, number: str) -> CalleeView | None: ...

    def has_contacts(self, number: str) -> bool: ...


# ---- the input ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as identity (switch/identity.py) established it."""

    number: str | None  # national number, when known (screening uses it even if withheld)
    subscriber: str | None = None  # the authenticated subscriber, on their own line
    trusted: bool = False  # asserted by a trusted peer
    withheld: bool = False  # the caller asked not to be shown (or gave no number)

    @property
    def presented(self) -> str | None:
        """The number the callee may see."""
        return None if self.withheld else self.number


@dataclass(frozen=True, slots=True)
class Diversion:
    """One forwarding hop: `number` forwarded the call, for `reason`."""

    number: str
    reason: DiversionReason


# ---- decisions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    outcome: Outcome = "rejected"
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Announce:
    """Early media: `prompt`, then `status` with a Reason header (a blocked caller)."""

    prompt: str
    status: int
    reason: str
    callee: str
    outcome: Outcome = "blocked"


@dataclass(frozen=True, slots=True)
class RunFlow:
    """A dial code or a public number: a voice flow answers."""

    code: str  # the number dialled
    flow: str  # the flow's name in the dial-code table (DialCodes field name)
    subscriber: str | None  # whose line the flow acts on


@dataclass(frozen=True, slots=True)
class Ring:
    """Fork to every registered phone of `callee`, for `ring_time` seconds."""

    callee: str
    ring_time: int
    diversions: tuple[Diversion, ...] = ()
    chain: tuple[str, ...] = ()  # every number the call was addressed to so far, callee last


@dataclass(frozen=True, slots=True)
class Voicemail:
    """Answer with the mailbox of `mailbox`: greeting, tone, record."""

    mailbox: str
    diversions: tuple[Diversion, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteOut:
    """A number outside our subscribers, to the configured outbound route."""

    destination: str
    diversions: tuple[Diversion, ...] = ()


Decision = Reject | Announce | RunFlow | Ring | Voicemail | RouteOut


@dataclass(slots=True)
class Router:
    codes: Mapping[str, str]  # dialled code -> flow name
    public_numbers: frozenset[str]
    max_forwarding_hops: int = 5
    reject_anonymous: bool = False
    outbound: bool = False  # a route for numbers outside our subscribers exists
    max_ring_seconds: int = 60  # ringing with nothing after it (no voicemail, no forwarding)

    def route(self, caller: Caller, dialled: str, lookup: Lookup) -> Decision:
        code = self.code_decision(caller, dialled)
        if code is not None:
            return code
        try:
            number = normalise_number(dialled)
        except ValueError:
            return Reject(404, warning="not a number or dial code we serve")
        if (caller.withheld or caller.number is None) and self.reject_anonymous:
            return Reject(433, warning="withheld numbers are not accepted")
        return self._terminate(caller, number, lookup, (), ())

    def code_decision(self, caller: Caller, dialled: str) -> Decision | None:
        """A dial code acts on the caller's own line; the public numbers answer anyone."""
        flow = self.codes.get(dialled)
        if flow is None:
            return None
        if dialled in self.public_numbers:
            return RunFlow(dialled, flow, caller.subscriber)
        if caller.subscriber is None:
            return Reject(404, warning="dial codes are for subscribers' own phones")
        return RunFlow(dialled, flow, caller.subscriber)

    def after_ring(self, caller: Caller, ring: Ring, result: RingResult,
                   lookup: Lookup) -> Decision:
        """The callee's phones did not answer, were busy or could not be reached: forwarding
        on no answer, else voicemail, else the matching status."""
        view = lookup.callee(ring.callee)
        if view is None:
            return Reject(480, outcome="unreachable")
        reason = RING_DIVERSION[result]
        forwarding = view.forwarding
        if forwarding.enabled and forwarding.destination and forwarding.mode == "no_answer":
            return self.forward(caller, ring.callee, forwarding.destination, reason, lookup,
                                ring.chain, ring.diversions)
        if view.voicemail.enabled:
            return Voicemail(ring.callee, ring.diversions)
        if result == "busy":
            return Reject(486, outcome="busy")
        return Reject(480, outcome="no_answer" if result == "no_answer" else "unreachable")

    def forward(self, caller: Caller, forwarder: str, destination: str,
                reason: DiversionReason, lookup: Lookup, chain: tuple[str, ...],
                diversions: tuple[Diversion, ...]) -> Decision:
        """One forwarding hop from `forwarder` to `destination`, loops and long chains
        stopped."""
        try:
            target = normalise_number(destination)
        except ValueError:
            return Reject(480, outcome="unreachable", warning="bad forwarding destination")
        if target in chain or target == forwarder or target == caller.number:
            return Reject(482, warning="forwarding loop")  # back to the caller counts too
        if len(diversions) >= self.max_forwarding_hops:
            return Reject(482, warning="forwarding chain too long")
        hop = (*diversions, Diversion(forwarder, reason))
        return self._terminate(caller, target, lookup, chain, hop)

    def _terminate(self, caller: Caller, number: str, lookup: Lookup,
                   chain: tuple[str, ...], diversions: tuple[Diversion, ...]) -> Decision:
        chain = (*chain, number)
        view = lookup.callee(number)
        if view is None or not view.line.is_voice:
            if self.outbound and view is None:
                return RouteOut(number, diversions)
            return Reject(404 if not diversions else 480,
                          outcome="rejected" if not diversions else "unreachable")
        blocked = screen(caller, view)
        if blocked is not None:
            return blocked
        forwarding = view.forwarding
        if forwarding.enabled and forwarding.destination and forwarding.mode == "immediate":
            return self.forward(caller, number, forwarding.destination, "unconditional",
                                lookup, chain, diversions)
        ring_time = self.ring_time(view)
        ring = Ring(number, ring_time, diversions, chain)
        if not lookup.has_contacts(number):
            return self.after_ring(caller, ring, "unreachable", lookup)
        if ring_time == 0:
            return self.after_ring(caller, ring, "no_answer", lookup)
        return ring

    def ring_time(self, view: CalleeView) -> int:
        """The callee's ring time (呼出時間) when something follows an unanswered call."""
        forwarding = view.forwarding
        if view.voicemail.enabled or (forwarding.enabled and forwarding.destination
                                      and forwarding.mode == "no_answer"):
            return view.voicemail.ring_time
        return self.max_ring_seconds


def screen(caller: Caller, view: CalleeView) -> Announce | None:
    """Nuisance-call blocking: a caller on the callee's list hears the announcement, and the
    callee's phones get no INVITE. On a type A line the paid option must be on."""
    if caller.number is None or not view.line.blocking_available:
        return None
    if caller.number not in view.blocklist:
        return None
    return Announce("blocked_call", 603, BLOCKED_REASON, view.line.number)


def history_info(original: str, diversions: Sequence[Diversion], target: str,
                 domain: str) -> list[str]:
    """RFC 7044 History-Info entries for a call to `original` forwarded along `diversions`,
    now going to `target`: each retargeted-from entry carries the Reason of its diversion,
    each retargeted-to entry the RFC 4458 `cause` and `mp` (the entry it came from)."""
    numbers = [original, *(d.number for d in diversions[1:]), target]
    entries = []
    index = "1"
    for position, number in enumerate(numbers):
        uri = f"sip:{number}@{domain}"
        tail = f";index={index}"
        if position > 0:
            uri += f";cause={HISTORY_CAUSE[diversions[position - 1].reason]}"
            tail += f";mp={index.rsplit('.', 1)[0]}"
        if position < len(diversions):
            uri += f"?Reason=SIP%3Bcause%3D{HISTORY_CAUSE[diversions[position].reason]}"
        entries.append(f"<{uri}>{tail}")
        index += ".1"
    return entries


def diversion_headers(diversions: Sequence[Diversion], domain: str) -> list[str]:
    """RFC 5806 Diversion values, the most recent diversion first."""
    return [f"<sip:{d.number}@{domain}>;reason={d.reason};counter=1"
            for d in reversed(diversions)]
