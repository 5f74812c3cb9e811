#!/usr/bin/env python3
"""Write a pcap of RTP packets carrying DTMF digits, as RFC 4733 (RFC 2833) events or in-band.

SIPp replays it with <exec play_pcap_audio="digits.pcap"/>: it keeps the pcap's
timing and payload and sends each packet to the media address of the remote SDP.
The addresses and ports written here are placeholders that SIPp rewrites.

    make_dtmf_pcap.py 09011110001#1234# out.pcap --pt 101 --gap-ms 200
    make_dtmf_pcap.py 123# out.pcap --duplicate 1.0 --reorder 0.3 --seed 7
    make_dtmf_pcap.py 123# out.pcap --inband --codec PCMA
    make_dtmf_pcap.py 123# out.pcap --both
    make_dtmf_pcap.py 09011110001#,,1234#,9 out.pcap    (each "," waits one second)

Events: each digit is sent as event packets every 20 ms for --duration-ms, the
last one three times with the E bit set (RFC 4733 §2.5.1.4), then --gap-ms of
silence (comfort: G.711 silence frames when --with-audio) before the next digit.

In-band (--inband): G.711 audio only, no telephone-event: --duration-ms of the
digit's two tones, then --gap-ms of silence, every 20 ms frame sent (the gaps
are needed: a detector tells two presses of one key apart by the silence).

Both (--both): as --inband, and each key also as RFC 4733 events beside the
audio frames its tone sounds in, as a gateway that leaks tones does; one SSRC
and one sequence for both (RFC 4733 §2.1).

Network trouble, applied to the finished packet list (deterministic for a --seed):
--duplicate P sends each packet twice with probability P (1.0: every packet);
--reorder P swaps each packet with the next one with probability P (the send
times stay in order, so the later packet really goes out first).

Standalone on purpose (standard library only), like the copy in ../shared/peers/.
"""
import argparse
import math
import random
import struct
import sys

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
          "A": 12, "B": 13, "C": 14, "D": 15}
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet
KEYPAD = ("123A", "456B", "789C", "*0#D")
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
SAMPLE_RATE = 8000
FRAME = 160  # samples per 20 ms
SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5}
STATIC_PT = {"PCMU": 0, "PCMA": 8}
PAUSE = ","  # one second without a key, as dialers write it
PAUSE_FRAMES = 50


def frame(payload: bytes, sport: int = 6000, dport: int = 6000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    csum = sum(struct.unpack("!10H", ip))
    csum = (csum & 0xFFFF) + (csum >> 16)
    ip = ip[:10] + struct.pack("!H", ~csum & 0xFFFF) + ip[12:]
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt,
                       seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


# ---- G.711: the classic Sun reference encoders (what softswitch.media.g711 uses) -------------
def _segment(value: int, ends: tuple[int, ...]) -> int:
    return next((i for i, end in enumerate(ends) if value <= end), len(ends))


def ulaw(sample: int) -> int:
    sample >>= 2  # μ-law encodes the top 14 bits
    mask = 0xFF
    if sample < 0:
        sample, mask = -sample, 0x7F
    sample = min(sample, 8159) + (0x84 >> 2)
    segment = _segment(sample, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((sample >> (segment + 1)) & 0x0F)) ^ mask


def alaw(sample: int) -> int:
    sample >>= 3  # A-law encodes the top 13 bits
    mask = 0xD5
    if sample < 0:
        sample, mask = -sample - 1, 0x55
    segment = _segment(sample, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((sample >> shift) & 0x0F)) ^ mask


def tone(digit: str, samples: int, start: int, amplitude: int, codec: str) -> bytes:
    """`samples` samples of the digit's two tones from sample `start` (phase continues)."""
    row = next(i for i, keys in enumerate(KEYPAD) if digit in keys)
    low = 2 * math.pi * ROWS[row] / SAMPLE_RATE
    high = 2 * math.pi * COLUMNS[KEYPAD[row].index(digit)] / SAMPLE_RATE
    encode = ulaw if codec == "PCMU" else alaw
    return bytes(encode(round(amplitude * (math.sin(low * n) + math.sin(high * n))))
                 for n in range(start, start + samples))


# ---- packet lists ---------------------------------------------------------------------------
def event_packets(digits: str, pt: int, duration_ms: int, gap_ms: int, volume: int,
                  with_audio: bool, codec: str):
    """Yield (time in seconds, RTP packet) for the whole digit string as RFC 4733 events."""
    seq, ts, t, ssrc = 1, 0, 0.0, 0x2833
    silence = bytes([SILENCE[codec]]) * FRAME
    for digit in digits:
        if digit == PAUSE:
            for _ in range(PAUSE_FRAMES):
                if with_audio:
                    yield t, rtp(STATIC_PT[codec], seq, ts, ssrc, silence, marker=False)
                    seq += 1
                ts += FRAME
                t += 0.02
            continue
        event, steps = EVENTS[digit], max(1, duration_ms // 20)
        for step in range(1, steps + 1):
            end = step == steps
            dur = step * FRAME
            body = struct.pack("!BBH", event, (0x80 if end else 0) | volume, dur)
            for _ in range(3 if end else 1):
                yield t, rtp(pt, seq, ts, ssrc, body, marker=step == 1)
                seq += 1
            t += 0.02
        ts += steps * FRAME
        for _ in range(max(1, gap_ms // 20)):
            if with_audio:
                yield t, rtp(STATIC_PT[codec], seq, ts, ssrc, silence, marker=False)
                seq += 1
            ts += FRAME
            t += 0.02


def inband_packets(digits: str, duration_ms: int, gap_ms: int, amplitude: int, codec: str):
    """Yield (time, RTP packet): every 20 ms an audio frame, tone or silence."""
    pt, silence = STATIC_PT[codec], bytes([SILENCE[codec]]) * FRAME
    seq, ts, t, ssrc = 1, 0, 0.0, 0x1D7F
    for _ in range(5):  # a little silence first: the far end latches onto the stream
        yield t, rtp(pt, seq, ts, ssrc, silence, marker=seq == 1)
        seq, ts, t = seq + 1, ts + FRAME, t + 0.02
    for digit in digits:
        if digit == PAUSE:
            for _ in range(PAUSE_FRAMES):
                yield t, rtp(pt, seq, ts, ssrc, silence, marker=False)
                seq, ts, t = seq + 1, ts + FRAME, t + 0.02
            continue
        for step in range(max(1, duration_ms // 20)):
            yield t, rtp(pt, seq, ts, ssrc, tone(digit, FRAME, step * FRAME, amplitude, codec),
                         marker=False)
            seq, ts, t = seq + 1, ts + FRAME, t + 0.02
        for _ in range(max(1, gap_ms // 20)):
            yield t, rtp(pt, seq, ts, ssrc, silence, marker=False)
            seq, ts, t = seq + 1, ts + FRAME, t + 0.02


def both_packets(digits: str, pt: int, duration_ms: int, gap_ms: int, volume: int,
                 amplitude: int, codec: str):
    """Yield (time, RTP packet): every 20 ms an audio frame, tone or silence, and while a key
    sounds its event packet (the first with the marker, the last three with the E bit)."""
    audio_pt, silence = STATIC_PT[codec], bytes([SILENCE[codec]]) * FRAME
    seq, ts, t, ssrc = 1, 0, 0.0, 0xB07
    for _ in range(5):
        yield t, rtp(audio_pt, seq, ts, ssrc, silence, marker=seq == 1)
        seq, ts, t = seq + 1, ts + FRAME, t + 0.02
    for digit in digits:
        if digit == PAUSE:
            for _ in range(PAUSE_FRAMES):
                yield t, rtp(audio_pt, seq, ts, ssrc, silence, marker=False)
                seq, ts, t = seq + 1, ts + FRAME, t + 0.02
            continue
        event, steps, onset = EVENTS[digit], max(1, duration_ms // 20), ts
        for step in range(1, steps + 1):
            yield t, rtp(audio_pt, seq, ts, ssrc,
                         tone(digit, FRAME, (step - 1) * FRAME, amplitude, codec), marker=False)
            seq += 1
            end = step == steps
            body = struct.pack("!BBH", event, (0x80 if end else 0) | volume, step * FRAME)
            for _ in range(3 if end else 1):
                yield t, rtp(pt, seq, onset, ssrc, body, marker=step == 1)
                seq += 1
            ts, t = ts + FRAME, t + 0.02
        for _ in range(max(1, gap_ms // 20)):
            yield t, rtp(audio_pt, seq, ts, ssrc, silence, marker=False)
            seq, ts, t = seq + 1, ts + FRAME, t + 0.02


def disturb(packets: list[tuple[float, bytes]], duplicate: float, reorder: float,
            rng: random.Random) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    for t, packet in packets:
        out.append((t, packet))
        if rng.random() < duplicate:
            out.append((t + 0.0005, packet))
    i = 0
    while i < len(out) - 1:
        if rng.random() < reorder:
            (t1, p1), (t2, p2) = out[i], out[i + 1]
            out[i], out[i + 1] = (t1, p2), (t2, p1)
            i += 2  # a packet moves by one place at most
        else:
            i += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("digits")
    ap.add_argument("out")
    ap.add_argument("--pt", type=int, default=101, help="telephone-event payload type")
    ap.add_argument("--duration-ms", type=int, default=100)
    ap.add_argument("--gap-ms", type=int, default=200)
    ap.add_argument("--volume", type=int, default=10)
    ap.add_argument("--with-audio", action="store_true",
                    help="fill the gaps with G.711 silence frames")
    ap.add_argument("--inband", action="store_true",
                    help="G.711 tones instead of telephone-events")
    ap.add_argument("--both", action="store_true",
                    help="G.711 tones and telephone-events for every key")
    ap.add_argument("--codec", choices=("PCMU", "PCMA"), default="PCMU",
                    help="audio codec of --inband, --both and --with-audio frames")
    ap.add_argument("--amplitude", type=int, default=7000,
                    help="peak of each in-band tone (7000 is about -10 dBm0)")
    ap.add_argument("--duplicate", type=float, default=0.0, metavar="P",
                    help="probability that a packet is sent twice")
    ap.add_argument("--reorder", type=float, default=0.0, metavar="P",
                    help="probability that a packet swaps places with the next")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    digits = args.digits.upper()
    bad = [d for d in digits if d not in EVENTS and d != PAUSE]
    if bad:
        raise SystemExit(f"not a DTMF digit: {bad[0]!r}")
    if args.both:
        packets = list(both_packets(digits, args.pt, args.duration_ms, args.gap_ms,
                                    args.volume, args.amplitude, args.codec))
    elif args.inband:
        packets = list(inband_packets(digits, args.duration_ms, args.gap_ms, args.amplitude,
                                      args.codec))
    else:
        packets = list(event_packets(digits, args.pt, args.duration_ms, args.gap_ms,
                                     args.volume, args.with_audio, args.codec))
    packets = disturb(packets, args.duplicate, args.reorder, random.Random(args.seed))
    with open(args.out, "wb") as f:
        f.write(PCAP_HEADER)
        for t, pkt in packets:
            data = frame(pkt)
            sec, usec = divmod(int(round(t * 1e6)), 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
