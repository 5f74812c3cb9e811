#!/usr/bin/env python3
"""Pad an RTP pcap made by scripts/make_dtmf_pcap.py with G.711 silence before and after.

    ivr_pcap.py digits.pcap padded.pcap --lead-ms 8000 --trail-ms 12000

A phone sends a 20 ms audio frame all call long, not only around its key presses. The
padded pcap starts with --lead-ms of PCMU silence frames, then the original packets (their
sequence numbers, timestamps and send times moved on past the lead), then --trail-ms more
silence: SIPp replaying it from the answer on loads the server with a caller's whole RTP
stream. All packets keep the original's SSRC. Standard library only, like make_dtmf_pcap.py.
"""

import argparse
import struct
import sys

PCAP_HEADER_BYTES = 24
RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured length, original length
PAYLOAD_OFFSET = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP: as make_dtmf_pcap writes
FRAME_SAMPLES = 160
PCMU_SILENCE = b"\xff" * FRAME_SAMPLES


def read_packets(data: bytes) -> list[tuple[float, bytes]]:
    """(send time, whole frame) of every record."""
    packets, offset = [], PCAP_HEADER_BYTES
    while offset + RECORD.size <= len(data):
        seconds, micros, captured, _ = RECORD.unpack_from(data, offset)
        offset += RECORD.size
        packets.append((seconds + micros / 1e6, data[offset:offset + captured]))
        offset += captured
    return packets


def with_rtp(frame: bytes, payload_type: int, sequence: int, timestamp: int, ssrc: int,
             payload: bytes) -> bytes:
    """`frame` (Ethernet/IPv4/UDP) carrying a new RTP packet; lengths and IP checksum redone."""
    rtp = struct.pack("!BBHII", 0x80, payload_type, sequence & 0xFFFF,
                      timestamp & 0xFFFFFFFF, ssrc) + payload
    ip = bytearray(frame[14:34])
    struct.pack_into("!H", ip, 2, 20 + 8 + len(rtp))
    struct.pack_into("!H", ip, 10, 0)
    total = sum(struct.unpack("!10H", bytes(ip)))
    total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", ip, 10, ~total & 0xFFFF)
    sport, dport = struct.unpack_from("!HH", frame, 34)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(rtp), 0)
    return frame[:14] + bytes(ip) + udp + rtp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--lead-ms", type=int, default=8000)
    parser.add_argument("--trail-ms", type=int, default=12000)
    args = parser.parse_args()
    with open(args.source, "rb") as source:
        data = source.read()
    packets = read_packets(data)
    if not packets:
        raise SystemExit(f"{args.source}: no packets")
    template = packets[0][1]
    _, _, first_sequence, first_timestamp, ssrc = struct.unpack_from("!BBHII", template,
                                                                     PAYLOAD_OFFSET)
    lead = args.lead_ms // 20
    out: list[tuple[float, bytes]] = []
    for n in range(lead):
        out.append((n * 0.02, with_rtp(template, 0x80 if n == 0 else 0, n, n * FRAME_SAMPLES,
                                       ssrc, PCMU_SILENCE)))
    start = packets[0][0]
    last_sequence = last_timestamp = 0
    for at, frame in packets:
        _, marker_type, sequence, timestamp, _ = struct.unpack_from(
            "!BBHII", frame, PAYLOAD_OFFSET)
        last_sequence = lead + (sequence - first_sequence)
        last_timestamp = lead * FRAME_SAMPLES + (timestamp - first_timestamp)
        body = frame[PAYLOAD_OFFSET + 12:]
        out.append((lead * 0.02 + at - start, with_rtp(
            frame, marker_type, last_sequence, last_timestamp, ssrc, body)))
    end = out[-1][0]
    for n in range(1, args.trail_ms // 20 + 1):  # after the silence frames that end the keys
        out.append((end + n * 0.02, with_rtp(
            template, 0, last_sequence + n, last_timestamp + n * FRAME_SAMPLES, ssrc,
            PCMU_SILENCE)))
    with open(args.out, "wb") as f:
        f.write(data[:PCAP_HEADER_BYTES])
        for at, frame in out:
            seconds, micros = divmod(round(at * 1e6), 1_000_000)
            f.write(RECORD.pack(seconds, micros, len(frame), len(frame)) + frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
