"""Config loading: the example file, defaults, number normalisation, and every kind of error."""

import re
import textwrap
from datetime import date
from pathlib import Path

import pytest

from softswitch.config import (
    Config,
    ConfigError,
    ListenAddress,
    MenusConfig,
    PlaybackKeys,
    SipConfig,
    SubscriberOptions,
    load_config,
    menu_keys,
    parse_config,
)
from softswitch.numbering import is_national_number, normalise_number

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "softswitch.yaml"

VOICE_SUBSCRIBER = """
subscribers:
  - number: 090-1234-5678
    sim: voice
    line: D
    sip_password: pw-one
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "softswitch.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: "), "the error must name the file"
    return caught.value


# -- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "09012345678",
        "+81 90-1234-5678",
        "81-90-1234-5678",
        "090-1234-5678",
        "+81 (0)90 1234 5678",
        "０９０－１２３４－５６７８",
        " 090 1234 5678 ",
    ],
)
def test_written_forms_normalise_to_national_format(written: str) -> None:
    assert normalise_number(written) == "09012345678"


def test_ten_digit_fixed_line_numbers_are_national_numbers() -> None:
    assert normalise_number("+81 3-1234-5678") == "0312345678"
    assert is_national_number("0312345678")
    assert not is_national_number("+81312345678")
    assert not is_national_number("1411")


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("090-abcd-5678", "only digits"),
        ("", "empty"),
        ("090-1234", "too short"),
        ("090-1234-5678-9", "too long"),
        ("+1 555 123 4567", "country code is not +81"),
        ("9012345678", "starts with 0"),
        ("0012345678", "carrier prefix"),
        ("1411", "starts with 0"),
    ],
)
def test_non_numbers_are_refused_with_a_reason(written: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalise_number(written)


# -- the example and the defaults -----------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.sip.domain == "softswitch.test"
    assert config.sip.listen == (ListenAddress("127.0.0.1", 5060),)
    assert config.store.url == "sqlite+aiosqlite:///var/softswitch.db"
    by_number = {subscriber.number: subscriber for subscriber in config.subscribers}
    assert set(by_number) == {"09012345678", "08023456789", "07034567890", "08098765432"}
    voice = [s for s in config.subscribers if s.sim == "voice"]
    assert len(voice) >= 3 and {s.line for s in voice} == {"D", "A"}
    assert all(s.sip_password for s in voice)
    assert by_number["08023456789"].options == SubscriberOptions(nuisance_blocking=True)
    data = by_number["08098765432"]
    assert (data.sim, data.sip_password) == ("data", None)
    assert by_number["09012345678"].network_pin == "4826"
    assert by_number["07034567890"].network_pin == "1234"  # pin.default
    assert by_number["09012345678"].birth_date == date(1988, 4, 12)
    assert (config.media.silence, config.media.keepalive_seconds) == ("suppress", 1.0)


def test_a_minimal_config_gets_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "sip: {domain: example.net}"))
    assert config == Config(sip=SipConfig(domain="example.net"))
    assert config.sip.listen == (ListenAddress("127.0.0.1", 5060),)
    assert config.sip.transports == ("udp", "tcp")
    assert config.sip.max_message_size == 65535
    registrar = config.sip.registrar
    assert (registrar.min_expires, registrar.max_expires, registrar.default_expires) == (
        60,
        3600,
        3600,
    )
    assert config.sip.auth.nonce_lifetime == 300
    assert config.sip.auth.algorithms == ("MD5",)
    assert config.sip.auth.secret is None  # the server picks a random one
    assert config.sip.user_agent == "softswitch/0.1"
    assert config.store.url == "sqlite+aiosqlite:///var/softswitch.db"
    assert (config.pin.default, config.pin.max_failures) == ("1234", 5)
    assert (config.pin.throttle.max_failures, config.pin.throttle.window_seconds) == (10, 600)
    assert (config.media.rtp_port_min, config.media.rtp_port_max) == (20000, 20999)
    assert (config.media.language, config.media.prompts_dir) == ("ja", None)
    assert (config.media.silence, config.media.keepalive_seconds) == ("suppress", 1.0)
    codes = config.dial_codes
    assert (codes.voicemail_start, codes.voicemail_stop, codes.voicemail_playback) == (
        "1411",
        "1410",
        "1417",
    )
    assert (codes.forwarding_start, codes.forwarding_stop, codes.forwarding_settings) == (
        "1421",
        "1420",
        "1429",
    )
    assert (codes.blocklist_register_last, codes.blocklist_menu) == ("1442", "144")
    assert (codes.voicemail_settings, codes.remote_access, codes.dtmf_test) == (
        "1419",
        "1400",
        "1999",
    )
    services = config.services
    assert services.blocklist_max == 30
    assert services.pin_change_delay_seconds == 4 * 24 * 3600
    voicemail = services.voicemail
    assert (voicemail.max_messages, voicemail.max_seconds, voicemail.retention_hours) == (
        20,
        180,
        72,
    )
    assert (voicemail.default_ring_time, voicemail.audio_dir) == (15, Path("var/voicemail"))
    assert (services.remote_control.disconnect_after, services.remote_control.disable_after) == (
        3,
        4,
    )
    assert config.subscribers == ()
    assert config.log_level == "info"


def test_values_are_parsed_and_normalised(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            sip:
              domain: SoftSwitch.Test
              listen: ["[::1]:5070", 0.0.0.0:5060]
              transports: UDP
              auth: {algorithms: [md5], secret: shared-by-all-instances}
            pin: {default: 0123}
            dial_codes: {remote_access: 0120444444}
            subscribers:
              - number: +81 90-1234-5678
                sim: Voice
                line: a
                sip_password: " spaced "
                email: Taro@Example.JP
                network_pin: 0007
                iccid: 8981100000123456789
                options: {nuisance_blocking: yes}
              - number: 08011112222
                sim: data
                line: D
            """,
        )
    )
    assert config.sip.domain == "softswitch.test"
    assert config.sip.listen == (ListenAddress("::1", 5070), ListenAddress("0.0.0.0", 5060))
    assert [str(address) for address in config.sip.listen] == ["[::1]:5070", "0.0.0.0:5060"]
    assert config.sip.transports == ("udp",)
    assert config.sip.auth.algorithms == ("MD5",)
    assert config.sip.auth.secret == b"shared-by-all-instances"
    assert config.pin.default == "0123"  # not the YAML 1.1 octal number 83
    assert config.dial_codes.remote_access == "0120444444"
    first, second = config.subscribers
    assert (first.number, first.sim, first.line) == ("09012345678", "voice", "A")
    assert first.sip_password == " spaced "
    assert first.email == "taro@example.jp"
    assert first.network_pin == "0007"
    assert first.iccid == "8981100000123456789"
    assert first.options.nuisance_blocking is True
    assert second.network_pin == "0123"  # the configured pin.default


def test_subscribers_can_share_fields_through_a_yaml_merge_key(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            sip: {domain: example.net}
            subscribers:
              - &first {number: "09011111111", sim: voice, line: A, sip_password: pw-1}
              - <<: *first
                number: "09022222222"
                line: D
            """,
        )
    )
    second = config.subscribers[1]
    assert (second.number, second.sim, second.line, second.sip_password) == (
        "09022222222",
        "voice",
        "D",
        "pw-1",
    )


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            sip:
              domain: example.net
              auth: {secret: nonce-secret-0123456789}
            store: {url: "postgresql+asyncpg://softswitch:db-secret@db/softswitch"}
            subscribers:
              - {number: "09012345678", sim: voice, line: D, sip_password: pw-sip-secret,
                 portal_password: pw-portal-secret, network_pin: "9876"}
            """,
        )
    )
    text = repr(config)
    for secret in ("db-secret", "pw-sip-secret", "pw-portal-secret", "9876", "nonce-secret"):
        assert secret not in text
    assert "09012345678" in text


@pytest.mark.parametrize(("written", "meant"), [
    ("sqlite:///var/softswitch.db", "sqlite+aiosqlite:///var/softswitch.db"),
    ("sqlite:////srv/softswitch/state.db", "sqlite+aiosqlite:////srv/softswitch/state.db"),
    ("sqlite+aiosqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
    ("SQLite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
    ("postgresql://softswitch:pw@db.example/softswitch",
     "postgresql+asyncpg://softswitch:pw@db.example/softswitch"),
    ("postgres://softswitch:pw@db.example:5433/softswitch",
     "postgresql+asyncpg://softswitch:pw@db.example:5433/softswitch"),
    ("postgresql+asyncpg://db/softswitch", "postgresql+asyncpg://db/softswitch"),
])
def test_store_urls_as_people_write_them(written: str, meant: str) -> None:
    config = parse_config(f"sip: {{domain: x.test}}\nstore: {{url: '{written}'}}\n")
    assert config.store.url == meant


@pytest.mark.parametrize(("written", "problem"), [
    ("mysql://root:hunter2@db/softswitch", "got 'mysql'"),
    ("postgresql+psycopg2://root:hunter2@db/softswitch", "got 'postgresql+psycopg2'"),
    ("var/softswitch.db", "got no scheme"),
    ("sqlite://", "must name a SQLite file"),
    ("sqlite:///:memory:", "must name a SQLite file"),
    ("postgresql://root:hunter2@db:notaport/x", "is not a database URL"),
])
def test_store_urls_that_are_refused(written: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as raised:
        parse_config(f"sip: {{domain: x.test}}\nstore: {{url: '{written}'}}\n")
    assert raised.value.field == "store.url" and "hunter2" not in str(raised.value)


# -- errors -----------------------------------------------------------------------------------


def test_the_error_names_file_field_problem_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sip:
          domain: softswitch.test
        subscribers:
          - {number: "09011111111", sim: voice, line: D, sip_password: pw-a}
          - {number: "09022222222", sim: voice, line: D, sip_password: pw-b}
          - number: "09033333333"
            sim: voice
            line: D
            sip_password: pw-c
            network_pin: 12a4
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert str(error) == (
        f"{path}: subscribers[2].network_pin: must be exactly 4 digits (line 10)"
    )
    assert (error.file, error.field, error.line) == (str(path), "subscribers[2].network_pin", 10)


@pytest.mark.parametrize(
    ("text", "field", "problem", "line"),
    [
        pytest.param(
            "sip:\n  domain: x.test\n  registrar: {min_expires: 60\n",
            None,
            "YAML syntax error",
            4,
            id="yaml-syntax",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  registrar:\n    max_expire: 60\n",
            "sip.registrar.max_expire",
            "unknown key; did you mean 'max_expires'?",
            4,
            id="unknown-key",
        ),
        pytest.param(
            "sip:\n  domain: x.test\nvoicemail: {}\n",
            "voicemail",
            "unknown key; expected sip, store",
            3,
            id="unknown-section",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  registrar:\n    max_expires: soon\n",
            "sip.registrar.max_expires",
            "must be a whole number, got 'soon'",
            4,
            id="wrong-type",
        ),
        pytest.param(
            "sip:\n  domain: x.test\npin:\n  max_failures: true\n",
            "pin.max_failures",
            "must be a whole number, got True",
            4,
            id="bool-is-not-a-number",
        ),
        pytest.param(
            "sip:\n  domain: x.test\nservices:\n  voicemail: {default_ring_time: 121}\n",
            "services.voicemail.default_ring_time",
            "must be between 0 and 120, got 121",
            4,
            id="out-of-range",
        ),
        pytest.param(
            "sip:\n  listen: 127.0.0.1:5060\n", "sip.domain", "is required", 2, id="missing-domain"
        ),
        pytest.param("store: {}\n", "sip", "is required", 1, id="missing-sip"),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: '09012345678', sim: voice, line: D}\n",
            "subscribers[0].sip_password",
            "is required for a voice SIM",
            3,
            id="missing-sip-password",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n  - {sim: voice, line: D, sip_password: pw}\n",
            "subscribers[0].number",
            "is required",
            3,
            id="missing-number",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: 090-12x4-5678, sim: voice, line: D, sip_password: pw}\n",
            "subscribers[0].number",
            "not a phone number: '090-12x4-5678'",
            3,
            id="bad-number",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: 090-1234-5678, sim: voice, line: D, sip_password: pw}\n"
            "  - {number: +81 90 1234 5678, sim: voice, line: A, sip_password: pw}\n",
            "subscribers[1].number",
            "09012345678 is already used by subscribers[0]",
            4,
            id="duplicate-number",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: '09011111111', sim: data, line: D, email: a@example.jp}\n"
            "  - {number: '09022222222', sim: data, line: D, email: A@example.jp}\n",
            "subscribers[1].email",
            "a@example.jp is already used by subscribers[0]",
            4,
            id="duplicate-email",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  listen: [127.0.0.1:5060, 'localhost:5060']\n",
            "sip.listen[1]",
            "must be 'IPv4:port' or '[IPv6]:port'",
            3,
            id="bad-listen-host",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  listen: '[::1]:70000'\n",
            "sip.listen",
            "port must be at most 65535, got 70000",
            3,
            id="bad-listen-port",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  auth:\n    secret: short\n",
            "sip.auth.secret",
            "must be at least 16 characters, got 5",
            4,
            id="short-nonce-secret",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  transports: [udp, tls]\n",
            "sip.transports[1]",
            "must be 'udp' or 'tcp', got 'tls'",
            3,
            id="bad-transport",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n  - number: '09012345678'\n    sim: data\n"
            "    line: D\n    birth_date: 1990-02-30\n",
            "subscribers[0].birth_date",
            "must be a real date written YYYY-MM-DD, got '1990-02-30'",
            6,
            id="unreal-date",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: '09012345678', sim: data, line: D, iccid: '898110000012'}\n",
            "subscribers[0].iccid",
            "must be 19 to 20 digits, got '898110000012'",
            3,
            id="bad-iccid",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: '09012345678', sim: voice, line: D, sip_password: pw,\n"
            "     options: {nuisance_blocking: true}}\n",
            "subscribers[0].options",
            "paid option of type A",
            4,
            id="option-on-type-d",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers:\n"
            "  - {number: '09012345678', sim: data, line: D, sip_password: pw}\n",
            "subscribers[0].sip_password",
            "a data SIM cannot register",
            3,
            id="password-on-data-sim",
        ),
        pytest.param(
            "sip: {domain: x.test}\ndial_codes:\n  voicemail_start: '1411'\n  dtmf_test: '1411'\n",
            "dial_codes.dtmf_test",
            "1411 is already the code for voicemail_start",
            4,
            id="duplicate-dial-code",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  registrar: {min_expires: 600, default_expires: 300}\n",
            "sip.registrar.default_expires",
            "must lie between min_expires (600) and max_expires (3600), got 300",
            3,
            id="registrar-order",
        ),
        pytest.param(
            "sip:\n  domain: x.test\n  domain: y.test\n",
            "sip.domain",
            "appears twice",
            3,
            id="duplicate-key",
        ),
        pytest.param(
            "sip: {domain: x.test}\nstore:\n  url: mysql://db/softswitch\n",
            "store.url",
            "must be a SQLite file ('sqlite:///var/softswitch.db', 'sqlite:////abs/path.db') or "
            "a PostgreSQL URL ('postgresql://user:password@host/dbname'); got 'mysql'",
            3,
            id="bad-store-url",
        ),
        pytest.param(
            "sip: {domain: x.test}\nmedia: {rtp_port_min: 30000, rtp_port_max: 20000}\n",
            "media.rtp_port_max",
            "must be above rtp_port_min (30000), got 20000",
            2,
            id="rtp-range",
        ),
        pytest.param(
            "sip: {domain: x.test}\nsubscribers: {number: '09012345678'}\n",
            "subscribers",
            "must be a list of subscribers, got a mapping",
            2,
            id="subscribers-not-a-list",
        ),
        pytest.param("- sip\n", None, "must be a mapping of sections", 1, id="top-level-list"),
        pytest.param(
            "sip: !!python/object:os.system {domain: x.test}\n",
            "sip",
            "unsupported YAML tag",
            1,
            id="yaml-tag",
        ),
    ],
)
def test_errors_name_the_field_and_the_problem(
    tmp_path: Path, text: str, field: str | None, problem: str, line: int
) -> None:
    error = error_of(tmp_path, text)
    assert error.field == field
    assert problem in error.problem
    assert error.line == line
    if field is not None:
        assert str(error).startswith(f"{error.file}: {field}: {error.problem}")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: no such file"


def test_a_missing_prompts_dir_is_refused(tmp_path: Path) -> None:
    error = error_of(
        tmp_path, f"sip: {{domain: x.test}}\nmedia: {{prompts_dir: {tmp_path}/none}}\n"
    )
    assert error.field == "media.prompts_dir"
    assert "no such directory" in error.problem


@pytest.mark.parametrize(
    ("media", "silence", "keepalive"),
    [
        ("{silence: send}", "send", 1.0),
        ("{silence: Suppress, keepalive_seconds: 0.25}", "suppress", 0.25),
        ("{keepalive_seconds: 15}", "suppress", 15.0),
        ("{keepalive_seconds: 25}", "suppress", 25.0),
    ],
)
def test_media_silence_policy(media: str, silence: str, keepalive: float) -> None:
    config = parse_config(f"sip: {{domain: x.test}}\nmedia: {media}\n")
    assert (config.media.silence, config.media.keepalive_seconds) == (silence, keepalive)
    assert isinstance(config.media.keepalive_seconds, float)


@pytest.mark.parametrize(
    ("value", "field", "problem"),
    [
        ("silence: comfort-noise", "media.silence",
         "must be 'suppress' or 'send', got 'comfort-noise'"),
        ("silence: [send]", "media.silence", "must be a single value, got a list"),
        ("keepalive_seconds: 0", "media.keepalive_seconds",
         "must be above 0 and at most 25 seconds, got 0"),
        ("keepalive_seconds: -1.5", "media.keepalive_seconds",
         "must be above 0 and at most 25 seconds, got -1.5"),
        ("keepalive_seconds: 30", "media.keepalive_seconds",
         "must be above 0 and at most 25 seconds, got 30"),
        ("keepalive_seconds: .nan", "media.keepalive_seconds",
         "must be above 0 and at most 25 seconds, got nan"),
        ("keepalive_seconds: 1s", "media.keepalive_seconds",
         "must be a number of seconds, got '1s'"),
        ("keepalive_seconds: true", "media.keepalive_seconds",
         "must be a number of seconds, got True"),
    ],
)
def test_media_silence_policy_errors(tmp_path: Path, value: str, field: str,
                                     problem: str) -> None:
    error = error_of(tmp_path, f"sip: {{domain: x.test}}\nmedia:\n  language: en\n  {value}\n")
    assert (error.field, error.problem, error.line) == (field, problem, 4)
    assert str(error).endswith(f": {field}: {problem} (line 4)")


def test_parse_config_names_the_given_source() -> None:
    with pytest.raises(ConfigError, match=r"^inline: sip.domain: must be a domain name"):
        parse_config("sip: {domain: 'not a domain'}", "inline")


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        pytest.param(VOICE_SUBSCRIBER + "    network_pin: 12a4\n", "subscribers[0].network_pin",
                     "must be exactly 4 digits", id="network_pin"),
        pytest.param(VOICE_SUBSCRIBER + "    network_pin: '12a4'\n", "subscribers[0].network_pin",
                     "must be exactly 4 digits", id="network_pin-quoted"),
        pytest.param("pin:\n  default: 12a4\n", "pin.default", "must be exactly 4 digits",
                     id="pin.default"),
        pytest.param("pin:\n  default: !!int 12a4\n", "pin.default", "is not a valid int",
                     id="pin.default-int-tag"),
        pytest.param(VOICE_SUBSCRIBER + "    network_pin: !!float 12a4\n",
                     "subscribers[0].network_pin", "is not a valid float",
                     id="network_pin-float-tag"),
    ],
)
def test_a_bad_pin_is_never_quoted_in_the_error(
    tmp_path: Path, text: str, field: str, problem: str
) -> None:
    error = error_of(tmp_path, "sip: {domain: x.test}\n" + text)
    assert (error.field, error.problem) == (field, problem)
    for shown in (str(error), repr(error), *map(str, error.args)):
        assert "12a4" not in shown


# -- the security and call sections (issues 8 and 9) ------------------------------------------


def test_the_example_ships_the_security_and_call_defaults() -> None:
    config = load_config(EXAMPLE)
    assert config.security == Config(sip=SipConfig(domain="x.test")).security
    assert config.calls == Config(sip=SipConfig(domain="x.test")).calls
    assert config.sip.auth.algorithms == ("MD5",)
    assert config.sip.trusted_peers == ()
    assert config.public_numbers == {"1400", "1999"}


def test_trusted_peers_public_numbers_and_call_options(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        sip:
          domain: example.net
          trusted_peers: [192.0.2.10, 198.51.100.0/24, "2001:db8::/32"]
          subscriber_peers: [10.0.0.0/8]
          public_numbers: ["1400"]
        security:
          source_failures: {max_failures: 3, window_seconds: 10, ban_seconds: 60}
          tcp: {header_timeout_seconds: 2.5}
        calls: {cdr_file: false, outbound_route: "192.0.2.20:5060", anonymous_callers: reject}
        """))
    assert [str(n) for n in config.sip.trusted_peers] == [
        "192.0.2.10/32", "198.51.100.0/24", "2001:db8::/32"]
    assert [str(n) for n in config.sip.subscriber_peers] == ["10.0.0.0/8"]
    assert config.public_numbers == {"1400"}
    assert config.security.source_failures.max_failures == 3
    assert config.security.tcp.header_timeout_seconds == 2.5
    assert config.calls.cdr_file is None
    assert config.calls.outbound_route == ListenAddress("192.0.2.20", 5060)
    assert config.calls.anonymous_callers == "reject"


def test_a_bad_trusted_peer_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sip\.trusted_peers\[1\]: must be an IP address"):
        load_config(write(tmp_path, "sip: {domain: example.net, "
                                    "trusted_peers: [192.0.2.1, carrier.example]}"))


# -- the menu keys (issue 10 item 6) --------------------------------------------------------------


def test_the_example_ships_the_menu_keys_of_the_specification() -> None:
    menus = load_config(EXAMPLE).menus
    assert menus == MenusConfig()
    assert (menus.end, menus.repeat) == ("#", "*")
    assert menu_keys(menus.blocklist) == {"1": "register", "2": "count", "3": "delete_last",
                                          "4": "delete_all"}
    assert menu_keys(menus.playback) == {"1": "replay", "7": "delete", "9": "save",
                                         "#": "next"}
    assert list(menu_keys(menus.remote)) == [str(n) for n in range(1, 10)]
    assert (menus.confirm.accept, menus.confirm.retry) == ("1", "2")


def test_menu_keys_can_be_changed(tmp_path: Path) -> None:
    menus = load_config(write(tmp_path, """
        sip: {domain: example.net}
        menus:
          repeat: "0"
          playback: {next: "*", save: 8}
        """)).menus
    assert menus.repeat == "0" and menus.playback == PlaybackKeys(next="*", save="8")


@pytest.mark.parametrize(("menus", "field", "problem"), [
    ('{blocklist: {count: "1"}}', "menus.blocklist.count",
     "'1' is already the key for register"),
    ('{remote: {forwarding_off: "*"}}', "menus.remote.forwarding_off",
     "'*' is the key that repeats a menu"),
    ('{end: "*"}', "menus.end", "'*' is already the key that repeats a menu"),
    ('{end: "1"}', "menus.end", "must be '#' or '*'"),
    ('{playback: {next: "12"}}', "menus.playback.next", "must be one key of 0123456789*#"),
    ('{playback: {next: "A"}}', "menus.playback.next", "must be one key of 0123456789*#"),
    ('{confirm: {ok: "1"}}', "menus.confirm.ok", "unknown key; expected accept, retry"),
], ids=["duplicate", "repeat-key", "end-is-repeat", "end-is-a-digit", "two-keys",
        "not-a-menu-key", "unknown-key"])
def test_bad_menu_keys_are_refused_at_start(tmp_path: Path, menus: str, field: str,
                                            problem: str) -> None:
    error = error_of(tmp_path, f"sip: {{domain: x.test}}\nmenus: {menus}\n")
    assert (error.field, error.line) == (field, 2)
    assert problem in error.problem


def test_counts_the_menus_read_aloud_are_bounded(tmp_path: Path) -> None:
    error = error_of(tmp_path, "sip: {domain: x.test}\nservices: {blocklist_max: 200}\n")
    assert error.field == "services.blocklist_max" and "between 1 and 199" in error.problem


def test_the_readme_softphone_credentials_are_an_example_subscriber() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    user = re.search(r"user `([0-9]+)`", readme)
    password = re.search(r"password `([^`]+)`", readme)
    assert user is not None and password is not None
    config = load_config(EXAMPLE)
    assert [s.sip_password for s in config.subscribers if s.number == user[1]] == [password[1]]
