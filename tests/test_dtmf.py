import math
import random
import struct
from collections.abc import Sequence

import pytest

from softswitch.media import dtmf, g711
from softswitch.media.dtmf import (
    COLUMN_FREQUENCIES,
    DTMF_DIGITS,
    ROW_FREQUENCIES,
    DigitDeduplicator,
    DigitEvent,
    InbandDtmfDetector,
    TelephoneEventReceiver,
    dtmf_tone,
    parse_info_dtmf,
    telephone_event_payload,
)
from softswitch.media.rtp import RtpPacket

PT = 101
SSRC = 0x2833

# --- RFC 4733 ------------------------------------------------------------------------------


def press(digit: str, timestamp: int, sequence: int, updates: int = 5,
          ssrc: int = SSRC, code: int | None = None) -> list[RtpPacket]:
    """The packets of one key press as a phone sends them: start with the marker, an update
    every 20 ms, the final duration three times with the E bit."""
    event = DTMF_DIGITS.index(digit) if code is None else code
    packets = []
    for step in range(1, updates + 1):
        end = step == updates
        payload = telephone_event_payload(event, end, 10, step * 160)
        for _ in range(3 if end else 1):
            packets.append(RtpPacket(PT, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc,
                                     payload, marker=step == 1))
            sequence += 1
    return packets


def deliver(packets: list[RtpPacket], receiver: TelephoneEventReceiver | None = None) -> str:
    receiver = receiver or TelephoneEventReceiver(PT)
    digits = []
    for i, packet in enumerate(packets):
        for event in receiver.receive(packet, now=i * 0.02):
            assert event.source == "rfc4733"
            digits.append(event.digit)
    return "".join(digits)


def presses(digits: str, start_ts: int = 1000, start_seq: int = 100) -> list[list[RtpPacket]]:
    out = []
    ts, seq = start_ts, start_seq
    for digit in digits:
        packets = press(digit, ts, seq)
        out.append(packets)
        seq += len(packets)
        ts += 1600 + 800  # 100 ms press plus 100 ms pause (audio would fill it)
    return out


def test_one_press_is_delivered_once_on_its_first_packet() -> None:
    receiver = TelephoneEventReceiver(PT)
    packets = press("5", 1000, 1)
    first = receiver.receive(packets[0], now=3.5)
    assert first == [DigitEvent("5", "rfc4733", 3.5)]
    assert [receiver.receive(p, now=4.0) for p in packets[1:]] == [[]] * (len(packets) - 1)


def test_all_sixteen_events() -> None:
    assert deliver([p for ps in presses(DTMF_DIGITS) for p in ps]) == DTMF_DIGITS


def test_duplicated_packets() -> None:
    packets = [p for ps in presses("1#1") for p in ps for _ in range(2)]
    assert deliver(packets) == "1#1"


def test_lost_start_packet() -> None:
    first, second = presses("78")
    assert deliver(first[1:] + second[1:]) == "78"


def test_lost_end_packets() -> None:
    first, second = presses("90")
    assert deliver(first[:-3] + second[:-3]) == "90"


def test_only_end_packets_arrive() -> None:
    first, second = presses("*#")
    assert deliver(first[-3:] + second[-1:]) == "*#"


def test_only_one_middle_packet_arrives() -> None:
    (packets,) = presses("4")
    assert deliver([packets[2]]) == "4"


def test_same_digit_twice_is_two_presses() -> None:
    assert deliver([p for ps in presses("33") for p in ps]) == "33"


def test_same_digit_twice_with_end_and_start_lost() -> None:
    first, second = presses("22")
    # no E bit seen for the first press, no marker for the second: the timestamps still differ
    # by more than the first press lasted, so this is not a continuation
    assert deliver(first[:3] + second[1:]) == "22"


def test_reordered_within_an_event() -> None:
    first, second = presses("69")
    rng = random.Random(1)
    rng.shuffle(first)
    rng.shuffle(second)
    assert deliver(first + second) == "69"


def test_late_packet_of_an_older_event_is_ignored() -> None:
    a, b, c = presses("123")
    # packets of "1" arrive after "2" and after "3" have started
    assert deliver(a[:2] + b[:2] + a[2:4] + c[:2] + a[4:] + b[2:] + c[2:]) == "123"


def test_sequence_wrap() -> None:
    packets = [p for ps in presses("147", start_seq=65530) for p in ps]
    assert {p.sequence for p in packets} >= {65535, 0, 1}
    assert deliver(packets) == "147"


def test_timestamp_wrap() -> None:
    packets = [p for ps in presses("858", start_ts=0xFFFFF000) for p in ps]
    timestamps = [p.timestamp for p in packets]
    assert max(timestamps) > 0xFFFF0000 and min(timestamps) < 0x1000
    assert deliver(packets) == "858"


def test_held_key_continues_in_a_new_segment() -> None:
    # RFC 4733 §2.5.1.3: the duration field is full, the next segment starts at T + 0xFFFF
    start = 0xFFFF8000  # and the new segment's timestamp wraps
    segment_one = [RtpPacket(PT, 1, start, SSRC, telephone_event_payload(5, False, 10, 160),
                             marker=True),
                   RtpPacket(PT, 2, start, SSRC, telephone_event_payload(5, False, 10, 0xFFFF))]
    second_start = (start + 0xFFFF) & 0xFFFFFFFF
    segment_two = [RtpPacket(PT, 3 + i, second_start, SSRC,
                             telephone_event_payload(5, i == 2, 10, 160 * (i + 1)))
                   for i in range(3)]
    after = press("5", second_start + 800, 10)
    assert deliver(segment_one + segment_two + after) == "55"


def test_events_above_fifteen_are_not_digits() -> None:
    flash, digit = presses("00")
    flash = [RtpPacket(p.payload_type, p.sequence, p.timestamp, p.ssrc,
                       bytes([16]) + p.payload[1:], p.marker) for p in flash]
    assert deliver(flash + digit) == "0"


def test_other_payload_types_and_short_payloads_are_ignored() -> None:
    receiver = TelephoneEventReceiver(PT)
    assert receiver.receive(RtpPacket(0, 1, 0, SSRC, b"\x05\x0a\x00\xa0"), 0.0) == []
    assert receiver.receive(RtpPacket(PT, 1, 0, SSRC, b"\x05\x0a\x00"), 0.0) == []
    assert deliver(press("5", 0, 2), receiver) == "5"


def test_new_ssrc_is_a_new_stream() -> None:
    receiver = TelephoneEventReceiver(PT)
    assert deliver(press("1", 5000, 1), receiver) == "1"
    # a different source whose timestamp happens to be the same
    assert deliver(press("1", 5000, 900, ssrc=0xBEEF), receiver) == "1"


def test_jittery_lossy_duplicating_network() -> None:
    rng = random.Random(4733)
    for _ in range(40):
        digits = "".join(rng.choice(DTMF_DIGITS) for _ in range(12))
        arrivals = []
        for index, packets in enumerate(presses(digits, rng.getrandbits(32), rng.getrandbits(16))):
            survivors = [p for p in packets if rng.random() > 0.3] or [rng.choice(packets)]
            for step, packet in enumerate(survivors):
                sent = index * 0.2 + step * 0.02
                for _ in range(rng.choice((1, 1, 1, 2))):
                    arrivals.append((sent + rng.uniform(0, 0.08), packet))
        arrivals.sort(key=lambda arrival: arrival[0])
        assert deliver([packet for _, packet in arrivals]) == digits


# --- SIP INFO ------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "body", "digit"), [
    ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
    ("application/dtmf-relay", b"Signal=#\r\nDuration=160\r\n", "#"),
    ("application/dtmf-relay", b"Signal=*\nDuration=100", "*"),
    ("application/dtmf-relay", b"Signal=10\r\nDuration=160\r\n", "*"),
    ("application/dtmf-relay", b"Signal=11\r\nDuration=160\r\n", "#"),
    ("application/dtmf-relay", b"Signal=12\r\n", "A"),
    ("Application/DTMF-Relay; charset=utf-8", b"signal = d\r\nduration=160", "D"),
    ("application/dtmf-relay", b"Duration=160\r\nSignal=0\r\n", "0"),
    ("application/dtmf", b"7", "7"),
    ("application/dtmf", b"#\r\n", "#"),
    ("application/dtmf", b"11", "#"),
    ("application/dtmf-relay", b"Signal=16\r\n", None),
    ("application/dtmf-relay", b"Signal=\r\n", None),
    ("application/dtmf-relay", b"Signal=\xb2\r\n", None),
    ("application/dtmf-relay", b"Duration=160\r\n", None),
    ("application/dtmf", b"55", None),
    ("application/dtmf", "\u00b2".encode(), None),
    ("text/plain", b"Signal=5", None),
    ("application/sdp", b"v=0\r\n", None),
])
def test_parse_info_dtmf(content_type: str, body: bytes, digit: str | None) -> None:
    assert parse_info_dtmf(content_type, body) == digit


# --- In-band -------------------------------------------------------------------------------


def silence(ms: int) -> bytes:
    return b"\x00\x00" * (ms * 8)


def tones(frequencies: Sequence[float], amplitudes: Sequence[float], ms: int) -> bytes:
    n = ms * 8
    return struct.pack(f"<{n}h", *(
        round(sum(a * math.sin(2 * math.pi * f * i / 8000)
                  for f, a in zip(frequencies, amplitudes, strict=True)))
        for i in range(n)))


def detect(pcm16: bytes, chunk: int = 160, codec: g711.Codec = g711.Codec.PCMU) -> str:
    """The digits found in `pcm16` sent as G.711 in frames of `chunk` samples."""
    detector = InbandDtmfDetector(codec)
    encoded = codec.from_pcm16(pcm16)
    events = []
    for offset in range(0, len(encoded), chunk):
        events += detector.feed(encoded[offset:offset + chunk], now=offset / 8000)
    assert all(event.source == "inband" for event in events)
    return "".join(event.digit for event in events)


@pytest.mark.parametrize("codec", [g711.Codec.PCMU, g711.Codec.PCMA])
def test_all_digits_in_either_law(codec: g711.Codec) -> None:
    audio = b"".join(dtmf_tone(digit, 60) + silence(60) for digit in DTMF_DIGITS)
    assert detect(audio, codec=codec) == DTMF_DIGITS


def test_feed_size_does_not_matter() -> None:
    audio = silence(13) + dtmf_tone("8", 50) + silence(45) + dtmf_tone("D", 50) + silence(20)
    assert detect(audio, chunk=37) == "8D"
    assert detect(audio, chunk=1000) == "8D"


def test_forty_ms_is_detected_at_every_alignment() -> None:
    for offset in range(0, 102, 3):
        assert detect(b"\x00\x00" * offset + dtmf_tone("6", 40) + silence(60)) == "6", offset


def test_twenty_ms_is_rejected_at_every_alignment() -> None:
    for offset in range(0, 102, 3):
        assert detect(b"\x00\x00" * offset + dtmf_tone("6", 20) + silence(60)) == "", offset


def test_long_tone_is_one_digit() -> None:
    assert detect(dtmf_tone("0", 1500) + silence(40)) == "0"


def test_forty_ms_pause_separates_two_presses() -> None:
    for offset in range(0, 102, 17):
        audio = b"\x00\x00" * offset + dtmf_tone("3", 50) + silence(40) + dtmf_tone("3", 50)
        assert detect(audio + silence(60)) == "33", offset


def test_ten_ms_dropout_does_not_split_a_press() -> None:
    for offset in range(0, 102, 17):
        audio = b"\x00\x00" * offset + dtmf_tone("3", 60) + silence(10) + dtmf_tone("3", 60)
        assert detect(audio + silence(60)) == "3", offset


def test_frequency_tolerance() -> None:
    for deviation, expected in ((-0.015, "5"), (0.015, "5"), (-0.035, ""), (0.035, "")):
        audio = tones([770 * (1 + deviation), 1336 * (1 + deviation)], [7000, 7000], 60)
        assert detect(audio + silence(60)) == expected, deviation


def test_level_threshold() -> None:
    def at(dbm0: float) -> str:
        amplitude = 22272 * 10 ** (dbm0 / 20)
        return detect(tones([852, 1477], [amplitude, amplitude], 60) + silence(60))
    assert at(-3) == "9"
    assert at(-30) == "9"
    assert at(-45) == ""


def test_twist_limits() -> None:
    def with_twist(column_over_row_db: float) -> str:
        column_amplitude = 3000 * 10 ** (column_over_row_db / 20)
        return detect(tones([941, 1209], [3000, column_amplitude], 60) + silence(60))
    assert [with_twist(db) for db in (-7, -3, 0, 3)] == ["*"] * 4
    assert [with_twist(db) for db in (-10, 6)] == ["", ""]


def test_single_tones_and_call_progress_tones_are_rejected() -> None:
    for frequencies in ([697], [1209], [1633], [350, 440], [440, 480], [480, 620], [1000]):
        assert detect(tones(frequencies, [9000] * len(frequencies), 400)) == "", frequencies


def test_third_tone_is_rejected() -> None:
    # two rows at once (a stuck key or voice over the tone)
    assert detect(tones([697, 852, 1336], [6000, 6000, 6000], 200)) == ""
    assert detect(tones([770, 1336, 2000], [5000, 5000, 5000], 200)) == ""
    # a second column only 5 dB down still leaves most power in two tones: the peak test
    assert detect(tones([697, 1209, 1477], [6000, 6000, 3400], 200)) == ""


def test_noise_and_speech_like_sounds_are_rejected() -> None:
    rng = random.Random(7)
    noise = struct.pack("<16000h", *(int(rng.gauss(0, 6000)) for _ in range(16000)))
    assert detect(noise) == ""
    for fundamental in range(95, 260, 15):  # vowels: harmonics shaped by three formants
        harmonics = [fundamental * h for h in range(1, 3500 // fundamental)]
        weights = [sum(1 / (1 + ((f - formant) / 120) ** 2) for formant in (700, 1200, 2600))
                   for f in harmonics]
        scale = 12000 / sum(weights)
        assert detect(tones(harmonics, [w * scale for w in weights], 300)) == "", fundamental


def test_tone_in_moderate_noise_is_detected() -> None:
    rng = random.Random(8)
    clean = struct.unpack("<800h", dtmf_tone("B", 100))
    noisy = struct.pack("<800h", *(round(s + rng.gauss(0, 1000)) for s in clean))  # 17 dB SNR
    assert detect(noisy + silence(60)) == "B"


@pytest.mark.parametrize("codec", [g711.Codec.PCMU, g711.Codec.PCMA])
def test_quiet_frames_skip_the_transforms_without_changing_a_result(codec: g711.Codec) -> None:
    """Frames too weak to hold a tone advance the detector without being transformed. The
    skip must be exact: a detector that transforms every block finds the same digits at the
    same moments, over audio that mixes silence, noise just under and just over the quiet
    limit, speech-like sound and tones, cut into frames of any size."""
    rng = random.Random(11)
    quiet_limit = math.sqrt(dtmf._MIN_BLOCK_POWER)
    pieces = []
    for _ in range(60):
        kind = rng.randrange(5)
        ms = rng.choice((10, 20, 40, 60, 100))
        if kind == 0:
            pieces.append(silence(ms))
        elif kind == 1:  # noise whose peaks sit around the quiet limit
            scale = quiet_limit * rng.choice((0.3, 0.9, 1.1))
            pieces.append(struct.pack(f"<{ms * 8}h", *(
                max(-32768, min(32767, round(rng.uniform(-scale, scale))))
                for _ in range(ms * 8))))
        elif kind == 2:
            pieces.append(tones([rng.uniform(100, 3000) for _ in range(3)], [3000] * 3, ms))
        else:
            pieces.append(dtmf_tone(rng.choice(DTMF_DIGITS), ms + 30,
                                    amplitude=rng.choice((500, 3000, 9000))))
    encoded = codec.from_pcm16(b"".join(pieces))
    for chunk in (160, 80, 37):
        gated, transformed = InbandDtmfDetector(codec), InbandDtmfDetector(codec)
        transformed._quiet = b""  # no code is quiet: every block goes through _classify
        found: tuple[list[DigitEvent], list[DigitEvent]] = ([], [])
        quiet_frames = 0
        for offset in range(0, len(encoded), chunk):
            frame = encoded[offset:offset + chunk]
            quiet_frames += not frame.translate(None, dtmf._QUIET_CODES[codec])
            found[0].extend(gated.feed(frame, offset / 8000))
            found[1].extend(transformed.feed(frame, offset / 8000))
        assert found[0] == found[1] and len(found[0]) >= 10
        assert quiet_frames >= len(encoded) / chunk / 10  # the gate was taken, often


@pytest.mark.parametrize("codec", [g711.Codec.PCMU, g711.Codec.PCMA])
def test_quiet_codes_are_exactly_those_too_weak_for_a_tone(codec: g711.Codec) -> None:
    values = [abs(v) for v in dtmf._DECODED[codec]]
    quiet = dtmf._QUIET_CODES[codec]
    loudest_quiet = max(values[code] for code in quiet)
    softest_loud = min(v for code, v in enumerate(values) if code not in quiet)
    assert loudest_quiet**2 < dtmf._MIN_BLOCK_POWER <= softest_loud**2
    block = [loudest_quiet * (-1) ** n for n in range(dtmf._BLOCK)]
    assert dtmf._classify(block) is None


def test_dtmf_tone_generator() -> None:
    audio = dtmf_tone("1", 50, amplitude=1000)
    assert len(audio) == 50 * 8 * 2
    samples = struct.unpack("<400h", audio)
    expected_1 = round(1000 * (math.sin(2 * math.pi * ROW_FREQUENCIES[0] / 8000)
                               + math.sin(2 * math.pi * COLUMN_FREQUENCIES[0] / 8000)))
    assert samples[0] == 0 and samples[1] == expected_1
    assert max(samples) <= 2000
    assert dtmf_tone("a", 20) == dtmf_tone("A", 20)
    for bad in ("", "E", "12", "x"):
        with pytest.raises(ValueError):
            dtmf_tone(bad, 20)


# --- One press, several sources ------------------------------------------------------------


def test_info_and_rfc4733_for_the_same_press_count_once() -> None:
    dedup = DigitDeduplicator()
    assert dedup.accept(DigitEvent("5", "rfc4733", 10.00))
    assert not dedup.accept(DigitEvent("5", "info", 10.15))
    # info first this time
    assert dedup.accept(DigitEvent("6", "info", 11.00))
    assert not dedup.accept(DigitEvent("6", "rfc4733", 11.05))


def test_same_source_is_never_merged() -> None:
    dedup = DigitDeduplicator()
    assert dedup.accept(DigitEvent("5", "rfc4733", 1.0))
    assert dedup.accept(DigitEvent("5", "rfc4733", 1.1))
    # each press absorbs one INFO report
    assert not dedup.accept(DigitEvent("5", "info", 1.15))
    assert not dedup.accept(DigitEvent("5", "info", 1.2))
    assert dedup.accept(DigitEvent("5", "info", 1.25))


def test_outside_the_window_or_other_digit_is_a_new_press() -> None:
    dedup = DigitDeduplicator()
    assert dedup.accept(DigitEvent("1", "rfc4733", 1.0))
    assert dedup.accept(DigitEvent("2", "info", 1.05))
    assert dedup.accept(DigitEvent("1", "info", 1.25))
    assert DigitDeduplicator(window=0.5).accept(DigitEvent("1", "info", 1.0))
