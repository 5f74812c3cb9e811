"""Checks every service makes: whose line, and is a number a number."""

from __future__ import annotations

from ..numbering import normalise_number
from .errors import InvalidNumber, NotAvailable, OwnNumber, UnknownSubscriber
from .model import Line
from .repositories import SubscriberRepository


async def voice_line(subscribers: SubscriberRepository, number: str) -> Line:
    """The subscriber's line; UnknownSubscriber, or NotAvailable for a data SIM."""
    line = await subscribers.line(number)
    if line is None:
        raise UnknownSubscriber(number)
    if not line.is_voice:
        raise NotAvailable(number)
    return line


def other_number(text: str, own: str, what: str) -> str:
    """A number keyed in or given for subscriber `own` (a caller to block, a forwarding
    destination), in national form; InvalidNumber, or OwnNumber if it is `own`."""
    try:
        number = normalise_number(text)
    except ValueError as error:
        raise InvalidNumber(f"{what}: {error}") from None
    if number == own:
        raise OwnNumber(own, what)
    return number
