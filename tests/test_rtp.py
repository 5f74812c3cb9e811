import random
import struct

from softswitch.media.rtp import (
    RtpPacket,
    build_rtcp_sr,
    build_rtp,
    is_rtcp,
    ntp_timestamp,
    parse_rtp,
)


def test_build_exact_bytes() -> None:
    data = build_rtp(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff\xfe", marker=True)
    assert data == bytes.fromhex("80801234deadbeef01020304fffe")


def test_build_wraps_sequence_and_timestamp() -> None:
    data = build_rtp(8, 0x10001, 0x1_0000_00A0, 7, b"")
    packet = parse_rtp(data)
    assert packet == RtpPacket(8, 1, 0xA0, 7, b"", False, ())


def test_round_trip_with_csrcs() -> None:
    packet = RtpPacket(101, 65535, 4_000_000_000, 0xCAFEBABE, b"\x05\x8a\x03\x20",
                       marker=True, csrcs=(1, 2, 3))
    data = packet.encode()
    assert data[0] == 0x83
    assert parse_rtp(data) == packet


def test_parse_fields() -> None:
    data = bytes.fromhex("8008 0102 00000280 11223344") + b"\xd5" * 160
    packet = parse_rtp(data)
    assert packet is not None
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        8, 0x0102, 0x280, 0x11223344)
    assert packet.marker is False
    assert packet.payload == b"\xd5" * 160


def test_extension_is_skipped() -> None:
    header = bytes.fromhex("9000 0001 00000000 00000001")  # X bit
    extension = struct.pack("!HH", 0xBEDE, 2) + b"\x11" * 8
    packet = parse_rtp(header + extension + b"audio")
    assert packet is not None and packet.payload == b"audio"


def test_padding_is_removed() -> None:
    header = bytes.fromhex("a000 0001 00000000 00000001")  # P bit
    packet = parse_rtp(header + b"audio" + b"\x00\x00\x03")
    assert packet is not None and packet.payload == b"audio"


def test_csrc_and_extension_and_padding_together() -> None:
    header = bytes.fromhex("b100 0001 00000000 00000001 0000000a")  # P, X, CC=1
    extension = struct.pack("!HH", 0x1000, 1) + b"\x00" * 4
    packet = parse_rtp(header + extension + b"xy" + b"\x00\x02")
    assert packet is not None
    assert packet.csrcs == (10,)
    assert packet.payload == b"xy"


def test_garbage_is_none() -> None:
    good = build_rtp(0, 1, 2, 3, b"abc")
    assert parse_rtp(b"") is None
    assert parse_rtp(good[:11]) is None
    assert parse_rtp(b"\x40" + good[1:]) is None  # version 1
    assert parse_rtp(b"\x00" + good[1:]) is None  # version 0 (e.g. STUN)
    assert parse_rtp(b"\x8f" + good[1:]) is None  # 15 CSRCs announced, none present
    assert parse_rtp(b"\x90" + good[1:]) is None  # extension announced, too short
    assert parse_rtp(b"\xa0" + good[1:-1] + b"\x00") is None  # padding count 0
    assert parse_rtp(b"\xa0" + good[1:-1] + b"\x20") is None  # padding longer than packet


def test_rtcp_is_not_rtp() -> None:
    sr = build_rtcp_sr(1, 1_700_000_000.5, 160, 10, 1600, "softswitch@example")
    assert is_rtcp(sr)
    assert parse_rtp(sr) is None
    for packet_type in range(200, 205):
        data = bytes((0x80, packet_type)) + b"\x00" * 10
        assert parse_rtp(data) is None
        assert is_rtcp(data)
    assert not is_rtcp(build_rtp(0, 1, 2, 3, b"\xff" * 160))
    # marker + PT 71 and 77 are legal RTP next to the reserved range
    assert parse_rtp(bytes((0x80, 199)) + b"\x00" * 10) is not None
    assert parse_rtp(bytes((0x80, 205)) + b"\x00" * 10) is not None


def test_sender_report_layout() -> None:
    data = build_rtcp_sr(0xAABBCCDD, 1_700_000_000.25, 12345, 50, 8000, "ab")
    version_count, packet_type, length, ssrc = struct.unpack_from("!BBHI", data)
    assert (version_count, packet_type, length, ssrc) == (0x80, 200, 6, 0xAABBCCDD)
    ntp_seconds, ntp_fraction, rtp_ts, packets, octets = struct.unpack_from("!IIIII", data, 8)
    assert ntp_seconds == 1_700_000_000 + 2_208_988_800
    assert ntp_fraction == 1 << 30
    assert (rtp_ts, packets, octets) == (12345, 50, 8000)
    sdes = data[28:]
    assert sdes[:2] == b"\x81\xca"  # one chunk, SDES
    assert (struct.unpack_from("!H", sdes, 2)[0] + 1) * 4 == len(sdes)
    assert sdes[4:8] == bytes.fromhex("aabbccdd")
    assert sdes[8:12] == b"\x01\x02ab"  # CNAME, length 2
    assert sdes[12] == 0 and len(sdes) % 4 == 0


def test_ntp_timestamp() -> None:
    assert ntp_timestamp(0.0) == (2_208_988_800, 0)
    assert ntp_timestamp(1.5) == (2_208_988_801, 1 << 31)


def test_random_bytes_never_raise() -> None:
    rng = random.Random(4733)
    for _ in range(20_000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        if data:
            data = bytes((0x80 | (data[0] & 0x3F),)) + data[1:]  # mostly version 2
        packet = parse_rtp(data)
        assert packet is None or isinstance(packet.payload, bytes)
