import struct

import pytest

from softswitch.media.dtmf import (
    DTMF_DIGITS,
    DigitDeduplicator,
    DigitEvent,
    InbandDtmfDetector,
    TelephoneEventReceiver,
    dtmf_tone,
    telephone_event_payload,
)
from softswitch.media.g711 import Codec
from softswitch.media.rtp import build_rtp, is_rtcp, parse_rtp
from softswitch.media.session import AudioFrame, RtpSession, SourceRejected

PHONE = ("192.0.2.10", 4000)  # the SDP's address: the phone's own, behind NAT
NAT = ("198.51.100.7", 61000)  # where its INVITE and, NATed, its RTP come from
REBOUND = ("198.51.100.7", 61004)  # the NAT's new mapping for the same phone
OTHER = ("203.0.113.5", 5004)  # a third party
SSRC = 0x11111111


def session(telephone_event_pt: int | None = 101, payload_type: int = 0,
            symmetric: bool = True) -> RtpSession:
    return RtpSession(0xABCDEF01, payload_type, telephone_event_pt, PHONE, symmetric,
                      signalling_host=NAT[0], initial_sequence=65534,
                      initial_timestamp=0xFFFFFF00)


def audio(sequence: int, timestamp: int, ssrc: int = SSRC, payload_type: int = 0) -> bytes:
    return build_rtp(payload_type, sequence, timestamp, ssrc, b"\xff" * 160)


# --- sending -------------------------------------------------------------------------------


def test_outgoing_audio_counts_and_wraps() -> None:
    rtp = session()
    packets = [parse_rtp(rtp.next_frame(bytes([i]) * 160)) for i in range(3)]
    assert [(p.sequence, p.timestamp, p.marker) for p in packets if p] == [
        (65534, 0xFFFFFF00, True), (65535, 0xFFFFFFA0, False), (0, 0x40, False)]
    assert all(p is not None and p.ssrc == 0xABCDEF01 and p.payload_type == 0 for p in packets)
    assert rtp.stats.packets_sent == 3 and rtp.stats.octets_sent == 480


def test_silent_tick_keeps_time_and_marks_the_next_talkspurt() -> None:
    rtp = session()
    rtp.next_frame(b"\xff" * 160)
    rtp.skip_frame()
    rtp.skip_frame()
    packet = parse_rtp(rtp.next_frame(b"\xff" * 160))
    assert packet is not None
    # 0xFFFFFF00 + 3 * 160, wrapped
    assert (packet.sequence, packet.timestamp, packet.marker) == (65535, 0xE0, True)


def test_random_initial_values_differ() -> None:
    first = {parse_rtp(RtpSession(1, 0, None, None).next_frame(b"")).sequence  # type: ignore
             for _ in range(8)}
    assert len(first) > 1


def test_send_dtmf_packets() -> None:
    rtp = session()
    rtp.next_frame(b"\xff" * 160)
    packets = [parse_rtp(data) for data in rtp.send_dtmf("#", duration_ms=100, volume=7)]
    assert all(p is not None for p in packets)
    events = [p for p in packets if p is not None]
    assert [p.sequence for p in events] == [65535, 0, 1, 2, 3, 4, 5]
    assert {p.timestamp for p in events} == {0xFFFFFFA0}
    assert {p.payload_type for p in events} == {101}
    assert [p.marker for p in events] == [True] + [False] * 6
    fields = [struct.unpack("!BBH", p.payload) for p in events]
    assert fields == [(11, 7, 160), (11, 7, 320), (11, 7, 480), (11, 7, 640),
                      (11, 0x87, 800), (11, 0x87, 800), (11, 0x87, 800)]
    after = parse_rtp(rtp.next_frame(b"\xff" * 160))
    assert after is not None
    assert (after.sequence, after.timestamp, after.marker) == (6, 0xFFFFFFA0 + 7 * 160 - 2**32,
                                                                True)


def test_send_dtmf_errors() -> None:
    with pytest.raises(ValueError, match="telephone-event"):
        session(telephone_event_pt=None).send_dtmf("1")
    with pytest.raises(ValueError, match="not a DTMF digit"):
        session().send_dtmf("E")


def test_sent_digits_are_received_once_each() -> None:
    sender, receiver = session(), session()
    digits = []
    now = 0.0
    for digit in "19#*0AD":
        for data in sender.send_dtmf(digit) * 2:  # every packet duplicated
            now += 0.02
            digits += [e.digit for e in receiver.receive(data, NAT, now)
                       if isinstance(e, DigitEvent)]
        sender.skip_frame()
    assert "".join(digits) == "19#*0AD"


def test_sender_report() -> None:
    rtp = session()
    rtp.next_frame(b"\xff" * 160)
    report = rtp.sender_report(1_700_000_000.0, "ivr@softswitch")
    assert is_rtcp(report)
    ssrc, _, _, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", report, 4)
    assert (ssrc, rtp_ts, packets, octets) == (0xABCDEF01, 0xFFFFFFA0, 1, 160)


# --- receiving -----------------------------------------------------------------------------


def test_audio_frames() -> None:
    rtp = session()
    out = rtp.receive(build_rtp(0, 7, 1600, SSRC, b"\x01" * 160, marker=True), PHONE, 5.0)
    assert out == [AudioFrame(b"\x01" * 160, 7, 1600, True, 5.0)]
    assert rtp.stats.packets_received == 1 and rtp.stats.octets_received == 160


def test_garbage_rtcp_and_other_payload_types() -> None:
    rtp = session()
    assert rtp.receive(b"\x00\x01garbage", PHONE, 0.0) == []
    assert rtp.receive(bytes((0x81, 201)) + b"\x00" * 30, PHONE, 0.0) == []
    assert rtp.stats.packets_discarded == 2
    assert rtp.receive(audio(1, 0, payload_type=13)[:13], PHONE, 0.0) == []  # comfort noise
    assert rtp.receive(audio(2, 160, payload_type=8), PHONE, 0.0) == []  # not negotiated
    assert rtp.stats.packets_received == 2


def test_symmetric_rtp_latches_to_the_first_source() -> None:
    rtp = session()
    assert rtp.remote == PHONE
    assert rtp.receive(audio(1, 0), NAT, 0.0)  # the phone is behind NAT
    assert rtp.remote == NAT
    assert rtp.receive(audio(1, 0, ssrc=0x666), REBOUND, 0.0) == []  # another stream
    assert rtp.remote == NAT
    assert rtp.stats.packets_discarded == 1
    assert rtp.receive(audio(2, 160), REBOUND, 0.0)  # same stream, NAT binding moved
    assert rtp.remote == REBOUND
    assert rtp.receive(audio(3, 320), NAT, 0.0)  # and back: still that stream
    assert rtp.remote == NAT
    assert rtp.stats.packets_rejected == 0


def test_rtp_from_another_host_is_rejected_and_reported_once() -> None:
    """Sent first, from a third host: neither its keys nor the latch are taken."""
    rtp = session()
    attacker = RtpSession(0x666, 0, 101, None)
    injected = [data for key in "1234" for data in attacker.send_dtmf(key)]
    out = [item for data in injected for item in rtp.receive(data, OTHER, 1.0)]
    assert out == [SourceRejected(OTHER, 1.0)]
    assert rtp.remote == PHONE
    assert rtp.stats.packets_rejected == len(injected)
    assert rtp.stats.packets_received == 0
    # the caller's own keys, from its NAT address, are read; the third host stays out
    caller = RtpSession(SSRC, 0, 101, None)
    keys = [e for data in caller.send_dtmf("9") for e in rtp.receive(data, NAT, 2.0)]
    assert keys == [DigitEvent("9", "rfc4733", 2.0)]
    assert rtp.remote == NAT
    assert rtp.receive(audio(2, 160, ssrc=SSRC), OTHER, 2.1) == []  # even with its SSRC
    assert rtp.remote == NAT and rtp.stats.packets_rejected == len(injected) + 1


def test_without_a_signalling_host_only_the_sdp_host_is_accepted() -> None:
    rtp = RtpSession(1, 0, None, PHONE)
    assert rtp.receive(audio(1, 0), NAT, 0.0) == [SourceRejected(NAT, 0.0)]
    assert rtp.receive(audio(2, 160), (PHONE[0], 4002), 0.0)  # the SDP's host, any port
    assert rtp.remote == (PHONE[0], 4002)


def test_addresses_compare_as_the_socket_layer_writes_them() -> None:
    rtp = RtpSession(1, 0, None, ("2001:DB8:0:0::10", 4000), signalling_host="[2001:db8::7]")
    assert rtp.receive(audio(1, 0), ("2001:db8::10", 4000), 0.0)
    assert rtp.receive(audio(2, 160), ("2001:db8::7", 5000), 0.0)
    assert rtp.stats.packets_rejected == 0


def test_set_remote_unlatches() -> None:
    rtp = session()
    rtp.receive(audio(1, 0), NAT, 0.0)
    rtp.set_remote(None)  # on hold: the hosts accepted before still are
    assert rtp.remote is None
    assert rtp.receive(audio(2, 160), PHONE, 0.0)
    rtp.set_remote(("192.0.2.99", 4000))  # resumed with new SDP
    assert rtp.receive(audio(9, 0, ssrc=0x2222), REBOUND, 0.0)
    assert rtp.remote == REBOUND
    assert rtp.receive(audio(10, 0), PHONE, 0.0) == [SourceRejected(PHONE, 0.0)]


def test_not_symmetric_keeps_the_sdp_address() -> None:
    rtp = session(symmetric=False)
    assert rtp.receive(audio(1, 0), NAT, 0.0)
    assert rtp.receive(audio(1, 0, ssrc=0x666), PHONE, 0.0)
    assert rtp.receive(audio(1, 0, ssrc=0x666), OTHER, 0.0) == [SourceRejected(OTHER, 0.0)]
    assert rtp.remote == PHONE


def test_loss_accounting_with_wrap_reordering_and_duplicates() -> None:
    rtp = session()
    for sequence in (65533, 65534, 1, 0, 0, 3, 4):  # 65535 and 2 lost, 0 late and twice
        rtp.receive(audio(sequence, 0), PHONE, 0.0)
    stats = rtp.stats
    assert stats.packets_received == 7
    assert stats.packets_lost == 1  # 8 expected, 7 received (one a duplicate): RFC 3550 A.3


def test_loss_accounting_simple_gap() -> None:
    rtp = session()
    for sequence in (10, 11, 15, 16):
        rtp.receive(audio(sequence, 0), PHONE, 0.0)
    assert rtp.stats.packets_lost == 3


def test_new_ssrc_starts_new_accounting() -> None:
    rtp = session()
    for sequence in (100, 103):  # 2 lost
        rtp.receive(audio(sequence, 0), PHONE, 0.0)
    for sequence in (40000, 40001, 40003):  # new stream, 1 lost
        rtp.receive(audio(sequence, 0, ssrc=0x9999), PHONE, 0.0)
    assert rtp.stats.packets_lost == 3


def test_sequence_restart_is_not_counted_as_loss() -> None:
    rtp = session()
    for sequence in (100, 101, 30000, 30001):
        rtp.receive(audio(sequence, 0), PHONE, 0.0)
    assert rtp.stats.packets_lost == 0


def test_new_ssrc_resets_telephone_event_memory() -> None:
    first, second = session(), session()
    packets = first.send_dtmf("7")
    second_stream = RtpSession(0x5555, 0, 101, None, initial_sequence=9,
                               initial_timestamp=0xFFFFFF00).send_dtmf("7")
    assert parse_rtp(packets[0]).timestamp == parse_rtp(second_stream[0]).timestamp  # type: ignore
    digits = [e for data in packets + second_stream for e in second.receive(data, PHONE, 0.0)]
    assert [e.digit for e in digits if isinstance(e, DigitEvent)] == ["7", "7"]


# --- digits from every source --------------------------------------------------------------


def frames(pcm16: bytes, codec: Codec) -> list[bytes]:
    encoded = codec.from_pcm16(pcm16)
    return [encoded[i:i + 160] for i in range(0, len(encoded), 160)]


@pytest.mark.parametrize(("codec", "payload_type"), [(Codec.PCMU, 0), (Codec.PCMA, 8)])
def test_inband_digits_without_telephone_event(codec: Codec, payload_type: int) -> None:
    rtp = session(telephone_event_pt=None, payload_type=payload_type)
    pcm = b"".join(dtmf_tone(d, 80) + b"\x00\x00" * 640 for d in "42#")
    digits = []
    for i, payload in enumerate(frames(pcm, codec)):
        out = rtp.receive(build_rtp(payload_type, i, i * 160, SSRC, payload), PHONE, i * 0.02)
        assert isinstance(out[0], AudioFrame)
        digits += [(e.digit, e.source) for e in out if isinstance(e, DigitEvent)]
    assert digits == [("4", "inband"), ("2", "inband"), ("#", "inband")]


def test_dynamic_payload_type_needs_the_codec_named() -> None:
    rtp = RtpSession(1, 96, None, PHONE, codec=Codec.PCMA)
    assert rtp.codec is Codec.PCMA
    assert RtpSession(1, 96, None, PHONE).codec is None


def test_inband_digits_beside_telephone_event() -> None:
    """pyVoIP and many gateways offer telephone-event and send the keys as tones."""
    rtp = session(telephone_event_pt=101)
    pcm = b"".join(dtmf_tone(d, 80) + b"\x00\x00" * 640 for d in "5#")
    out = [e for i, payload in enumerate(frames(pcm, Codec.PCMU))
           for e in rtp.receive(build_rtp(0, i, i * 160, SSRC, payload), PHONE, i * 0.02)]
    assert [(e.digit, e.source) for e in out if isinstance(e, DigitEvent)] == [
        ("5", "inband"), ("#", "inband")]


def keyed_both_ways(presses: list[tuple[str, int, int]], *, lead_samples: int = 0,
                    events: bool = True) -> list[tuple[float, bytes]]:
    """(arrival time, RTP packet) of a phone that sends each press as RFC 4733 events and as
    its tone in the audio, as a leaky gateway does. `presses`: (key, tone ms, pause ms after),
    the first key going down `lead_samples` into the first frame. Each 20 ms frame leaves
    when it is complete; the event packets of a press go with the frames it sounds in (the
    first one with the frame in which the key went down), ending with three end packets."""
    pcm = b"\x00\x00" * lead_samples
    spans = []  # (key, first sample, last sample + 1)
    for key, tone_ms, pause_ms in presses:
        start = len(pcm) // 2
        pcm += dtmf_tone(key, tone_ms)
        spans.append((key, start, len(pcm) // 2))
        pcm += b"\x00\x00" * (pause_ms * 8)
    audio = frames(pcm, Codec.PCMU)
    packets: list[tuple[float, bytes]] = []
    sequence = 0
    for index, payload in enumerate(audio):
        arrival = (index + 1) * 0.02
        frame_start, frame_end = index * 160, (index + 1) * 160
        packets.append((arrival, build_rtp(0, sequence, frame_start, SSRC, payload)))
        sequence += 1
        for key, start, end in spans if events else []:
            if start < frame_end and frame_start < end + 160:  # sounding, or just released
                ended = frame_start >= end
                duration = min(frame_end, end) - start
                body = telephone_event_payload(DTMF_DIGITS.index(key), ended, 10, duration)
                for _ in range(3 if ended else 1):
                    packets.append((arrival, build_rtp(101, sequence, start, SSRC, body,
                                                       marker=frame_start <= start)))
                    sequence += 1
    return packets


def test_a_press_sent_both_ways_counts_once_and_its_reports_are_close() -> None:
    """Measures how far apart the event and the tone of one press are recognised, for every
    alignment of the key-down within a frame and short and long presses: well inside the
    DigitDeduplicator window, so that the press counts once."""
    gaps = []
    for lead in range(0, 160, 8):
        for tone_ms in (40, 60, 100, 250):
            rtp = session(telephone_event_pt=101)
            out = [e for at, data in keyed_both_ways([("7", tone_ms, 100)], lead_samples=lead)
                   for e in rtp.receive(data, PHONE, at)]
            assert [e.digit for e in out if isinstance(e, DigitEvent)] == ["7"], (lead, tone_ms)
            events = TelephoneEventReceiver(101)
            tones = InbandDtmfDetector(Codec.PCMU)
            seen = {}
            for at, data in keyed_both_ways([("7", tone_ms, 100)], lead_samples=lead):
                packet = parse_rtp(data)
                assert packet is not None
                reports = (events.receive(packet, at) if packet.payload_type == 101
                           else tones.feed(packet.payload, at))
                for report in reports:
                    seen.setdefault(report.source, report.at)
            assert set(seen) == {"rfc4733", "inband"}, (lead, tone_ms)
            gaps.append(seen["inband"] - seen["rfc4733"])
    assert min(gaps) >= 0 and max(gaps) <= 0.04 + 1e-9
    assert max(gaps) < DigitDeduplicator().window / 2


@pytest.mark.parametrize(("tone_ms", "pause_ms"), [(40, 40), (60, 60), (100, 100)])
def test_two_presses_of_one_key_sent_both_ways_count_twice(tone_ms: int, pause_ms: int) -> None:
    """Presses as close as a keypad makes them (ITU-T Q.24: 40 ms tone, 40 ms pause)."""
    rtp = session(telephone_event_pt=101)
    keyed = keyed_both_ways([("5", tone_ms, pause_ms), ("5", tone_ms, pause_ms),
                             ("9", tone_ms, 200)], lead_samples=37)
    out = [e for at, data in keyed for e in rtp.receive(data, PHONE, at)]
    assert [e.digit for e in out if isinstance(e, DigitEvent)] == ["5", "5", "9"]


def test_info_and_rfc4733_for_one_press() -> None:
    sender, rtp = session(), session()
    packets = sender.send_dtmf("9")
    out = rtp.receive(packets[0], PHONE, 10.0)
    assert out == [DigitEvent("9", "rfc4733", 10.0)]
    assert rtp.info_digit("9", 10.1) is None  # the same press, also sent by INFO
    assert rtp.info_digit("9", 10.5) == DigitEvent("9", "info", 10.5)  # a new press
    # INFO first, the RTP event a moment later
    assert rtp.info_digit("3", 11.0) == DigitEvent("3", "info", 11.0)
    assert [e for data in sender.send_dtmf("3") for e in rtp.receive(data, PHONE, 11.05)] == []
