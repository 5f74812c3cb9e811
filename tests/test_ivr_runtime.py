"""The IVR call object on a fake clock: barge-in, timeouts, retries, type-ahead, recording,
hang-up. No sockets: the media is a fake that plays prompts in fake time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from softswitch.ivr.dtmf_test import dtmf_test
from softswitch.ivr.runtime import Call, CallEnded, Ended, Entry, Recording
from softswitch.media.dtmf import DigitEvent
from softswitch.media.g711 import Codec
from softswitch.media.prompts import PromptLibrary
from softswitch.media.session import AudioFrame
from softswitch.media.wav import read_g711_wav

FRAME = 0.02


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary.load("en")


@dataclass
class _Timer:
    at: float
    order: int
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _Timer) -> bool:
        return (self.at, self.order) < (other.at, other.order)


@dataclass
class FakeClock:
    now: float = 0.0
    _heap: list[_Timer] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(self.now + delay, next(self._order), callback)
        heapq.heappush(self._heap, timer)
        return timer

    @property
    def pending(self) -> int:
        return sum(not t.cancelled for t in self._heap)

    async def advance(self, seconds: float) -> None:
        """Move time on, running what falls due, and let the tasks react at each step."""
        end = self.now + seconds
        await settle()
        while self._heap and self._heap[0].at <= end:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.now = timer.at
            timer.callback()
            await settle()
        self.now = end
        await settle()


async def done(task: asyncio.Task[Recording]) -> Recording:
    return await asyncio.wait_for(task, 5)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@dataclass
class FakeMedia:
    """Plays clips in fake time: each 20 ms frame is one tick of the clock."""

    clock: FakeClock
    library: PromptLibrary
    codec: Codec = Codec.PCMU
    on_audio: Callable[[AudioFrame], None] | None = None
    started: list[list[str]] = field(default_factory=list)  # prompt ids of each play()
    finished: list[bool] = field(default_factory=list)  # True: to the end, False: stopped
    _done: asyncio.Future[bool] | None = None
    _timer: _Timer | None = None

    def play(self, clips: Sequence[Sequence[bytes]]) -> asyncio.Future[bool]:
        names = {id(self.library.frames(p, self.codec)): p for p in self.library.prompt_ids}
        self.started.append([names[id(clip)] for clip in clips])
        self.stop_playback()
        done = asyncio.get_running_loop().create_future()
        self._done = done
        self._timer = self.clock.call_later(sum(len(c) for c in clips) * FRAME,
                                            lambda: self._end(True))
        return done

    def stop_playback(self) -> None:
        self._end(False)

    @property
    def playing(self) -> bool:
        return self._done is not None

    def _end(self, complete: bool) -> None:
        done, self._done = self._done, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if done is not None:
            self.finished.append(complete)
            if not done.done():
                done.set_result(complete)


@dataclass
class Harness:
    clock: FakeClock
    media: FakeMedia
    call: Call
    hangups: list[int]

    def press(self, keys: str, source: str = "rfc4733") -> None:
        for key in keys:
            self.call.digit_received(DigitEvent(key, source, self.clock.now))  # type: ignore[arg-type]


@pytest.fixture
def h(library: PromptLibrary) -> Harness:
    clock = FakeClock()
    media = FakeMedia(clock, library)
    hangups: list[int] = []
    call = Call(media, library, on_hangup=lambda: hangups.append(1), timers=clock)
    return Harness(clock, media, call, hangups)


def seconds_of(library: PromptLibrary, *prompts: str) -> float:
    return sum(len(library.frames(p)) for p in prompts) * FRAME


# ---- play ---------------------------------------------------------------------------------------
async def test_play_chains_prompts_and_returns_when_all_are_said(h: Harness,
                                                                 library: PromptLibrary) -> None:
    task = asyncio.create_task(h.call.play(["you_entered", "digit_1", "digit_2"]))
    length = seconds_of(library, "you_entered", "digit_1", "digit_2")
    await h.clock.advance(length - FRAME)
    assert not task.done()
    await h.clock.advance(FRAME)
    assert task.result() is True
    assert h.media.started == [["you_entered", "digit_1", "digit_2"]]


async def test_unknown_prompt_fails_before_anything_plays(h: Harness) -> None:
    with pytest.raises(KeyError):
        await h.call.play(["goodbye", "no_such_prompt"])
    assert h.media.started == []


async def test_a_key_during_a_plain_play_is_kept_for_the_next_collect(h: Harness) -> None:
    task = asyncio.create_task(h.call.play("goodbye"))
    await h.clock.advance(0.2)
    h.press("7")
    await settle()
    assert not task.done() and h.media.playing  # no barge-in on a plain play
    await h.clock.advance(5)
    assert task.result() is True
    collect = asyncio.create_task(h.call.collect(max_digits=1))
    await settle()
    assert collect.result() == "7"


# ---- collect ------------------------------------------------------------------------------------
async def test_barge_in_stops_the_prompt_and_the_key_is_the_first_digit(
        h: Harness, library: PromptLibrary) -> None:
    task = asyncio.create_task(h.call.collect(prompt="enter_pin", max_digits=4, end="#"))
    await h.clock.advance(1.0)
    assert h.media.playing
    h.press("1")
    await settle()
    assert not h.media.playing and h.media.finished == [False]
    for key in "234":
        await h.clock.advance(0.5)
        h.press(key)
    await settle()
    assert task.result() == "1234"  # four keys: no # needed
    assert [e.digit for e in h.call.last_collected] == ["1", "2", "3", "4"]
    assert h.clock.pending == 0  # no timer left behind


async def test_end_key_ends_and_is_not_returned(h: Harness) -> None:
    task = asyncio.create_task(h.call.collect(max_digits=32, end="#"))
    await settle()
    h.press("09*", source="info")
    h.press("#")
    await settle()
    assert task.result() == "09*"
    assert [(e.digit, e.source) for e in h.call.last_collected] == [
        ("0", "info"), ("9", "info"), ("*", "info"), ("#", "rfc4733")]


async def test_first_digit_timeout_counts_from_the_end_of_the_prompt(
        h: Harness, library: PromptLibrary) -> None:
    task = asyncio.create_task(h.call.collect(prompt="dtmf_test_intro", max_digits=4,
                                              first_digit_timeout=5, inter_digit_timeout=2))
    prompt = seconds_of(library, "dtmf_test_intro")
    await h.clock.advance(prompt + 4.9)
    assert not task.done()
    await h.clock.advance(0.2)
    assert task.result() == ""
    assert h.call.last_collected == ()


async def test_inter_digit_timeout_returns_what_was_keyed(h: Harness) -> None:
    task = asyncio.create_task(h.call.collect(max_digits=10, first_digit_timeout=5,
                                              inter_digit_timeout=2))
    await h.clock.advance(4)
    h.press("4")
    await h.clock.advance(1.5)
    h.press("2")
    await h.clock.advance(1.9)
    assert not task.done()
    await h.clock.advance(0.2)
    assert task.result() == "42"


async def test_retries_say_no_input_then_invalid_input(h: Harness,
                                                     library: PromptLibrary) -> None:
    task = asyncio.create_task(h.call.collect(
        prompt="enter_pin", max_digits=4, valid=lambda pin: len(pin) == 4, retries=2,
        first_digit_timeout=3, inter_digit_timeout=3))
    prompt = seconds_of(library, "enter_pin")
    await h.clock.advance(prompt + 3.1)  # first try: nothing at all
    assert h.media.started[-1] == ["no_input"]
    await h.clock.advance(seconds_of(library, "no_input") + 0.5)
    assert h.media.started[-1] == ["enter_pin"]
    h.press("12#")  # second try: too short
    await settle()
    assert h.media.started[-1] == ["invalid_input"]
    await h.clock.advance(seconds_of(library, "invalid_input") + 0.5)
    h.press("5678")  # third try: good
    await settle()
    assert task.result() == "5678"
    assert h.media.started == [["enter_pin"], ["no_input"], ["enter_pin"], ["invalid_input"],
                               ["enter_pin"]]
    assert h.media.finished == [True, True, False, True, False]


async def test_every_try_failing_gives_empty(h: Harness, library: PromptLibrary) -> None:
    task = asyncio.create_task(h.call.collect(prompt="enter_pin", max_digits=4, retries=1,
                                              valid=lambda pin: pin == "1234"))
    await h.clock.advance(0.5)
    h.press("9999")
    await h.clock.advance(0.1)
    h.press("0000")  # typed ahead during "invalid input"
    await h.clock.advance(seconds_of(library, "invalid_input"))
    assert task.result() == ""
    # the second prompt is not said: a key was waiting
    assert h.media.started == [["enter_pin"], ["invalid_input"]]


async def test_typed_ahead_key_skips_the_prompt(h: Harness) -> None:
    h.press("3")
    task = asyncio.create_task(h.call.collect(prompt="blocklist_menu", max_digits=1))
    await settle()
    assert task.result() == "3"
    assert h.media.started == []  # a key waiting: the menu is not said at all
    h.press("8")
    h.call.flush_digits()
    task = asyncio.create_task(h.call.collect(max_digits=1, first_digit_timeout=1))
    await h.clock.advance(1.1)
    assert task.result() == ""


async def test_cancelled_collect_stops_the_prompt_and_leaves_no_timer(h: Harness) -> None:
    task = asyncio.create_task(h.call.collect(prompt="enter_pin", max_digits=4))
    await h.clock.advance(0.5)
    task.cancel()
    await settle()
    assert task.cancelled()
    assert not h.media.playing
    assert h.clock.pending == 0
    task = asyncio.create_task(h.call.collect(max_digits=4))  # cancelled while waiting
    await h.clock.advance(0.5)
    task.cancel()
    await settle()
    assert h.clock.pending == 0
    h.press("1")  # no waiter left: buffered
    assert (await h.call.collect(max_digits=1)) == "1"


async def test_entry_says_how_the_input_ended(h: Harness, library: PromptLibrary) -> None:
    async def entry(*keys: str, valid: Callable[[str], bool] | None = None) -> Entry:
        task = asyncio.create_task(h.call.entry(max_digits=8, end="#", first_digit_timeout=5,
                                                inter_digit_timeout=2, valid=valid))
        await settle()
        for key in keys:
            h.press(key)
        await h.clock.advance(6)
        return task.result()

    assert await entry("1", "2", "#") == Entry("12", Ended.DIGITS)
    assert await entry("1", "2") == Entry("12", Ended.DIGITS)  # a pause after the keys
    assert await entry("#") == Entry("", Ended.END_KEY_ALONE)
    assert await entry() == Entry("", Ended.TIMEOUT)
    assert await entry("1", "#", valid=lambda d: len(d) == 4) == Entry("1", Ended.INVALID)
    assert await entry("1", "2", "3", "4", "#", valid=lambda d: len(d) == 4) == Entry(
        "1234", Ended.DIGITS)
    assert not Entry("1", Ended.INVALID).ok and Entry("1", Ended.DIGITS).ok


async def test_waiting_for_key_is_true_only_while_a_question_waits(h: Harness) -> None:
    assert not h.call.waiting_for_key
    task = asyncio.create_task(h.call.entry(max_digits=1))
    await settle()
    assert h.call.waiting_for_key
    h.press("5")
    await settle()
    assert not h.call.waiting_for_key and task.result() == Entry("5", Ended.DIGITS)


# ---- hangup ------------------------------------------------------------------------------------
async def test_hangup_ends_the_call_once(h: Harness) -> None:
    await h.call.hangup()
    await h.call.hangup()
    assert h.hangups == [1]
    assert h.call.ended
    with pytest.raises(CallEnded):
        await h.call.play("goodbye")
    with pytest.raises(CallEnded):
        await h.call.collect(max_digits=1)


async def test_dtmf_test_flow(h: Harness, library: PromptLibrary,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="softswitch.ivr")
    flow = asyncio.create_task(dtmf_test(h.call))
    await h.clock.advance(0.5)
    h.press("1", "inband")
    h.press("A", "info")
    h.press("#")
    await h.clock.advance(30)
    assert flow.done() and flow.exception() is None
    assert h.media.started == [["dtmf_test_intro"], ["you_entered", "digit_1", "digit_a"],
                               ["goodbye"]]
    assert h.hangups == [1]
    messages = [r.getMessage() for r in caplog.records]
    assert "dtmf-test digits=1A" in messages
    assert [m for m in messages if m.startswith("dtmf-test key")] == [
        "dtmf-test key 1 by inband", "dtmf-test key A by info", "dtmf-test key # by rfc4733"]


async def test_dtmf_test_flow_without_keys(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="softswitch.ivr")
    flow = asyncio.create_task(dtmf_test(h.call))
    await h.clock.advance(60)
    assert flow.done()
    assert h.media.started == [["dtmf_test_intro"], ["no_input"], ["goodbye"]]
    assert [r.getMessage() for r in caplog.records] == ["dtmf-test digits="]


# ---- record ------------------------------------------------------------------------------------
VOICE = bytes([0x10]) * 160  # μ-law 0x10: about -6 dBFS
QUIET = bytes([0xFF]) * 160


async def feed(h: Harness, frames: list[bytes]) -> None:
    for index, payload in enumerate(frames):
        if h.media.on_audio is None:
            return  # the recording is over
        h.media.on_audio(AudioFrame(payload, index, index * 160, False, h.clock.now))
        await h.clock.advance(FRAME)


async def test_record_until_the_stop_key(h: Harness, tmp_path: Path) -> None:
    path = tmp_path / "message.wav"
    task = asyncio.create_task(h.call.record(path, max_seconds=60, stop_on="#"))
    await settle()
    await feed(h, [VOICE] * 50)
    assert not path.exists() and (tmp_path / "message.wav.part").exists()
    h.press("#")
    result = await done(task)  # the file is completed (fsynced) on a thread
    assert result == Recording(path, 1.0, "digit")
    assert read_g711_wav(path) == (Codec.PCMU, VOICE * 50)
    assert not (tmp_path / "message.wav.part").exists()
    assert h.media.on_audio is None and h.clock.pending == 0
    collect = asyncio.create_task(h.call.collect(max_digits=1, first_digit_timeout=1))
    await h.clock.advance(1.1)
    assert collect.result() == ""  # the # that ended the recording is not input


async def test_record_stops_at_max_length(h: Harness, tmp_path: Path) -> None:
    task = asyncio.create_task(h.call.record(tmp_path / "m.wav", max_seconds=0.5))
    await settle()
    await feed(h, [VOICE] * 30)
    assert (await done(task)).ended_by == "max_length"
    assert task.result().seconds == 0.5
    assert len(read_g711_wav(tmp_path / "m.wav")[1]) == 4000


async def test_record_stops_after_silence_even_without_packets(h: Harness,
                                                               tmp_path: Path) -> None:
    task = asyncio.create_task(h.call.record(tmp_path / "m.wav", max_seconds=60,
                                             silence_seconds=2))
    await settle()
    await feed(h, [VOICE] * 50 + [QUIET] * 50)  # speech, then 1 s of silence
    assert not task.done()
    await h.clock.advance(0.9)  # the phone stops sending (silence suppression)
    assert not task.done()
    await h.clock.advance(0.2)
    assert (await done(task)).ended_by == "silence"
    assert task.result().seconds == 2.0


async def test_record_deleted_on_hangup_unless_kept(h: Harness, tmp_path: Path) -> None:
    task = asyncio.create_task(h.call.record(tmp_path / "greeting.wav", max_seconds=60))
    await settle()
    await feed(h, [VOICE] * 10)
    task.cancel()
    await settle()
    assert task.cancelled()
    assert list(tmp_path.iterdir()) == []
    task = asyncio.create_task(h.call.record(tmp_path / "voicemail.wav", max_seconds=60,
                                             keep_on_hangup=True))
    await settle()
    await feed(h, [VOICE] * 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await done(task)  # completed on a thread first, then the cancellation goes on
    assert read_g711_wav(tmp_path / "voicemail.wav") == (Codec.PCMU, VOICE * 10)
    assert h.clock.pending == 0
