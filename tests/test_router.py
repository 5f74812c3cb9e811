"""The call router with plain data: each step of screen -> forward -> ring -> voicemail, and
the loops and limits of forwarding (issue 9 item 3). No sockets, no store."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from softswitch.switch.router import (
    BLOCKED_REASON,
    Announce,
    Caller,
    Diversion,
    Reject,
    Ring,
    RouteOut,
    Router,
    RunFlow,
    Voicemail,
    diversion_headers,
    history_info,
)

A, B, C = "09011110001", "09011110002", "08022220003"


@dataclass(frozen=True)
class Line:
    number: str
    sim: str = "voice"
    line: str = "D"
    nuisance_option: bool = False

    @property
    def is_voice(self) -> bool:
        return self.sim == "voice"

    @property
    def blocking_available(self) -> bool:
        return self.is_voice and (self.line == "D" or self.nuisance_option)


@dataclass(frozen=True)
class VoicemailSettings:
    enabled: bool = True
    ring_time: int = 15


@dataclass(frozen=True)
class Forwarding:
    enabled: bool = False
    destination: str | None = None
    mode: str = "no_answer"


@dataclass(frozen=True)
class View:
    line: Line
    blocklist: frozenset[str] = frozenset()
    voicemail: VoicemailSettings = VoicemailSettings()
    forwarding: Forwarding = Forwarding()


@dataclass
class Switch:
    """The router's Lookup, from dicts."""

    views: dict[str, View] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)

    def callee(self, number: str) -> View | None:
        return self.views.get(number)

    def has_contacts(self, number: str) -> bool:
        return number in self.registered


CODES = {"1999": "dtmf_test", "1400": "remote_access", "1411": "voicemail_start",
         "144": "blocklist_menu"}


def router(**kwargs: object) -> Router:
    return Router(codes=CODES, public_numbers=frozenset({"1999", "1400"}), **kwargs)  # type: ignore[arg-type]


def switch(**views: View) -> Switch:
    base = {A: View(Line(A)), B: View(Line(B)), C: View(Line(C, line="A"))}
    base.update({number: view for number, view in views.items()})
    return Switch(base, {A, B, C})


ALICE = Caller(A, subscriber=A)


# ---- dial codes -------------------------------------------------------------------------------
def test_public_numbers_answer_anyone_and_codes_only_the_own_line() -> None:
    stranger = Caller("0312345678")
    assert router().route(stranger, "1999", switch()) == RunFlow("1999", "dtmf_test", None)
    assert router().route(stranger, "1400", switch()) == RunFlow("1400", "remote_access",
                                                                  None)
    assert router().route(ALICE, "1411", switch()) == RunFlow("1411", "voicemail_start", A)
    refused = router().route(stranger, "1411", switch())
    assert isinstance(refused, Reject) and refused.status == 404


def test_numbers_outside_our_subscribers_are_never_dialled_out_without_a_route() -> None:
    assert router().route(ALICE, "0312345678", switch()) == Reject(404)
    assert router(outbound=True).route(ALICE, "03-1234-5678", switch()) == RouteOut(
        "0312345678")
    assert router().route(ALICE, "not-a-number", switch()).status == 404  # type: ignore[union-attr]


def test_a_data_sim_is_not_called() -> None:
    lookup = switch(**{B: View(Line(B, sim="data"))})
    assert router().route(ALICE, B, lookup) == Reject(404)


# ---- screening ------------------------------------------------------------------------------
def test_a_blocked_caller_hears_the_announcement_and_no_phone_rings() -> None:
    lookup = switch(**{B: View(Line(B), blocklist=frozenset({A}))})
    decision = router().route(ALICE, "+81 90-1111-0002", lookup)
    assert decision == Announce("blocked_call", 603, BLOCKED_REASON, B)
    assert router().route(Caller(C, subscriber=C), B, lookup) == Ring(B, 15, (), (B,))


def test_type_a_blocks_only_with_the_paid_option() -> None:
    without = switch(**{C: View(Line(C, line="A"), blocklist=frozenset({A}))})
    assert isinstance(router().route(ALICE, C, without), Ring)
    with_option = switch(**{C: View(Line(C, line="A", nuisance_option=True),
                                    blocklist=frozenset({A}))})
    assert isinstance(router().route(ALICE, C, with_option), Announce)


def test_withheld_callers_follow_the_policy() -> None:
    withheld = Caller(None, trusted=True, withheld=True)
    assert isinstance(router().route(withheld, B, switch()), Ring)
    assert router(reject_anonymous=True).route(withheld, B, switch()).status == 433  # type: ignore[union-attr]


# ---- forwarding -------------------------------------------------------------------------------
def test_immediate_forwarding_goes_to_the_destination_screened_there() -> None:
    lookup = switch(**{B: View(Line(B), forwarding=Forwarding(True, C, "immediate"))})
    assert router().route(ALICE, B, lookup) == Ring(
        C, 15, (Diversion(B, "unconditional"),), (B, C))
    blocked_at_c = replace(lookup, views={**lookup.views, C: View(
        Line(C, line="A", nuisance_option=True), blocklist=frozenset({A}))})
    assert isinstance(router().route(ALICE, B, blocked_at_c), Announce)


def test_forwarding_loops_and_long_chains_stop_with_482() -> None:
    loop = switch(**{B: View(Line(B), forwarding=Forwarding(True, A, "immediate")),
                     A: View(Line(A), forwarding=Forwarding(True, B, "immediate"))})
    decision = router().route(Caller(C, subscriber=C), B, loop)
    assert isinstance(decision, Reject) and decision.status == 482
    chain = switch(**{B: View(Line(B), forwarding=Forwarding(True, C, "immediate")),
                      C: View(Line(C), forwarding=Forwarding(True, A, "immediate"))})
    assert isinstance(router().route(ALICE, B, chain), Reject)  # back to the caller: a loop
    short = router(max_forwarding_hops=1)
    two_hops = switch(**{A: View(Line(A), forwarding=Forwarding(True, B, "immediate")),
                         B: View(Line(B), forwarding=Forwarding(True, C, "immediate"))})
    decision = short.route(Caller("0312345678"), A, two_hops)
    assert isinstance(decision, Reject) and decision.status == 482


def test_forwarding_to_an_outside_number_without_a_route_is_unreachable() -> None:
    lookup = switch(**{B: View(Line(B), forwarding=Forwarding(True, "0312345678",
                                                              "immediate"))})
    assert router().route(ALICE, B, lookup) == Reject(480, outcome="unreachable")
    assert router(outbound=True).route(ALICE, B, lookup) == RouteOut(
        "0312345678", (Diversion(B, "unconditional"),))


# ---- ringing and what follows it --------------------------------------------------------------
def test_ring_time_is_the_subscribers_when_something_follows() -> None:
    lookup = switch(**{B: View(Line(B), voicemail=VoicemailSettings(True, 25))})
    assert router().route(ALICE, B, lookup) == Ring(B, 25, (), (B,))
    nothing_after = switch(**{B: View(Line(B), voicemail=VoicemailSettings(False, 25))})
    assert router().route(ALICE, B, nothing_after) == Ring(B, 60, (), (B,))


def test_no_answer_busy_unreachable_go_to_forwarding_then_voicemail_then_a_status() -> None:
    ring = Ring(B, 15, (), (B,))
    forwarding = switch(**{B: View(Line(B), forwarding=Forwarding(True, C, "no_answer"))})
    assert router().after_ring(ALICE, ring, "no_answer", forwarding) == Ring(
        C, 15, (Diversion(B, "no-answer"),), (B, C))
    assert router().after_ring(ALICE, ring, "busy", forwarding).diversions == (  # type: ignore[union-attr]
        Diversion(B, "user-busy"),)
    assert router().after_ring(ALICE, ring, "no_answer", switch()) == Voicemail(B)
    off = switch(**{B: View(Line(B), voicemail=VoicemailSettings(False))})
    assert router().after_ring(ALICE, ring, "busy", off) == Reject(486, outcome="busy")
    assert router().after_ring(ALICE, ring, "no_answer", off) == Reject(
        480, outcome="no_answer")
    assert router().after_ring(ALICE, ring, "unreachable", off) == Reject(
        480, outcome="unreachable")


def test_an_unregistered_callee_goes_straight_to_voicemail() -> None:
    lookup = switch()
    lookup.registered.discard(B)
    assert router().route(ALICE, B, lookup) == Voicemail(B)


def test_ring_time_zero_goes_straight_to_voicemail() -> None:
    lookup = switch(**{B: View(Line(B), voicemail=VoicemailSettings(True, 0))})
    assert router().route(ALICE, B, lookup) == Voicemail(B)


# ---- headers of a forwarded call -------------------------------------------------------------
@pytest.mark.parametrize("diversions, expected", [
    ((Diversion(B, "unconditional"),), [
        f"<sip:{B}@sw.test?Reason=SIP%3Bcause%3D302>;index=1",
        f"<sip:{C}@sw.test;cause=302>;index=1.1;mp=1"]),
    ((Diversion(B, "no-answer"), Diversion(A, "user-busy")), [
        f"<sip:{B}@sw.test?Reason=SIP%3Bcause%3D408>;index=1",
        f"<sip:{A}@sw.test;cause=408?Reason=SIP%3Bcause%3D486>;index=1.1;mp=1",
        f"<sip:{C}@sw.test;cause=486>;index=1.1.1;mp=1.1"]),
])
def test_history_info(diversions: tuple[Diversion, ...], expected: list[str]) -> None:
    assert history_info(B, diversions, C, "sw.test") == expected


def test_diversion_lists_the_latest_first() -> None:
    assert diversion_headers((Diversion(B, "no-answer"), Diversion(A, "unconditional")),
                             "sw.test") == [
        f"<sip:{A}@sw.test>;reason=unconditional;counter=1",
        f"<sip:{B}@sw.test>;reason=no-answer;counter=1"]
