"""The domain: subscribers' services as async classes over repository Protocols
(softswitch.services.repositories), which softswitch.store implements. No SQL, no SIP, no audio
here. `build_services` wires them from the config; flows and the router get a `Services`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from .blocklist import BlocklistService
from .call_records import CallRecords
from .directory import SubscriberDirectory
from .errors import ServiceError
from .forwarding import ForwardingService
from .last_caller import LastCallerService
from .pin import PinService, start_pin_checks
from .remote_control import RemoteControlService
from .repositories import Repositories
from .voicemail import VoicemailService

__all__ = ["Services", "ServiceError", "build_services"]


@dataclass(slots=True)
class Services:
    directory: SubscriberDirectory
    blocklist: BlocklistService
    voicemail: VoicemailService
    forwarding: ForwardingService
    remote_control: RemoteControlService
    last_caller: LastCallerService
    call_records: CallRecords
    pin: PinService

    async def start(self) -> None:
        """Load the directory and follow the change feed, start the PIN-check processes (a
        server; the CLI needs none)."""
        await self.directory.start()
        await start_pin_checks()

    async def close(self) -> None:
        """Write what is queued (call records, last callers), stop following the feed."""
        await self.call_records.drain()
        await self.last_caller.drain()
        await self.directory.close()


def build_services(config: Config, repositories: Repositories, *,
                   clock: Callable[[], float] = time.time) -> Services:
    subscribers = repositories.subscribers
    pin = PinService(subscribers, repositories.pins, config.pin, clock=clock)
    return Services(
        directory=SubscriberDirectory(repositories.feed),
        blocklist=BlocklistService(subscribers, repositories.blocklist,
                                   max_entries=config.services.blocklist_max, clock=clock),
        voicemail=VoicemailService(subscribers, repositories.voicemail,
                                   config.services.voicemail, clock=clock),
        forwarding=ForwardingService(subscribers, repositories.forwarding),
        remote_control=RemoteControlService(subscribers, repositories.remote_control, pin,
                                            config.services.remote_control),
        last_caller=LastCallerService(repositories.last_callers, clock=clock),
        call_records=CallRecords(repositories.call_records, config.calls.cdr_file),
        pin=pin,
    )
