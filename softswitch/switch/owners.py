"""One table from SIP identifiers to the object that owns them: an answered IVR call, a bridged
call. The core delivers each event in one lookup instead of asking every handler "is this
yours?" (DESIGN.md, "The call layer").

Keys:
- a dialog id (Call-ID, our tag, the peer's tag), for requests inside a dialog;
- a client transaction, for the responses and the timeout of a request we sent (an INVITE
  to a phone, a CANCEL, a BYE);
- an INVITE server transaction, for its CANCEL, for the ACK of its 2xx (as the endpoint
  matched it) and for a 2xx that got no ACK.

An owner takes every event of its keys through `handle` and releases its keys when it is done;
`claimed` counts them, so a leak shows.
"""

from __future__ import annotations

from typing import Protocol

from ..sip.dialog import DialogId, incoming_dialog_id
from ..sip.events import CancelReceived, Event, RequestReceived, ResponseReceived
from ..sip.transaction import ClientTransaction, ServerTransaction


class Owner(Protocol):
    def handle(self, event: Event) -> None: ...


class Owners:
    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Owner] = {}
        self._clients: dict[ClientTransaction, Owner] = {}
        self._invites: dict[ServerTransaction, Owner] = {}

    # ---- claiming -------------------------------------------------------------------------
    def claim_dialog(self, dialog_id: DialogId, owner: Owner) -> None:
        self._dialogs[dialog_id] = owner

    def claim_client(self, transaction: ClientTransaction, owner: Owner) -> None:
        self._clients[transaction] = owner

    def claim_invite(self, transaction: ServerTransaction, owner: Owner) -> None:
        self._invites[transaction] = owner

    def release_dialog(self, dialog_id: DialogId | None, owner: Owner) -> None:
        if dialog_id is not None and self._dialogs.get(dialog_id) is owner:
            del self._dialogs[dialog_id]

    def release_client(self, transaction: ClientTransaction, owner: Owner) -> None:
        if self._clients.get(transaction) is owner:
            del self._clients[transaction]

    def release_invite(self, transaction: ServerTransaction, owner: Owner) -> None:
        if self._invites.get(transaction) is owner:
            del self._invites[transaction]

    def owner_of_dialog(self, dialog_id: DialogId) -> Owner | None:
        return self._dialogs.get(dialog_id)

    @property
    def claimed(self) -> int:
        return len(self._dialogs) + len(self._clients) + len(self._invites)

    # ---- delivering -----------------------------------------------------------------------
    def dispatch(self, event: Event) -> bool:
        """Hand `event` to its owner; False when nobody owns it."""
        owner: Owner | None
        if isinstance(event, RequestReceived):
            owner = None if event.invite is None else self._invites.get(event.invite)
            if owner is None:
                dialog_id = incoming_dialog_id(event.request)
                owner = None if dialog_id is None else self._dialogs.get(dialog_id)
        elif isinstance(event, ResponseReceived):
            owner = self._clients.get(event.transaction)
        elif isinstance(event, CancelReceived):
            owner = self._invites.get(event.transaction)
        elif isinstance(event.transaction, ClientTransaction):  # TransactionTimedOut
            owner = self._clients.get(event.transaction)
        else:
            owner = self._invites.get(event.transaction)
        if owner is None:
            return False
        owner.handle(event)
        return True

