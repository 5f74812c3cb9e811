"""Salted slow hashes (argon2id) for network PINs and portal passwords.

Parameters are OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about 30 ms per
hash here, so a PIN check does not stall a call, and many checks at once do not
exhaust memory. The parameters live in each hash, so changing them later still
verifies old hashes. argon2's comparison is constant-time. Hashing blocks the CPU:
call these from a worker thread (asyncio.to_thread) on a busy event loop.
"""

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
