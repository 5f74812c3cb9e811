"""Remote control (遠隔操作) at the remote-access number (dial_codes.remote_access), from any
phone, registered or not.

    "電話番号を押して最後に#" number # -> "暗証番号を押して最後に#" PIN # -> the menu:
    1 voicemail on, 2 voicemail off, 3 new messages (as 1417), 4 saved messages,
    5 voicemail settings (as 1419), 6 ring time (as 1419 1), 7 forwarding settings
    (as 1429 1 and 2), 8 forwarding on (as 1421), 9 forwarding off; * repeats the menu.

Any failure (a number that is no subscriber's, a data SIM, remote control off, a wrong or
locked PIN, a caller whose address tried too many wrong PINs) gets the same answer after the
PIN, "電話番号、またはネットワーク暗証番号に誤りがあります", and number and PIN are asked again;
the services.remote_control.disconnect_after-th failure in one call ends it. The PIN lock,
the per-source throttle and switching remote control off after
services.remote_control.disable_after failures in a row are RemoteControlService's.

Each change made by remote control is an audit line on the `softswitch.security` logger:

    remote-change source=udp:198.51.100.7:5062 number=09012345678 change=voicemail-on
    remote-change source=... number=... change=forwarding-destination destination=09087654321

(change= voicemail-on, voicemail-off, ring-time seconds=N, greeting-recorded, greeting-default,
forwarding-destination destination=D, forwarding-mode mode=M, forwarding-on [destination=D],
forwarding-off.) A destination is read back and confirmed before it takes effect.
"""

from __future__ import annotations

from ..config import menu_keys
from ..services.pin import log_field, security_log
from . import forwarding, voicemail
from .context import FlowContext
from .guidance import NUMBER_MAX_DIGITS, PIN_MAX_DIGITS, Guidance


async def remote_access(guide: Guidance, context: FlowContext) -> None:
    """Number and PIN until they are right (then the menu), or the call ends."""
    failures = 0
    while True:
        keyed = await guide.ask("remote_enter_number", max_digits=NUMBER_MAX_DIGITS,
                                valid=str.isdigit)
        pin = await guide.ask("enter_pin", max_digits=PIN_MAX_DIGITS, valid=str.isdigit)
        access = await context.services.remote_control.authenticate(
            keyed, pin, source=guide.call.source)
        if access.granted and access.number is not None:
            await remote_menu(guide, context, access.number)
            return
        await guide.call.play("remote_auth_failed")
        failures += 1
        if failures >= context.disconnect_after:
            return


async def remote_menu(guide: Guidance, context: FlowContext, number: str) -> None:
    """The nine-item menu for subscriber `number`, offered again after each action."""
    keys = context.menus.remote
    services = context.services
    source = guide.call.source

    def audit(change: str) -> None:
        security_log.info("remote-change source=%s number=%s change=%s", log_field(source),
                          number, change)

    guide.on_change = audit  # each change as it is made: a hang-up right after still has it
    while True:
        choice = await guide.menu(["remote_menu", "menu_repeat"], menu_keys(keys))
        if choice == keys.voicemail_on:
            await guide.commit(services.voicemail.set_enabled(number, True), "voicemail-on")
            await guide.say("voicemail_started")
        elif choice == keys.voicemail_off:
            await guide.commit(services.voicemail.set_enabled(number, False), "voicemail-off")
            await guide.say("voicemail_stopped")
        elif choice == keys.new_messages:
            await voicemail.play_messages(guide, context, number, new=True)
            await guide.say("voicemail_end_of_messages")
        elif choice == keys.saved_messages:
            await voicemail.play_messages(guide, context, number, new=False)
            await guide.say("voicemail_end_of_messages")
        elif choice == keys.voicemail_settings:
            await voicemail.setting(guide, context, number)
        elif choice == keys.ring_time:
            await voicemail.ring_time(guide, context, number)
        elif choice == keys.forwarding_settings:
            await _forwarding_setting(guide, context, number)
        elif choice == keys.forwarding_on:
            await forwarding.turn_on(guide, context, number)
            await guide.say("forwarding_started")
        elif choice == keys.forwarding_off:
            await guide.commit(services.forwarding.stop(number), "forwarding-off")
            await guide.say("forwarding_stopped")


async def _forwarding_setting(guide: Guidance, context: FlowContext, number: str) -> None:
    """1429's destination and mode, from another phone."""
    keys = context.menus.forwarding_settings
    choice = await guide.menu(["remote_forwarding_menu", "menu_repeat"],
                              (keys.destination, keys.mode))
    if choice == keys.destination:
        await forwarding.register_destination(guide, context, number)
    else:
        await forwarding.choose_mode(guide, context, number)
