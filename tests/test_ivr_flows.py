"""Every service flow walked key by key, as SERVICES.md "Menus, key by key" gives them, against
the real domain services on a SQLite store (tests/flow_harness.py: a scripted caller, prompts
said at once, fake time for silence). What the flow said is checked prompt by prompt, and what
it changed through `softswitch show`'s view of the store; hanging up at every step of a path
changes nothing until the last confirmation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from softswitch.media.g711 import Codec
from softswitch.media.prompts import PromptLibrary
from softswitch.media.wav import g711_wav, read_g711_wav
from softswitch.services.model import VoicemailMessage
from softswitch.services.repositories import BlockResult

from .flow_harness import (
    A_OPTION,
    A_PLAIN,
    D1,
    D2,
    DATA,
    OUTSIDER,
    VOICE,
    Line,
    Switch,
    open_switch,
    provisioned_template,
)

PIN = "1234"


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary.load("ja")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return provisioned_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
async def switch(tmp_path: Path, library: PromptLibrary, template: Path
                 ) -> AsyncIterator[Switch]:
    async for opened in open_switch(tmp_path, library, template):
        yield opened


def pin_ok(said: list[str]) -> None:
    assert said[:1] == ["enter_pin"], said


# ---- 1442: the last caller --------------------------------------------------------------------
async def test_1442_registers_the_last_caller(switch: Switch) -> None:
    switch.services.last_caller.record(D1, D2)
    line = switch.dial("blocklist_register_last")
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", "blocklist_last_caller_registered"]
    assert (await switch.state())["blocklist"] == [D2]
    again = switch.dial("blocklist_register_last")
    await again.press(f"{PIN}#")
    assert await again.ended() == ["enter_pin", "blocklist_already_registered"]
    assert (await switch.state())["blocklist"] == [D2]


@pytest.mark.parametrize(("last", "told"), [
    ("nobody", "blocklist_no_last_caller"), (None, "blocklist_last_caller_withheld")])
async def test_1442_without_a_number_to_register(switch: Switch, last: str | None,
                                                 told: str) -> None:
    if last != "nobody":
        switch.services.last_caller.record(D1, last)
    line = switch.dial("blocklist_register_last")
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", told]
    assert (await switch.state())["blocklist"] == []


async def test_1442_full_list_is_told_and_nothing_changes(switch: Switch) -> None:
    for index in range(switch.services.blocklist.max_entries):  # 30, as shipped
        await switch.services.blocklist.add(D1, f"0501234{index:04d}")
    switch.services.last_caller.record(D1, D2)
    line = switch.dial("blocklist_register_last")
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", "blocklist_full"]
    state = await switch.state()
    assert len(state["blocklist"]) == 30 and D2 not in state["blocklist"]


# ---- the PIN before the blocklist ------------------------------------------------------------
async def test_a_wrong_pin_is_told_and_asked_again(switch: Switch) -> None:
    switch.services.last_caller.record(D1, D2)
    line = switch.dial("blocklist_register_last")
    await line.press("0000#")
    await line.press("12#")  # not four digits: invalid, not checked
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", "pin_wrong", "enter_pin", "invalid_input",
                                  "enter_pin", "blocklist_last_caller_registered"]
    state = await switch.state()
    assert state["blocklist"] == [D2] and state["pin"]["failures"] == 0


async def test_three_wrong_pins_end_the_call_and_change_nothing(switch: Switch) -> None:
    switch.services.last_caller.record(D1, D2)
    line = switch.dial("blocklist_menu")
    for wrong in ("0000", "1111", "2222"):
        await line.press(f"{wrong}#")
    assert await line.ended() == ["enter_pin", "pin_wrong"] * 3 + ["goodbye"]
    state = await switch.state()
    assert state["blocklist"] == [] and state["pin"] == {
        "locked": False, "failures": 3, "pending_change": False, "pending_apply_at": None}


async def test_no_pin_at_all_three_times_ends_the_call(switch: Switch) -> None:
    line = switch.dial("blocklist_menu")
    for _ in range(3):
        await line.silence()
    assert await line.ended() == ["enter_pin", "no_input"] * 3 + ["goodbye"]
    assert (await switch.state())["pin"]["failures"] == 0


async def test_a_locked_pin_refuses_even_the_right_pin_until_unlocked(switch: Switch) -> None:
    for _ in range(5):  # pin.max_failures, as shipped
        await switch.services.pin.verify(D1, "9999", source="udp:192.0.2.9:5060")
    line = switch.dial("blocklist_menu")
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", "pin_locked"]
    await switch.services.pin.unlock(D1)
    line = switch.dial("blocklist_menu")
    await line.press(f"{PIN}#")
    await line.waiting()
    assert line.said == ["enter_pin", "blocklist_menu", "menu_repeat"]


async def test_the_fifth_wrong_pin_locks_it_and_says_so(switch: Switch) -> None:
    for _ in range(3):
        await switch.services.pin.verify(D1, "9999", source="udp:192.0.2.9:5060")
    line = switch.dial("blocklist_menu")
    await line.press("0000#")
    await line.press("0000#")
    assert await line.ended() == ["enter_pin", "pin_wrong", "enter_pin", "pin_locked"]
    assert (await switch.state())["pin"]["locked"] is True


async def test_a_throttled_source_is_told_to_try_later(switch: Switch) -> None:
    throttle = switch.config.pin.throttle.max_failures
    for index in range(throttle):  # many numbers from one address
        await switch.services.pin.verify(f"090{index:08d}", "0000", source="udp:192.0.2.7:1")
    line = switch.dial("blocklist_menu", source="udp:192.0.2.7:5060")
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", "try_later"]
    served = switch.dial("blocklist_menu", source="udp:192.0.2.8:5060")
    await served.press(f"{PIN}#")
    await served.waiting()
    assert served.said[-2:] == ["blocklist_menu", "menu_repeat"]


@pytest.mark.parametrize("code", ["blocklist_register_last", "blocklist_menu"])
async def test_type_a_without_the_option_is_not_subscribed_and_a_with_it_is(
        switch: Switch, code: str) -> None:
    plain = switch.dial(code, subscriber=A_PLAIN)
    assert await plain.ended() == ["blocklist_not_subscribed"]
    paid = switch.dial(code, subscriber=A_OPTION)
    await paid.waiting()
    assert paid.said == ["enter_pin"]


CODES = ["voicemail_start", "voicemail_stop", "voicemail_playback", "voicemail_settings",
         "forwarding_start", "forwarding_stop", "forwarding_settings",
         "blocklist_register_last", "blocklist_menu"]


@pytest.mark.parametrize("code", CODES)
async def test_a_data_sim_or_no_subscriber_hears_not_available(switch: Switch,
                                                               code: str) -> None:
    for subscriber in (DATA, None, OUTSIDER):
        line = switch.dial(code, subscriber=subscriber)
        assert await line.ended() == ["not_available"]
    assert (await switch.state(DATA))["voicemail"]["enabled"] is False


# ---- 144: the blocklist menu ------------------------------------------------------------------
MENU_144 = ["blocklist_menu", "menu_repeat"]


async def blocklist_menu(switch: Switch) -> Line:
    line = switch.dial("blocklist_menu")
    await line.press(f"{PIN}#")
    return line


def readout(digits: str) -> list[str]:
    return [f"digit_{d}" for d in digits]


async def test_144_register_a_keyed_number_with_read_back_and_key_again(
        switch: Switch) -> None:
    line = await blocklist_menu(switch)
    await line.press("1")
    await line.press("09099998888#")
    await line.press("2")  # key it again
    await line.press(f"{D2}#")
    await line.press("1")  # confirm
    await line.waiting()
    assert line.said == ["enter_pin", *MENU_144, "blocklist_enter_number",
                         "you_entered", *readout("09099998888"), "confirm_or_retry",
                         "blocklist_enter_number", "you_entered", *readout(D2),
                         "confirm_or_retry", "blocklist_registered", *MENU_144]
    assert (await switch.state())["blocklist"] == [D2]
    await line.press("1")
    await line.press(f"{D2}#")
    await line.press("1")
    await line.waiting()
    assert line.said[-3:] == ["blocklist_already_registered", *MENU_144]
    assert (await switch.state())["blocklist"] == [D2]


async def test_144_refuses_the_own_number_and_non_numbers(switch: Switch) -> None:
    line = await blocklist_menu(switch)
    await line.press("1")
    await line.press(f"{D1}#")  # the subscriber's own number
    await line.press("12#")
    await line.press("#")  # nothing keyed
    assert await line.ended() == ["enter_pin", *MENU_144, "blocklist_enter_number",
                                  "blocklist_invalid_number"] + \
        ["blocklist_enter_number", "blocklist_invalid_number"] * 2 + ["goodbye"]
    assert (await switch.state())["blocklist"] == []


async def test_144_count_delete_last_and_delete_all(switch: Switch) -> None:
    for caller in (D2, "0501112222", "0501113333"):
        await switch.services.blocklist.add(D1, caller)
    line = await blocklist_menu(switch)
    await line.press("2")
    await line.press("3")
    await line.press("2")
    await line.press("4")
    await line.press("2")  # not confirmed
    await line.press("4")
    await line.press("1")
    await line.press("2")
    await line.press("3")
    await line.press("4")
    await line.waiting()
    assert line.said == ["enter_pin", *MENU_144, "blocklist_count", "ken_3", *MENU_144,
                         "blocklist_deleted_last", *MENU_144, "blocklist_count", "ken_2",
                         *MENU_144, "blocklist_confirm_delete_all", "cancelled", *MENU_144,
                         "blocklist_confirm_delete_all", "blocklist_deleted_all", *MENU_144,
                         "blocklist_empty", *MENU_144, "blocklist_empty", *MENU_144,
                         "blocklist_empty", *MENU_144]
    assert (await switch.state())["blocklist"] == []


async def test_144_the_limit_of_30(switch: Switch) -> None:
    for index in range(29):
        await switch.services.blocklist.add(D1, f"0501234{index:04d}")
    line = await blocklist_menu(switch)
    await line.press("1")
    await line.press(f"{D2}#")
    await line.press("1")  # the 30th
    await line.press("1")  # the 31st: told before any number is asked
    await line.waiting()
    assert line.said[-7:] == ["confirm_or_retry", "blocklist_registered", *MENU_144,
                              "blocklist_full", *MENU_144]
    state = await switch.state()
    assert len(state["blocklist"]) == 30 and state["blocklist"][-1] == D2


async def test_144_star_repeats_and_wrong_keys_are_told_three_times_at_most(
        switch: Switch) -> None:
    line = await blocklist_menu(switch)
    await line.press("*")
    await line.press("9")
    await line.silence()
    await line.press("#")
    assert await line.ended() == ["enter_pin", *MENU_144, *MENU_144, "invalid_input",
                                  *MENU_144, "no_input", *MENU_144, "invalid_input",
                                  "goodbye"]


# ---- 1411 / 1410 -----------------------------------------------------------------------------
async def test_1411_and_1410_turn_voicemail_on_and_off(switch: Switch) -> None:
    off = switch.dial("voicemail_stop")
    assert await off.ended() == ["voicemail_stopped"]
    assert (await switch.state())["voicemail"]["enabled"] is False
    on = switch.dial("voicemail_start")
    assert await on.ended() == ["voicemail_started"]
    assert (await switch.state())["voicemail"]["enabled"] is True


# ---- 1417: playback ----------------------------------------------------------------------------
async def leave_message(switch: Switch, caller: str | None, seconds: float = 1.0
                        ) -> VoicemailMessage:
    path = switch.directory / f"message-{caller}-{len(switch.lines)}-{seconds}.wav"
    path.write_bytes(g711_wav(Codec.PCMU, bytes([0x10]) * int(8000 * seconds)))
    return await switch.services.voicemail.store_message(D1, caller, path, seconds)


def heading(library: PromptLibrary, message: VoicemailMessage) -> list[str]:
    caller = ["voicemail_from", *readout(message.caller)] if message.caller \
        else ["voicemail_from_withheld"]
    return ["voicemail_received_at",
            *library.datetime_readout(datetime.fromtimestamp(message.received_at)), *caller]


PLAYBACK_MENU = "voicemail_playback_menu"


async def test_1417_new_messages_first_then_saved_with_replay_delete_save_and_next(
        switch: Switch, library: PromptLibrary) -> None:
    saved = await leave_message(switch, D2)
    await switch.services.voicemail.save(D1, saved.id)
    first = await leave_message(switch, A_OPTION)
    second = await leave_message(switch, None)  # withheld
    line = switch.dial("voicemail_playback")
    await line.press("1")  # replay the first new message
    await line.press("9")  # and save it
    await line.press("7")  # delete the second
    await line.press("#")  # the saved one: next, unchanged
    assert await line.ended() == [
        "voicemail_new_count", "ken_2",
        *heading(library, first), "<audio>", PLAYBACK_MENU, "<audio>", PLAYBACK_MENU,
        "voicemail_saved",
        "voicemail_next_message", *heading(library, second), "<audio>", PLAYBACK_MENU,
        "voicemail_deleted",
        "voicemail_saved_count", "ken_1", *heading(library, saved), "<audio>", PLAYBACK_MENU,
        "voicemail_end_of_messages"]
    voicemail = (await switch.state())["voicemail"]
    assert (voicemail["new"], voicemail["saved"]) == (0, 2)
    assert [m["caller"] for m in voicemail["messages"]] == [D2, A_OPTION]
    assert not second.audio.exists()


async def test_1417_a_skipped_message_stays_new(switch: Switch) -> None:
    await leave_message(switch, D2)
    line = switch.dial("voicemail_playback")
    await line.press("#")
    said = await line.ended()
    assert said[-2:] == ["voicemail_no_saved_messages", "voicemail_end_of_messages"]
    assert (await switch.state())["voicemail"]["new"] == 1


async def test_1417_with_no_messages(switch: Switch) -> None:
    line = switch.dial("voicemail_playback")
    assert await line.ended() == ["voicemail_no_new_messages", "voicemail_no_saved_messages",
                                  "voicemail_end_of_messages"]


# ---- 1419: voicemail settings --------------------------------------------------------------------
MENU_1419 = ["voicemail_settings_menu", "menu_repeat"]


async def test_1419_ring_time_read_back_and_confirmed(switch: Switch) -> None:
    line = switch.dial("voicemail_settings")
    await line.press("1")
    await line.press("130#")  # more than 120
    await line.press("25#")
    await line.press("2")  # key it again
    await line.press("0#")
    await line.press("1")
    await line.waiting()
    assert line.said == [*MENU_1419, "ring_time_is", "byou_15", "ring_time_enter",
                         "ring_time_invalid", "ring_time_enter", "ring_time_entered", "num_20",
                         "byou_5", "confirm_or_retry", "ring_time_enter", "ring_time_entered",
                         "byou_0", "confirm_or_retry", "ring_time_set", *MENU_1419]
    assert (await switch.state())["voicemail"]["ring_time"] == 0


async def test_1419_personal_greeting_recorded_again_kept_then_back_to_default(
        switch: Switch) -> None:
    line = switch.dial("voicemail_settings")
    await line.press("2")
    await line.speak(1.0)
    await line.press("2")  # record again
    await line.speak(0.1)  # too short: nothing said
    await line.speak(2.0)
    await line.press("1")  # keep
    await line.waiting()
    record = ["greeting_record_intro", "voicemail_tone"]
    assert line.said == [*MENU_1419, *record, "<audio>", "greeting_keep_or_retry", *record,
                         "no_input", *record, "<audio>", "greeting_keep_or_retry",
                         "greeting_recorded", *MENU_1419]
    assert (await switch.state())["voicemail"]["greeting"] is True
    greeting = await switch.services.voicemail.greeting(D1)
    assert greeting is not None and read_g711_wav(greeting) == (Codec.PCMU, VOICE * 100)
    assert list((switch.directory / "staging").iterdir()) == []  # the others are gone
    await line.press("3")
    await line.waiting()
    assert line.said[-3:] == ["greeting_reset", *MENU_1419]
    assert (await switch.state())["voicemail"]["greeting"] is False
    assert not greeting.exists()


async def test_hanging_up_while_a_greeting_waits_to_be_kept_leaves_no_file(
        switch: Switch) -> None:
    line = switch.dial("voicemail_settings")
    await line.press("2")
    await line.speak(1.0)
    await line.waiting()
    await line.hang_up()
    assert list((switch.directory / "staging").iterdir()) == []
    assert (await switch.state())["voicemail"]["greeting"] is False


# ---- 1421 / 1420 / 1429: forwarding -----------------------------------------------------------
async def test_1421_asks_for_a_destination_when_none_is_set(switch: Switch) -> None:
    line = switch.dial("forwarding_start")
    await line.press(f"{D1}#")  # its own number: refused
    await line.press(f"{D2}#")
    await line.press("1")
    assert await line.ended() == [
        "forwarding_no_destination", "forwarding_enter_destination",
        "forwarding_invalid_destination", "forwarding_enter_destination", "you_entered",
        *readout(D2), "confirm_or_retry", "forwarding_started"]
    assert (await switch.state())["forwarding"] == {
        "enabled": True, "destination": D2, "mode": "no_answer"}
    off = switch.dial("forwarding_stop")
    assert await off.ended() == ["forwarding_stopped"]
    again = switch.dial("forwarding_start")  # a destination is set now: no question
    assert await again.ended() == ["forwarding_started"]
    assert (await switch.state())["forwarding"]["enabled"] is True


MENU_1429 = ["forwarding_settings_menu", "menu_repeat"]


async def test_1429_destination_mode_and_remote_control(switch: Switch) -> None:
    line = switch.dial("forwarding_settings")
    await line.press("1")
    await line.press(f"81{D2[1:]}#")  # 81 and the number: the same number
    await line.press("1")
    await line.press("1")
    await line.press(f"{A_OPTION}#")
    await line.press("1")
    await line.press("2")
    await line.press("1")  # immediate
    await line.press("3")
    await line.press("1")  # remote control on
    await line.waiting()
    assert line.said == [
        *MENU_1429, "forwarding_enter_destination", "you_entered", *readout(f"81{D2[1:]}"),
        "confirm_or_retry", "forwarding_destination_registered", *MENU_1429,
        "forwarding_destination_is", *readout(D2), "forwarding_enter_destination",
        "you_entered", *readout(A_OPTION), "confirm_or_retry",
        "forwarding_destination_registered", *MENU_1429, "forwarding_mode_menu",
        "forwarding_mode_immediate", *MENU_1429, "remote_control_menu", "remote_control_on",
        *MENU_1429]
    state = await switch.state()
    assert state["forwarding"] == {"enabled": False, "destination": A_OPTION,
                                   "mode": "immediate"}
    assert state["remote_control"] == {"enabled": True}
    await line.press("2")
    await line.press("2")  # on no answer
    await line.press("3")
    await line.press("2")  # remote control off
    await line.waiting()
    assert line.said[-8:] == ["forwarding_mode_menu", "forwarding_mode_no_answer", *MENU_1429,
                              "remote_control_menu", "remote_control_off", *MENU_1429]
    state = await switch.state()
    assert state["forwarding"]["mode"] == "no_answer"
    assert state["remote_control"] == {"enabled": False}


# ---- remote control ---------------------------------------------------------------------------
MENU_REMOTE = ["remote_menu", "menu_repeat"]
STRANGER = "udp:127.0.0.2:5070"  # an unregistered phone elsewhere


def remote(switch: Switch, source: str = STRANGER) -> Line:
    return switch.dial("remote_access", subscriber=None, caller="", source=source)


async def log_in(line: Line, number: str = D1, pin: str = PIN) -> None:
    await line.press(f"{number}#")
    await line.press(f"{pin}#")


async def test_remote_control_from_any_phone_forwarding_off_and_voicemail_on(
        switch: Switch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    await switch.services.remote_control.set_enabled(D1, True)
    await switch.services.forwarding.configure(D1, destination=D2, enabled=True)
    await switch.services.voicemail.set_enabled(D1, False)
    line = remote(switch)
    await log_in(line)
    await line.press("9")
    await line.press("1")
    await line.waiting()
    assert line.said == ["remote_enter_number", "enter_pin", *MENU_REMOTE,
                         "forwarding_stopped", *MENU_REMOTE, "voicemail_started",
                         *MENU_REMOTE]
    state = await switch.state()
    assert state["forwarding"]["enabled"] is False and state["voicemail"]["enabled"] is True
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"pin-ok source={STRANGER} number={D1} via=remote-access",
        f"remote-change source={STRANGER} number={D1} change=forwarding-off",
        f"remote-change source={STRANGER} number={D1} change=voicemail-on"]


async def test_a_remote_change_cut_short_by_a_hang_up_is_made_and_audited(
        switch: Switch, caplog: pytest.LogCaptureFixture) -> None:
    """The caller hangs up right after the key that confirms a change, while it is being
    written: the change completes (Guidance.commit), and so does its audit line."""
    caplog.set_level(logging.INFO, "softswitch.security")
    await switch.services.remote_control.set_enabled(D1, True)
    await switch.services.voicemail.set_enabled(D1, False)
    line = remote(switch)
    await log_in(line)
    await line.press("1")  # voicemail on
    await line.hang_up()
    deadline = time.monotonic() + 10
    while not (await switch.state())["voicemail"]["enabled"]:
        assert time.monotonic() < deadline, "the confirmed change was cut short"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the audit is written as the change returns
    assert f"remote-change source={STRANGER} number={D1} change=voicemail-on" in [
        r.getMessage() for r in caplog.records]


async def test_remote_control_refuses_alike_and_ends_the_call_at_the_third_failure(
        switch: Switch) -> None:
    await switch.services.remote_control.set_enabled(D1, True)
    line = remote(switch)
    await log_in(line, OUTSIDER)  # no subscriber
    await log_in(line, DATA)  # a data SIM
    await log_in(line, D1, "0000")  # a wrong PIN
    assert await line.ended() == ["remote_enter_number", "enter_pin",
                                  "remote_auth_failed"] * 3
    state = await switch.state()
    assert state["pin"]["failures"] == 1 and state["remote_control"]["enabled"] is True


async def test_remote_control_off_is_refused_even_with_the_right_pin(switch: Switch) -> None:
    line = remote(switch)
    await log_in(line)  # remote control is off until the subscriber turns it on
    await line.waiting()
    assert line.said == ["remote_enter_number", "enter_pin", "remote_auth_failed",
                         "remote_enter_number"]


async def test_three_wrong_pins_end_the_call_and_the_fourth_switches_remote_control_off(
        switch: Switch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    await switch.services.remote_control.set_enabled(D1, True)
    line = remote(switch)
    for wrong in ("0000", "1111", "2222"):
        await log_in(line, D1, wrong)
    assert (await line.ended())[-1] == "remote_auth_failed"
    assert (await switch.state())["remote_control"]["enabled"] is True
    second = remote(switch)
    await log_in(second, D1, "3333")
    await log_in(second, D1, PIN)  # the right PIN, too late: remote control is off
    await second.waiting()
    assert second.said == ["remote_enter_number", "enter_pin", "remote_auth_failed"] * 2 + [
        "remote_enter_number"]
    state = await switch.state()
    assert state["remote_control"]["enabled"] is False
    assert state["pin"]["failures"] == 5 and state["pin"]["locked"] is True
    assert f"remote-control-disabled number={D1} failures=4" in caplog.text
    for pin in ("0000", "1111", "2222", "3333", PIN):
        assert pin not in caplog.text.replace(D1, "").replace(DATA, "")


async def test_remote_forwarding_destination_is_read_back_and_audited(
        switch: Switch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    await switch.services.remote_control.set_enabled(D1, True)
    line = remote(switch)
    await log_in(line)
    await line.press("7")
    await line.press("1")
    await line.press(f"{D2}#")
    await line.press("2")  # not that one
    await line.press(f"{A_OPTION}#")
    await line.press("1")
    await line.press("7")
    await line.press("2")
    await line.press("1")  # immediate
    await line.press("8")  # forwarding on
    await line.waiting()
    forwarding_menu = ["remote_forwarding_menu", "menu_repeat"]
    assert line.said[2:] == [
        *MENU_REMOTE, *forwarding_menu, "forwarding_enter_destination", "you_entered",
        *readout(D2), "confirm_or_retry", "forwarding_enter_destination", "you_entered",
        *readout(A_OPTION), "confirm_or_retry", "forwarding_destination_registered",
        *MENU_REMOTE, *forwarding_menu, "forwarding_mode_menu", "forwarding_mode_immediate",
        *MENU_REMOTE, "forwarding_started", *MENU_REMOTE]
    assert (await switch.state())["forwarding"] == {
        "enabled": True, "destination": A_OPTION, "mode": "immediate"}
    changes = [r.getMessage() for r in caplog.records if "remote-change" in r.getMessage()]
    assert changes == [
        f"remote-change source={STRANGER} number={D1} change=forwarding-destination "
        f"destination={A_OPTION}",
        f"remote-change source={STRANGER} number={D1} change=forwarding-mode mode=immediate",
        f"remote-change source={STRANGER} number={D1} change=forwarding-on"]
    assert all(r.levelno == logging.INFO for r in caplog.records
               if "remote-change" in r.getMessage())


async def test_remote_forwarding_on_asks_for_a_destination_and_audits_it(
        switch: Switch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    await switch.services.remote_control.set_enabled(D1, True)
    line = remote(switch)
    await log_in(line)
    await line.press("8")
    await line.press(f"{D2}#")
    await line.press("1")
    await line.waiting()
    assert line.said[4:] == ["forwarding_no_destination", "forwarding_enter_destination",
                             "you_entered", *readout(D2), "confirm_or_retry",
                             "forwarding_started", *MENU_REMOTE]
    assert f"change=forwarding-on destination={D2}" in caplog.text


async def test_remote_messages_settings_and_ring_time(switch: Switch,
                                                      library: PromptLibrary) -> None:
    await switch.services.remote_control.set_enabled(D1, True)
    message = await leave_message(switch, D2)
    line = remote(switch)
    await log_in(line)
    await line.press("3")
    await line.press("9")  # saved
    await line.press("4")
    await line.press("#")
    await line.press("6")
    await line.press("30#")
    await line.press("1")
    await line.press("5")
    await line.press("3")  # the default greeting
    await line.press("2")  # voicemail off
    await line.waiting()
    assert line.said[2:] == [
        *MENU_REMOTE, "voicemail_new_count", "ken_1", *heading(library, message), "<audio>",
        PLAYBACK_MENU, "voicemail_saved", "voicemail_end_of_messages", *MENU_REMOTE,
        "voicemail_saved_count", "ken_1", *heading(library, message), "<audio>",
        PLAYBACK_MENU, "voicemail_end_of_messages", *MENU_REMOTE,
        "ring_time_is", "byou_15", "ring_time_enter", "ring_time_entered", "byou_30",
        "confirm_or_retry", "ring_time_set", *MENU_REMOTE, *MENU_1419, "greeting_reset",
        *MENU_REMOTE, "voicemail_stopped", *MENU_REMOTE]
    voicemail = (await switch.state())["voicemail"]
    assert (voicemail["enabled"], voicemail["ring_time"], voicemail["saved"]) == (False, 30, 1)


async def test_remote_control_number_and_pin_missing_three_times_end_the_call(
        switch: Switch) -> None:
    line = remote(switch)
    await line.silence()
    await line.press("#")
    await line.press("*#")
    assert await line.ended() == ["remote_enter_number", "no_input", "remote_enter_number",
                                  "invalid_input", "remote_enter_number", "invalid_input",
                                  "goodbye"]


# ---- hanging up at every step ------------------------------------------------------------------
async def enable_remote(switch: Switch) -> None:
    await switch.services.remote_control.set_enabled(D1, True)


async def last_caller(switch: Switch) -> None:
    switch.services.last_caller.record(D1, D2)


async def two_blocked(switch: Switch) -> None:
    for caller in (D2, A_OPTION):
        await switch.services.blocklist.add(D1, caller)


async def one_message(switch: Switch) -> None:
    await leave_message(switch, D2)


async def a_greeting(switch: Switch) -> None:
    path = switch.directory / "greeting.wav"
    path.write_bytes(g711_wav(Codec.PCMU, VOICE * 50))
    await switch.services.voicemail.set_greeting(D1, path)


async def nothing(switch: Switch) -> None:
    pass


LOGIN = f"{D1}#{PIN}#"
# (dial code, set-up, the keys of one path: "~" is a second of speech and #), the change made
# by its last key
PATHS = {
    "1442": ("blocklist_register_last", last_caller, f"{PIN}#", "blocklist"),
    "144-register": ("blocklist_menu", nothing, f"{PIN}#1{D2}#1", "blocklist"),
    "144-delete-last": ("blocklist_menu", two_blocked, f"{PIN}#3", "blocklist"),
    "144-delete-all": ("blocklist_menu", two_blocked, f"{PIN}#41", "blocklist"),
    "1417-save": ("voicemail_playback", one_message, "9", "voicemail"),
    "1417-delete": ("voicemail_playback", one_message, "7", "voicemail"),
    "1419-ring-time": ("voicemail_settings", nothing, "125#1", "voicemail"),
    "1419-greeting": ("voicemail_settings", nothing, "2~1", "voicemail"),
    "1419-default": ("voicemail_settings", a_greeting, "3", "voicemail"),
    "1421": ("forwarding_start", nothing, f"{D2}#1", "forwarding"),
    "1429-destination": ("forwarding_settings", nothing, f"1{D2}#1", "forwarding"),
    "1429-mode": ("forwarding_settings", nothing, "21", "forwarding"),
    "1429-remote-control": ("forwarding_settings", nothing, "31", "remote_control"),
    "remote-voicemail-off": ("remote_access", enable_remote, f"{LOGIN}2", "voicemail"),
    "remote-destination": ("remote_access", enable_remote, f"{LOGIN}71{D2}#1", "forwarding"),
    "remote-forwarding-on": ("remote_access", enable_remote, f"{LOGIN}8{D2}#1", "forwarding"),
    "remote-ring-time": ("remote_access", enable_remote, f"{LOGIN}630#1", "voicemail"),
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_hanging_up_at_any_step_changes_nothing_until_the_last_key(
        switch: Switch, path: str) -> None:
    code, set_up, keys, changed = PATHS[path]
    await set_up(switch)
    before = await switch.state()
    subscriber = None if code == "remote_access" else D1

    async def walk(steps: str) -> Line:
        line = switch.dial(code, subscriber=subscriber)
        for step in steps:
            if step == "~":
                await line.speak(1.0)
            else:
                await line.press(step)
        await line.idle()
        return line

    for step in range(len(keys)):
        line = await walk(keys[:step])
        await line.hang_up()
        assert await switch.state() == before, f"hung up after {keys[:step]!r}"
        assert not (switch.directory / "staging").exists() or \
            list((switch.directory / "staging").iterdir()) == []
    line = await walk(keys)
    await line.hang_up()
    after = await switch.state()
    assert after[changed] != before[changed]
    assert {key: value for key, value in after.items() if key != changed} == \
        {key: value for key, value in before.items() if key != changed}


async def test_a_hang_up_during_the_confirmed_change_does_not_cut_it_short(
        switch: Switch, monkeypatch: pytest.MonkeyPatch) -> None:
    blocklist = switch.services.blocklist
    real_add = blocklist.add
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_add(number: str, caller: str) -> BlockResult:
        started.set()
        await release.wait()
        return await real_add(number, caller)

    monkeypatch.setattr(blocklist, "add", slow_add)
    line = await blocklist_menu(switch)
    await line.press(f"1{D2}#1")
    await asyncio.wait_for(started.wait(), 5)
    await line.hang_up()  # while the store writes
    release.set()
    for _ in range(100):
        if (await switch.state())["blocklist"]:
            break
        await asyncio.sleep(0.01)
    assert (await switch.state())["blocklist"] == [D2]


async def test_a_failing_store_is_told_as_try_later_and_logged(
        switch: Switch, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(number: str, enabled: bool) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(switch.services.voicemail, "set_enabled", broken)
    line = switch.dial("voicemail_start")
    assert await line.ended() == ["try_later"]
    assert "the flow of voicemail_start failed" in caplog.text
    assert "disk I/O error" in caplog.text


async def test_1442_when_the_last_caller_was_the_subscriber_itself(switch: Switch) -> None:
    switch.services.last_caller.record(D1, D1)
    line = switch.dial("blocklist_register_last")
    await line.press(f"{PIN}#")
    assert await line.ended() == ["enter_pin", "blocklist_invalid_number"]
    assert (await switch.state())["blocklist"] == []
