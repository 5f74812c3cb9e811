"""DTMF digits from the three ways a phone sends them, each key press delivered once.

- RFC 4733 telephone-events in RTP (`TelephoneEventReceiver`),
- SIP INFO bodies, application/dtmf-relay and application/dtmf (`parse_info_dtmf`),
- in-band tones in the audio, found by a Goertzel detector (`InbandDtmfDetector`),

and `DigitDeduplicator`, which merges a press that one phone reports two ways.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .g711 import Codec
from .rtp import RtpPacket

# RFC 4733 §3.2 event codes 0..15, in order
DTMF_DIGITS = "0123456789*#ABCD"
SAMPLE_RATE = 8000

DigitSource = Literal["rfc4733", "info", "inband"]


@dataclass(slots=True, frozen=True)
class DigitEvent:
    digit: str  # one of DTMF_DIGITS
    source: DigitSource
    at: float  # the `now` when it was recognised


# --- RFC 4733 telephone-events -------------------------------------------------------------

_EVENT = struct.Struct("!BBH")  # event, E|R|volume, duration
_END_BIT = 0x80
# A held key whose duration outgrows 16 bits continues in a new segment whose timestamp is
# the old one plus the old duration (RFC 4733 §2.5.1.3); allow this much slack for lost updates.
_CONTINUATION_SLACK = 320


def telephone_event_payload(code: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4-octet RFC 4733 §2.3 payload. `volume` is the power in -dBm0 (0..63)."""
    return _EVENT.pack(code, (_END_BIT if end else 0) | (volume & 0x3F), duration & 0xFFFF)


@dataclass(slots=True)
class _Event:
    code: int
    timestamp: int
    duration: int  # the longest duration seen so far, in timestamp units
    ended: bool


class TelephoneEventReceiver:
    """Turns RFC 4733 telephone-event packets into one DigitEvent per key press.

    An event is identified by its RTP timestamp, which is the same in every packet of the
    event (start, updates, the three end retransmissions). The digit is delivered on the first
    packet seen with a timestamp not seen before. That gives the lowest latency and needs no
    timer: losing the start packet, the end packets, or both still delivers the digit once,
    and there is no deadline to poll. Consequences, all deliberate:

    - duplicates and the end retransmissions carry a known timestamp and are ignored;
    - the same key pressed twice has two timestamps and is delivered twice;
    - a late packet of an earlier event is ignored because the timestamps of the last
      `memory` events are remembered (not only the newest one), so reordering across events
      cannot re-deliver; lookups are by equality, so timestamp and sequence wrap do not matter;
    - a new segment of a key held past the 16-bit duration limit (RFC 4733 §2.5.1.3: no
      marker, same event, timestamp = previous timestamp + previous duration, previous segment
      not ended) continues the press instead of starting a new one;
    - a new SSRC starts a new stream: the memory is cleared;
    - events 16 and above (flash, tones) are tracked but not delivered.
    """

    __slots__ = ("payload_type", "_memory", "_ssrc", "_current")

    def __init__(self, payload_type: int, memory: int = 16) -> None:
        self.payload_type = payload_type
        self._memory: deque[int] = deque(maxlen=memory)
        self._ssrc: int | None = None
        self._current: _Event | None = None

    def receive(self, packet: RtpPacket, now: float) -> list[DigitEvent]:
        if packet.payload_type != self.payload_type or len(packet.payload) < _EVENT.size:
            return []
        code, flags, duration = _EVENT.unpack_from(packet.payload)
        ended = bool(flags & _END_BIT)
        if packet.ssrc != self._ssrc:
            self._ssrc = packet.ssrc
            self._memory.clear()
            self._current = None
        timestamp = packet.timestamp
        current = self._current
        if timestamp in self._memory:
            if current is not None and current.timestamp == timestamp:
                current.duration = max(current.duration, duration)
                current.ended = current.ended or ended
            return []
        self._memory.append(timestamp)
        if current is not None and self._continues(current, code, timestamp, packet.marker):
            current.timestamp, current.duration, current.ended = timestamp, duration, ended
            return []
        self._current = _Event(code, timestamp, duration, ended)
        if code >= len(DTMF_DIGITS):
            return []
        return [DigitEvent(DTMF_DIGITS[code], "rfc4733", now)]

    @staticmethod
    def _continues(previous: _Event, code: int, timestamp: int, marker: bool) -> bool:
        if marker or previous.ended or code != previous.code:
            return False
        advance = (timestamp - previous.timestamp) & 0xFFFFFFFF
        return 0 < advance <= previous.duration + _CONTINUATION_SLACK


# --- SIP INFO ------------------------------------------------------------------------------


def _digit_from_signal(value: str) -> str | None:
    value = value.strip().upper()
    if len(value) == 1 and value in DTMF_DIGITS:
        return value
    if value.isascii() and value.isdigit() and int(value) < len(DTMF_DIGITS):
        return DTMF_DIGITS[int(value)]  # "10" is *, "11" is #, 12..15 are A..D
    return None


def parse_info_dtmf(content_type: str, body: bytes) -> str | None:
    """The digit in a SIP INFO body, or None if the body carries none.

    application/dtmf-relay: lines `Signal=5` and `Duration=160`; Signal may be a digit,
    `*`, `#`, `A`..`D`, or the event numbers 10 (*) and 11 (#).
    application/dtmf: the body is the digit itself (same spellings).
    """
    media_type = content_type.partition(";")[0].strip().lower()
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    if media_type == "application/dtmf":
        return _digit_from_signal(text)
    if media_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, equals, value = line.partition("=")
            if equals and name.strip().lower() == "signal":
                return _digit_from_signal(value)
    return None


# --- In-band tones -------------------------------------------------------------------------

ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")

# 102 samples (12.75 ms): every 40 ms tone contains two whole blocks, and the bins fall close
# to the nulls of the neighbouring row tones (the block length Asterisk and spandsp use).
_BLOCK = 102
_PRESENCE_BLOCKS = 2  # consecutive hits before a digit counts: >= 23 ms of tone
# Consecutive blocks without the tone that end it: a 40 ms pause always gives 3, a dropout of
# under 10 ms at most 2, so a short break inside one tone does not make a second digit.
_GAP_BLOCKS = 3
# Levels as mean power of 16-bit samples; a sine at 0 dBm0 has amplitude 22,272 in G.711.
_DBM0_POWER = 22_272**2 / 2
_MIN_TONE_POWER = _DBM0_POWER * 10 ** (-36 / 10)
# A block quieter than this cannot hold two tones of the minimum level.
_MIN_BLOCK_POWER = 2 * _MIN_TONE_POWER
_MAX_COLUMN_OVER_ROW = 10 ** (4 / 10)  # the high tone may be up to 4 dB above the low one
_MAX_ROW_OVER_COLUMN = 10 ** (8 / 10)  # and up to 8 dB below it
_MIN_PEAK_OVER_OTHERS = 10 ** (8 / 10)  # the chosen tone vs the other tones of its group
# Share of the block's power that must be in the two tones. Rejects speech, music, noise
# and tones with strong harmonics; a clean tone off by the allowed 1.5 % still scores 0.84,
# while no alignment of a 20 ms tone fills two blocks to 80 %.
_MIN_TONE_SHARE = 0.8
_BIG_ENDIAN = sys.byteorder == "big"
_ORIGIN = (0.0,) * _BLOCK

# One basis vector of the DFT at a tone frequency, with its squared length.
_Basis = tuple[tuple[float, ...], float]


def _basis(frequency: float) -> tuple[_Basis, _Basis]:
    step = 2 * math.pi * frequency / SAMPLE_RATE
    cosines = tuple(math.cos(step * n) for n in range(_BLOCK))
    sines = tuple(math.sin(step * n) for n in range(_BLOCK))
    return ((cosines, math.fsum(c * c for c in cosines)),
            (sines, math.fsum(s * s for s in sines)))


_ROW_BASES = tuple(_basis(f) for f in ROW_FREQUENCIES)
_COLUMN_BASES = tuple(_basis(f) for f in COLUMN_FREQUENCIES)


def _dot(block: list[float], energy: float, basis: _Basis) -> float:
    """The dot product of the block with a basis vector, from their distance:
    |x - c|² = |x|² + |c|² - 2 x·c. `math.dist` runs the whole sum in C without a float
    object per sample, four times faster than `sum(map(mul, ...))` (Python 3.11 has no
    `math.sumprod`)."""
    vector, length = basis
    return (energy + length - math.dist(block, vector) ** 2) / 2


def _tone_powers(block: list[float], energy: float,
                 bases: tuple[tuple[_Basis, _Basis], ...]) -> list[float]:
    """Mean power of each frequency's component: the DFT at that exact frequency (what the
    Goertzel recurrence computes)."""
    scale = 2 / (_BLOCK * _BLOCK)
    powers = []
    for cosines, sines in bases:
        real = _dot(block, energy, cosines)
        imaginary = _dot(block, energy, sines)
        powers.append((real * real + imaginary * imaginary) * scale)
    return powers


def _strongest(powers: list[float]) -> int | None:
    """Index of the tone that stands clear of the others in its group, if one does."""
    best = max(range(len(powers)), key=powers.__getitem__)
    if powers[best] < _MIN_TONE_POWER:
        return None
    if any(p * _MIN_PEAK_OVER_OTHERS > powers[best] for i, p in enumerate(powers) if i != best):
        return None
    return best


def _classify(block: list[float]) -> str | None:
    """The digit whose two tones this block holds, or None. Cheap tests first: most audio
    is rejected before the column transforms (half the cost) are computed."""
    energy = math.dist(block, _ORIGIN) ** 2
    block_power = energy / _BLOCK
    if block_power < _MIN_BLOCK_POWER:
        return None  # too quiet to hold two tones
    rows = _tone_powers(block, energy, _ROW_BASES)
    row = _strongest(rows)
    # the column may add at most _MAX_COLUMN_OVER_ROW times the row's power to the share
    if row is None or rows[row] * (1 + _MAX_COLUMN_OVER_ROW) < _MIN_TONE_SHARE * block_power:
        return None
    columns = _tone_powers(block, energy, _COLUMN_BASES)
    column = _strongest(columns)
    if column is None:
        return None
    row_power, column_power = rows[row], columns[column]
    if (column_power > row_power * _MAX_COLUMN_OVER_ROW
            or row_power > column_power * _MAX_ROW_OVER_COLUMN):
        return None
    if row_power + column_power < _MIN_TONE_SHARE * block_power:
        return None
    return _KEYPAD[row][column]


def _decoded(codec: Codec) -> tuple[float, ...]:
    """The linear value of each of the codec's 256 codes."""
    pcm = array("h", codec.to_pcm16(bytes(range(256))))
    if _BIG_ENDIAN:
        pcm.byteswap()
    return tuple(float(sample) for sample in pcm)


def _quiet_codes(values: tuple[float, ...]) -> bytes:
    """The codes too weak to be part of a tone block: a block of only these has a mean power
    under _MIN_BLOCK_POWER, so `_classify` would reject it."""
    return bytes(code for code, value in enumerate(values) if value * value < _MIN_BLOCK_POWER)


_DECODED = {codec: _decoded(codec) for codec in Codec}
_QUIET_CODES = {codec: _quiet_codes(values) for codec, values in _DECODED.items()}


class InbandDtmfDetector:
    """Finds DTMF tones in G.711 audio (PCMU or PCMA, the codec of the call).

    Audio is cut into 102-sample blocks regardless of how it is fed. Each block passes when both
    tones are loud enough, the twist is within limits, each tone stands clear of the others in
    its group, and the two tones carry most of the block's power. A digit is delivered once it
    has held for two blocks (so every tone of 40 ms or more, none under ~23 ms) and may only
    be delivered again after three blocks without it. Feed received frames only; do not feed
    filler for lost packets, so that a loss does not cut a tone in two.

    It runs on every call, 50 frames a second, so the common case is made cheap: a frame in
    which every sample is too weak for a tone (silence, a quiet room) is recognised by one
    `bytes.translate` on the G.711 codes, and its blocks advance the press state without being
    decoded or transformed, exactly as if they had been. Other audio is decoded by table and
    transformed with `math.dist` (see `_dot`).
    """

    __slots__ = ("_decode", "_quiet", "_pending", "_pending_quiet", "_last", "_run",
                 "_active", "_silent_blocks")

    def __init__(self, codec: Codec) -> None:
        self._decode = _DECODED[codec]
        self._quiet = _QUIET_CODES[codec]
        self._pending = b""  # codes not yet in a whole block
        self._pending_quiet = True  # every pending code is a quiet one
        self._last: str | None = None  # the previous block's digit
        self._run = 0  # blocks in a row with that digit
        self._active: str | None = None  # delivered and still sounding
        self._silent_blocks = 0  # blocks in a row without the active digit's tone

    def feed(self, payload: bytes, now: float) -> list[DigitEvent]:
        """The digits newly pressed in `payload` (G.711 codes, any length)."""
        quiet = not payload.translate(None, self._quiet)
        buffered = self._pending + payload
        whole = len(buffered) - len(buffered) % _BLOCK
        self._pending = buffered[whole:]
        if quiet and self._pending_quiet:  # no block ahead can hold a tone
            if self._active is None and self._last is None:
                self._run += whole // _BLOCK  # what _step(None) does in a silence
            else:
                for _ in range(whole // _BLOCK):
                    self._step(None)
            return []
        self._pending_quiet = not self._pending.translate(None, self._quiet)
        events = []
        decode = self._decode
        samples = [decode[code] for code in buffered[:whole]]
        for start in range(0, whole, _BLOCK):
            digit = self._step(_classify(samples[start:start + _BLOCK]))
            if digit is not None:
                events.append(DigitEvent(digit, "inband", now))
        return events

    def _step(self, digit: str | None) -> str | None:
        """Advance the press state by one block; return a newly pressed digit."""
        if digit == self._last:
            self._run += 1
        else:
            self._last, self._run = digit, 1
        if self._active is not None:
            if digit == self._active:
                self._silent_blocks = 0
            elif digit is None:  # only silence ends a press; another tone without a pause
                self._silent_blocks += 1
                if self._silent_blocks >= _GAP_BLOCKS:
                    self._active = None
            return None
        if digit is not None and self._run >= _PRESENCE_BLOCKS:
            self._active, self._silent_blocks = digit, 0
            return digit
        return None


def dtmf_tone(digit: str, ms: int, amplitude: int = 7000) -> bytes:
    """`ms` milliseconds of the digit's two tones as 8 kHz 16-bit little-endian PCM, each tone
    with peak `amplitude` (7000 is about -10 dBm0 per tone)."""
    key = digit.upper()
    row = next((i for i, keys in enumerate(_KEYPAD) if key in keys), None)
    if len(key) != 1 or row is None:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    row_step = 2 * math.pi * ROW_FREQUENCIES[row] / SAMPLE_RATE
    column_step = 2 * math.pi * COLUMN_FREQUENCIES[_KEYPAD[row].index(key)] / SAMPLE_RATE
    samples = array("h", (
        round(amplitude * (math.sin(row_step * n) + math.sin(column_step * n)))
        for n in range(ms * SAMPLE_RATE // 1000)
    ))
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples.tobytes()


# --- One press, several sources ------------------------------------------------------------


@dataclass(slots=True)
class _Press:
    digit: str
    at: float
    sources: set[DigitSource]


@dataclass(slots=True)
class DigitDeduplicator:
    """Merges the reports of one key press that arrive by different routes.

    A phone may send a press both as an RFC 4733 event and as SIP INFO, and many send the tone
    in the audio beside the event. The rule: a digit from one source that equals a digit
    accepted from a *different* source at most `window` seconds earlier is the same press and
    is dropped; each accepted press absorbs at most one report per other source, so two real
    presses of one key, each reported two ways, still count twice. Reports from the same
    source are never merged (RFC 4733 tells two presses apart by timestamp, the tone detector
    by the pause between them).

    The window: the event of a press is delivered on its first packet, which leaves with the
    frame in which the key went down; its tone is recognised once two whole 12.75 ms blocks of
    it have arrived, one or two frames later. So the two reports of one press come 20-40 ms
    apart (tests/test_media_session.py measures it at every alignment of the key-down), and
    200 ms leaves room for jitter and lost event packets. Presses of one key closer together
    than the window are still told apart (the keypad minimum is 40 ms of tone and 40 ms of
    pause), because each press absorbs only one report per other source.
    """

    window: float = 0.2
    _recent: deque[_Press] = field(init=False, default_factory=deque)

    def accept(self, event: DigitEvent) -> bool:
        """True if `event` is a new press, False if it repeats one already accepted."""
        while self._recent and self._recent[0].at < event.at - self.window:
            self._recent.popleft()
        for press in self._recent:
            if press.digit == event.digit and event.source not in press.sources:
                press.sources.add(event.source)
                return False
        self._recent.append(_Press(event.digit, event.at, {event.source}))
        return True
