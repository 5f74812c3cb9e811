"""Dialogs (RFC 3261 §12): state from the request/response that makes them, requests made in
them (route sets with loose and strict routers), CSeq ordering and target refresh."""

from __future__ import annotations

import pytest

from softswitch.sip.dialog import Dialog, incoming_dialog_id
from softswitch.sip.headers import parse_name_addr
from softswitch.sip.message import Request, Response, make_response
from softswitch.sip.parser import check_request, parse_datagram
from softswitch.sip.uri import SipUri

INVITE = (
    "INVITE sip:bob@softswitch.example SIP/2.0\r\n"
    "Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
    "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKalice\r\n"
    "Record-Route: <sip:p2.example.com;lr>\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "Max-Forwards: 68\r\n"
    "From: \"Alice\" <sip:alice@example.com>;tag=alice-tag\r\n"
    "To: <sip:bob@softswitch.example>\r\n"
    "Call-ID: dialog-call-1\r\n"
    "CSeq: 314 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def request(text: str = INVITE) -> Request:
    return check_request(parse_datagram(text.encode()))


def uas_dialog() -> Dialog:
    return Dialog.as_uas(request(), "bob-tag", "<sip:bob@198.51.100.9:5060>")


def test_uas_dialog_state() -> None:
    dialog = uas_dialog()
    assert dialog.id == ("dialog-call-1", "bob-tag", "alice-tag")
    assert (dialog.local_uri, dialog.remote_uri) == (
        "sip:bob@softswitch.example", "sip:alice@example.com")
    assert dialog.remote_target == "sip:alice@192.0.2.10:5060;transport=udp"
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert (dialog.local_seq, dialog.remote_seq, dialog.secure) == (0, 314, False)


def test_uas_request_follows_the_route_set() -> None:
    dialog = uas_dialog()
    bye = dialog.create_request("BYE")
    assert bye.method == "BYE" and bye.uri == "sip:alice@192.0.2.10:5060;transport=udp"
    assert bye.get_all("route") == ["<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"]
    assert bye.get("to") == "<sip:alice@example.com>;tag=alice-tag"
    assert bye.get("from") == "<sip:bob@softswitch.example>;tag=bob-tag"
    assert bye.get("call-id") == "dialog-call-1" and bye.get("cseq") == "1 BYE"
    assert bye.get("max-forwards") == "70"
    assert not bye.has("via") and not bye.has("contact")  # the endpoint adds the Via
    info = dialog.create_request("INFO", body=b"Signal=5\r\n", content_type="application/dtmf",
                                 headers=[("x-call", "1")])
    assert info.get("cseq") == "2 INFO" and dialog.local_seq == 2
    assert info.get("content-type") == "application/dtmf" and info.get("x-call") == "1"
    assert info.body == b"Signal=5\r\n"
    reinvite = dialog.create_request("INVITE")
    assert reinvite.get("contact") == "<sip:bob@198.51.100.9:5060>"  # a target refresh


def test_created_request_parses_back() -> None:
    bye = uas_dialog().create_request("BYE")
    bye.prepend("via", "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKx")
    again = check_request(parse_datagram(bye.to_bytes()))
    routes = [parse_name_addr(value).uri for value in again.values("route")]
    assert [uri.host for uri in routes if isinstance(uri, SipUri)] == [
        "p2.example.com", "p1.example.com"]


def test_uac_dialog_reverses_the_record_route() -> None:
    invite = request(INVITE.replace("Record-Route: <sip:p2.example.com;lr>\r\n"
                                    "Record-Route: <sip:p1.example.com;lr>\r\n", ""))
    ok = make_response(invite, 200, to_tag="bob-tag", headers=[
        ("record-route", "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"),
        ("contact", "<sip:bob@192.0.2.20>"),
    ])
    dialog = Dialog.as_uac(invite, ok)
    assert dialog.id == ("dialog-call-1", "alice-tag", "bob-tag")
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert dialog.remote_target == "sip:bob@192.0.2.20"
    assert dialog.local_contact == "<sip:alice@192.0.2.10:5060;transport=udp>"
    assert (dialog.local_seq, dialog.remote_seq) == (314, None)
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:bob@192.0.2.20" and bye.get("cseq") == "315 BYE"
    assert bye.get("route") == "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"
    assert bye.get("to") == "<sip:bob@softswitch.example>;tag=bob-tag"
    ack = dialog.create_ack(314)
    assert ack.get("cseq") == "314 ACK" and dialog.local_seq == 315
    assert ack.uri == "sip:bob@192.0.2.20"


def test_uac_dialog_needs_a_to_tag() -> None:
    invite = request()
    with pytest.raises(ValueError):
        Dialog.as_uac(invite, make_response(invite, 180))


def test_strict_router_gets_the_request_uri() -> None:
    dialog = uas_dialog()
    dialog.route_set = ["<sip:strict.example.com;method=INVITE;maddr=10.0.0.1>",
                        "<sip:p1.example.com;lr>"]
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:strict.example.com;maddr=10.0.0.1"
    assert bye.get("route") == ("<sip:p1.example.com;lr>, "
                                "<sip:alice@192.0.2.10:5060;transport=udp>")


def test_no_route_set_means_no_route() -> None:
    dialog = uas_dialog()
    dialog.route_set = []
    bye = dialog.create_request("BYE")
    assert not bye.has("route") and bye.uri == dialog.remote_target


def test_ack_and_cancel_are_not_made_with_a_new_cseq() -> None:
    dialog = uas_dialog()
    for method in ("ACK", "CANCEL"):
        with pytest.raises(ValueError):
            dialog.create_request(method)
    assert dialog.local_seq == 0


def in_dialog(method: str, cseq: int, contact: str | None = None) -> Request:
    text = (INVITE.replace("INVITE sip:bob@softswitch.example", f"{method} sip:bob@198.51.100.9")
            .replace("CSeq: 314 INVITE", f"CSeq: {cseq} {method}")
            .replace("To: <sip:bob@softswitch.example>", "To: <sip:bob@softswitch.example>"
                                                         ";tag=bob-tag"))
    if contact is not None:
        text = text.replace("<sip:alice@192.0.2.10:5060;transport=udp>", contact)
    return request(text)


def test_receive_request_orders_cseq_and_refreshes_the_target() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("INFO", 313)) == 500  # lower: out of order
    assert dialog.remote_seq == 314
    assert dialog.receive_request(in_dialog("ACK", 314)) is None  # the INVITE's CSeq
    assert dialog.receive_request(in_dialog("INFO", 320, "<sip:alice@192.0.2.99>")) is None
    assert dialog.remote_seq == 320
    assert dialog.remote_target == "sip:alice@192.0.2.10:5060;transport=udp"  # INFO: no refresh
    assert dialog.receive_request(in_dialog("INVITE", 321, "<sip:alice@192.0.2.99>")) is None
    assert dialog.remote_target == "sip:alice@192.0.2.99"
    assert dialog.receive_request(in_dialog("UPDATE", 322, "<sip:alice@192.0.2.77>")) is None
    assert dialog.remote_target == "sip:alice@192.0.2.77"
    assert dialog.receive_request(in_dialog("BYE", 321)) == 500


def test_2xx_to_a_reinvite_refreshes_the_target() -> None:
    invite = request()
    dialog = Dialog.as_uac(invite, make_response(invite, 200, to_tag="bob-tag",
                                                 headers=[("contact", "<sip:bob@192.0.2.20>")]))
    reinvite = dialog.create_request("INVITE")
    reinvite.prepend("via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKre")
    failure = make_response(reinvite, 488, headers=[("contact", "<sip:bob@192.0.2.66>")])
    dialog.receive_response(failure)
    assert dialog.remote_target == "sip:bob@192.0.2.20"
    ok: Response = make_response(reinvite, 200, headers=[("contact", "<sip:bob@192.0.2.21>")])
    dialog.receive_response(ok)
    assert dialog.remote_target == "sip:bob@192.0.2.21"


def test_sips_dialog_is_secure() -> None:
    text = INVITE.replace("INVITE sip:bob@", "INVITE sips:bob@")
    assert Dialog.as_uas(request(text), "t", "<sips:bob@198.51.100.9>").secure


def test_incoming_dialog_id() -> None:
    assert incoming_dialog_id(request()) is None  # no To tag: not in a dialog
    bye = in_dialog("BYE", 315)
    assert incoming_dialog_id(bye) == uas_dialog().id


def test_uac_dialog_survives_a_broken_contact_in_the_response() -> None:
    invite = request()
    ok = make_response(invite, 200, to_tag="bob-tag", headers=[("contact", "sip:a b@c")])
    assert Dialog.as_uac(invite, ok).remote_target == "sip:bob@softswitch.example"
