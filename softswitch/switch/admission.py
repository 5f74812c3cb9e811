"""How many calls one source address may hold at once (issue 8 item 11).

An INVITE costs us an RTP port and a transaction from the moment it is answered until its
ACK; a call to a public number (remote access, DTMF test) needs no authentication at all. A
flood of never-ACKed INVITEs from one address would hold every port, and a spoofed one would
make us send answers and media to whoever the INVITE names. So each source address may hold
at most `max_unconfirmed` calls not yet answered and ACKed, and at most
`max_unauthenticated` calls by a caller who did not authenticate; beyond that an INVITE is
refused (503, logged once per burst on `softswitch.security`). Trusted peers (a carrier
interconnect, the load balancer) carry many callers and are not counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..config import CallsPerSourceConfig
from ..sip.events import Peer

security_log = logging.getLogger("softswitch.security")


@dataclass(slots=True, eq=False)
class Admission:
    """One admitted call's hold on its source's counters; `confirmed()` and `release()` are
    safe to call more than once."""

    _counters: CallAdmission
    host: str
    unauthenticated: bool
    _unconfirmed: bool = True
    _released: bool = False

    def confirmed(self) -> None:
        """The call was answered and ACKed: it no longer counts as unconfirmed."""
        if self._unconfirmed and not self._released:
            self._unconfirmed = False
            self._counters._drop(self._counters._unconfirmed, self.host)

    def release(self) -> None:
        """The call is over."""
        if self._released:
            return
        self.confirmed()
        self._released = True
        if self.unauthenticated:
            self._counters._drop(self._counters._unauthenticated, self.host)


@dataclass(slots=True)
class CallAdmission:
    limits: CallsPerSourceConfig
    _unconfirmed: dict[str, int] = field(default_factory=dict)
    _unauthenticated: dict[str, int] = field(default_factory=dict)
    _last_logged: dict[str, tuple[float, int]] = field(default_factory=dict)  # host: (at, n)
    refused: int = 0

    def admit(self, peer: Peer, *, authenticated: bool, trusted: bool = False) -> Admission | None:
        """A hold on one more call from `peer`'s address, or None (refuse the INVITE)."""
        host = peer.host
        if trusted:
            return Admission(self, host, unauthenticated=False, _unconfirmed=False)
        reason = None
        if self._unconfirmed.get(host, 0) >= self.limits.max_unconfirmed:
            reason = "unconfirmed-limit"
        elif not authenticated and \
                self._unauthenticated.get(host, 0) >= self.limits.max_unauthenticated:
            reason = "unauthenticated-limit"
        if reason is not None:
            self.refused += 1
            self._log_refusal(peer, reason)
            return None
        self._unconfirmed[host] = self._unconfirmed.get(host, 0) + 1
        if not authenticated:
            self._unauthenticated[host] = self._unauthenticated.get(host, 0) + 1
        return Admission(self, host, unauthenticated=not authenticated)

    def _log_refusal(self, peer: Peer, reason: str) -> None:
        """One line a second per source at most: a flood must not flood the log too."""
        now = time.monotonic()
        at, unlogged = self._last_logged.get(peer.host, (0.0, 0))
        if now - at < 1.0:
            self._last_logged[peer.host] = (at, unlogged + 1)
            return
        if len(self._last_logged) > 10_000:  # spoofed sources: forget the oldest half
            for host in list(self._last_logged)[:5_000]:
                del self._last_logged[host]
        self._last_logged[peer.host] = (now, 0)
        security_log.warning("call-refused source=%s:%s:%s reason=%s refused_since_last=%d",
                             peer.transport, peer.host, peer.port, reason, unlogged)

    def holding(self, host: str) -> tuple[int, int]:
        """(unconfirmed, unauthenticated) calls of `host` now."""
        return self._unconfirmed.get(host, 0), self._unauthenticated.get(host, 0)

    @staticmethod
    def _drop(counts: dict[str, int], host: str) -> None:
        left = counts.get(host, 0) - 1
        if left > 0:
            counts[host] = left
        else:
            counts.pop(host, None)
