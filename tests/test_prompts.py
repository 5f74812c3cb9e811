"""The prompt catalogue, the committed rendered audio and the readouts built from it."""

import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from softswitch.media.g711 import ALAW_SILENCE, ULAW_SILENCE, ulaw_to_alaw, ulaw_to_pcm16
from softswitch.media.prompts import (
    CATALOGUE,
    DEFAULT_DIRECTORY,
    LANGUAGES,
    NUMBER_MAX,
    Counter,
    PromptError,
    PromptLibrary,
    Speech,
    Tone,
    digits_readout,
    prompt_path,
    read_prompt_audio,
)


@pytest.fixture(scope="module", params=LANGUAGES)
def library(request: pytest.FixtureRequest) -> PromptLibrary:
    return PromptLibrary.load(request.param)


def rms(ulaw: bytes) -> float:
    samples = memoryview(ulaw_to_pcm16(ulaw)).cast("h")
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def test_every_catalogue_prompt_loads_in_both_languages(library: PromptLibrary) -> None:
    assert library.prompt_ids == tuple(CATALOGUE)
    assert len(CATALOGUE) > 250
    for prompt_id in CATALOGUE:
        assert prompt_path(DEFAULT_DIRECTORY, library.language, prompt_id).is_file()


def test_japanese_is_the_default() -> None:
    assert PromptLibrary.load().language == "ja"


def test_frames_are_20ms_g711_payloads_for_both_codecs(library: PromptLibrary) -> None:
    for prompt_id in CATALOGUE:
        pcmu = library.frames(prompt_id, "PCMU")
        pcma = library.frames(prompt_id, "PCMA")
        samples = round(library.duration(prompt_id) * 8000)
        assert len(pcmu) == len(pcma) == math.ceil(samples / 160)
        assert all(len(frame) == 160 for frame in (*pcmu, *pcma))
        ulaw = b"".join(pcmu)
        assert b"".join(pcma) == ulaw_to_alaw(ulaw)
        padding = len(ulaw) - samples
        assert ulaw[samples:] == bytes([ULAW_SILENCE]) * padding
        assert b"".join(pcma)[samples:] == bytes([ALAW_SILENCE]) * padding
    assert library.frames("goodbye") is library.frames("goodbye", "PCMU")


def test_durations_are_plausible(library: PromptLibrary) -> None:
    for prompt_id in CATALOGUE:
        assert 0.1 < library.duration(prompt_id) < 30, prompt_id
    for piece in ("digit_1", "num_7", "ken_3", "byou_15", "hour_3", "month_11", "day_25"):
        assert library.duration(piece) < 2.0, piece
    assert library.duration("remote_menu") > 10  # nine menu choices
    assert library.duration("voicemail_tone") == pytest.approx(0.5, abs=0.02)


def test_audio_is_speech_level_not_silence(library: PromptLibrary) -> None:
    for prompt_id in CATALOGUE:
        ulaw = read_prompt_audio(prompt_path(DEFAULT_DIRECTORY, library.language, prompt_id))
        level = rms(ulaw)
        assert level > 1000, f"{prompt_id}: RMS {level:.0f} (about -30 dBFS or quieter)"
        peak = max(abs(s) for s in memoryview(ulaw_to_pcm16(ulaw)).cast("h"))
        expected_dbfs = -12 if prompt_id == "voicemail_tone" else -3
        dbfs = 20 * math.log10(peak / 32768)
        assert dbfs == pytest.approx(expected_dbfs, abs=0.5), f"{prompt_id}: peak {dbfs:.1f} dBFS"


def test_voicemail_tone_is_a_1khz_beep(library: PromptLibrary) -> None:
    tone = CATALOGUE["voicemail_tone"]
    assert isinstance(tone, Tone) and tone.frequency_hz == 1000
    ulaw = read_prompt_audio(prompt_path(DEFAULT_DIRECTORY, library.language, "voicemail_tone"))
    samples = memoryview(ulaw_to_pcm16(ulaw)).cast("h")
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    assert crossings / (len(samples) / 8000) == pytest.approx(1000, rel=0.02)


def test_rendered_audio_matches_the_catalogue_text() -> None:
    """A changed text whose audio was not rendered again (scripts/render_prompts.py) fails."""
    for language in LANGUAGES:
        manifest = json.loads((DEFAULT_DIRECTORY / language / "manifest.json").read_text())
        assert manifest["voice"].startswith(
            "pyopenjtalk-plus" if language == "ja" else "eSpeak NG")
        stale = [pid for pid, prompt in CATALOGUE.items()
                 if manifest["prompts"].get(pid) != prompt.spoken(language)]
        assert stale == []
        extra = [p.name for p in (DEFAULT_DIRECTORY / language).iterdir()
                 if p.suffix == ".wav" and p.stem not in CATALOGUE]
        assert extra == []


def test_texts_from_the_service_specification() -> None:
    ja = PromptLibrary.load("ja")
    assert ja.text("blocked_call") == "おかけになった電話番号への通話は、おつなぎできません。"
    assert ja.text("dtmf_test_intro") == "ダイヤルボタンを押して、最後に#を押してください。"
    assert "発信音のあとに、メッセージをお話しください" in ja.text("voicemail_greeting")
    en = PromptLibrary.load("en")
    assert en.text("dtmf_test_intro") == "Key in digits, then press hash."
    menu = en.text("voicemail_playback_menu")
    assert [menu.index(f"press {key}") for key in ("1", "7", "9", "hash")] == sorted(
        menu.index(f"press {key}") for key in ("1", "7", "9", "hash"))
    remote = ja.text("remote_menu")
    assert [remote.index(f"{n}を") for n in range(1, 10)] == sorted(
        remote.index(f"{n}を") for n in range(1, 10))


def test_tts_is_fed_readings_not_symbols() -> None:
    enter_pin = CATALOGUE["enter_pin"]
    assert isinstance(enter_pin, Speech)
    assert "#" in enter_pin.ja and "#" not in enter_pin.spoken("ja")
    assert "シャープ" in enter_pin.spoken("ja")
    assert enter_pin.spoken("en").endswith("network pin, followed by the hash key.")
    assert CATALOGUE["digit_star"].spoken("ja") == "こめじるし"
    assert CATALOGUE["day_1"].spoken("ja") == "ついたち"
    assert "おはなしください" in CATALOGUE["voicemail_greeting"].spoken("ja")


@pytest.mark.parametrize(("n", "counter", "ja", "en"), [
    (0, "byou", ["byou_0"], ["byou_0"]),
    (15, "byou", ["byou_15"], ["byou_15"]),
    (21, "byou", ["num_20", "byou_1"], ["num_20", "num_1", "unit_seconds"]),
    (45, "byou", ["num_40", "byou_5"], ["num_40", "byou_5"]),
    (120, "byou", ["num_100", "byou_20"], ["num_100", "byou_20"]),
    (115, "byou", ["num_100", "byou_15"], ["num_100", "byou_15"]),
    (125, "byou", ["num_100", "num_20", "byou_5"], ["num_100", "num_20", "byou_5"]),
    (30, "ken", ["ken_30"], ["ken_30"]),
    (1, "ken", ["ken_1"], ["ken_1"]),
    (23, "ken", ["num_20", "ken_3"], ["num_20", "ken_3"]),
    (0, None, ["num_0"], ["num_0"]),
    (199, None, ["num_100", "num_90", "num_9"], ["num_100", "num_90", "num_9"]),
])
def test_number_readout(n: int, counter: Counter | None, ja: list[str], en: list[str]) -> None:
    assert PromptLibrary.load("ja").number_readout(n, counter) == ja
    assert PromptLibrary.load("en").number_readout(n, counter) == en


def test_every_number_readout_names_loaded_prompts(library: PromptLibrary) -> None:
    for n in range(NUMBER_MAX + 1):
        for counter in (None, "ken", "byou"):
            readout = library.number_readout(n, counter)
            assert 1 <= len(readout) <= 4
            for prompt_id in readout:
                library.frames(prompt_id)
    for bad in (-1, NUMBER_MAX + 1):
        with pytest.raises(ValueError, match="numbers are read from 0"):
            library.number_readout(bad, "ken")


def test_datetime_readout() -> None:
    ja = PromptLibrary.load("ja")
    en = PromptLibrary.load("en")
    afternoon = datetime(2024, 11, 25, 15, 15)
    assert ja.datetime_readout(afternoon) == [
        "month_11", "day_25", "time_pm", "hour_3", "minute_15"]
    assert en.datetime_readout(afternoon) == [
        "month_11", "day_25", "hour_3", "minute_15", "time_pm"]
    midnight = datetime(2025, 1, 1, 0, 0)
    assert ja.datetime_readout(midnight) == ["month_1", "day_1", "time_am", "hour_0", "minute_0"]
    assert en.datetime_readout(midnight) == ["month_1", "day_1", "hour_0", "time_am"]
    late = datetime(2025, 12, 31, 23, 59)
    assert ja.datetime_readout(late) == [
        "month_12", "day_31", "time_pm", "hour_11", "num_50", "minute_9"]
    assert en.datetime_readout(late) == [
        "month_12", "day_31", "hour_11", "num_50", "num_9", "time_pm"]
    assert en.datetime_readout(datetime(2025, 6, 2, 12, 5))[2:] == [
        "hour_0", "minute_5", "time_pm"]
    assert en.text("hour_0") == "twelve" and en.text("minute_5") == "oh five"


def test_every_datetime_readout_names_loaded_prompts(library: PromptLibrary) -> None:
    moments = [datetime(2024, 1, 1, hour, minute) for hour in range(24) for minute in range(60)]
    moments += [datetime(2024, month, 1) for month in range(1, 13)]
    moments += [datetime(2024, 3, day) for day in range(1, 32)]
    for when in moments:
        for prompt_id in library.datetime_readout(when):
            library.frames(prompt_id)


def test_digits_readout() -> None:
    assert digits_readout("090*#") == [
        "digit_0", "digit_9", "digit_0", "digit_star", "digit_hash"]
    assert PromptLibrary.load("en").digits_readout("1aD") == ["digit_1", "digit_a", "digit_d"]
    assert digits_readout("") == []
    with pytest.raises(ValueError, match="no prompt for key 'X'"):
        digits_readout("12x")


def test_unknown_prompt_id_and_language() -> None:
    library = PromptLibrary.load("en")
    with pytest.raises(KeyError, match="unknown prompt id 'no_such_prompt'"):
        library.frames("no_such_prompt")
    with pytest.raises(PromptError, match="unknown prompt language 'fr'"):
        PromptLibrary.load("fr")


def copy_prompts(tmp_path: Path, language: str) -> Path:
    shutil.copytree(DEFAULT_DIRECTORY / language, tmp_path / language)
    return tmp_path


def test_missing_prompt_fails_at_load_naming_it(tmp_path: Path) -> None:
    directory = copy_prompts(tmp_path, "ja")
    (directory / "ja" / "pin_locked.wav").unlink()
    (directory / "ja" / "day_31.wav").unlink()
    with pytest.raises(PromptError, match=r"2 ja prompt\(s\) missing .*pin_locked, .*day_31"):
        PromptLibrary.load("ja", directory)
    with pytest.raises(PromptError, match="missing"):
        PromptLibrary.load("en", directory)  # no en/ directory at all


def test_wrong_audio_format_fails_at_load(tmp_path: Path) -> None:
    directory = copy_prompts(tmp_path, "en")
    path = directory / "en" / "goodbye.wav"
    wav = bytearray(path.read_bytes())
    assert wav[20:22] == b"\x07\x00"  # WAVE_FORMAT_MULAW
    wav[20:22] = b"\x06\x00"  # A-law
    path.write_bytes(bytes(wav))
    with pytest.raises(PromptError, match="goodbye.wav: is PCMA; prompts are stored as μ-law"):
        PromptLibrary.load("en", directory)
    path.write_bytes(b"not a wave file")
    with pytest.raises(PromptError, match="goodbye.wav: not a RIFF WAVE file"):
        PromptLibrary.load("en", directory)
