"""INVITE sessions (RFC 3261 §13-§15, RFC 3264 offer/answer), sans-IO.

PJSIP's split is the model: the `Dialog` is passive data (ids, route set, CSeq counters),
and an `InviteSession` is the usage on it that knows where the call stands — calling or
incoming, early, answered, confirmed, ended — and builds the messages that move it on. It
sends nothing itself: its methods return the requests and responses for the caller to put in
transactions (`SipEndpoint.respond` / `send_request` / `send_stateless`), and it reports one
deadline (`get_timer()` / `handle_timer(now)`) the way the endpoint does: the ring time of an
outgoing leg.

Both legs of a bridged call and every call answered by a voice flow are InviteSessions:

- UAS (`InviteSession.incoming`): the INVITE we received. `provisional()` (180/183),
  `accept()` (2xx), `reject()` (3xx-6xx); `acked()` when the ACK of our 2xx arrives.
- UAC (`InviteSession.outgoing`): an INVITE we send. `response()` takes each response to it
  and says what it means (`Progress`, `Answered` with the ACK to send, `Failed`), including a
  2xx from a second fork of the far side (acknowledged and hung up, §13.2.2.4).
- Either: `receive_request()` for the peer's in-dialog requests (CSeq order, target
  refresh), `request()` for ours (BYE, re-INVITE, UPDATE, INFO), `bye()`.

The session keeps the last SDP each side gave (`local_sdp`, `remote_sdp`), so a B2BUA can
pass descriptions through and answer an offerless re-INVITE.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from .dialog import Dialog
from .headers import HeaderError
from .message import Request, Response, make_response
from .transaction import random_token

SDP = "application/sdp"
HeaderPairs = Iterable[tuple[str, str]]


class Role(enum.Enum):
    UAS = "uas"  # we received the INVITE
    UAC = "uac"  # we sent it


class SessionState(enum.Enum):
    CALLING = "calling"  # UAC: sent, nothing back yet
    INCOMING = "incoming"  # UAS: received, nothing sent yet (a 100 Trying aside)
    EARLY = "early"  # a provisional response with a To tag: an early dialog
    ANSWERED = "answered"  # a 2xx sent (UAS) awaiting its ACK
    CONFIRMED = "confirmed"  # the 2xx acknowledged (UAS) or received and ACKed (UAC)
    ENDED = "ended"

    @property
    def live(self) -> bool:
        return self is not SessionState.ENDED


# ---- what a response to our INVITE means (UAC) ---------------------------------------------
@dataclass(slots=True, frozen=True)
class Progress:
    """A provisional response (180, 183 ...), with its early SDP if it carried one."""

    response: Response


@dataclass(slots=True, frozen=True)
class Answered:
    """A 2xx. `ack` must be sent (outside any transaction, to the session's remote target);
    `first` is False for a retransmission of the 2xx already taken."""

    response: Response
    ack: Request
    first: bool


@dataclass(slots=True, frozen=True)
class StrayAnswer:
    """A 2xx from another fork of the far side than the one we took: ACK it and BYE it."""

    ack: Request
    bye: Request


@dataclass(slots=True, frozen=True)
class Failed:
    """A final 3xx-6xx: the session is over (the transaction has ACKed it)."""

    response: Response


Outcome = Progress | Answered | StrayAnswer | Failed


@dataclass(slots=True, eq=False)
class InviteSession:
    role: Role
    invite: Request  # the initial INVITE (as received, or as we sent it)
    local_contact: str
    state: SessionState
    dialog: Dialog | None = None  # made at the first response with a To tag
    local_sdp: bytes = b""
    remote_sdp: bytes = b""
    local_tag: str = ""  # UAS: the To tag of all our responses
    ring_deadline: float | None = None
    _other_dialogs: set[str] = field(default_factory=set)  # To tags of stray 2xx (UAC)

    # ---- making one ---------------------------------------------------------------------
    @classmethod
    def incoming(cls, invite: Request, local_tag: str, local_contact: str) -> InviteSession:
        """The session of an INVITE we received; `local_tag` is its transaction's To tag."""
        return cls(Role.UAS, invite, local_contact, SessionState.INCOMING,
                   remote_sdp=_sdp_of(invite), local_tag=local_tag)

    @classmethod
    def outgoing(cls, *, request_uri: str, from_uri: str, to_uri: str, local_contact: str,
                 body: bytes = b"", headers: HeaderPairs = (), call_id: str | None = None,
                 from_display: str | None = None) -> InviteSession:
        """A new INVITE to send (in a new client transaction; the endpoint adds the Via).
        `from_uri`/`to_uri` are bare URIs; a fresh Call-ID and From tag are made."""
        display = f'"{from_display}" ' if from_display else ""
        header_list = [
            ("max-forwards", "70"),
            ("from", f"{display}<{from_uri}>;tag={random_token(6)}"),
            ("to", f"<{to_uri}>"),
            ("call-id", call_id or random_token(12)),
            ("cseq", "1 INVITE"),
            ("contact", local_contact),
            *headers,
        ]
        if body:
            header_list.append(("content-type", SDP))
        invite = Request(headers=header_list, body=body, method="INVITE", uri=request_uri)
        return cls(Role.UAC, invite, local_contact, SessionState.CALLING, local_sdp=body)

    # ---- UAS: answering the INVITE ------------------------------------------------------
    def provisional(self, status: int = 180, *, body: bytes = b"",
                    headers: HeaderPairs = ()) -> Response:
        """A 1xx with our To tag (so an early dialog); 183 with `body` for early media."""
        self._expect(Role.UAS, SessionState.INCOMING, SessionState.EARLY)
        if not 100 < status < 200:
            raise ValueError(f"not a provisional status: {status}")
        response = self._response(status, body, headers)
        self._ensure_dialog()
        self.state = SessionState.EARLY
        if body:
            self.local_sdp = body
        return response

    def accept(self, *, body: bytes = b"", headers: HeaderPairs = ()) -> Response:
        """The 2xx to the INVITE. The session waits for its ACK (`acked()`)."""
        self._expect(Role.UAS, SessionState.INCOMING, SessionState.EARLY)
        response = self._response(200, body, headers)
        self._ensure_dialog()
        self.state = SessionState.ANSWERED
        if body:
            self.local_sdp = body
        return response

    def reject(self, status: int, reason: str | None = None, *,
               headers: HeaderPairs = ()) -> Response:
        """A final failure to the INVITE; the session ends."""
        self._expect(Role.UAS, SessionState.INCOMING, SessionState.EARLY)
        if status < 300:
            raise ValueError(f"not a failure status: {status}")
        self.state = SessionState.ENDED
        return make_response(self.invite, status, reason, to_tag=self.local_tag,
                             headers=list(headers))

    def acked(self) -> bool:
        """The ACK of our 2xx arrived: True the first time (the call is confirmed)."""
        if self.role is Role.UAS and self.state is SessionState.ANSWERED:
            self.state = SessionState.CONFIRMED
            return True
        return False

    # ---- UAC: what the far side answered ------------------------------------------------
    def response(self, response: Response) -> Outcome | None:
        """Take a response to our initial INVITE; None when it changes nothing."""
        if self.role is not Role.UAC:
            raise ValueError("responses to an INVITE are for the session that sent it")
        status = response.status
        tag = _to_tag(response)
        if status < 200:
            if status == 100 or self.state not in (SessionState.CALLING, SessionState.EARLY):
                return None
            if tag and self.dialog is None:
                self.dialog = Dialog.as_uac(self.invite, response)
            self.state = SessionState.EARLY
            if response.body:
                self.remote_sdp = response.body
            return Progress(response)
        if status >= 300:
            if self.state in (SessionState.CALLING, SessionState.EARLY):
                self.state = SessionState.ENDED
                return Failed(response)
            return None
        return self._answered(response, tag)

    def _answered(self, response: Response, tag: str) -> Outcome | None:
        if self.dialog is not None and self.dialog.remote_tag != tag \
                and self.state in (SessionState.CONFIRMED, SessionState.ENDED):
            return self._stray(response, tag)
        if self.state is SessionState.CONFIRMED or (
                self.state is SessionState.ENDED and self.dialog is not None):
            assert self.dialog is not None  # a 2xx again: ACK it again
            return Answered(response, self._ack(), first=False)
        if self.state is SessionState.ENDED:
            return None
        if self.dialog is None or self.dialog.remote_tag != tag:
            # The answering fork may differ from the one that rang first: its dialog counts.
            self.dialog = Dialog.as_uac(self.invite, response)
        else:
            self.dialog.receive_response(response)
            self.dialog.route_set = response.values("record-route")[::-1]
        self.state = SessionState.CONFIRMED
        if response.body:
            self.remote_sdp = response.body
        return Answered(response, self._ack(), first=True)

    def _stray(self, response: Response, tag: str) -> StrayAnswer | None:
        if tag in self._other_dialogs:
            return None
        self._other_dialogs.add(tag)
        stray = Dialog.as_uac(self.invite, response)
        ack = stray.create_ack(_cseq_number(self.invite))
        return StrayAnswer(ack, stray.create_request("BYE"))

    def cancel_allowed(self) -> bool:
        """§9.1: a CANCEL only once something came back (a provisional response)."""
        return self.role is Role.UAC and self.state is SessionState.EARLY

    # ---- either side, inside the dialog -------------------------------------------------
    def receive_request(self, request: Request) -> int | None:
        """A request of the peer in this dialog: the status to refuse it with (500 for an old
        CSeq), else None. A re-INVITE's or UPDATE's SDP becomes the remote one."""
        if self.dialog is None:
            return 481
        status = self.dialog.receive_request(request)
        if status is None and request.method in ("INVITE", "UPDATE") and request.body:
            self.remote_sdp = request.body
        return status

    def request(self, method: str, *, body: bytes = b"", headers: HeaderPairs = ()) -> Request:
        """A request of ours in the dialog: re-INVITE, UPDATE, INFO, BYE..."""
        if self.dialog is None:
            raise ValueError("no dialog yet")
        if method in ("INVITE", "UPDATE") and body:
            self.local_sdp = body
        return self.dialog.create_request(method, body=body,
                                          content_type=SDP if body and method in (
                                              "INVITE", "UPDATE") else None,
                                          headers=headers)

    def bye(self, headers: HeaderPairs = ()) -> Request | None:
        """End the session: the BYE to send, or None when there is no dialog to end (then
        nothing needs sending: an unanswered INVITE is CANCELed or rejected instead)."""
        answered = self.state in (SessionState.ANSWERED, SessionState.CONFIRMED)
        self.state = SessionState.ENDED
        if not answered or self.dialog is None:
            return None
        return self.dialog.create_request("BYE", headers=headers)

    def end(self) -> None:
        """Over without anything to send (a BYE received, a failure, a timeout)."""
        self.state = SessionState.ENDED

    @property
    def id(self) -> tuple[str, str, str] | None:
        return None if self.dialog is None else self.dialog.id

    @property
    def call_id(self) -> str:
        return self.invite.call_id or ""

    # ---- the ring timer -----------------------------------------------------------------
    def ring_until(self, deadline: float) -> None:
        """Give the far side until `deadline` to answer (an outgoing leg's ring time)."""
        self.ring_deadline = deadline

    def get_timer(self) -> float | None:
        if self.state in (SessionState.CALLING, SessionState.EARLY):
            return self.ring_deadline
        return None

    def handle_timer(self, now: float) -> bool:
        """True when the ring time is over unanswered (the owner CANCELs)."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return False
        self.ring_deadline = None
        return True

    # ---- inside -------------------------------------------------------------------------
    def _expect(self, role: Role, *states: SessionState) -> None:
        if self.role is not role or self.state not in states:
            raise ValueError(f"{self.role.value} session {self.state.value}: not allowed")

    def _response(self, status: int, body: bytes, headers: HeaderPairs) -> Response:
        extra = [("contact", self.local_contact), *headers]
        if body:
            extra.append(("content-type", SDP))
        return make_response(self.invite, status, to_tag=self.local_tag, headers=extra,
                             body=body)

    def _ensure_dialog(self) -> None:
        if self.dialog is None:
            self.dialog = Dialog.as_uas(self.invite, self.local_tag, self.local_contact)

    def _ack(self) -> Request:
        assert self.dialog is not None
        return self.dialog.create_ack(_cseq_number(self.invite))


def _sdp_of(message: Request | Response) -> bytes:
    return message.body if message.body and message.content_type == SDP else b""


def _to_tag(message: Response) -> str:
    try:
        to = message.to
    except HeaderError:
        return ""
    return (to.tag or "") if to is not None else ""


def _cseq_number(request: Request) -> int:
    cseq = request.cseq
    return cseq.number if cseq is not None else 1
