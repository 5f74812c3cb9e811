"""The sans-IO endpoint: RFC 4475 through receive_datagram / receive_stream, what it answers by
itself (400/505/513, CANCEL, 481, 482), RFC 3581 Via handling, matching, and robustness."""

from __future__ import annotations

import random

import pytest

import softswitch.sip.endpoint as endpoint_module
from softswitch.sip.dialog import Dialog
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.events import (
    CancelReceived,
    CloseConnection,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    Transmit,
)
from softswitch.sip.message import Response, make_response
from softswitch.sip.parser import parse_datagram
from softswitch.sip.transaction import State

from .conftest import rfc4475_index, rfc4475_message
from .test_transaction import (
    SERVER,
    TCP,
    UDP,
    answer,
    events,
    first_lines,
    new_request,
    request_bytes,
    response_to,
    run,
    sent,
    server_transaction,
)

NAT = Peer("udp", "203.0.113.7", 40123)  # a phone behind NAT, as its packets arrive


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def parsed_response(data: bytes) -> Response:
    message = parse_datagram(data).message
    assert isinstance(message, Response)
    return message


# ---- RFC 4475 --------------------------------------------------------------------------------
# What the endpoint itself answers; None: nothing (stray/broken responses are dropped). The
# rest of the corpus reaches the TU as RequestReceived (420/415/406/401/... are its answers).
ENDPOINT_ANSWERS: dict[str, int | None] = {
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "quotbal": 400,
    "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "regbadct": 400,
    "badaspec": 400, "baddn": 400, "badvers": 505, "mismatch01": 400, "mismatch02": 400,
    "insuf": 400, "unkscm": 416, "novelsc": 416, "multi01": 400, "mcl01": 400,
    "unreason": None, "noreason": None, "scalarlg": None, "bigcode": None, "bcast": None,
}


@pytest.mark.parametrize("entry", rfc4475_index(), ids=lambda e: e["file"])
def test_rfc4475_over_udp(entry: dict[str, str]) -> None:
    name = entry["file"].removesuffix(".dat")
    endpoint = SipEndpoint()
    endpoint.receive_datagram(rfc4475_message(name), NAT, 0.0)
    got_events = events(endpoint)
    outputs = endpoint.outputs()
    if name not in ENDPOINT_ANSWERS:
        assert entry["kind"] != "invalid"
        assert [type(e) for e in got_events] == [RequestReceived], entry["expected"]
        (event,) = got_events
        assert isinstance(event, RequestReceived)
        # nothing from the endpoint but the 100 Trying of an INVITE the TU left unanswered
        trying = [100] if event.request.method == "INVITE" else []
        assert [status_of(o.data) for o in outputs if isinstance(o, Transmit)] == trying
        assert len(outputs) == len(trying)
        return
    assert got_events == []
    expected = ENDPOINT_ANSWERS[name]
    if expected is None:
        assert outputs == [] and endpoint.stats.dropped == 1
        return
    (output,) = outputs
    assert isinstance(output, Transmit) and output.peer == NAT  # back to the source
    assert status_of(output.data) == expected, entry["expected"]
    assert b"\r\nWarning: 399 softswitch \"" in output.data
    assert endpoint.stats.rejected == 1


def test_invalid_corpus_entries_are_all_answered_or_dropped() -> None:
    invalid = {e["file"].removesuffix(".dat") for e in rfc4475_index() if e["kind"] == "invalid"}
    assert invalid <= set(ENDPOINT_ANSWERS)


def test_badinv01_unreadable_via_is_answered_to_the_source() -> None:
    endpoint = SipEndpoint()
    endpoint.receive_datagram(rfc4475_message("badinv01"), NAT, 0.0)
    (output,) = endpoint.outputs()
    assert isinstance(output, Transmit) and output.peer == NAT
    response = parsed_response(output.data)
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.get("via") == "SIP/2.0/UDP 192.0.2.15;;,;,,"  # copied as it came
    assert response.get("call-id") == "badinv01.0ha0isndaksdjasdf3234nas"
    assert response.get("warning") == '399 softswitch "empty Via value"'
    assert endpoint.stats.transactions == 0  # stateless: no key for a transaction


def test_bad_request_retransmission_gets_the_same_answer() -> None:
    endpoint = SipEndpoint(server_name="softswitch-test")
    endpoint.receive_datagram(rfc4475_message("badvers"), NAT, 0.0)
    (first,) = sent(endpoint)
    endpoint.receive_datagram(rfc4475_message("badvers"), NAT, 0.3)
    assert sent(endpoint) == [first]
    assert parsed_response(first).get("server") == "softswitch-test"
    assert endpoint.stats.rejected == 1 and endpoint.stats.retransmissions_absorbed == 1


def test_bad_invite_waits_for_its_ack_and_never_reaches_the_tu() -> None:
    endpoint = SipEndpoint()
    endpoint.receive_datagram(rfc4475_message("quotbal"), NAT, 0.0)
    (answer_,) = sent(endpoint)
    assert status_of(answer_) == 400
    assert [t for t, _ in run(endpoint, 2.0)] == [0.5, 1.5]  # timer G: it is a transaction
    run(endpoint, 100.0)
    assert events(endpoint) == []  # timer H of our own answer is nobody's business


def test_dblreq_only_the_first_message_counts() -> None:
    endpoint = SipEndpoint()
    endpoint.receive_datagram(rfc4475_message("dblreq"), NAT, 0.0)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.request.method == "REGISTER"
    assert event.request.body == b""


def test_clerr_over_a_stream_waits_for_more_bytes() -> None:
    endpoint = SipEndpoint()
    endpoint.receive_stream(rfc4475_message("clerr"), TCP, 0.0)
    assert endpoint.outputs() == [] and events(endpoint) == []
    endpoint.receive_datagram(rfc4475_message("clerr"), NAT, 0.0)
    assert [status_of(d) for d in sent(endpoint)] == [400]


def test_rfc2543_matching_absorbs_retransmissions() -> None:
    endpoint = SipEndpoint()
    for name in ("badbranch", "inv2543"):
        transaction = server_transaction(endpoint, rfc4475_message(name), 0.0, NAT)
        assert transaction.key[0] == transaction.request.uri  # keyed the RFC 2543 way
        endpoint.receive_datagram(rfc4475_message(name), NAT, 0.4)
        assert events(endpoint) == []
    assert endpoint.stats.retransmissions_absorbed == 2


def test_rfc2543_ack_of_a_failure_is_matched_without_branch() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, rfc4475_message("inv2543"), 0.0, NAT)
    answer(endpoint, transaction, 404, 0.1)
    invite = rfc4475_message("inv2543").split(b"\r\n\r\n")[0].decode()
    ack = (invite.replace("INVITE sip:", "ACK sip:", 1).replace("56 INVITE", "56 ACK")
           .replace("Content-Type: application/sdp\r\n", "")
           .replace("user=phone\r\nCall-ID", f"user=phone;tag={transaction.to_tag}\r\nCall-ID")
           + "\r\nContent-Length: 0\r\n\r\n")
    endpoint.receive_datagram(ack.encode(), NAT, 0.2)
    assert transaction.state is State.CONFIRMED and events(endpoint) == []


def test_stray_responses_are_dropped_and_counted() -> None:
    endpoint = SipEndpoint()
    for name in ("unreason", "noreason", "bcast", "bigcode", "scalarlg"):
        endpoint.receive_datagram(rfc4475_message(name), SERVER, 0.0)
    assert endpoint.outputs() == [] and events(endpoint) == []
    assert endpoint.stats.received == 5 and endpoint.stats.dropped == 5


# ---- streams ----------------------------------------------------------------------------------
def test_stream_messages_split_and_joined() -> None:
    endpoint = SipEndpoint()
    stream = request_bytes("OPTIONS", branch="z9hG4bKs1") + b"\r\n\r\n" \
        + request_bytes("OPTIONS", branch="z9hG4bKs2", call_id="call-2")
    for i in range(0, len(stream), 13):
        endpoint.receive_stream(stream[i:i + 13], TCP, 0.0)
    got = [e for e in events(endpoint) if isinstance(e, RequestReceived)]
    assert [e.request.call_id for e in got] == ["call-1", "call-2"]
    assert all(e.peer == TCP for e in got)


def test_stream_framing_error_answers_then_closes() -> None:
    endpoint = SipEndpoint()
    good = request_bytes("OPTIONS", branch="z9hG4bKok")
    endpoint.receive_stream(good + rfc4475_message("ncl"), TCP, 0.0)
    assert [type(e) for e in events(endpoint)] == [RequestReceived]  # the one before counts
    transmit, close = endpoint.outputs()
    assert isinstance(transmit, Transmit) and status_of(transmit.data) == 400
    assert transmit.peer == TCP and close == CloseConnection(7)
    assert endpoint.stats.received == 2 and endpoint.stats.rejected == 1


def test_stream_too_large_is_513() -> None:
    endpoint = SipEndpoint(max_message_size=300)
    endpoint.receive_stream(request_bytes("MESSAGE", extra="Content-Length: 500\r\n")
                            .replace(b"Content-Length: 0\r\n", b""), TCP, 0.0)
    transmit, close = endpoint.outputs()
    assert isinstance(transmit, Transmit) and status_of(transmit.data) == 513
    assert close == CloseConnection(7)


def test_stream_garbage_closes_the_connection() -> None:
    endpoint = SipEndpoint()
    endpoint.receive_stream(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", TCP, 0.0)
    assert endpoint.outputs() == [CloseConnection(7)] and endpoint.stats.dropped == 1
    endpoint.receive_stream(request_bytes("OPTIONS"), TCP, 1.0)  # a new framer: works again
    assert [type(e) for e in events(endpoint)] == [RequestReceived]


def test_oversized_datagram_is_513() -> None:
    endpoint = SipEndpoint(max_message_size=200)
    endpoint.receive_datagram(request_bytes("OPTIONS"), NAT, 0.0)
    assert [status_of(d) for d in sent(endpoint)] == [513] and events(endpoint) == []


def test_connection_lost_fails_pending_client_transactions() -> None:
    endpoint = SipEndpoint()
    pending = endpoint.send_request(new_request("OPTIONS"), TCP, 0.0)
    elsewhere = endpoint.send_request(new_request("OPTIONS", call_id="c2"),
                                      Peer("tcp", "192.0.2.11", 5060, connection=8), 0.0)
    endpoint.receive_stream(b"OPTIONS sip:x SIP/2.0\r\n", TCP, 0.0)  # half a message
    endpoint.connection_lost(7)
    (event,) = events(endpoint)
    assert isinstance(event, TransactionTimedOut) and event.transaction is pending
    assert pending.state is State.TERMINATED and elsewhere.state is State.TRYING
    assert endpoint.stats.transactions == 1


# ---- RFC 3581 and symmetric responses --------------------------------------------------------
def test_rport_and_received_are_filled_and_the_answer_goes_to_the_source() -> None:
    endpoint = SipEndpoint()
    data = request_bytes("REGISTER", via="SIP/2.0/UDP 10.0.0.5:5060;rport")
    transaction = server_transaction(endpoint, data, 0.0, NAT)
    via = transaction.request.top_via
    assert via is not None and via.params["rport"] == "40123"
    assert via.params["received"] == "203.0.113.7"
    answer(endpoint, transaction, 200, 0.1)
    (output,) = endpoint.outputs()
    assert isinstance(output, Transmit) and output.peer == NAT
    assert parsed_response(output.data).get("via") == \
        "SIP/2.0/UDP 10.0.0.5:5060;rport=40123;branch=z9hG4bKclient1;received=203.0.113.7"


def test_received_only_when_the_host_differs() -> None:
    endpoint = SipEndpoint()
    same = server_transaction(endpoint, request_bytes("OPTIONS"), 0.0, UDP)
    assert same.request.get("via") == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKclient1"
    other = server_transaction(endpoint, request_bytes(
        "OPTIONS", call_id="c2", branch="",
        via="SIP/2.0/UDP pc33.example.com;branch=z9hG4bKclient1, SIP/2.0/UDP proxy:5060"),
        0.0, NAT)
    assert other.request.get("via") == ("SIP/2.0/UDP pc33.example.com;branch=z9hG4bKclient1"
                                        ";received=203.0.113.7, SIP/2.0/UDP proxy:5060")
    assert [v.host for v in other.request.vias] == ["pc33.example.com", "proxy"]


@pytest.mark.parametrize("old", ['received="a;b"', "received", "Received = 10.9.9.9 "])
def test_an_old_received_is_replaced_whole(old: str) -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes(
        "OPTIONS", branch="", via=f"SIP/2.0/UDP h;{old};branch=z9hG4bKq, SIP/2.0/UDP g"),
        0.0, NAT)
    assert transaction.request.get("via") == \
        "SIP/2.0/UDP h;branch=z9hG4bKq;received=203.0.113.7, SIP/2.0/UDP g"
    assert transaction.request.values("via") == [
        "SIP/2.0/UDP h;branch=z9hG4bKq;received=203.0.113.7", "SIP/2.0/UDP g"]


def test_rport_with_same_host_still_gets_received() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes(
        "OPTIONS", via="SIP/2.0/UDP 192.0.2.10:5060;rport"), 0.0, UDP)
    assert transaction.request.get("via") == (
        "SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bKclient1;received=192.0.2.10")


# ---- CANCEL -----------------------------------------------------------------------------------
def cancel_bytes(**kwargs: object) -> bytes:
    return request_bytes("CANCEL", **kwargs)  # type: ignore[arg-type]


def test_cancel_is_answered_200_and_reported() -> None:
    endpoint = SipEndpoint()
    invite = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, invite, 180, 0.1)
    sent(endpoint)
    endpoint.receive_datagram(cancel_bytes(), UDP, 1.0)
    (ok,) = sent(endpoint)
    response = parsed_response(ok)
    assert response.status == 200 and response.get("cseq") == "1 CANCEL"
    assert response.to is not None and response.to.tag == invite.to_tag  # §9.2
    (event,) = events(endpoint)
    assert isinstance(event, CancelReceived) and event.transaction is invite
    answer(endpoint, invite, 487, 1.1)
    assert first_lines(endpoint) == ["SIP/2.0 487 Request Terminated"]
    endpoint.receive_datagram(cancel_bytes(), UDP, 1.2)  # retransmitted CANCEL
    assert sent(endpoint) == [ok] and events(endpoint) == []


def test_cancel_after_the_final_answer_gets_200_without_event() -> None:
    endpoint = SipEndpoint()
    invite = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, invite, 200, 0.1)
    sent(endpoint)
    endpoint.receive_datagram(cancel_bytes(), UDP, 0.2)
    assert first_lines(endpoint) == ["SIP/2.0 200 OK"] and events(endpoint) == []


def test_cancel_without_its_invite_is_481() -> None:
    endpoint = SipEndpoint()
    endpoint.receive_datagram(cancel_bytes(branch="z9hG4bKnothing"), UDP, 0.0)
    assert first_lines(endpoint) == ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    server_transaction(endpoint, request_bytes("OPTIONS", branch="z9hG4bKopt", call_id="o"))
    endpoint.receive_datagram(cancel_bytes(branch="z9hG4bKopt", call_id="o"), UDP, 0.0)
    assert [status_of(d) for d in sent(endpoint)] == [481]  # only INVITEs are cancelled
    assert events(endpoint) == [] and endpoint.stats.rejected == 2


def test_rfc2543_cancel_matches_its_invite() -> None:
    endpoint = SipEndpoint()
    invite = server_transaction(endpoint, request_bytes("INVITE", branch=""), 0.0)
    assert [status_of(d) for d in sent(endpoint)] == [100]
    endpoint.receive_datagram(cancel_bytes(branch=""), UDP, 0.1)
    assert [status_of(d) for d in sent(endpoint)] == [200]
    (event,) = events(endpoint)
    assert isinstance(event, CancelReceived) and event.transaction is invite


# ---- merged requests (§8.2.2.2) ---------------------------------------------------------------
def test_merged_request_is_482() -> None:
    endpoint = SipEndpoint()
    server_transaction(endpoint, request_bytes("INVITE", branch="z9hG4bKpath1"), 0.0)
    assert first_lines(endpoint) == ["SIP/2.0 100 Trying"]
    endpoint.receive_datagram(request_bytes("INVITE", branch="z9hG4bKpath2"), UDP, 0.1)
    assert first_lines(endpoint) == ["SIP/2.0 482 Loop Detected"] and events(endpoint) == []
    # With a To tag (inside a dialog) it is not a merge.
    endpoint.receive_datagram(request_bytes("INVITE", branch="z9hG4bKpath3", to_tag="x"),
                              UDP, 0.2)
    assert [type(e) for e in events(endpoint)] == [RequestReceived]


# ---- client side ------------------------------------------------------------------------------
def test_send_request_adds_our_via_and_matches_by_branch_and_method() -> None:
    endpoint = SipEndpoint(sent_by="198.51.100.9:5060")
    transaction = endpoint.send_request(new_request("OPTIONS"), SERVER, 0.0)
    (options,) = sent(endpoint)
    assert transaction.request.get("via") == \
        f"SIP/2.0/UDP 198.51.100.9:5060;branch={transaction.branch};rport"
    wrong_method = response_to(options, 200).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    endpoint.receive_datagram(wrong_method, SERVER, 0.1)
    assert events(endpoint) == [] and endpoint.stats.dropped == 1
    endpoint.receive_datagram(response_to(options, 200), SERVER, 0.1)
    (event,) = events(endpoint)
    assert isinstance(event, ResponseReceived) and event.transaction is transaction


def test_cancel_of_our_invite_uses_its_branch() -> None:
    endpoint = SipEndpoint()
    invite = endpoint.send_request(new_request("INVITE"), SERVER, 0.0)
    (invite_bytes,) = sent(endpoint)
    endpoint.receive_datagram(response_to(invite_bytes, 180), SERVER, 0.1)
    cancel = endpoint.send_request(invite.make_cancel(), SERVER, 1.0)
    assert cancel.key == (invite.branch, "CANCEL")
    (cancel_bytes_,) = sent(endpoint)
    assert cancel.request.get("cseq") == "1 CANCEL" and cancel.request.uri == invite.request.uri
    endpoint.receive_datagram(response_to(cancel_bytes_, 200), SERVER, 1.1)
    endpoint.receive_datagram(response_to(invite_bytes, 487), SERVER, 1.2)
    got = [(e.response.status, e.transaction) for e in events(endpoint)
           if isinstance(e, ResponseReceived)]
    assert got == [(180, invite), (200, cancel), (487, invite)]
    assert first_lines(endpoint) == ["ACK sip:bob@example.com SIP/2.0"]


def test_a_call_from_both_ends() -> None:
    """Two endpoints wired back to back: INVITE, 180, 200, ACK, BYE, 200."""
    alice, bob = SipEndpoint(sent_by="192.0.2.10:5060"), SipEndpoint(sent_by="192.0.2.20:5060")
    to_bob, to_alice = Peer("udp", "192.0.2.20", 5060), Peer("udp", "192.0.2.10", 5060)

    def deliver(source: SipEndpoint, target: SipEndpoint, peer: Peer, now: float) -> None:
        for data in sent(source):
            target.receive_datagram(data, peer, now)

    invite = alice.send_request(new_request("INVITE"), to_bob, 0.0)
    deliver(alice, bob, to_alice, 0.01)
    (incoming,) = events(bob)
    assert isinstance(incoming, RequestReceived) and incoming.transaction is not None
    uas = Dialog.as_uas(incoming.request, "bob-tag", "<sip:bob@192.0.2.20:5060>")
    for status in (180, 200):
        bob.respond(incoming.transaction, make_response(
            incoming.request, status, to_tag=uas.local_tag,
            headers=[("contact", uas.local_contact or "")]), 0.02)
    deliver(bob, alice, to_bob, 0.03)
    ringing, ok = events(alice)
    assert isinstance(ok, ResponseReceived) and ok.response.status == 200
    uac = Dialog.as_uac(invite.request, ok.response)
    assert uac.id == (uas.call_id, uas.remote_tag, uas.local_tag)
    alice.send_stateless(uac.create_ack(1), to_bob)
    deliver(alice, bob, to_alice, 0.04)
    (ack,) = events(bob)
    assert isinstance(ack, RequestReceived) and ack.transaction is None
    assert uas.receive_request(ack.request) is None
    assert run(bob, 10.0) == []  # the 2xx retransmission stopped
    bye = alice.send_request(uac.create_request("BYE"), to_bob, 5.0)
    deliver(alice, bob, to_alice, 5.01)
    (incoming_bye,) = events(bob)
    assert isinstance(incoming_bye, RequestReceived) and incoming_bye.transaction is not None
    assert uas.receive_request(incoming_bye.request) is None
    answer(bob, incoming_bye.transaction, 200, 5.02)
    deliver(bob, alice, to_bob, 5.03)
    (bye_ok,) = events(alice)
    assert isinstance(bye_ok, ResponseReceived) and bye_ok.transaction is bye
    assert bye.state is State.COMPLETED


# ---- robustness -------------------------------------------------------------------------------
def test_mutated_corpus_never_raises() -> None:
    corpus = [rfc4475_message(e["file"].removesuffix(".dat")) for e in rfc4475_index()]
    rng = random.Random(4475)
    endpoint = SipEndpoint()
    for round_ in range(3000):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[position] = rng.choice(b" \t\r\n:;,<>\"@=%/\x00\xff0z")
            elif action < 0.7:
                del data[position:position + rng.randint(1, 20)]
            else:
                data[position:position] = rng.choice((b"\r\n", b";;", b" , ", b"z9hG4bK"))
        peer = Peer("tcp", "192.0.2.1", 5060, connection=round_ % 5) if round_ % 3 == 0 \
            else NAT
        if peer.reliable:
            endpoint.receive_stream(bytes(data), peer, round_ * 0.01)
        else:
            endpoint.receive_datagram(bytes(data), peer, round_ * 0.01)
        endpoint.outputs()
        for event in events(endpoint):
            if isinstance(event, RequestReceived) and event.transaction is not None:
                answer(endpoint, event.transaction, 500, round_ * 0.01)
    endpoint.handle_timer(1000.0)
    stats = endpoint.stats
    assert stats.received > 2000 and stats.rejected > 500 and stats.dropped > 500
    assert stats.transactions == 0 and endpoint.get_timer() is None


def test_throughput_is_reasonable() -> None:
    """A rough guard for the per-message path: OPTIONS in, 200 out."""
    import time

    endpoint = SipEndpoint()
    messages = [request_bytes("OPTIONS", branch=f"z9hG4bK{i}", call_id=f"c{i}")
                for i in range(2000)]
    started = time.perf_counter()
    for i, data in enumerate(messages):
        endpoint.receive_datagram(data, NAT, i * 0.001)
        event = endpoint.next_event()
        assert isinstance(event, RequestReceived) and event.transaction is not None
        answer(endpoint, event.transaction, 200, i * 0.001)
        endpoint.outputs()
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{len(messages) / elapsed:.0f} messages/s"


def test_a_retransmission_is_answered_where_it_came_from() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0, NAT)
    answer(endpoint, transaction, 486, 0.1)
    sent(endpoint)
    rebound = Peer("udp", "203.0.113.7", 40999)  # the NAT gave the phone a new port
    endpoint.receive_datagram(request_bytes("INVITE"), rebound, 0.3)
    assert [o.peer for o in endpoint.outputs() if isinstance(o, Transmit)] == [rebound]
    endpoint.handle_timer(0.6)  # timer G follows it
    assert [o.peer for o in endpoint.outputs() if isinstance(o, Transmit)] == [rebound]
    endpoint.receive_stream(request_bytes("INVITE"), TCP, 0.7)  # same branch, over TCP
    assert [o.peer for o in endpoint.outputs() if isinstance(o, Transmit)] == [TCP]


# Numbers a reader must refuse: digits that are not ASCII (superscript two, Arabic-Indic one,
# full-width five: str.isdigit() is True for all, int() reads two of them) and 5,000-digit
# numbers (past int()'s 4,300-digit limit, let alone the headers' maxima).
HOSTILE_NUMBERS = {"superscript": "²", "arabic-indic": "١", "full-width": "５",
                   "5000-digits": "7" * 5000, "5000-digits-leading-1": "1" + "0" * 4999}


def _with_number(field: str, number: str, call_id: str) -> bytes:
    """An OPTIONS with `number` as the value of `field`; the body makes a Content-Length read
    as 1 or 5 look plausible."""
    data = request_bytes("OPTIONS", branch=f"z9hG4bK{call_id}", call_id=call_id)
    if field == "CSeq":
        return data.replace(b"CSeq: 1 OPTIONS", f"CSeq: {number} OPTIONS".encode())
    if field == "Max-Forwards":
        return data.replace(b"Max-Forwards: 70", f"Max-Forwards: {number}".encode())
    if field == "Expires":
        return data.replace(b"Content-Length: 0", f"Expires: {number}\r\nContent-Length: 0"
                            .encode())
    assert field == "Content-Length"
    return data.replace(b"Content-Length: 0\r\n\r\n",
                        f"Content-Length: {number}\r\n\r\n".encode() + b"0123456789")


def _answers_by_call_id(endpoint: SipEndpoint, now: float) -> dict[str, list[int]]:
    """Answer every request that reached the TU 200, then gather what was sent, per Call-ID."""
    for event in events(endpoint):
        assert isinstance(event, RequestReceived) and event.transaction is not None
        answer(endpoint, event.transaction, 200, now)
    answers: dict[str, list[int]] = {}
    for output in endpoint.outputs():
        if isinstance(output, Transmit):
            response = parsed_response(output.data)
            answers.setdefault(response.call_id or "", []).append(response.status)
    return answers


@pytest.mark.parametrize("field", ["CSeq", "Content-Length", "Max-Forwards", "Expires"])
def test_hostile_numbers_are_answered_400_once_and_never_raise(field: str) -> None:
    endpoint = SipEndpoint()
    for index, (name, number) in enumerate(HOSTILE_NUMBERS.items()):
        call_id = f"{field}-{name}"
        endpoint.receive_datagram(_with_number(field, number, call_id), NAT, 0.0)
        assert _answers_by_call_id(endpoint, 0.0) == {call_id: [400]}, "over UDP"
        tcp = Peer("tcp", "192.0.2.1", 5060, connection=100 + index)
        endpoint.receive_stream(_with_number(field, number, call_id + "-tcp"), tcp, 0.0)
        assert _answers_by_call_id(endpoint, 0.0) == {call_id + "-tcp": [400]}, "over TCP"
    endpoint.handle_timer(1000.0)
    assert endpoint.stats.transactions == 0 and endpoint.stats.rejected == 10


def test_300_pipelined_options_in_one_read_are_each_answered_once() -> None:
    """One receive_stream call with 300 OPTIONS, every fourth with a hostile CSeq,
    Max-Forwards or Expires (a bad Content-Length would end the stream: tested above), and
    keep-alive CRLFs between some: each is answered exactly once, on the same connection."""
    fields = ["CSeq", "Max-Forwards", "Expires"]
    numbers = list(HOSTILE_NUMBERS.values())
    stream, expected = [], {}
    for i in range(300):
        call_id = f"pipelined-{i}"
        if i % 4 == 3:
            stream.append(_with_number(fields[i % 3], numbers[i % len(numbers)], call_id))
            expected[call_id] = [400]
        else:
            stream.append(request_bytes("OPTIONS", branch=f"z9hG4bKp{i}", call_id=call_id))
            expected[call_id] = [200]
        if i % 10 == 0:
            stream.append(b"\r\n\r\n")
    endpoint = SipEndpoint()
    endpoint.receive_stream(b"".join(stream), TCP, 0.0)
    assert _answers_by_call_id(endpoint, 0.0) == expected
    assert endpoint.stats.received == 300 and endpoint.stats.rejected == 75
    assert endpoint.stats.transactions == 0  # TCP: timer J is zero


def test_a_stateless_challenge_leaves_no_transaction_and_its_repeat_gets_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone that resends its REGISTER before the 401 arrived must get that 401 again, byte
    for byte: a new nonce and To tag reaching it after it moved on is a stray response (SIPp
    fails the registration on it). The repeat is not parsed; from another host (where the
    nonce, bound to the address, is worth nothing) the request is handled afresh."""
    endpoint = SipEndpoint()
    original = request_bytes("REGISTER")
    endpoint.receive_datagram(original, UDP, 0.0)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    endpoint.respond_statelessly(event.transaction, make_response(event.request, 401,
                                                                  to_tag="first"))
    (challenge,) = sent(endpoint)
    assert challenge.startswith(b"SIP/2.0 401 ")
    assert endpoint.stats.transactions == 0 and endpoint.get_timer() is None

    real_parse = endpoint_module.parse_datagram

    def refuse(data: bytes) -> object:
        raise AssertionError("a repeat was parsed")

    monkeypatch.setattr(endpoint_module, "parse_datagram", refuse)
    moved = Peer("udp", UDP.host, UDP.port + 1)  # same host, the NAT moved the port
    for attempt, peer in enumerate([UDP, UDP, moved], start=1):
        endpoint.receive_datagram(original, peer, 0.5 * attempt)
        assert events(endpoint) == []
        (output,) = endpoint.outputs()
        assert isinstance(output, Transmit) and output.peer == peer
        assert output.data == challenge
    assert endpoint.stats.retransmissions_absorbed == 3

    monkeypatch.setattr(endpoint_module, "parse_datagram", real_parse)
    endpoint.receive_datagram(original, NAT, 2.0)  # another host: a request of its own
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    endpoint.respond_statelessly(event.transaction, make_response(event.request, 401,
                                                                  to_tag="second"))
    (fresh,) = sent(endpoint)
    assert fresh != challenge and b"tag=second" in fresh


def test_identical_datagrams_are_absorbed_before_parsing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under overload every request is sent again; a byte-identical copy is matched by its
    datagram's digest, unparsed, in every state of its transaction, and not after it ends."""
    endpoint = SipEndpoint()
    original = request_bytes("REGISTER")
    transaction = server_transaction(endpoint, original, 0.0)
    real_parse = endpoint_module.parse_datagram

    def refuse(data: bytes) -> object:
        raise AssertionError("a repeat was parsed")

    monkeypatch.setattr(endpoint_module, "parse_datagram", refuse)
    endpoint.receive_datagram(original, UDP, 0.4)  # Trying: nothing to resend yet
    assert events(endpoint) == [] and sent(endpoint) == []
    answer(endpoint, transaction, 200, 0.5)
    assert first_lines(endpoint) == ["SIP/2.0 200 OK"]
    endpoint.receive_datagram(original, NAT, 1.0)  # Completed: the answer again, to the copy
    assert [o.peer for o in endpoint.outputs() if isinstance(o, Transmit)] == [NAT]
    assert events(endpoint) == [] and endpoint.stats.retransmissions_absorbed == 2

    monkeypatch.setattr(endpoint_module, "parse_datagram", real_parse)
    respaced = original.replace(b"Max-Forwards: 70", b"Max-Forwards:  70")
    endpoint.receive_datagram(respaced, UDP, 1.5)  # other bytes, same branch: still a repeat
    assert first_lines(endpoint) == ["SIP/2.0 200 OK"] and events(endpoint) == []

    run(endpoint, 100.0)  # timer J ends the transaction
    assert endpoint.stats.transactions == 0
    endpoint.receive_datagram(original, UDP, 100.0)  # the same bytes now start anew
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is not transaction



def _refuse_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(data: bytes) -> object:
        raise AssertionError("the ACK was parsed")

    monkeypatch.setattr(endpoint_module, "parse_datagram", refuse)


def test_the_ack_of_a_failure_is_absorbed_before_parsing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 603, 0.1)
    assert first_lines(endpoint) == ["SIP/2.0 603 Decline"]
    ack = request_bytes("ACK", to_tag=transaction.to_tag, cseq_method="ACK")
    _refuse_parsing(monkeypatch)
    endpoint.receive_datagram(ack, UDP, 0.2)
    assert transaction.state is State.CONFIRMED and endpoint.get_timer() == 5.2  # timer I
    endpoint.receive_datagram(ack, UDP, 0.3)  # its retransmission
    assert endpoint.stats.retransmissions_absorbed == 1
    assert events(endpoint) == [] and sent(endpoint) == []


def test_the_ack_of_a_stateless_challenge_is_dropped_before_parsing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    endpoint.respond_statelessly(transaction, make_response(
        transaction.request, 407, to_tag=transaction.to_tag))
    assert first_lines(endpoint) == ["SIP/2.0 407 Proxy Authentication Required"]
    real_parse, parsed = endpoint_module.parse_datagram, []

    def counting(data: bytes) -> object:
        parsed.append(data)
        return real_parse(data)

    monkeypatch.setattr(endpoint_module, "parse_datagram", counting)
    # Another To tag on that branch is not that challenge's ACK: parsed (it might be a 2xx's).
    other = request_bytes("ACK", to_tag="other", cseq_method="ACK")
    endpoint.receive_datagram(other, UDP, 0.1)
    assert parsed == [other] and endpoint.stats.dropped == 1
    endpoint.receive_datagram(request_bytes("ACK", to_tag=transaction.to_tag,
                                            cseq_method="ACK"), UDP, 0.2)
    assert parsed == [other] and endpoint.stats.dropped == 2
    assert events(endpoint) == [] and sent(endpoint) == []


def _challenge_statelessly(endpoint: SipEndpoint, data: bytes, now: float) -> None:
    endpoint.receive_datagram(data, UDP, now)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    endpoint.respond_statelessly(event.transaction, make_response(
        event.request, 407, to_tag=event.transaction.to_tag))
    assert len(sent(endpoint)) == 1


def test_the_kept_stateless_answers_are_bounded_in_bytes() -> None:
    """An answer copies its request's Via, From, To...: a flood of 40 kB INVITEs, each
    challenged, keeps at most MAX_STATELESS_ANSWER_BYTES of answers, the oldest going first
    (a repeat of the first is then handled afresh, not answered from memory)."""
    endpoint = SipEndpoint()
    padding = "x" * 40_000
    flood = [request_bytes("INVITE", branch=f"z9hG4bKflood{i}", call_id=f"{padding}-{i}")
             for i in range(600)]  # 24 MB of answers offered to a 16 MB budget
    for i, data in enumerate(flood):
        _challenge_statelessly(endpoint, data, i * 0.001)
    kept = endpoint._stateless_bytes
    assert kept <= endpoint_module.MAX_STATELESS_ANSWER_BYTES
    assert kept == sum(len(answer) for _, answer in endpoint._stateless.values())
    endpoint.receive_datagram(flood[-1], UDP, 1.0)  # the newest is still kept
    assert events(endpoint) == [] and len(sent(endpoint)) == 1
    _challenge_statelessly(endpoint, flood[0], 1.1)  # the oldest went: a request again


def test_a_challenge_with_a_huge_branch_is_not_remembered_and_its_ack_still_dropped() -> None:
    """The challenges remembered for their ACKs are keyed by sender-chosen text: a 30 kB
    branch is not kept (16,384 of them would be gigabytes); its ACK is parsed, and dropped."""
    endpoint = SipEndpoint()
    branch = "z9hG4bK" + "b" * 30_000
    invite = request_bytes("INVITE", branch=branch)
    endpoint.receive_datagram(invite, UDP, 0.0)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    to_tag = event.transaction.to_tag
    endpoint.respond_statelessly(event.transaction, make_response(event.request, 407,
                                                                  to_tag=to_tag))
    assert len(sent(endpoint)) == 1 and len(endpoint._challenged) == 0
    endpoint.receive_datagram(request_bytes("ACK", branch=branch, to_tag=to_tag,
                                            cseq_method="ACK"), UDP, 0.1)
    assert events(endpoint) == [] and sent(endpoint) == [] and endpoint.stats.dropped == 1


def _via_lines(ack: bytes, lines: bytes) -> bytes:
    head, _, rest = ack.partition(b"\r\nVia: ")
    return head + b"\r\n" + lines + b"\r\n" + rest.split(b"\r\n", 1)[1]


ACK_SHAPES = {
    "plain": lambda ack: ack,
    "compact and lower case": lambda ack: ack.replace(b"\r\nVia: ", b"\r\nv: ").replace(
        b"\r\nTo: ", b"\r\nt:").replace(b"SIP/2.0/UDP", b"sip/2.0/udp"),
    "odd spacing": lambda ack: ack.replace(b"\r\nVia: ", b"\r\nvIA \t:  ").replace(
        b"\r\nTo: ", b"\r\nTO :"),
    "folded Via": lambda ack: ack.replace(b";branch=", b"\r\n ;branch="),
    "folded To": lambda ack: ack.replace(b";tag=", b"\r\n\t;tag="),
    "Via folded after its branch": lambda ack: ack.replace(
        b"z9hG4bKclient1", b"z9hG4bKclient1\r\n ;branch=z9hG4bKclient2"),
    "To folded after its tag": lambda ack: ack.replace(
        b"\r\nCall-ID:", b"\r\n ;tag=other\r\nCall-ID:"),
    "bad second Via element": lambda ack: ack.replace(b"\r\nMax-Forwards:",
                                                      b", ;;\r\nMax-Forwards:"),
    "bare LF after the branch": lambda ack: ack.replace(b"z9hG4bKclient1",
                                                        b"z9hG4bKclient1\n;x=y"),
    "empty Via": lambda ack: ack.replace(b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch="
                                         b"z9hG4bKclient1", b"Via: "),
    "two Via elements": lambda ack: ack.replace(
        b"\r\nMax-Forwards:", b", SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx\r\nMax-Forwards:"),
    "second Via line": lambda ack: ack.replace(
        b"\r\nMax-Forwards:", b"\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx\r\n"
        b"Max-Forwards:"),
    "bad second Via line": lambda ack: ack.replace(b"\r\nMax-Forwards:",
                                                   b"\r\nVia: ;;\r\nMax-Forwards:"),
    "bare LF inside the Via line": lambda ack: ack.replace(
        b";branch=", b"\nX-Note: a;branch="),
    "bare LF line ends": lambda ack: ack.replace(b"\r\n", b"\n"),
    "Via in the body only": lambda ack: _via_lines(ack, b"X-Moved: 1").replace(
        b"Content-Length: 0\r\n\r\n", b"Content-Length: 60\r\n\r\n\r\nVia: SIP/2.0/UDP "
        b"192.0.2.10:5060;branch=z9hG4bKclient1\r\n\r\n" + b"x" * 5),
    "a quoted branch": lambda ack: ack.replace(b"branch=z9hG4bKclient1",
                                               b'branch="z9hG4bKclient1"'),
    "two To lines": lambda ack: ack.replace(b"\r\nCall-ID:", b"\r\nTo: <sip:x@y>\r\nCall-ID:"),
    "unreadable To": lambda ack: ack.replace(b"To: <sip:bob@example.com>", b"To: <sip:bob"),
    "no To": lambda ack: b"\r\n".join(line for line in ack.split(b"\r\n")
                                      if not line.startswith(b"To:")),
    "broken request line": lambda ack: ack.replace(b" SIP/2.0\r\n", b"\r\n", 1),
    "request line with extra spaces": lambda ack: ack.replace(b"ACK ", b"ACK  ", 1),
    "header-like text in the request line": lambda ack: ack.replace(
        b" SIP/2.0\r\n", b";x=\r\nVia:1 SIP/2.0\r\n", 1),
    "RFC 2543 branch": lambda ack: ack.replace(b"z9hG4bKclient1", b"oldstyle1"),
    "other branch": lambda ack: ack.replace(b"z9hG4bKclient1", b"z9hG4bKclient2"),
    "other port": lambda ack: ack.replace(b"192.0.2.10:5060;", b"192.0.2.10:5062;"),
    "host in upper case": lambda ack: ack.replace(b"UDP 192.0.2.10", b"UDP EXAMPLE.COM"),
    "CSeq broken": lambda ack: ack.replace(b"CSeq: 1 ACK", b"CSeq: x ACK"),
}


def _outcome(endpoint: SipEndpoint, transactions: list[object]) -> tuple[object, ...]:
    stats = endpoint.stats
    return ([t.state for t in transactions],  # type: ignore[attr-defined]
            [type(e).__name__ for e in events(endpoint)], first_lines(endpoint),
            stats.dropped, stats.retransmissions_absorbed, stats.received, stats.rejected,
            endpoint.get_timer())


@pytest.mark.parametrize("shape", sorted(ACK_SHAPES))
@pytest.mark.parametrize("answered", ["603", "challenged", "200", "unanswered"])
def test_acks_absorbed_before_parsing_end_as_parsed_ones(
        monkeypatch: pytest.MonkeyPatch, shape: str, answered: str) -> None:
    """The quick reading of an ACK (`_ack_fields`) and the parser lead to the same outcome,
    for every shape of ACK, whatever its INVITE got."""
    outcomes = []
    for quick in (True, False):
        if not quick:
            monkeypatch.setattr(endpoint_module, "_ack_fields", lambda data: None)
        endpoint = SipEndpoint()
        transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
        sent(endpoint)
        if answered == "challenged":
            endpoint.respond_statelessly(transaction, make_response(
                transaction.request, 407, to_tag=transaction.to_tag))
        elif answered != "unanswered":
            answer(endpoint, transaction, int(answered), 0.1)
        sent(endpoint)
        ack = ACK_SHAPES[shape](request_bytes("ACK", to_tag=transaction.to_tag,
                                              cseq_method="ACK"))
        for now in (0.2, 0.3):  # the ACK and its retransmission
            endpoint.receive_datagram(ack, UDP, now)
        outcomes.append(_outcome(endpoint, [transaction]))
    assert outcomes[0] == outcomes[1]
