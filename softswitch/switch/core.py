"""The UAS core: what softswitch answers to each request (RFC 3261 §8.2), and where it goes.

Checks run in the order of §8.2: method (405/501), header inspection (Require -> 420),
content (415/406), then the request is processed: OPTIONS here, REGISTER by the registrar,
INVITE by the call router (switch/calls.py: the dial codes, the public numbers, calls
between subscribers), in-dialog requests, ACKs, responses, CANCELs and timeouts by the owner
of their dialog or transaction (switch/owners.py), in one lookup.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..sip.events import CancelReceived, Event, Peer, RequestReceived
from ..sip.headers import HeaderError
from ..sip.message import Request, Response, make_response
from ..sip.transaction import ServerTransaction
from .owners import Owners
from .registrar import Registrar

log = logging.getLogger(__name__)

# What we implement; Allow lists these. Other methods RFC 3261 and its extensions define
# get 405 (known, not allowed here); anything else gets 501 (§8.2.1).
ALLOWED = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE")
KNOWN_NOT_ALLOWED = frozenset(("SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "PRACK"))
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
ACCEPT = "application/sdp"


class Responder(Protocol):
    """What the core needs from the transport shell: answer a server transaction now."""

    def respond(self, transaction: ServerTransaction, response: Response) -> None: ...

    def respond_statelessly(self, transaction: ServerTransaction, response: Response) -> None:
        ...


class InviteHandler(Protocol):
    """Where a new INVITE goes (switch/calls.py): it answers the transaction, now or later."""

    def invite(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None: ...


class SwitchCore:
    def __init__(self, *, registrar: Registrar, responder: Responder, server_name: str,
                 owners: Owners, invites: InviteHandler | None = None) -> None:
        self.registrar = registrar
        self.responder = responder
        self.server_name = server_name
        self.owners = owners
        self.invites = invites

    def handle(self, event: Event) -> None:
        """Called by the transport shell for each endpoint event, in arrival order."""
        try:
            self._dispatch(event)
        except Exception:
            log.exception("handling %s failed", type(event).__name__)
            if isinstance(event, RequestReceived) and event.transaction is not None:
                self._fail(event.transaction)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif self.owners.dispatch(event):
            return
        elif isinstance(event, CancelReceived):
            self._answer(event.transaction, make_response(
                event.transaction.request, 487, to_tag=event.transaction.to_tag))
        else:
            log.debug("unclaimed %s", type(event).__name__)

    def _on_request(self, event: RequestReceived) -> None:
        request, transaction = event.request, event.transaction
        if transaction is None:  # an ACK to a 2xx: belongs to a call, or to nobody
            self.owners.dispatch(event)
            return
        method = request.method
        if method == "ACK":
            return
        if method not in ALLOWED:
            status = 405 if method in KNOWN_NOT_ALLOWED else 501
            self._reply(transaction, request, status, [("allow", ", ".join(ALLOWED))])
            return
        unsupported = [o for o in request.values("require") if o and o not in
                       SUPPORTED_EXTENSIONS]
        if unsupported and method != "CANCEL":
            self._reply(transaction, request, 420, [("unsupported", ", ".join(unsupported))])
            return
        if method == "OPTIONS":
            self._reply(transaction, request, 200, [
                ("allow", ", ".join(ALLOWED)), ("accept", ACCEPT),
                ("accept-language", "ja, en"), ("supported", "")])
        elif method == "REGISTER":
            self._register(request, transaction, event.peer)
        elif method == "INVITE" and not _in_dialog(request):
            self._on_invite(request, transaction, event.peer)
        elif not self.owners.dispatch(event):
            self._reply(transaction, request, 481)

    def _on_invite(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None:
        content_type = request.content_type
        if request.body and content_type != ACCEPT:
            self._reply(transaction, request, 415, [("accept", ACCEPT)])
            return
        accept = [a.split(";", 1)[0].strip().lower() for a in request.values("accept")]
        if accept and not any(a in (ACCEPT, "application/*", "*/*") for a in accept):
            self._reply(transaction, request, 406, [("accept", ACCEPT)])
            return
        if self.invites is None:
            self._reply(transaction, request, 480)
            return
        self.invites.invite(request, transaction, peer)

    def _register(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None:
        try:
            self.registrar.register(request, peer, transaction.to_tag,
                                    lambda response: self._answer(transaction, response))
        except Exception:
            log.exception("REGISTER failed")
            self._fail(transaction)

    def _reply(self, transaction: ServerTransaction, request: Request, status: int,
               headers: list[tuple[str, str]] | None = None) -> None:
        self._answer(transaction, make_response(request, status, to_tag=transaction.to_tag,
                                                headers=headers))

    def _answer(self, transaction: ServerTransaction, response: Response) -> None:
        response.add("server", self.server_name)
        if response.status == 401 and transaction.method != "INVITE":
            self.responder.respond_statelessly(transaction, response)  # a challenge
        else:
            self.responder.respond(transaction, response)

    def _fail(self, transaction: ServerTransaction) -> None:
        """A request we failed to handle still gets a final answer (never a silent hang)."""
        if not transaction.answered:
            self._answer(transaction, make_response(transaction.request, 500,
                                                    to_tag=transaction.to_tag))


def _in_dialog(request: Request) -> bool:
    try:
        to = request.to
    except HeaderError:
        return False
    return to is not None and to.tag is not None
