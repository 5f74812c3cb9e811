"""SDP (RFC 4566): parse and build, and the RFC 3264 answer for one audio stream. Sans-IO.

Parsing is strict about the lines we use (v, o, c, t, m) and keeps everything else,
in order, so that a description passed through a B2BUA is rebuilt unchanged. It is
lenient where phones are known to stray: LF line ends, blank lines, trailing
whitespace, a missing s= or t= line (read as s=- and t=0 0).

Every offer passes `check_offer_destinations` before anything is sent to it: media goes
only to unicast IP literals on ports above 1023, so that an offer cannot aim our RTP (or a
callee's) at a broadcast or multicast group, at a service port, or at a host name (which
would be resolved, blocking, for every packet). Nothing here resolves a name. Our answer
carries only what we use: one t= line, the chosen codec and telephone-event, ptime and the
direction, so that its size does not grow with the offer's.
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, cast

from . import abnf

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: frozenset[str] = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))

# RFC 3264 §6.1: what the answerer says to each offered direction.
_ANSWER_DIRECTION: MappingProxyType[str, Direction] = MappingProxyType({
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
})

_TELEPHONE_EVENT = "telephone-event"
_DEFAULT_TELEPHONE_EVENTS = "0-15"
_LAST_DTMF_EVENT = 15  # RFC 4733 §3.2: 0-9, *, #, A-D
_ANSWER_PTIME = 20
_UNSPECIFIED_ADDRESSES = frozenset(("0.0.0.0", "::"))


class SdpError(ValueError):
    """The body is not a session description we can read."""


class DestinationRefused(SdpError):
    """An offer asks for media to go where we do not send it: answered 488 with a Warning
    of `warning_code` (RFC 3261 §20.43) that gives the reason."""

    def __init__(self, reason: str, warning_code: int = 399) -> None:
        super().__init__(reason)
        self.warning_code = warning_code


# RFC 3261 §20.43 warning codes
_WARN_NETWORK_PROTOCOL = 300  # Incompatible network protocol
_WARN_ADDRESS_FORMAT = 301  # Incompatible network address formats
_WARN_MULTICAST = 330  # Multicast not available
_WARN_OTHER = 399
_LOWEST_MEDIA_PORT = 1024  # 1-1023: the well-known ports of system services
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


@dataclass(slots=True, frozen=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1


# RFC 3551 table 4: audio payload types that need no rtpmap.
STATIC_AUDIO_PAYLOADS: MappingProxyType[int, RtpMap] = MappingProxyType({
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, 1), (3, "GSM", 8000, 1), (4, "G723", 8000, 1), (5, "DVI4", 8000, 1),
        (6, "DVI4", 16000, 1), (7, "LPC", 8000, 1), (8, "PCMA", 8000, 1), (9, "G722", 8000, 1),
        (10, "L16", 44100, 2), (11, "L16", 44100, 1), (12, "QCELP", 8000, 1),
        (13, "CN", 8000, 1), (14, "MPA", 90000, 1), (15, "G728", 8000, 1),
        (16, "DVI4", 11025, 1), (17, "DVI4", 22050, 1), (18, "G729", 8000, 1),
    )
})

Attribute = tuple[str, str | None]  # a=name:value, or a=name (value None)


@dataclass(slots=True)
class Origin:
    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str


@dataclass(slots=True)
class Connection:
    nettype: str
    addrtype: str
    address: str  # may carry /ttl/count for multicast, kept as written


@dataclass(slots=True)
class Timing:
    start: int
    stop: int
    repeats: list[str] = field(default_factory=list)  # the r= lines that follow, as written


def _attribute_values(attributes: list[Attribute], name: str) -> list[str]:
    return [value for key, value in attributes if key == name and value is not None]


def _own_direction(attributes: list[Attribute]) -> Direction | None:
    for name, value in attributes:
        if value is None and name in _DIRECTIONS:
            return cast(Direction, name)
    return None


@dataclass(slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    port_count: int | None = None  # m=audio 49170/2
    other_lines: list[tuple[str, str]] = field(default_factory=list)  # i=, b=, k=, unknown

    @property
    def rtpmap(self) -> dict[int, RtpMap]:
        """Payload type -> codec, from a=rtpmap and, for listed static types, RFC 3551.

        A malformed a=rtpmap is skipped: its payload type is then simply unknown.
        """
        maps: dict[int, RtpMap] = {}
        for value in _attribute_values(self.attributes, "rtpmap"):
            parsed = _parse_rtpmap(value)
            if parsed is not None:
                maps.setdefault(parsed.payload_type, parsed)
        if self.media == "audio":
            for fmt in self.formats:
                if abnf.is_number(fmt) and int(fmt) not in maps:
                    static = STATIC_AUDIO_PAYLOADS.get(int(fmt))
                    if static is not None:
                        maps[static.payload_type] = static
        return maps

    @property
    def fmtp(self) -> dict[int, str]:
        """Payload type -> format parameters (a=fmtp:<pt> <params>)."""
        params: dict[int, str] = {}
        for value in _attribute_values(self.attributes, "fmtp"):
            pt, _, text = value.partition(" ")
            if abnf.is_number(pt):
                params.setdefault(int(pt), text.strip())
        return params

    @property
    def ptime(self) -> int | None:
        for value in _attribute_values(self.attributes, "ptime"):
            text = value.strip()
            if abnf.is_number(text):
                return int(text)
        return None

    def direction(self, session: "SessionDescription | None" = None) -> Direction:
        """a=sendrecv/sendonly/recvonly/inactive; the media level overrides the session level."""
        own = _own_direction(self.attributes)
        if own is not None:
            return own
        return session.direction if session is not None else "sendrecv"


@dataclass(slots=True)
class SessionDescription:
    version: int
    origin: Origin
    session_name: str
    connection: Connection | None = None
    times: list[Timing] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)  # i u e p b z k, unknown

    @property
    def direction(self) -> Direction:
        """The session-level direction attribute, sendrecv when absent (RFC 3264 §5.1)."""
        return _own_direction(self.attributes) or "sendrecv"


def _parse_rtpmap(value: str) -> RtpMap | None:
    # a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    pt, _, spec = value.partition(" ")
    parts = spec.strip().split("/")
    if (not abnf.is_number(pt) or len(parts) not in (2, 3) or not parts[0]
            or not abnf.is_number(parts[1])):
        return None
    channels = 1
    if len(parts) == 3:
        if not abnf.is_number(parts[2]):
            return None
        channels = int(parts[2])
    return RtpMap(int(pt), parts[0], int(parts[1]), channels)


# --- parsing ---------------------------------------------------------------------------------


def _parse_int(text: str, what: str) -> int:
    if not abnf.is_number(text):
        raise SdpError(f"{what} is not a number: {text!r}")
    return int(text)


def _parse_origin(value: str) -> Origin:
    fields = value.split()
    if len(fields) != 6:
        raise SdpError(f"o= needs 6 fields: {value!r}")
    username, sess_id, sess_version, nettype, addrtype, address = fields
    return Origin(
        username, _parse_int(sess_id, "o= sess-id"), _parse_int(sess_version, "o= sess-version"),
        nettype, addrtype, address,
    )


def _parse_connection(value: str) -> Connection:
    fields = value.split()
    if len(fields) != 3:
        raise SdpError(f"c= needs 3 fields: {value!r}")
    return Connection(*fields)


def _parse_timing(value: str) -> Timing:
    fields = value.split()
    if len(fields) != 2:
        raise SdpError(f"t= needs 2 fields: {value!r}")
    return Timing(_parse_int(fields[0], "t= start"), _parse_int(fields[1], "t= stop"))


def _parse_media(value: str) -> MediaDescription:
    fields = value.split()
    if len(fields) < 3:
        raise SdpError(f"m= needs media, port, proto and formats: {value!r}")
    media, port_text, proto, *formats = fields
    port_part, slash, count_part = port_text.partition("/")
    port = _parse_int(port_part, "m= port")
    if port > 65535:
        raise SdpError(f"m= port out of range: {port}")
    port_count = _parse_int(count_part, "m= port count") if slash else None
    if not formats and port != 0:
        raise SdpError(f"m= line without formats: {value!r}")
    return MediaDescription(media, port, proto, formats, port_count=port_count)


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name:
        raise SdpError(f"a= without a name: {value!r}")
    return (name, rest) if colon else (name, None)


def _lines(body: bytes | str) -> list[str]:
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    return [line.rstrip(" \t\r") for line in text.split("\n") if line.strip(" \t\r")]


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Read a session description; raises SdpError when it is malformed."""
    lines = _lines(body)
    if not lines or not lines[0].startswith("v="):
        raise SdpError("the description does not start with v=")
    version = _parse_int(lines[0][2:], "v=")
    origin: Origin | None = None
    session_name: str | None = None
    session_connection: Connection | None = None
    times: list[Timing] = []
    attributes: list[Attribute] = []
    other_lines: list[tuple[str, str]] = []
    media_list: list[MediaDescription] = []
    media: MediaDescription | None = None

    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise SdpError(f"not a <type>=<value> line: {line!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            media = _parse_media(value)
            media_list.append(media)
        elif media is not None:
            if kind == "a":
                media.attributes.append(_parse_attribute(value))
            elif kind == "c":
                if media.connection is not None:
                    raise SdpError("two c= lines in one media description")
                media.connection = _parse_connection(value)
            elif kind in "vostrz":
                raise SdpError(f"{kind}= line inside a media description")
            else:
                media.other_lines.append((kind, value))
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        elif kind == "o":
            if origin is not None:
                raise SdpError("two o= lines")
            origin = _parse_origin(value)
        elif kind == "s":
            if session_name is not None:
                raise SdpError("two s= lines")
            session_name = value
        elif kind == "c":
            if session_connection is not None:
                raise SdpError("two session-level c= lines")
            session_connection = _parse_connection(value)
        elif kind == "t":
            times.append(_parse_timing(value))
        elif kind == "r":
            if not times:
                raise SdpError("r= line before any t= line")
            times[-1].repeats.append(value)
        elif kind == "v":
            raise SdpError("a second v= line")
        else:
            other_lines.append((kind, value))

    if origin is None:
        raise SdpError("no o= line")
    return SessionDescription(
        version=version,
        origin=origin,
        session_name="-" if session_name is None else session_name,
        connection=session_connection,
        times=times or [Timing(0, 0)],
        attributes=attributes,
        media=media_list,
        other_lines=other_lines,
    )


# --- building --------------------------------------------------------------------------------

# RFC 4566 §5 line order. Lines we keep as written are placed by these ranks around the
# ones we model; unknown letters go just before the a= lines.
_SESSION_RANK = {"i": 0, "u": 1, "e": 2, "p": 3, "b": 5, "z": 7, "k": 8}
_SESSION_CONNECTION_RANK = 4
_SESSION_TIMING_RANK = 6
_MEDIA_RANK = {"i": 0, "b": 2, "k": 3}
_MEDIA_CONNECTION_RANK = 1
_UNKNOWN_RANK = 9


def _format_connection(connection: Connection) -> str:
    return f"c={connection.nettype} {connection.addrtype} {connection.address}"


def _format_attribute(attribute: Attribute) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


def _ranked_lines(
    other_lines: list[tuple[str, str]], ranks: dict[str, int], lowest: int, highest: int
) -> list[str]:
    """The kept lines whose rank is in [lowest, highest), in their original order."""
    return [
        f"{kind}={value}"
        for kind, value in other_lines
        if lowest <= ranks.get(kind, _UNKNOWN_RANK) < highest
    ]


def build_sdp(desc: SessionDescription) -> bytes:
    """The description as CRLF-terminated lines in RFC 4566 order."""
    o = desc.origin
    lines = [
        f"v={desc.version}",
        f"o={o.username} {o.sess_id} {o.sess_version} {o.nettype} {o.addrtype} {o.address}",
        f"s={desc.session_name}",
    ]
    others = desc.other_lines
    lines += _ranked_lines(others, _SESSION_RANK, 0, _SESSION_CONNECTION_RANK)
    if desc.connection is not None:
        lines.append(_format_connection(desc.connection))
    lines += _ranked_lines(others, _SESSION_RANK, _SESSION_CONNECTION_RANK, _SESSION_TIMING_RANK)
    for timing in desc.times or [Timing(0, 0)]:
        lines.append(f"t={timing.start} {timing.stop}")
        lines += [f"r={repeat}" for repeat in timing.repeats]
    lines += _ranked_lines(others, _SESSION_RANK, _SESSION_TIMING_RANK, _UNKNOWN_RANK + 1)
    lines += [_format_attribute(attribute) for attribute in desc.attributes]
    for media in desc.media:
        port = f"{media.port}/{media.port_count}" if media.port_count is not None else media.port
        lines.append(" ".join([f"m={media.media}", str(port), media.proto, *media.formats]))
        lines += _ranked_lines(media.other_lines, _MEDIA_RANK, 0, _MEDIA_CONNECTION_RANK)
        if media.connection is not None:
            lines.append(_format_connection(media.connection))
        lines += _ranked_lines(media.other_lines, _MEDIA_RANK, _MEDIA_CONNECTION_RANK,
                               _UNKNOWN_RANK + 1)
        lines += [_format_attribute(attribute) for attribute in media.attributes]
    lines.append("")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


# --- offer/answer ----------------------------------------------------------------------------


def media_connection(media: MediaDescription, session: SessionDescription) -> Connection | None:
    """The connection that applies to a media description: its own, else the session's."""
    return media.connection if media.connection is not None else session.connection


def is_hold(media: MediaDescription, session: SessionDescription) -> bool:
    """Whether the offerer puts us on hold: it will not receive media from us.

    RFC 3264 §8.4 (sendonly, or inactive when it was already held) and the RFC 2543
    form, a connection address of 0.0.0.0.
    """
    connection = media_connection(media, session)
    if connection is not None and connection.address in _UNSPECIFIED_ADDRESSES:
        return True
    return media.direction(session) in ("sendonly", "inactive")


def check_offer_destinations(offer: SessionDescription, *, initial: bool,
                             signalling_host: str | None = None) -> None:
    """Raise DestinationRefused unless every offered stream (port not 0) names a destination
    media may be sent to: a c= line of network type IN with a unicast IP address literal of
    its address type, and a port of 1024 or above.

    Refused: host names (never resolved: say an IP address), multicast (330), the broadcast
    address 255.255.255.255, the unspecified address 0.0.0.0 or :: when ``initial`` (in a
    re-INVITE it is the RFC 2543 hold), ports 1-1023, and a loopback address when
    ``signalling_host`` (where the offer came from) is given and is not itself a loopback
    address. Call it for every offer, an initial INVITE's and each re-INVITE's."""
    for media in offer.media:
        if media.port == 0:
            continue  # a stream the offerer disables: nothing will be sent to it
        connection = media_connection(media, offer)
        if connection is None:
            raise DestinationRefused(f"the {media.media} stream has no c= line")
        _check_connection(connection, initial, signalling_host)
        if media.port < _LOWEST_MEDIA_PORT:
            raise DestinationRefused(f"media port {media.port} is a reserved port (below "
                                     f"{_LOWEST_MEDIA_PORT})")


def _check_connection(connection: Connection, initial: bool,
                      signalling_host: str | None) -> None:
    if connection.nettype != "IN":
        raise DestinationRefused(f"network type {_shown(connection.nettype)} is not IN",
                                 _WARN_NETWORK_PROTOCOL)
    if "/" in connection.address:  # /ttl or /count: only multicast addresses carry them
        raise DestinationRefused("multicast media is not available", _WARN_MULTICAST)
    try:
        address = ipaddress.ip_address(connection.address)
    except ValueError:
        raise DestinationRefused(f"c= address {_shown(connection.address)} is not an IP "
                                 "address (names are not resolved)", _WARN_ADDRESS_FORMAT) from None
    if connection.addrtype != f"IP{address.version}":
        raise DestinationRefused(f"c= address type {_shown(connection.addrtype)} does not "
                                 f"match {connection.address}", _WARN_ADDRESS_FORMAT)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    unicast = mapped or address  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d
    if unicast.is_multicast:
        raise DestinationRefused("multicast media is not available", _WARN_MULTICAST)
    if unicast == _LIMITED_BROADCAST:
        raise DestinationRefused(f"{connection.address} is a broadcast address")
    if unicast.is_unspecified and initial:
        raise DestinationRefused(f"{connection.address} in an initial offer gives no address "
                                 "to send media to")
    if unicast.is_loopback and signalling_host is not None and not _is_loopback(signalling_host):
        raise DestinationRefused(f"{connection.address} is a loopback address")


def _shown(text: str, limit: int = 40) -> str:
    """Offered text quoted in a reason (it goes back in a Warning header): printable ASCII,
    shortened."""
    shown = "".join(c if " " < c < "\x7f" else "?" for c in text[:limit])
    return f"'{shown}...'" if len(text) > limit else f"'{shown}'"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _rejected(offered: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its m= line with port 0; one format keeps the line
    # well-formed (RFC 4566 §5.14) without echoing an offer's list back.
    return MediaDescription(offered.media, 0, offered.proto, offered.formats[:1])


def _answered_events(offered: str | None) -> str | None:
    """The telephone-events we answer to an offered a=fmtp value: the DTMF events 0-15 it
    lists, as ranges ("0-15" when it names none, RFC 4733 §2.4.1); None if it lists none of
    them. Our answer never echoes the offer's text."""
    if offered is None or not offered.strip():
        return _DEFAULT_TELEPHONE_EVENTS
    events: set[int] = set()
    for item in offered.split(","):
        low, dash, high = item.strip().partition("-")
        if not abnf.is_number(low) or (dash and not abnf.is_number(high)):
            continue
        first, last = int(low), int(high) if dash else int(low)
        events.update(range(first, min(last, _LAST_DTMF_EVENT) + 1))
    ranges: list[str] = []
    for event in sorted(events):
        if ranges and event == int(ranges[-1].rpartition("-")[2]) + 1:
            ranges[-1] = f"{ranges[-1].partition('-')[0]}-{event}"
        else:
            ranges.append(str(event))
    return ",".join(ranges) or None


def _choose_formats(
    offered: MediaDescription, supported: Sequence[str]
) -> tuple[RtpMap, RtpMap | None] | None:
    """The first supported codec in the offer's order, and telephone-event/8000 if offered."""
    wanted = {name.upper() for name in supported}
    maps = offered.rtpmap
    codec: RtpMap | None = None
    events: RtpMap | None = None
    for fmt in offered.formats:
        if not abnf.is_number(fmt) or int(fmt) not in maps:
            continue
        candidate = maps[int(fmt)]
        if candidate.clock_rate != 8000 or candidate.channels != 1:
            continue
        name = candidate.encoding.upper()
        if codec is None and name in wanted:
            codec = candidate
        elif events is None and name == _TELEPHONE_EVENT.upper():
            events = candidate
    return None if codec is None else (codec, events)


def _address_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def answer_audio(
    offer: SessionDescription,
    local_address: str,
    local_port: int,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    *,
    session_id: int,
    session_version: int,
) -> SessionDescription | None:
    """Our answer taking the first usable audio stream; None if we share no codec (488).

    One codec is answered, the first of ``supported`` in the offer's preference order, so
    the media layer knows what it will receive; plus telephone-event/8000 when offered,
    with the DTMF events of the offer's list. Usable: RTP/AVP, port not 0, a common codec.
    Payload type numbers are the offerer's; every other m= line is answered with port 0,
    so the answer has as many m= lines as the offer. Nothing of the offer is echoed beyond
    that: one t= line (the offer's first, RFC 3264 §6), no repeat times, no attributes.
    """
    answer_media: list[MediaDescription] = []
    accepted = False
    for offered in offer.media:
        if accepted or offered.media != "audio" or offered.port == 0 or offered.proto != "RTP/AVP":
            answer_media.append(_rejected(offered))
            continue
        chosen = _choose_formats(offered, supported)
        if chosen is None:
            answer_media.append(_rejected(offered))
            continue
        codec, events = chosen
        formats = [str(codec.payload_type)]
        attributes: list[Attribute] = [
            ("rtpmap", f"{codec.payload_type} {codec.encoding}/{codec.clock_rate}")
        ]
        answered_events = (None if events is None
                           else _answered_events(offered.fmtp.get(events.payload_type)))
        if events is not None and answered_events is not None:
            formats.append(str(events.payload_type))
            attributes += [
                ("rtpmap", f"{events.payload_type} {events.encoding}/{events.clock_rate}"),
                ("fmtp", f"{events.payload_type} {answered_events}"),
            ]
        attributes += [
            ("ptime", str(_ANSWER_PTIME)),
            (_ANSWER_DIRECTION[offered.direction(offer)], None),
        ]
        answer_media.append(
            MediaDescription("audio", local_port, "RTP/AVP", formats, attributes=attributes)
        )
        accepted = True
    if not accepted:
        return None
    address_type = _address_type(local_address)
    return SessionDescription(
        version=0,
        origin=Origin("-", session_id, session_version, "IN", address_type, local_address),
        session_name="-",
        connection=Connection("IN", address_type, local_address),
        times=[Timing(timing.start, timing.stop) for timing in offer.times[:1]],
        media=answer_media,
    )


@dataclass(slots=True, frozen=True)
class NegotiatedAudio:
    """What the media layer needs from an offer and our answer to it (we are the answerer)."""

    remote_address: str
    remote_port: int
    payload_type: int
    codec: str  # encoding name, upper case: "PCMU", "PCMA"
    telephone_event: int | None  # payload type of RFC 4733 events, None if not negotiated
    direction: Direction  # ours, as the answer says it

    @property
    def sends(self) -> bool:
        """Whether we may send RTP: our direction allows it and the peer gave an address."""
        return (
            self.direction in ("sendrecv", "sendonly")
            and self.remote_port != 0
            and self.remote_address not in _UNSPECIFIED_ADDRESSES
        )

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def negotiated_audio(offer: SessionDescription, answer: SessionDescription) -> NegotiatedAudio:
    """The audio stream agreed by ``answer`` to ``offer``; SdpError if none was accepted."""
    for index, answered in enumerate(answer.media):
        if answered.media != "audio" or answered.port == 0:
            continue
        if index >= len(offer.media):
            raise SdpError("the answer has more m= lines than the offer")
        offered = offer.media[index]
        connection = media_connection(offered, offer)
        if connection is None:
            raise SdpError("the offered audio stream has no c= line")
        maps = answered.rtpmap
        codec: RtpMap | None = None
        events: int | None = None
        for fmt in answered.formats:
            mapped = maps.get(int(fmt)) if abnf.is_number(fmt) else None
            if mapped is None:
                continue
            if mapped.encoding.lower() == _TELEPHONE_EVENT:
                events = mapped.payload_type if events is None else events
            elif codec is None:
                codec = mapped
        if codec is None:
            raise SdpError("the answered audio stream has no known codec")
        return NegotiatedAudio(
            remote_address=connection.address,
            remote_port=offered.port,
            payload_type=codec.payload_type,
            codec=codec.encoding.upper(),
            telephone_event=events,
            direction=answered.direction(answer),
        )
    raise SdpError("no audio stream was accepted")
