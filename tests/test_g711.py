import struct
import warnings

import pytest

from softswitch.media import g711
from softswitch.media.g711 import Codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")  # reference only; removed in Python 3.13

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))
ALL_CODES = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def test_known_ulaw_values() -> None:
    assert g711.pcm16_to_ulaw(pcm(0, -1, 32767, -32768, 1000, -1000)) == bytes(
        [0xFF, 0x7E, 0x80, 0x00, 0xCE, 0x4E])
    assert g711.ulaw_to_pcm16(bytes([0xFF, 0x7F, 0x80, 0x00, 0xCE])) == pcm(
        0, 0, 32124, -32124, 988)


def test_known_alaw_values() -> None:
    # positive samples have the sign bit set after the 0x55 inversion
    assert g711.pcm16_to_alaw(pcm(0, -1, 16, 32767, -32768, 1000, -1000)) == bytes(
        [0xD5, 0x55, 0xD4, 0xAA, 0x2A, 0xFA, 0x7A])
    assert g711.alaw_to_pcm16(bytes([0xD5, 0x55, 0xAA, 0x2A, 0xFA])) == pcm(
        8, -8, 32256, -32256, 1008)


def test_encode_matches_audioop_for_every_sample() -> None:
    assert g711.pcm16_to_ulaw(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert g711.pcm16_to_alaw(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)


def test_decode_matches_audioop_for_every_code() -> None:
    assert g711.ulaw_to_pcm16(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_to_pcm16(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_decode_then_encode_is_identity() -> None:
    # μ-law has two zeros (0x7F and 0xFF decode to 0); everything else survives.
    ulaw = g711.pcm16_to_ulaw(g711.ulaw_to_pcm16(ALL_CODES))
    assert ulaw == ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.pcm16_to_alaw(g711.alaw_to_pcm16(ALL_CODES)) == ALL_CODES


def test_transcoding_goes_through_linear() -> None:
    assert g711.ulaw_to_alaw(ALL_CODES) == g711.pcm16_to_alaw(g711.ulaw_to_pcm16(ALL_CODES))
    assert g711.alaw_to_ulaw(ALL_CODES) == g711.pcm16_to_ulaw(g711.alaw_to_pcm16(ALL_CODES))
    assert g711.ulaw_to_alaw(b"\xff") == b"\xd5"
    assert g711.alaw_to_ulaw(b"\xd5") == b"\xfe"  # A-law's smallest level is 8, not 0


def test_silence() -> None:
    assert Codec.PCMU.silence(3) == b"\xff\xff\xff"
    assert Codec.PCMA.silence(2) == b"\xd5\xd5"
    assert g711.ulaw_to_pcm16(bytes([g711.ULAW_SILENCE])) == pcm(0)
    assert g711.alaw_to_pcm16(bytes([g711.ALAW_SILENCE])) == pcm(8)  # A-law has no exact 0


def test_codec_helpers() -> None:
    samples = pcm(0, 100, -100, 20000)
    assert Codec.PCMU.from_pcm16(samples) == g711.pcm16_to_ulaw(samples)
    assert Codec.PCMA.from_pcm16(samples) == g711.pcm16_to_alaw(samples)
    assert Codec.PCMU.to_pcm16(b"\x80") == g711.ulaw_to_pcm16(b"\x80")
    assert Codec.PCMA.to_pcm16(b"\x80") == g711.alaw_to_pcm16(b"\x80")
    assert Codec.PCMU.transcode_to(Codec.PCMA, b"\xff") == b"\xd5"
    assert Codec.PCMA.transcode_to(Codec.PCMA, b"\x01") == b"\x01"
    assert (Codec.PCMU.static_payload_type, Codec.PCMA.static_payload_type) == (0, 8)
    assert Codec("PCMA") is Codec.PCMA


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError):
        g711.pcm16_to_ulaw(b"\x00\x00\x00")


def test_empty() -> None:
    assert g711.pcm16_to_ulaw(b"") == b""
    assert g711.alaw_to_pcm16(b"") == b""
