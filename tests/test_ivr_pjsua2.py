"""A PJSUA2 softphone calls the DTMF test number (issue 4 acceptance).

`softswitch run` in a child process with the real Japanese prompts; PJSUA2 in another child
process (tests/peers/pjsua2_caller.py: pjsua2 allows one library instance per process), with
the null sound device and its conference bridge at 8 kHz, records what it hears to a WAV file.

Two calls to sip:1999@127.0.0.1:PORT, no registration:
1. waits for the intro prompt to end, keys "123#" as RFC 2833 (RFC 4733) telephone-events;
2. keys "4567#" as SIP INFO (application/dtmf-relay) while the intro is still playing.
The server must log `dtmf-test digits=123` and `digits=4567`, each key by the transport it was
sent by, and hang up itself after reading the digits back.

What the phone heard is checked against the prompt files by normalised cross-correlation
(`find_prompt`, plain Python): the intro at the start of the first call, then "you entered"
and the digits 1, 2, 3 in that order; in the second call "you entered" and the digit 4, and
not the whole intro (the first key cut it short). A prompt that was never said (the
blocked-caller announcement) must not match, so the check can fail.
"""

from __future__ import annotations

import array
import importlib.util
import math
import operator
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pytest

from softswitch.media.g711 import ulaw_to_pcm16
from softswitch.media.prompts import DEFAULT_DIRECTORY, SAMPLE_RATE, prompt_path, read_prompt_audio
from softswitch.media.wav import WAVE_FORMAT_PCM, parse_wav

from .peers.child import ChildProcess
from .support import ServerProcess

PEERS = Path(__file__).parent / "peers"

needs_pjsua2 = pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                                  reason="pjsua2 not installed (PyPI package pjsua2-python)")

# ---- finding a prompt in a recording ---------------------------------------------------------
# The phone's jitter buffer may drop or repeat a 10 ms frame now and then (it did, while it
# settled at the start of a call), which shifts everything after it by 80 samples. So the
# prompt is compared in chunks, each free to slip by whole frames against the previous one;
# the score is the median of the chunks' normalised correlations (1.0: the same samples).
BLOCK = 40  # samples per envelope value (5 ms): the coarse search
CHUNK = 2000  # samples per compared chunk (250 ms)
CANDIDATES = 3  # envelope peaks compared sample by sample
FRAME = 80  # samples in one frame of the phone's jitter buffer (10 ms)
MAX_SLIP = 3  # frames a chunk may slip against the previous one
FIRST_REACH = 4 * BLOCK  # how far from the envelope's estimate the first chunk is sought
MATCHED = 0.9  # a chunk this similar (or better) needs no search for a slip
VOICED_RMS = 300.0  # chunks of the prompt quieter than this (about -40 dBFS) are not compared

Samples = Sequence[int]


@dataclass(frozen=True, slots=True)
class Found:
    score: float  # median normalised correlation of the prompt's voiced chunks
    at: float  # seconds into the recording where the prompt starts (to within 20 ms)


def pcm16(data: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(data[:len(data) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def prompt_samples(prompt_id: str) -> array.array[int]:
    """A shipped Japanese prompt, decoded from μ-law to 16-bit linear."""
    ulaw = read_prompt_audio(prompt_path(DEFAULT_DIRECTORY, "ja", prompt_id))
    return pcm16(ulaw_to_pcm16(ulaw))


def recording_samples(path: Path) -> array.array[int]:
    wav = parse_wav(path.read_bytes())
    assert (wav.format_tag, wav.channels, wav.sample_rate, wav.bits_per_sample) == (
        WAVE_FORMAT_PCM, 1, SAMPLE_RATE, 16), f"{path}: not 8 kHz mono 16-bit PCM"
    return pcm16(wav.data)


def similarity(a: Samples, b: Samples) -> float:
    """Normalised correlation (cosine) of two equally long runs of samples."""
    energy = sum(map(operator.mul, a, a)) * sum(map(operator.mul, b, b))
    return sum(map(operator.mul, a, b)) / math.sqrt(energy) if energy else 0.0


def envelope(samples: Samples) -> list[float]:
    return [sum(map(abs, samples[i:i + BLOCK])) / BLOCK
            for i in range(0, len(samples) - BLOCK + 1, BLOCK)]


def envelope_peaks(recording: list[float], prompt: list[float]) -> list[int]:
    """Offsets (in blocks) of the best `CANDIDATES` Pearson correlations of the envelopes,
    at least half a prompt apart."""
    n = len(prompt)
    mean = sum(prompt) / n
    centred = [value - mean for value in prompt]
    spread = math.sqrt(sum(value * value for value in centred)) or 1.0
    scores: list[tuple[float, int]] = []
    for lag in range(len(recording) - n + 1):
        window = recording[lag:lag + n]
        window_mean = sum(window) / n
        window_spread = math.sqrt(max(sum(map(operator.mul, window, window))
                                      - n * window_mean * window_mean, 1e-9))
        scores.append((sum(map(operator.mul, centred, window)) / (spread * window_spread), lag))
    peaks: list[int] = []
    for _, lag in sorted(scores, reverse=True):
        if all(abs(lag - peak) >= n // 2 for peak in peaks):
            peaks.append(lag)
            if len(peaks) == CANDIDATES:
                break
    return peaks


def chunk_scores(recording: Samples, prompt: Samples, start: int) -> list[float]:
    """The prompt's voiced chunks compared with the recording from about `start` on: the
    first aligned within `FIRST_REACH` of `start`, each next one where the previous one matched
    best or (if it does not match there) up to `MAX_SLIP` frames earlier or later."""
    size = min(CHUNK, len(prompt))
    scores: list[float] = []
    slip, first = 0, True
    for offset in range(0, len(prompt) - size + 1, size):
        chunk = prompt[offset:offset + size]
        if math.sqrt(sum(map(operator.mul, chunk, chunk)) / size) < VOICED_RMS:
            continue

        def at(shift: int, chunk: Samples = chunk, offset: int = offset) -> float:
            begin = start + offset + shift
            if begin < 0 or begin + size > len(recording):
                return 0.0
            return similarity(recording[begin:begin + size], chunk)

        if first:
            best, slip = max((at(shift), shift)
                             for shift in range(-FIRST_REACH, FIRST_REACH + 1))
            first = False
        else:
            best = at(slip)
            if best < MATCHED:
                best, slip = max((at(slip + FRAME * frames), slip + FRAME * frames)
                                 for frames in range(-MAX_SLIP, MAX_SLIP + 1))
        scores.append(best)
    return scores


def find_prompt(recording: Samples, prompt: Samples) -> Found:
    """Where in `recording` `prompt` was heard best, and how well (see the comment above)."""
    best = Found(0.0, 0.0)
    if len(recording) < len(prompt):
        return best
    for peak in envelope_peaks(envelope(recording), envelope(prompt)):
        scores = chunk_scores(recording, prompt, peak * BLOCK)
        found = Found(median(scores) if scores else 0.0, peak * BLOCK / SAMPLE_RATE)
        best = max(best, found, key=lambda f: f.score)
    return best


# ---- the phone ----------------------------------------------------------------------------
@pytest.fixture
def caller(tmp_path: Path) -> Iterator[ChildProcess]:
    phone = ChildProcess([sys.executable, PEERS / "pjsua2_caller.py", "--log",
                          tmp_path / "pjsua2.log"],
                         name="pjsua2", stderr_path=tmp_path / "pjsua2.stderr")
    try:
        phone.expect_event("started", timeout=10)
        yield phone
        phone.send("quit")
        phone.expect_event("stopped", timeout=10)
    finally:
        code = phone.finish(timeout=10)
    assert code == 0, phone.failure("did not exit cleanly")


def call_and_key(phone: ChildProcess, uri: str, recording: Path, method: str, digits: str,
                 after: float) -> Path:
    """Call `uri`, key `digits` by `method` `after` seconds into the media, and wait for the
    server to hang up. The recording of what the phone heard."""
    phone.send(f"call {uri} {recording}")
    phone.expect_event("media", timeout=10)
    time.sleep(after)
    phone.send(f"dtmf {method} {digits}")
    sent = phone.expect_event("dtmf_sent", timeout=5)
    assert sent["digits"] == digits, phone.failure(f"dtmf: {sent}")
    ended = phone.expect_event("disconnected", timeout=20)  # read-back and goodbye: ~6 s
    assert ended["code"] == 200 and int(str(ended["samples"])) > 0, phone.failure(
        f"the call ended badly: {ended}")
    return Path(str(ended["recording"]))


def dtmf_log(server: ServerProcess) -> tuple[list[str], list[tuple[str, str]]]:
    """The digits each `dtmf-test digits=` line logged, and every (key, transport)."""
    text = server.log_text()
    digits = re.findall(r"dtmf-test digits=(\S*)$", text, re.MULTILINE)
    keys = re.findall(r"dtmf-test key (\S) by (\w+)$", text, re.MULTILINE)
    return digits, keys


@needs_pjsua2
def test_pjsua2_keys_digits_by_rfc2833_and_sip_info_and_hears_the_prompts(
        server: ServerProcess, caller: ChildProcess, tmp_path: Path) -> None:
    uri = f"sip:1999@127.0.0.1:{server.port}"
    intro = prompt_samples("dtmf_test_intro")

    # 1. RFC 2833, once the whole intro has played
    first = call_and_key(caller, uri, tmp_path / "rfc2833.wav", "rfc2833", "123#",
                         after=len(intro) / SAMPLE_RATE + 0.4)
    assert dtmf_log(server) == (["123"], [("1", "rfc4733"), ("2", "rfc4733"),
                                          ("3", "rfc4733"), ("#", "rfc4733")])
    # 2. SIP INFO, during the intro (the first key stops it)
    second = call_and_key(caller, uri, tmp_path / "info.wav", "info", "4567#", after=1.0)
    assert dtmf_log(server) == (["123", "4567"], [
        ("1", "rfc4733"), ("2", "rfc4733"), ("3", "rfc4733"), ("#", "rfc4733"),
        ("4", "info"), ("5", "info"), ("6", "info"), ("7", "info"), ("#", "info")])
    assert server.log_text().count("ended: flow hung up") == 2  # the server said goodbye

    heard = recording_samples(first)
    found = {prompt_id: find_prompt(heard, prompt_samples(prompt_id)) for prompt_id in
             ("dtmf_test_intro", "you_entered", "digit_1", "digit_2", "digit_3")}
    for prompt_id, where in found.items():
        assert where.score >= 0.9, f"{prompt_id} not heard in the RFC 2833 call: {found}"
    assert found["dtmf_test_intro"].at < 1.0, found  # at once on answer
    starts = [where.at for where in found.values()]
    assert starts == sorted(starts), f"heard out of order: {found}"
    not_said = find_prompt(heard, prompt_samples("blocked_call"))
    assert not_said.score < 0.5, f"a prompt never played matches: {not_said}"

    heard = recording_samples(second)
    assert find_prompt(heard, prompt_samples("you_entered")).score >= 0.9
    assert find_prompt(heard, prompt_samples("digit_4")).score >= 0.9
    assert find_prompt(heard, intro).score < 0.5  # cut short by the first key (barge-in)
