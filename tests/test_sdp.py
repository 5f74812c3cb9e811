"""SDP parse/build and the RFC 3264 audio answer, against offers from the peers we test with."""

import re
from collections.abc import Sequence

import pytest

from softswitch.sip.sdp import (
    Connection,
    DestinationRefused,
    MediaDescription,
    NegotiatedAudio,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    answer_audio,
    build_sdp,
    check_offer_destinations,
    is_hold,
    negotiated_audio,
    parse_sdp,
)

from .conftest import RFC4475, rfc4475_message


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# The body of /work/shared/peers/sipp/uac_dtmf.xml with SIPp's keywords filled in.
SIPP_OFFER = crlf("""
v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
""")

# What linphonec 5.1 offers with the codecs of /work/shared/peers/linphone/linphonerc.
LINPHONE_OFFER = crlf("""
v=0
o=09011110001 3129 1617 IN IP4 192.168.1.20
s=Talk
c=IN IP4 192.168.1.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 17100 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* ccm fir
""")

# What pjsua (pjproject 2.15) offers by default: PCMA before PCMU, events 0-16.
PJSUA_OFFER = crlf("""
v=0
o=- 3920549418 3920549418 IN IP4 10.0.0.5
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 96 9 8 0 101 102
c=IN IP4 10.0.0.5
b=AS:64000
b=TIAS:64000
a=rtcp:4001 IN IP4 10.0.0.5
a=sendrecv
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/48000
a=fmtp:101 0-16
a=rtpmap:102 telephone-event/8000
a=fmtp:102 0-16
a=ssrc:1543806353 cname:5a2f4cc67b9d6ef1
""")


def answer(body: bytes, supported: Sequence[str] = ("PCMU", "PCMA")) -> SessionDescription | None:
    return answer_audio(
        parse_sdp(body), "192.0.2.10", 20000, supported, session_id=7, session_version=8
    )


# --- parsing ---------------------------------------------------------------------------------


def test_parse_sipp_offer() -> None:
    desc = parse_sdp(SIPP_OFFER)
    assert desc.version == 0
    assert desc.origin == Origin("-", 1, 1, "IN", "IP4", "127.0.0.1")
    assert desc.session_name == "-"
    assert desc.connection == Connection("IN", "IP4", "127.0.0.1")
    assert desc.times == [Timing(0, 0)]
    assert desc.attributes == []
    [audio] = desc.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio", 6000, "RTP/AVP", ["0", "101"]
    )
    assert audio.connection is None
    assert audio.rtpmap == {
        0: RtpMap(0, "PCMU", 8000, 1),
        101: RtpMap(101, "telephone-event", 8000, 1),
    }
    assert audio.fmtp == {101: "0-15"}
    assert audio.ptime == 20
    assert audio.direction(desc) == "sendrecv"


def test_parse_linphone_offer_helpers() -> None:
    desc = parse_sdp(LINPHONE_OFFER)
    audio, video = desc.media
    maps = audio.rtpmap
    assert maps[96] == RtpMap(96, "opus", 48000, 2)
    assert maps[0] == RtpMap(0, "PCMU", 8000, 1)  # static, no rtpmap line
    assert maps[8] == RtpMap(8, "PCMA", 8000, 1)
    assert maps[18] == RtpMap(18, "G729", 8000, 1)
    assert maps[100] == RtpMap(100, "telephone-event", 8000, 1)
    assert audio.fmtp == {96: "useinbandfec=1", 97: "vbr=on", 98: "vbr=on", 18: "annexb=yes"}
    assert audio.ptime is None
    assert ("rtcp-fb", "* trr-int 1000") in audio.attributes
    assert desc.attributes[1] == ("record", "off")
    assert video.media == "video"
    assert video.rtpmap == {
        96: RtpMap(96, "VP8", 90000, 1), 97: RtpMap(97, "H264", 90000, 1)
    }


def test_parse_pjsua_offer_keeps_bandwidth_and_media_connection() -> None:
    desc = parse_sdp(PJSUA_OFFER)
    assert desc.connection is None
    assert desc.other_lines == [("b", "AS:84")]
    [audio] = desc.media
    assert audio.connection == Connection("IN", "IP4", "10.0.0.5")
    assert audio.other_lines == [("b", "AS:64000"), ("b", "TIAS:64000")]
    assert audio.attributes[0] == ("rtcp", "4001 IN IP4 10.0.0.5")
    assert audio.attributes[1] == ("sendrecv", None)


def test_lf_line_ends_trailing_space_and_blank_lines_accepted() -> None:
    lf = SIPP_OFFER.replace(b"\r\n", b"\n").replace(b"a=ptime:20", b"a=ptime:20  \n\n")
    assert parse_sdp(lf) == parse_sdp(SIPP_OFFER)
    assert parse_sdp(SIPP_OFFER.decode()) == parse_sdp(SIPP_OFFER)


def test_direction_media_level_overrides_session_level() -> None:
    desc = parse_sdp(crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
a=recvonly
m=audio 1000 RTP/AVP 0
m=audio 1002 RTP/AVP 0
a=inactive
"""))
    first, second = desc.media
    assert desc.direction == "recvonly"
    assert first.direction(desc) == "recvonly"
    assert first.direction() == "sendrecv"
    assert second.direction(desc) == "inactive"


def test_malformed_rtpmap_is_skipped_not_fatal() -> None:
    media = MediaDescription(
        "audio", 1000, "RTP/AVP", ["96", "97", "98", "0"],
        attributes=[("rtpmap", "96 opus"), ("rtpmap", "x PCMU/8000"), ("rtpmap", "97 L16/8k"),
                    ("rtpmap", "98 L16/8000/two"), ("rtpmap", "0 PCMA/8000")],
    )
    # 0 is mapped by its own (odd) rtpmap line, which wins over the static table.
    assert media.rtpmap == {0: RtpMap(0, "PCMA", 8000, 1)}


def _rfc4475_sdp_bodies() -> list[tuple[str, bytes]]:
    """Bodies of the RFC 4475 messages that carry SDP, framed by their Content-Length."""
    bodies = []
    for path in sorted(RFC4475.glob("*.dat")):
        head, _, body = rfc4475_message(path.stem).partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(-?\d+)", head)
        if length is not None and 0 <= int(length.group(1)) <= len(body):
            body = body[: int(length.group(1))]  # dblreq's second message is not its body
        if b"v=0" in body:
            bodies.append((path.stem, body))
    return bodies


RFC4475_SDP = _rfc4475_sdp_bodies()


def test_rfc4475_sdp_corpus_found() -> None:
    # 20 files contain "v=0"; in dblreq.dat it is in the trailing second message.
    assert len(RFC4475_SDP) == 19


@pytest.mark.parametrize(("name", "body"), RFC4475_SDP, ids=[n for n, _ in RFC4475_SDP])
def test_rfc4475_bodies_parse(name: str, body: bytes) -> None:
    desc = parse_sdp(body)
    assert desc.origin.username == "mhandley"
    assert desc.origin.sess_id == 29739
    audio = desc.media[0]
    assert (audio.media, audio.port, audio.formats[0]) == ("audio", 49217, "0")
    assert audio.rtpmap[0] == RtpMap(0, "PCMU", 8000, 1)
    assert parse_sdp(build_sdp(desc)) == desc
    if len(desc.media) > 1:  # a=rtpmap:31 LPC has no clock rate: unknown, not an error
        video = desc.media[1]
        assert (video.media, video.port, video.formats) == ("video", 3227, ["31"])
        assert video.attributes == [("rtpmap", "31 LPC")]
        assert video.rtpmap == {}
    answered = answer_audio(desc, "192.0.2.10", 20000, session_id=1, session_version=1)
    assert answered is not None
    assert answered.media[0].formats == ["0"]
    assert [m.port for m in answered.media[1:]] == [0] * (len(desc.media) - 1)


def test_rfc4475_mismatch02_body_lacks_s_and_t_lines() -> None:
    desc = dict(RFC4475_SDP)["mismatch02"]
    parsed = parse_sdp(desc)
    assert parsed.session_name == "-"
    assert parsed.times == [Timing(0, 0)]
    assert b"\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio" in build_sdp(parsed)


def test_dblreq_trailing_message_sdp_is_malformed() -> None:
    # "m =video" in the trailing INVITE of dblreq.dat is not a <type>=<value> line.
    raw = rfc4475_message("dblreq")
    trailing = raw[raw.index(b"v=0"):]
    with pytest.raises(SdpError, match="m =video"):
        parse_sdp(trailing)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "start with v="),
        ("o=- 1 1 IN IP4 h\ns=-\n", "start with v="),
        ("s=-\nv=0\no=- 1 1 IN IP4 h\n", "start with v="),
        ("v=zero\no=- 1 1 IN IP4 h\n", "v= is not a number"),
        ("v=0\ns=-\nt=0 0\n", "no o= line"),
        ("v=0\no=- 1 1 IN IP4\n", "o= needs 6 fields"),
        ("v=0\no=- one 1 IN IP4 h\n", "sess-id"),
        ("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\n", "two o= lines"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4\n", "c= needs 3 fields"),
        ("v=0\no=- 1 1 IN IP4 h\nt=0\n", "t= needs 2 fields"),
        ("v=0\no=- 1 1 IN IP4 h\nr=7d 1h 0 25h\n", "r= line before any t="),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 49170 RTP/AVP\n", "without formats"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio port RTP/AVP 0\n", "port is not a number"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 70000 RTP/AVP 0\n", "out of range"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 49170\n", "m= needs"),
        ("v=0\no=- 1 1 IN IP4 h\nm =audio 49170 RTP/AVP 0\n", "not a <type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 h\nmedia\n", "not a <type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 h\nM=audio 1 RTP/AVP 0\n", "not a <type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 1 RTP/AVP 0\nt=0 0\n", "inside a media"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 1 RTP/AVP 0\nc=IN IP4 a\nc=IN IP4 b\n", "two c="),
        ("v=0\no=- 1 1 IN IP4 h\na=:x\n", "a= without a name"),
    ],
)
def test_malformed_raises(body: str, message: str) -> None:
    with pytest.raises(SdpError, match=re.escape(message)):
        parse_sdp(body)


def test_rejected_stream_may_have_no_formats() -> None:
    desc = parse_sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=video 0 RTP/AVP\n")
    assert desc.media[0].formats == []


# --- building --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [SIPP_OFFER, LINPHONE_OFFER, PJSUA_OFFER])
def test_round_trip_is_byte_exact(body: bytes) -> None:
    assert build_sdp(parse_sdp(body)) == body


def test_round_trip_keeps_unknown_lines_in_rfc_order() -> None:
    body = crlf("""
v=0
o=alice 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
p=+1 617 555-6011
c=IN IP4 224.2.17.12/127
b=CT:128
t=2873397496 2873404696
r=7d 1h 0 25h
t=3034423619 3042462419
z=2882844526 -1h 2898848070 0
k=prompt
x=an unknown line type
a=recvonly
a=tool:sdp ü
m=audio 49170/2 RTP/AVP 0
i=voice
c=IN IP4 224.2.17.12/127
b=AS:64
k=prompt
y=another unknown
a=quality:10
m=application 32416 udp wb
a=orient:portrait
""")
    desc = parse_sdp(body)
    assert desc.times == [Timing(2873397496, 2873404696, ["7d 1h 0 25h"]),
                          Timing(3034423619, 3042462419)]
    assert desc.media[0].port_count == 2
    assert desc.media[0].other_lines == [("i", "voice"), ("b", "AS:64"), ("k", "prompt"),
                                         ("y", "another unknown")]
    assert ("x", "an unknown line type") in desc.other_lines
    assert desc.attributes[1] == ("tool", "sdp ü")
    assert build_sdp(desc) == body


def test_build_from_dataclasses() -> None:
    desc = SessionDescription(
        version=0,
        origin=Origin("-", 5, 6, "IN", "IP4", "192.0.2.1"),
        session_name="-",
        connection=Connection("IN", "IP4", "192.0.2.1"),
        media=[MediaDescription("audio", 4000, "RTP/AVP", ["8"], attributes=[("sendonly", None)])],
    )
    assert build_sdp(desc) == crlf("""
v=0
o=- 5 6 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 8
a=sendonly
""")


# --- offer/answer ----------------------------------------------------------------------------


def test_answer_to_sipp() -> None:
    answered = answer(SIPP_OFFER)
    assert answered is not None
    assert build_sdp(answered) == crlf("""
v=0
o=- 7 8 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 20000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
""")
    assert negotiated_audio(parse_sdp(SIPP_OFFER), answered) == NegotiatedAudio(
        remote_address="127.0.0.1", remote_port=6000, payload_type=0, codec="PCMU",
        telephone_event=101, direction="sendrecv",
    )


def test_answer_to_linphone_picks_pcmu_and_8k_events_and_rejects_video() -> None:
    offer = parse_sdp(LINPHONE_OFFER)
    answered = answer(LINPHONE_OFFER)
    assert answered is not None
    audio, video = answered.media
    assert audio.formats == ["0", "100"]
    assert audio.rtpmap == {
        0: RtpMap(0, "PCMU", 8000, 1), 100: RtpMap(100, "telephone-event", 8000, 1)
    }
    assert audio.fmtp == {100: "0-15"}  # none offered: the RFC 4733 default set
    assert audio.ptime == 20
    assert (video.media, video.port, video.proto, video.formats) == (
        "video", 0, "RTP/AVP", ["96"]  # one format keeps the line well-formed
    )
    assert video.attributes == []
    negotiated = negotiated_audio(offer, answered)
    assert negotiated == NegotiatedAudio("192.168.1.20", 17100, 0, "PCMU", 100, "sendrecv")
    assert negotiated.sends and negotiated.receives


def test_answer_follows_offer_preference_pjsua_pcma() -> None:
    offer = parse_sdp(PJSUA_OFFER)
    answered = answer(PJSUA_OFFER)
    assert answered is not None
    [audio] = answered.media
    assert audio.formats == ["8", "102"]
    assert audio.fmtp == {102: "0-15"}  # of the offer's 0-16, the DTMF events
    negotiated = negotiated_audio(offer, answered)
    assert (negotiated.remote_address, negotiated.remote_port) == ("10.0.0.5", 4000)
    assert (negotiated.payload_type, negotiated.codec, negotiated.telephone_event) == (
        8, "PCMA", 102
    )
    pcmu_only = answer(PJSUA_OFFER, supported=("pcmu",))
    assert pcmu_only is not None
    assert pcmu_only.media[0].formats == ["0", "102"]


def test_answer_without_telephone_event_offer() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 1000 RTP/AVP 8 101
a=rtpmap:101 telephone-event/16000
""")
    answered = answer(body)
    assert answered is not None
    assert answered.media[0].formats == ["8"]
    assert answered.media[0].fmtp == {}
    negotiated = negotiated_audio(parse_sdp(body), answered)
    assert negotiated.telephone_event is None


HOLD_OFFER = crlf("""
v=0
o=- 1 2 IN IP4 0.0.0.0
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendonly
""")


def test_hold_offer_detected_and_answered_recvonly() -> None:
    offer = parse_sdp(HOLD_OFFER)
    assert is_hold(offer.media[0], offer)
    answered = answer(HOLD_OFFER)
    assert answered is not None
    assert answered.media[0].direction(answered) == "recvonly"
    assert ("recvonly", None) in answered.media[0].attributes
    negotiated = negotiated_audio(offer, answered)
    assert negotiated.direction == "recvonly"
    assert not negotiated.sends
    assert negotiated.receives


@pytest.mark.parametrize(
    ("connection", "direction", "held", "answered_direction", "sends"),
    [
        ("192.0.2.1", "sendrecv", False, "sendrecv", True),
        ("192.0.2.1", "sendonly", True, "recvonly", False),
        ("192.0.2.1", "recvonly", False, "sendonly", True),
        ("192.0.2.1", "inactive", True, "inactive", False),
        ("0.0.0.0", "sendrecv", True, "sendrecv", False),  # RFC 2543 hold
    ],
)
def test_direction_answers(
    connection: str, direction: str, held: bool, answered_direction: str, sends: bool
) -> None:
    body = crlf(f"""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 {connection}
t=0 0
m=audio 6000 RTP/AVP 0
a={direction}
""")
    offer = parse_sdp(body)
    assert is_hold(offer.media[0], offer) is held
    answered = answer(body)
    assert answered is not None
    negotiated = negotiated_audio(offer, answered)
    assert negotiated.direction == answered_direction
    assert negotiated.sends is sends


def test_session_level_sendonly_is_hold() -> None:
    offer = parse_sdp(SIPP_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n"))
    assert is_hold(offer.media[0], offer)
    answered = answer_audio(offer, "192.0.2.10", 20000, session_id=1, session_version=1)
    assert answered is not None
    assert answered.media[0].direction(answered) == "recvonly"


def test_no_common_codec_is_none() -> None:
    assert answer(crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 6000 RTP/AVP 96 18 101
a=rtpmap:96 opus/48000/2
a=rtpmap:101 telephone-event/8000
""")) is None
    assert answer(SIPP_OFFER, supported=("PCMA",)) is None


@pytest.mark.parametrize(
    "media_line",
    ["m=audio 6000 RTP/SAVP 0", "m=audio 0 RTP/AVP 0", "m=video 6000 RTP/AVP 0",
     "m=audio 6000 RTP/AVP 0/8000"],
)
def test_unusable_streams_are_none(media_line: str) -> None:
    body = f"v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n{media_line}\n"
    assert answer(body.encode()) is None


def test_first_usable_audio_stream_is_taken_and_m_lines_kept() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 5000 RTP/SAVP 0
m=audio 6000 RTP/AVP 8
c=IN IP4 192.0.2.99
m=audio 7000 RTP/AVP 0
""")
    offer = parse_sdp(body)
    answered = answer(body)
    assert answered is not None
    assert [(m.port, m.proto, m.formats) for m in answered.media] == [
        (0, "RTP/SAVP", ["0"]), (20000, "RTP/AVP", ["8"]), (0, "RTP/AVP", ["0"])
    ]
    negotiated = negotiated_audio(offer, answered)
    assert (negotiated.remote_address, negotiated.remote_port, negotiated.codec) == (
        "192.0.2.99", 6000, "PCMA"
    )


def test_answer_ipv6_and_copies_offer_timing() -> None:
    offer = parse_sdp(SIPP_OFFER.replace(b"t=0 0", b"t=3034423619 3042462419"))
    answered = answer_audio(offer, "2001:db8::10", 20000, session_id=1, session_version=2)
    assert answered is not None
    assert answered.origin == Origin("-", 1, 2, "IN", "IP6", "2001:db8::10")
    assert answered.connection == Connection("IN", "IP6", "2001:db8::10")
    assert answered.times == [Timing(3034423619, 3042462419)]


def test_answer_round_trips_through_build() -> None:
    answered = answer(LINPHONE_OFFER)
    assert answered is not None
    assert parse_sdp(build_sdp(answered)) == answered


def test_negotiated_audio_errors() -> None:
    offer = parse_sdp(SIPP_OFFER)
    rejected = parse_sdp(SIPP_OFFER.replace(b"m=audio 6000", b"m=audio 0"))
    with pytest.raises(SdpError, match="no audio stream was accepted"):
        negotiated_audio(offer, rejected)
    no_connection = parse_sdp(SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1\r\n", b""))
    answered = answer(SIPP_OFFER)
    assert answered is not None
    with pytest.raises(SdpError, match="no c= line"):
        negotiated_audio(no_connection, answered)


# --- destinations and the size of the answer ---------------------------------------------------


def offer_to(address: str, port: int = 6000, addrtype: str = "IP4") -> SessionDescription:
    return parse_sdp(crlf(f"""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN {addrtype} {address}
t=0 0
m=audio {port} RTP/AVP 0
"""))


@pytest.mark.parametrize(("address", "port", "addrtype", "code", "reason"), [
    ("255.255.255.255", 6000, "IP4", 399, "broadcast"),
    ("224.0.0.1", 6000, "IP4", 330, "multicast"),
    ("239.1.2.3/127", 6000, "IP4", 330, "multicast"),
    ("ff02::1", 6000, "IP6", 330, "multicast"),
    ("::ffff:255.255.255.255", 6000, "IP6", 399, "broadcast"),
    ("0.0.0.0", 6000, "IP4", 399, "initial offer"),
    ("::", 6000, "IP6", 399, "initial offer"),
    ("192.0.2.10", 1, "IP4", 399, "reserved port"),
    ("192.0.2.10", 1023, "IP4", 399, "reserved port"),
    ("phone.example.com", 6000, "IP4", 301, "not an IP address"),
    ("no-such-host.invalid", 6000, "IP4", 301, "names are not resolved"),
    ("010.0.0.1", 6000, "IP4", 301, "not an IP address"),
    ("\u00e9" + "x" * 500, 6000, "IP4", 301, r"^c= address '\?x{39}\.\.\.' is not"),
    ("2001:db8::1", 6000, "IP4", 301, "does not match"),
    ("192.0.2.10", 6000, "IP6", 301, "does not match"),
])
def test_refused_destinations(address: str, port: int, addrtype: str, code: int,
                              reason: str) -> None:
    with pytest.raises(DestinationRefused, match=reason) as refused:
        check_offer_destinations(offer_to(address, port, addrtype), initial=True)
    assert refused.value.warning_code == code
    assert isinstance(refused.value, SdpError)


@pytest.mark.parametrize(("address", "port", "addrtype"), [
    ("192.0.2.10", 1024, "IP4"), ("10.1.2.3", 65535, "IP4"), ("2001:db8::10", 4000, "IP6"),
    ("fe80::1%eth0", 4000, "IP6"), ("::ffff:192.0.2.10", 4000, "IP6"),
])
def test_accepted_destinations(address: str, port: int, addrtype: str) -> None:
    check_offer_destinations(offer_to(address, port, addrtype), initial=True)


def test_unspecified_address_in_a_reinvite_is_hold() -> None:
    check_offer_destinations(offer_to("0.0.0.0"), initial=False)
    check_offer_destinations(offer_to("::", addrtype="IP6"), initial=False)
    with pytest.raises(DestinationRefused, match="broadcast"):
        check_offer_destinations(offer_to("255.255.255.255"), initial=False)


def test_loopback_only_from_a_loopback_caller() -> None:
    check_offer_destinations(offer_to("127.0.0.1"), initial=True, signalling_host="127.0.0.5")
    check_offer_destinations(offer_to("::1", addrtype="IP6"), initial=True,
                             signalling_host="[::1]")
    with pytest.raises(DestinationRefused, match="loopback"):
        check_offer_destinations(offer_to("127.0.0.1"), initial=True,
                                 signalling_host="203.0.113.5")


def test_every_active_stream_is_checked_and_disabled_ones_are_not() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 6000 RTP/AVP 0
m=video 0 RTP/AVP 31
c=IN IP4 255.255.255.255
m=video 6002 RTP/AVP 31
c=IN IP4 camera.example.com
""")
    with pytest.raises(DestinationRefused, match="camera.example.com"):
        check_offer_destinations(parse_sdp(body), initial=True)
    check_offer_destinations(parse_sdp(body.replace(b"m=video 6002", b"m=video 0")),
                             initial=True)
    no_connection = parse_sdp(SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1\r\n", b""))
    with pytest.raises(DestinationRefused, match="no c= line"):
        check_offer_destinations(no_connection, initial=True)
    with pytest.raises(DestinationRefused, match="network type 'ATM' is not IN"):
        check_offer_destinations(parse_sdp(SIPP_OFFER.replace(b"c=IN", b"c=ATM")),
                                 initial=True)


@pytest.mark.parametrize(("offered", "answered"), [
    (None, "0-15"), ("", "0-15"), ("0-15", "0-15"), ("0-16", "0-15"), ("0-255", "0-15"),
    ("0-11", "0-11"), ("0,1,2,3,10,11", "0-3,10-11"), ("16-32", None), ("x,y-z,5", "5"),
    ("11,0-9", "0-9,11"), ("1-0", None), ("3-3", "3"),
])
def test_answered_telephone_events(offered: str | None, answered: str | None) -> None:
    fmtp = "" if offered is None else f"a=fmtp:101 {offered}\n"
    body = crlf(f"""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
{fmtp}""")
    answer_ = answer(body)
    assert answer_ is not None
    [audio] = answer_.media
    if answered is None:  # none of the DTMF events: telephone-event is not negotiated
        assert audio.formats == ["0"] and audio.fmtp == {}
    else:
        assert audio.formats == ["0", "101"] and audio.fmtp == {101: answered}


def test_a_huge_offer_gets_a_small_answer() -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.10"]
    lines += [f"t={3034423619 + i} {3042462419 + i}" for i in range(1000)]
    lines += ["r=7d 1h 0 25h"] + [f"a=session-{i}:{'x' * 50}" for i in range(100)]
    lines += ["m=audio 6000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000",
              "a=fmtp:101 " + ",".join(["0-15"] * 4000)]
    lines += [f"a=candidate:{i} 1 UDP 1 192.0.2.10 {7000 + i} typ host" for i in range(100)]
    lines += ["m=video 6002 RTP/AVP " + " ".join(str(pt) for pt in range(96, 128))]
    lines += [f"a=rtpmap:{pt} H264/90000" for pt in range(96, 128)]
    body = ("\r\n".join(lines) + "\r\n").encode()
    assert len(body) > 50_000
    answered = answer(body)
    assert answered is not None
    built = build_sdp(answered)
    assert len(built) < 300
    assert built.count(b"t=") == 1 and b"r=" not in built
    assert b"a=fmtp:101 0-15\r\n" in built and b"m=video 0 RTP/AVP 96\r\n" in built
