"""Nuisance-call blocking by dial code (迷惑電話ストップサービス), PIN first.

    1442  PIN # -> the last caller is added -> "登録しました" -> end.
          No last caller, a withheld one, a duplicate or a full list is told; nothing changes.
    144   PIN # -> menu:
          1 register: number # -> read back -> 1 confirm / 2 key again
          2 count: "登録されている電話番号は N 件です"
          3 delete the last registered number
          4 delete all: 1 confirms
          * repeats the menu

A type A line without the paid option hears that blocking is not subscribed, before the PIN.
The PIN: a wrong one is told and asked again, three tries in all; a locked PIN, or a caller
whose address tried too many wrong PINs, is told so and the call ends.
"""

from __future__ import annotations

from ..config import menu_keys
from ..services.errors import InvalidNumber, OwnNumber
from ..services.pin import PinResult
from ..services.repositories import BlockResult
from .context import FlowContext
from .guidance import PIN_MAX_DIGITS, Guidance
from .runtime import Ended

PIN_REFUSED = {PinResult.LOCKED: "pin_locked", PinResult.THROTTLED: "try_later",
               PinResult.UNKNOWN: "not_available"}
ADDED = {BlockResult.ADDED: "blocklist_registered",
         BlockResult.DUPLICATE: "blocklist_already_registered",
         BlockResult.FULL: "blocklist_full"}


async def register_last_caller(guide: Guidance, context: FlowContext, number: str) -> None:
    """1442: block the last caller."""
    if not await _blocking_and_pin(guide, context, number):
        return
    last = await context.services.last_caller.get(number)
    if last is None:
        await guide.call.play("blocklist_no_last_caller")
    elif last.caller is None:
        await guide.call.play("blocklist_last_caller_withheld")
    else:
        try:
            result = await guide.commit(context.services.blocklist.add(number, last.caller),
                                        "blocklist-add-last-caller")
        except (InvalidNumber, OwnNumber):  # the subscriber called the own number
            await guide.call.play("blocklist_invalid_number")
            return
        await guide.call.play("blocklist_last_caller_registered" if result is BlockResult.ADDED
                              else ADDED[result])


async def menu(guide: Guidance, context: FlowContext, number: str) -> None:
    """144: the blocklist menu, offered again after each action."""
    if not await _blocking_and_pin(guide, context, number):
        return
    blocklist = context.services.blocklist
    keys = context.menus.blocklist
    while True:
        choice = await guide.menu(["blocklist_menu", "menu_repeat"], menu_keys(keys))
        if choice == keys.register:
            await _register_keyed_number(guide, context, number)
        elif choice == keys.count:
            count = await blocklist.count(number)
            await guide.say(["blocklist_count", *guide.call.prompts.number_readout(count, "ken")]
                            if count else "blocklist_empty")
        elif choice == keys.delete_last:
            removed = await guide.commit(blocklist.delete_last(number), "blocklist-delete-last")
            await guide.say("blocklist_deleted_last" if removed else "blocklist_empty")
        elif choice == keys.delete_all:
            await _delete_all(guide, context, number)


async def _register_keyed_number(guide: Guidance, context: FlowContext, number: str) -> None:
    """Number # -> read back -> 1 confirm / 2 key again -> added (or told why not)."""
    blocklist = context.services.blocklist
    if await blocklist.count(number) >= blocklist.max_entries:
        await guide.say("blocklist_full")
        return

    caller = await guide.ask_other_number("blocklist_enter_number", own=number,
                                      what="blocked number",
                                      invalid_prompt="blocklist_invalid_number")
    await guide.say(ADDED[await guide.commit(blocklist.add(number, caller), "blocklist-add")])


async def _delete_all(guide: Guidance, context: FlowContext, number: str) -> None:
    """"全ての番号を削除します。よろしければ1を" -> 1 deletes; 2 changes nothing."""
    if not await context.services.blocklist.count(number):
        await guide.say("blocklist_empty")
        return
    keys = context.menus.confirm
    if await guide.menu("blocklist_confirm_delete_all", (keys.accept, keys.retry)) \
            != keys.accept:
        await guide.say("cancelled")
        return
    await guide.commit(context.services.blocklist.delete_all(number), "blocklist-delete-all")
    await guide.say("blocklist_deleted_all")


async def _blocking_and_pin(guide: Guidance, context: FlowContext, number: str) -> bool:
    """Blocking is available on the line and the caller keyed its PIN."""
    line = context.line(number)
    if line is None or not line.blocking_available:
        await guide.call.play("blocklist_not_subscribed")
        return False
    return await pin_accepted(guide, context, number, via="blocklist")


async def pin_accepted(guide: Guidance, context: FlowContext, number: str, via: str) -> bool:
    """"暗証番号を押して最後に#" until the PIN is right (True), three tries; a locked PIN or
    a throttled caller is told and refused (False). A malformed entry (not 4 digits) is told
    as invalid and not checked; a wrong PIN is counted by the PIN service."""
    failures = 0
    while True:
        entry = await guide.question("enter_pin", max_digits=PIN_MAX_DIGITS, valid=_is_pin)
        if not entry.ok:
            failures = await guide.failed(
                "no_input" if entry.ended is Ended.TIMEOUT else "invalid_input", failures)
            continue
        check = await context.services.pin.verify(number, entry.digits, guide.call.source, via)
        if check.ok:
            return True
        if check.result is not PinResult.WRONG:
            await guide.call.play(PIN_REFUSED[check.result])
            return False
        failures = await guide.failed("pin_wrong", failures)


def _is_pin(digits: str) -> bool:
    return len(digits) == 4 and digits.isdigit()
