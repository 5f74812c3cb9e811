"""Service flows run against the real domain services on a SQLite store, with a scripted caller
instead of a phone: prompts "play" at once (each is recorded by its id), the caller keys one
key at a time whenever the flow waits for one, and silence is fake time on the call's clock.
No sockets, so a menu can be walked path by path, and hung up at every step, in milliseconds."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from softswitch.config import Config, parse_config
from softswitch.ivr.context import FlowContext
from softswitch.ivr.flows import build_flows
from softswitch.ivr.runtime import Call
from softswitch.media.dtmf import DigitEvent
from softswitch.media.g711 import Codec
from softswitch.media.prompts import DEFAULT_DIRECTORY, LANGUAGES, PromptLibrary
from softswitch.media.session import AudioFrame
from softswitch.services import Services, build_services
from softswitch.store.repositories import sql_repositories
from softswitch.store.store import Store

from .support import SUBSCRIBERS
from .test_ivr_runtime import FakeClock

D1, D2, A_OPTION, DATA = (s["number"] for s in SUBSCRIBERS)  # type D, D, A with the option
A_PLAIN = "07044440005"  # type A without the nuisance-call option
OUTSIDER = "0312345678"  # no subscriber
PINS = {D1: "1234", D2: "1234", A_OPTION: "1234", A_PLAIN: "1234"}  # pin.default
OWNER = "udp:127.0.0.1:5062"
MANIFESTS = {language: set(json.loads(
    (DEFAULT_DIRECTORY / language / "manifest.json").read_text())["prompts"])
    for language in LANGUAGES}
VOICE = bytes([0x10]) * 160  # a loud μ-law frame


def flows_config(directory: Path, **sections: Any) -> Config:
    document = {
        "sip": {"domain": "softswitch.test"},
        "services": {"voicemail": {"audio_dir": str(directory / "voicemail")}},
        "calls": {"cdr_file": False},
        "subscribers": [*SUBSCRIBERS, {"number": A_PLAIN, "sim": "voice", "line": "A",
                                       "sip_password": "pw-five"}],
        **sections,
    }
    return parse_config(yaml.safe_dump(document, allow_unicode=True), "flows.yaml")


@dataclass
class InstantMedia:
    """Plays every prompt at once; records what was said, by prompt id ("<audio>" for a
    recording such as a greeting or a message)."""

    library: PromptLibrary
    codec: Codec = Codec.PCMU
    on_audio: Callable[[AudioFrame], None] | None = None
    said: list[str] = field(default_factory=list)
    _names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._names = {id(self.library.frames(p, self.codec)): p
                       for p in self.library.prompt_ids}

    def play(self, clips: Sequence[Sequence[bytes]]) -> asyncio.Future[bool]:
        for clip in clips:
            name = self._names.get(id(clip), "<audio>")
            assert name == "<audio>" or all(name in ids for ids in MANIFESTS.values()), name
            self.said.append(name)
        done = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done

    def stop_playback(self) -> None:
        pass


@dataclass
class Line:
    """One call to a flow, and the caller on it."""

    call: Call
    media: InstantMedia
    clock: FakeClock
    task: asyncio.Task[None]
    hung_up: list[bool]

    @property
    def said(self) -> list[str]:
        return self.media.said

    async def waiting(self) -> None:
        """Until the flow waits for a key (or a recording for sound)."""
        deadline = time.monotonic() + 10
        while not (self.call.waiting_for_key or self.media.on_audio is not None):
            if self.task.done():
                raise AssertionError(f"the flow ended; it said {self.said}")
            assert time.monotonic() < deadline, f"the flow waits for nothing; said {self.said}"
            await asyncio.sleep(0.001)

    async def idle(self) -> None:
        """Until the flow waits for a key (or a recording for sound), or has ended."""
        deadline = time.monotonic() + 10
        while not (self.call.waiting_for_key or self.media.on_audio is not None
                   or self.task.done()):
            assert time.monotonic() < deadline, f"the flow is busy; said {self.said}"
            await asyncio.sleep(0.001)

    async def press(self, keys: str) -> None:
        """Each key once the flow waits for it, as a caller who listens to every prompt."""
        for key in keys:
            await self.waiting()
            self.call.digit_received(DigitEvent(key, "rfc4733", self.clock.now))  # type: ignore[arg-type]
            await asyncio.sleep(0)

    async def silence(self) -> None:
        """No key at all: the question's time runs out."""
        await self.waiting()
        waiter = self.call._waiter  # noqa: SLF001 - which wait runs out
        for _ in range(600):
            await self.clock.advance(0.1)
            if self.call._waiter is not waiter:  # noqa: SLF001
                return
        raise AssertionError(f"a minute of silence and the flow still waits; said {self.said}")

    async def speak(self, seconds: float, then: str = "#") -> None:
        """Talk for `seconds` into a recording, then press `then`."""
        deadline = time.monotonic() + 10
        while self.media.on_audio is None:
            assert not self.task.done() and time.monotonic() < deadline, self.said
            await asyncio.sleep(0.001)
        for index in range(int(seconds * 50)):
            self.media.on_audio(AudioFrame(VOICE, index, index * 160, False, self.clock.now))
        await self.press(then)

    async def ended(self) -> list[str]:
        """What was said, once the flow hung up."""
        deadline = time.monotonic() + 10
        while not self.task.done():
            assert not self.call.waiting_for_key, f"the flow waits for a key; said {self.said}"
            assert time.monotonic() < deadline, f"the flow does not end; said {self.said}"
            await asyncio.sleep(0.001)
        self.task.result()
        assert self.hung_up == [True], "the flow did not hang up"
        return self.said

    async def hang_up(self) -> None:
        """The caller hangs up: the flow is cancelled wherever it is."""
        self.call.end()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Switch:
    """The flow table over real services, on a store of its own."""

    store: Store
    services: Services
    config: Config
    library: PromptLibrary
    directory: Path
    flows: dict[str, Any]
    lines: list[Line] = field(default_factory=list)

    def dial(self, code: str, *, subscriber: str | None = D1, caller: str = "",
             source: str = OWNER) -> Line:
        """Call dial code `code` (a DialCodes name) as `subscriber` on their own line."""
        clock = FakeClock()
        media = InstantMedia(self.library)
        hung_up: list[bool] = []
        call = Call(media, self.library, on_hangup=lambda: hung_up.append(True),
                    caller=caller or (subscriber or ""), called=code, subscriber=subscriber,
                    source=source, timers=clock)
        task = asyncio.create_task(self.flows[code](call))
        line = Line(call, media, clock, task, hung_up)
        self.lines.append(line)
        return line

    async def state(self, number: str = D1) -> dict[str, Any]:
        """`softswitch show --json`, less what calls change by themselves."""
        await self.services.last_caller.drain()
        state = await self.store.subscriber_state(number)
        assert state is not None
        state.pop("registrations")
        for message in state["voicemail"]["messages"]:
            message.pop("time")
        return state


def provisioned_template(directory: Path) -> Path:
    """A store provisioned with the subscribers once (the PIN hashes take a while), for each
    test to copy."""
    path = directory / "template.db"

    async def provision() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{path}")
        try:
            await store.provision(flows_config(directory))
        finally:
            await store.close()

    asyncio.run(provision())
    return path


async def open_switch(directory: Path, library: PromptLibrary, template: Path,
                      **sections: Any) -> AsyncIterator[Switch]:
    config = flows_config(directory, **sections)
    shutil.copyfile(template, directory / "softswitch.db")
    store = await Store.open(f"sqlite+aiosqlite:///{directory / 'softswitch.db'}")
    services = build_services(config, sql_repositories(store))
    await services.start()
    context = FlowContext(services, config.menus, directory / "staging",
                          disconnect_after=config.services.remote_control.disconnect_after)
    switch = Switch(store, services, config, library, directory, build_flows(context))
    try:
        yield switch
    finally:
        for line in switch.lines:
            await line.hang_up()
        await services.close()
        await store.close()
