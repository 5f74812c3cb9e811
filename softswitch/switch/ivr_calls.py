"""Calls softswitch answers itself and runs a voice flow on: dial codes, the remote-access and
DTMF test numbers, voicemail, the announcement a blocked caller hears.

The router decides that a call is ours and which flow runs; `IvrCalls.answer` takes the
caller's INVITE (as an `InviteSession`, fresh or already ringing) and carries it out:

- the SDP offer is checked and answered (RFC 3264; 488 when we share no codec or the offer
  names a destination we never send to), an RTP port is taken, the 2xx is sent;
- nothing is sent on the port before the ACK: a spoofed INVITE gets one 2xx (retransmitted
  to its source), never a media stream; the flow starts with the ACK;
- no ACK (the endpoint's timer L): the call ends and the port is freed, with a BYE only to a
  caller who authenticated — an unverified source gets nothing more;
- in the call: BYE ends it, INFO carries DTMF (merged with the RTP keys: one press counts
  once), a re-INVITE changes the media (hold: we stop sending), and when the flow is done we
  send BYE. Our in-dialog requests go to where the caller's requests come from (its NAT
  binding, or its TCP connection), never to a host only its Contact names.

`IvrCalls.announce` is the early-media variant: 183 with SDP, one prompt, then a final
failure (a blocked caller hears "おかけになった電話番号への通話は、おつなぎできません。" and
gets 603 Decline). Each call is the owner (switch/owners.py) of its dialog and its INVITE
transaction; CANCEL reaches it through the INVITE transaction.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import ListenAddress
from ..ivr.runtime import Call, CallEnded
from ..media.dtmf import parse_info_dtmf
from ..media.g711 import Codec
from ..media.prompts import PromptLibrary
from ..media.session import RtpSession
from ..net.rtp import MediaStream, RtpEngine
from ..sip.events import (
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.invite_session import InviteSession, SessionState
from ..sip.message import Request, Response, make_response
from ..sip.sdp import (
    DestinationRefused,
    NegotiatedAudio,
    SdpError,
    SessionDescription,
    answer_audio,
    build_sdp,
    check_offer_destinations,
    negotiated_audio,
    parse_sdp,
)
from ..sip.transaction import ClientTransaction, ServerTransaction
from .admission import Admission
from .owners import Owners

log = logging.getLogger(__name__)

Flow = Callable[[Call], Coroutine[Any, Any, None]]
DTMF_INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
CODECS = ("PCMU", "PCMA")  # what we answer with, in the offerer's order of preference
UNSPECIFIED_HOSTS = frozenset(("0.0.0.0", "::"))
ALLOWED = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"


class SipSender(Protocol):
    """What calls need from the SIP stack (net.transports.SipStack)."""

    def respond(self, transaction: ServerTransaction, response: Response) -> None: ...

    def send_request(self, request: Request, peer: Peer) -> ClientTransaction: ...

    def send_stateless(self, message: Request | Response, peer: Peer) -> None: ...

    def respond_statelessly(self, transaction: ServerTransaction,
                            response: Response) -> None: ...


@dataclass(slots=True, frozen=True)
class CallParty:
    """Who is on the line, as the router established it."""

    caller: str  # the caller's number as we present it ("" when withheld or unknown)
    subscriber: str | None  # the authenticated subscriber calling from their own line
    called: str  # the dialled number or code
    verified: bool  # the source proved itself (digest, or a trusted peer)


class IvrCalls:
    """Answers calls with voice flows; owns their RTP ports and flow tasks."""

    def __init__(self, *, sip: SipSender, owners: Owners, media: RtpEngine,
                 prompts: PromptLibrary, server_name: str, media_host: str) -> None:
        self.sip = sip
        self.owners = owners
        self.media = media
        self.prompts = prompts
        self.server_name = server_name
        self.media_host = media_host  # the address we bind RTP on
        self.sip_addresses: dict[str, ListenAddress] = {}  # transport -> where we listen
        self.calls: set[IvrCall] = set()
        self.flows: set[asyncio.Task[None]] = set()
        self.byes: dict[ClientTransaction, str] = {}
        self._session_ids = secrets.randbits(31)

    def listening(self, bound: Iterable[tuple[str, ListenAddress]]) -> None:
        """Where the SIP stack listens, once bound: our Contact in dialogs."""
        for transport, address in bound:
            self.sip_addresses.setdefault(transport, address)

    def counters(self) -> dict[str, int]:
        return {"calls": len(self.calls), "flows": len(self.flows),
                "rtp_ports": self.media.ports_in_use, "byes": len(self.byes)}

    # ---- starting a call --------------------------------------------------------------------
    def contact(self, user: str, peer: Peer) -> str:
        address = self.sip_addresses.get(peer.transport) or next(
            iter(self.sip_addresses.values()), ListenAddress(self.media_host, 5060))
        transport = "" if peer.transport == "udp" else f";transport={peer.transport}"
        return f"<sip:{user}@{address}{transport}>"

    def session_for(self, request: Request, transaction: ServerTransaction,
                    peer: Peer, user: str) -> InviteSession:
        """A UAS session for an INVITE nobody has answered yet."""
        return InviteSession.incoming(request, transaction.to_tag, self.contact(user, peer))

    def answer(self, session: InviteSession, transaction: ServerTransaction, peer: Peer,
               party: CallParty, flow: Flow, admission: Admission | None = None,
               on_end: Callable[[], None] | None = None) -> None:
        """Answer the caller with our media and run `flow` once the ACK is in; `on_end` is
        told when the call is over, however it ended."""
        self._start(session, transaction, peer, party, flow, admission, None, on_end)

    def announce(self, session: InviteSession, transaction: ServerTransaction, peer: Peer,
                 party: CallParty, prompt: str, status: int, reason: str,
                 admission: Admission | None = None,
                 on_end: Callable[[], None] | None = None) -> None:
        """Early media: 183 with our SDP, `prompt` once, then `status` with a Reason header
        (RFC 3326) — or the final answer at once when the caller offered no SDP."""

        async def say(call: Call) -> None:
            await call.play(prompt)

        final = (status, reason)
        if not session.remote_sdp:
            self.reply(transaction, session.reject(status, headers=[("reason", reason)]))
            if admission is not None:
                admission.release()
            if on_end is not None:
                on_end()
            return
        self._start(session, transaction, peer, party, say, admission, final, on_end)

    def _start(self, session: InviteSession, transaction: ServerTransaction, peer: Peer,
               party: CallParty, flow: Flow, admission: Admission | None,
               early: tuple[int, str] | None, on_end: Callable[[], None] | None) -> None:
        def refuse(status: int, warning: str, *, code: int = 399,
                   headers: Iterable[tuple[str, str]] = ()) -> None:
            self.reply(transaction, session.reject(status, headers=[
                *headers, ("warning", _warning(warning, code))]))
            if admission is not None:
                admission.release()
            if on_end is not None:
                on_end()

        if not session.remote_sdp:
            refuse(488, "an SDP offer in the INVITE is required")
            return
        try:
            offer = parse_sdp(session.remote_sdp)
        except SdpError as error:
            refuse(400, f"bad SDP: {error}")
            return
        try:
            check_offer_destinations(offer, initial=True, signalling_host=peer.host)
        except DestinationRefused as refused:
            refuse(488, str(refused), code=refused.warning_code)
            return
        stream = self.media.open_stream()
        if stream is None:
            refuse(503, "no media port free", headers=[("retry-after", "10")])
            return
        self._session_ids += 1
        answer = answer_audio(offer, self._advertised_host(peer), stream.port, CODECS,
                              session_id=self._session_ids, session_version=1)
        if answer is None:
            stream.close()
            refuse(488, "no common codec (PCMU, PCMA)", code=305)
            return
        try:
            negotiated = negotiated_audio(offer, answer)
        except SdpError as error:
            stream.close()
            refuse(488, str(error))
            return
        answer_sdp = build_sdp(answer)
        call = IvrCall(self, session, transaction, peer, party, flow, stream, negotiated,
                       answer, admission, early, on_end)
        self.calls.add(call)
        self.owners.claim_invite(transaction, call)
        if early is not None:
            self.reply(transaction, session.provisional(183, body=answer_sdp))
            call.claim_dialog()
            call.start_media()  # early media: what this answer is for
            call.start_flow()
        else:
            self.reply(transaction, session.accept(body=answer_sdp, headers=[
                ("allow", ALLOWED)]))
            call.claim_dialog()
        log.info("call %s answered: %s, port %d", call.label,
                 f"{negotiated.codec}{'+events' if negotiated.telephone_event else ''}",
                 stream.port)

    # ---- shared helpers ---------------------------------------------------------------------
    def reply(self, transaction: ServerTransaction, response: Response, *,
              stateless: bool = False) -> None:
        response.add("server", self.server_name)
        if stateless:
            self.sip.respond_statelessly(transaction, response)
        else:
            self.sip.respond(transaction, response)

    def respond(self, transaction: ServerTransaction, status: int, *, body: bytes = b"",
                contact: str | None = None, headers: Iterable[tuple[str, str]] = (),
                warning: str | None = None, code: int = 399) -> None:
        extra = list(headers)
        if contact is not None:
            extra.append(("contact", contact))
        if warning is not None:
            extra.append(("warning", _warning(warning, code)))
        if body:
            extra.append(("content-type", "application/sdp"))
        self.reply(transaction, make_response(transaction.request, status,
                                              to_tag=transaction.to_tag, headers=extra,
                                              body=body))

    async def close(self) -> None:
        """Shutdown: every call gets BYE (or its final answer), every flow is cancelled."""
        for call in list(self.calls):
            call.end("server shutting down", notify=True)
        if self.flows:
            await asyncio.wait(list(self.flows), timeout=2.0)
        self.media.close()

    def _advertised_host(self, peer: Peer) -> str:
        """The address the caller sends RTP to: where we bind, or, bound to every address,
        the one the system routes to the caller from."""
        if self.media_host not in UNSPECIFIED_HOSTS:
            return self.media_host
        family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((peer.host.strip("[]"), peer.port or 9))  # sends nothing
                host: str = probe.getsockname()[0]
            except OSError:
                host = "127.0.0.1" if family == socket.AF_INET else "::1"
        return host


class IvrCall:
    """One call answered by a flow: its session, port, flow task; the owner of its dialog."""

    def __init__(self, calls: IvrCalls, session: InviteSession, invite: ServerTransaction,
                 peer: Peer, party: CallParty, flow: Flow, stream: MediaStream,
                 negotiated: NegotiatedAudio, answer: SessionDescription,
                 admission: Admission | None, early: tuple[int, str] | None,
                 on_end: Callable[[], None] | None) -> None:
        self.calls = calls
        self.session = session
        self.invite = invite
        self.peer = peer  # where the caller's requests last came from
        self.party = party
        self.flow = flow
        self.stream = stream
        self.negotiated = negotiated
        self.answer = answer
        self.answer_sdp = build_sdp(answer)
        self.admission = admission
        self.early = early  # (status, Reason) to end an announcement with
        self.on_end = on_end
        self.label = f"{session.call_id} to {party.called}"
        self.task: asyncio.Task[None] | None = None
        self.ended = False
        codec = Codec(negotiated.codec)
        rtp = RtpSession(secrets.randbits(32), negotiated.payload_type,
                         negotiated.telephone_event, _remote(negotiated), codec=codec,
                         signalling_host=peer.host)
        self.call = Call(stream, calls.prompts,
                         on_hangup=lambda: self.end("flow hung up", notify=True),
                         caller=party.caller, called=party.called,
                         subscriber=party.subscriber, source=peer.source)
        self.rtp = rtp

    def claim_dialog(self) -> None:
        assert self.session.id is not None
        self.calls.owners.claim_dialog(self.session.id, self)

    def start_media(self) -> None:
        self.stream.start(self.rtp, Codec(self.negotiated.codec),
                          sending=self.negotiated.sends, call_id=self.session.call_id)
        self.stream.on_digit = self.call.digit_received

    def start_flow(self) -> None:
        if self.task is not None or self.ended:
            return
        task = asyncio.get_running_loop().create_task(self.flow(self.call))
        self.task = task
        self.calls.flows.add(task)
        task.add_done_callback(self._flow_done)

    # ---- events (Owner) ---------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, CancelReceived):
            if not self.invite.answered:
                self.calls.reply(self.invite, self.session.reject(487))
                self.end("caller cancelled", notify=False)
        elif isinstance(event, TransactionTimedOut):
            self._timed_out(event.transaction)
        elif isinstance(event, ResponseReceived):
            self._response(event.response, event.transaction)

    def _request(self, event: RequestReceived) -> None:
        request, transaction = event.request, event.transaction
        if transaction is None:  # the ACK of our 2xx
            if request.method == "ACK" and self.session.acked():
                self.peer = event.peer
                if self.admission is not None:
                    self.admission.confirmed()
                self.start_media()
                self.start_flow()
            return
        status = self.session.receive_request(request)
        if status is not None:
            self.calls.respond(transaction, status, headers=[("retry-after", "1")],
                               warning="CSeq out of order")
            return
        self.peer = event.peer
        method = request.method
        if method == "BYE":
            self.calls.respond(transaction, 200)
            self.end("caller hung up", notify=False)
        elif method == "INFO":
            self._info(request, transaction)
        elif method == "INVITE":
            self._reinvite(request, transaction)
        else:
            self.calls.respond(transaction, 405, headers=[("allow", ALLOWED)])

    def _info(self, request: Request, transaction: ServerTransaction) -> None:
        content_type = request.content_type
        if content_type in DTMF_INFO_TYPES:
            digit = parse_info_dtmf(content_type, request.body)
            if digit is None:
                self.calls.respond(transaction, 400, warning="no DTMF signal in the body")
                return
            self.calls.respond(transaction, 200)
            self.stream.info_digit(digit)
        elif not request.body:
            self.calls.respond(transaction, 200)  # an empty INFO: a keepalive
        else:
            self.calls.respond(transaction, 415, headers=[("accept", ", ".join(
                DTMF_INFO_TYPES))])

    def _reinvite(self, request: Request, transaction: ServerTransaction) -> None:
        contact = self.session.local_contact
        if not request.body:
            # RFC 6337 §5.3: an offerless re-INVITE gets our current SDP as the offer
            self.calls.respond(transaction, 200, body=self.answer_sdp, contact=contact)
            return
        try:
            offer = parse_sdp(request.body)
        except SdpError as error:
            self.calls.respond(transaction, 400, warning=f"bad SDP: {error}")
            return
        try:
            check_offer_destinations(offer, initial=False, signalling_host=self.peer.host)
        except DestinationRefused as refused:
            self.calls.respond(transaction, 488, warning=str(refused),
                               code=refused.warning_code)
            return
        origin = self.answer.origin
        answer = answer_audio(offer, origin.address, self.stream.port,
                              (self.stream.codec.value,), session_id=origin.sess_id,
                              session_version=origin.sess_version)
        if answer is None:
            self.calls.respond(transaction, 488, code=305,
                               warning=f"the call stays on {self.stream.codec}")
            return
        try:
            negotiated = negotiated_audio(offer, answer)
        except SdpError as error:
            self.calls.respond(transaction, 488, warning=str(error))
            return
        answer_sdp = build_sdp(answer)
        if answer_sdp != self.answer_sdp:  # RFC 3264 §8: a changed description, a new version
            answer.origin.sess_version += 1
            answer_sdp = build_sdp(answer)
            self.answer, self.answer_sdp = answer, answer_sdp
        self.stream.update(_remote(negotiated), sending=negotiated.sends)
        self.calls.respond(transaction, 200, body=answer_sdp, contact=contact)
        log.info("call %s: re-INVITE, we %s", self.label, negotiated.direction)

    def _response(self, response: Response, transaction: ClientTransaction) -> None:
        if response.status >= 200:
            self.calls.byes.pop(transaction, None)
            self.calls.owners.release_client(transaction, self)
            log.debug("call %s: BYE answered %d", self.label, response.status)

    def _timed_out(self, transaction: ClientTransaction | ServerTransaction) -> None:
        if isinstance(transaction, ClientTransaction):
            self.calls.byes.pop(transaction, None)
            self.calls.owners.release_client(transaction, self)
            log.info("call %s: BYE got no answer", self.label)
        elif transaction is self.invite:
            # No ACK for our 2xx: a caller who never proved its address gets no BYE.
            self.end("no ACK for our 200", notify=self.party.verified)

    # ---- ending -----------------------------------------------------------------------------
    def _flow_done(self, task: asyncio.Task[None]) -> None:
        self.calls.flows.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None and not isinstance(error, CallEnded):
                log.error("flow of call %s failed", self.label, exc_info=error)
        if not self.ended:
            self.end("flow ended", notify=True)
        else:
            self._log_counters()

    def end(self, reason: str, *, notify: bool) -> None:
        """End the call once: stop the flow, free the port, and with `notify` tell the
        caller (BYE, or the announcement's final answer)."""
        if self.ended:
            return
        self.ended = True
        calls = self.calls
        calls.calls.discard(self)
        calls.owners.release_dialog(self.session.id, self)
        calls.owners.release_invite(self.invite, self)
        self.call.end()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self.stream.close()
        if self.admission is not None:
            self.admission.release()
        if notify:
            self._notify()
        else:
            self.session.end()
        log.info("call %s ended: %s", self.label, reason)
        if self.on_end is not None:
            self.on_end()
        if task is None or task.done():
            self._log_counters()

    def _notify(self) -> None:
        if self.session.state in (SessionState.INCOMING, SessionState.EARLY):
            status, reason = self.early or (480, "")
            headers = [("reason", reason)] if reason else []
            self.calls.reply(self.invite, self.session.reject(status, headers=headers))
            return
        bye = self.session.bye(headers=[("user-agent", self.calls.server_name)])
        if bye is None:
            return
        try:
            transaction = self.calls.sip.send_request(bye, self.peer)
        except (ValueError, OSError) as error:
            log.warning("call %s: BYE not sent: %s", self.label, error)
            return
        self.calls.byes[transaction] = self.label
        self.calls.owners.claim_client(transaction, self)

    def _log_counters(self) -> None:
        if log.isEnabledFor(logging.DEBUG):  # the counters are counted only to be shown
            log.debug("call %s over; active %s", self.label, self.calls.counters())


def _remote(negotiated: NegotiatedAudio) -> tuple[str, int] | None:
    """Where the SDP says to send RTP; None on hold (0.0.0.0) or without a port."""
    if negotiated.remote_port == 0 or negotiated.remote_address in UNSPECIFIED_HOSTS:
        return None
    return (negotiated.remote_address, negotiated.remote_port)


def _warning(text: str, code: int = 399) -> str:
    return f'{code} softswitch "{text.replace(chr(92), "").replace(chr(34), chr(39))}"'
