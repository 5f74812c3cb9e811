"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

Works on header values, not messages: ``parse_digest`` reads an Authorization /
WWW-Authenticate value, ``DigestAuthenticator`` issues challenges and verifies
credentials, ``authorization`` answers a challenge (tests, benchmarks, outbound legs).

Server policy:
- Nonces are stateless: base64url(issue time | instance | random | MAC), the MAC an
  HMAC(secret, realm | time | instance | random | the address it was issued to).
  A nonce without our MAC, or issued to another address, is BAD_NONCE: a spoofed source
  cannot answer a challenge it never received, so every other result proves the address.
- The replay record (per nonce, the highest nc accepted) lives in this process only, so a
  nonce is accepted only by the instance that issued it in this run: the instance id is
  random per start. Another instance's nonce, or one from before a restart, is STALE
  (the client retries on a fresh challenge), never OK: its count state is unknown here.
- qop=auth, and the RFC 2069 form without qop (RFC 2543 phones). qop=auth-int and the
  -sess algorithms (MD5-sess, SHA-256-sess) are refused: MALFORMED. We never offer them.
- Replay: an nc not above the highest accepted for its nonce is REPLAYED. Without qop
  there is no nc, so such a nonce is good once: a second use is STALE (the client simply
  retries with a fresh nonce; a replayed request gains nothing).
- The "uri" directive is not compared with the Request-URI here; the caller does
  (softswitch.switch.auth), as only it knows our equivalent URIs.
- Opaque is not used: the nonce is already self-verifying.
"""

import base64
import binascii
import enum
import hashlib
import hmac
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from softswitch.credentials import digest_ha1 as ha1
from softswitch.sip.abnf import TOKEN_CHARS, quote
from softswitch.sip.entropy import random_bytes

_HASHES: Mapping[str, Callable[[bytes], "hashlib._Hash"]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}
_CANONICAL_ALGORITHM = {name.lower(): name for name in _HASHES}

# Nonce layout: 8-byte signed issue time in ms, 8-byte instance id, 13 random bytes, 16 bytes
# of HMAC-SHA256. 45 bytes is a multiple of 3, so the base64url text (60 chars) has no padding.
_TIME = struct.Struct(">q")
_INSTANCE_LEN = 8
_RANDOM_LEN = 13
_MAC_LEN = 16
_SIGNED_LEN = _TIME.size + _INSTANCE_LEN + _RANDOM_LEN
_NONCE_LEN = _SIGNED_LEN + _MAC_LEN
_NONCE_TEXT_LEN = _NONCE_LEN * 4 // 3

_SCHEME = re.compile(r"[ \t\r\n]*([Dd][Ii][Gg][Ee][Ss][Tt])[ \t\r\n]+")
# auth-param = token EQUAL ( token / quoted-string ), then a COMMA or the end.
# Empty list elements (",,") are tolerated as RFC 7230 §7 asks of recipients.
# The quoted-string is written "unrolled" (runs of plain characters between quoted-pairs):
# the same language as (?:[^"\\]|\\.)*, matched twice as fast, which counts on every REGISTER.
_AUTH_PARAM = re.compile(
    rf"""[ \t\r\n]*([{TOKEN_CHARS}]+)[ \t\r\n]*=[ \t\r\n]*
         (?:"([^"\\]*(?:\\.[^"\\]*)*)"|([{TOKEN_CHARS}]+))
         [ \t\r\n]*(?:(?:,[ \t\r\n]*)+|$)""",
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NC = re.compile(r"[0-9a-fA-F]{8}")

_FIELDS = frozenset(
    ("username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "qop", "nc",
     "opaque")
)


class AuthResult(enum.Enum):
    OK = "ok"
    # The response is right but the nonce expired, was spent (no qop), or comes from another
    # instance or an earlier start of this one: challenge again with stale=true.
    STALE = "stale"
    FAILED = "failed"  # the response is wrong: a wrong password (or no HA1 for the algorithm)
    REPLAYED = "replayed"  # right response, but its nc is not above the last one accepted
    MALFORMED = "malformed"  # our nonce, but credentials we refuse (algorithm, qop, fields)
    BAD_NONCE = "bad-nonce"  # no nonce we issued to this address: challenge afresh


@dataclass(slots=True, frozen=True)
class DigestParams:
    """The directives of one Digest challenge or credentials value, unquoted.

    Directives that RFC 7616 defines but we do not use (domain, charset, userhash...)
    and unknown ones are dropped, as the RFC lets a recipient ignore them.
    """

    username: str | None = None
    realm: str | None = None
    nonce: str | None = None
    uri: str | None = None
    response: str | None = None
    algorithm: str | None = None
    cnonce: str | None = None
    qop: str | None = None
    nc: str | None = None
    opaque: str | None = None
    stale: bool = False


def parse_digest(value: str) -> DigestParams | None:
    """Read a Digest challenge or credentials value; None if another scheme or malformed.

    A directive given twice is malformed (RFC 7616 §3.4: MUST NOT appear more than once).
    """
    scheme = _SCHEME.match(value)
    if scheme is None:
        return None
    pos = scheme.end()
    end = len(value)
    found: dict[str, str] = {}
    while pos < end:
        param = _AUTH_PARAM.match(value, pos)
        if param is None:
            return None
        pos = param.end()
        name, quoted, text = param.groups()
        name = name.lower()
        if quoted is not None:
            text = _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
        if name in found:
            return None
        found[name] = text
    if not found:
        return None
    stale = found.pop("stale", "").lower() == "true"
    return DigestParams(stale=stale, **{k: v for k, v in found.items() if k in _FIELDS})


def _hex_hash(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode("utf-8")).hexdigest()


def _response(
    algorithm: str, ha1_hex: str, nonce: str, method: str, uri: str,
    qop: str | None, nc: str, cnonce: str,
) -> str:
    ha2 = _hex_hash(algorithm, f"{method}:{uri}")
    if qop is None:  # RFC 2069
        return _hex_hash(algorithm, f"{ha1_hex}:{nonce}:{ha2}")
    return _hex_hash(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _canonical_algorithm(name: str | None) -> str | None:
    """The algorithm's canonical spelling; None if unknown. Absent means MD5 (RFC 7616)."""
    if name is None:
        return "MD5"
    return _CANONICAL_ALGORITHM.get(name.lower())


class DigestAuthenticator:
    """Issues Digest challenges for one realm and verifies the answers.

    Keeps only the highest nc accepted per nonce, in two generations that rotate every
    nonce lifetime: an entry lives between one and two lifetimes, which covers the
    nonce's own validity, and pruning costs O(1) per request.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_lifetime: float,
        algorithms: tuple[str, ...] = ("MD5",),
        instance: bytes | None = None,
    ) -> None:
        """`instance` names this process in its nonces (random when None: a new one per
        start); tests pass one to act as a given instance."""
        if not algorithms:
            raise ValueError("at least one digest algorithm is needed")
        canonical: list[str] = []
        for name in algorithms:
            algorithm = _CANONICAL_ALGORITHM.get(name.lower())
            if algorithm is None:
                raise ValueError(
                    f"unsupported digest algorithm {name!r}; use {', '.join(_HASHES)}"
                )
            canonical.append(algorithm)
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        self.realm = realm
        self.algorithms = tuple(canonical)
        self.nonce_lifetime = nonce_lifetime
        # HMAC(secret, realm | ...) with the key schedule and the realm hashed once: each
        # nonce (two per registration) then costs a copy and one update.
        self._mac_prefix = hmac.new(secret, realm.encode("utf-8"), hashlib.sha256)
        self._instance = random_bytes(_INSTANCE_LEN) if instance is None else instance
        if len(self._instance) != _INSTANCE_LEN:
            raise ValueError(f"an instance id is {_INSTANCE_LEN} bytes")
        self._lifetime_ms = int(nonce_lifetime * 1000)
        self._quoted_realm = quote(realm)
        self._current_nc: dict[str, int] = {}
        self._previous_nc: dict[str, int] = {}
        self._rotate_at: float | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"DigestAuthenticator(realm={self.realm!r}, algorithms={self.algorithms!r})"

    def _mac(self, signed: bytes, bound_to: str) -> bytes:
        mac = self._mac_prefix.copy()
        mac.update(signed + bound_to.encode("utf-8", "surrogateescape"))
        return mac.digest()[:_MAC_LEN]

    def _new_nonce(self, now: float, bound_to: str) -> str:
        signed = _TIME.pack(int(now * 1000)) + self._instance + random_bytes(_RANDOM_LEN)
        return base64.urlsafe_b64encode(signed + self._mac(signed, bound_to)).decode("ascii")

    def _read_nonce(self, nonce: str, bound_to: str) -> tuple[int, bytes] | None:
        """(issue time in ms, instance id) of a nonce we issued to `bound_to`; else None."""
        if len(nonce) != _NONCE_TEXT_LEN:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce)
        except (binascii.Error, ValueError):
            return None
        signed, mac = raw[:_SIGNED_LEN], raw[_SIGNED_LEN:]
        if not hmac.compare_digest(mac, self._mac(signed, bound_to)):
            return None
        issued_ms: int = _TIME.unpack_from(signed)[0]
        return issued_ms, signed[_TIME.size : _TIME.size + _INSTANCE_LEN]

    def challenge(self, now: float, stale: bool = False, bound_to: str = "") -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, in order.

        `bound_to` (the client's address) is signed into the nonce: only credentials sent
        from there verify."""
        nonce = self._new_nonce(now, bound_to)
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm={self._quoted_realm}, nonce="{nonce}", qop="auth", '
            f"algorithm={algorithm}{tail}"
            for algorithm in self.algorithms
        ]

    def _rotate(self, now: float) -> None:
        if self._rotate_at is None:
            self._rotate_at = now + self.nonce_lifetime
        elif now >= self._rotate_at:
            if now >= self._rotate_at + self.nonce_lifetime:
                self._previous_nc = {}  # idle for two lifetimes: everything has expired
            else:
                self._previous_nc = self._current_nc
            self._current_nc = {}
            self._rotate_at = now + self.nonce_lifetime

    def verify(
        self,
        params: DigestParams,
        method: str,
        ha1_by_algorithm: Mapping[str, str],
        now: float,
        bound_to: str = "",
    ) -> AuthResult:
        """Check credentials sent from `bound_to` against the stored HA1s
        ({'MD5': ..., 'SHA-256': ...}). The hash work is the same whatever the HA1s."""
        nonce, response, uri = params.nonce, params.response, params.uri
        issued = None if nonce is None else self._read_nonce(nonce, bound_to)
        if issued is None:
            return AuthResult.BAD_NONCE
        assert nonce is not None
        issued_ms, instance = issued
        algorithm = _canonical_algorithm(params.algorithm)
        if algorithm is None or algorithm not in self.algorithms:
            return AuthResult.MALFORMED
        if params.realm != self.realm or response is None or uri is None:
            return AuthResult.MALFORMED

        qop = params.qop
        nc = 0
        if qop is not None:
            if qop.lower() != "auth" or params.cnonce is None or params.nc is None:
                return AuthResult.MALFORMED
            if _NC.fullmatch(params.nc) is None:
                return AuthResult.MALFORMED
            nc = int(params.nc, 16)
            if nc == 0:
                return AuthResult.MALFORMED
        if not response.isascii():
            return AuthResult.MALFORMED
        stored_ha1 = ha1_by_algorithm.get(algorithm) or ""  # no HA1 is never a valid key
        expected = _response(
            algorithm, stored_ha1, nonce, method, uri, qop, params.nc or "", params.cnonce or ""
        )
        if not hmac.compare_digest(expected, response.lower()) or not stored_ha1:
            return AuthResult.FAILED

        if instance != self._instance:  # another process's nonce: its nc record is not here
            return AuthResult.STALE
        age_ms = int(now * 1000) - issued_ms
        if not 0 <= age_ms <= self._lifetime_ms:  # in the future: a clock from before a reboot
            return AuthResult.STALE
        self._rotate(now)
        last = self._current_nc.get(nonce)
        if last is None:
            last = self._previous_nc.get(nonce)
        if last is not None:
            if qop is None:
                return AuthResult.STALE  # a nonce without nc is good once
            if nc <= last:
                return AuthResult.REPLAYED
        if nonce in self._previous_nc:
            self._previous_nc[nonce] = nc
        else:
            self._current_nc[nonce] = nc
        return AuthResult.OK


def authorization(
    challenge: DigestParams,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
) -> str:
    """The Authorization value answering ``challenge`` (qop=auth when offered, else RFC 2069)."""
    algorithm = _canonical_algorithm(challenge.algorithm)
    if algorithm is None:
        raise ValueError(f"unsupported digest algorithm {challenge.algorithm!r}")
    realm = challenge.realm or ""
    nonce = challenge.nonce or ""
    offered_qops = {q.strip().lower() for q in (challenge.qop or "").split(",")}
    qop = "auth" if "auth" in offered_qops else None
    nc_text = f"{nc:08x}"
    response = _response(
        algorithm, ha1(algorithm, username, realm, password), nonce, method, uri, qop, nc_text,
        cnonce,
    )
    parts = [
        f"Digest username={quote(username)}",
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"uri={quote(uri)}",
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        parts += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return ", ".join(parts)
