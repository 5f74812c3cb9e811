"""RTP for the calls softswitch answers: UDP ports from the configured range, and one 20 ms
media clock that sends every call's next frame.

The packet and DTMF logic is sans-IO in `media/session.py` (`RtpSession`); this module only
owns sockets and time:

- `RtpPortPool` binds one UDP socket per call on a port of `media.rtp_port_min..max`. Every
  port of the range is used (no even/odd RTP/RTCP pairing: 1,000 ports carry 1,000 calls; we
  send no RTCP and a peer's RTCP that lands on a neighbouring port is discarded there by its
  packet type). A call gets a port drawn at random (`secrets`) from the half of the free ports
  that rested longest; freed ports go to the back of the queue. Random, so that nobody can
  predict a call's port and aim packets at it before the caller's first one; from the rested
  half, so that a port still rests before reuse (late packets of the old call would otherwise
  reach the new one, whose symmetric RTP could latch onto them when they come from the same
  host). The trade-off: with F ports free a port is drawn from about F/2, and rests for at
  least about F/2 calls, where handing them out in order made it rest F calls and made the
  next port known to anyone who saw one. A port another program holds is skipped.
- `MediaClock` is one `loop.call_at` timer for all calls (not a task per call). Each tick
  calls `MediaStream._send_next()` for every stream: slice the next 160-byte payload of the
  prompt (pre-encoded by `PromptLibrary`), let the session put the 12-byte header on it, one
  `sendto`. Ticks are scheduled on a fixed grid from the clock's start, so timing does not
  drift; a tick that runs late sends the frames it owes (at most `MAX_CATCH_UP` at once) and
  lets the RTP timestamp skip over a longer stall.
- `MediaStream` is one call's socket, session and playback queue. Received datagrams are
  read with `loop.add_reader` and handed to the session; digits and (while recording) audio
  go to the callbacks `on_digit` and `on_audio`.

Silence policy (`media.silence`): by default (`suppress`) a stream sends prompt audio while it
plays and, while it does not, nothing but one G.711 silence frame every
`media.keepalive_seconds` (1 s), the first one interval after the last packet sent. An IVR
caller spends much of a call keying or thinking: in scripts/bench/ivr.sh 53% of the packets
sent were silence, and each costs the clock a sendto(), so leaving them out lets one tick
serve more calls on time. Ticks without a packet still advance the RTP timestamp
(`RtpSession.skip_frame`), so the receiver sees the real length of the pause; sequence numbers
stay contiguous, as RFC 3550 wants for loss detection; and the first packet after a pause
carries the marker bit (RFC 3551 §4.1: first packet of a talkspurt), so the peer's jitter
buffer resynchronises there instead of counting the pause as lateness. The keepalive is a
one-packet talkspurt: it keeps the RTP-inactivity timers of phones, SBCs and media relays
from ending a call while the caller thinks, and a relay's latch on our address (the caller's
own NAT binding is refreshed by the caller's packets, RFC 4787 REQ-6). No comfort-noise
payload is sent (none is negotiated); the peer plays its own silence. `send` keeps a packet
every 20 ms for the whole call, silence between prompts, for media relays and gateways that
need a continuous stream. Either way, nothing is sent while the SDP forbids it
(a=recvonly/inactive in our answer, e.g. on hold, or no address yet): the RTP timestamp
still advances, and the next packet carries the marker bit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..config import SilencePolicy
from ..media.dtmf import DigitEvent
from ..media.g711 import Codec
from ..media.session import SAMPLES_PER_FRAME, Address, AudioFrame, RtpSession, SourceRejected

log = logging.getLogger(__name__)
security_log = logging.getLogger("softswitch.security")

PTIME = 0.020  # seconds per frame
MAX_CATCH_UP = 3  # frames sent in one tick for ticks that were missed; beyond that, skipped
MAX_READS = 32  # datagrams read per readiness callback, so that one busy port cannot starve
DSCP_EF = 0xB8  # IP TOS byte for voice (expedited forwarding), where the system allows it

Clips = Sequence[Sequence[bytes]]


class RtpPortPool:
    """UDP ports of one range, each bound for one call at a time (see the module doc)."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        self.host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._free: deque[int] = deque(range(port_min, port_max + 1))
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._in_use)

    def open(self) -> tuple[socket.socket, int] | None:
        """A non-blocking socket bound to a random one of the longer-rested half of the free
        ports; None if none is free."""
        free = self._free
        for _ in range(len(free)):
            index = secrets.randbelow((len(free) + 1) // 2)
            port = free[index]
            del free[index]
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                free.append(port)  # held by another program: try it again later
                continue
            sock.setblocking(False)
            if self._family == socket.AF_INET:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DSCP_EF)
            self._in_use.add(port)
            return sock, port
        return None

    def release(self, sock: socket.socket, port: int) -> None:
        sock.close()
        if port in self._in_use:
            self._in_use.remove(port)
            self._free.append(port)


class MediaClock:
    """The one 20 ms timer that sends the next frame of every started stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._streams: dict[MediaStream, None] = {}  # ordered; O(1) removal
        self._handle: asyncio.TimerHandle | None = None
        self._epoch = 0.0
        self._ticks = 0
        self.last_tick_seconds = 0.0  # CPU time the last tick took (perf_counter)
        self.late_ticks = 0  # ticks that found themselves a whole frame or more late

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: MediaStream) -> None:
        self._streams[stream] = None
        if self._handle is None:
            self._epoch = self._loop.time()
            self._ticks = 0
            self._handle = self._loop.call_at(self._epoch, self._tick)

    def remove(self, stream: MediaStream) -> None:
        self._streams.pop(stream, None)
        if not self._streams and self._handle is not None:
            self._handle.cancel()  # idle: no timer while no call has media
            self._handle = None

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()

    def _tick(self) -> None:
        started = time.perf_counter()
        late = int((self._loop.time() - self._epoch) / PTIME) - self._ticks
        late = max(late, 0)  # call_at may fire a hair early
        self._ticks += 1 + late
        if late:
            self.late_ticks += 1
            owed = min(late, MAX_CATCH_UP)
            for stream in self._streams:
                for _ in range(owed):
                    stream._send_next()
                for _ in range(late - owed):
                    stream._skip()
        # Nothing in _send_next changes the dict: futures it resolves call back later.
        for stream in self._streams:
            stream._send_next()
        self._handle = self._loop.call_at(self._epoch + self._ticks * PTIME, self._tick)
        self.last_tick_seconds = time.perf_counter() - started


class MediaStream:
    """One call's RTP: its port, its `RtpSession`, and the prompts queued to play.

    Made by `RtpEngine.open_stream()` with a bound port (for the SDP answer); `start()` gives it
    the session and puts it on the clock; `close()` takes it off and frees the port.
    """

    __slots__ = ("port", "codec", "session", "call_id", "on_digit", "on_audio", "_engine",
                 "_sock", "_sendto", "_silence", "_keepalive_ticks", "_quiet_ticks", "_sending",
                 "_clip", "_index", "_queue", "_done", "_closed", "send_errors")

    def __init__(self, engine: RtpEngine, sock: socket.socket, port: int) -> None:
        self.port = port
        self.codec = Codec.PCMU
        self.session: RtpSession | None = None
        self.call_id = ""  # for the log
        self.on_digit: Callable[[DigitEvent], None] | None = None
        self.on_audio: Callable[[AudioFrame], None] | None = None  # set only while recording
        self.send_errors = 0
        self._engine = engine
        self._sock = sock
        self._sendto = sock.sendto
        self._silence = Codec.PCMU.silence(SAMPLES_PER_FRAME)
        self._keepalive_ticks = engine.keepalive_ticks
        self._quiet_ticks = 0  # ticks since the last packet was sent
        self._sending = False
        self._clip: Sequence[bytes] | None = None
        self._index = 0
        self._queue: deque[Sequence[bytes]] = deque()
        self._done: asyncio.Future[bool] | None = None
        self._closed = False

    # ---- life -------------------------------------------------------------------------------
    def start(self, session: RtpSession, codec: Codec, *, sending: bool,
              call_id: str = "") -> None:
        """Begin receiving and sending (until something plays: silence as the policy says).
        `call_id` names the call in log lines."""
        self.session = session
        self.call_id = call_id
        self.codec = codec
        self._silence = codec.silence(SAMPLES_PER_FRAME)
        self._sending = sending and session.remote is not None
        self._engine.loop.add_reader(self._sock.fileno(), self._readable)
        self._engine.clock.add(self)

    def update(self, remote: Address | None, *, sending: bool) -> None:
        """New SDP from a re-INVITE: a new address (None: on hold), and whether we may send."""
        if self.session is None:
            return
        self.session.set_remote(remote)
        self._sending = sending and remote is not None

    def close(self) -> None:
        """Stop everything and free the port. Harmless when called again."""
        if self._closed:
            return
        self._closed = True
        self.stop_playback()
        self.on_digit = self.on_audio = None
        if self.session is not None:
            self._engine.loop.remove_reader(self._sock.fileno())
            self._engine.clock.remove(self)
        self._engine.pool.release(self._sock, self.port)

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- playing ----------------------------------------------------------------------------
    def play(self, clips: Clips) -> asyncio.Future[bool]:
        """Play `clips` (each a sequence of 20 ms payloads in this stream's codec) one after
        the other. The future is True once the last frame is sent, False if stopped first.
        What was playing before is stopped."""
        self.stop_playback()
        done: asyncio.Future[bool] = self._engine.loop.create_future()
        queue = deque(clip for clip in clips if clip)
        if self._closed or not queue:
            done.set_result(not self._closed)
            return done
        self._queue = queue
        self._clip = queue.popleft()
        self._index = 0
        self._done = done
        return done

    def stop_playback(self) -> None:
        """No more prompt audio from the next tick on; the pending `play()` future turns
        False."""
        self._clip = None
        self._queue.clear()
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_result(False)

    @property
    def playing(self) -> bool:
        return self._clip is not None

    # ---- the clock's calls (kept lean: they run 50 times a second for every call) ----------
    def _send_next(self) -> None:
        session = self.session
        assert session is not None
        clip = self._clip
        if clip is not None:
            payload = clip[self._index]
            self._index += 1
            if self._index == len(clip):
                self._next_clip()
        else:
            quiet = self._quiet_ticks + 1
            if quiet < self._keepalive_ticks:  # never with `send` (1): silence every tick
                self._quiet_ticks = quiet
                session.skip_frame()  # the next packet starts a talkspurt
                return
            payload = self._silence  # a keepalive (with `send`: every tick)
        remote = session.remote
        if self._sending and remote is not None:
            self._quiet_ticks = 0
            try:
                self._sendto(session.next_frame(payload), remote)
            except OSError:  # a full send buffer or an unreachable network: the frame is lost
                self.send_errors += 1
        else:
            self._quiet_ticks += 1
            session.skip_frame()

    def _skip(self) -> None:
        """A tick the loop missed by too much: time moves on, the prompt resumes where it was."""
        assert self.session is not None
        self.session.skip_frame()
        self._quiet_ticks += 1

    def _next_clip(self) -> None:
        if self._queue:
            self._clip = self._queue.popleft()
            self._index = 0
            return
        self._clip = None
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_result(True)

    # ---- receiving --------------------------------------------------------------------------
    def info_digit(self, digit: str) -> None:
        """A digit that came by SIP INFO: delivered unless the session saw that press already."""
        if self.session is None or self.on_digit is None:
            return
        event = self.session.info_digit(digit, self._engine.loop.time())
        if event is not None:
            self.on_digit(event)

    def _readable(self) -> None:
        session = self.session
        assert session is not None
        now = self._engine.loop.time()
        for _ in range(MAX_READS):
            try:
                data, source = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued on the socket: nothing to read
                return
            for item in session.receive(data, source[:2], now):
                if isinstance(item, AudioFrame):
                    if self.on_audio is not None:
                        self.on_audio(item)
                elif isinstance(item, DigitEvent):
                    if self.on_digit is not None:
                        self.on_digit(item)
                else:
                    self._rejected(item)

    def _rejected(self, report: SourceRejected) -> None:
        host, port = report.source
        shown = f"[{host}]" if ":" in host else host
        security_log.warning("rtp-rejected source=%s:%d call=%s reason=unexpected-source",
                             shown, port, _log_value(self.call_id))


class RtpEngine:
    """The port pool and the media clock that all of one server's calls share."""

    def __init__(self, host: str, port_min: int, port_max: int,
                 loop: asyncio.AbstractEventLoop | None = None, *,
                 silence: SilencePolicy = "suppress", keepalive_seconds: float = 1.0) -> None:
        """`silence` and `keepalive_seconds`: what streams send while no prompt plays (see the
        module doc)."""
        if silence not in ("suppress", "send"):
            raise ValueError(f"silence must be 'suppress' or 'send', got {silence!r}")
        if not keepalive_seconds > 0:
            raise ValueError(f"keepalive_seconds must be above 0, got {keepalive_seconds}")
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.pool = RtpPortPool(host, port_min, port_max)
        self.clock = MediaClock(self.loop)
        # Ticks from one packet to the next while no prompt plays (the interval rounded to
        # whole 20 ms ticks); 1 sends silence every tick.
        self.keepalive_ticks = (1 if silence == "send"
                                else max(1, round(keepalive_seconds / PTIME)))

    @property
    def ports_in_use(self) -> int:
        return self.pool.in_use

    def open_stream(self) -> MediaStream | None:
        """A stream on a free port, not yet started; None when the range is exhausted."""
        opened = self.pool.open()
        if opened is None:
            log.warning("no free RTP port in the configured range")
            return None
        return MediaStream(self, *opened)

    def close(self) -> None:
        self.clock.close()


_UNSAFE = re.compile(r'[^\x21-\x7e ]|["\\]')


def _log_value(text: str) -> str:
    """Attacker-chosen text (a Call-ID) as one log field: printable ASCII ('?' for anything
    else, quotes and backslashes too), at most 64 characters, quoted if it has spaces or is
    empty (the format of docs/SECURITY.md)."""
    text = _UNSAFE.sub("?", text[:64])
    return f'"{text}"' if not text or " " in text else text
