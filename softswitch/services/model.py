"""The domain's values: what a subscriber's line and services look like to the rest of
softswitch (the router, the voice flows, the CLI). Plain frozen dataclasses; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

SimType = Literal["voice", "data"]
LineType = Literal["D", "A"]
ForwardingMode = Literal["immediate", "no_answer"]
Outcome = Literal["answered", "blocked", "forwarded", "voicemail", "no_answer", "busy",
                  "unreachable", "rejected", "cancelled", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("answered", "blocked", "forwarded", "voicemail", "no_answer",
                                 "busy", "unreachable", "rejected", "cancelled", "failed")
FORWARDING_MODES: tuple[ForwardingMode, ...] = ("immediate", "no_answer")

MAX_RING_TIME = 120  # seconds (呼出時間 0-120)


@dataclass(slots=True, frozen=True)
class Line:
    """A subscriber's contract: the number, the SIM and line type, the paid option."""

    number: str
    sim: SimType
    line: LineType
    nuisance_option: bool  # type A's paid nuisance-call blocking option

    @property
    def is_voice(self) -> bool:
        """Only voice SIMs have calls and the voice services."""
        return self.sim == "voice"

    @property
    def blocking_available(self) -> bool:
        """Nuisance-call blocking: free on type D, the paid option on type A."""
        return self.is_voice and (self.line == "D" or self.nuisance_option)


@dataclass(slots=True, frozen=True)
class VoicemailSettings:
    enabled: bool
    ring_time: int  # seconds an unanswered call rings before voicemail (or forwarding) answers
    has_greeting: bool  # a personal greeting is recorded


@dataclass(slots=True, frozen=True)
class ForwardingSettings:
    enabled: bool
    destination: str | None
    mode: ForwardingMode


@dataclass(slots=True, frozen=True)
class CalleeView:
    """What routing a call to a subscriber needs, served from memory by the directory.

    A data SIM's view has every voice service off."""

    line: Line
    blocklist: frozenset[str]
    voicemail: VoicemailSettings
    forwarding: ForwardingSettings
    remote_control: bool

    def blocks(self, caller: str | None) -> bool:
        """The caller is on the blocklist and blocking works on this line."""
        return caller is not None and self.line.blocking_available and caller in self.blocklist


@dataclass(slots=True, frozen=True)
class VoicemailMessage:
    id: int
    number: str  # the mailbox's subscriber
    caller: str | None  # None: withheld
    received_at: float  # epoch seconds
    seconds: float
    new: bool  # not heard yet
    audio: Path  # the WAV file


@dataclass(slots=True, frozen=True)
class LastCaller:
    caller: str | None  # None: the caller withheld the number
    at: float  # epoch seconds

    @property
    def withheld(self) -> bool:
        return self.caller is None


@dataclass(slots=True, frozen=True)
class CallRecord:
    """One call attempt, as stored and as one JSON line of calls.cdr_file."""

    call_id: str
    caller: str | None  # None: withheld
    callee: str  # the number dialled
    outcome: Outcome
    started_at: float  # epoch seconds
    answered_at: float | None
    ended_at: float
    duration: float  # seconds from answer to end; 0 when not answered
    detail: str = ""  # e.g. the final status, the forwarding destination


CALL_RECORD_FIELDS = tuple(field.name for field in fields(CallRecord))  # stored and written
