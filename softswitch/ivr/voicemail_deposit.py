"""Leaving a message (留守番電話サービス): what a caller hears when a subscriber does not answer.

    greeting (the subscriber's own if recorded, else "ただいま電話に出ることができません。
    発信音のあとに、メッセージをお話しください。") -> tone -> recording until hang-up, `#`
    or services.voicemail.max_seconds -> "メッセージをお預かりしました。" -> goodbye.
    A full mailbox: "ただいま、メッセージをお預かりできません。"

A message is stored only complete: the recording is written under a temporary name and
fsynced off the event loop (Call.record), then moved into the mailbox and recorded
(VoicemailService.store_message). Hanging up ends the recording, and what was said is kept.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from .runtime import Call

log = logging.getLogger(__name__)

MIN_SECONDS = 0.5  # shorter: a hang-up at the tone, not a message


class Mailboxes(Protocol):
    """What the flow needs of services.voicemail.VoicemailService."""

    async def can_accept(self, number: str) -> bool: ...

    async def greeting(self, number: str) -> Path | None: ...

    async def store_message(self, number: str, caller: str | None, wav_path: Path,
                            seconds: float) -> object: ...


def deposit_flow(mailbox: str, mailboxes: Mailboxes, staging: Path,
                 max_seconds: float) -> Callable[[Call], Coroutine[Any, Any, None]]:
    """The flow that takes a message for `mailbox`."""

    async def leave_message(call: Call) -> None:
        if not await mailboxes.can_accept(mailbox):
            await call.play("voicemail_mailbox_full")
            await call.hangup()
            return
        greeting = await mailboxes.greeting(mailbox)
        if greeting is not None and greeting.exists():
            await call.play_recording(greeting)
        else:
            await call.play("voicemail_greeting")
        await call.play("voicemail_tone")
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / f"{mailbox}-{secrets.token_hex(8)}.wav"
        caller = call.caller or None
        try:
            recording = await call.record(path, max_seconds, stop_on="#", keep_on_hangup=True)
        except asyncio.CancelledError:  # the caller hung up: keep what was said
            if path.exists():
                await asyncio.shield(_keep(mailboxes, mailbox, caller, path))
            raise
        await _keep(mailboxes, mailbox, caller, recording.path)
        await call.play("voicemail_recorded")
        await call.hangup()

    return leave_message


async def _keep(mailboxes: Mailboxes, mailbox: str, caller: str | None, path: Path) -> None:
    seconds = max(0, path.stat().st_size - 58) / 8000  # G.711: one octet a sample
    if seconds < MIN_SECONDS:
        path.unlink(missing_ok=True)
        return
    try:
        await mailboxes.store_message(mailbox, caller, path, seconds)
    except Exception as error:  # a full mailbox meanwhile, the store down: say so in the log
        path.unlink(missing_ok=True)
        log.warning("voicemail for %s not kept: %s", mailbox, error)
        return
    log.info("voicemail for %s from %s: %.1f s", mailbox, caller or "withheld", seconds)
