"""The call object voice flows use: play prompts, collect digits, record, hang up.

A flow is one async function that reads like the guidance it speaks:

    digits = await call.collect(prompt="dtmf_test_intro", max_digits=32, end="#")
    await call.play(["you_entered", *call.prompts.digits_readout(digits)])
    await call.hangup()

Flows never touch sockets or SIP. The call handler (switch/calls.py) gives a `Call` its media
(anything shaped like `CallMedia`: in production a `net.rtp.MediaStream` on the shared media
clock), feeds it the caller's digits (`digit_received`), and runs the flow as a task.

- When the caller hangs up, the flow's task is cancelled: whatever it awaits raises
  CancelledError, playback stops and an unfinished recording is deleted (or kept, see
  `record`). When the flow hangs up itself, later calls raise `CallEnded`.
- Digits are buffered as they arrive (type-ahead): a digit pressed during a plain `play` waits
  for the next `collect`. A `collect` prompt stops at the first digit (barge-in) and that digit
  is the first one collected. Each press is delivered once, however it came (RFC 4733, SIP
  INFO or in-band: the RTP session merges them before they get here).
- Timeouts run on `timers` (the event loop unless a test gives a fake clock).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

from ..media.dtmf import DigitEvent
from ..media.g711 import Codec
from ..media.prompts import FRAME_BYTES, PromptLibrary
from ..media.session import AudioFrame
from ..media.wav import WavRecorder, read_g711_wav

DEFAULT_FIRST_DIGIT_TIMEOUT = 5.0
DEFAULT_INTER_DIGIT_TIMEOUT = 3.0
# Mean magnitude (16-bit linear) below which a received frame counts as silence for `record`:
# about -38 dBFS, above a phone line's idle noise and well below speech.
SILENCE_LEVEL = 400

RecordingEnd = Literal["digit", "silence", "max_length"]


class Ended(StrEnum):
    """How one entry of keys ended."""

    DIGITS = "digits"  # keys, then the end key, max_digits keys, or a pause after them
    END_KEY_ALONE = "end_key_alone"  # the end key with nothing before it
    TIMEOUT = "timeout"  # no key at all within the first-digit timeout
    INVALID = "invalid"  # keys the entry's check refused


@dataclass(slots=True, frozen=True)
class Entry:
    """What the caller keyed in for one question, and how the entry ended."""

    digits: str  # without the end key
    ended: Ended

    @property
    def ok(self) -> bool:
        return self.ended is Ended.DIGITS


class CallEnded(Exception):
    """The call is over because the flow hung up; nothing more can be played or collected."""


class CallMedia(Protocol):
    """What a call needs from its media stream."""

    @property
    def codec(self) -> Codec: ...

    on_audio: Callable[[AudioFrame], None] | None  # set while recording

    def play(self, clips: Sequence[Sequence[bytes]]) -> asyncio.Future[bool]:
        """Play the clips in order; True when all were played, False when stopped."""
        ...

    def stop_playback(self) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """The clock timeouts run on; an asyncio event loop is one."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...


@dataclass(slots=True, frozen=True)
class Recording:
    path: Path
    seconds: float
    ended_by: RecordingEnd


def _magnitudes(codec: Codec) -> tuple[int, ...]:
    """|linear sample| of each of the 256 code words."""
    pcm = codec.to_pcm16(bytes(range(256)))
    return tuple(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True))
                 for i in range(0, len(pcm), 2))


_MAGNITUDES = MappingProxyType({codec: _magnitudes(codec) for codec in Codec})


class Call:
    """One answered call, as a voice flow sees it."""

    def __init__(self, media: CallMedia, prompts: PromptLibrary, *,
                 on_hangup: Callable[[], None], caller: str = "", called: str = "",
                 subscriber: str | None = None, source: str = "",
                 timers: Timers | None = None) -> None:
        self.prompts = prompts
        self.caller = caller  # the caller's number as the router established it ("": none)
        self.called = called  # the dialled number or code
        self.subscriber = subscriber  # the authenticated subscriber on their own line, if any
        self.source = source  # where the call came from, "udp:192.0.2.1:5060" (PIN throttle)
        self.last_collected: tuple[DigitEvent, ...] = ()  # the last collect's keys, end key too
        self._media = media
        self._on_hangup = on_hangup
        self._timers = timers
        self._digits: deque[DigitEvent] = deque()
        self._waiter: asyncio.Future[DigitEvent | None] | None = None
        self._barge_in = False  # a digit stops the current prompt
        self._stop_keys = ""  # keys that end the current recording
        self._recording_stopped: asyncio.Future[RecordingEnd] | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def waiting_for_key(self) -> bool:
        """A question waits for the caller's next key (none is typed ahead)."""
        return self._waiter is not None and not self._waiter.done()

    # ---- what the call handler calls --------------------------------------------------------
    def digit_received(self, event: DigitEvent) -> None:
        """A key press from the caller, whichever way it came."""
        if self._ended:
            return
        stopped = self._recording_stopped
        if stopped is not None and event.digit in self._stop_keys:
            if not stopped.done():
                stopped.set_result("digit")
            return  # the key that ends a recording is no input for what follows
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(event)
        else:
            self._digits.append(event)
        if self._barge_in:
            self._media.stop_playback()

    def end(self) -> None:
        """The call is over (either side hung up): stop playing, accept nothing more."""
        self._ended = True
        self._media.stop_playback()

    # ---- the flow's API ---------------------------------------------------------------------
    async def play(self, prompt: str | Sequence[str], *, barge_in: bool = False) -> bool:
        """Say one prompt or several in a row. True when all of it was played; with
        `barge_in`, False when a key stopped it (the key stays buffered for `collect`)."""
        self._check_live()
        ids = [prompt] if isinstance(prompt, str) else list(prompt)
        codec = self._media.codec
        clips = [self.prompts.frames(prompt_id, codec) for prompt_id in ids]  # KeyError first
        return await self._play(clips, barge_in)

    async def play_recording(self, path: str | os.PathLike[str], *,
                             barge_in: bool = False) -> bool:
        """Play a G.711 WAV file (a personal greeting), as `play` plays a prompt."""
        self._check_live()
        codec, audio = await asyncio.to_thread(read_g711_wav, path)
        target = self._media.codec
        audio = codec.transcode_to(target, audio)
        audio += target.silence(-len(audio) % FRAME_BYTES)
        frames = [audio[i:i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
        return await self._play([frames], barge_in)

    async def _play(self, clips: Sequence[Sequence[bytes]], barge_in: bool) -> bool:
        if barge_in and self._digits:
            return False
        done = self._media.play(clips)
        self._barge_in = barge_in
        try:
            return await done
        finally:
            self._barge_in = False
            if not done.done() or done.cancelled():
                self._media.stop_playback()

    async def collect(self, prompt: str | Sequence[str] | None = None, *, max_digits: int = 1,
                      end: str = "#", first_digit_timeout: float = DEFAULT_FIRST_DIGIT_TIMEOUT,
                      inter_digit_timeout: float = DEFAULT_INTER_DIGIT_TIMEOUT,
                      valid: Callable[[str], bool] | None = None, retries: int = 0,
                      invalid_prompt: str = "invalid_input",
                      no_input_prompt: str = "no_input") -> str:
        """Say `prompt` (a key stops it and counts) and collect keys until one of `end`, until
        `max_digits` keys, or until a timeout: `first_digit_timeout` after the prompt,
        `inter_digit_timeout` after each key. Returns the keys without the end key.

        An entry that is empty or that `valid` rejects is retried `retries` times, after
        `no_input_prompt` (nothing pressed) or `invalid_prompt`; "" when every try failed.
        """
        for attempt in range(retries + 1):
            entry = await self.entry(prompt, max_digits=max_digits, end=end,
                                     first_digit_timeout=first_digit_timeout,
                                     inter_digit_timeout=inter_digit_timeout, valid=valid)
            if entry.ok:
                return entry.digits
            if attempt < retries:
                await self.play(no_input_prompt if entry.ended is Ended.TIMEOUT
                                else invalid_prompt)
        return ""

    async def entry(self, prompt: str | Sequence[str] | None = None, *, max_digits: int = 1,
                    end: str = "#", first_digit_timeout: float = DEFAULT_FIRST_DIGIT_TIMEOUT,
                    inter_digit_timeout: float = DEFAULT_INTER_DIGIT_TIMEOUT,
                    valid: Callable[[str], bool] | None = None) -> Entry:
        """One question: say `prompt` (a key stops it and counts), collect keys as `collect`
        does, and tell how the entry ended: keys (`Ended.DIGITS`), the end key alone, nothing
        at all, or keys that `valid` refused."""
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        self._check_live()
        if prompt is not None:
            await self.play(prompt, barge_in=True)
        digits = await self._gather(max_digits, end, first_digit_timeout, inter_digit_timeout)
        if not digits:
            return Entry("", Ended.END_KEY_ALONE if self.last_collected else Ended.TIMEOUT)
        if valid is not None and not valid(digits):
            return Entry(digits, Ended.INVALID)
        return Entry(digits, Ended.DIGITS)

    async def record(self, path: str | os.PathLike[str], max_seconds: float, *,
                     stop_on: str = "#", silence_seconds: float | None = None,
                     keep_on_hangup: bool = False) -> Recording:
        """Record the caller into a G.711 WAV file at `path` (written under a temporary name
        and renamed when complete) until a key of `stop_on`, `max_seconds` of audio, or
        `silence_seconds` without voice. Keys pressed before the recording are dropped.

        If the call ends meanwhile, the recording is deleted, or with `keep_on_hangup` (a
        voicemail message) completed at `path` before the cancellation goes on."""
        self._check_live()
        loop = asyncio.get_running_loop()
        timers = self._timers or loop
        recorder = WavRecorder(path, self._media.codec, max_seconds)
        stopped: asyncio.Future[RecordingEnd] = loop.create_future()
        magnitudes = _MAGNITUDES[self._media.codec]
        last_voice = timers.time()
        handles: list[Cancellable] = []

        def finish(reason: RecordingEnd) -> None:
            if not stopped.done():
                stopped.set_result(reason)

        def on_audio(frame: AudioFrame) -> None:
            nonlocal last_voice
            recorder.write(frame.payload)
            if recorder.full:
                finish("max_length")
            if silence_seconds is None or not frame.payload:
                return
            if sum(map(magnitudes.__getitem__, frame.payload)) > SILENCE_LEVEL * len(
                    frame.payload):
                last_voice = timers.time()

        def check_silence() -> None:
            # a timer, not the frames: a phone with silence suppression sends none at all
            assert silence_seconds is not None
            quiet_for = timers.time() - last_voice
            if quiet_for >= silence_seconds:
                finish("silence")
            else:
                handles.append(timers.call_later(silence_seconds - quiet_for, check_silence))

        self._digits.clear()
        self._stop_keys, self._recording_stopped = stop_on, stopped
        self._media.on_audio = on_audio
        # the packets' own count ends the recording; this catches a phone that stops sending
        handles.append(timers.call_later(max_seconds + 1.0, lambda: finish("max_length")))
        if silence_seconds is not None:
            handles.append(timers.call_later(silence_seconds, check_silence))
        try:
            ended_by = await stopped
        except asyncio.CancelledError:
            if keep_on_hangup and recorder.samples:
                # fsync off the event loop; shielded: a second cancel must not lose it
                await asyncio.shield(asyncio.to_thread(recorder.finish))
            else:
                recorder.abort()
            raise
        except BaseException:
            recorder.abort()
            raise
        finally:
            self._media.on_audio = None
            self._stop_keys, self._recording_stopped = "", None
            for handle in handles:
                handle.cancel()
        seconds = recorder.seconds
        return Recording(await asyncio.to_thread(recorder.finish), seconds, ended_by)

    async def hangup(self) -> None:
        """End the call: the caller is sent BYE. Later calls on this object raise CallEnded."""
        if self._ended:
            return
        self.end()
        self._on_hangup()

    def flush_digits(self) -> None:
        """Forget keys pressed ahead (type-ahead) before a question that must not take them."""
        self._digits.clear()

    # ---- inside -----------------------------------------------------------------------------
    def _check_live(self) -> None:
        if self._ended:
            raise CallEnded("the call has ended")

    async def _gather(self, max_digits: int, end: str, first_timeout: float,
                      inter_timeout: float) -> str:
        events: list[DigitEvent] = []
        digits: list[str] = []
        timeout = first_timeout
        try:
            while len(digits) < max_digits:
                event = await self._next_digit(timeout)
                if event is None:
                    break
                events.append(event)
                if event.digit in end:
                    break
                digits.append(event.digit)
                timeout = inter_timeout
        finally:
            self.last_collected = tuple(events)
        return "".join(digits)

    async def _next_digit(self, timeout: float) -> DigitEvent | None:
        """The next key, or None after `timeout` seconds without one."""
        if self._digits:
            return self._digits.popleft()
        self._check_live()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[DigitEvent | None] = loop.create_future()

        def expire() -> None:
            if not waiter.done():
                waiter.set_result(None)

        handle = (self._timers or loop).call_later(timeout, expire)
        self._waiter = waiter
        try:
            return await waiter
        finally:
            handle.cancel()
            self._waiter = None


Flow = Callable[[Call], Coroutine[Any, Any, None]]  # what a dial code or public number runs
