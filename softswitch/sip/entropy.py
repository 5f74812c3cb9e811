"""Random bytes for tags, branches and nonces, drawn from the OS in 4 KiB blocks.

Every response and request needs a few random bytes (RFC 3261 §19.3: tags and branches
cryptographically random). One `os.urandom` system call per token cost ~5% of the CPU of
a REGISTER; drawing a block at a time makes it one call per several hundred tokens. The
bytes are the kernel's CSPRNG output either way, each handed out once.
"""

import os

_BLOCK = 4096


class EntropyPool:
    def __init__(self) -> None:
        self._block = b""
        self._used = 0

    def take(self, count: int) -> bytes:
        if self._used + count > len(self._block):
            self._block = os.urandom(max(_BLOCK, count))
            self._used = 0
        start = self._used
        self._used += count
        return self._block[start:self._used]


_POOL = EntropyPool()


def random_bytes(count: int) -> bytes:
    return _POOL.take(count)
