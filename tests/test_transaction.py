"""The four transaction state machines of RFC 3261 figures 5-8 (with RFC 6026's Accepted
state), driven through the endpoint with explicit time: every transition, the exact
retransmission times, absorption of repeats, and what changes on TCP.

T1 = 0.5 s, T2 = 4 s, T4 = 5 s (the defaults), so 64*T1 = 32 s.
"""

from __future__ import annotations

import pytest

from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.events import (
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    Transmit,
)
from softswitch.sip.message import Request, make_response
from softswitch.sip.parser import parse_datagram
from softswitch.sip.transaction import (
    TRANSITIONS,
    ClientTransaction,
    Kind,
    ServerTransaction,
    State,
    Timer,
    TimerHeap,
    Timers,
)

UDP = Peer("udp", "192.0.2.10", 5060)
TCP = Peer("tcp", "192.0.2.10", 5060, connection=7)
SERVER = Peer("udp", "198.51.100.1", 5060)


def request_bytes(method: str, *, branch: str = "z9hG4bKclient1", cseq: int = 1,
                  cseq_method: str | None = None, call_id: str = "call-1",
                  from_tag: str = "alice-tag", to_tag: str | None = None,
                  via: str = "SIP/2.0/UDP 192.0.2.10:5060", uri: str = "sip:bob@example.com",
                  extra: str = "") -> bytes:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    branch_param = f";branch={branch}" if branch else ""
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}{branch_param}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: \"Alice\" <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.10:5060>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def new_request(method: str, **kwargs: object) -> Request:
    """A request of ours, without Via (the endpoint adds it)."""
    lines = request_bytes(method, **kwargs).split(b"\r\n")  # type: ignore[arg-type]
    message = parse_datagram(b"\r\n".join(line for line in lines if not line.startswith(b"Via"))
                             ).message
    assert isinstance(message, Request)
    return message


def response_to(sent: bytes, status: int, to_tag: str | None = "bob-tag") -> bytes:
    request = parse_datagram(sent).message
    assert isinstance(request, Request)
    return make_response(request, status, to_tag=to_tag).to_bytes()


def sent(endpoint: SipEndpoint) -> list[bytes]:
    return [o.data for o in endpoint.outputs() if isinstance(o, Transmit)]


def first_lines(endpoint: SipEndpoint) -> list[str]:
    return [data.split(b"\r\n", 1)[0].decode() for data in sent(endpoint)]


def events(endpoint: SipEndpoint) -> list[Event]:
    out = []
    while (event := endpoint.next_event()) is not None:
        out.append(event)
    return out


def statuses(endpoint: SipEndpoint) -> list[int]:
    """The statuses of the responses passed up since the last look."""
    out = []
    for event in events(endpoint):
        assert isinstance(event, ResponseReceived)
        out.append(event.response.status)
    return out


def run(endpoint: SipEndpoint, until: float) -> list[tuple[float, str]]:
    """Fire each timer due by `until` exactly at its deadline: (time, start line) sent."""
    log = []
    while (deadline := endpoint.get_timer()) is not None and deadline <= until:
        endpoint.handle_timer(deadline)
        log += [(deadline, line) for line in first_lines(endpoint)]
    return log


def received(endpoint: SipEndpoint, data: bytes, now: float, peer: Peer = UDP) -> None:
    if peer.reliable:
        endpoint.receive_stream(data, peer, now)
    else:
        endpoint.receive_datagram(data, peer, now)


def server_transaction(endpoint: SipEndpoint, data: bytes, now: float = 0.0,
                       peer: Peer = UDP) -> ServerTransaction:
    received(endpoint, data, now, peer)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event.transaction


def answer(endpoint: SipEndpoint, transaction: ServerTransaction, status: int,
           now: float) -> None:
    endpoint.respond(transaction, make_response(transaction.request, status,
                                                to_tag=transaction.to_tag), now)


INVITE_A = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # timer A: T1, doubling, no cap
NON_INVITE_E = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # E: capped at T2


# ---- the tables -----------------------------------------------------------------------------
def test_every_timer_has_a_duration_and_tcp_skips_retransmissions() -> None:
    timers = Timers()
    assert [timers.duration(t, False) for t in (Timer.A, Timer.B, Timer.D, Timer.E, Timer.F,
                                                 Timer.G, Timer.H, Timer.I, Timer.J, Timer.K)] \
        == [0.5, 32.0, 32.0, 0.5, 32.0, 0.5, 32.0, 5.0, 32.0, 5.0]
    assert [timers.duration(t, True) for t in (Timer.A, Timer.E, Timer.G)] == [None] * 3
    assert [timers.duration(t, True) for t in (Timer.D, Timer.I, Timer.J, Timer.K)] == [0.0] * 4
    assert timers.duration(Timer.RETRANSMIT_2XX, True) == 0.5  # §13.3.1.4: end to end
    assert Timers(t1=1.0).duration(Timer.B, False) == 64.0


def test_transition_table_covers_every_timer_transition() -> None:
    kinds_with_timeouts = {(kind, trigger) for (kind, _, trigger), target in TRANSITIONS.items()
                           if target is State.TERMINATED}
    assert kinds_with_timeouts == {
        (Kind.INVITE_CLIENT, Timer.B), (Kind.INVITE_CLIENT, Timer.D),
        (Kind.INVITE_CLIENT, Timer.M), (Kind.NON_INVITE_CLIENT, Timer.F),
        (Kind.NON_INVITE_CLIENT, Timer.K), (Kind.INVITE_SERVER, Timer.H),
        (Kind.INVITE_SERVER, Timer.I), (Kind.INVITE_SERVER, Timer.L),
        (Kind.NON_INVITE_SERVER, Timer.J),
    }


# ---- figure 5: INVITE client ----------------------------------------------------------------
def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("INVITE"), SERVER, 0.0)
    assert first_lines(endpoint) == ["INVITE sip:bob@example.com SIP/2.0"]
    assert transaction.state is State.CALLING
    log = run(endpoint, 100.0)
    assert [t for t, _ in log] == INVITE_A
    assert {line for _, line in log} == {"INVITE sip:bob@example.com SIP/2.0"}
    (timeout,) = events(endpoint)
    assert isinstance(timeout, TransactionTimedOut) and timeout.transaction is transaction
    assert transaction.state is State.TERMINATED
    assert endpoint.get_timer() is None and endpoint.stats.transactions == 0


def test_invite_client_provisional_stops_retransmission_and_timeout() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("INVITE"), SERVER, 0.0)
    (invite,) = sent(endpoint)
    endpoint.receive_datagram(response_to(invite, 180), SERVER, 0.3)
    (event,) = events(endpoint)
    assert isinstance(event, ResponseReceived) and event.response.status == 180
    assert transaction.state is State.PROCEEDING
    assert run(endpoint, 500.0) == [] and events(endpoint) == []  # no A, no B in Proceeding
    endpoint.receive_datagram(response_to(invite, 183), SERVER, 1.0)
    assert statuses(endpoint) == [183]


def test_invite_client_failure_is_acked_by_the_transaction() -> None:
    endpoint = SipEndpoint()
    request = new_request("INVITE", extra="Route: <sip:proxy.example.com;lr>\r\n")
    transaction = endpoint.send_request(request, SERVER, 0.0)
    (invite,) = sent(endpoint)
    assert run(endpoint, 0.7) == [(0.5, "INVITE sip:bob@example.com SIP/2.0")]
    busy = response_to(invite, 486)
    endpoint.receive_datagram(busy, SERVER, 0.7)
    (event,) = events(endpoint)
    assert isinstance(event, ResponseReceived) and event.response.status == 486
    assert transaction.state is State.COMPLETED
    (ack_bytes,) = sent(endpoint)
    ack = parse_datagram(ack_bytes).message
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == request.uri
    assert ack.get("cseq") == "1 ACK" and ack.get("to") == "<sip:bob@example.com>;tag=bob-tag"
    assert ack.top_via is not None and ack.top_via.branch == transaction.branch
    assert ack.get_all("route") == ["<sip:proxy.example.com;lr>"]
    # The 486 again: the ACK again, nothing for the TU.
    endpoint.receive_datagram(busy, SERVER, 1.0)
    assert sent(endpoint) == [ack_bytes] and events(endpoint) == []
    assert endpoint.stats.retransmissions_absorbed == 1
    assert endpoint.get_timer() == 32.7  # timer D; A and B stopped
    assert run(endpoint, 100.0) == []
    assert transaction.state is State.TERMINATED and events(endpoint) == []


def test_invite_client_timer_d_fires_at_32_seconds() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("INVITE"), SERVER, 0.0)
    (invite,) = sent(endpoint)
    endpoint.receive_datagram(response_to(invite, 180), SERVER, 0.1)
    endpoint.receive_datagram(response_to(invite, 404), SERVER, 2.0)
    assert endpoint.get_timer() == 34.0
    endpoint.handle_timer(33.9)
    assert transaction.state is State.COMPLETED
    endpoint.handle_timer(34.0)
    assert transaction.state is State.TERMINATED


def test_invite_client_passes_every_2xx_up_until_timer_m() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("INVITE"), SERVER, 0.0)
    (invite,) = sent(endpoint)
    ok = response_to(invite, 200)
    endpoint.receive_datagram(ok, SERVER, 0.2)
    endpoint.receive_datagram(ok, SERVER, 0.7)
    assert statuses(endpoint) == [200, 200]
    assert sent(endpoint) == []  # the 2xx's ACK is the dialog's (send_stateless)
    assert transaction.state is State.ACCEPTED
    endpoint.receive_datagram(response_to(invite, 500), SERVER, 1.0)  # after a 2xx: absorbed
    assert events(endpoint) == []
    assert run(endpoint, 100.0) == [] and transaction.state is State.TERMINATED
    assert events(endpoint) == []  # timer M is no timeout
    endpoint.receive_datagram(ok, SERVER, 40.0)
    assert events(endpoint) == [] and endpoint.stats.dropped == 1  # stray now


def test_invite_client_over_tcp_never_retransmits() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("INVITE"), TCP, 0.0)
    (invite,) = sent(endpoint)
    assert endpoint.get_timer() == 32.0  # only timer B
    endpoint.receive_stream(response_to(invite, 603), TCP, 1.0)
    assert first_lines(endpoint) == ["ACK sip:bob@example.com SIP/2.0"]
    assert transaction.state is State.TERMINATED  # timer D is zero on TCP
    assert endpoint.get_timer() is None


def test_invite_client_timeout_over_tcp() -> None:
    endpoint = SipEndpoint()
    endpoint.send_request(new_request("INVITE"), TCP, 0.0)
    sent(endpoint)
    assert run(endpoint, 100.0) == []
    assert [type(e) for e in events(endpoint)] == [TransactionTimedOut]


# ---- figure 6: non-INVITE client ------------------------------------------------------------
def test_non_invite_client_timer_e_caps_at_t2_until_timer_f() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("OPTIONS"), SERVER, 0.0)
    sent(endpoint)
    assert transaction.state is State.TRYING
    log = run(endpoint, 100.0)
    assert [t for t, _ in log] == NON_INVITE_E
    (timeout,) = events(endpoint)
    assert isinstance(timeout, TransactionTimedOut) and transaction.state is State.TERMINATED


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("BYE", to_tag="bob-tag"), SERVER, 0.0)
    (bye,) = sent(endpoint)
    endpoint.receive_datagram(response_to(bye, 100), SERVER, 0.2)
    assert transaction.state is State.PROCEEDING
    assert statuses(endpoint) == [100]
    assert [t for t, _ in run(endpoint, 10.0)] == [0.5, 4.5, 8.5]
    endpoint.receive_datagram(response_to(bye, 200), SERVER, 10.0)
    assert transaction.state is State.COMPLETED
    assert statuses(endpoint) == [200]
    endpoint.receive_datagram(response_to(bye, 200), SERVER, 11.0)  # retransmission
    assert events(endpoint) == [] and endpoint.stats.retransmissions_absorbed == 1
    assert endpoint.get_timer() == 15.0  # timer K = T4
    assert run(endpoint, 100.0) == [] and transaction.state is State.TERMINATED
    assert events(endpoint) == []


def test_non_invite_client_final_from_trying() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("REGISTER"), SERVER, 0.0)
    (register,) = sent(endpoint)
    endpoint.receive_datagram(response_to(register, 401), SERVER, 0.1)
    assert transaction.state is State.COMPLETED and transaction.response is not None
    assert transaction.response.status == 401
    assert run(endpoint, 100.0) == []  # no E after the final


def test_non_invite_client_over_tcp() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("OPTIONS"), TCP, 0.0)
    (options,) = sent(endpoint)
    assert endpoint.get_timer() == 32.0  # F only
    endpoint.receive_stream(response_to(options, 200), TCP, 0.1)
    assert transaction.state is State.TERMINATED  # K is zero


# ---- figure 7: INVITE server ----------------------------------------------------------------
def test_invite_server_sends_100_trying_with_the_outputs_of_its_step() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    assert transaction.state is State.PROCEEDING and endpoint.get_timer() is None
    # The TU has handled the event without answering: the step's outputs carry the 100.
    assert first_lines(endpoint) == ["SIP/2.0 100 Trying"]
    assert sent(endpoint) == [] and run(endpoint, 100.0) == []  # once
    endpoint.receive_datagram(request_bytes("INVITE"), UDP, 0.5)  # retransmission
    assert first_lines(endpoint) == ["SIP/2.0 100 Trying"] and events(endpoint) == []
    assert endpoint.stats.retransmissions_absorbed == 1


def test_invite_server_no_100_when_the_tu_answers_at_once() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 180, 0.0)
    assert first_lines(endpoint) == ["SIP/2.0 180 Ringing"]
    assert run(endpoint, 10.0) == []
    endpoint.receive_datagram(request_bytes("INVITE"), UDP, 1.0)  # the latest 1xx again
    assert first_lines(endpoint) == ["SIP/2.0 180 Ringing"]


def test_invite_server_a_final_failure_at_once_goes_without_100() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 407, 0.0)  # a digest challenge, in the same step
    assert first_lines(endpoint) == ["SIP/2.0 407 Proxy Authentication Required"]


def test_invite_server_a_stateless_challenge_goes_without_100() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    endpoint.respond_statelessly(transaction, make_response(
        transaction.request, 407, to_tag=transaction.to_tag))  # forgets the transaction
    assert first_lines(endpoint) == ["SIP/2.0 407 Proxy Authentication Required"]
    assert transaction.state is State.TERMINATED and endpoint.get_timer() is None


def test_invite_server_a_2xx_at_once_is_preceded_by_100() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 200, 0.0)
    assert first_lines(endpoint) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]


def test_invite_server_timer_g_until_timer_h() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 180, 0.1)
    answer(endpoint, transaction, 486, 1.0)
    assert first_lines(endpoint) == ["SIP/2.0 180 Ringing", "SIP/2.0 486 Busy Here"]
    assert transaction.state is State.COMPLETED
    log = run(endpoint, 100.0)
    assert [t for t, _ in log] == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert {line for _, line in log} == {"SIP/2.0 486 Busy Here"}
    (timeout,) = events(endpoint)
    assert isinstance(timeout, TransactionTimedOut) and timeout.transaction is transaction
    assert transaction.state is State.TERMINATED and endpoint.stats.transactions == 0


def test_invite_server_ack_confirms_then_timer_i() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 404, 0.1)
    (not_found,) = sent(endpoint)
    endpoint.receive_datagram(request_bytes("INVITE"), UDP, 0.3)  # the final again
    assert sent(endpoint) == [not_found]
    ack = request_bytes("ACK", to_tag=transaction.to_tag, cseq_method="ACK")
    endpoint.receive_datagram(ack, UDP, 0.4)
    assert transaction.state is State.CONFIRMED and events(endpoint) == []
    assert endpoint.get_timer() == 5.4  # timer I = T4, and G stopped
    endpoint.receive_datagram(ack, UDP, 1.0)  # ACK retransmission absorbed
    endpoint.receive_datagram(request_bytes("INVITE"), UDP, 1.1)  # absorbed, not answered
    assert sent(endpoint) == [] and events(endpoint) == []
    assert run(endpoint, 100.0) == [] and transaction.state is State.TERMINATED
    assert events(endpoint) == []


def test_invite_server_retransmits_2xx_until_the_ack() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 200, 1.0)
    assert first_lines(endpoint) == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert transaction.state is State.ACCEPTED
    assert [t for t, _ in run(endpoint, 9.0)] == [1.5, 2.5, 4.5, 8.5]
    endpoint.receive_datagram(request_bytes("INVITE"), UDP, 9.5)  # the 2xx again
    assert first_lines(endpoint) == ["SIP/2.0 200 OK"]
    # The ACK of a 2xx has a branch of its own (§17.1.1.1) and reaches the TU once.
    ack = request_bytes("ACK", branch="z9hG4bKack1", to_tag=transaction.to_tag,
                        cseq_method="ACK")
    endpoint.receive_datagram(ack, UDP, 10.0)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is None
    assert event.request.method == "ACK" and transaction.acked
    endpoint.receive_datagram(ack, UDP, 10.5)
    endpoint.receive_datagram(request_bytes("INVITE"), UDP, 11.0)
    assert events(endpoint) == [] and sent(endpoint) == []
    assert endpoint.stats.retransmissions_absorbed == 3
    assert run(endpoint, 100.0) == []  # no more 2xx; timer L ends it quietly
    assert transaction.state is State.TERMINATED and events(endpoint) == []


def test_an_ack_with_another_to_tag_stops_nothing() -> None:
    """An ACK that names another dialog (its To tag is not our 2xx's) is dropped: the 2xx is
    resent and the missing ACK still ends the call at timer L."""
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 200, 0.0)
    sent(endpoint)
    stray = request_bytes("ACK", branch="z9hG4bKack-other", to_tag="not-ours",
                          cseq_method="ACK")
    endpoint.receive_datagram(stray, UDP, 0.2)
    assert events(endpoint) == [] and not transaction.acked
    assert endpoint.stats.dropped == 1
    log = run(endpoint, 100.0)
    assert [t for t, _ in log][:3] == [0.5, 1.5, 3.5]  # the 2xx goes on
    (timeout,) = events(endpoint)
    assert isinstance(timeout, TransactionTimedOut) and timeout.transaction is transaction


def test_an_ack_on_the_invites_branch_is_its_whatever_to_tag() -> None:
    """pyVoIP acknowledges a 2xx on the INVITE's own branch with a made-up To tag: the branch
    names the transaction (§17.2.3), and the event says which INVITE it acknowledges."""
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 200, 0.0)
    sent(endpoint)
    ack = request_bytes("ACK", to_tag="made-up", cseq_method="ACK")  # the INVITE's branch
    endpoint.receive_datagram(ack, UDP, 0.2)
    (event,) = events(endpoint)
    assert isinstance(event, RequestReceived) and event.transaction is None
    assert event.invite is transaction and transaction.acked
    assert run(endpoint, 10.0) == []  # no more 2xx


def test_invite_server_2xx_without_ack_times_out_at_timer_l() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 200, 0.0)
    sent(endpoint)
    log = run(endpoint, 100.0)
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    (timeout,) = events(endpoint)
    assert isinstance(timeout, TransactionTimedOut) and timeout.transaction is transaction


def test_invite_server_over_tcp() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE", via="SIP/2.0/TCP "
                                                             "192.0.2.10:5060"), 0.0, TCP)
    answer(endpoint, transaction, 486, 0.1)
    sent(endpoint)
    assert endpoint.get_timer() == 32.1  # H only: no G on TCP
    endpoint.receive_stream(request_bytes("ACK", via="SIP/2.0/TCP 192.0.2.10:5060",
                                          to_tag=transaction.to_tag, cseq_method="ACK"),
                            TCP, 0.2)
    assert transaction.state is State.TERMINATED  # Confirmed, and I is zero
    assert endpoint.get_timer() is None


def test_invite_server_2xx_is_retransmitted_over_tcp_too() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0, TCP)
    answer(endpoint, transaction, 200, 0.0)
    sent(endpoint)
    assert [t for t, _ in run(endpoint, 2.0)] == [0.5, 1.5]


def test_responses_after_the_final_one_are_ignored() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    answer(endpoint, transaction, 487, 0.1)
    answer(endpoint, transaction, 200, 0.2)
    assert first_lines(endpoint) == ["SIP/2.0 487 Request Terminated"]
    assert transaction.last_response is not None and transaction.last_response.status == 487


def test_the_to_tag_is_added_and_kept() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    endpoint.respond(transaction, make_response(transaction.request, 180), 0.0)
    endpoint.respond(transaction, make_response(transaction.request, 200), 0.1)
    tos = [parse_datagram(data).message.to for data in sent(endpoint)]
    assert [to.tag for to in tos if to is not None] == [transaction.to_tag] * 2
    assert len(transaction.to_tag) == 12


# ---- figure 8: non-INVITE server ------------------------------------------------------------
def test_non_invite_server_states() -> None:
    endpoint = SipEndpoint()
    options = request_bytes("OPTIONS")
    transaction = server_transaction(endpoint, options, 0.0)
    assert transaction.state is State.TRYING
    endpoint.receive_datagram(options, UDP, 0.5)  # Trying: absorbed, nothing to resend
    assert sent(endpoint) == [] and events(endpoint) == []
    answer(endpoint, transaction, 100, 0.6)
    assert transaction.state is State.PROCEEDING
    endpoint.receive_datagram(options, UDP, 1.0)
    assert first_lines(endpoint) == ["SIP/2.0 100 Trying", "SIP/2.0 100 Trying"]
    answer(endpoint, transaction, 200, 2.0)
    assert transaction.state is State.COMPLETED
    endpoint.receive_datagram(options, UDP, 3.0)
    assert first_lines(endpoint) == ["SIP/2.0 200 OK", "SIP/2.0 200 OK"]
    assert endpoint.get_timer() == 34.0  # timer J = 64*T1
    assert run(endpoint, 100.0) == [] and transaction.state is State.TERMINATED
    assert events(endpoint) == [] and endpoint.stats.retransmissions_absorbed == 3
    # After J the same request is new again.
    endpoint.receive_datagram(options, UDP, 40.0)
    assert [type(e) for e in events(endpoint)] == [RequestReceived]


def test_non_invite_server_over_tcp_ends_with_the_final() -> None:
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("OPTIONS"), 0.0, TCP)
    answer(endpoint, transaction, 200, 0.1)
    assert [o.peer for o in endpoint.outputs() if isinstance(o, Transmit)] == [TCP]
    assert transaction.state is State.TERMINATED and endpoint.get_timer() is None


# ---- the timer heap -------------------------------------------------------------------------
def test_timer_heap_lazy_deletion_and_compaction() -> None:
    heap = TimerHeap()
    endpoint = SipEndpoint()  # its non-INVITE server transactions run no timer in Trying
    transactions = [
        server_transaction(endpoint, request_bytes("OPTIONS", branch=f"z9hG4bK{i}",
                                                   call_id=f"c{i}"))
        for i in range(3)
    ]
    for i, transaction in enumerate(transactions):
        heap.arm(transaction, Timer.F, 10.0 + i)
    heap.disarm(transactions[0], Timer.F)
    assert heap.next_deadline() == 11.0 and len(heap) == 2
    heap.arm(transactions[1], Timer.F, 20.0)  # re-armed: the old entry is stale
    assert heap.pop_due(15.0) == (transactions[2], Timer.F)
    assert heap.pop_due(15.0) is None and heap.next_deadline() == 20.0
    assert heap.pop_due(30.0) == (transactions[1], Timer.F)
    assert heap.pop_due(30.0) is None and heap.next_deadline() is None
    for round_ in range(3000):  # stale entries are compacted away
        heap.arm(transactions[0], Timer.E, float(round_))
    assert len(heap._heap) < 2000 and len(heap) == 1


def test_client_transaction_is_keyed_by_branch_and_method() -> None:
    endpoint = SipEndpoint()
    transaction = endpoint.send_request(new_request("INVITE"), SERVER, 0.0)
    assert isinstance(transaction, ClientTransaction)
    assert transaction.key == (transaction.branch, "INVITE")
    assert transaction.branch.startswith("z9hG4bK") and len(transaction.branch) == 23
    with pytest.raises(ValueError):
        endpoint.send_request(new_request("ACK"), SERVER, 0.0)


# ---- memory: what a finished transaction keeps ------------------------------------------------
def test_completed_non_invite_server_keeps_neither_request_nor_response(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In Completed (timer J, 32 s) only the response's bytes and what names the request are
    kept: the Request and Response objects can be collected, and the transaction still
    resends, still keys §8.2.2.2 merging, and still ends cleanly."""
    import gc
    import weakref

    from softswitch.sip import endpoint as endpoint_module
    from softswitch.sip.message import Response
    from softswitch.sip.parser import Parsed

    class TraceableRequest(Request):  # unlike Request (slots), can be weakly referenced
        pass

    class TraceableResponse(Response):
        pass

    def traceable_parse(data: bytes) -> Parsed:
        parsed = parse_datagram(data)
        message = parsed.message
        assert isinstance(message, Request)
        parsed.message = TraceableRequest(headers=message.headers, body=message.body,
                                          method=message.method, uri=message.uri)
        return parsed

    monkeypatch.setattr(endpoint_module, "parse_datagram", traceable_parse)
    endpoint = SipEndpoint()
    register = request_bytes("REGISTER", extra="Content-Type: text/plain\r\n"
                             ).replace(b"Content-Length: 0\r\n\r\n",
                                       b"Content-Length: 4\r\n\r\nbody")
    transaction = server_transaction(endpoint, register, 0.0)
    request = transaction.request
    assert isinstance(request, TraceableRequest) and request.body == b"body"
    plain = make_response(request, 401, to_tag=transaction.to_tag)
    response = TraceableResponse(headers=plain.headers, status=401, reason="Unauthorized")
    request_ref, response_ref = weakref.ref(request), weakref.ref(response)
    endpoint.respond(transaction, response, 0.1)
    (answer_bytes,) = sent(endpoint)
    assert transaction.state is State.COMPLETED
    del request, response, plain
    gc.collect()
    assert request_ref() is None and response_ref() is None
    # What it kept: the naming headers, the method, and the bytes to resend.
    assert transaction.method == "REGISTER" and transaction.request.body == b""
    assert [key for key, _ in transaction.request.headers] == ["via", "from", "to", "call-id",
                                                               "cseq"]
    assert transaction.last_response is not None and transaction.last_response.status == 401
    endpoint.receive_datagram(register, UDP, 1.0)
    assert sent(endpoint) == [answer_bytes]
    # A copy by another path is still merged (482) until J, and is new after it (the merge
    # entry was found and removed through the kept headers).
    other_path = register.replace(b"z9hG4bKclient1", b"z9hG4bKpath2")
    endpoint.receive_datagram(other_path, UDP, 2.0)
    assert first_lines(endpoint) == ["SIP/2.0 482 Loop Detected"]
    run(endpoint, 100.0)
    assert transaction.state is State.TERMINATED and endpoint.stats.transactions == 0
    endpoint.receive_datagram(other_path.replace(b"z9hG4bKpath2", b"z9hG4bKpath3"), UDP, 101.0)
    assert [type(e) for e in events(endpoint)] == [RequestReceived]


def test_invite_server_keeps_its_request_until_it_ends() -> None:
    """The switch reads an INVITE transaction's request after the final answer (a 200
    racing a CANCEL's 487 is built from it): it is kept whole until the transaction ends."""
    endpoint = SipEndpoint()
    transaction = server_transaction(endpoint, request_bytes("INVITE"), 0.0)
    request = transaction.request
    answer(endpoint, transaction, 487, 0.1)
    assert transaction.state is State.COMPLETED and transaction.request is request
    assert transaction.request.get("contact") == "<sip:alice@192.0.2.10:5060>"


def test_entropy_pool_never_hands_out_the_same_bytes_twice() -> None:
    from softswitch.sip.entropy import EntropyPool

    pool = EntropyPool()
    tokens = [pool.take(8) for _ in range(2000)]  # spans several 4 KiB blocks
    assert len(set(tokens)) == 2000 and all(len(t) == 8 for t in tokens)
    assert len(pool.take(5000)) == 5000
