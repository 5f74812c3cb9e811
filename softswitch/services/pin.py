"""The network PIN (ネットワーク暗証番号): verification, lock after consecutive failures, unlock,
and a throttle on failures per calling source across subscribers (toll-fraud defence).

Counting is atomic in the store, so several instances cannot grant extra tries together: an
attempt takes its try (counts itself as a failure) before the PIN is checked, and only while
fewer than pin.max_failures are counted; a right PIN then clears the count, a wrong one may
lock. The argon2 check runs in a process of its own, at the lowest CPU priority (see
`_new_pin_checks`). Unknown numbers, data SIMs and locked PINs
cost the same argon2 check as a real one, so the time to answer tells a caller nothing.

One audit line per attempt on the `softswitch.security` logger (never the PIN):

    pin-ok source=SOURCE number=NUMBER via=SERVICE
    pin-failed source=SOURCE number=NUMBER via=SERVICE failures=N result=RESULT

e.g. `pin-failed source=udp:203.0.113.5:5060 number=09012345678 via=remote-access failures=2
result=wrong` (one line). NUMBER is `-` when what was keyed is no national number (a caller
may key the PIN where the number goes). RESULT is wrong, unknown (no such subscriber, a data
SIM), locked or throttled; WARNING for the last two, else INFO. N is the subscriber's
consecutive failures, or for unknown and throttled the source's failures in the current
throttle window.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import StrEnum

from ..config import PinConfig
from ..credentials import hash_secret, verify_secret
from ..numbering import is_national_number
from .errors import UnknownSubscriber
from .lines import voice_line
from .repositories import PinRepository, SubscriberRepository

security_log = logging.getLogger("softswitch.security")

MAX_LOGGED = 64  # characters of a field taken from the caller


class PinResult(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # locked now or before; even the right PIN is refused
    THROTTLED = "throttled"  # too many failures from this source: not even checked
    UNKNOWN = "unknown"  # no such subscriber, or a data SIM


@dataclass(slots=True, frozen=True)
class PinCheck:
    result: PinResult
    failures: int = 0  # the subscriber's consecutive failures after this attempt
    locked: bool = False  # the PIN is locked after this attempt

    @property
    def ok(self) -> bool:
        return self.result is PinResult.OK


@dataclass(slots=True, frozen=True)
class PinState:
    """What an operator and the portal may see of a PIN (never the PIN)."""

    locked: bool
    failures: int
    pending_change: bool
    pending_apply_at: float | None


class PinService:
    def __init__(self, subscribers: SubscriberRepository, pins: PinRepository,
                 config: PinConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._subscribers = subscribers
        self._pins = pins
        self.config = config
        self._clock = clock

    async def verify(self, number: str, pin: str, source: str, via: str = "dial-code", *,
                     allowed: bool = True) -> PinCheck:
        """Check `pin` for subscriber `number` (as keyed in), from `source` ('udp:host:port',
        throttled by host) for the service `via` ('remote-access', 'blocklist', ...; in the
        audit line).
        `allowed=False`: the service is closed to this caller (remote control off), so the
        attempt is checked and counted like any other but fails even with the right PIN."""
        now = self._clock()
        host = source_host(source)
        window = self.config.throttle.window_seconds
        throttled = await self._pins.source_failures(host, now, window)
        if throttled >= self.config.throttle.max_failures:
            self._audit(logging.WARNING, source, number, via, PinResult.THROTTLED, throttled)
            return PinCheck(PinResult.THROTTLED)
        record = None
        if is_national_number(number):
            line = await self._subscribers.line(number)
            if line is not None and line.is_voice:
                record = await self._pins.pin(number)
        if record is None:
            await _check(pin, None)
            return await self._failed(source, number, via, PinResult.UNKNOWN, now)
        taken = None if record.locked else await self._pins.reserve_attempt(
            number, self.config.max_failures)
        if taken is None:
            await _check(pin, None)
            return await self._failed(source, number, via, PinResult.LOCKED, now,
                                      record.failures, True)
        right = await _check(pin, record.hash_at(now))
        if right and allowed:
            if await self._pins.attempt_succeeded(number):
                self._audit(logging.INFO, source, number, via, PinResult.OK)
                return PinCheck(PinResult.OK)
            return await self._failed(source, number, via, PinResult.LOCKED, now,
                                      self.config.max_failures, True)
        failures, locked = await self._pins.attempt_failed(number, self.config.max_failures)
        return await self._failed(source, number, via,
                                  PinResult.LOCKED if locked else PinResult.WRONG, now,
                                  failures, locked)

    async def unlock(self, number: str) -> None:
        """Unlock the PIN and clear its failures (the portal, `softswitch pin unlock`)."""
        await voice_line(self._subscribers, number)
        if not await self._pins.unlock(number):
            raise UnknownSubscriber(number)
        security_log.info("pin-unlocked number=%s", number)

    async def state(self, number: str) -> PinState:
        record = await self._pins.pin(number)
        if record is None:
            raise UnknownSubscriber(number)
        return PinState(record.locked, record.failures, record.pending_hash is not None,
                        record.pending_apply_at)

    async def _failed(self, source: str, number: str, via: str, result: PinResult, now: float,
                      failures: int = 0, locked: bool = False) -> PinCheck:
        from_source = await self._pins.add_source_failure(
            source_host(source), now, self.config.throttle.window_seconds)
        shown = failures if result in (PinResult.WRONG, PinResult.LOCKED) else from_source
        level = logging.WARNING if result is PinResult.LOCKED else logging.INFO
        self._audit(level, source, number, via, result, shown)
        return PinCheck(result, failures, locked)

    @staticmethod
    def _audit(level: int, source: str, number: str, via: str, result: PinResult,
               failures: int | None = None) -> None:
        # Only a number is logged as keyed: a caller may key the PIN where the number goes.
        shown = log_field(number) if is_national_number(number) else "-"
        if result is PinResult.OK:
            security_log.log(level, "pin-ok source=%s number=%s via=%s", log_field(source),
                             shown, log_field(via))
            return
        security_log.log(level, "pin-failed source=%s number=%s via=%s failures=%d result=%s",
                         log_field(source), shown, log_field(via), failures or 0,
                         result.value)


def source_host(source: str) -> str:
    """The host of 'udp:203.0.113.5:5060' or 'tcp:[2001:db8::1]:5061': a caller changes
    ports at will, not addresses. Anything else is taken whole (its first 64 characters)."""
    _, _, address = source.partition(":")
    if address.startswith("["):
        host, bracket, _ = address[1:].partition("]")
        return host if bracket else source[:MAX_LOGGED]
    host, colon, port = address.rpartition(":")
    return host if colon and host and port.isdigit() else source[:MAX_LOGGED]


def log_field(value: str) -> str:
    """Caller-controlled text fit for a log line: printable ASCII, at most 64 characters,
    quoted if it has spaces (or is empty)."""
    text = "".join(c if " " <= c <= "~" and c != '"' else "?" for c in value[:MAX_LOGGED])
    return f'"{text}"' if " " in text or not text else text


def _pin_check_process(server: int) -> None:
    """A PIN-check process runs at SCHED_IDLE: it gives way at once to the event loop, which
    keeps the media clock of every call (and to the loop at SCHED_RR, which it would otherwise
    inherit). On an idle core it runs at full speed; on a busy machine PIN checks wait, the
    audio does not. It ends when the server does, even a server killed with SIGKILL: a pool's
    process would otherwise wait for work forever (it holds both ends of its queue)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    threading.Thread(target=_end_with, args=(server,), name="end-with-server",
                     daemon=True).start()
    _decoy_hash()  # now: the first unknown number must cost what a known one does


def _end_with(server: int) -> None:
    while os.getppid() == server:
        time.sleep(1.0)
    os._exit(0)


# argon2 costs about 50 ms of CPU a check here: 25 checks a second take more than a core. The
# checks run in processes of their own, one per core, at SCHED_IDLE. Not in threads: a
# thread hands the GIL back to the event loop, and one at the lowest priority may wait for a
# core while the loop waits for the GIL (500 remote-control calls: send gap p99 75 ms with
# the checks in SCHED_IDLE threads, with argon2 at its cheapest). The lane is the PIN's own,
# so voicemail files and prompts (the default executor) never queue behind a check. The
# processes are spawned, so that they are the server's children (see _pin_check_process).
_PROCESSES = len(os.sched_getaffinity(0))  # the cores this server may use, not the host's


def _new_pin_checks() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_pin_check_process, initargs=(os.getpid(),))


_pin_checks = _new_pin_checks()


def _ready() -> bool:
    return True


async def start_pin_checks() -> None:
    """Start the PIN-check processes now: a pool starts a process when a check finds none
    idle, and starting one (a fork, the imports) holds the event loop for a moment; at the
    first checks of a busy hour that moment would be a gap in every call's audio."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(_pin_checks, _ready)
                           for _ in range(_PROCESSES)))


async def _in_pin_check_process(check: Callable[..., bool], *args: str) -> bool:
    global _pin_checks
    loop = asyncio.get_running_loop()
    pool = _pin_checks
    try:
        return await loop.run_in_executor(pool, check, *args)
    except BrokenProcessPool:  # a process was killed (out of memory?): start afresh, once
        if _pin_checks is pool:  # the first check to find it broken replaces it
            security_log.warning("pin-check processes restarted")
            pool.shutdown(wait=False)
            _pin_checks = _new_pin_checks()
        return await loop.run_in_executor(_pin_checks, check, *args)


def _check_decoy(pin: str) -> bool:
    verify_secret(pin, _decoy_hash())
    return False


async def _check(pin: str, pin_hash: str | None) -> bool:
    """argon2 in a PIN-check process; without a hash (no such PIN) against a decoy, for the
    same cost, and never right."""
    if pin_hash is None:
        return await _in_pin_check_process(_check_decoy, pin)
    return await _in_pin_check_process(verify_secret, pin, pin_hash)


@functools.cache
def _decoy_hash() -> str:
    return hash_secret("decoy")
