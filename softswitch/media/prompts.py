"""Voice prompts: the catalogue of everything softswitch says, and the rendered audio for it.

The catalogue below is the source of truth for prompt texts, in Japanese (the default) and
English. `scripts/render_prompts.py` renders it offline with a TTS into
`softswitch/media/prompts/<language>/<prompt id>.wav` (8 kHz mono μ-law, G.711), so running
softswitch needs no TTS. At startup `PromptLibrary.load` reads every prompt of one language
once and keeps it pre-sliced into 20 ms frames for both PCMU and PCMA: playback is iterating a
tuple of 160-byte payloads.

Numbers, digits and dates are spoken by chaining short prompts; the readout methods return the
prompt ids to play in order. Counted readouts (`number_readout(n, "ken" | "byou")`) and
`datetime_readout` close the sentence: in Japanese the last piece carries the copula
("…3件です。", "…15秒です。", "…3時15分です。"), so the prompt before them is the sentence's
subject ("voicemail_new_count" = "新しいメッセージは、" / "New messages:").
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from softswitch.media.g711 import ALAW_SILENCE, ULAW_SILENCE, Codec, ulaw_to_alaw
from softswitch.media.wav import WavError, read_g711_wav

Language = Literal["ja", "en"]
Counter = Literal["ken", "byou"]  # 件 (messages, numbers) and 秒 (seconds)

LANGUAGES: Final[tuple[Language, ...]] = ("ja", "en")
DEFAULT_LANGUAGE: Final[Language] = "ja"
DEFAULT_DIRECTORY: Final = Path(__file__).parent / "prompts"
AUDIO_SUFFIX: Final = ".wav"
SAMPLE_RATE: Final = 8000
FRAME_BYTES: Final = 160  # 20 ms of 8 kHz G.711
NUMBER_MAX: Final = 199  # ring times go to 120 s, counts to a few dozen

# Written forms a TTS would misread, with what it is fed instead. Whole-word replacements.
_SPOKEN_FIXES: Final[Mapping[Language, tuple[tuple[str, str], ...]]] = MappingProxyType({
    "ja": (("#", "シャープ"), ("*", "こめじるし"), ("お話しください", "おはなしください")),
    "en": (("#", "hash"), ("*", "star"), ("PIN", "pin")),
})


@dataclass(frozen=True, slots=True)
class Speech:
    """A prompt spoken by the TTS. A reading replaces the written text for the TTS only."""

    ja: str
    en: str
    ja_reading: str | None = None
    en_reading: str | None = None

    def text(self, language: Language) -> str:
        return self.ja if language == "ja" else self.en

    def spoken(self, language: Language) -> str:
        """The exact input the renderer gives the TTS (also kept next to the audio, so that a
        test can tell when a text changed and its audio was not rendered again)."""
        reading = self.ja_reading if language == "ja" else self.en_reading
        if reading is not None:
            return reading
        spoken = self.text(language)
        for written, said in _SPOKEN_FIXES[language]:
            if written.isascii() and written.isalnum():  # a word: not inside another word
                spoken = re.sub(rf"\b{written}\b", said, spoken)
            else:
                spoken = spoken.replace(written, said)
        return spoken


@dataclass(frozen=True, slots=True)
class Tone:
    """A prompt that is a generated sine tone, not speech (the voicemail beep)."""

    frequency_hz: int
    seconds: float
    peak_dbfs: float
    ja: str = "（発信音）"
    en: str = "(tone)"

    def text(self, language: Language) -> str:
        return self.ja if language == "ja" else self.en

    def spoken(self, language: Language) -> str:
        return f"tone {self.frequency_hz} Hz {self.seconds} s {self.peak_dbfs} dBFS"


Prompt = Speech | Tone

_SENTENCES: Final[dict[str, Prompt]] = {
    # --- generic --------------------------------------------------------------------------
    "enter_pin": Speech(
        "ネットワーク暗証番号、4桁を押して、最後に#を押してください。",
        "Please enter your four-digit network PIN, followed by the hash key."),
    "pin_wrong": Speech(
        "ネットワーク暗証番号が違います。",
        "The network PIN is incorrect."),
    "pin_locked": Speech(
        "ネットワーク暗証番号がロックされているため、ご利用になれません。"
        "会員専用ページで、ロックを解除してください。",
        "Your network PIN is locked, so this service cannot be used. "
        "Please unlock it on the member portal."),
    "try_later": Speech(
        "恐れ入りますが、ただいまお取り扱いできません。しばらくたってから、おかけ直しください。",
        "Sorry, this service cannot be used right now. Please try again later."),
    "not_available": Speech(
        "ご契約の回線では、このサービスはご利用になれません。",
        "This service is not available on your line."),
    "invalid_input": Speech(
        "入力が正しくありません。",
        "That entry is not valid."),
    "no_input": Speech(
        "入力が確認できませんでした。",
        "No entry was received."),
    "try_again": Speech(
        "もう一度、入力してください。",
        "Please try again."),
    "menu_repeat": Speech(
        "もう一度お聞きになる場合は、*を押してください。",
        "To hear this again, press star."),
    "you_entered": Speech(
        "入力された番号を、お知らせします。",
        "You entered:"),
    "confirm_or_retry": Speech(
        "よろしければ1を、入力し直す場合は2を押してください。",
        "If this is correct, press 1. To enter it again, press 2."),
    "cancelled": Speech(
        "操作を取り消しました。",
        "Cancelled. Nothing has been changed."),
    "thank_you": Speech(
        "ありがとうございました。",
        "Thank you."),
    "goodbye": Speech(
        "ご利用ありがとうございました。",
        "Thank you for calling. Goodbye."),
    "blocked_call": Speech(
        "おかけになった電話番号への通話は、おつなぎできません。",
        "Your call to this number cannot be connected."),
    "dtmf_test_intro": Speech(
        "ダイヤルボタンを押して、最後に#を押してください。",
        "Key in digits, then press hash."),
    # --- nuisance-call blocking (迷惑電話ストップサービス) ------------------------------------
    "blocklist_menu": Speech(
        "迷惑電話ストップサービスです。番号を登録する場合は1を、登録件数を確認する場合は2を、"
        "最後に登録した番号を削除する場合は3を、全ての番号を削除する場合は4を押してください。",
        "Nuisance call blocking. To register a number, press 1. "
        "To hear how many numbers are registered, press 2. "
        "To delete the last registered number, press 3. To delete all numbers, press 4."),
    "blocklist_enter_number": Speech(
        "登録する電話番号を押して、最後に#を押してください。",
        "Enter the phone number to block, followed by the hash key."),
    "blocklist_registered": Speech(
        "迷惑電話として登録しました。",
        "The number has been registered."),
    "blocklist_last_caller_registered": Speech(
        "最後に着信した電話番号を、迷惑電話として登録しました。",
        "The last caller's number has been registered."),
    "blocklist_no_last_caller": Speech(
        "最後に着信した電話番号がないため、登録できません。",
        "There is no last caller's number to register."),
    "blocklist_last_caller_withheld": Speech(
        "最後に着信した電話番号が非通知のため、登録できません。",
        "The last caller withheld the number, so it cannot be registered."),
    "blocklist_invalid_number": Speech(
        "この電話番号は、登録できません。",
        "This number cannot be registered."),
    "blocklist_already_registered": Speech(
        "この電話番号は、すでに登録されています。",
        "This number is already registered."),
    "blocklist_full": Speech(
        "登録できる件数を超えるため、登録できません。",
        "The list is full. The number was not registered."),
    "blocklist_count": Speech(  # + number_readout(n, "ken")
        "登録されている電話番号は、",
        "Registered numbers:"),
    "blocklist_empty": Speech(
        "登録されている電話番号はありません。",
        "No numbers are registered."),
    "blocklist_deleted_last": Speech(
        "最後に登録した電話番号を削除しました。",
        "The last registered number has been deleted."),
    "blocklist_confirm_delete_all": Speech(
        "登録されている全ての電話番号を削除します。よろしければ1を押してください。",
        "This will delete all registered numbers. To confirm, press 1."),
    "blocklist_deleted_all": Speech(
        "登録されている全ての電話番号を削除しました。",
        "All registered numbers have been deleted."),
    "blocklist_not_subscribed": Speech(
        "迷惑電話撃退サービスをお申し込みでないため、ご利用になれません。",
        "Nuisance call blocking is not included in your plan."),
    # --- voicemail (留守番電話サービス) -----------------------------------------------------
    "voicemail_started": Speech(
        "留守番電話サービスを開始しました。",
        "Voicemail is now on."),
    "voicemail_stopped": Speech(
        "留守番電話サービスを停止しました。",
        "Voicemail is now off."),
    "voicemail_greeting": Speech(
        "ただいま電話に出ることができません。発信音のあとに、メッセージをお話しください。",
        "The person you are calling cannot answer right now. "
        "Please leave a message after the tone."),
    "voicemail_tone": Tone(frequency_hz=1000, seconds=0.5, peak_dbfs=-12.0),
    "voicemail_recorded": Speech(
        "メッセージをお預かりしました。",
        "Your message has been recorded."),
    "voicemail_mailbox_full": Speech(
        "ただいま、メッセージをお預かりできません。",
        "This mailbox is full. No message can be left."),
    "voicemail_new_count": Speech(  # + number_readout(n, "ken")
        "新しいメッセージは、",
        "New messages:"),
    "voicemail_saved_count": Speech(  # + number_readout(n, "ken")
        "保存されているメッセージは、",
        "Saved messages:"),
    "voicemail_no_new_messages": Speech(
        "新しいメッセージは、お預かりしておりません。",
        "You have no new messages."),
    "voicemail_no_saved_messages": Speech(
        "保存されているメッセージはありません。",
        "You have no saved messages."),
    "voicemail_received_at": Speech(  # + datetime_readout(when)
        "お預かりした日時は、",
        "Received"),
    "voicemail_from": Speech(  # + digits_readout(caller)
        "発信者番号は、",
        "From"),
    "voicemail_from_withheld": Speech(
        "発信者番号は、非通知です。",
        "The caller withheld the number."),
    "voicemail_next_message": Speech(
        "次のメッセージです。",
        "Next message."),
    "voicemail_playback_menu": Speech(
        "もう一度聞く場合は1を、削除する場合は7を、保存する場合は9を、"
        "次のメッセージに進む場合は#を押してください。",
        "To replay, press 1. To delete, press 7. To save, press 9. "
        "For the next message, press hash."),
    "voicemail_deleted": Speech(
        "メッセージを削除しました。",
        "Message deleted."),
    "voicemail_saved": Speech(
        "メッセージを保存しました。",
        "Message saved."),
    "voicemail_end_of_messages": Speech(
        "メッセージは以上です。",
        "End of messages."),
    "voicemail_settings_menu": Speech(
        "留守番電話サービスの設定です。呼出時間を設定する場合は1を、"
        "応答メッセージを録音する場合は2を、応答メッセージを標準に戻す場合は3を押してください。",
        "Voicemail settings. To set the ring time, press 1. To record your greeting, press 2. "
        "To restore the standard greeting, press 3."),
    "greeting_record_intro": Speech(
        "発信音のあとに、応答メッセージをお話しください。終わりましたら、#を押してください。",
        "After the tone, say your greeting, then press hash."),
    "greeting_keep_or_retry": Speech(
        "この応答メッセージでよろしければ1を、録音し直す場合は2を押してください。",
        "To keep this greeting, press 1. To record it again, press 2."),
    "greeting_recorded": Speech(
        "応答メッセージを録音しました。",
        "Your greeting has been recorded."),
    "greeting_reset": Speech(
        "応答メッセージを標準に戻しました。",
        "The standard greeting has been restored."),
    # --- ring time (呼出時間) ---------------------------------------------------------------
    "ring_time_is": Speech(  # + number_readout(n, "byou")
        "現在の呼出時間は、",
        "The ring time is"),
    "ring_time_enter": Speech(
        "呼出時間を、0秒から120秒の間で入力し、最後に#を押してください。",
        "Enter the ring time, from 0 to 120 seconds, followed by the hash key."),
    "ring_time_entered": Speech(  # + number_readout(n, "byou")
        "設定する呼出時間は、",
        "The new ring time is"),
    "ring_time_set": Speech(
        "呼出時間を設定しました。",
        "The ring time has been set."),
    "ring_time_invalid": Speech(
        "設定できる呼出時間は、0秒から120秒までです。",
        "The ring time must be from 0 to 120 seconds."),
    # --- call forwarding (転送でんわサービス) -------------------------------------------------
    "forwarding_started": Speech(
        "転送でんわサービスを開始しました。",
        "Call forwarding is now on."),
    "forwarding_stopped": Speech(
        "転送でんわサービスを停止しました。",
        "Call forwarding is now off."),
    "forwarding_no_destination": Speech(
        "転送先の電話番号が登録されていません。",
        "No forwarding number is registered."),
    "forwarding_enter_destination": Speech(
        "転送先の電話番号を押して、最後に#を押してください。",
        "Enter the forwarding number, followed by the hash key."),
    "forwarding_destination_is": Speech(  # + digits_readout(number)
        "現在の転送先の電話番号を、お知らせします。",
        "The forwarding number is:"),
    "forwarding_destination_registered": Speech(
        "転送先の電話番号を登録しました。",
        "The forwarding number has been registered."),
    "forwarding_invalid_destination": Speech(
        "この電話番号は、転送先に登録できません。",
        "This number cannot be used as a forwarding number."),
    "forwarding_loop": Speech(
        "転送が繰り返されるため、この電話番号には転送できません。",
        "Calls to this number would be forwarded back in a loop, so it cannot be used."),
    "forwarding_settings_menu": Speech(
        "転送でんわサービスの設定です。転送先を登録する場合は1を、"
        "転送のしかたを設定する場合は2を、遠隔操作を設定する場合は3を押してください。",
        "Forwarding settings. To register the forwarding number, press 1. "
        "To choose when calls are forwarded, press 2. To set up remote control, press 3."),
    "remote_forwarding_menu": Speech(
        "転送先を登録する場合は1を、転送のしかたを設定する場合は2を押してください。",
        "To register the forwarding number, press 1. "
        "To choose when calls are forwarded, press 2."),
    "forwarding_mode_menu": Speech(
        "すぐに転送する場合は1を、呼出時間が過ぎてから転送する場合は2を押してください。",
        "To forward calls at once, press 1. "
        "To forward calls that are not answered within the ring time, press 2."),
    "forwarding_mode_immediate": Speech(
        "着信をすぐに転送するように設定しました。",
        "Calls will now be forwarded at once."),
    "forwarding_mode_no_answer": Speech(
        "呼出時間が過ぎても応答がない場合に、転送するように設定しました。",
        "Calls will now be forwarded when not answered."),
    "forwarding_connecting": Speech(
        "転送します。しばらくお待ちください。",
        "Your call is being forwarded. Please hold."),
    # --- remote control (遠隔操作) ----------------------------------------------------------
    "remote_enter_number": Speech(
        "遠隔操作サービスです。お客様の電話番号を押して、最後に#を押してください。",
        "Remote control. Enter your phone number, followed by the hash key."),
    "remote_auth_failed": Speech(
        "電話番号、またはネットワーク暗証番号に誤りがあります。",
        "The phone number or network PIN is incorrect."),
    "remote_menu": Speech(
        "留守番電話サービスを開始する場合は1を、停止する場合は2を、"
        "新しいメッセージを聞く場合は3を、保存したメッセージを聞く場合は4を、"
        "留守番電話サービスの設定は5を、呼出時間の設定は6を、転送でんわサービスの設定は7を、"
        "転送を開始する場合は8を、転送を停止する場合は9を押してください。",
        "To turn voicemail on, press 1. To turn it off, press 2. For new messages, press 3. "
        "For saved messages, press 4. For voicemail settings, press 5. "
        "To set the ring time, press 6. For forwarding settings, press 7. "
        "To start forwarding, press 8. To stop forwarding, press 9."),
    "remote_disabled": Speech(
        "遠隔操作は、ご利用になれません。",
        "Remote control is not available."),
    "remote_locked": Speech(
        "ネットワーク暗証番号の誤りが続いたため、遠隔操作を停止しました。",
        "Remote control has been turned off after repeated wrong PIN entries."),
    "remote_control_menu": Speech(
        "遠隔操作を開始する場合は1を、停止する場合は2を押してください。",
        "To turn remote control on, press 1. To turn it off, press 2."),
    "remote_control_on": Speech(
        "遠隔操作を開始しました。",
        "Remote control is now on."),
    "remote_control_off": Speech(
        "遠隔操作を停止しました。",
        "Remote control is now off."),
}

_EN_ONES: Final = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_EN_TENS: Final = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty",
                   70: "seventy", 80: "eighty", 90: "ninety", 100: "one hundred"}
_EN_ORDINALS: Final = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth", "twentieth",
)
_EN_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
# A number is read as at most one piece per place: 0-19 and the round tens (and 100) each
# have a prompt of their own, for plain numbers and for each counter.
_NUMBER_PIECES: Final = (*range(20), 20, 30, 40, 50, 60, 70, 80, 90, 100)
_MINUTE_PIECES: Final = (*range(20), 20, 30, 40, 50)
DTMF_KEYS: Final = "0123456789*#ABCD"
_DIGIT_NAMES: Final = {"*": "star", "#": "hash"}
# Digits and numbers said alone are lengthened in Japanese (ニー, ゴー): a bare に or ご is too
# short to be heard on a phone line.
_JA_LONG_DIGITS: Final = {"2": "ニー", "5": "ゴー"}


def _digit_id(key: str) -> str:
    return f"digit_{_DIGIT_NAMES.get(key, key.lower())}"


def _en_number(n: int) -> str:
    return _EN_ONES[n] if n < 20 else _EN_TENS[n]


def _en_ordinal(n: int) -> str:
    if n <= 20:
        return _EN_ORDINALS[n - 1]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return _EN_TENS[n][:-1] + "ieth"  # thirty -> thirtieth
    return f"{_EN_TENS[tens * 10]}-{_EN_ORDINALS[ones - 1]}"


def _number_pieces() -> Iterator[tuple[str, Prompt]]:
    for n in _NUMBER_PIECES:
        yield f"num_{n}", Speech(str(n), _en_number(n), ja_reading=_JA_LONG_DIGITS.get(str(n)))
    for n in _NUMBER_PIECES:
        yield f"ken_{n}", Speech(f"{n}件です。", _en_number(n))
    for n in _NUMBER_PIECES:
        yield f"byou_{n}", Speech(f"{n}秒です。",
                                  "one second." if n == 1 else f"{_en_number(n)} seconds.")
    # English "twenty-one seconds" is plural although its last piece is "one".
    yield "unit_seconds", Speech("秒です。", "seconds.")


def _digit_pieces() -> Iterator[tuple[str, Prompt]]:
    ja_readings = {**_JA_LONG_DIGITS, "A": "エー", "B": "ビー", "C": "シー", "D": "ディー"}
    for key in DTMF_KEYS:
        en = _EN_ONES[int(key)] if key.isdigit() else _DIGIT_NAMES.get(key, key)
        yield _digit_id(key), Speech(key, en, ja_reading=ja_readings.get(key))


def _date_pieces() -> Iterator[tuple[str, Prompt]]:
    for month in range(1, 13):
        yield f"month_{month}", Speech(f"{month}月", _EN_MONTHS[month - 1])
    for day in range(1, 32):
        yield f"day_{day}", Speech(f"{day}日", _en_ordinal(day),
                                   ja_reading="ついたち" if day == 1 else None)
    yield "time_am", Speech("午前", "a.m.")
    yield "time_pm", Speech("午後", "p.m.")
    # The 12-hour clock read from 0 in Japanese (午前0時), from 12 in English (12 a.m.).
    for hour in range(12):
        yield f"hour_{hour}", Speech(f"{hour}時", _EN_ONES[hour] if hour else "twelve",
                                     ja_reading="れいじ" if hour == 0 else None)
    for minute in _MINUTE_PIECES:
        if minute == 0:  # English says nothing for a round hour; the piece stays unused there
            yield "minute_0", Speech("ちょうどです。", "o'clock")
        elif minute < 10:
            yield f"minute_{minute}", Speech(f"{minute}分です。", f"oh {_EN_ONES[minute]}")
        else:
            yield f"minute_{minute}", Speech(f"{minute}分です。", _en_number(minute))


def _build_catalogue() -> Mapping[str, Prompt]:
    catalogue: dict[str, Prompt] = dict(_SENTENCES)
    for pieces in (_digit_pieces(), _number_pieces(), _date_pieces()):
        for prompt_id, prompt in pieces:
            if prompt_id in catalogue:
                raise AssertionError(f"prompt id {prompt_id} defined twice")
            catalogue[prompt_id] = prompt
    return MappingProxyType(catalogue)


CATALOGUE: Final[Mapping[str, Prompt]] = _build_catalogue()


class PromptError(Exception):
    """The rendered prompts cannot be used: a file is missing or not 8 kHz mono μ-law WAV."""


def prompt_path(directory: Path, language: Language, prompt_id: str) -> Path:
    return directory / language / f"{prompt_id}{AUDIO_SUFFIX}"


def read_prompt_audio(path: Path) -> bytes:
    """The μ-law samples of a rendered prompt (an 8 kHz mono μ-law WAV file)."""
    try:
        codec, audio = read_g711_wav(path)
    except (OSError, WavError) as error:
        raise PromptError(f"{path}: {error}") from error
    if codec is not Codec.PCMU:
        raise PromptError(f"{path}: is {codec}; prompts are stored as μ-law (PCMU)")
    if not audio:
        raise PromptError(f"{path}: no audio")
    return audio


def _frames(payload: bytes, silence: int) -> tuple[bytes, ...]:
    padded = payload + bytes((silence,)) * (-len(payload) % FRAME_BYTES)
    return tuple(padded[i:i + FRAME_BYTES] for i in range(0, len(padded), FRAME_BYTES))


@dataclass(frozen=True, slots=True)
class _Rendered:
    pcmu: tuple[bytes, ...]
    pcma: tuple[bytes, ...]
    samples: int


@dataclass(frozen=True, slots=True)
class PromptLibrary:
    """Every prompt of one language, loaded once at startup, as ready-to-send RTP payloads."""

    language: Language
    _prompts: Mapping[str, _Rendered]

    @classmethod
    def load(cls, language: str = DEFAULT_LANGUAGE,
             directory: Path | None = None) -> PromptLibrary:
        """Read every catalogue prompt; raise PromptError naming all that are missing or bad,
        so that a broken install fails at startup and not in the middle of a call."""
        lang = _language(language)
        base = DEFAULT_DIRECTORY if directory is None else directory
        missing = [pid for pid in CATALOGUE if not prompt_path(base, lang, pid).is_file()]
        if missing:
            raise PromptError(
                f"{len(missing)} {lang} prompt(s) missing under {base / lang}: "
                f"{', '.join(missing)} (render them with scripts/render_prompts.py)")
        prompts: dict[str, _Rendered] = {}
        for prompt_id in CATALOGUE:
            ulaw = read_prompt_audio(prompt_path(base, lang, prompt_id))
            prompts[prompt_id] = _Rendered(
                pcmu=_frames(ulaw, ULAW_SILENCE),
                pcma=_frames(ulaw_to_alaw(ulaw), ALAW_SILENCE),
                samples=len(ulaw))
        return cls(lang, MappingProxyType(prompts))

    @property
    def prompt_ids(self) -> tuple[str, ...]:
        return tuple(self._prompts)

    def frames(self, prompt_id: str, codec: Codec | str = Codec.PCMU) -> Sequence[bytes]:
        """The prompt as 20 ms payloads of 160 bytes; the last is padded with silence."""
        rendered = self._rendered(prompt_id)
        return rendered.pcmu if Codec(codec) is Codec.PCMU else rendered.pcma

    def duration(self, prompt_id: str) -> float:
        """Seconds of audio, without the padding of the last frame."""
        return self._rendered(prompt_id).samples / SAMPLE_RATE

    def text(self, prompt_id: str) -> str:
        """The written text of the prompt in this library's language."""
        self._rendered(prompt_id)  # an unknown id fails as it does in frames()
        return CATALOGUE[prompt_id].text(self.language)

    def digits_readout(self, digits: str) -> list[str]:
        """One prompt per key: "090#" -> digit_0, digit_9, digit_0, digit_hash."""
        return digits_readout(digits)

    def number_readout(self, n: int, counter: Counter | None = None) -> list[str]:
        """0..199, plain or with a counter that closes the sentence (see the module doc)."""
        return number_readout(n, counter, self.language)

    def datetime_readout(self, when: datetime) -> list[str]:
        """Month, day, hour and minute of `when` as given (convert to local time first)."""
        return datetime_readout(when, self.language)

    def _rendered(self, prompt_id: str) -> _Rendered:
        try:
            return self._prompts[prompt_id]
        except KeyError:
            raise KeyError(f"unknown prompt id {prompt_id!r}") from None


def _language(language: str) -> Language:
    for known in LANGUAGES:
        if language == known:
            return known
    raise PromptError(f"unknown prompt language {language!r}; expected one of {LANGUAGES}")


def digits_readout(digits: str) -> list[str]:
    readout = []
    for key in digits.upper():
        if key not in DTMF_KEYS:
            raise ValueError(f"no prompt for key {key!r} in {digits!r}")
        readout.append(_digit_id(key))
    return readout


def number_readout(n: int, counter: Counter | None = None,
                   language: Language = DEFAULT_LANGUAGE) -> list[str]:
    """Prompt ids that read n, e.g. 125 seconds -> num_100, num_20, byou_5."""
    if not 0 <= n <= NUMBER_MAX:
        raise ValueError(f"cannot read {n}: numbers are read from 0 to {NUMBER_MAX}")
    prefix, last = _split_places(n)
    if counter is None:
        return [*prefix, f"num_{last}"]
    if language == "en" and counter == "byou" and last == 1 and n != 1:
        return [*prefix, "num_1", "unit_seconds"]
    return [*prefix, f"{counter}_{last}"]


def _split_places(n: int) -> tuple[list[str], int]:
    """Plain-number pieces for all but the last place, and the value left for the last piece
    (which carries the counter): 125 -> ([num_100, num_20], 5); 115 -> ([num_100], 15)."""
    prefix: list[str] = []
    if n > 100:
        prefix.append("num_100")
        n -= 100
    if n > 20 and n % 10:
        prefix.append(f"num_{n - n % 10}")
        n %= 10
    return prefix, n


def datetime_readout(when: datetime, language: Language = DEFAULT_LANGUAGE) -> list[str]:
    """ja: 11月 25日 午後 3時 15分です。  en: November twenty-fifth three fifteen p.m."""
    date = [f"month_{when.month}", f"day_{when.day}"]
    half_day = "time_am" if when.hour < 12 else "time_pm"
    hour = f"hour_{when.hour % 12}"
    minute_prefix, minute_last = _split_places(when.minute)
    if language == "ja":
        return [*date, half_day, hour, *minute_prefix, f"minute_{minute_last}"]
    if when.minute == 0:
        minutes: list[str] = []
    elif minute_prefix:  # "twenty-five": the ones are a plain number, not "oh five"
        minutes = [*minute_prefix, f"num_{minute_last}"]
    else:
        minutes = [f"minute_{minute_last}"]
    return [*date, hour, *minutes, half_day]
