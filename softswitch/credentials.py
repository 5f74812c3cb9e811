"""How secrets are kept: salted slow hashes (argon2id) for network PINs and portal
passwords, digest HA1s for SIP passwords. A bottom-layer module: the store hashes at
provisioning, the services verify, the SIP digest code computes with HA1s.

Parameters are OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): 30-50 ms of CPU per
hash here, so a PIN check does not stall a call, and many checks at once do not
exhaust memory. The parameters live in each hash, so changing them later still
verifies old hashes. argon2's comparison is constant-time. Hashing blocks the CPU:
call these from a worker thread (asyncio.to_thread) on a busy event loop.
"""

import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_secret(secret: str) -> str:
    """An argon2id hash of `secret` with a fresh random salt."""
    return _HASHER.hash(secret)


def verify_secret(secret: str, secret_hash: str) -> bool:
    """True if `secret` matches `secret_hash`; False for a mismatch or a malformed hash."""
    try:
        return _HASHER.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


_DIGEST_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def username_forms(number: str) -> tuple[str, ...]:
    """The digest usernames a phone may be set up with for national `number` (09012345678):
    the number itself, its E.164 forms (+819012345678, 819012345678) and, for mobile and
    other 11-digit numbers, the way it is printed (090-1234-5678). The store keeps an HA1 for
    each, since an HA1 hashes the username as the phone sends it. Other spellings of the same
    number are refused with a Warning that names the national form."""
    forms = [number, f"+81{number[1:]}", f"81{number[1:]}"]
    if len(number) == 11:
        forms.append(f"{number[:3]}-{number[3:7]}-{number[7:]}")
    return tuple(forms)


def digest_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """HA1 = H(username:realm:password) of RFC 7616 for 'MD5' or 'SHA-256': what the store
    keeps instead of the SIP password."""
    return _DIGEST_HASHES[algorithm](f"{username}:{realm}:{password}".encode()).hexdigest()
