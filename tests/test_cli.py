"""The operator's commands (issue 9 item 8, issue 10 item 6) run as the real `softswitch`
command against a store provisioned from the test config: what they print, their exit status,
and what `show --json` says afterwards. Refusals change nothing."""

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from softswitch.config import load_config
from softswitch.services import Services, build_services
from softswitch.services.directory import SubscriberDirectory
from softswitch.store.directory import SqlChangeFeed
from softswitch.store.repositories import sql_repositories
from softswitch.store.store import Store

from .support import softswitch, write_config

ONE, TWO, THREE, DATA = "09011110001", "09011110002", "08022220003", "07033330004"


@dataclass
class Operator:
    config: Path
    store: Store
    services: Services

    def run(self, *args: str) -> tuple[int, str, str]:
        result = softswitch(*args, "--config", str(self.config))
        return result.returncode, result.stdout, result.stderr

    def show(self, number: str) -> dict[str, Any]:
        code, out, err = self.run("show", number, "--json")
        assert code == 0, err
        state: dict[str, Any] = json.loads(out)
        return state


@pytest.fixture
async def operator(tmp_path: Path) -> AsyncIterator[Operator]:
    config_path = write_config(tmp_path, 5060)
    config = load_config(config_path)
    store = await Store.open(config.store.url)
    await store.provision(config)
    services = build_services(config, sql_repositories(store))
    yield Operator(config_path, store, services)
    await services.close()
    await store.close()


async def cli(operator: Operator, *args: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(operator.run, *args)


async def show(operator: Operator, number: str) -> dict[str, Any]:
    return await asyncio.to_thread(operator.show, number)


async def test_blocklist_add_list_and_remove(operator: Operator) -> None:
    assert await cli(operator, "blocklist", "add", "090-1111-0001", "+81 3-1234-5678") == (
        0, f"0312345678 blocked for {ONE}\n", "")
    assert (await cli(operator, "blocklist", "add", ONE, "0312345678"))[:2] == (
        0, f"0312345678 is already blocked for {ONE}\n")
    await cli(operator, "blocklist", "add", ONE, "06-1234-5678")
    code, out, _ = await cli(operator, "blocklist", "list", ONE, "--json")
    assert code == 0 and json.loads(out) == ["0312345678", "0612345678"]
    assert (await cli(operator, "blocklist", "list", ONE))[1] == "0312345678\n0612345678\n"
    assert (await cli(operator, "blocklist", "remove", ONE, "0312345678"))[:2] == (
        0, f"0312345678 unblocked for {ONE}\n")
    assert (await show(operator, ONE))["blocklist"] == ["0612345678"]


REFUSALS = [
    (("blocklist", "add", ONE, "hello"), "not a phone number"),
    (("blocklist", "add", ONE, "+1 555 0100"), "not a Japanese phone number"),
    (("blocklist", "add", ONE, "090-1111-0001"), f"{ONE} cannot be its own blocked number"),
    (("blocklist", "add", "09099990000", "0312345678"), "no subscriber 09099990000"),
    (("blocklist", "add", DATA, "0312345678"), f"{DATA} is a data SIM"),
    (("blocklist", "add", "not-a-number", "0312345678"), "not a phone number"),
    (("blocklist", "list", DATA), f"{DATA} is a data SIM"),
    (("forwarding", ONE, "--to", ONE), f"{ONE} cannot be its own forwarding destination"),
    (("forwarding", ONE, "--to", "abc"), "not a phone number"),
    (("forwarding", DATA, "--to", TWO), f"{DATA} is a data SIM"),
    (("forwarding", "09099990000", "--off"), "no subscriber 09099990000"),
    (("voicemail", ONE, "--off", "--ring-time", "121"), "ring time must be 0 to 120 seconds"),
    (("voicemail", DATA, "--on"), f"{DATA} is a data SIM"),
    (("pin", "unlock", DATA), f"{DATA} is a data SIM"),
    (("pin", "unlock", "09099990000"), "no subscriber 09099990000"),
]


async def test_refusals_exit_1_with_a_clear_message_and_change_nothing(
        operator: Operator) -> None:
    async def everyone() -> list[dict[str, Any] | None]:
        return [await operator.store.subscriber_state(n, 0) for n in (ONE, TWO, THREE, DATA)]

    before = await everyone()
    running = asyncio.Semaphore(4)

    async def refused(args: tuple[str, ...]) -> tuple[int, str, str]:
        async with running:
            return await cli(operator, *args)

    answers = await asyncio.gather(*(refused(args) for args, _ in REFUSALS))
    for (args, message), (code, out, err) in zip(REFUSALS, answers, strict=True):
        assert code == 1 and out == "" and err.startswith("softswitch: "), (args, err)
        assert message in err, (args, err)
    assert await everyone() == before


async def test_a_full_blocklist_refuses_the_next_number(operator: Operator) -> None:
    for index in range(30):  # services.blocklist_max, as shipped
        await operator.services.blocklist.add(THREE, f"03{index:08d}")
    code, _, err = await cli(operator, "blocklist", "add", THREE, "0699999999")
    assert code == 1 and "full (30 numbers); nothing changed" in err
    assert len((await show(operator, THREE))["blocklist"]) == 30


async def test_command_line_mistakes_exit_2(operator: Operator) -> None:
    mistakes = [("forwarding", ONE, "--mode", "immediate"),  # --mode without --to
                ("forwarding", ONE, "--to", TWO, "--off"),
                ("forwarding", ONE, "--to", TWO, "--mode", "later"),
                ("voicemail", ONE),
                ("voicemail", ONE, "--on", "--off"),
                ("blocklist", "drop", ONE, TWO)]
    answers = await asyncio.gather(*(cli(operator, *args) for args in mistakes))
    for args, (code, _, err) in zip(mistakes, answers, strict=True):
        assert code == 2 and "usage:" in err, args


async def test_forwarding_on_and_off(operator: Operator) -> None:
    assert await cli(operator, "forwarding", ONE, "--to", "+81 90-1111-0002") == (
        0, f"{ONE} forwards to {TWO} when not answered\n", "")
    assert (await show(operator, ONE))["forwarding"] == {
        "enabled": True, "destination": TWO, "mode": "no_answer"}
    await cli(operator, "forwarding", ONE, "--to", THREE, "--mode", "immediate")
    assert (await show(operator, ONE))["forwarding"] == {
        "enabled": True, "destination": THREE, "mode": "immediate"}
    off = await cli(operator, "forwarding", ONE, "--off")
    assert off[:2] == (0, f"forwarding off for {ONE}\n")
    assert (await show(operator, ONE))["forwarding"] == {
        "enabled": False, "destination": THREE, "mode": "immediate"}


async def test_voicemail_on_off_and_ring_time(operator: Operator) -> None:
    assert await cli(operator, "voicemail", TWO, "--off", "--ring-time", "30") == (
        0, f"voicemail off for {TWO}, ring time 30 s\n", "")
    voicemail = (await show(operator, TWO))["voicemail"]
    assert (voicemail["enabled"], voicemail["ring_time"]) == (False, 30)
    await cli(operator, "voicemail", TWO, "--on")
    voicemail = (await show(operator, TWO))["voicemail"]
    assert (voicemail["enabled"], voicemail["ring_time"]) == (True, 30)


async def test_pin_unlock(operator: Operator) -> None:
    for _ in range(5):
        await operator.services.pin.verify(ONE, "0000", source="udp:192.0.2.1:5060", via="test")
    assert (await show(operator, ONE))["pin"]["locked"] is True
    assert await cli(operator, "pin", "unlock", "+81-90-1111-0001") == (
        0, f"PIN of {ONE} unlocked\n", "")
    pin = (await show(operator, ONE))["pin"]
    assert (pin["locked"], pin["failures"], pin["pending_change"]) == (False, 0, False)
    assert (await operator.services.pin.verify(ONE, "1234", source="udp:192.0.2.1:5060",
                                               via="test")).ok


async def test_show_lists_voicemail_last_caller_and_services(operator: Operator,
                                                             tmp_path: Path) -> None:
    services = operator.services
    path = tmp_path / "message.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 8000 * 3)
    message = await services.voicemail.store_message(TWO, ONE, path, 3.04)
    later = tmp_path / "later.wav"
    later.write_bytes(message.audio.read_bytes())
    heard = await services.voicemail.store_message(TWO, None, later, 1.0)
    await services.voicemail.mark_heard(TWO, heard.id)
    services.last_caller.record(TWO, THREE)
    await services.last_caller.drain()
    await services.remote_control.set_enabled(TWO, True)
    state = await show(operator, TWO)
    assert state["last_caller"] == THREE
    voicemail = state["voicemail"]
    assert (voicemail["enabled"], voicemail["ring_time"], voicemail["greeting"],
            voicemail["new"], voicemail["saved"]) == (True, 15, False, 1, 1)
    assert [(m["caller"], m["duration"], m["new"]) for m in voicemail["messages"]] == [
        (ONE, 3.0, True), (None, 1.0, False)]
    assert voicemail["messages"][0]["time"].endswith("+00:00")
    assert state["remote_control"] == {"enabled": True}
    assert state["pin"] == {"locked": False, "failures": 0, "pending_change": False,
                            "pending_apply_at": None}
    assert "1234" not in json.dumps(state)
    assert (await show(operator, ONE))["last_caller"] is None


async def test_a_data_sim_shows_no_voice_service_enabled(operator: Operator) -> None:
    state = await show(operator, DATA)
    assert state["sim"] == "data"
    assert state["voicemail"]["enabled"] is False  # its state row says on: not for a data SIM
    assert state["forwarding"]["enabled"] is False
    assert state["remote_control"] == {"enabled": False}


async def test_a_cli_change_is_seen_by_a_running_instance_after_sync(operator: Operator) -> None:
    directory = SubscriberDirectory(SqlChangeFeed(operator.store), idle_interval=60)
    await directory.start()
    try:
        assert (await cli(operator, "blocklist", "add", ONE, "0312345678"))[0] == 0
        assert (await cli(operator, "forwarding", ONE, "--to", TWO, "--mode", "immediate"))[0] == 0
        await directory.sync()
        view = directory.callee(ONE)
        assert view is not None and view.blocks("0312345678")
        assert (view.forwarding.enabled, view.forwarding.destination) == (True, TWO)
    finally:
        await directory.close()


def test_check_config_takes_the_path_either_way(tmp_path: Path) -> None:
    config = write_config(tmp_path, 5060)
    for args in (("check-config", str(config)), ("check-config", "--config", str(config))):
        result = softswitch(*args)
        assert result.returncode == 0 and result.stdout == f"{config}: ok (4 subscribers)\n"
    both = softswitch("check-config", str(config), "--config", str(config))
    assert both.returncode == 2 and "once" in both.stderr
    neither = softswitch("check-config")
    assert neither.returncode == 2
