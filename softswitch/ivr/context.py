"""What a service flow is given besides its call, and how it makes a change.

Changes are made by one service call each, after the caller's last confirmation
(`Guidance.commit`): hanging up before it leaves nothing changed, and after it the change
completes, and remote control's audit line of it is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import MenusConfig
from ..services import Services
from ..services.model import Line
from .guidance import Guidance


@dataclass(slots=True, frozen=True)
class FlowContext:
    """What the service flows are given besides the call."""

    services: Services
    menus: MenusConfig
    staging: Path  # recordings in progress (a personal greeting) before they are kept
    disconnect_after: int  # failed number + PIN entries that end a remote-control call

    def line(self, number: str) -> Line | None:
        """The subscriber's line as routing sees it (None: no such subscriber)."""
        view = self.services.directory.callee(number)
        return None if view is None else view.line


# A flow acting on one subscriber's line: the guidance, the context, the subscriber.
LineFlow = Callable[[Guidance, FlowContext, str], Awaitable[None]]

