"""What the store's readers run for the directory and the registrar, as SQL text both SQLite
and PostgreSQL accept (only the placeholders differ), and the rows turned into the domain's
values. The readers (softswitch.store.fast_sqlite, softswitch.store.fast_postgres) run these
on connections of their own, outside SQLAlchemy: a feed poll runs a few hundred times a
second, and through SQLAlchemy it would cost ten times the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from softswitch.services.feed import VIEW_KINDS, Change, FeedPoll
from softswitch.services.model import CalleeView, ForwardingSettings, Line, VoicemailSettings
from softswitch.store.bindings import BINDING_FIELDS

DEFAULT_RING_TIME = 15  # provisioning writes every state row; this only covers a missing one

FEED_POSITION = "SELECT coalesce(max(seq), 0) FROM changes"
VIEWS = """SELECT s.number, s.sim, s.line, s.nuisance_option, v.enabled, v.ring_time,
 g.number IS NOT NULL, f.active, f.destination, f.mode, r.enabled
FROM subscribers s
LEFT JOIN voicemail_settings v ON v.number = s.number
LEFT JOIN voicemail_greetings g ON g.number = s.number
LEFT JOIN forwarding f ON f.number = s.number
LEFT JOIN remote_control r ON r.number = s.number"""
BLOCKLISTS = "SELECT number, blocked_number FROM blocklist"
FEED = "SELECT seq, number, kind, instance FROM changes WHERE seq >= {after} ORDER BY seq"
BINDINGS = f"SELECT {', '.join(BINDING_FIELDS)} FROM registrations"

Rows = Sequence[Sequence[Any]]


def callee_view(row: Sequence[Any], blocked: Iterable[str]) -> CalleeView:
    """A row of VIEWS and the subscriber's blocked numbers as a CalleeView; a data SIM has
    every voice service off, whatever its state rows say."""
    (number, sim, line_type, option, voicemail_on, ring_time, has_greeting, forwarding_on,
     destination, mode, remote_control_on) = row
    line = Line(number, sim, line_type, bool(option))
    voice = line.is_voice
    return CalleeView(
        line=line,
        blocklist=frozenset(blocked),
        voicemail=VoicemailSettings(
            voice and bool(voicemail_on),
            DEFAULT_RING_TIME if ring_time is None else int(ring_time), bool(has_greeting)),
        forwarding=ForwardingSettings(voice and bool(forwarding_on), destination,
                                      mode or "no_answer"),
        remote_control=voice and bool(remote_control_on),
    )


def build_views(view_rows: Rows, blocked_rows: Rows) -> dict[str, CalleeView]:
    blocked: dict[str, list[str]] = {}
    for number, caller in blocked_rows:
        blocked.setdefault(number, []).append(caller)
    return {row[0]: callee_view(row, blocked.get(row[0], ())) for row in view_rows}


def changes_after(feed_rows: Rows, after: int) -> list[Change] | None:
    """The changes among the feed rows at and after position `after`; None if the row at
    `after` is gone (pruned: rows after it may have gone unseen too)."""
    if after and (not feed_rows or feed_rows[0][0] != after):
        return None
    return [Change(*row) for row in feed_rows if row[0] != after]


def view_numbers(found: list[Change] | None) -> list[str]:
    """The subscribers whose routing state the changes changed."""
    return sorted({change.number for change in found or () if change.kind in VIEW_KINDS})


def polled(found: list[Change] | None, touched: list[str],
           views: dict[str, CalleeView]) -> FeedPoll:
    """The poll's answer: the changes, and the fresh views of the `touched` subscribers (None
    for a number that is no longer a subscriber)."""
    if found is None:
        return FeedPoll(True, [], {})
    fresh: dict[str, CalleeView | None] = dict.fromkeys(touched)
    fresh.update(views)
    return FeedPoll(False, found, fresh)
