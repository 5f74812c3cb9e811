"""Network voicemail (留守番電話サービス): settings, messages, personal greetings.

Audio lives under services.voicemail.audio_dir, one directory per subscriber; the store keeps
each file's name relative to it. A file enters that directory only whole: it is written under a
temporary name, fsynced, renamed and the directory fsynced (all in a worker thread, never on
the event loop), and only then is the message's row added. A crash leaves at worst a file
without a row, never a row whose audio is missing or cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config import VoicemailConfig
from .errors import InvalidValue, MailboxFull, NoSuchMessage
from .lines import voice_line
from .model import MAX_RING_TIME, VoicemailMessage, VoicemailSettings
from .repositories import SubscriberRepository, VoicemailRepository

log = logging.getLogger(__name__)


class VoicemailService:
    def __init__(self, subscribers: SubscriberRepository, voicemail: VoicemailRepository,
                 config: VoicemailConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._subscribers = subscribers
        self._voicemail = voicemail
        self.config = config
        self.audio_dir = config.audio_dir
        self._clock = clock

    # -- settings -------------------------------------------------------------------------------

    async def settings(self, number: str) -> VoicemailSettings:
        await voice_line(self._subscribers, number)
        settings = await self._voicemail.settings(number)
        assert settings is not None  # provisioning writes every voice line's row
        return settings

    async def set_enabled(self, number: str, enabled: bool) -> None:
        await self.configure(number, enabled=enabled)

    async def set_ring_time(self, number: str, seconds: int) -> None:
        await self.configure(number, ring_time=seconds)

    async def configure(self, number: str, *, enabled: bool | None = None,
                        ring_time: int | None = None) -> VoicemailSettings:
        """Change what is given, all or nothing; the settings after."""
        if ring_time is not None and not 0 <= ring_time <= MAX_RING_TIME:
            raise InvalidValue(f"ring time must be 0 to {MAX_RING_TIME} seconds, got {ring_time}")
        await voice_line(self._subscribers, number)
        await self._voicemail.update_settings(number, enabled=enabled, ring_time=ring_time)
        return await self.settings(number)

    # -- messages -------------------------------------------------------------------------------

    async def can_accept(self, number: str) -> bool:
        """The mailbox has room for one more message (services.voicemail.max_messages)."""
        return await self._voicemail.count_messages(number) < self.config.max_messages

    async def store_message(self, number: str, caller: str | None, wav_path: Path,
                            seconds: float) -> VoicemailMessage:
        """Keep a complete recording (a WAV file the caller no longer writes to) as a new
        message: moved into the mailbox whole (see the module doc), then recorded. MailboxFull
        (and the recording discarded) when the mailbox filled up meanwhile."""
        await voice_line(self._subscribers, number)
        received_at = self._clock()
        relative = f"{number}/{int(received_at)}-{secrets.token_hex(4)}.wav"
        target = self.audio_dir / relative
        await asyncio.to_thread(install_file, wav_path, target)
        try:
            message_id = await self._voicemail.add_message(
                number, caller, received_at, seconds, relative, self.config.max_messages)
        except BaseException:
            await asyncio.to_thread(_unlink, target)
            raise
        if message_id is None:
            await asyncio.to_thread(_unlink, target)
            raise MailboxFull(number, self.config.max_messages)
        return VoicemailMessage(message_id, number, caller, received_at, seconds, True, target)

    async def messages(self, number: str) -> list[VoicemailMessage]:
        """New messages first, then saved ones; each group in arrival order."""
        await voice_line(self._subscribers, number)
        return [replace(message, audio=self.audio_dir / message.audio)
                for message in await self._voicemail.messages(number)]

    async def mark_heard(self, number: str, message_id: int) -> None:
        """The message is no longer new: it is kept as a saved message."""
        if not await self._voicemail.mark_heard(number, message_id):
            raise NoSuchMessage(number, message_id)

    save = mark_heard  # "9 save" after a message: keep it, as heard

    async def delete(self, number: str, message_id: int) -> None:
        """Delete the message and its audio."""
        audio = await self._voicemail.delete_message(number, message_id)
        if audio is None:
            raise NoSuchMessage(number, message_id)
        await asyncio.to_thread(_unlink, self.audio_dir / audio)

    async def expire(self) -> int:
        """Delete every message older than services.voicemail.retention_hours; how many."""
        before = self._clock() - self.config.retention_hours * 3600
        files = await self._voicemail.delete_messages_before(before)
        for audio in files:
            await asyncio.to_thread(_unlink, self.audio_dir / audio)
        if files:
            log.info("deleted %d voicemail messages past retention", len(files))
        return len(files)

    # -- personal greeting ----------------------------------------------------------------------

    async def greeting(self, number: str) -> Path | None:
        """The personal greeting's WAV file; None: play the default greeting."""
        audio = await self._voicemail.greeting(number)
        return None if audio is None else self.audio_dir / audio

    async def set_greeting(self, number: str, wav_path: Path) -> Path:
        """Keep a complete recording as the personal greeting (replacing one before)."""
        await voice_line(self._subscribers, number)
        relative = f"{number}/greeting-{secrets.token_hex(4)}.wav"
        target = self.audio_dir / relative
        await asyncio.to_thread(install_file, wav_path, target)
        try:
            previous = await self._voicemail.set_greeting(number, relative, self._clock())
        except BaseException:
            await asyncio.to_thread(_unlink, target)
            raise
        if previous is not None:
            await asyncio.to_thread(_unlink, self.audio_dir / previous)
        return target

    async def reset_greeting(self, number: str) -> None:
        """Back to the default greeting."""
        await voice_line(self._subscribers, number)
        previous = await self._voicemail.reset_greeting(number)
        if previous is not None:
            await asyncio.to_thread(_unlink, self.audio_dir / previous)


def install_file(source: Path, target: Path) -> None:
    """Move `source` to `target` so that `target` only ever appears complete and durable:
    written under a temporary name beside it, fsynced, renamed, the directory fsynced.
    Blocking: run it in a worker thread."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    try:
        try:
            os.rename(source, temporary)  # same file system: no copy
        except OSError:
            shutil.copyfile(source, temporary)
            _unlink(source)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.rename(temporary, target)
    except BaseException:
        _unlink(temporary)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
