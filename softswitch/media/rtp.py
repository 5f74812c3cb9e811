"""RTP packets (RFC 3550 §5.1) and the little of RTCP (§6) a voice server needs.

Parsing never raises: a media port receives whatever the network sends, so anything that is
not a well-formed RTP packet comes back as None. RTCP that arrives on the RTP port (RFC 5761
multiplexing, or a confused peer) is recognised by its packet type and also returns None.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQUENCE_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 32

# RTCP SR, RR, SDES, BYE, APP. In the second octet they read as marker + PT 72..76,
# which RFC 3550 §5.1 / RFC 5761 §4 keep free for exactly this reason.
RTCP_PACKET_TYPES = range(200, 205)
RTCP_SR = 200
RTCP_SDES = 202
SDES_CNAME = 1

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_SR = struct.Struct("!BBHIIIIII")
# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_UNIX_OFFSET = 2_208_988_800


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return build_rtp(self.payload_type, self.sequence, self.timestamp, self.ssrc,
                         self.payload, self.marker, self.csrcs)


def build_rtp(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes,
              marker: bool = False, csrcs: tuple[int, ...] = ()) -> bytes:
    """One RTP packet, no padding or extension. Sequence and timestamp are taken modulo
    their field sizes, so callers may keep counting past the wrap."""
    header = _HEADER.pack(
        0x80 | len(csrcs), (0x80 if marker else 0) | payload_type,
        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc,
    )
    if csrcs:
        header += struct.pack(f"!{len(csrcs)}I", *csrcs)
    return header + payload


def is_rtcp(data: bytes) -> bool:
    return len(data) >= 8 and data[0] >> 6 == RTP_VERSION and data[1] in RTCP_PACKET_TYPES


def parse_rtp(data: bytes) -> RtpPacket | None:
    """The RTP packet in `data`, or None if it is not one (RTCP, short, wrong version,
    inconsistent lengths). Header extensions are skipped; padding is removed."""
    if len(data) < RTP_HEADER_SIZE:
        return None
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION or second in RTCP_PACKET_TYPES:
        return None
    csrc_count = first & 0x0F
    start = RTP_HEADER_SIZE + 4 * csrc_count
    end = len(data)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if start + 4 > end:
            return None
        _profile, words = _EXTENSION_HEADER.unpack_from(data, start)
        start += 4 + 4 * words
    if first & 0x20:  # padding: the last octet counts the padding octets, itself included
        padding = data[-1]
        if padding == 0:
            return None
        end -= padding
    if start > end:
        return None
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE) if csrc_count else ()
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, data[start:end],
                     bool(second & 0x80), csrcs)


def ntp_timestamp(unix_time: float) -> tuple[int, int]:
    """(seconds, fraction) of the 64-bit NTP timestamp for a Unix time (RFC 3550 §4)."""
    seconds = int(unix_time)
    fraction = int((unix_time - seconds) * (1 << 32)) & 0xFFFFFFFF
    return (seconds + _NTP_UNIX_OFFSET) & 0xFFFFFFFF, fraction


def build_rtcp_sr(ssrc: int, unix_time: float, rtp_timestamp: int, packet_count: int,
                  octet_count: int, cname: str) -> bytes:
    """A compound RTCP packet: a sender report with no report blocks followed by the SDES
    CNAME that RFC 3550 §6.1 requires in every compound packet. `unix_time` is the wall-clock
    time the caller read when it sampled `rtp_timestamp`."""
    ntp_seconds, ntp_fraction = ntp_timestamp(unix_time)
    sender_report = _SR.pack(
        0x80, RTCP_SR, _SR.size // 4 - 1, ssrc, ntp_seconds, ntp_fraction,
        rtp_timestamp & 0xFFFFFFFF, packet_count & 0xFFFFFFFF, octet_count & 0xFFFFFFFF,
    )
    name = cname.encode()[:255]
    # SSRC, item (type, length, text), then the null item that ends the list, padded to 32 bits
    chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(name)) + name + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk
    return sender_report + sdes
