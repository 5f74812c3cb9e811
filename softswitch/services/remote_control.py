"""Remote control (遠隔操作): on/off per subscriber, and the check at the remote-access number.

The carrier's rule on top of the PIN lock and the per-source throttle: consecutive failed
remote-access attempts on one subscriber switch remote control off at
services.remote_control.disable_after (the subscriber turns it on again). Every failure
counts (unknown to the caller: wrong PIN, locked PIN, remote control off), and the caller is
never told which; ending the call after services.remote_control.disconnect_after failures in
one call is the voice flow's part.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RemoteControlConfig
from ..numbering import normalise_number
from .lines import voice_line
from .pin import PinCheck, PinResult, PinService, log_field, security_log
from .repositories import RemoteControlRepository, SubscriberRepository


@dataclass(slots=True, frozen=True)
class RemoteAccess:
    """The outcome of number + PIN at the remote-access number."""

    number: str | None  # the subscriber, if the number keyed in is one
    pin: PinCheck
    granted: bool
    switched_off: bool = False  # this failure switched remote control off


class RemoteControlService:
    def __init__(self, subscribers: SubscriberRepository, remote_control: RemoteControlRepository,
                 pins: PinService, config: RemoteControlConfig) -> None:
        self._subscribers = subscribers
        self._remote_control = remote_control
        self._pins = pins
        self.config = config

    async def enabled(self, number: str) -> bool:
        await voice_line(self._subscribers, number)
        return bool(await self._remote_control.enabled(number))

    async def set_enabled(self, number: str, enabled: bool) -> None:
        """On or off (1429, the portal); either way the wrong-PIN streak starts again."""
        await voice_line(self._subscribers, number)
        await self._remote_control.set_enabled(number, enabled)

    async def authenticate(self, keyed_number: str, pin: str, *, source: str) -> RemoteAccess:
        """Number and PIN as keyed in at the remote-access number, from `source`."""
        try:
            number: str | None = normalise_number(keyed_number)
        except ValueError:
            number = None
        enabled = None if number is None else await self._remote_control.enabled(number)
        check = await self._pins.verify(number or keyed_number, pin, source=source,
                                        via="remote-access", allowed=bool(enabled))
        if enabled is None or number is None or check.result in (PinResult.UNKNOWN,
                                                                 PinResult.THROTTLED):
            return RemoteAccess(None, check, granted=False)
        if check.ok:
            await self._remote_control.right_attempt(number)
            return RemoteAccess(number, check, granted=True)
        streak, still_enabled = await self._remote_control.wrong_attempt(
            number, self.config.disable_after)
        switched_off = enabled and not still_enabled
        if switched_off:
            security_log.warning("remote-control-disabled number=%s failures=%d source=%s",
                                 number, streak, log_field(source))
        return RemoteAccess(number, check, granted=False, switched_off=switched_off)
