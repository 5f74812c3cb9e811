"""Call forwarding by dial code (転送でんわサービス); the remote-control menu uses the same pieces.

    1421  forwarding on: with no destination set, ask for one first
          (number # -> read back -> 1 confirm / 2 key again) -> told -> end.
    1420  forwarding off -> told -> end.
    1429  menu: 1 destination: number # -> read back -> 1 confirm / 2 key again
                2 mode: 1 immediate / 2 on no answer
                3 remote control: 1 on / 2 off
                * repeats the menu

The pieces that change the destination return it, so that the remote-control flow can audit
a change made from another phone.
"""

from __future__ import annotations

from ..config import menu_keys
from ..services.model import ForwardingMode
from .context import FlowContext
from .guidance import Guidance

MODE_SET: dict[ForwardingMode, str] = {"immediate": "forwarding_mode_immediate",
                                       "no_answer": "forwarding_mode_no_answer"}


async def start(guide: Guidance, context: FlowContext, number: str) -> None:
    """1421."""
    await turn_on(guide, context, number)
    await guide.call.play("forwarding_started")


async def turn_on(guide: Guidance, context: FlowContext, number: str) -> None:
    """Forwarding on, asking for a destination when none is set."""
    forwarding = context.services.forwarding
    if (await forwarding.settings(number)).destination is not None:
        await guide.commit(forwarding.start(number), "forwarding-on")
        return
    await guide.say("forwarding_no_destination")
    destination = await ask_destination(guide, number)
    await guide.commit(forwarding.start(number, destination),
                       f"forwarding-on destination={destination}")


async def stop(guide: Guidance, context: FlowContext, number: str) -> None:
    """1420."""
    await guide.commit(context.services.forwarding.stop(number), "forwarding-off")
    await guide.call.play("forwarding_stopped")


async def settings(guide: Guidance, context: FlowContext, number: str) -> None:
    """1429: the forwarding settings menu, offered again after each action."""
    keys = context.menus.forwarding_settings
    while True:
        choice = await guide.menu(["forwarding_settings_menu", "menu_repeat"], menu_keys(keys))
        if choice == keys.destination:
            await register_destination(guide, context, number)
        elif choice == keys.mode:
            await choose_mode(guide, context, number)
        elif choice == keys.remote_control:
            await switch_remote_control(guide, context, number)


async def register_destination(guide: Guidance, context: FlowContext, number: str) -> None:
    """The destination now, if any; the new one keyed, read back and confirmed: registered."""
    forwarding = context.services.forwarding
    current = (await forwarding.settings(number)).destination
    if current is not None:
        await guide.say("forwarding_destination_is", guide.call.prompts.digits_readout(current))
    destination = await ask_destination(guide, number)
    await guide.commit(forwarding.set_destination(number, destination),
                       f"forwarding-destination destination={destination}")
    await guide.say("forwarding_destination_registered")


async def ask_destination(guide: Guidance, number: str) -> str:
    """Number # -> read back -> 1 confirm / 2 key again: the destination confirmed."""
    return await guide.ask_other_number("forwarding_enter_destination", own=number,
                                    what="forwarding destination",
                                    invalid_prompt="forwarding_invalid_destination")


async def choose_mode(guide: Guidance, context: FlowContext, number: str) -> None:
    """1 forward at once / 2 forward when not answered within the ring time."""
    keys = context.menus.forwarding_mode
    choice = await guide.menu("forwarding_mode_menu", menu_keys(keys))
    mode: ForwardingMode = "immediate" if choice == keys.immediate else "no_answer"
    await guide.commit(context.services.forwarding.set_mode(number, mode),
                       f"forwarding-mode mode={mode}")
    await guide.say(MODE_SET[mode])


async def switch_remote_control(guide: Guidance, context: FlowContext, number: str) -> None:
    """1 remote control on / 2 off (1429 3, from the subscriber's own phone only)."""
    keys = context.menus.remote_control_switch
    enable = await guide.menu("remote_control_menu", menu_keys(keys)) == keys.enable
    await guide.commit(context.services.remote_control.set_enabled(number, enable),
                       "remote-control-on" if enable else "remote-control-off")
    await guide.say("remote_control_on" if enable else "remote_control_off")
