"""Who is calling (issue 9 item 2; DESIGN.md "Caller identity").

- A trusted peer (`sip.trusted_peers`: a carrier interconnect, the load balancer in front of
  us) asserts the caller: P-Asserted-Identity, else From, normalised to national format
  (`+8190…` -> `090…`). It is not challenged. Only a caller asserted by a peer that
  authenticates our phones itself (`sip.subscriber_peers`) is on their own line, so that the
  dial codes work behind a load balancer: an interconnect's caller ID can be spoofed by
  anyone on the PSTN, and must not open a subscriber's mailbox or settings.
- Anyone else calling a subscriber or a dial code is challenged (407, the same digest
  credentials and defences as REGISTER: switch/auth.py), and the From must be the
  subscriber who authenticated (403 otherwise).
- Anyone may call the public numbers (`sip.public_numbers`: remote access, DTMF test)
  without credentials: such a caller is unverified and only its signalling address is
  known to be real (once it ACKs). An address banned for failed authentications is refused
  there too (403): it is not to guess PINs at the remote-access number instead.

A withheld number (an anonymous From, `Privacy: id`) is presented to the callee as
anonymous; the router applies `calls.anonymous_callers` to it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..numbering import normalise_number
from ..sip.events import Peer
from ..sip.headers import HeaderError, parse_name_addr
from ..sip.message import Request
from ..sip.uri import SipUri, TelUri, Uri
from .auth import Authenticated, Rejected
from .router import Caller

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ANONYMOUS_USERS = frozenset(("anonymous", "unknown", "restricted", "unavailable"))


class Authenticator(Protocol):
    def authenticate(self, request: Request, peer: Peer, *, proxy: bool,
                     expected_number: str | None) -> Authenticated | Rejected: ...

    def refuse_if_banned(self, request: Request, peer: Peer) -> Rejected | None: ...


@dataclass(slots=True, frozen=True)
class Identified:
    caller: Caller
    verified: bool  # authenticated, or asserted by a trusted peer


class CallerIdentity:
    def __init__(self, *, trusted_peers: Iterable[Network], authenticator: Authenticator,
                 public_numbers: frozenset[str],
                 subscriber_peers: Iterable[Network] = ()) -> None:
        self.subscriber_peers = tuple(subscriber_peers)
        self.trusted_peers = tuple(trusted_peers) + self.subscriber_peers
        self.authenticator = authenticator
        self.public_numbers = public_numbers

    def trusted(self, peer: Peer) -> bool:
        return _among(peer, self.trusted_peers)

    def identify(self, request: Request, peer: Peer, dialled: str) -> Identified | Rejected:
        if self.trusted(peer):
            on_own_line = _among(peer, self.subscriber_peers)
            return Identified(asserted_caller(request, on_own_line=on_own_line), verified=True)
        if dialled in self.public_numbers:
            # a guesser is no public caller: not at the remote-access number either
            if (refused := self.authenticator.refuse_if_banned(request, peer)) is not None:
                return refused
            number, withheld = _number_of(_from_uri(request))
            return Identified(Caller(number, withheld=withheld), verified=False)
        from_number, _ = _number_of(_from_uri(request))
        result = self.authenticator.authenticate(request, peer, proxy=True,
                                                 expected_number=from_number or "")
        if isinstance(result, Rejected):
            return result
        return Identified(Caller(result.number, subscriber=result.number), verified=True)


def _among(peer: Peer, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(peer.host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


def asserted_caller(request: Request, *, on_own_line: bool) -> Caller:
    """The caller a trusted peer asserts: P-Asserted-Identity (RFC 3325), else From; the
    subscriber on their own line only if `on_own_line` (the peer authenticated them)."""
    withheld = any(value.strip().lower() == "id" for value in request.values("privacy"))
    for value in request.values("p-asserted-identity"):
        try:
            uri = parse_name_addr(value).uri
        except HeaderError:
            continue
        number, anonymous = _number_of(uri)
        if number is not None:
            return Caller(number, subscriber=number if on_own_line else None, trusted=True,
                          withheld=withheld or anonymous)
    number, anonymous = _number_of(_from_uri(request))
    return Caller(number, subscriber=number if on_own_line else None, trusted=True,
                  withheld=withheld or anonymous)


def _from_uri(request: Request) -> Uri | None:
    try:
        from_ = request.from_
    except HeaderError:
        return None
    return None if from_ is None else from_.uri


def _number_of(uri: Uri | None) -> tuple[str | None, bool]:
    """(national number, anonymous) of a From or P-Asserted-Identity URI."""
    if isinstance(uri, SipUri):
        user = uri.user_text or ""
    elif isinstance(uri, TelUri):
        user = uri.number
    else:
        return None, False
    if user.lower() in ANONYMOUS_USERS or (isinstance(uri, SipUri)
                                           and uri.host.lower() == "anonymous.invalid"):
        return None, True
    try:
        return normalise_number(user), False
    except ValueError:
        return None, False
