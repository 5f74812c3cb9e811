"""G.711 μ-law (PCMU) and A-law (PCMA) for 16-bit little-endian linear PCM.

Everything is table lookup done in C: decoding is two `bytes.translate` calls (low and high
octet of each sample) interleaved by slice assignment; encoding maps every 16-bit sample
through a 64 KiB table; μ-law <-> A-law is one `bytes.translate`. The tables are built once at
import from the ITU-T G.711 segment rules (the classic Sun reference algorithm, which is also
what CPython's audioop implements). μ-law encodes the top 14 bits of a sample, A-law the top 13.

A-law sign: after the even-bit inversion (XOR 0x55) the sign bit is SET for positive samples,
so linear 0 encodes as 0xD5 and -1 as 0x55. (One Python RTP library gets this backwards.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum

ULAW_SILENCE = 0xFF  # linear 0
ALAW_SILENCE = 0xD5  # linear 0 (positive zero)

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # largest 14-bit magnitude μ-law represents
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for segment, end in enumerate(ends):
        if value <= end:
            return segment
    return len(ends)


def _ulaw_from_14bit(sample: int) -> int:
    mask = 0xFF
    if sample < 0:
        sample, mask = -sample, 0x7F
    sample = min(sample, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(sample, _ULAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((sample >> (segment + 1)) & 0x0F)) ^ mask


def _alaw_from_13bit(sample: int) -> int:
    mask = 0xD5
    if sample < 0:
        sample, mask = -sample - 1, 0x55
    segment = _segment(sample, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((sample >> shift) & 0x0F)) ^ mask


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    segment = (code & 0x70) >> 4
    magnitude = (code & 0x0F) << 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def _encode_table(from_top_bits: int, encode: Callable[[int], int]) -> bytes:
    """Code for every 16-bit sample, indexed by the sample's bytes read as a native unsigned
    short (so that encoding can iterate a zero-copy memoryview cast)."""
    half = 1 << (from_top_bits - 1)
    narrow = bytes(encode(v - 2 * half if v >= half else v) for v in range(2 * half))
    repeat = 1 << (16 - from_top_bits)  # the low bits the law ignores
    table = bytearray(1 << 16)
    for low_bits in range(repeat):
        table[low_bits::repeat] = narrow
    if sys.byteorder == "big":  # a native short read from LE bytes is the byte-swapped sample
        swapped = bytearray(1 << 16)
        for high in range(256):
            swapped[high * 256:(high + 1) * 256] = table[high::256]
        table = swapped
    return bytes(table)


def _decode_tables(decode: Callable[[int], int]) -> tuple[bytes, bytes]:
    """(low octets, high octets) of the little-endian sample for each of the 256 codes."""
    samples = [decode(code) & 0xFFFF for code in range(256)]
    return bytes(s & 0xFF for s in samples), bytes(s >> 8 for s in samples)


_ULAW_ENCODE = _encode_table(14, _ulaw_from_14bit)
_ALAW_ENCODE = _encode_table(13, _alaw_from_13bit)
_ULAW_DECODE_LOW, _ULAW_DECODE_HIGH = _decode_tables(_ulaw_to_linear)
_ALAW_DECODE_LOW, _ALAW_DECODE_HIGH = _decode_tables(_alaw_to_linear)
# Transcoding through linear: the decoded value of one law re-encoded in the other.
_ULAW_TO_ALAW = bytes(_alaw_from_13bit(_ulaw_to_linear(c) >> 3) for c in range(256))
_ALAW_TO_ULAW = bytes(_ulaw_from_14bit(_alaw_to_linear(c) >> 2) for c in range(256))


def _encode(pcm16: bytes, table: bytes) -> bytes:
    if len(pcm16) % 2:
        raise ValueError("16-bit PCM must have an even number of bytes")
    return bytes(map(table.__getitem__, memoryview(pcm16).cast("H")))


def _decode(codes: bytes, low: bytes, high: bytes) -> bytes:
    pcm = bytearray(2 * len(codes))
    pcm[0::2] = codes.translate(low)
    pcm[1::2] = codes.translate(high)
    return bytes(pcm)


def pcm16_to_ulaw(pcm16: bytes) -> bytes:
    return _encode(pcm16, _ULAW_ENCODE)


def pcm16_to_alaw(pcm16: bytes) -> bytes:
    return _encode(pcm16, _ALAW_ENCODE)


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return _decode(ulaw, _ULAW_DECODE_LOW, _ULAW_DECODE_HIGH)


def alaw_to_pcm16(alaw: bytes) -> bytes:
    return _decode(alaw, _ALAW_DECODE_LOW, _ALAW_DECODE_HIGH)


def ulaw_to_alaw(ulaw: bytes) -> bytes:
    return ulaw.translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(alaw: bytes) -> bytes:
    return alaw.translate(_ALAW_TO_ULAW)


class Codec(StrEnum):
    """The two G.711 codecs by their SDP encoding names (RFC 3551 §6)."""

    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def static_payload_type(self) -> int:
        return 0 if self is Codec.PCMU else 8

    @property
    def silence_byte(self) -> int:
        return ULAW_SILENCE if self is Codec.PCMU else ALAW_SILENCE

    def silence(self, samples: int) -> bytes:
        return bytes((self.silence_byte,)) * samples

    def from_pcm16(self, pcm16: bytes) -> bytes:
        return pcm16_to_ulaw(pcm16) if self is Codec.PCMU else pcm16_to_alaw(pcm16)

    def to_pcm16(self, data: bytes) -> bytes:
        return ulaw_to_pcm16(data) if self is Codec.PCMU else alaw_to_pcm16(data)

    def transcode_to(self, target: Codec, data: bytes) -> bytes:
        if target is self:
            return data
        return ulaw_to_alaw(data) if self is Codec.PCMU else alaw_to_ulaw(data)
