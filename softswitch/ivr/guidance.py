"""The pieces every service menu is made of (SERVICES.md, "Menus, key by key"), so that a flow
reads like the voice guidance it speaks:

    choice = await guide.menu("blocklist_menu", menu_keys(keys))  # one key; `*` repeats
    number = await guide.number("blocklist_enter_number")         # digits, then `#`
    if await guide.confirm(["you_entered", *readout(number)]):    # `1` confirm / `2` again

Every prompt may be cut short by a key, and that key counts (type-ahead). A wrong or missing
entry is told ("入力が正しくありません" / "入力が確認できませんでした") and the question asked
again; the third failure of one question raises `GaveUp`, and the flow's runner says goodbye
and ends the call (ivr/flows.py). The keys themselves are configuration (config `menus:`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TypeVar

from ..config import MenusConfig
from ..services.errors import InvalidNumber, OwnNumber
from ..services.lines import other_number
from .runtime import Call, Ended, Entry

T = TypeVar("T")
TRIES = 3  # wrong or missing entries of one question before the call ends
MENU_TIMEOUT = 6.0  # seconds after a menu for its key
ENTRY_TIMEOUT = 8.0  # seconds after a question for its first key
INTER_DIGIT_TIMEOUT = 5.0  # seconds between the keys of a number
NUMBER_MAX_DIGITS = 16  # a national number, or 81 and the number
PIN_MAX_DIGITS = 8  # a PIN is 4 digits: a longer entry is taken whole (and fails), not cut


class GaveUp(Exception):  # noqa: N818 - an outcome, not a programming error
    """One question went wrong `TRIES` times: the call ends."""


class Guidance:
    """The menu primitives of one call, with the configured keys."""

    def __init__(self, call: Call, keys: MenusConfig) -> None:
        self.call = call
        self.keys = keys
        # Told of each change made (what commit() says it is): remote control audits them.
        self.on_change: Callable[[str], None] | None = None

    async def commit(self, change: Awaitable[T], what: str) -> T:
        """Make a change the caller confirmed, `what` it is for the audit: a hang-up from here
        on cuts neither the change nor its audit short."""
        async def made() -> T:
            result = await change
            if self.on_change is not None:
                self.on_change(what)
            return result

        return await asyncio.shield(made())

    async def say(self, *prompts: str | Sequence[str]) -> None:
        """Prompts in a row; a key stops them and is kept for the next question."""
        ids: list[str] = []
        for prompt in prompts:
            ids += [prompt] if isinstance(prompt, str) else prompt
        if ids:
            await self.call.play(ids, barge_in=True)

    async def menu(self, prompt: str | Sequence[str], choices: Collection[str]) -> str:
        """Say `prompt` and take one key of `choices` (a menu of the config: `menu_keys`):
        the key chosen. The repeat key says the menu again; a key that is no choice, or none,
        is told and the menu said again."""
        failures = 0
        while True:
            entry = await self.call.entry(prompt, max_digits=1, end="",
                                          first_digit_timeout=MENU_TIMEOUT)
            if entry.digits == self.keys.repeat:
                continue
            if entry.digits in choices:
                return entry.digits
            failures = await self._failed(entry, failures)

    async def ask(self, prompt: str | Sequence[str], *, max_digits: int,
                  valid: Callable[[str], bool] | None = None,
                  invalid_prompt: str = "invalid_input") -> str:
        """Say `prompt` and take keys ended by the end key (or a pause): the keys, once they
        are an entry `valid` accepts. A refused entry hears `invalid_prompt`."""
        failures = 0
        while True:
            entry = await self.question(prompt, max_digits=max_digits, valid=valid)
            if entry.ok:
                return entry.digits
            failures = await self._failed(entry, failures, invalid_prompt)

    async def question(self, prompt: str | Sequence[str], *, max_digits: int,
                       valid: Callable[[str], bool] | None = None) -> Entry:
        """One try of `ask`: what was keyed and how the entry ended, for a flow that tells
        failures its own way (a wrong PIN)."""
        return await self.call.entry(prompt, max_digits=max_digits, end=self.keys.end,
                                     first_digit_timeout=ENTRY_TIMEOUT,
                                     inter_digit_timeout=INTER_DIGIT_TIMEOUT, valid=valid)

    async def number(self, prompt: str | Sequence[str], *,
                     valid: Callable[[str], bool] | None = None,
                     invalid_prompt: str = "invalid_input") -> str:
        """A phone number keyed in, ended by the end key."""
        def acceptable(digits: str) -> bool:
            return digits.isdigit() and (valid is None or valid(digits))

        return await self.ask(prompt, max_digits=NUMBER_MAX_DIGITS, valid=acceptable,
                              invalid_prompt=invalid_prompt)

    async def ask_other_number(self, prompt: str, *, own: str, what: str,
                               invalid_prompt: str) -> str:
        """Another phone than the caller's own line `own`: number # -> read back -> 1 confirm
        / 2 key it again. The number confirmed, in national form."""
        def usable(digits: str) -> bool:
            try:
                other_number(digits, own, what)
            except (InvalidNumber, OwnNumber):
                return False
            return True

        while True:
            digits = await self.number(prompt, valid=usable, invalid_prompt=invalid_prompt)
            if await self.confirm(["you_entered", *self.call.prompts.digits_readout(digits)]):
                return other_number(digits, own, what)

    async def confirm(self, readout: Sequence[str], question: str = "confirm_or_retry") -> bool:
        """Read `readout` back, then `1` confirm (True) / `2` key it again (False)."""
        keys = self.keys.confirm
        return await self.menu([*readout, question], (keys.accept, keys.retry)) == keys.accept

    async def failed(self, prompt: str, failures: int) -> int:
        """Tell a failure with `prompt`; the count of failures after it. The last one of
        `TRIES` raises GaveUp."""
        await self.say(prompt)
        failures += 1
        if failures >= TRIES:
            raise GaveUp
        return failures

    async def _failed(self, entry: Entry, failures: int,
                      invalid_prompt: str = "invalid_input") -> int:
        return await self.failed("no_input" if entry.ended is Ended.TIMEOUT else invalid_prompt,
                                 failures)
