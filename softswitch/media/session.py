"""One call leg's RTP stream, sans-IO: bytes and time in, packets and events out.

The owner (the asyncio endpoint) feeds every datagram from the leg's port to `receive()` and
sends what `next_frame()` / `send_dtmf()` return to `session.remote`. The outgoing clock is not
here: one shared 20 ms tick calls `next_frame()` (or `skip_frame()`) for every session.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, replace

from .dtmf import (
    DTMF_DIGITS,
    DigitDeduplicator,
    DigitEvent,
    InbandDtmfDetector,
    TelephoneEventReceiver,
    telephone_event_payload,
)
from .g711 import Codec
from .rtp import RtpPacket, build_rtcp_sr, build_rtp, parse_rtp

Address = tuple[str, int]
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz
_STATIC_CODECS = {0: Codec.PCMU, 8: Codec.PCMA}
# RFC 3550 A.1: a sequence jump beyond these is a restarted sender, not loss or reordering
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100
_END_RETRANSMISSIONS = 3  # RFC 4733 §2.5.1.4


@dataclass(slots=True, frozen=True)
class AudioFrame:
    payload: bytes  # in the session's codec
    sequence: int
    timestamp: int
    marker: bool
    at: float


@dataclass(slots=True, frozen=True)
class SourceRejected:
    """RTP from a host the session does not accept (see `RtpSession`): reported for the first
    such packet of the session only, so that the owner logs it once; the others are counted in
    `RtpStats.packets_rejected`."""

    source: Address
    at: float


@dataclass(slots=True)
class RtpStats:
    packets_sent: int = 0
    octets_sent: int = 0  # payload octets, as RTCP counts them
    packets_received: int = 0  # accepted RTP packets, duplicates included
    octets_received: int = 0
    packets_lost: int = 0  # expected minus received (RFC 3550 A.3), never negative
    packets_discarded: int = 0  # not RTP, RTCP, or a stray stream from an accepted host
    packets_rejected: int = 0  # RTP from a host the session does not accept


@dataclass(slots=True)
class _SequenceTracker:
    """Expected-packet accounting for one incoming SSRC (RFC 3550 A.1, simplified: a jump
    beyond the dropout limit restarts the count at once instead of after two packets)."""

    first: int  # extended sequence numbers: they keep counting past 65535
    highest: int
    received: int = 1
    lost_before_restart: int = 0

    @property
    def lost(self) -> int:
        return self.lost_before_restart + max(0, self.highest - self.first + 1 - self.received)

    def update(self, sequence: int) -> None:
        delta = (sequence - self.highest) & 0xFFFF
        if 0 < delta < _MAX_DROPOUT:
            self.highest += delta
        elif 0 < delta < 0x10000 - _MAX_MISORDER:
            self.lost_before_restart = self.lost
            self.first = self.highest = sequence
            self.received = 0
        # else: a duplicate or a late packet, counted as received only
        self.received += 1


class RtpSession:
    """The RTP of one call leg with G.711 audio and optional RFC 4733 telephone-events.

    Accepted sources: RTP is taken only from the host the SDP gives (`remote`) or, for a phone
    behind NAT, from the host the caller's signalling came from (`signalling_host`, the IP the
    INVITE came from), on any port. Anything else is discarded and counted, and the first such
    packet is reported (`SourceRejected`): otherwise whoever sends first, from anywhere, could
    take the call over, injecting keys (a PIN) and receiving our audio. A spoofed source of
    an accepted host can still inject; it receives nothing.

    Symmetric RTP (for phones behind NAT): the first valid RTP packet from an accepted host
    latches the session to its source address, and from then on audio is sent there, whatever
    the SDP said. Later packets from another address are dropped, unless they carry the SSRC
    of the latched stream (the same phone after a NAT rebinding), which moves the latch.
    `set_remote()` (new SDP, e.g. a re-INVITE) unlatches. With `symmetric=False` the SDP
    address is kept.

    A new SSRC from the accepted address is a new stream (a re-INVITE, a transfer upstream):
    sequence accounting and telephone-event memory start over.

    Digits: RFC 4733 events when `telephone_event_pt` is set, and, for PCMU/PCMA, in-band tones
    in the received audio whether or not telephone-event was negotiated (pyVoIP and many
    gateways offer it and still send tones). SIP INFO digits enter via `info_digit()`; all
    three pass one DigitDeduplicator, so a press that one phone reports two ways (an event and
    its tone leaking into the audio) comes out once.
    """

    __slots__ = (
        "local_ssrc", "payload_type", "telephone_event_pt", "codec", "remote", "symmetric",
        "_signalling_host", "_accepted_hosts", "_rejection_reported", "_latched", "_sequence",
        "_timestamp", "_talkspurt", "_stats", "_remote_ssrc", "_tracker", "_events", "_inband",
        "_digits",
    )

    def __init__(self, local_ssrc: int, payload_type: int, telephone_event_pt: int | None,
                 remote: Address | None, symmetric: bool = True, *,
                 codec: Codec | None = None, signalling_host: str | None = None,
                 initial_sequence: int | None = None,
                 initial_timestamp: int | None = None) -> None:
        """`codec` names the audio codec when `payload_type` is not the static 0 (PCMU) or 8
        (PCMA). `signalling_host`: the IP address the caller's INVITE came from (RTP from there
        is accepted on any port). Initial sequence and timestamp are random unless given
        (RFC 3550 §5.1)."""
        self.local_ssrc = local_ssrc
        self.payload_type = payload_type
        self.telephone_event_pt = telephone_event_pt
        self.codec = codec if codec is not None else _STATIC_CODECS.get(payload_type)
        self.remote: Address | None = None
        self.symmetric = symmetric
        self._signalling_host = None if signalling_host is None else _host_key(signalling_host)
        self._accepted_hosts: frozenset[str] = frozenset()
        self._rejection_reported = False
        self._latched = False
        self.set_remote(remote)
        self._sequence = secrets.randbits(16) if initial_sequence is None else initial_sequence
        self._timestamp = (secrets.randbits(32) if initial_timestamp is None
                           else initial_timestamp)
        self._talkspurt = True  # the first packet starts a talkspurt: marker bit
        self._stats = RtpStats()
        self._remote_ssrc: int | None = None
        self._tracker: _SequenceTracker | None = None
        self._events = (TelephoneEventReceiver(telephone_event_pt)
                        if telephone_event_pt is not None else None)
        self._inband = InbandDtmfDetector(self.codec) if self.codec is not None else None
        self._digits = DigitDeduplicator()

    # --- sending ---------------------------------------------------------------------------

    def next_frame(self, payload: bytes) -> bytes:
        """The next audio packet carrying `payload` (one octet per sample: 160 for 20 ms)."""
        packet = build_rtp(self.payload_type, self._sequence, self._timestamp, self.local_ssrc,
                           payload, self._talkspurt)
        self._talkspurt = False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + len(payload)) & 0xFFFFFFFF
        self._stats.packets_sent += 1
        self._stats.octets_sent += len(payload)
        return packet

    def skip_frame(self, samples: int = SAMPLES_PER_FRAME) -> None:
        """A tick with nothing to send: time runs on, and the next packet marks a talkspurt."""
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF
        self._talkspurt = True

    def send_dtmf(self, digit: str, duration_ms: int = 100, volume: int = 10) -> list[bytes]:
        """The RFC 4733 packets of one key press, to be sent one per tick in place of audio:
        an update every 20 ms of `duration_ms`, the last one with the E bit and repeated three
        times. The audio timestamp moves past all of them; the next audio packet has the marker.
        """
        if self.telephone_event_pt is None:
            raise ValueError("telephone-event was not negotiated for this session")
        key = digit.upper()
        if len(key) != 1 or key not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        code = DTMF_DIGITS.index(key)
        steps = max(1, duration_ms * 8 // SAMPLES_PER_FRAME)
        packets = []
        for step in range(1, steps + 1):
            end = step == steps
            payload = telephone_event_payload(code, end, volume, step * SAMPLES_PER_FRAME)
            for _ in range(_END_RETRANSMISSIONS if end else 1):
                packets.append(build_rtp(self.telephone_event_pt, self._sequence,
                                         self._timestamp, self.local_ssrc, payload, step == 1))
                self._sequence = (self._sequence + 1) & 0xFFFF
                self._stats.packets_sent += 1
                self._stats.octets_sent += len(payload)
        self.skip_frame(len(packets) * SAMPLES_PER_FRAME)
        return packets

    def sender_report(self, unix_time: float, cname: str) -> bytes:
        """An RTCP compound packet (SR + SDES CNAME) for the RTCP port, at wall-clock time
        `unix_time`, which corresponds to the timestamp of the next packet."""
        return build_rtcp_sr(self.local_ssrc, unix_time, self._timestamp,
                             self._stats.packets_sent, self._stats.octets_sent, cname)

    # --- receiving -------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address,
                now: float) -> list[DigitEvent | AudioFrame | SourceRejected]:
        """Audio frames and newly pressed digits in one datagram from `source`, or the report
        of the first datagram from a host the session does not accept."""
        packet = parse_rtp(data)
        if packet is None:
            self._stats.packets_discarded += 1
            return []
        if source[0] not in self._accepted_hosts:
            self._stats.packets_rejected += 1
            if self._rejection_reported:
                return []
            self._rejection_reported = True
            return [SourceRejected(source, now)]
        if not self._latch(packet, source):
            self._stats.packets_discarded += 1
            return []
        self._count(packet)
        if packet.payload_type == self.telephone_event_pt and self._events is not None:
            return [event for event in self._events.receive(packet, now)
                    if self._digits.accept(event)]
        if packet.payload_type != self.payload_type:
            return []  # comfort noise or a codec not negotiated: nothing to play or detect
        out: list[DigitEvent | AudioFrame | SourceRejected] = [
            AudioFrame(packet.payload, packet.sequence, packet.timestamp, packet.marker, now)
        ]
        if self._inband is not None:
            tones = self._inband.feed(packet.payload, now)
            if tones:
                out += [event for event in tones if self._digits.accept(event)]
        return out

    def info_digit(self, digit: str, now: float) -> DigitEvent | None:
        """A digit that came by SIP INFO, unless it repeats a press already delivered."""
        event = DigitEvent(digit, "info", now)
        return event if self._digits.accept(event) else None

    def set_remote(self, remote: Address | None) -> None:
        """New media address from SDP (None while on hold); symmetric RTP latches anew. RTP is
        accepted from the host of the last address given and from the signalling host."""
        self.remote = remote
        self._latched = False
        hosts = set(self._accepted_hosts) if remote is None else {_host_key(remote[0])}
        if self._signalling_host is not None:
            hosts.add(self._signalling_host)
        self._accepted_hosts = frozenset(hosts)

    @property
    def stats(self) -> RtpStats:
        lost = self._tracker.lost if self._tracker is not None else 0
        return replace(self._stats, packets_lost=self._stats.packets_lost + lost)

    def _latch(self, packet: RtpPacket, source: Address) -> bool:
        """Whether to take a packet from an accepted host; symmetric RTP follows it there."""
        if not self.symmetric or (self._latched and source == self.remote):
            return True
        if self._latched and packet.ssrc != self._remote_ssrc:
            return False  # another stream from elsewhere: stray or injected
        self.remote = source
        self._latched = True
        return True

    def _count(self, packet: RtpPacket) -> None:
        self._stats.packets_received += 1
        self._stats.octets_received += len(packet.payload)
        if packet.ssrc != self._remote_ssrc or self._tracker is None:
            if self._tracker is not None:
                self._stats.packets_lost += self._tracker.lost
            self._remote_ssrc = packet.ssrc
            self._tracker = _SequenceTracker(packet.sequence, packet.sequence)
        else:
            self._tracker.update(packet.sequence)


def _host_key(host: str) -> str:
    """An IP address as the socket layer writes a datagram's source (IPv6 compressed, lower
    case), so that an SDP or Via spelling of the same address compares equal."""
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        return host
