"""The domain services against a real store (SQLite, and PostgreSQL when configured; see
tests/stores.py), on the shipped defaults: blocklist, voicemail, forwarding, remote control,
last caller, call records and the network PIN."""

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from softswitch.config import Config, parse_config
from softswitch.services import Services, build_services
from softswitch.services.errors import (
    InvalidNumber,
    InvalidValue,
    MailboxFull,
    NoDestination,
    NoSuchMessage,
    NotAvailable,
    NotSubscribed,
    OwnNumber,
    ServiceError,
    UnknownSubscriber,
)
from softswitch.services.model import CallRecord, ForwardingSettings, LastCaller
from softswitch.services.pin import PinResult, log_field, source_host
from softswitch.services.repositories import BlockResult
from softswitch.services.voicemail import install_file
from softswitch.store.repositories import sql_repositories
from softswitch.store.schema import call_records, pins
from softswitch.store.store import Store

from .stores import HIROSHI, KENJI, SAKURA, SUBSCRIBERS

YUI = "07034567890"  # type A without the nuisance-call option
UNKNOWN = "09099999999"
ATTACKER = "udp:203.0.113.5:5060"
OWNER = "udp:198.51.100.7:5062"


def services_config(directory: Path) -> Config:
    document = {
        "sip": {"domain": "softswitch.test"},
        "services": {"voicemail": {"audio_dir": str(directory / "voicemail")}},
        "calls": {"cdr_file": str(directory / "cdr.jsonl")},
        "subscribers": [*SUBSCRIBERS, {"number": YUI, "sim": "voice", "line": "A",
                                       "sip_password": "pw-yui"}],
    }
    return parse_config(yaml.safe_dump(document, allow_unicode=True), "services.yaml")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def services(store: Store, tmp_path: Path, clock: Clock) -> AsyncIterator[Services]:
    config = services_config(tmp_path)
    await store.provision(config)
    built = build_services(config, sql_repositories(store), clock=clock)
    yield built
    await built.close()


def recording(path: Path, seconds: float = 1.0) -> Path:
    """A G.711 mu-law WAV as the recorder leaves it."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x02" * int(8000 * seconds))
    return path


# -- blocklist --------------------------------------------------------------------------------


async def test_blocklist_add_list_count_and_delete(services: Services) -> None:
    blocklist = services.blocklist
    assert await blocklist.add(SAKURA, "+81 3-1234-5678") is BlockResult.ADDED
    assert await blocklist.add(SAKURA, "06-1234-5678") == "added"
    assert await blocklist.add(SAKURA, "0312345678") is BlockResult.DUPLICATE
    assert await blocklist.list(SAKURA) == ["0312345678", "0612345678"]
    assert await blocklist.count(SAKURA) == 2
    assert await blocklist.delete_last(SAKURA) == "0612345678"
    assert await blocklist.remove(SAKURA, "03-1234-5678")
    assert not await blocklist.remove(SAKURA, "03-1234-5678")
    assert await blocklist.delete_last(SAKURA) is None
    for caller in ("0311111111", "0322222222"):
        await blocklist.add(KENJI, caller)  # type A with the paid option
    assert await blocklist.delete_all(KENJI) == 2 and await blocklist.list(KENJI) == []


async def test_blocklist_is_full_at_the_configured_maximum(services: Services) -> None:
    blocklist = services.blocklist
    assert blocklist.max_entries == 30  # the shipped default
    for index in range(30):
        assert await blocklist.add(SAKURA, f"03{index:08d}") is BlockResult.ADDED
    assert await blocklist.add(SAKURA, "0699999999") is BlockResult.FULL
    assert await blocklist.add(SAKURA, "0300000000") is BlockResult.DUPLICATE
    assert await blocklist.count(SAKURA) == 30


@pytest.mark.parametrize(("number", "caller", "error"), [
    (SAKURA, "hello", InvalidNumber),
    (SAKURA, "0312", InvalidNumber),
    (SAKURA, "+1 555 0100", InvalidNumber),
    (SAKURA, "090-1234-5678", OwnNumber),
    (HIROSHI, "0312345678", NotAvailable),
    (YUI, "0312345678", NotSubscribed),
    (UNKNOWN, "0312345678", UnknownSubscriber),
])
async def test_blocklist_refusals_change_nothing(services: Services, number: str, caller: str,
                                                error: type[ServiceError]) -> None:
    with pytest.raises(error) as raised:
        await services.blocklist.add(number, caller)
    assert isinstance(raised.value, ServiceError) and str(raised.value)
    if number in (SAKURA, YUI):
        assert await services.blocklist.list(number) == []


async def test_two_instances_adding_at_once_never_pass_the_maximum(
        services: Services, store_url: str, backend: str) -> None:
    for index in range(29):
        await services.blocklist.add(SAKURA, f"03{index:08d}")
    other_store = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    try:
        other = build_services(services_config(Path("/nonexistent")),
                               sql_repositories(other_store))
        results = await asyncio.gather(services.blocklist.add(SAKURA, "0611111111"),
                                       other.blocklist.add(SAKURA, "0622222222"))
    finally:
        await other_store.close()
    assert sorted(results) == [BlockResult.ADDED, BlockResult.FULL]
    assert await services.blocklist.count(SAKURA) == 30


async def test_a_blocklist_change_reaches_the_directory(services: Services) -> None:
    await services.start()
    await services.blocklist.add(SAKURA, "0312345678")
    await services.directory.sync()
    view = services.directory.callee(SAKURA)
    assert view is not None and view.blocks("0312345678") and not view.blocks("0312345679")
    kenji_view = services.directory.callee(KENJI)
    assert kenji_view is not None and not kenji_view.blocks("0312345678")


# -- voicemail --------------------------------------------------------------------------------


async def test_voicemail_settings(services: Services) -> None:
    voicemail = services.voicemail
    settings = await voicemail.settings(SAKURA)
    assert (settings.enabled, settings.ring_time, settings.has_greeting) == (True, 15, False)
    await voicemail.set_enabled(SAKURA, False)
    await voicemail.set_ring_time(SAKURA, 0)
    assert (await voicemail.settings(SAKURA)).ring_time == 0
    assert (await voicemail.configure(SAKURA, enabled=True, ring_time=120)).enabled
    with pytest.raises(InvalidValue, match="0 to 120"):
        await voicemail.configure(SAKURA, enabled=False, ring_time=121)
    assert (await voicemail.settings(SAKURA)).enabled  # all or nothing
    with pytest.raises(NotAvailable):
        await voicemail.set_enabled(HIROSHI, True)


async def test_a_message_is_moved_in_whole_then_listed_heard_and_deleted(
        services: Services, tmp_path: Path, clock: Clock) -> None:
    voicemail = services.voicemail
    first = recording(tmp_path / "recorded-1.wav", 2.0)
    content = first.read_bytes()
    message = await voicemail.store_message(SAKURA, KENJI, first, 2.0)
    assert not first.exists() and message.audio.read_bytes() == content
    assert message.audio.parent == voicemail.audio_dir / SAKURA
    assert [p.name for p in message.audio.parent.iterdir()] == [message.audio.name]
    clock.now += 60
    withheld = await voicemail.store_message(SAKURA, None,
                                             recording(tmp_path / "recorded-2.wav"), 1.0)
    await voicemail.mark_heard(SAKURA, message.id)
    listed = await voicemail.messages(SAKURA)
    assert [(m.id, m.caller, m.new) for m in listed] == [
        (withheld.id, None, True), (message.id, KENJI, False)]  # new first
    assert listed[1].audio == message.audio and listed[1].seconds == 2.0
    await voicemail.delete(SAKURA, message.id)
    assert not message.audio.exists()
    with pytest.raises(NoSuchMessage):
        await voicemail.delete(SAKURA, message.id)
    with pytest.raises(NoSuchMessage):
        await voicemail.save(KENJI, withheld.id)  # another subscriber's message
    assert [m.id for m in await voicemail.messages(SAKURA)] == [withheld.id]


async def test_a_full_mailbox_refuses_and_keeps_no_file(services: Services,
                                                        tmp_path: Path) -> None:
    voicemail = services.voicemail
    assert voicemail.config.max_messages == 20  # the shipped default
    for index in range(20):
        assert await voicemail.can_accept(KENJI)
        await voicemail.store_message(KENJI, SAKURA, recording(tmp_path / f"{index}.wav"), 1)
    assert not await voicemail.can_accept(KENJI)
    extra = recording(tmp_path / "extra.wav")
    with pytest.raises(MailboxFull):
        await voicemail.store_message(KENJI, SAKURA, extra, 1)
    assert len(list((voicemail.audio_dir / KENJI).iterdir())) == 20


async def test_messages_past_retention_are_deleted(services: Services, tmp_path: Path,
                                                   clock: Clock) -> None:
    voicemail = services.voicemail
    old = await voicemail.store_message(SAKURA, KENJI, recording(tmp_path / "old.wav"), 1)
    clock.now += 71 * 3600
    recent = await voicemail.store_message(SAKURA, KENJI, recording(tmp_path / "new.wav"), 1)
    clock.now += 1.5 * 3600  # the first is now 72.5 hours old: past the default 72
    assert await voicemail.expire() == 1
    assert [m.id for m in await voicemail.messages(SAKURA)] == [recent.id]
    assert not old.audio.exists() and recent.audio.exists()


async def test_personal_greeting_set_replaced_and_reset(services: Services,
                                                        tmp_path: Path) -> None:
    voicemail = services.voicemail
    assert await voicemail.greeting(SAKURA) is None
    first = await voicemail.set_greeting(SAKURA, recording(tmp_path / "g1.wav"))
    assert await voicemail.greeting(SAKURA) == first and first.exists()
    assert (await voicemail.settings(SAKURA)).has_greeting
    second = await voicemail.set_greeting(SAKURA, recording(tmp_path / "g2.wav"))
    assert not first.exists() and await voicemail.greeting(SAKURA) == second
    await voicemail.reset_greeting(SAKURA)
    assert await voicemail.greeting(SAKURA) is None and not second.exists()
    assert not (await voicemail.settings(SAKURA)).has_greeting


def test_install_file_leaves_nothing_when_it_fails_and_fsyncs(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              ) -> None:
    source = recording(tmp_path / "source.wav")
    target = tmp_path / "box" / "message.wav"
    synced: list[int] = []

    def failing_fsync(descriptor: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        install_file(source, target)
    assert list(target.parent.iterdir()) == []  # no half-written message, no temporary file
    monkeypatch.setattr(os, "fsync", synced.append)
    install_file(recording(tmp_path / "again.wav"), target)
    assert target.exists() and len(synced) == 2  # the file, then its directory


async def test_audio_is_installed_off_the_event_loop(services: Services, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        threads.append(threading.current_thread())
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    await services.voicemail.store_message(SAKURA, KENJI, recording(tmp_path / "m.wav"), 1)
    assert threads and threading.main_thread() not in threads


# -- forwarding -------------------------------------------------------------------------------


async def test_forwarding_destination_mode_start_and_stop(services: Services) -> None:
    forwarding = services.forwarding
    with pytest.raises(NoDestination):
        await forwarding.start(SAKURA)
    assert await forwarding.set_destination(SAKURA, "+81 80-2345-6789") == ForwardingSettings(
        False, KENJI, "no_answer")
    assert (await forwarding.set_mode(SAKURA, "immediate")).mode == "immediate"
    assert await forwarding.start(SAKURA) == ForwardingSettings(True, KENJI, "immediate")
    assert (await forwarding.stop(SAKURA)).enabled is False
    started = await forwarding.start(SAKURA, "0312345678")
    assert started == ForwardingSettings(True, "0312345678", "immediate")


@pytest.mark.parametrize(("number", "change", "error"), [
    (SAKURA, {"destination": "090-1234-5678"}, OwnNumber),
    (SAKURA, {"destination": "not a number"}, InvalidNumber),
    (SAKURA, {"mode": "sometimes"}, InvalidValue),
    (HIROSHI, {"destination": KENJI}, NotAvailable),
    (UNKNOWN, {"destination": KENJI}, UnknownSubscriber),
])
async def test_forwarding_refusals_change_nothing(services: Services, number: str,
                                                  change: dict[str, Any],
                                                  error: type[ServiceError]) -> None:
    with pytest.raises(error):
        await services.forwarding.configure(number, enabled=True, **change)
    assert await services.forwarding.settings(SAKURA) == ForwardingSettings(
        False, None, "no_answer")


# -- network PIN ------------------------------------------------------------------------------


async def test_pin_right_wrong_lock_and_unlock(services: Services, caplog: pytest.LogCaptureFixture,
                                               ) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    pin = services.pin
    assert (await pin.verify(SAKURA, "4826", source=OWNER, via="blocklist")).ok
    for attempt in range(1, 5):
        check = await pin.verify(SAKURA, "1111", source=ATTACKER, via="remote-access")
        assert (check.result, check.failures, check.locked) == (PinResult.WRONG, attempt, False)
    fifth = await pin.verify(SAKURA, "2222", source=ATTACKER, via="remote-access")
    assert (fifth.result, fifth.failures, fifth.locked) == (PinResult.LOCKED, 5, True)
    refused = await pin.verify(SAKURA, "4826", source=OWNER, via="blocklist")
    assert refused.result is PinResult.LOCKED  # even the right PIN
    state = await pin.state(SAKURA)
    assert (state.locked, state.failures, state.pending_change) == (True, 5, False)
    await pin.unlock(SAKURA)
    assert (await pin.verify(SAKURA, "4826", source=OWNER, via="blocklist")).ok
    assert (await pin.state(SAKURA)).failures == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "softswitch.security"]
    assert lines[0] == f"pin-ok source={OWNER} number={SAKURA} via=blocklist"
    assert lines[1] == (f"pin-failed source={ATTACKER} number={SAKURA} via=remote-access "
                        "failures=1 result=wrong")
    assert any(line.endswith("failures=5 result=locked") for line in lines)
    assert f"pin-unlocked number={SAKURA}" in lines
    for secret in ("4826", "1111", "2222"):
        assert secret not in caplog.text


async def test_a_right_pin_clears_the_failures(services: Services) -> None:
    pin = services.pin
    for _ in range(4):
        await pin.verify(KENJI, "9999", source=ATTACKER, via="blocklist")
    assert (await pin.verify(KENJI, "1234", OWNER)).ok  # verify(number, pin, source)
    assert (await pin.verify(KENJI, "9999", source=ATTACKER, via="blocklist")).failures == 1


async def test_the_argon2_check_gives_way_to_the_event_loop(services: Services) -> None:
    """PIN checks, real or against the decoy, run in processes at SCHED_IDLE: 25 checks a
    second cost more than a core, which must not come out of the media clock (nor hold the
    GIL the event loop needs)."""
    import softswitch.services.pin as pin_module

    assert (await services.pin.verify(KENJI, "1234", OWNER)).ok
    assert not (await services.pin.verify(UNKNOWN, "1234", ATTACKER)).ok
    workers = pin_module._pin_checks._processes  # noqa: SLF001 (the pool keeps no public list)
    assert workers
    for worker in workers.values():
        assert worker.pid != os.getpid()
        assert os.sched_getscheduler(worker.pid) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the event loop's process is untouched


async def test_a_killed_pin_check_process_is_replaced(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    import signal

    import softswitch.services.pin as pin_module

    assert (await services.pin.verify(KENJI, "1234", OWNER)).ok
    os.kill(next(iter(pin_module._pin_checks._processes)), signal.SIGKILL)  # noqa: SLF001
    await asyncio.sleep(0.5)  # the pool sees its process gone
    checks = await asyncio.gather(*(services.pin.verify(KENJI, "1234", OWNER)
                                    for _ in range(3)))
    assert all(check.ok for check in checks)
    assert caplog.text.count("pin-check processes restarted") == 1


async def test_a_pin_keyed_where_the_number_goes_is_not_logged(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    check = await services.pin.verify("4826", "4826", source=ATTACKER, via="remote-access")
    assert check.result is PinResult.UNKNOWN
    assert "4826" not in caplog.text and " number=- " in caplog.text


async def test_unknown_numbers_and_data_sims_answer_unknown(services: Services) -> None:
    for number in (UNKNOWN, HIROSHI, "1400", "not digits"):
        check = await services.pin.verify(number, "1234", source=ATTACKER, via="remote-access")
        assert check.result is PinResult.UNKNOWN and not check.ok
    with pytest.raises(UnknownSubscriber):
        await services.pin.unlock(UNKNOWN)


async def test_one_source_is_throttled_across_subscribers_and_another_is_served(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    pin = services.pin
    assert pin.config.throttle.max_failures == 10  # the shipped default
    numbers = [SAKURA, KENJI, YUI, UNKNOWN, "09012340000"]
    for attempt in range(10):  # two tries on each of five numbers: never 5 on one subscriber
        port_moved = f"udp:203.0.113.5:{5060 + attempt}"
        check = await pin.verify(numbers[attempt % 5], "0000", source=port_moved, via="remote")
        assert check.result in (PinResult.WRONG, PinResult.UNKNOWN)
    throttled = await pin.verify(SAKURA, "4826", source="tcp:203.0.113.5:40000", via="remote")
    assert throttled.result is PinResult.THROTTLED  # the right PIN is not even checked
    assert (await pin.verify(SAKURA, "4826", source=OWNER, via="remote")).ok
    assert caplog.records[-2].levelno == logging.WARNING
    assert caplog.records[-2].getMessage().endswith("failures=10 result=throttled")


async def test_two_instances_cannot_grant_extra_tries(
        services: Services, store_url: str, backend: str, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from softswitch.services import pin as pin_module

    checked: list[str] = []  # argon2 checks against the subscriber's real hash
    real_check = pin_module._check  # noqa: SLF001

    async def counting_check(pin: str, pin_hash: str | None) -> bool:
        if pin_hash is not None:
            checked.append(pin)
        return await real_check(pin, pin_hash)

    monkeypatch.setattr(pin_module, "_check", counting_check)
    other_store = await Store.open(store_url, binding_journal=backend != "sqlite-sqlalchemy")
    try:
        other = build_services(services_config(Path("/nonexistent")),
                               sql_repositories(other_store))
        checks = await asyncio.gather(*(
            (services if index % 2 else other).pin.verify(
                SAKURA, f"{index:04d}", source=f"udp:192.0.2.{index}:5060", via="remote")
            for index in range(12)))
    finally:
        await other_store.close()
    # Twelve wrong PINs at once through two instances: exactly pin.max_failures were checked,
    # the rest refused as locked without a check.
    assert len(checked) == 5
    assert all(check.result in (PinResult.WRONG, PinResult.LOCKED) for check in checks)
    assert sum(check.result is PinResult.LOCKED for check in checks) >= 7
    async with store.engine.connect() as connection:
        row = (await connection.execute(select(pins.c.failures, pins.c.locked)
                                        .where(pins.c.number == SAKURA))).one()
    assert tuple(row) == (5, True)


async def test_a_pending_pin_change_applies_from_its_time(services: Services, store: Store,
                                                          clock: Clock) -> None:
    from softswitch.credentials import hash_secret

    async with store.writing() as connection:
        await connection.execute(pins.update().where(pins.c.number == KENJI).values(
            pending_pin_hash=hash_secret("8642"), pending_apply_at=clock.now + 60))
    assert (await services.pin.state(KENJI)).pending_change
    assert (await services.pin.verify(KENJI, "1234", source=OWNER, via="remote")).ok
    clock.now += 61
    assert not (await services.pin.verify(KENJI, "1234", source=OWNER, via="remote")).ok
    assert (await services.pin.verify(KENJI, "8642", source=OWNER, via="remote")).ok


def test_sources_and_log_fields() -> None:
    assert source_host("udp:203.0.113.5:5060") == "203.0.113.5"
    assert source_host("tcp:[2001:db8::1]:5061") == "2001:db8::1"
    assert source_host("weird") == "weird"
    assert log_field("0901\x1b[31m") == "0901?[31m"
    assert log_field("a b") == '"a b"' and log_field("") == '""'
    assert len(log_field("9" * 500)) == 64


# -- remote control ---------------------------------------------------------------------------


async def test_remote_access_with_the_right_pin_only_when_enabled(services: Services) -> None:
    remote = services.remote_control
    off = await remote.authenticate("090-1234-5678", "4826", source=OWNER)
    assert not off.granted and off.number == SAKURA  # off by default: refused, counted
    assert (await services.pin.state(SAKURA)).failures == 1
    await remote.set_enabled(SAKURA, True)
    granted = await remote.authenticate("+81 90-1234-5678", "4826", source=OWNER)
    assert granted.granted and granted.number == SAKURA
    assert (await services.pin.state(SAKURA)).failures == 0
    for keyed in (UNKNOWN, HIROSHI, "12"):
        refused = await remote.authenticate(keyed, "1234", source=OWNER)
        assert not refused.granted and refused.number is None


async def test_consecutive_wrong_pins_switch_remote_control_off(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "softswitch.security")
    remote = services.remote_control
    await remote.set_enabled(KENJI, True)
    assert remote.config.disable_after == 4  # the shipped default
    outcomes = [await remote.authenticate(KENJI, "0000", source=ATTACKER) for _ in range(4)]
    assert [o.switched_off for o in outcomes] == [False, False, False, True]
    assert not await remote.enabled(KENJI)
    assert "remote-control-disabled number=08023456789 failures=4" in caplog.text
    # The PIN itself is not locked yet (5 is pin.max_failures), but remote control stays off
    # until the subscriber turns it on again, even for the right PIN.
    assert not (await remote.authenticate(KENJI, "1234", source=OWNER)).granted
    await remote.set_enabled(KENJI, True)
    await services.pin.unlock(KENJI)
    assert (await remote.authenticate(KENJI, "1234", source=OWNER)).granted


# -- last caller and call records --------------------------------------------------------------


async def test_last_caller_is_kept_and_read_back_after_the_batch(services: Services,
                                                                 store: Store,
                                                                 clock: Clock) -> None:
    last = services.last_caller
    assert await last.get(SAKURA) is None
    last.record(SAKURA, KENJI)
    last.record(SAKURA, None)  # a withheld caller, later: the last one
    last.record(UNKNOWN, KENJI)  # not a subscriber: skipped, not a failed batch
    assert await last.get(SAKURA) == LastCaller(None, clock.now)
    await last.drain()
    fresh = build_services(services_config(Path("/nonexistent")), sql_repositories(store))
    stored = await fresh.last_caller.get(SAKURA)
    assert stored is not None and stored.withheld
    last.record(SAKURA, KENJI)
    await last.drain()
    assert await fresh.last_caller.get(SAKURA) == LastCaller(KENJI, clock.now)


async def test_call_records_go_to_the_store_and_the_cdr_file(services: Services, store: Store,
                                                             tmp_path: Path) -> None:
    records = [
        CallRecord("call-1", KENJI, SAKURA, "answered", 100.0, 102.0, 130.0, 28.0, "200"),
        CallRecord("call-2", None, SAKURA, "blocked", 140.0, None, 140.1, 0.0),
    ]
    for record in records:
        services.call_records.record(record)
    await services.call_records.drain()
    async with store.engine.connect() as connection:
        stored = (await connection.execute(
            select(call_records.c.call_id, call_records.c.caller, call_records.c.outcome,
                   call_records.c.duration).order_by(call_records.c.id))).all()
    assert [tuple(row) for row in stored] == [("call-1", KENJI, "answered", 28.0),
                                              ("call-2", None, "blocked", 0.0)]
    lines = (tmp_path / "cdr.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"call_id": "call-1", "caller": KENJI, "callee": SAKURA, "outcome": "answered",
         "started_at": 100.0, "answered_at": 102.0, "ended_at": 130.0, "duration": 28.0,
         "detail": "200"},
        {"call_id": "call-2", "caller": None, "callee": SAKURA, "outcome": "blocked",
         "started_at": 140.0, "answered_at": None, "ended_at": 140.1, "duration": 0.0,
         "detail": ""},
    ]


# -- layering ---------------------------------------------------------------------------------


def test_services_import_no_sql_sip_or_audio() -> None:
    modules = ["blocklist", "call_records", "directory", "feed", "forwarding", "last_caller",
               "model", "pin", "remote_control", "repositories", "voicemail"]
    program = (f"import sys\nfor name in {modules!r}:\n"
               "    __import__('softswitch.services.' + name)\n"
               "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'"
               " or m.startswith(('softswitch.sip', 'softswitch.media', 'softswitch.store',"
               " 'softswitch.switch', 'softswitch.net'))))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
