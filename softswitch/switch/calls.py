"""Calls softswitch answers itself: INVITEs to dial codes, each running a voice flow.

The core hands us every INVITE (`invite`) and every event that may belong to a call
(`in_dialog`). An INVITE to a code with a flow is answered 200 with the SDP answer (RFC 3264,
`sip.sdp.answer_audio`; 488 when we share no codec), the flow starts when the ACK comes, and
the call ends by BYE from either side. Everything else is `unanswered_status`'s, until call
routing takes over.

We answer an INVITE as soon as its task runs, without 180, so a CANCEL finds it unanswered
only when it overtook that task (both read in one go): then no call exists yet, the core
answers the INVITE 487, and `invite` sees the transaction answered and does nothing. A 2xx is
never sent to a CANCELed INVITE.

In a call:
- ACK of our 2xx: the flow starts. No ACK (TransactionTimedOut): BYE, end.
- BYE: 200, the flow is cancelled, the port freed.
- INFO application/dtmf-relay or application/dtmf: 200, the key goes to the call (merged with
  the RTP session's keys, so a press sent both ways counts once).
- re-INVITE: answered with the same codec and the direction RFC 3264 gives (hold: recvonly,
  we stop sending), the call goes on; 488 if the new offer drops our codec.
- The flow ends (or hangs up): BYE to the remote target; behind NAT, to where the caller's
  requests come from.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..config import Config, ListenAddress
from ..ivr.dtmf_test import dtmf_test
from ..ivr.runtime import Call, CallEnded
from ..media.dtmf import parse_info_dtmf
from ..media.g711 import Codec
from ..media.prompts import PromptLibrary
from ..media.session import RtpSession
from ..net.rtp import MediaStream, RtpEngine
from ..numbering import normalise_number
from ..sip.dialog import Dialog, incoming_dialog_id
from ..sip.events import (
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.headers import HeaderError
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
from ..sip.uri import SipUri, UriError, parse_uri
from .core import ALLOWED

log = logging.getLogger(__name__)

Flow = Callable[[Call], Coroutine[Any, Any, None]]
DTMF_INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
CODECS = ("PCMU", "PCMA")  # what we answer with, in the offerer's order of preference
_UNSPECIFIED_HOSTS = frozenset(("0.0.0.0", "::"))


class SipSender(Protocol):
    """What calls need from the SIP stack (net.transports.SipStack)."""

    def respond(self, transaction: ServerTransaction, response: Response) -> None: ...

    def send_request(self, request: Request, peer: Peer) -> ClientTransaction: ...


def unanswered_status(number: str, subscribers: Collection[str]) -> int:
    """The answer to an INVITE for a number no flow answers. Until call routing exists:
    480 for a provisioned subscriber (known, not reachable yet), else 404."""
    try:
        national = normalise_number(number)
    except ValueError:
        return 404
    return 480 if national in subscribers else 404


@dataclass(slots=True, eq=False)
class _Leg:
    """One answered call: SIP dialog, media stream, flow."""

    dialog: Dialog
    invite: ServerTransaction
    peer: Peer  # where the caller's requests last came from
    behind_nat: bool
    stream: MediaStream
    call: Call
    flow: Flow
    answer: SessionDescription
    answer_sdp: bytes
    label: str  # for the log: Call-ID and number
    task: asyncio.Task[None] | None = None
    ended: bool = False


class CallHandler:
    """The DialogHandler of SwitchCore for calls answered by voice flows."""

    def __init__(self, *, sip: SipSender, media: RtpEngine, prompts: PromptLibrary,
                 flows: Mapping[str, Flow], subscribers: Collection[str], server_name: str,
                 media_host: str) -> None:
        self.sip = sip
        self.media = media
        self.prompts = prompts
        self.flows = dict(flows)
        self.subscribers = frozenset(subscribers)
        self.server_name = server_name
        self.media_host = media_host  # the address we bind RTP on
        self.sip_addresses: dict[str, ListenAddress] = {}  # transport -> where we listen
        self._calls: dict[tuple[str, str, str], _Leg] = {}
        self._by_invite: dict[ServerTransaction, _Leg] = {}
        self._byes: dict[ClientTransaction, str] = {}
        self._flows: set[asyncio.Task[None]] = set()
        self._session_ids = secrets.randbits(31)

    def listening(self, bound: Iterable[tuple[str, ListenAddress]]) -> None:
        """Where the SIP stack listens, once bound: our Contact in dialogs."""
        for transport, address in bound:
            self.sip_addresses.setdefault(transport, address)

    # ---- counters (leak checks) -------------------------------------------------------------
    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def active_flows(self) -> int:
        return len(self._flows)

    @property
    def rtp_ports_in_use(self) -> int:
        return self.media.ports_in_use

    @property
    def pending_byes(self) -> int:
        return len(self._byes)

    def counters(self) -> dict[str, int]:
        return {"calls": self.active_calls, "flows": self.active_flows,
                "rtp_ports": self.rtp_ports_in_use, "byes": self.pending_byes}

    # ---- DialogHandler ----------------------------------------------------------------------
    async def invite(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None:
        if transaction.answered:
            return  # CANCELed (answered 487) before this task ran
        number = _request_user(request)
        flow = self.flows.get(number)
        if flow is None:
            self._reply(transaction, unanswered_status(number, self.subscribers))
            return
        self._answer_flow(request, transaction, peer, number, flow)

    def in_dialog(self, event: Event) -> bool:
        if isinstance(event, RequestReceived):
            return self._request(event)
        if isinstance(event, ResponseReceived):
            return self._response(event.response, event.transaction)
        if isinstance(event, TransactionTimedOut):
            return self._timed_out(event.transaction)
        return False  # CancelReceived: see the module doc

    async def close(self) -> None:
        """Shutdown: every call gets BYE, every flow is cancelled, every port freed."""
        for leg in list(self._calls.values()):
            self._end(leg, "server shutting down", send_bye=True)
        flows = list(self._flows)
        if flows:
            await asyncio.wait(flows, timeout=2.0)
        self.media.close()

    # ---- answering --------------------------------------------------------------------------
    def _answer_flow(self, request: Request, transaction: ServerTransaction, peer: Peer,
                     number: str, flow: Flow) -> None:
        if not request.body:
            self._reply(transaction, 488, warning="an SDP offer in the INVITE is required")
            return
        try:
            offer = parse_sdp(request.body)
        except SdpError as error:
            self._reply(transaction, 400, warning=f"bad SDP: {error}")
            return
        try:
            check_offer_destinations(offer, initial=True, signalling_host=peer.host)
        except DestinationRefused as refused:
            self._reply(transaction, 488, warning=str(refused), code=refused.warning_code)
            return
        stream = self.media.open_stream()
        if stream is None:
            self._reply(transaction, 503, headers=[("retry-after", "10")],
                        warning="no media port free")
            return
        self._session_ids += 1
        host = self._advertised_host(peer)
        answer = answer_audio(offer, host, stream.port, CODECS,
                              session_id=self._session_ids, session_version=1)
        if answer is None:
            stream.close()
            self._reply(transaction, 488, warning="no common codec (PCMU, PCMA)", code=305)
            return
        try:
            negotiated = negotiated_audio(offer, answer)
            dialog = Dialog.as_uas(request, transaction.to_tag, self._contact(number, peer))
        except (SdpError, ValueError, HeaderError) as error:
            stream.close()
            self._reply(transaction, 400, warning=str(error))
            return
        codec = Codec(negotiated.codec)
        session = RtpSession(secrets.randbits(32), negotiated.payload_type,
                             negotiated.telephone_event, _remote(negotiated), codec=codec,
                             signalling_host=peer.host)
        stream.start(session, codec, sending=negotiated.sends, call_id=dialog.call_id)
        leg: _Leg
        call = Call(stream, self.prompts, on_hangup=lambda: self._end(leg, "flow hung up"),
                    caller=_from_user(request), called=number)
        stream.on_digit = call.digit_received
        answer_sdp = build_sdp(answer)
        leg = _Leg(dialog, transaction, peer, _behind_nat(request), stream, call, flow,
                   answer, answer_sdp, f"{dialog.call_id} to {number}")
        self._calls[dialog.id] = leg
        self._by_invite[transaction] = leg
        self._reply(transaction, 200, body=answer_sdp, contact=dialog.local_contact)
        log.info("call %s answered: %s, port %d", leg.label,
                 f"{negotiated.codec}{'+events' if negotiated.telephone_event else ''}",
                 stream.port)

    def _start_flow(self, leg: _Leg) -> None:
        if leg.task is not None or leg.ended:
            return
        task = asyncio.get_running_loop().create_task(leg.flow(leg.call))
        leg.task = task
        self._flows.add(task)
        task.add_done_callback(lambda done: self._flow_done(leg, done))

    def _flow_done(self, leg: _Leg, task: asyncio.Task[None]) -> None:
        self._flows.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None and not isinstance(error, CallEnded):
                log.error("flow of call %s failed", leg.label, exc_info=error)
        if leg.ended:
            self._log_counters(leg)
        else:
            self._end(leg, "flow ended")

    # ---- in-dialog requests -----------------------------------------------------------------
    def _request(self, event: RequestReceived) -> bool:
        request, transaction = event.request, event.transaction
        dialog_id = incoming_dialog_id(request)
        leg = None if dialog_id is None else self._calls.get(dialog_id)
        if leg is None:
            return False
        if transaction is None:  # the ACK of our 2xx
            if request.method == "ACK":
                self._start_flow(leg)
            return True
        status = leg.dialog.receive_request(request)
        if status is not None:
            self._reply(transaction, status, headers=[("retry-after", "1")],
                        warning="CSeq out of order")
            return True
        leg.peer = event.peer
        method = request.method
        if method == "BYE":
            self._reply(transaction, 200)
            self._end(leg, "caller hung up", send_bye=False)
        elif method == "INFO":
            self._info(leg, request, transaction)
        elif method == "INVITE":
            self._reinvite(leg, request, transaction)
        else:
            self._reply(transaction, 405, headers=[("allow", ", ".join(ALLOWED))])
        return True

    def _info(self, leg: _Leg, request: Request, transaction: ServerTransaction) -> None:
        content_type = request.content_type
        if content_type in DTMF_INFO_TYPES:
            digit = parse_info_dtmf(content_type, request.body)
            if digit is None:
                self._reply(transaction, 400, warning="no DTMF signal in the body")
                return
            self._reply(transaction, 200)
            leg.stream.info_digit(digit)
        elif not request.body:
            self._reply(transaction, 200)  # an empty INFO: a keepalive
        else:
            self._reply(transaction, 415, headers=[("accept", ", ".join(DTMF_INFO_TYPES))])

    def _reinvite(self, leg: _Leg, request: Request, transaction: ServerTransaction) -> None:
        contact = leg.dialog.local_contact
        if not request.body:
            # RFC 6337 §5.3: an offerless re-INVITE gets our current SDP as the offer
            self._reply(transaction, 200, body=leg.answer_sdp, contact=contact)
            return
        try:
            offer = parse_sdp(request.body)
        except SdpError as error:
            self._reply(transaction, 400, warning=f"bad SDP: {error}")
            return
        try:
            check_offer_destinations(offer, initial=False, signalling_host=leg.peer.host)
        except DestinationRefused as refused:
            self._reply(transaction, 488, warning=str(refused), code=refused.warning_code)
            return
        stream = leg.stream
        origin = leg.answer.origin
        answer = answer_audio(offer, origin.address, stream.port, (stream.codec.value,),
                              session_id=origin.sess_id, session_version=origin.sess_version)
        if answer is None:
            self._reply(transaction, 488, warning=f"the call stays on {stream.codec}", code=305)
            return
        try:
            negotiated = negotiated_audio(offer, answer)
        except SdpError as error:
            self._reply(transaction, 488, warning=str(error))
            return
        answer_sdp = build_sdp(answer)
        if answer_sdp != leg.answer_sdp:  # RFC 3264 §8: a changed description, a new version
            answer.origin.sess_version += 1
            answer_sdp = build_sdp(answer)
            leg.answer, leg.answer_sdp = answer, answer_sdp
        stream.update(_remote(negotiated), sending=negotiated.sends)
        self._reply(transaction, 200, body=answer_sdp, contact=contact)
        log.info("call %s: re-INVITE, we %s", leg.label, negotiated.direction)

    # ---- responses and timeouts -------------------------------------------------------------
    def _response(self, response: Response, transaction: ClientTransaction) -> bool:
        label = self._byes.get(transaction)
        if label is None:
            return False
        if response.status >= 200:
            del self._byes[transaction]
            log.debug("call %s: BYE answered %d", label, response.status)
        return True

    def _timed_out(self, transaction: ClientTransaction | ServerTransaction) -> bool:
        if isinstance(transaction, ClientTransaction):
            label = self._byes.pop(transaction, None)
            if label is not None:
                log.info("call %s: BYE got no answer", label)
            return label is not None
        leg = self._by_invite.get(transaction)
        if leg is None:
            return False
        self._end(leg, "no ACK for our 200")
        return True

    # ---- ending -----------------------------------------------------------------------------
    def _end(self, leg: _Leg, reason: str, *, send_bye: bool = True) -> None:
        """End the call once: forget the dialog, stop the flow, free the port, maybe BYE."""
        if leg.ended:
            return
        leg.ended = True
        self._calls.pop(leg.dialog.id, None)
        self._by_invite.pop(leg.invite, None)
        leg.call.end()
        task = leg.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        leg.stream.close()
        if send_bye:
            self._send_bye(leg)
        log.info("call %s ended: %s", leg.label, reason)
        if task is None or task.done():
            self._log_counters(leg)

    def _send_bye(self, leg: _Leg) -> None:
        request = leg.dialog.create_request("BYE", headers=[("user-agent", self.server_name)])
        try:
            transaction = self.sip.send_request(request, _bye_peer(leg))
        except (ValueError, OSError) as error:
            log.warning("call %s: BYE not sent: %s", leg.label, error)
            return
        self._byes[transaction] = leg.label

    def _log_counters(self, leg: _Leg) -> None:
        log.debug("call %s over; active calls=%d flows=%d rtp_ports=%d byes=%d", leg.label,
                  self.active_calls, self.active_flows, self.rtp_ports_in_use, self.pending_byes)

    # ---- helpers ----------------------------------------------------------------------------
    def _reply(self, transaction: ServerTransaction, status: int, *, body: bytes = b"",
               contact: str | None = None, headers: list[tuple[str, str]] | None = None,
               warning: str | None = None, code: int = 399) -> None:
        extra = list(headers or [])
        if contact is not None:
            extra.append(("contact", contact))
        if status == 200 and transaction.request.method == "INVITE":
            extra.append(("allow", ", ".join(ALLOWED)))
        if warning is not None:
            text = warning.replace("\\", "").replace('"', "'")
            extra.append(("warning", f'{code} softswitch "{text}"'))
        extra.append(("server", self.server_name))
        if body:
            extra.append(("content-type", "application/sdp"))
        response = make_response(transaction.request, status, to_tag=transaction.to_tag,
                                 headers=extra, body=body)
        self.sip.respond(transaction, response)

    def _contact(self, number: str, peer: Peer) -> str:
        address = self.sip_addresses.get(peer.transport) or next(
            iter(self.sip_addresses.values()), ListenAddress(self.media_host, 5060))
        transport = "" if peer.transport == "udp" else f";transport={peer.transport}"
        return f"<sip:{number}@{address}{transport}>"

    def _advertised_host(self, peer: Peer) -> str:
        """The address the caller sends RTP to: where we bind, or, bound to every address,
        the one the system routes to the caller from."""
        if self.media_host not in _UNSPECIFIED_HOSTS:
            return self.media_host
        family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((peer.host.strip("[]"), peer.port or 9))  # sends nothing
                host: str = probe.getsockname()[0]
            except OSError:
                host = "127.0.0.1" if family == socket.AF_INET else "::1"
        return host


def _remote(negotiated: NegotiatedAudio) -> tuple[str, int] | None:
    """Where the SDP says to send RTP; None on hold (0.0.0.0) or without a port."""
    if negotiated.remote_port == 0 or negotiated.remote_address in _UNSPECIFIED_HOSTS:
        return None
    return (negotiated.remote_address, negotiated.remote_port)


def _request_user(request: Request) -> str:
    try:
        uri = request.request_uri
    except UriError:
        return ""
    return (uri.user_text or "") if isinstance(uri, SipUri) else ""


def _from_user(request: Request) -> str:
    try:
        from_ = request.from_
    except HeaderError:
        return ""
    uri = None if from_ is None else from_.uri
    return (uri.user_text or "") if isinstance(uri, SipUri) else ""


def _behind_nat(request: Request) -> bool:
    """The INVITE came from another address than its Via says (RFC 3581 received/rport)."""
    try:
        via = request.top_via
    except HeaderError:
        return False
    if via is None:
        return False
    received, rport = via.params.get("received"), via.params.get("rport")
    if received is not None and received != via.host.strip("[]"):
        return True
    return rport is not None and rport.isdigit() and int(rport) != (via.port or 5060)


def _bye_peer(leg: _Leg) -> Peer:
    """Where our in-dialog requests go: the caller's TCP connection; over UDP the remote
    target (its Contact), unless the caller is behind NAT or the target is no IP address."""
    peer = leg.peer
    if peer.transport != "udp" or leg.behind_nat:
        return peer
    try:
        target = parse_uri(leg.dialog.remote_target)
    except UriError:
        return peer
    if not isinstance(target, SipUri) or target.transport not in (None, "udp"):
        return peer
    host = target.host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return peer  # a name: resolving it is the routing issue's job; the source works
    return replace(peer, host=host, port=target.port or 5060, connection=None)


def build_call_handler(config: Config, sip: SipSender) -> CallHandler:
    """The call handler for `config`: RTP on the first SIP listen address, prompts in the
    configured language, and the flows behind the dial codes."""
    host = config.sip.listen[0].host
    media = RtpEngine(host, config.media.rtp_port_min, config.media.rtp_port_max,
                      silence=config.media.silence,
                      keepalive_seconds=config.media.keepalive_seconds)
    prompts = PromptLibrary.load(config.media.language, config.media.prompts_dir)
    flows: dict[str, Flow] = {config.dial_codes.dtmf_test: dtmf_test}
    return CallHandler(sip=sip, media=media, prompts=prompts, flows=flows,
                       subscribers=[s.number for s in config.subscribers],
                       server_name=config.sip.user_agent, media_host=host)
