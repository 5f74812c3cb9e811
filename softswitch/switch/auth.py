"""Who may authenticate, as whom, and how often: digest authentication of subscribers' REGISTERs
(401, Authorization) and INVITEs (407, Proxy-Authorization), behind failure limits.

One `SipAuthenticator.authenticate` call answers a request with `Authenticated` or with
`Rejected`, the whole answer to send (a challenge, or 403). In order:

1. A source banned for failed authentications gets 403 before any digest work (a dict
   lookup): more than `security.source_failures.max_failures` failures within its window
   ban the address for `ban_seconds` (Kamailio's pike, Asterisk + fail2ban).
2. No credentials for our realm: a challenge. The nonce is signed for the client's address
   and this process (softswitch.sip.digest), so a nonce that verifies proves the address.
3. An account under attack (more than `security.account_failures.max_failures` failures
   within its window) answers only addresses that authenticated as it within
   `known_source_seconds`; any other gets 403 without digest work: its owner keeps access
   from home while a guesser elsewhere is shut out.
4. The digest is checked with the same hash work whether the username is ours or not, a
   voice SIM or not, so the answer and its timing tell a stranger nothing. The username may
   be any form `credentials.username_forms` gives (09012345678, +819012345678, ...); the
   digest `uri` must be the Request-URI or an equivalent form of our own URI (RFC 3261
   §22.4), and the subscriber must be `expected_number` (the AOR of a REGISTER, the caller
   of an INVITE). A username naming a number in another spelling ('090 1234 5678') gets
   403 with a Warning that names the national form to use.

Every failure and every success is one line on the `softswitch.security` logger, in the
stable key=value format docs/SECURITY.md documents for fail2ban; no secret (password, HA1,
digest response) is ever in it, and attacker-chosen text is sanitised.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..config import ListenAddress, SecurityConfig
from ..credentials import username_forms
from ..numbering import normalise_number
from ..sip.digest import AuthResult, DigestAuthenticator, DigestParams, parse_digest
from ..sip.events import Peer, source_text
from ..sip.message import Request
from ..sip.uri import SipUri, UriError, parse_uri
from ..store.store import SipCredentials

log = logging.getLogger("softswitch.security")

# Bounds on what an attacker can make us remember, spoofed sources included: the oldest entry
# goes first. A ban lasts ban_seconds, so the oldest ban is also the one closest to its end.
MAX_TRACKED_SOURCES = 20_000  # addresses with recent failures, each at most max_failures + 1
MAX_BANNED_SOURCES = 100_000
MAX_KNOWN_SOURCES_PER_ACCOUNT = 16  # addresses remembered per subscriber (phones, home, work)

_FORBIDDEN_REASON = "Forbidden"
_DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


@dataclass(slots=True, frozen=True)
class Authenticated:
    number: str  # the subscriber, national format
    username: str  # the digest username as the phone sent it


@dataclass(slots=True, frozen=True)
class Rejected:
    """The answer to send instead of serving the request: a challenge or a refusal."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    # Answered without keeping a transaction (RFC 3261 §8.2.7): a challenge, and the refusal
    # of a banned source, are most of what a scanner or a flood costs us.
    stateless: bool = False


_FORBIDDEN = Rejected(403, _FORBIDDEN_REASON)
_BANNED = Rejected(403, _FORBIDDEN_REASON, stateless=True)


class FailureLimits:
    """Failed authentications per source address and per account, with the bans and attack
    states they lead to. Sans-IO: every call takes the time (monotonic seconds)."""

    def __init__(self, config: SecurityConfig, *, max_sources: int = MAX_TRACKED_SOURCES,
                 max_bans: int = MAX_BANNED_SOURCES) -> None:
        self.source = config.source_failures
        self.account = config.account_failures
        self._max_sources = max_sources
        self._max_bans = max_bans
        # host -> times of its latest failures (the last max_failures + 1), oldest host first
        self._source_failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._banned_until: dict[str, float] = {}  # host -> end of ban, in ban order
        self._account_failures: dict[str, deque[float]] = {}  # number -> latest failure times
        self._attacked_until: dict[str, float] = {}  # number -> end of the attack state
        self._known: dict[str, dict[str, float]] = {}  # number -> host -> last success

    def banned(self, host: str, now: float) -> bool:
        until = self._banned_until.get(host)
        if until is None:
            return False
        if now < until:
            return True
        del self._banned_until[host]
        return False

    def source_failed(self, host: str, now: float) -> int | None:
        """Count a failure from `host`; the number of failures in the window if it is now
        banned, else None."""
        times = self._source_failures.get(host)
        if times is None:
            times = self._source_failures[host] = deque(maxlen=self.source.max_failures + 1)
            if len(self._source_failures) > self._max_sources:
                self._source_failures.popitem(last=False)
        else:
            self._source_failures.move_to_end(host)
        times.append(now)
        if len(times) <= self.source.max_failures or now - times[0] > self.source.window_seconds:
            return None
        del self._source_failures[host]
        self._banned_until[host] = now + self.source.ban_seconds
        if len(self._banned_until) > self._max_bans:
            del self._banned_until[next(iter(self._banned_until))]
        return len(times)

    def under_attack(self, number: str, now: float) -> bool:
        until = self._attacked_until.get(number)
        if until is None:
            return False
        if now < until:
            return True
        del self._attacked_until[number]
        return False

    def account_failed(self, number: str, now: float) -> int | None:
        """Count a failed attempt on `number`'s account (a refusal while it is under attack
        counts too: the state lasts until window_seconds after the last attempt). The number
        of failures in the window if the account has just come under attack, else None."""
        times = self._account_failures.get(number)
        if times is None:
            times = self._account_failures[number] = deque(maxlen=self.account.max_failures + 1)
        times.append(now)
        if self.under_attack(number, now):
            self._attacked_until[number] = now + self.account.window_seconds
            return None
        if len(times) <= self.account.max_failures or now - times[0] > self.account.window_seconds:
            return None
        self._attacked_until[number] = now + self.account.window_seconds
        return len(times)

    def known(self, number: str, host: str, now: float) -> bool:
        """Did `host` authenticate as `number` within known_source_seconds?"""
        hosts = self._known.get(number)
        last = None if hosts is None else hosts.get(host)
        return last is not None and now - last <= self.account.known_source_seconds

    def succeeded(self, number: str, host: str, now: float) -> None:
        hosts = self._known.get(number)
        if hosts is None:
            self._known[number] = {host: now}
            return
        hosts.pop(host, None)  # re-inserted last: the dict stays in order of last success
        hosts[host] = now
        if len(hosts) > MAX_KNOWN_SOURCES_PER_ACCOUNT:
            del hosts[next(iter(hosts))]

    @property
    def tracked(self) -> tuple[int, int]:
        """(addresses with failures on record, banned addresses): for tests and operators."""
        return len(self._source_failures), len(self._banned_until)


class SipAuthenticator:
    """Digest authentication of subscribers for REGISTER (proxy=False) and INVITE (proxy=True).

    `credentials` maps each digest username to its subscriber and HA1s (Store.load_credentials:
    voice SIMs only). `clock` is wall-clock time (nonces are compared across instances),
    `monotonic` times the failure windows."""

    def __init__(
        self,
        *,
        digest: DigestAuthenticator,
        credentials: Mapping[str, SipCredentials],
        security: SecurityConfig,
        trusted_peers: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.digest = digest
        self.realm = digest.realm
        self.limits = FailureLimits(security)
        self._accounts = {
            username: (c.number, {"MD5": c.ha1_md5, "SHA-256": c.ha1_sha256})
            for username, c in credentials.items()
        }
        # Unknown usernames are checked against HA1s no password yields: the same hash work.
        self._no_account = {"MD5": secrets.token_hex(16), "SHA-256": secrets.token_hex(32)}
        self._trusted = tuple(trusted_peers)
        self._clock = clock
        self._monotonic = monotonic
        self._local_hosts: set[str] = {self.realm.lower()}
        self._local_ports: set[int] = set()
        self._any_address = False  # listening on 0.0.0.0 or [::]: any IP literal may be ours

    def listening(self, addresses: Iterable[ListenAddress]) -> None:
        """Our bound addresses: a digest uri naming one of them names us."""
        for address in addresses:
            ip = ipaddress.ip_address(address.host)
            if ip.is_unspecified:
                self._any_address = True
            self._local_hosts.add(f"[{ip}]" if ip.version == 6 else str(ip))
            self._local_ports.add(address.port)

    def remember(self, number: str, source: str) -> None:
        """A binding loaded from the store ('udp:host:port'): its address counts as known for
        the account, so a restart during an attack does not lock its owner out."""
        host = _host_of_source(source)
        if host:
            self.limits.succeeded(number, host, self._monotonic())

    def authenticate(self, request: Request, peer: Peer, *, proxy: bool,
                     expected_number: str | None) -> Authenticated | Rejected:
        """Authenticate `request` as a subscriber (`expected_number`, if given, else anyone)."""
        now = self._monotonic()
        host, source = self._source_of(request, peer)
        if self.limits.banned(host, now):
            self._refused(source, self._credentials_in(request, proxy), request.method,
                          "source-banned")
            return _BANNED
        params = self._credentials_in(request, proxy)
        if params is None:
            return self._challenge(proxy, host, stale=False)

        username = params.username or ""
        account = self._accounts.get(username)
        number = None if account is None else account[0]
        if (number is not None and self.limits.under_attack(number, now)
                and not self.limits.known(number, host, now)):
            self.limits.account_failed(number, now)
            self._refused(source, params, request.method, "account-under-attack")
            return _FORBIDDEN

        ha1s = self._no_account if account is None else account[1]
        result = self.digest.verify(params, request.method, ha1s, self._clock(), host)
        if result is AuthResult.BAD_NONCE:  # not a nonce we gave this address: it proves nothing
            self._refused(source, params, request.method, "bad-nonce")
            return self._challenge(proxy, host, stale=False)
        if number is None:
            return self._failed(now, host, source, params, request, None, "unknown-user",
                                _warning_for_username(username, self.realm))
        reason = _FAILURE_REASONS.get(result)
        if reason is not None:
            return self._failed(now, host, source, params, request, number, reason)
        # The response is right (OK or STALE): is it for this request and this subscriber?
        if params.uri != request.uri and not self._same_uri(params.uri or "", request):
            return self._failed(now, host, source, params, request, None, "uri-mismatch")
        if expected_number is not None and number != expected_number:
            return self._failed(now, host, source, params, request, None, "other-subscriber")
        if result is AuthResult.STALE:
            return self._challenge(proxy, host, stale=True)
        self.limits.succeeded(number, host, now)
        if log.isEnabledFor(logging.INFO):  # on every registration: the cheap way, see _record
            _record(logging.INFO, "auth-ok source=%s user=%s number=%s method=%s",
                    (source, username, number, request.method))
        return Authenticated(number, username)

    def refuse_if_banned(self, request: Request, peer: Peer) -> Rejected | None:
        """The refusal of a request from a banned source, logged as `authenticate` logs it;
        None for any other source. For requests that do not authenticate (an INVITE to a
        public number) but from a banned source should be refused all the same."""
        host, source = self._source_of(request, peer)
        if not self.limits.banned(host, self._monotonic()):
            return None
        self._refused(source, None, request.method, "source-banned")
        return _BANNED

    # ---- the steps ------------------------------------------------------------------------
    def _source_of(self, request: Request, peer: Peer) -> tuple[str, str]:
        """The client's address, and 'transport:host:port' for the log. Behind a trusted peer
        (the load balancer) it is where that peer received the request: the next Via's
        received/rport, or its sent-by."""
        host, port, transport = peer.host, peer.port, peer.transport
        if self._trusted and _in_networks(host, self._trusted):
            vias = request.vias
            if len(vias) > 1:
                via = vias[1]
                host = (via.params.get("received") or via.host).strip("[]")
                rport = via.params.get("rport")
                port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
                transport = via.transport.lower()
        return host, source_text(transport, host, port)

    def _credentials_in(self, request: Request, proxy: bool) -> DigestParams | None:
        """The first Digest credentials for our realm; others are ignored (RFC 4475 §3.3.7)."""
        for value in request.get_all("proxy-authorization" if proxy else "authorization"):
            params = parse_digest(value)
            if params is not None and params.realm == self.realm:
                return params
        return None

    def _challenge(self, proxy: bool, host: str, stale: bool) -> Rejected:
        values = self.digest.challenge(self._clock(), stale, host)
        if proxy:
            return Rejected(407, "Proxy Authentication Required",
                            tuple(("proxy-authenticate", v) for v in values), stateless=True)
        return Rejected(401, "Unauthorized", tuple(("www-authenticate", v) for v in values),
                        stateless=True)

    def _failed(self, now: float, host: str, source: str, params: DigestParams,
                request: Request, number: str | None, reason: str,
                warning: str | None = None) -> Rejected:
        """A failure from an address the nonce proved: counted for the source (and for the
        account when a guess at its password failed), logged, answered 403."""
        self._refused(source, params, request.method, reason)
        failures = self.limits.source_failed(host, now)
        if failures is not None:
            log.warning("source-banned source=%s failures=%d ban_seconds=%d", source, failures,
                        self.limits.source.ban_seconds)
        if number is not None:
            failures = self.limits.account_failed(number, now)
            if failures is not None:
                log.warning("account-under-attack number=%s failures=%d", number, failures)
        if warning is None:
            return _FORBIDDEN
        return Rejected(403, _FORBIDDEN_REASON, (("warning", warning),))

    def _refused(self, source: str, params: DigestParams | None, method: str,
                 reason: str) -> None:
        username = "-" if params is None or params.username is None else params.username
        log.info("auth-failed source=%s user=%s method=%s reason=%s", source,
                 log_value(username), log_value(method), reason)

    def _same_uri(self, digest_uri: str, request: Request) -> bool:
        """RFC 3261 §22.4: the digest uri names the Request-URI: the same SIP URI with URI
        parameters aside, or both are forms of our own address (sip.domain or a listen
        address, with or without the default port) with the same user."""
        try:
            theirs = parse_uri(digest_uri)
            ours = request.request_uri
        except UriError:
            return False
        if not isinstance(theirs, SipUri) or not isinstance(ours, SipUri):
            return False
        if theirs.scheme != ours.scheme or theirs.user_text != ours.user_text:
            return False
        default = _DEFAULT_PORTS[ours.scheme]
        if theirs.host == ours.host and (theirs.port or default) == (ours.port or default):
            return True
        return self._names_us(theirs) and self._names_us(ours)

    def _names_us(self, uri: SipUri) -> bool:
        if uri.port is not None and uri.port not in self._local_ports \
                and uri.port != _DEFAULT_PORTS[uri.scheme]:
            return False
        if uri.host in self._local_hosts:
            return True
        if not self._any_address:
            return False
        try:
            ipaddress.ip_address(uri.host.strip("[]"))
        except ValueError:
            return False
        return True


_FAILURE_REASONS = {
    AuthResult.FAILED: "wrong-password",
    AuthResult.REPLAYED: "replayed",
    AuthResult.MALFORMED: "bad-credentials",
}


def _warning_for_username(username: str, realm: str) -> str | None:
    """A Warning for a username that spells a phone number in a form we keep no HA1 for
    ('090 1234 5678'); None for anything else. It depends on the text alone, so it says
    nothing about whether the number is a subscriber's."""
    try:
        national = normalise_number(username)
    except ValueError:
        return None
    if username in username_forms(national):
        return None
    return (f'399 {realm} "Use the SIP username {national}: the phone number in national '
            f'form, digits only"')


def _in_networks(host: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
                 ) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _host_of_source(source: str) -> str:
    """'udp:192.0.2.1:5060' -> '192.0.2.1'; 'tcp:[2001:db8::1]:5060' -> '2001:db8::1'."""
    _, _, hostport = source.partition(":")
    host = hostport.rpartition(":")[0]
    return host.strip("[]")


def _record(level: int, message: str, args: tuple[str, ...]) -> None:
    """Log a record without Logger._log's search of the stack for the caller's file and line
    (unused by our format): a fifth of the cost of each line, one per REGISTER at full load."""
    log.handle(log.makeRecord(log.name, level, "", 0, message, args, None))


_UNSAFE = re.compile(r'[^\x21-\x7e ]|["\\]')


def log_value(text: str) -> str:
    """Attacker-chosen text as one log field: printable ASCII ('?' for anything else, quotes
    and backslashes too), at most 64 characters, in double quotes if it has spaces or is
    empty, so a line always splits into the same key=value fields."""
    text = _UNSAFE.sub("?", text[:64])
    if not text or " " in text:
        return f'"{text}"'
    return text
