"""Call forwarding (転送でんわサービス): a destination, a mode, on and off."""

from __future__ import annotations

from .errors import InvalidValue, NoDestination
from .lines import other_number, voice_line
from .model import FORWARDING_MODES, ForwardingMode, ForwardingSettings
from .repositories import ForwardingRepository, SubscriberRepository


class ForwardingService:
    def __init__(self, subscribers: SubscriberRepository,
                 forwarding: ForwardingRepository) -> None:
        self._subscribers = subscribers
        self._forwarding = forwarding

    async def settings(self, number: str) -> ForwardingSettings:
        await voice_line(self._subscribers, number)
        settings = await self._forwarding.settings(number)
        assert settings is not None  # provisioning writes every subscriber's row
        return settings

    async def set_destination(self, number: str, destination: str) -> ForwardingSettings:
        return await self.configure(number, destination=destination)

    async def set_mode(self, number: str, mode: str) -> ForwardingSettings:
        return await self.configure(number, mode=mode)

    async def start(self, number: str, destination: str | None = None) -> ForwardingSettings:
        """Forward from now on, to `destination` if given, else to the one registered;
        NoDestination when there is none (the flow then asks for one)."""
        return await self.configure(number, destination=destination, enabled=True)

    async def stop(self, number: str) -> ForwardingSettings:
        return await self.configure(number, enabled=False)

    async def configure(self, number: str, *, destination: str | None = None,
                        mode: str | None = None,
                        enabled: bool | None = None) -> ForwardingSettings:
        """Change what is given (None: unchanged), all or nothing; the settings after."""
        checked_mode = _mode(mode) if mode is not None else None
        await voice_line(self._subscribers, number)
        target = None if destination is None else other_number(
            destination, number, "forwarding destination")
        if enabled and target is None:
            current = await self._forwarding.settings(number)
            if current is None or current.destination is None:
                raise NoDestination(number)
        return await self._forwarding.update(number, destination=target, mode=checked_mode,
                                             enabled=enabled)


def _mode(mode: str) -> ForwardingMode:
    for known in FORWARDING_MODES:
        if mode == known:
            return known
    raise InvalidValue(f"forwarding mode must be 'immediate' or 'no_answer', got {mode!r}")
