"""Dialogs (RFC 3261 §12): the state two user agents share, and requests made inside one.

Requests made here carry no Via: the endpoint puts its own on when it sends them
(`SipEndpoint.send_request` / `send_stateless`), with a fresh branch, because only the
transport side knows the address and the transport a request leaves by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .headers import HeaderError, NameAddr, parse_name_addr
from .message import HeaderList, Message, Request, Response
from .uri import SipUri

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)

# Requests that may change the remote target (§12.2, RFC 3311).
TARGET_REFRESH = frozenset(("INVITE", "UPDATE"))
MAX_FORWARDS = "70"


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str  # "" when the peer gave none (RFC 2543, §12.1.1)
    local_uri: str
    remote_uri: str
    remote_target: str  # where our requests go: the peer's Contact URI
    route_set: list[str] = field(default_factory=list)  # Route values, in sending order
    local_seq: int = 0  # CSeq of our last request
    remote_seq: int | None = None  # CSeq of the peer's last request; None: none yet
    secure: bool = False  # sips
    local_contact: str | None = None  # our Contact, sent in target refresh requests

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_contact: str) -> Dialog:
        """The dialog a UAS makes when it answers `request` (an INVITE, say) with a 1xx/2xx
        carrying `local_tag` and `local_contact` (§12.1.1)."""
        from_, to, cseq = _dialog_headers(request)
        contacts = request.contacts
        return cls(
            call_id=_call_id(request), local_tag=local_tag, remote_tag=from_.tag or "",
            local_uri=str(to.uri), remote_uri=str(from_.uri),
            remote_target=str((contacts[0] if contacts else from_).uri),
            route_set=request.values("record-route"), local_seq=0, remote_seq=cseq,
            secure=_is_sips(request), local_contact=local_contact,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAC gets from a 1xx (with To tag) or 2xx `response` to its `request`
        (§12.1.2). Our Contact is the request's."""
        from_, to, cseq = _dialog_headers(request)
        answer_to = response.to
        if answer_to is None or not answer_to.tag:
            raise ValueError("a response without To tag makes no dialog")
        try:
            contacts = response.contacts
        except HeaderError:  # responses are not checked for it: fall back as if absent
            contacts = []
        contact = request.values("contact")
        return cls(
            call_id=_call_id(request), local_tag=from_.tag or "", remote_tag=answer_to.tag,
            local_uri=str(from_.uri), remote_uri=str(to.uri),
            remote_target=str(contacts[0].uri) if contacts else request.uri,
            route_set=response.values("record-route")[::-1], local_seq=cseq, remote_seq=None,
            secure=_is_sips(request), local_contact=contact[0] if contact else None,
        )

    def create_request(self, method: str, *, body: bytes = b"",
                       content_type: str | None = None,
                       headers: Iterable[tuple[str, str]] = ()) -> Request:
        """A new request in this dialog (§12.2.1.1): next CSeq, To/From with tags, Request-URI
        and Route from the route set (loose or strict routing). No Via (see module doc).
        `headers` are added as given (lower-case names)."""
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} takes the CSeq of its INVITE: use create_ack / "
                             "ClientTransaction.make_cancel")
        self.local_seq += 1
        return self._request(method, self.local_seq, body, content_type, headers)

    def create_ack(self, cseq: int, *, body: bytes = b"", content_type: str | None = None,
                   headers: Iterable[tuple[str, str]] = ()) -> Request:
        """The ACK of a 2xx to the INVITE sent with CSeq `cseq` (§13.2.2.4)."""
        return self._request("ACK", cseq, body, content_type, headers)

    def receive_request(self, request: Request) -> int | None:
        """Take in a request of this dialog (§12.2.2): the status to answer it with when it is
        out of order (500), else None. INVITE and UPDATE with a Contact refresh the target."""
        cseq = request.cseq
        if cseq is None or request.method in ("ACK", "CANCEL"):
            return None  # both carry the CSeq of the INVITE they belong to
        if self.remote_seq is not None and cseq.number < self.remote_seq:
            return 500
        self.remote_seq = cseq.number
        if request.method in TARGET_REFRESH:
            self._refresh_target(request)
        return None

    def receive_response(self, response: Response) -> None:
        """A 2xx to our INVITE or UPDATE refreshes the remote target (§12.2.1.2)."""
        cseq = response.cseq
        if cseq is not None and cseq.method in TARGET_REFRESH and 200 <= response.status < 300:
            self._refresh_target(response)

    def _refresh_target(self, message: Message) -> None:
        try:
            contacts = message.contacts
        except HeaderError:
            return
        if contacts:
            self.remote_target = str(contacts[0].uri)

    def _request(self, method: str, cseq: int, body: bytes, content_type: str | None,
                 extra: Iterable[tuple[str, str]]) -> Request:
        uri, routes = self._route()
        header_list: HeaderList = []
        if routes:
            header_list.append(("route", ", ".join(routes)))
        remote = f"<{self.remote_uri}>"
        header_list += [
            ("max-forwards", MAX_FORWARDS),
            ("to", f"{remote};tag={self.remote_tag}" if self.remote_tag else remote),
            ("from", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("call-id", self.call_id),
            ("cseq", f"{cseq} {method}"),
        ]
        if method in TARGET_REFRESH and self.local_contact is not None:
            header_list.append(("contact", self.local_contact))
        header_list.extend(extra)
        if content_type is not None:
            header_list.append(("content-type", content_type))
        return Request(headers=header_list, body=body, method=method, uri=uri)

    def _route(self) -> tuple[str, list[str]]:
        """Request-URI and Route values (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_name_addr(self.route_set[0]).uri
        if not isinstance(first, SipUri) or "lr" in first.params:
            return self.remote_target, list(self.route_set)
        # A strict router: it gets the request addressed to itself, the target goes last.
        request_uri = SipUri(first.scheme, first.host, first.user, first.password, first.port,
                             {k: v for k, v in first.params.items() if k != "method"})
        return str(request_uri), [*self.route_set[1:], f"<{self.remote_target}>"]


def incoming_dialog_id(request: Request) -> DialogId | None:
    """The id of the dialog a received request belongs to; None without a To tag (a request
    that does not belong to a dialog)."""
    try:
        to, from_ = request.to, request.from_
    except HeaderError:
        return None
    call_id = request.call_id
    if to is None or not to.tag or from_ is None or call_id is None:
        return None
    return (call_id, to.tag, from_.tag or "")


def _dialog_headers(request: Request) -> tuple[NameAddr, NameAddr, int]:
    from_, to, cseq = request.from_, request.to, request.cseq
    if from_ is None or to is None or cseq is None:
        raise ValueError("request without From, To or CSeq")
    return from_, to, cseq.number


def _call_id(request: Request) -> str:
    call_id = request.call_id
    if call_id is None:
        raise ValueError("request without Call-ID")
    return call_id


def _is_sips(request: Request) -> bool:
    return request.uri[:5].lower() == "sips:"
