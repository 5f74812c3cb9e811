"""Where a new INVITE goes: who is calling, what was dialled, and who carries the call out.

The core hands every INVITE outside a dialog to `CallRouter.invite`. It admits the call
against the per-source limits (switch/admission.py) and, for a number a flow answers (the
public numbers, until the dial codes are reached by authenticated subscribers), hands it to
the IVR-call runner (switch/ivr_calls.py). Every other number gets the same answer whether
or not it is a subscriber's, so that an unauthenticated scanner learns nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..sip.events import Peer
from ..sip.headers import HeaderError
from ..sip.message import Request, make_response
from ..sip.transaction import ServerTransaction
from ..sip.uri import SipUri, UriError
from .admission import CallAdmission
from .ivr_calls import CallParty, Flow, IvrCalls

log = logging.getLogger(__name__)


class CallRouter:
    def __init__(self, *, ivr: IvrCalls, flows: Mapping[str, Flow],
                 public_numbers: frozenset[str], admission: CallAdmission) -> None:
        self.ivr = ivr
        self.flows = dict(flows)
        self.public_numbers = public_numbers
        self.admission = admission

    def invite(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None:
        dialled = request_user(request)
        flow = self.flows.get(dialled)
        if flow is None or dialled not in self.public_numbers:
            self.ivr.reply(transaction, make_response(request, 404, to_tag=transaction.to_tag))
            return
        admission = self.admission.admit(peer, authenticated=False)
        if admission is None:
            self.ivr.respond(transaction, 503, headers=[("retry-after", "30")],
                             warning="too many calls from your address")
            return
        session = self.ivr.session_for(request, transaction, peer, dialled)
        party = CallParty(caller=from_user(request), subscriber=None, called=dialled,
                          verified=False)
        self.ivr.answer(session, transaction, peer, party, flow, admission)


def request_user(request: Request) -> str:
    try:
        uri = request.request_uri
    except UriError:
        return ""
    return (uri.user_text or "") if isinstance(uri, SipUri) else ""


def from_user(request: Request) -> str:
    try:
        from_ = request.from_
    except HeaderError:
        return ""
    uri = None if from_ is None else from_.uri
    return (uri.user_text or "") if isinstance(uri, SipUri) else ""
