"""Tables for subscribers and their service state (SERVICES.md), in SQLAlchemy Core.

Times are wall-clock epoch seconds (float), so several instances share one meaning.
Each subscriber has exactly one row in each per-subscriber state table (pins,
voicemail_settings, forwarding, remote_control), created at provisioning.
Portable across SQLite and PostgreSQL: no dialect-specific types.

Every write to a subscriber's state adds a row to `changes` in the same transaction: the
change feed through which every instance keeps what it holds in memory current.
New tables are added, never new columns to old ones: `create_all` brings an existing
database up to date.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NUMBER = String(11)  # national format, see softswitch.numbering
DIALLED = String(32)  # a number someone keyed in: blocked callers, forwarding destinations

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _subscriber_key() -> Column[str]:
    """The owning subscriber; its state goes when the subscriber goes."""
    return Column(
        "number", NUMBER, ForeignKey("subscribers.number", ondelete="CASCADE"), primary_key=True
    )


# Provisioned from YAML; the SIP password is kept only as digest HA1s (sip_credentials),
# the portal password only as an argon2 hash.
subscribers = Table(
    "subscribers",
    metadata,
    Column("number", NUMBER, primary_key=True),
    Column("sim", String(5), nullable=False),
    Column("line", String(1), nullable=False),
    Column("mio_id", String(64), unique=True),
    Column("email", String(254), unique=True),
    Column("portal_password_hash", Text),
    Column("name", Text),
    Column("birth_date", Date),
    Column("iccid", String(20)),
    Column("postal_address", Text),
    Column("nuisance_option", Boolean, nullable=False, default=False),  # type A paid option
    Column("provisioned_at", Double, nullable=False),  # first provisioning
    CheckConstraint("sim IN ('voice', 'data')", name="sim"),
    CheckConstraint("line IN ('D', 'A')", name="line"),
)

# The network PIN. A change made in the portal waits in pending_* until pending_apply_at.
pins = Table(
    "pins",
    metadata,
    _subscriber_key(),
    Column("pin_hash", Text, nullable=False),
    Column("failures", Integer, nullable=False, default=0),  # consecutive wrong entries
    Column("locked", Boolean, nullable=False, default=False),
    Column("pending_pin_hash", Text),
    Column("pending_apply_at", Double),
)

voicemail_settings = Table(
    "voicemail_settings",
    metadata,
    _subscriber_key(),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("ring_time", Integer, nullable=False, default=15),  # seconds before voicemail answers
)

forwarding = Table(
    "forwarding",
    metadata,
    _subscriber_key(),
    Column("destination", DIALLED),
    Column("mode", String(9), nullable=False, default="no_answer"),
    Column("active", Boolean, nullable=False, default=False),
    CheckConstraint("mode IN ('immediate', 'no_answer')", name="mode"),
)

remote_control = Table(
    "remote_control",
    metadata,
    _subscriber_key(),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("wrong_streak", Integer, nullable=False, default=0),  # consecutive wrong PINs
)

# A subscriber's blocked callers; id orders them, so "delete the last registered" is max(id).
blocklist = Table(
    "blocklist",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", NUMBER, ForeignKey("subscribers.number", ondelete="CASCADE"), nullable=False),
    Column("blocked_number", DIALLED, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("number", "blocked_number"),
)

# SIP registrations (bindings) per address-of-record, one row per registered contact.
registrations = Table(
    "registrations",
    metadata,
    Column("aor", NUMBER, ForeignKey("subscribers.number", ondelete="CASCADE"), primary_key=True),
    Column("contact", Text, primary_key=True),
    Column("expires_at", Double, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("q", Double),
    Column("source", String(64), nullable=False),  # 'udp:host:port' the REGISTER came from
    Column("user_agent", Text, nullable=False),
)

# The digest credentials of voice SIMs (data SIMs have none): one row per username a phone may
# be set up with (softswitch.credentials.username_forms: 09012345678, +819012345678, ...), as
# an HA1 = H(username:domain:password) hashes the username exactly as the phone sends it.
sip_credentials = Table(
    "sip_credentials",
    metadata,
    Column("username", String(32), primary_key=True),
    Column(
        "number", NUMBER, ForeignKey("subscribers.number", ondelete="CASCADE"), nullable=False,
        index=True,
    ),
    Column("ha1_md5", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
)

# Values the instances of one deployment share, such as the digest nonce secret, so that
# a nonce issued before a restart, or by another instance, is still recognised.
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# The change feed: one row per subscriber whose state a transaction changed, written in that
# transaction. seq never goes back (AUTOINCREMENT on SQLite; on PostgreSQL the writers
# serialise on an advisory lock), so its order is commit order.
changes = Table(
    "changes",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("number", String(32), nullable=False),  # the subscriber ('' for an instance's start)
    Column("kind", String(16), nullable=False),  # what changed: bindings, blocklist, ...
    Column("instance", String(64), nullable=False),  # the process that wrote it
    Column("at", Double, nullable=False),
    sqlite_autoincrement=True,
)

# A subscriber's recorded personal greeting (the default greeting when there is none).
voicemail_greetings = Table(
    "voicemail_greetings",
    metadata,
    _subscriber_key(),
    Column("audio_file", Text, nullable=False),  # relative to services.voicemail.audio_dir
    Column("recorded_at", Double, nullable=False),
)

voicemail_messages = Table(
    "voicemail_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", NUMBER, ForeignKey("subscribers.number", ondelete="CASCADE"),
           nullable=False, index=True),
    # Caller numbers come from the call layer as it saw them: Text, so that no length can fail
    # a message (or, below, a batch of last callers or call records) on PostgreSQL.
    Column("caller", Text),  # null: the caller withheld the number
    Column("received_at", Double, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("new", Boolean, nullable=False, default=True),  # not yet heard
    Column("audio_file", Text, nullable=False),  # relative to services.voicemail.audio_dir
)

# Each subscriber's last incoming caller (for "register the last caller" on the blocklist).
last_callers = Table(
    "last_callers",
    metadata,
    _subscriber_key(),
    Column("caller", Text),  # null: withheld
    Column("at", Double, nullable=False),
)

# One row per call attempt (calls.cdr_file has the same as JSON lines).
call_records = Table(
    "call_records",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("call_id", Text, nullable=False),
    Column("caller", Text),  # null: withheld
    Column("callee", Text, nullable=False),
    Column("outcome", String(12), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("answered_at", Double),
    Column("ended_at", Double, nullable=False),
    Column("duration", Double, nullable=False),  # seconds answered
    Column("detail", Text, nullable=False),
)

# Wrong PINs per calling source address across all subscribers, in fixed windows
# (pin.throttle): one source cannot sweep many numbers.
pin_source_failures = Table(
    "pin_source_failures",
    metadata,
    Column("source", String(64), primary_key=True),  # the caller's host address
    Column("failures", Integer, nullable=False),
    Column("window_start", Double, nullable=False),
)

# Per-subscriber state tables that provisioning fills with a default row.
SUBSCRIBER_STATE_TABLES = (pins, voicemail_settings, forwarding, remote_control)
