"""Network voicemail by dial code (留守番電話サービス); remote control uses the same pieces.

    1411 / 1410  voicemail on / off -> told -> end.
    1417  "新しいメッセージは N 件です" then each new message, then the saved ones: its arrival
          time and the caller's number, the message, then 1 replay, 7 delete, 9 save, # next.
    1419  menu: 1 ring time: seconds (0-120) # -> read back -> 1 confirm / 2 key again
                2 personal greeting: after the tone, # ends -> 1 keep / 2 record again
                3 back to the default greeting
                * repeats the menu

A message skipped with `#` stays as it was (a new one is still new next time); `9` keeps it
as saved. Arrival times are read in the server's local time.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime

from ..config import menu_keys
from ..services.errors import NoSuchMessage
from ..services.model import MAX_RING_TIME, VoicemailMessage
from .context import FlowContext
from .guidance import Guidance

RING_TIME_MAX_DIGITS = 4  # "1200" is refused whole, not taken as 120 and a stray 0
GREETING_MAX_SECONDS = 30.0
GREETING_MIN_SECONDS = 0.5  # shorter: nothing was said


async def start(guide: Guidance, context: FlowContext, number: str) -> None:
    """1411."""
    await guide.commit(context.services.voicemail.set_enabled(number, True), "voicemail-on")
    await guide.call.play("voicemail_started")


async def stop(guide: Guidance, context: FlowContext, number: str) -> None:
    """1410."""
    await guide.commit(context.services.voicemail.set_enabled(number, False), "voicemail-off")
    await guide.call.play("voicemail_stopped")


async def playback(guide: Guidance, context: FlowContext, number: str) -> None:
    """1417: the new messages, then the saved ones (as they were when the call began)."""
    messages = await context.services.voicemail.messages(number)
    await _play_all(guide, context, [m for m in messages if m.new], new=True)
    await _play_all(guide, context, [m for m in messages if not m.new], new=False)
    await guide.call.play("voicemail_end_of_messages")


async def play_messages(guide: Guidance, context: FlowContext, number: str, *,
                        new: bool) -> None:
    """The new (or the saved) messages alone (remote control 3 and 4)."""
    messages = await context.services.voicemail.messages(number)
    await _play_all(guide, context, [m for m in messages if m.new == new], new=new)


async def _play_all(guide: Guidance, context: FlowContext, messages: list[VoicemailMessage],
                    *, new: bool) -> None:
    """How many new (or saved) messages there are, then each of them."""
    if not messages:
        await guide.say("voicemail_no_new_messages" if new else "voicemail_no_saved_messages")
        return
    await guide.say("voicemail_new_count" if new else "voicemail_saved_count",
                    guide.call.prompts.number_readout(len(messages), "ken"))
    for index, message in enumerate(messages):
        if index:
            await guide.say("voicemail_next_message")
        await _play_message(guide, context, message)


async def _play_message(guide: Guidance, context: FlowContext,
                        message: VoicemailMessage) -> None:
    """Arrival time, caller, the message; then 1 replay / 7 delete / 9 save / # next."""
    prompts = guide.call.prompts
    when = datetime.fromtimestamp(message.received_at)
    caller = ["voicemail_from", *prompts.digits_readout(message.caller)] if message.caller \
        else ["voicemail_from_withheld"]
    await guide.say("voicemail_received_at", prompts.datetime_readout(when), caller)
    await _play_audio(guide, message)
    keys = context.menus.playback
    voicemail = context.services.voicemail
    while True:
        choice = await guide.menu("voicemail_playback_menu", menu_keys(keys))
        if choice == keys.replay:
            await _play_audio(guide, message)
            continue
        try:
            if choice == keys.delete:
                await guide.commit(voicemail.delete(message.number, message.id),
                                   f"message-deleted id={message.id}")
                await guide.say("voicemail_deleted")
            elif choice == keys.save:
                await guide.commit(voicemail.save(message.number, message.id),
                                   f"message-saved id={message.id}")
                await guide.say("voicemail_saved")
        except NoSuchMessage:  # gone meanwhile (retention, another call): on to the next
            pass
        return


async def _play_audio(guide: Guidance, message: VoicemailMessage) -> None:
    with contextlib.suppress(FileNotFoundError):  # deleted past retention meanwhile
        await guide.call.play_recording(message.audio, barge_in=True)


async def settings(guide: Guidance, context: FlowContext, number: str) -> None:
    """1419: the voicemail settings menu, offered again after each action."""
    while True:
        await setting(guide, context, number)


async def setting(guide: Guidance, context: FlowContext, number: str) -> None:
    """One choice of the voicemail settings menu (remote control 5)."""
    keys = context.menus.voicemail_settings
    choice = await guide.menu(["voicemail_settings_menu", "menu_repeat"], menu_keys(keys))
    if choice == keys.ring_time:
        await ring_time(guide, context, number)
    elif choice == keys.record_greeting:
        await record_greeting(guide, context, number)
    else:
        await guide.commit(context.services.voicemail.reset_greeting(number), "greeting-default")
        await guide.say("greeting_reset")


async def ring_time(guide: Guidance, context: FlowContext, number: str) -> None:
    """The ring time now, seconds (0-120) # -> read back -> 1 confirm / 2 key again."""
    voicemail = context.services.voicemail
    readout = guide.call.prompts.number_readout
    current = (await voicemail.settings(number)).ring_time
    await guide.say("ring_time_is", readout(current, "byou"))
    while True:
        seconds = int(await guide.ask("ring_time_enter", max_digits=RING_TIME_MAX_DIGITS,
                                      valid=_ring_time, invalid_prompt="ring_time_invalid"))
        if await guide.confirm(["ring_time_entered", *readout(seconds, "byou")]):
            break
    await guide.commit(voicemail.set_ring_time(number, seconds), f"ring-time seconds={seconds}")
    await guide.say("ring_time_set")


def _ring_time(digits: str) -> bool:
    return digits.isdigit() and int(digits) <= MAX_RING_TIME


async def record_greeting(guide: Guidance, context: FlowContext, number: str) -> None:
    """After the tone, the greeting until # -> heard back -> 1 keep / 2 record again."""
    call = guide.call
    context.staging.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        await call.play(["greeting_record_intro", "voicemail_tone"])
        path = context.staging / f"greeting-{number}-{secrets.token_hex(8)}.wav"
        recording = await call.record(path, GREETING_MAX_SECONDS, stop_on=guide.keys.end)
        kept = False
        try:
            if recording.seconds < GREETING_MIN_SECONDS:
                failures = await guide.failed("no_input", failures)
                continue
            await call.play_recording(path, barge_in=True)
            if await guide.confirm([], question="greeting_keep_or_retry"):
                kept = True  # the service moves the file into the mailbox
                await guide.commit(context.services.voicemail.set_greeting(number, path),
                                   "greeting-recorded")
                await guide.say("greeting_recorded")
                return
        finally:
            if not kept:
                path.unlink(missing_ok=True)
