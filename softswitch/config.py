"""YAML configuration -> frozen, typed, validated dataclasses.

Every mistake in the file becomes a ConfigError that names the file, the field path,
the problem and, when known, the line:

    config/softswitch.yaml: subscribers[2].sim: must be 'voice' or 'data', got 'vocie'
        (line 38)

Secrets are never quoted back: a bad PIN or password is named by its field only.

Unknown keys are errors, so a misspelt key never silently falls back to its default.
Relative paths (the SQLite file in store.url, services.voicemail.audio_dir,
media.prompts_dir) are relative to the working directory softswitch is started in,
not to the config file.
"""

import dataclasses
import difflib
import functools
import ipaddress
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn

import yaml

from softswitch.numbering import normalise_number

SimType = Literal["voice", "data"]
LineType = Literal["D", "A"]
Transport = Literal["udp", "tcp"]
DigestAlgorithm = Literal["SHA-256", "MD5"]
Language = Literal["ja", "en"]
SilencePolicy = Literal["suppress", "send"]

DAY_SECONDS = 24 * 60 * 60
# The voice menus read counts (blocked numbers, messages) aloud up to this many
# (softswitch.media.prompts.NUMBER_MAX).
COUNT_READ_OUT_MAX = 199


class ConfigError(Exception):
    """A problem in the config file, with the file, the field path and the line."""

    def __init__(self, file: str, problem: str, field: str | None = None, line: int | None = None):
        self.file = file
        self.problem = problem
        self.field = field
        self.line = line
        if field:
            message = f"{file}: {field}: {problem}"
            if line is not None:
                message += f" (line {line})"
        elif line is not None:
            message = f"{file}: line {line}: {problem}"
        else:
            message = f"{file}: {problem}"
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# The configuration, one dataclass per section. Defaults here are the only defaults.


@dataclass(slots=True, frozen=True)
class ListenAddress:
    host: str  # an IP address; IPv6 without brackets
    port: int  # 0 lets the system pick a free port (tests)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(slots=True, frozen=True)
class RegistrarConfig:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600


@dataclass(slots=True, frozen=True)
class DigestAuthConfig:
    nonce_lifetime: int = 300
    # MD5 alone by default: SIPp and many phones read only the first challenge and compute
    # only MD5, and some refuse a whole 401 that names an algorithm they do not know.
    algorithms: tuple[DigestAlgorithm, ...] = ("MD5",)  # offered in this order
    # Signs the stateless nonces; None: a random one kept in the store, shared by every
    # instance on it. A nonce is accepted only by the instance that issued it, in the same run
    # (another's is answered stale), so that no nonce count can be replayed.
    secret: bytes | None = field(default=None, repr=False)


@dataclass(slots=True, frozen=True)
class SipConfig:
    domain: str  # also the digest realm
    listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 5060),)
    transports: tuple[Transport, ...] = ("udp", "tcp")
    max_message_size: int = 65535
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    auth: DigestAuthConfig = field(default_factory=DigestAuthConfig)
    user_agent: str = "softswitch/0.1"
    # Sources (a carrier interconnect, the load balancer in front of us) that may assert the
    # caller in P-Asserted-Identity and are not challenged; addresses or CIDR blocks.
    trusted_peers: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Trusted peers that authenticate our subscribers' phones themselves (a load balancer
    # doing digest): a caller they assert is on their own line (the dial codes work). A peer
    # only in trusted_peers asserts who calls, never a subscriber's own services.
    subscriber_peers: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Numbers anyone may call without authenticating; None: the remote-access number and the
    # DTMF test number (dial_codes.remote_access, dial_codes.dtmf_test).
    public_numbers: tuple[str, ...] | None = None


@dataclass(slots=True, frozen=True, repr=False)
class StoreConfig:
    # 'sqlite+aiosqlite:///relative/path.db', 'sqlite+aiosqlite:////absolute/path.db'
    # or 'postgresql+asyncpg://user:password@host/dbname' (the config may say 'sqlite:///...',
    # 'postgresql://...' or 'postgres://...': mapped to these drivers when read)
    url: str = "sqlite+aiosqlite:///var/softswitch.db"

    def __repr__(self) -> str:  # without the database password
        from sqlalchemy.engine import make_url  # here: the domain imports config, not SQL

        return f"StoreConfig(url={make_url(self.url).render_as_string(hide_password=True)!r})"


@dataclass(slots=True, frozen=True)
class SourceFailuresConfig:
    """Failed authentications per source address, all accounts (Kamailio pike, fail2ban): past
    `max_failures` within `window_seconds`, the source's REGISTER and INVITE are refused
    without digest work for `ban_seconds`."""

    max_failures: int = 10
    window_seconds: int = 60
    ban_seconds: int = 900


@dataclass(slots=True, frozen=True)
class AccountFailuresConfig:
    """Failed authentications per account, all sources: past `max_failures` within
    `window_seconds` the account is under attack, and only addresses that authenticated as it
    within `known_source_seconds` may still try (its owner is not locked out)."""

    max_failures: int = 20
    window_seconds: int = 600
    known_source_seconds: int = 7 * 24 * 60 * 60


@dataclass(slots=True, frozen=True)
class CallsPerSourceConfig:
    """Calls one source address may hold at once: INVITEs not yet answered and ACKed, and
    calls to public numbers by a caller who did not authenticate (each holds an RTP port)."""

    max_unconfirmed: int = 20
    max_unauthenticated: int = 10


@dataclass(slots=True, frozen=True)
class TcpLimitsConfig:
    max_connections_per_source: int = 64
    header_timeout_seconds: float = 10.0  # a message must be complete within this long
    idle_timeout_seconds: int = 600


@dataclass(slots=True, frozen=True)
class SecurityConfig:
    source_failures: SourceFailuresConfig = field(default_factory=SourceFailuresConfig)
    account_failures: AccountFailuresConfig = field(default_factory=AccountFailuresConfig)
    calls_per_source: CallsPerSourceConfig = field(default_factory=CallsPerSourceConfig)
    tcp: TcpLimitsConfig = field(default_factory=TcpLimitsConfig)


AnonymousPolicy = Literal["allow", "reject"]


@dataclass(slots=True, frozen=True)
class CallsConfig:
    max_forwarding_hops: int = 5  # a forwarding chain longer than this stops (482)
    # A caller who withholds the number (anonymous From, Privacy: id): allow, or reject with
    # 433 Anonymity Disallowed (RFC 5079).
    anonymous_callers: AnonymousPolicy = "allow"
    cdr_file: Path | None = Path("var/cdr.jsonl")  # call records as JSON lines; None: store only
    # Where calls to numbers that are neither subscribers nor codes go ('host:port' of a
    # gateway); None: 404, nothing is ever dialled out.
    outbound_route: ListenAddress | None = None


@dataclass(slots=True, frozen=True)
class PinThrottleConfig:
    """Wrong PINs counted per source address, across all subscribers (toll-fraud defence)."""

    max_failures: int = 10
    window_seconds: int = 600


@dataclass(slots=True, frozen=True)
class PinConfig:
    default: str = "1234"
    max_failures: int = 5  # consecutive wrong PINs that lock a subscriber's PIN
    throttle: PinThrottleConfig = field(default_factory=PinThrottleConfig)


@dataclass(slots=True, frozen=True)
class MediaConfig:
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    language: Language = "ja"
    prompts_dir: Path | None = None  # None: the prompts shipped with softswitch
    # While no prompt plays: "suppress" sends only a silence frame every keepalive_seconds
    # (NAT bindings, RTP-inactivity timers); "send" sends one every 20 ms, for peers that
    # need a continuous stream.
    silence: SilencePolicy = "suppress"
    keepalive_seconds: float = 1.0


@dataclass(slots=True, frozen=True)
class DialCodes:
    voicemail_start: str = "1411"
    voicemail_stop: str = "1410"
    voicemail_playback: str = "1417"
    voicemail_settings: str = "1419"
    forwarding_start: str = "1421"
    forwarding_stop: str = "1420"
    forwarding_settings: str = "1429"
    blocklist_register_last: str = "1442"
    blocklist_menu: str = "144"
    # docomo's own remote-access number is a full phone number; any digits not used
    # by another code or a subscriber will do.
    remote_access: str = "1400"
    dtmf_test: str = "1999"


# The keys inside each service's voice menu (SERVICES.md, "Menus, key by key"). The shipped
# prompts say these defaults: whoever changes a key changes the prompts too (media.prompts_dir).
DTMF_MENU_KEYS = "0123456789*#"


@dataclass(slots=True, frozen=True)
class ConfirmKeys:
    """After a read-back: confirm or key it again (a recorded greeting: keep or record again;
    delete all: confirm)."""

    accept: str = "1"
    retry: str = "2"


@dataclass(slots=True, frozen=True)
class BlocklistMenuKeys:
    """144, after the PIN."""

    register: str = "1"
    count: str = "2"
    delete_last: str = "3"
    delete_all: str = "4"


@dataclass(slots=True, frozen=True)
class PlaybackKeys:
    """After each voicemail message (1417; remote control 3 and 4)."""

    replay: str = "1"
    delete: str = "7"
    save: str = "9"
    next: str = "#"


@dataclass(slots=True, frozen=True)
class VoicemailSettingsKeys:
    """1419; remote control 5."""

    ring_time: str = "1"
    record_greeting: str = "2"
    default_greeting: str = "3"


@dataclass(slots=True, frozen=True)
class ForwardingSettingsKeys:
    """1429; remote control 7 offers the destination and the mode."""

    destination: str = "1"
    mode: str = "2"
    remote_control: str = "3"


@dataclass(slots=True, frozen=True)
class ForwardingModeKeys:
    immediate: str = "1"
    no_answer: str = "2"


@dataclass(slots=True, frozen=True)
class RemoteControlSwitchKeys:
    """1429 3: remote control on or off."""

    enable: str = "1"
    disable: str = "2"


@dataclass(slots=True, frozen=True)
class RemoteMenuKeys:
    """The remote-control menu, after the subscriber's number and PIN."""

    voicemail_on: str = "1"
    voicemail_off: str = "2"
    new_messages: str = "3"
    saved_messages: str = "4"
    voicemail_settings: str = "5"
    ring_time: str = "6"
    forwarding_settings: str = "7"
    forwarding_on: str = "8"
    forwarding_off: str = "9"


@dataclass(slots=True, frozen=True)
class MenusConfig:
    end: str = "#"  # ends a number, a PIN, a ring time
    repeat: str = "*"  # says the menu again
    confirm: ConfirmKeys = field(default_factory=ConfirmKeys)
    blocklist: BlocklistMenuKeys = field(default_factory=BlocklistMenuKeys)
    playback: PlaybackKeys = field(default_factory=PlaybackKeys)
    voicemail_settings: VoicemailSettingsKeys = field(default_factory=VoicemailSettingsKeys)
    forwarding_settings: ForwardingSettingsKeys = field(default_factory=ForwardingSettingsKeys)
    forwarding_mode: ForwardingModeKeys = field(default_factory=ForwardingModeKeys)
    remote_control_switch: RemoteControlSwitchKeys = field(
        default_factory=RemoteControlSwitchKeys)
    remote: RemoteMenuKeys = field(default_factory=RemoteMenuKeys)


@functools.cache  # the menus are frozen: worked out once, not at every menu of every call
def menu_keys(keys: Any) -> Mapping[str, str]:
    """A menu's choices, key -> the choice's name, from one of the *Keys dataclasses above."""
    return MappingProxyType(
        {getattr(keys, spec.name): spec.name for spec in dataclasses.fields(keys)})


@dataclass(slots=True, frozen=True)
class VoicemailConfig:
    max_messages: int = 20
    max_seconds: int = 180
    retention_hours: int = 72
    default_ring_time: int = 15  # seconds, 0..120
    audio_dir: Path = Path("var/voicemail")


@dataclass(slots=True, frozen=True)
class RemoteControlConfig:
    disconnect_after: int = 3  # failed number + PIN entries that end a remote-access call
    disable_after: int = 4  # consecutive wrong PINs that switch remote control off


@dataclass(slots=True, frozen=True)
class ServicesConfig:
    blocklist_max: int = 30
    voicemail: VoicemailConfig = field(default_factory=VoicemailConfig)
    remote_control: RemoteControlConfig = field(default_factory=RemoteControlConfig)
    pin_change_delay_seconds: int = 4 * DAY_SECONDS


@dataclass(slots=True, frozen=True)
class SubscriberOptions:
    nuisance_blocking: bool = False  # type A's paid option; free and always on for type D


@dataclass(slots=True, frozen=True)
class Subscriber:
    number: str  # national format, e.g. '09012345678'
    sim: SimType
    line: LineType
    # Secrets stay out of repr() so that logging a config never leaks them.
    network_pin: str = field(repr=False)  # given at first provisioning; pin.default unless set
    sip_password: str | None = field(default=None, repr=False)  # voice SIMs only
    mio_id: str | None = None
    email: str | None = None  # lower case
    portal_password: str | None = field(default=None, repr=False)
    name: str | None = None
    birth_date: date | None = None
    iccid: str | None = None
    postal_address: str | None = None
    options: SubscriberOptions = field(default_factory=SubscriberOptions)


@dataclass(slots=True, frozen=True)
class Config:
    sip: SipConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    pin: PinConfig = field(default_factory=PinConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    dial_codes: DialCodes = field(default_factory=DialCodes)
    menus: MenusConfig = field(default_factory=MenusConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    subscribers: tuple[Subscriber, ...] = ()
    log_level: str = "info"

    @property
    def public_numbers(self) -> frozenset[str]:
        """What anyone may call without authenticating (sip.public_numbers)."""
        if self.sip.public_numbers is not None:
            return frozenset(self.sip.public_numbers)
        return frozenset((self.dial_codes.remote_access, self.dial_codes.dtmf_test))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML config file; ConfigError says what is wrong and where."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(file, "is a directory, not a config file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(file, f"is not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(file, f"cannot be read: {error.strerror}") from None
    return parse_config(text, file)


def parse_config(text: str, file: str = "<config>") -> Config:
    """Validate YAML text; `file` names it in errors."""
    try:
        root = _parse_yaml(text)
        return _read_config(root)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if mark is None:
            raise ConfigError(file, f"YAML syntax error: {problem}") from None
        raise ConfigError(
            file, f"YAML syntax error at column {mark.column + 1}: {problem}", line=mark.line + 1
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(file, f"YAML syntax error: {error}") from None
    except _Invalid as error:
        raise ConfigError(file, error.problem, error.path or None, error.line) from None


# ---------------------------------------------------------------------------------------------
# YAML with positions: every value keeps its line, and plain scalars keep their source text so
# that '0123' stays a PIN instead of becoming the octal number 83.


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so birth dates are checked with a field path."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(slots=True)
class _Node:
    value: Any  # dict[str, _Node], list[_Node] or a scalar
    line: int
    text: str | None  # a plain scalar as written


class _Invalid(Exception):
    def __init__(self, path: str, problem: str, line: int | None):
        super().__init__(problem)
        self.path = path
        self.problem = problem
        self.line = line


def _parse_yaml(text: str) -> _Node | None:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return None if root is None else _to_node(loader, root, "")
    finally:
        loader.dispose()


_PLAIN_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _mapping_key(loader: _Loader, key_node: yaml.Node, path: str) -> str:
    key = loader.construct_object(key_node)
    if not isinstance(key, str):
        raise _Invalid(path, f"keys must be names, got {key!r}", key_node.start_mark.line + 1)
    return key


def _to_node(loader: _Loader, node: yaml.Node, path: str) -> _Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
        raise _Invalid(path, f"unsupported YAML tag {node.tag!r}", line)
    if isinstance(node, yaml.MappingNode):
        written: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = _mapping_key(loader, key_node, path)
            if key in written:
                raise _Invalid(_join(path, key), "appears twice", key_node.start_mark.line + 1)
            written.add(key)
        loader.flatten_mapping(node)  # merge keys ('<<: *first'): merged pairs come first
        items: dict[str, _Node] = {}
        for key_node, value_node in node.value:  # so a written key overrides a merged one
            key = _mapping_key(loader, key_node, path)
            items[key] = _to_node(loader, value_node, _join(path, key))
        return _Node(items, line, None)
    if isinstance(node, yaml.SequenceNode):
        return _Node(
            [_to_node(loader, item, f"{path}[{index}]") for index, item in enumerate(node.value)],
            line,
            None,
        )
    text = node.value if isinstance(node, yaml.ScalarNode) and node.style is None else None
    try:
        value = loader.construct_object(node)
    except (ValueError, TypeError, KeyError, AttributeError):  # a tag that does not fit: !!int x
        # PyYAML's message would quote the value, which may be a PIN.
        raise _Invalid(path, f"is not a valid {node.tag.rsplit(':', 1)[-1]}", line) from None
    return _Node(value, line, text)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


Parser = Callable[[_Node, str], Any]


@dataclass(slots=True)
class _Mapping:
    """One YAML mapping being read: knows its path and where each key is."""

    path: str
    line: int | None
    items: dict[str, _Node]

    @classmethod
    def of(cls, node: _Node | None, path: str) -> "_Mapping":
        if node is None or node.value is None:  # an absent or empty section: all defaults
            return cls(path, None if node is None else node.line, {})
        if not isinstance(node.value, dict):
            raise _Invalid(path, f"must be a mapping of keys, got {_kind(node.value)}", node.line)
        return cls(path, node.line, node.value)

    def parse(
        self, parsers: Mapping[str, Parser], required: Collection[str] = ()
    ) -> dict[str, Any]:
        """Parse the keys present (null counts as absent); unknown keys are errors."""
        for key, given in self.items.items():
            if key not in parsers:
                close = difflib.get_close_matches(key, list(parsers), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"expected {', '.join(parsers)}"
                raise _Invalid(_join(self.path, key), f"unknown key; {hint}", given.line)
        values: dict[str, Any] = {}
        for key, parse in parsers.items():
            node = self.items.get(key)
            if node is None or node.value is None:
                if key in required:
                    self.fail(key, "is required")
                continue
            values[key] = parse(node, _join(self.path, key))
        return values

    def fail(self, key: str, problem: str) -> NoReturn:
        node = self.items.get(key)
        raise _Invalid(_join(self.path, key), problem, self.line if node is None else node.line)


# ---------------------------------------------------------------------------------------------
# Value parsers: each takes a node and its path, returns a typed value or raises _Invalid.


def _scalar_text(node: _Node, path: str) -> str:
    if isinstance(node.value, dict | list):
        raise _Invalid(path, f"must be a single value, got {_kind(node.value)}", node.line)
    return node.text if node.text is not None else str(node.value)


def _text(node: _Node, path: str) -> str:
    text = _scalar_text(node, path).strip()
    if not text:
        raise _Invalid(path, "must not be empty", node.line)
    return text


def _integer(minimum: int, maximum: int) -> Parser:
    def parse(node: _Node, path: str) -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, f"must be a whole number, got {_kind(value)}", node.line)
        if not minimum <= value <= maximum:
            raise _Invalid(path, f"must be between {minimum} and {maximum}, got {value}", node.line)
        return value

    return parse


def _seconds(maximum: float) -> Parser:
    """A number of seconds above 0, whole or fractional, up to `maximum`."""

    def parse(node: _Node, path: str) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(path, f"must be a number of seconds, got {_kind(value)}", node.line)
        if not 0 < value <= maximum:  # NaN fails this too
            raise _Invalid(
                path, f"must be above 0 and at most {maximum:g} seconds, got {value}", node.line
            )
        return float(value)

    return parse


def _boolean(node: _Node, path: str) -> bool:
    if not isinstance(node.value, bool):
        raise _Invalid(path, f"must be true or false, got {_kind(node.value)}", node.line)
    return node.value


def _choice(*options: str) -> Parser:
    """One of `options`, matched without regard to case and returned as spelt in `options`."""

    def parse(node: _Node, path: str) -> str:
        text = _scalar_text(node, path)
        for option in options:
            if text.strip().lower() == option.lower():
                return option
        expected = " or ".join(repr(option) for option in options)
        raise _Invalid(path, f"must be {expected}, got {text!r}", node.line)

    return parse


def _choice_list(*options: str) -> Parser:
    """A non-empty list of distinct `options` (a single value is a list of one)."""
    one = _choice(*options)

    def parse(node: _Node, path: str) -> tuple[str, ...]:
        items = node.value if isinstance(node.value, list) else [node]
        chosen = tuple(one(item, f"{path}[{index}]") for index, item in enumerate(items))
        if not chosen:
            raise _Invalid(path, "must name at least one of " + ", ".join(options), node.line)
        if len(set(chosen)) != len(chosen):
            raise _Invalid(path, f"lists a value twice: {list(chosen)}", node.line)
        return chosen

    return parse


def _digits(count: int | tuple[int, int], *, secret: bool = False) -> Parser:
    """Decimal digits. A `secret` (a PIN) is not quoted back: errors reach terminals and logs."""
    low, high = (count, count) if isinstance(count, int) else count
    size = f"exactly {low}" if low == high else f"{low} to {high}"

    def parse(node: _Node, path: str) -> str:
        text = _scalar_text(node, path).strip()
        if not (text.isascii() and text.isdigit() and low <= len(text) <= high):
            got = "" if secret else f", got {text!r}"
            raise _Invalid(path, f"must be {size} digits{got}", node.line)
        return text

    return parse


_pin = _digits(4, secret=True)


def _phone_number(node: _Node, path: str) -> str:
    try:
        return normalise_number(_scalar_text(node, path))
    except ValueError as error:
        raise _Invalid(path, str(error), node.line) from None


def _secret(node: _Node, path: str) -> str:
    """A password exactly as written: surrounding spaces are part of it."""
    secret = _scalar_text(node, path)
    if not secret:
        raise _Invalid(path, "must not be empty", node.line)
    return secret


def _path(node: _Node, path: str) -> Path:
    return Path(_text(node, path))


def _path_or_off(node: _Node, path: str) -> Path | None:
    """A path, or false for none."""
    if node.value is False:
        return None
    return _path(node, path)


def _existing_directory(node: _Node, path: str) -> Path:
    directory = _path(node, path)
    if not directory.is_dir():
        raise _Invalid(path, f"no such directory: {str(directory)!r}", node.line)
    return directory


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _domain(node: _Node, path: str) -> str:
    domain = _text(node, path).lower()
    if not _HOSTNAME.fullmatch(domain):
        raise _Invalid(
            path, f"must be a domain name such as 'example.net', got {domain!r}", node.line
        )
    return domain


_HOST_PORT = re.compile(
    r"\[(?P<ipv6>[^\[\]]+)\]:(?P<port6>[0-9]+)|(?P<ipv4>[^:\[\]]+):(?P<port4>[0-9]+)"
)


def _listen_address(node: _Node, path: str) -> ListenAddress:
    text = _text(node, path)
    match = _HOST_PORT.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        host = (
            ipaddress.IPv6Address(match["ipv6"])
            if match["ipv6"]
            else ipaddress.IPv4Address(match["ipv4"])
        )
        port = int(match["port6"] or match["port4"])
    except ValueError:
        raise _Invalid(
            path,
            f"must be 'IPv4:port' or '[IPv6]:port' such as '127.0.0.1:5060' or '[::1]:5060', "
            f"got {text!r}",
            node.line,
        ) from None
    if port > 65535:
        raise _Invalid(path, f"port must be at most 65535, got {port}", node.line)
    return ListenAddress(str(host), port)


def _listen_addresses(node: _Node, path: str) -> tuple[ListenAddress, ...]:
    items = node.value if isinstance(node.value, list) else [node]
    if not items:
        raise _Invalid(path, "must give at least one address", node.line)
    addresses: list[ListenAddress] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]" if isinstance(node.value, list) else path
        address = _listen_address(item, item_path)
        if address in addresses:
            raise _Invalid(item_path, f"{address} is listed twice", item.line)
        addresses.append(address)
    return tuple(addresses)


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MIO_ID = re.compile(r"[A-Za-z0-9._-]{3,64}")


def _email(node: _Node, path: str) -> str:
    email = _text(node, path).lower()
    if not _EMAIL.fullmatch(email):
        raise _Invalid(path, f"must be an email address, got {email!r}", node.line)
    return email


def _mio_id(node: _Node, path: str) -> str:
    mio_id = _text(node, path)
    if not _MIO_ID.fullmatch(mio_id):
        raise _Invalid(
            path, f"must be 3 to 64 letters, digits, '.', '_' or '-', got {mio_id!r}", node.line
        )
    return mio_id


def _birth_date(node: _Node, path: str) -> date:
    text = _text(node, path)
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        born = date.fromisoformat(text)
    except ValueError:
        raise _Invalid(
            path, f"must be a real date written YYYY-MM-DD, got {text!r}", node.line
        ) from None
    if born > date.today():
        raise _Invalid(path, f"is in the future: {text}", node.line)
    return born


# ---------------------------------------------------------------------------------------------
# Sections.


def _read_config(root: _Node | None) -> Config:
    if root is not None and root.value is not None and not isinstance(root.value, dict):
        raise _Invalid("", "the file must be a mapping of sections (sip, store, ...)", root.line)
    top = _Mapping.of(root, "")
    values = top.parse(
        {
            "sip": _read_sip,
            "store": _read_store,
            "pin": _read_pin,
            "media": _read_media,
            "dial_codes": _read_dial_codes,
            "menus": _read_menus,
            "services": _read_services,
            "security": _read_security,
            "calls": _read_calls,
            "subscribers": _read_subscriber_list,
            "log_level": _choice("debug", "info", "warning", "error", "critical"),
        },
        required={"sip"},
    )
    entries: list[_SubscriberEntry] = values.pop("subscribers", [])
    config = Config(**values)
    return dataclasses.replace(config, subscribers=_build_subscribers(entries, config))


def _read_sip(node: _Node, path: str) -> SipConfig:
    values = _Mapping.of(node, path).parse(
        {
            "domain": _domain,
            "listen": _listen_addresses,
            "transports": _choice_list("udp", "tcp"),
            "max_message_size": _integer(1024, 1 << 20),
            "registrar": _read_registrar,
            "auth": _read_auth,
            "user_agent": _text,
            "trusted_peers": _networks,
            "subscriber_peers": _networks,
            "public_numbers": _public_numbers,
        },
        required={"domain"},
    )
    return SipConfig(**values)


def _networks(node: _Node, path: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or CIDR blocks ('192.0.2.10', '198.51.100.0/24', '2001:db8::/32')."""
    items = node.value if isinstance(node.value, list) else [node]
    networks = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]" if isinstance(node.value, list) else path
        text = _text(item, item_path)
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise _Invalid(
                item_path, f"must be an IP address or a CIDR block such as '192.0.2.0/24', "
                f"got {text!r}", item.line) from None
    return tuple(networks)


def _public_numbers(node: _Node, path: str) -> tuple[str, ...]:
    items = node.value if isinstance(node.value, list) else [node]
    return tuple(_digits((3, 11))(item, f"{path}[{index}]") for index, item in enumerate(items))


def _read_registrar(node: _Node, path: str) -> RegistrarConfig:
    section = _Mapping.of(node, path)
    seconds = _integer(1, 7 * DAY_SECONDS)
    registrar = RegistrarConfig(
        **section.parse(
            {"min_expires": seconds, "max_expires": seconds, "default_expires": seconds}
        )
    )
    if registrar.min_expires > registrar.max_expires:
        section.fail(
            "min_expires",
            f"must not exceed max_expires ({registrar.max_expires}), got {registrar.min_expires}",
        )
    if not registrar.min_expires <= registrar.default_expires <= registrar.max_expires:
        section.fail(
            "default_expires",
            f"must lie between min_expires ({registrar.min_expires}) and max_expires "
            f"({registrar.max_expires}), got {registrar.default_expires}",
        )
    return registrar


def _read_auth(node: _Node, path: str) -> DigestAuthConfig:
    values = _Mapping.of(node, path).parse(
        {
            "nonce_lifetime": _integer(10, DAY_SECONDS),
            "algorithms": _choice_list("SHA-256", "MD5"),
            "secret": _nonce_secret,
        }
    )
    return DigestAuthConfig(**values)


def _nonce_secret(node: _Node, path: str) -> bytes:
    secret = _secret(node, path)
    if len(secret) < 16:
        raise _Invalid(path, f"must be at least 16 characters, got {len(secret)}", node.line)
    return secret.encode()


# The URL forms people write, and the async driver each one means.
_STORE_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_STORE_URL_FORMS = ("a SQLite file ('sqlite:///var/softswitch.db', 'sqlite:////abs/path.db') or "
                    "a PostgreSQL URL ('postgresql://user:password@host/dbname')")


def _read_store(node: _Node, path: str) -> StoreConfig:
    return StoreConfig(**_Mapping.of(node, path).parse({"url": _store_url}))


def _store_url(node: _Node, path: str) -> str:
    """A database URL as people write it, mapped to the async driver softswitch uses
    ('sqlite:///x.db' -> 'sqlite+aiosqlite:///x.db', 'postgres://...' ->
    'postgresql+asyncpg://...'). Errors never quote the URL: it may hold a password."""
    from sqlalchemy.engine import make_url  # here: the domain imports config, not SQL
    from sqlalchemy.exc import ArgumentError

    url = _text(node, path)
    scheme, separator, rest = url.partition("://")
    driver = _STORE_DRIVERS.get(scheme.lower())
    if not separator or driver is None:
        named = f"'{scheme}'" if separator else "no scheme"
        raise _Invalid(path, f"must be {_STORE_URL_FORMS}; got {named}", node.line)
    mapped = f"{driver}://{rest}"
    try:
        database = make_url(mapped).database
    except (ArgumentError, ValueError):
        raise _Invalid(path, f"is not a database URL; expected {_STORE_URL_FORMS}",
                       node.line) from None
    if driver.startswith("sqlite") and (not database or database == ":memory:"):
        raise _Invalid(path, "must name a SQLite file, e.g. 'sqlite:///var/softswitch.db' "
                       "(an in-memory database cannot be shared)", node.line)
    return mapped


def _read_pin(node: _Node, path: str) -> PinConfig:
    values = _Mapping.of(node, path).parse(
        {"default": _pin, "max_failures": _integer(1, 100), "throttle": _read_pin_throttle}
    )
    return PinConfig(**values)


def _read_pin_throttle(node: _Node, path: str) -> PinThrottleConfig:
    values = _Mapping.of(node, path).parse(
        {"max_failures": _integer(1, 10_000), "window_seconds": _integer(1, DAY_SECONDS)}
    )
    return PinThrottleConfig(**values)


def _read_media(node: _Node, path: str) -> MediaConfig:
    section = _Mapping.of(node, path)
    port = _integer(1024, 65535)
    media = MediaConfig(
        **section.parse(
            {
                "rtp_port_min": port,
                "rtp_port_max": port,
                "language": _choice("ja", "en"),
                "prompts_dir": _existing_directory,
                "silence": _choice("suppress", "send"),
                # at most 25 s: phones, SBCs and relays end calls after 30-60 s without RTP
                "keepalive_seconds": _seconds(25),
            }
        )
    )
    if media.rtp_port_max <= media.rtp_port_min:
        section.fail(
            "rtp_port_max",
            f"must be above rtp_port_min ({media.rtp_port_min}), got {media.rtp_port_max}",
        )
    return media


def _read_dial_codes(node: _Node, path: str) -> DialCodes:
    section = _Mapping.of(node, path)
    names = [spec.name for spec in dataclasses.fields(DialCodes)]
    codes = DialCodes(**section.parse(dict.fromkeys(names, _digits((3, 11)))))
    used_by: dict[str, str] = {}
    for name in names:
        code = getattr(codes, name)
        if code in used_by:
            section.fail(name, f"{code} is already the code for {used_by[code]}")
        used_by[code] = name
    return codes


def _menu_key(node: _Node, path: str) -> str:
    text = _scalar_text(node, path).strip()
    if len(text) != 1 or text not in DTMF_MENU_KEYS:
        raise _Invalid(path, f"must be one key of {DTMF_MENU_KEYS} (quote # and *), "
                             f"got {text!r}", node.line)
    return text


def _end_key(node: _Node, path: str) -> str:
    """The key that ends a number, a PIN, a ring time: not a digit, which those are made of."""
    key = _menu_key(node, path)
    if key.isdigit():
        raise _Invalid(path, f"must be '#' or '*': numbers and PINs are made of digits, "
                             f"got {key!r}", node.line)
    return key


def _read_menus(node: _Node, path: str) -> MenusConfig:
    section = _Mapping.of(node, path)
    defaults = MenusConfig()
    submenus = [spec.name for spec in dataclasses.fields(MenusConfig)
                if spec.name not in ("end", "repeat")]
    parsers: dict[str, Parser] = {"end": _end_key, "repeat": _menu_key}
    for name in submenus:
        parsers[name] = functools.partial(_read_menu, type(getattr(defaults, name)))
    menus = MenusConfig(**section.parse(parsers))
    if menus.end == menus.repeat:
        section.fail("end", f"{menus.end!r} is already the key that repeats a menu")
    for name in submenus:
        keys = getattr(menus, name)
        given = _Mapping.of(section.items.get(name), _join(path, name))
        taken: dict[str, str] = {}
        for spec in dataclasses.fields(keys):
            key = getattr(keys, spec.name)
            if key == menus.repeat:
                given.fail(spec.name, f"{key!r} is the key that repeats a menu ({path}.repeat)")
            if key in taken:
                given.fail(spec.name, f"{key!r} is already the key for {taken[key]}")
            taken[key] = spec.name
    return menus


def _read_menu(keys_type: Any, node: _Node, path: str) -> Any:
    names = [spec.name for spec in dataclasses.fields(keys_type)]
    return keys_type(**_Mapping.of(node, path).parse(dict.fromkeys(names, _menu_key)))


def _read_services(node: _Node, path: str) -> ServicesConfig:
    values = _Mapping.of(node, path).parse(
        {
            "blocklist_max": _integer(1, COUNT_READ_OUT_MAX),
            "voicemail": _read_voicemail,
            "remote_control": _read_remote_control,
            "pin_change_delay_seconds": _integer(0, 365 * DAY_SECONDS),
        }
    )
    return ServicesConfig(**values)


def _read_voicemail(node: _Node, path: str) -> VoicemailConfig:
    values = _Mapping.of(node, path).parse(
        {
            "max_messages": _integer(1, COUNT_READ_OUT_MAX),
            "max_seconds": _integer(1, 3600),
            "retention_hours": _integer(1, 24 * 365),
            "default_ring_time": _integer(0, 120),
            "audio_dir": _path,
        }
    )
    return VoicemailConfig(**values)


def _read_security(node: _Node, path: str) -> SecurityConfig:
    values = _Mapping.of(node, path).parse(
        {
            "source_failures": _read_source_failures,
            "account_failures": _read_account_failures,
            "calls_per_source": _read_calls_per_source,
            "tcp": _read_tcp_limits,
        }
    )
    return SecurityConfig(**values)


def _read_source_failures(node: _Node, path: str) -> SourceFailuresConfig:
    values = _Mapping.of(node, path).parse(
        {
            "max_failures": _integer(1, 100_000),
            "window_seconds": _integer(1, DAY_SECONDS),
            "ban_seconds": _integer(1, 30 * DAY_SECONDS),
        }
    )
    return SourceFailuresConfig(**values)


def _read_account_failures(node: _Node, path: str) -> AccountFailuresConfig:
    values = _Mapping.of(node, path).parse(
        {
            "max_failures": _integer(1, 100_000),
            "window_seconds": _integer(1, DAY_SECONDS),
            "known_source_seconds": _integer(1, 365 * DAY_SECONDS),
        }
    )
    return AccountFailuresConfig(**values)


def _read_calls_per_source(node: _Node, path: str) -> CallsPerSourceConfig:
    values = _Mapping.of(node, path).parse(
        {"max_unconfirmed": _integer(1, 100_000), "max_unauthenticated": _integer(1, 100_000)}
    )
    return CallsPerSourceConfig(**values)


def _read_tcp_limits(node: _Node, path: str) -> TcpLimitsConfig:
    values = _Mapping.of(node, path).parse(
        {
            "max_connections_per_source": _integer(1, 100_000),
            "header_timeout_seconds": _seconds(600),
            "idle_timeout_seconds": _integer(1, DAY_SECONDS),
        }
    )
    return TcpLimitsConfig(**values)


def _read_calls(node: _Node, path: str) -> CallsConfig:
    values = _Mapping.of(node, path).parse(
        {
            "max_forwarding_hops": _integer(1, 20),
            "anonymous_callers": _choice("allow", "reject"),
            "cdr_file": _path_or_off,
            "outbound_route": _listen_address,
        }
    )
    return CallsConfig(**values)


def _read_remote_control(node: _Node, path: str) -> RemoteControlConfig:
    values = _Mapping.of(node, path).parse(
        {"disconnect_after": _integer(1, 100), "disable_after": _integer(1, 100)}
    )
    return RemoteControlConfig(**values)


# ---------------------------------------------------------------------------------------------
# Subscribers: read one by one, then checked together (duplicates, PIN default, dial codes).


@dataclass(slots=True)
class _SubscriberEntry:
    values: dict[str, Any]
    section: _Mapping


def _read_subscriber_list(node: _Node, path: str) -> list[_SubscriberEntry]:
    if not isinstance(node.value, list):
        raise _Invalid(path, f"must be a list of subscribers, got {_kind(node.value)}", node.line)
    return [_read_subscriber(item, f"{path}[{index}]") for index, item in enumerate(node.value)]


def _read_subscriber(node: _Node, path: str) -> _SubscriberEntry:
    if not isinstance(node.value, dict):
        raise _Invalid(
            path, f"must be a mapping of subscriber fields, got {_kind(node.value)}", node.line
        )
    section = _Mapping.of(node, path)
    values = section.parse(
        {
            "number": _phone_number,
            "sim": _choice("voice", "data"),
            "line": _choice("D", "A"),
            "sip_password": _secret,
            "mio_id": _mio_id,
            "email": _email,
            "portal_password": _secret,
            "name": _text,
            "birth_date": _birth_date,
            "iccid": _digits((19, 20)),
            "postal_address": _text,
            "network_pin": _pin,
            "options": _read_subscriber_options,
        },
        required={"number", "sim", "line"},
    )
    if values["sim"] == "voice" and "sip_password" not in values:
        section.fail("sip_password", "is required for a voice SIM")
    if values["sim"] == "data" and "sip_password" in values:
        section.fail("sip_password", "a data SIM cannot register for calls; remove it")
    options: SubscriberOptions = values.get("options", SubscriberOptions())
    if options.nuisance_blocking and not (values["sim"] == "voice" and values["line"] == "A"):
        section.fail(
            "options",
            "nuisance_blocking is a paid option of type A voice lines "
            "(on type D it is free and always on)",
        )
    return _SubscriberEntry(values, section)


def _read_subscriber_options(node: _Node, path: str) -> SubscriberOptions:
    return SubscriberOptions(**_Mapping.of(node, path).parse({"nuisance_blocking": _boolean}))


def _build_subscribers(entries: list[_SubscriberEntry], config: Config) -> tuple[Subscriber, ...]:
    dial_codes = {
        getattr(config.dial_codes, spec.name): spec.name for spec in dataclasses.fields(DialCodes)
    }
    first_with: dict[tuple[str, str], str] = {}  # (field, value) -> path of its first subscriber
    subscribers = []
    for entry in entries:
        values = entry.values
        if values["number"] in dial_codes:
            entry.section.fail(
                "number", f"{values['number']} is the dial code for {dial_codes[values['number']]}"
            )
        for unique in ("number", "mio_id", "email"):
            value = values.get(unique)
            if value is None:
                continue
            if (unique, value) in first_with:
                entry.section.fail(
                    unique, f"{value} is already used by {first_with[unique, value]}"
                )
            first_with[unique, value] = entry.section.path
        values.setdefault("network_pin", config.pin.default)
        subscribers.append(Subscriber(**values))
    return tuple(subscribers)
