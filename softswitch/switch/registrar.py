"""The registrar (RFC 3261 §10.3): digest-authenticated REGISTER, bindings with expiry.

Bindings are served from memory and written to the store by group commit: REGISTERs that
arrive within one commit window share one transaction, and each 200 OK is sent only after
the commit that holds its binding, so a crash loses no binding that was acknowledged.

Several instances may share one store: a REGISTER writes only the contacts it names, and the
store returns the AOR's bindings as stored after the commit, other instances' contacts
included; those are what memory then holds and what the 200 lists. Bindings other instances
write reach memory through `reload`, which the subscriber directory calls from its change
feed polls. Each AOR in memory remembers the feed position it is as of, so that an older read
(a reload that raced a commit) never replaces a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate

from ..config import RegistrarConfig
from ..numbering import normalise_number
from ..sip.events import Peer
from ..sip.headers import MAX_EXPIRES, HeaderError, NameAddr, parse_int
from ..sip.message import Request, Response, make_response
from ..sip.uri import SipUri
from ..store.store import BindingChange, BindingRow, Store, StoredBindings
from .auth import Rejected, SipAuthenticator

log = logging.getLogger(__name__)

MAX_CONTACTS_PER_AOR = 10
STORE_WRITE_TIMEOUT = 5.0  # seconds; a hung database gets the REGISTERs a 500, not silence


# One registered contact: aor, contact, expires_at (epoch seconds), call_id, cseq, q, source
# ("udp:127.0.0.1:5062", where the phone's REGISTER came from: its NAT binding), user_agent.
Binding = BindingRow


class RegistrationRejected(Exception):
    def __init__(self, status: int, reason: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason or str(status))
        self.status = status
        self.reason = reason
        self.headers = headers or []


Committed = Callable[[StoredBindings | Exception], None]  # told the outcome of a write


@dataclass(slots=True)
class BindingWriter:
    """Group commit: AORs changed within one window are written in one store transaction,
    then every REGISTER in the batch is told (so its 200 goes out only once durable)."""

    store: Store
    window: float = 0.02  # 20 ms: big batches under load, unnoticed by a phone
    _pending: dict[str, BindingChange] = field(default_factory=dict)
    _callbacks: list[Committed] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def submit(self, changes: Mapping[str, BindingChange], committed: Committed) -> None:
        """Queue `changes` for the next commit; `committed` is told the bindings stored after
        it, or the error. No changes: told after the commit of what is already queued."""
        pending = self._pending
        for aor, change in changes.items():
            earlier = pending.get(aor)
            pending[aor] = change if earlier is None else earlier.then(change)
        self._callbacks.append(committed)
        if self._task is None:
            self._task = asyncio.create_task(self._flush())

    async def drain(self) -> None:
        """Wait until every submitted change is written (at shutdown)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _flush(self) -> None:
        try:
            while self._pending or self._callbacks:
                await asyncio.sleep(self.window)
                batch, self._pending = self._pending, {}
                callbacks, self._callbacks = self._callbacks, []
                outcome: StoredBindings | Exception
                try:
                    async with asyncio.timeout(STORE_WRITE_TIMEOUT):
                        outcome = await self.store.write_bindings(batch)
                except Exception as error:  # the store is down: no 200 for these REGISTERs
                    log.error("writing %d bindings failed: %s", len(batch), error)
                    outcome = error
                for callback in callbacks:
                    try:
                        callback(outcome)
                    except Exception:
                        log.exception("answering a REGISTER after commit failed")
        finally:
            self._task = None


class Registrar:
    def __init__(self, *, config: RegistrarConfig, domain: str,
                 authenticator: SipAuthenticator, writer: BindingWriter,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.domain = domain
        self.authenticator = authenticator
        self.writer = writer
        self.clock = clock
        self.bindings: dict[str, dict[str, Binding]] = {}  # committed to the store
        self._positions: dict[str, int] = {}  # the feed position each AOR's bindings are as of
        self._proposed: dict[str, dict[str, Binding]] = {}  # written, not yet committed
        self._date_second = -1
        self._date_text = ""

    def load(self, stored: StoredBindings) -> None:
        """Hold the bindings read from the store (at start)."""
        for aor, rows in stored.by_aor.items():
            self._hold(aor, rows, stored.position)

    async def reload(self, aors: frozenset[str] | None) -> None:
        """Read the bindings of `aors` (None: of every AOR) from the store again, after other
        instances changed them."""
        stored = await self.writer.store.read_bindings(aors)
        reread = set(self.bindings) | set(stored.by_aor) if aors is None else aors
        for aor in reread:
            self._hold(aor, stored.by_aor.get(aor, ()), stored.position)

    def _hold(self, aor: str, rows: Sequence[BindingRow], position: int) -> None:
        """Hold `rows` as the AOR's bindings unless memory has a newer read already."""
        if position < self._positions.get(aor, 0):
            return
        self._positions[aor] = position
        if rows:
            self.bindings[aor] = {row.contact: row for row in rows}
        else:
            self.bindings.pop(aor, None)

    def contacts(self, aor: str) -> list[Binding]:
        """Live bindings of an AOR, best first (highest q, then most recent)."""
        now = self.clock()
        live = [b for b in self.bindings.get(aor, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: (-(b.q if b.q is not None else 1.0), -b.expires_at))

    def register(self, request: Request, peer: Peer, to_tag: str,
                 respond: Callable[[Response], None]) -> None:
        """Answer a REGISTER through `respond`: at once when nothing is written (challenges,
        refusals, queries), else once the store has committed the new bindings.

        The bindings in memory (what calls are routed to) change only when the store has
        committed them; until then the new set is a proposal that the next REGISTER of the
        same AOR builds on. A failed write drops the proposal and answers 500."""
        try:
            aor, change, updated = self._apply(request, peer)
        except RegistrationRejected as rejected:
            respond(make_response(request, rejected.status, rejected.reason, to_tag=to_tag,
                                  headers=rejected.headers))
            return

        def committed(outcome: StoredBindings | Exception) -> None:
            if change is not None and self._proposed.get(aor) is updated:
                del self._proposed[aor]
            if isinstance(outcome, Exception):
                respond(make_response(request, 500, "Store unavailable", to_tag=to_tag,
                                      headers=[("retry-after", "5")]))
                return
            if change is not None:
                self._hold(aor, outcome.by_aor.get(aor, ()), outcome.position)
            respond(self._ok(request, aor, to_tag))

        if change is None:
            if aor in self._proposed:
                self.writer.submit({}, committed)  # answer once the pending change is in
            else:
                respond(self._ok(request, aor, to_tag))
            return
        self._proposed[aor] = updated
        self.writer.submit({aor: change}, committed)

    async def sweep(self) -> int:
        """Delete expired bindings from the store (whichever instance wrote them) and from
        memory; returns how many rows the store deleted."""
        now = self.clock()
        removed = await self.writer.store.delete_expired_bindings(now)
        for aor, bindings in list(self.bindings.items()):
            for contact in [c for c, row in bindings.items() if row.expires_at <= now]:
                del bindings[contact]
            if not bindings:
                del self.bindings[aor]
        return removed

    # ---- the steps of RFC 3261 §10.3 -----------------------------------------------------------
    def _apply(self, request: Request, peer: Peer
               ) -> tuple[str, BindingChange | None, dict[str, Binding]]:
        """Check a REGISTER and work out the change to write (None: nothing to write) and the
        AOR's bindings as they will be after it, as far as this instance knows."""
        to = request.to
        assert to is not None  # check_request guarantees To
        if not isinstance(to.uri, SipUri) or to.uri.user is None:
            raise RegistrationRejected(400, "To is not a SIP address of record")
        # Syntax first (400; the endpoint has read the Contacts), then who is asking
        # (401/403), then the bindings.
        star = request.contact_star
        contacts = request.contacts if not star else []
        expires_header = self._expires_header(request)
        try:
            aor = normalise_number(to.uri.user_text or "")
        except ValueError:
            aor = ""  # not a number we serve; challenged all the same, never registered
        # The subscriber authenticated must be the AOR ("" never is one).
        outcome = self.authenticator.authenticate(request, peer, proxy=False,
                                                  expected_number=aor)
        if isinstance(outcome, Rejected):
            raise RegistrationRejected(outcome.status, outcome.reason, list(outcome.headers))

        current = self._proposed.get(aor, self.bindings.get(aor, {}))
        call_id = request.call_id or ""
        cseq = request.cseq.number if request.cseq else 0
        now = self.clock()

        if star:
            if expires_header != 0 or len(request.values("contact")) != 1:
                raise RegistrationRejected(400, "Contact: * needs Expires: 0 and no other Contact")
            if any(b.call_id == call_id and b.cseq >= cseq for b in current.values()):
                raise RegistrationRejected(500, "Out of order REGISTER")
            return aor, BindingChange(remove_all=True), {}

        updated = dict(current)  # validated whole before anything is written
        upserts: dict[str, Binding] = {}
        removals: set[str] = set()
        source = f"{peer.transport}:{_hostport(peer)}"
        user_agent = request.get("user-agent") or ""
        for contact in contacts:
            expires = self._expires_of(contact, expires_header)
            if 0 < expires < self.config.min_expires:
                raise RegistrationRejected(
                    423, "Interval Too Brief", [("min-expires", str(self.config.min_expires))])
            key = str(contact.uri)
            existing = current.get(key)
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                raise RegistrationRejected(500, "Out of order REGISTER")
            if expires == 0:
                updated.pop(key, None)
                upserts.pop(key, None)
                removals.add(key)
            else:
                binding = Binding(aor, key, now + min(expires, self.config.max_expires), call_id,
                                  cseq, _q_of(contact), source, user_agent)
                updated[key] = upserts[key] = binding
                removals.discard(key)
        if len(updated) > MAX_CONTACTS_PER_AOR:
            raise RegistrationRejected(403, "Too many registered contacts")
        if not contacts:
            return aor, None, updated
        return aor, BindingChange(tuple(upserts.values()), frozenset(removals)), updated

    def _expires_header(self, request: Request) -> int | None:
        try:
            return request.expires  # read once, by the endpoint's checks
        except HeaderError as error:
            raise RegistrationRejected(400, str(error)) from None

    def _expires_of(self, contact: NameAddr, expires_header: int | None) -> int:
        param = contact.params.get("expires")
        if param is not None:
            try:
                return parse_int(param, "expires", MAX_EXPIRES)
            except HeaderError:
                pass  # RFC 3261 §10.3 step 6: a bad param falls back to the header
        if expires_header is not None:
            return expires_header
        return self.config.default_expires

    def _date(self, now: float) -> str:
        """The Date header value, formatted once a second (§10.3 step 8)."""
        second = int(now)
        if second != self._date_second:
            self._date_second, self._date_text = second, formatdate(second, usegmt=True)
        return self._date_text

    def _ok(self, request: Request, aor: str, to_tag: str) -> Response:
        now = self.clock()
        headers = [("contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
                   for b in self.contacts(aor)]
        headers.append(("date", self._date(now)))
        return make_response(request, 200, to_tag=to_tag, headers=headers)


def _q_of(contact: NameAddr) -> float | None:
    value = contact.params.get("q")
    if value is None:
        return None
    try:
        q = float(value)
    except ValueError:
        raise RegistrationRejected(400, f"bad q value {value!r}") from None
    if not 0.0 <= q <= 1.0:
        raise RegistrationRejected(400, f"q value out of range {value!r}")
    return q


def _hostport(peer: Peer) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"{host}:{peer.port}"
