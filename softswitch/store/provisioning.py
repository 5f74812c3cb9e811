"""Provisioning: bring the store's subscribers in line with the config, idempotently.

Only provisioning fields (what the YAML says about a subscriber) are ever updated.
Service state the subscriber changes later (PIN, blocklist, voicemail, forwarding,
remote control, registrations) is created with defaults once and then never touched,
so re-provisioning cannot undo a subscriber's own changes. Subscribers that are in
the store but no longer in the config are left as they are.

Planning (which hashes argon2, slow on purpose) is a plain function run in a worker
thread; applying the plan is one short transaction.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Table

from softswitch.config import Config, Subscriber
from softswitch.credentials import digest_ha1, hash_secret, username_forms, verify_secret
from softswitch.store.schema import (
    SUBSCRIBER_STATE_TABLES,
    pins,
    voicemail_settings,
)

# Columns provisioning owns; everything else in the store belongs to the services.
PROVISIONED_COLUMNS = (
    "sim",
    "line",
    "mio_id",
    "email",
    "portal_password_hash",
    "name",
    "birth_date",
    "iccid",
    "postal_address",
    "nuisance_option",
)
UNIQUE_COLUMNS = ("mio_id", "email")


class ProvisioningError(Exception):
    """The config cannot be applied to the store as it is (e.g. a login taken by another)."""


@dataclass(slots=True, frozen=True)
class ProvisionSummary:
    added: tuple[str, ...]  # subscriber numbers
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged"
        )


@dataclass(slots=True)
class ProvisioningPlan:
    """The writes that make the store match the config."""

    summary: ProvisionSummary
    new_subscribers: list[dict[str, Any]]
    changed_subscribers: list[dict[str, Any]]  # 'number' plus every provisioned column
    changing_logins: list[str]  # numbers of changed subscribers whose mio_id or email changes
    state_rows: dict[Table, list[dict[str, Any]]]  # missing default state rows per table
    # sip_credentials rows to delete (by username) and to insert; deletes go first
    stale_usernames: list[str] = field(default_factory=list)
    new_credentials: list[dict[str, Any]] = field(default_factory=list)


StoredCredentials = Mapping[str, tuple[str, str, str]]  # username -> (number, HA1 MD5, SHA-256)


def plan_provisioning(
    config: Config,
    stored: Mapping[str, Row[Any]],
    numbers_with_state: Mapping[Table, set[str]],
    now: float,
    stored_credentials: StoredCredentials | None = None,
) -> ProvisioningPlan:
    """Compare the config with the stored subscribers (provisioned columns + number) and
    their SIP credentials.

    `numbers_with_state` gives, per state table, the numbers that already have a row.
    """
    _refuse_logins_taken_by_others(config, stored)
    stale_usernames, new_credentials = _credential_changes(config, stored_credentials or {})
    credentials_changed = {row["number"] for row in new_credentials} | {
        (stored_credentials or {})[username][0] for username in stale_usernames}
    added, updated, unchanged = [], [], []
    new_subscribers, changed_subscribers, changing_logins = [], [], []
    state_rows: dict[Table, list[dict[str, Any]]] = {table: [] for table in SUBSCRIBER_STATE_TABLES}
    for subscriber in config.subscribers:
        old = stored.get(subscriber.number)
        wanted = _provisioned_values(subscriber, old)
        missing_state = _missing_state_rows(subscriber, config, numbers_with_state)
        for table, row in missing_state.items():
            state_rows[table].append(row)
        if old is None:
            added.append(subscriber.number)
            new_subscribers.append({"number": subscriber.number, **wanted, "provisioned_at": now})
        elif (missing_state or subscriber.number in credentials_changed
              or any(getattr(old, name) != wanted[name] for name in wanted)):
            updated.append(subscriber.number)
            changed_subscribers.append({"number": subscriber.number, **wanted})
            if any(getattr(old, name) != wanted[name] for name in UNIQUE_COLUMNS):
                changing_logins.append(subscriber.number)
        else:
            unchanged.append(subscriber.number)
    return ProvisioningPlan(
        ProvisionSummary(tuple(added), tuple(updated), tuple(unchanged)),
        new_subscribers,
        changed_subscribers,
        changing_logins,
        state_rows,
        stale_usernames,
        new_credentials,
    )


def _credential_changes(
    config: Config, stored: StoredCredentials
) -> tuple[list[str], list[dict[str, Any]]]:
    """The sip_credentials rows of the config's subscribers that must go, and those to add:
    an HA1 pair per username form of each voice SIM; none for a data SIM. Rows of subscribers
    no longer in the config stay (app.py gives them no SIP access)."""
    realm = config.sip.domain
    wanted: dict[str, tuple[str, str, str]] = {}
    for subscriber in config.subscribers:
        password = subscriber.sip_password
        if subscriber.sim != "voice" or password is None:
            continue
        for username in username_forms(subscriber.number):
            wanted[username] = (
                subscriber.number,
                digest_ha1("MD5", username, realm, password),
                digest_ha1("SHA-256", username, realm, password),
            )
    configured = {subscriber.number for subscriber in config.subscribers}
    stale = [
        username
        for username, row in stored.items()
        if (row[0] in configured or username in wanted) and wanted.get(username) != row
    ]
    new = [
        {"username": username, "number": number, "ha1_md5": md5, "ha1_sha256": sha256}
        for username, (number, md5, sha256) in wanted.items()
        if stored.get(username) != (number, md5, sha256)
    ]
    return stale, new


def _refuse_logins_taken_by_others(config: Config, stored: Mapping[str, Row[Any]]) -> None:
    """A mioID or email of a subscriber no longer in the config cannot be given to another."""
    configured = {subscriber.number for subscriber in config.subscribers}
    for column in UNIQUE_COLUMNS:
        owners = {
            getattr(row, column): number
            for number, row in stored.items()
            if number not in configured and getattr(row, column) is not None
        }
        for subscriber in config.subscribers:
            value = getattr(subscriber, column)
            if value in owners:
                raise ProvisioningError(
                    f"{column} {value!r} of subscriber {subscriber.number} belongs to subscriber "
                    f"{owners[value]} in the store, who is no longer in the config"
                )


def _provisioned_values(subscriber: Subscriber, old: Row[Any] | None) -> dict[str, Any]:
    return {
        "sim": subscriber.sim,
        "line": subscriber.line,
        "mio_id": subscriber.mio_id,
        "email": subscriber.email,
        "portal_password_hash": _portal_password_hash(subscriber.portal_password, old),
        "name": subscriber.name,
        "birth_date": subscriber.birth_date,
        "iccid": subscriber.iccid,
        "postal_address": subscriber.postal_address,
        "nuisance_option": subscriber.options.nuisance_blocking,
    }


def _portal_password_hash(password: str | None, old: Row[Any] | None) -> str | None:
    """The stored hash when it still matches the password (salts differ on every hash)."""
    if password is None:
        return None
    old_hash = None if old is None else old.portal_password_hash
    if old_hash is not None and verify_secret(password, old_hash):
        return str(old_hash)
    return hash_secret(password)


def _missing_state_rows(
    subscriber: Subscriber, config: Config, numbers_with_state: Mapping[Table, set[str]]
) -> dict[Table, dict[str, Any]]:
    """Default service state for the tables where the subscriber has no row yet."""
    rows: dict[Table, dict[str, Any]] = {}
    for table in SUBSCRIBER_STATE_TABLES:
        if subscriber.number in numbers_with_state[table]:
            continue
        row: dict[str, Any] = {"number": subscriber.number}  # other columns: their defaults
        if table is pins:
            row["pin_hash"] = hash_secret(subscriber.network_pin)
        elif table is voicemail_settings:
            row["ring_time"] = config.services.voicemail.default_ring_time
        rows[table] = row
    return rows
