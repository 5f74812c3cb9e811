"""SIP bindings as the store keeps them, and the per-contact changes the registrar writes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any


@dataclass(slots=True, frozen=True)
class BindingRow:
    """One registered contact of an address-of-record (the subscriber number)."""

    aor: str
    contact: str  # the Contact URI as the phone wrote it
    expires_at: float  # wall-clock epoch seconds
    call_id: str
    cseq: int
    q: float | None
    source: str  # 'udp:host:port' the REGISTER came from (the phone's NAT binding)
    user_agent: str


BINDING_FIELDS = tuple(spec.name for spec in fields(BindingRow))
binding_values: Any = attrgetter(*BINDING_FIELDS)  # a BindingRow as a tuple in column order


@dataclass(slots=True, frozen=True)
class BindingChange:
    """What one write does to one AOR's bindings, in this order: every binding removed
    (`Contact: *`), the `remove` contacts removed, the `upsert` rows added or refreshed.
    Contacts it does not name stay as they are, whoever registered them."""

    upsert: tuple[BindingRow, ...] = ()
    remove: frozenset[str] = frozenset()
    remove_all: bool = False

    def then(self, later: BindingChange) -> BindingChange:
        """One change with the effect of this one followed by `later` (group commit)."""
        if later.remove_all:
            return later
        kept = {row.contact: row for row in self.upsert if row.contact not in later.remove}
        kept.update((row.contact, row) for row in later.upsert)
        return BindingChange(tuple(kept.values()), self.remove | later.remove, self.remove_all)


@dataclass(slots=True, frozen=True)
class StoredBindings:
    """Bindings of some AORs as the store holds them, as of change feed position `position`
    (every change up to it is in; later ones may be too)."""

    position: int
    by_aor: dict[str, list[BindingRow]]  # an AOR without bindings is absent


def rows_by_aor(rows: list[tuple[Any, ...]]) -> dict[str, list[BindingRow]]:
    """Rows in column order (sorted by AOR) as BindingRows grouped by AOR."""
    grouped: dict[str, list[BindingRow]] = {}
    for row in rows:
        binding = BindingRow(*row)
        found = grouped.get(binding.aor)
        if found is None:
            grouped[binding.aor] = [binding]
        else:
            found.append(binding)
    return grouped


def checked_changes(changes: dict[str, BindingChange]) -> tuple[
        list[str], list[tuple[str, str]], list[tuple[Any, ...]]]:
    """(AORs cleared whole, (aor, contact) removals, upsert rows in column order) of a batch;
    ValueError for a row listed under another AOR."""
    cleared: list[str] = []
    removals: list[tuple[str, str]] = []
    rows: list[tuple[Any, ...]] = []
    for aor, change in changes.items():
        if change.remove_all:
            cleared.append(aor)
        removals.extend((aor, contact) for contact in change.remove)
        by_contact: dict[str, BindingRow] = {}
        for row in change.upsert:
            if row.aor != aor:
                raise ValueError(f"binding for {row.aor!r} listed under AOR {aor!r}")
            by_contact[row.contact] = row  # a contact listed twice: the last counts
        rows.extend(binding_values(row) for row in by_contact.values())
    return cleared, removals, rows
