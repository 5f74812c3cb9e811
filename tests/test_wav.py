import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from softswitch.media.g711 import Codec
from softswitch.media.wav import (
    G711_HEADER_SIZE,
    WavError,
    WavRecorder,
    g711_wav,
    g711_wav_header,
    parse_wav,
    read_g711_wav,
    read_pcm16_wav,
)


def test_header_fields() -> None:
    header = g711_wav_header(Codec.PCMU, 1000)
    assert G711_HEADER_SIZE == len(header) == 58
    assert header[0:4] == b"RIFF" and header[8:12] == b"WAVE"
    assert struct.unpack_from("<I", header, 4)[0] == 58 - 8 + 1000
    assert header[12:16] == b"fmt " and struct.unpack_from("<I", header, 16)[0] == 18
    tag, channels, rate, byte_rate, block_align, bits, cb_size = struct.unpack_from(
        "<HHIIHHH", header, 20)
    assert (tag, channels, rate, byte_rate, block_align, bits, cb_size) == (
        7, 1, 8000, 8000, 1, 8, 0)
    assert header[38:42] == b"fact" and struct.unpack_from("<II", header, 42) == (4, 1000)
    assert header[50:54] == b"data" and struct.unpack_from("<I", header, 54)[0] == 1000
    assert struct.unpack_from("<H", g711_wav_header(Codec.PCMA, 0), 20)[0] == 6


def test_odd_length_gets_a_pad_octet() -> None:
    data = g711_wav(Codec.PCMA, b"\xd5" * 3)
    assert len(data) == 58 + 4
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    assert struct.unpack_from("<I", data, 54)[0] == 3  # the data size excludes the pad
    assert read_back(data) == (Codec.PCMA, b"\xd5" * 3)


def read_back(data: bytes) -> tuple[Codec, bytes]:
    audio = parse_wav(data)
    assert (audio.channels, audio.sample_rate, audio.bits_per_sample) == (1, 8000, 8)
    return (Codec.PCMU if audio.format_tag == 7 else Codec.PCMA), audio.data


def test_recorder_writes_and_renames(tmp_path: Path) -> None:
    final = tmp_path / "msg.wav"
    recorder = WavRecorder(final, Codec.PCMU, max_seconds=10)
    assert recorder.temp_path == tmp_path / "msg.wav.part"
    recorder.write(b"\x01" * 160)
    recorder.write(b"\x02" * 160)
    assert recorder.temp_path.exists() and not final.exists()
    assert recorder.seconds == 0.04
    assert recorder.finish() == final
    assert not recorder.temp_path.exists()
    assert read_g711_wav(final) == (Codec.PCMU, b"\x01" * 160 + b"\x02" * 160)
    assert final.read_bytes()[:58] == g711_wav_header(Codec.PCMU, 320)


def test_recorder_stops_at_max_length(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "m.wav", Codec.PCMA, max_seconds=0.05)  # 400 samples
    for _ in range(3):
        assert not recorder.full
        recorder.write(b"\xd5" * 160)
    assert recorder.full
    recorder.write(b"\xd5" * 160)
    recorder.finish()
    assert read_g711_wav(tmp_path / "m.wav") == (Codec.PCMA, b"\xd5" * 400)


def test_recorder_odd_sample_count(tmp_path: Path) -> None:
    with WavRecorder(tmp_path / "odd.wav", Codec.PCMA, 1) as recorder:
        recorder.write(b"\x55" * 7)
        recorder.finish()
    data = (tmp_path / "odd.wav").read_bytes()
    assert len(data) == 58 + 8
    assert read_g711_wav(tmp_path / "odd.wav") == (Codec.PCMA, b"\x55" * 7)


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "gone.wav", Codec.PCMU, 60)
    recorder.write(b"\xff" * 160)
    recorder.abort()
    recorder.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        recorder.write(b"\xff")
    with pytest.raises(ValueError):
        recorder.finish()


def test_leaving_the_block_without_finish_aborts(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), WavRecorder(tmp_path / "x.wav", Codec.PCMU, 60) as rec:
        rec.write(b"\xff" * 160)
        raise RuntimeError("caller hung up")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
@pytest.mark.parametrize(("codec", "encoding"), [(Codec.PCMU, "mu-law"), (Codec.PCMA, "a-law")])
def test_same_header_as_sox(tmp_path: Path, codec: Codec, encoding: str) -> None:
    path = tmp_path / "sox.wav"
    subprocess.run(["sox", "-V1", "-r", "8000", "-n", "-r", "8000", "-c", "1", "-e", encoding,
                    str(path), "synth", "801s", "sine", "440", "vol", "0.5"], check=True)
    data = path.read_bytes()
    assert data[:G711_HEADER_SIZE] == g711_wav_header(codec, 801)
    assert len(data) == G711_HEADER_SIZE + 802  # sox pads the odd data chunk as we do
    assert read_g711_wav(path) == (codec, data[G711_HEADER_SIZE:G711_HEADER_SIZE + 801])


def write_pcm_wav(path: Path, rate: int = 8000, channels: int = 1, width: int = 2,
                  frames: bytes = b"\x01\x00\xff\xff") -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames)


def test_read_pcm16_prompt(tmp_path: Path) -> None:
    write_pcm_wav(tmp_path / "p.wav")
    assert read_pcm16_wav(tmp_path / "p.wav") == b"\x01\x00\xff\xff"


def test_read_pcm16_extensible(tmp_path: Path) -> None:
    guid_tail = bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + (
        struct.pack("<H", 1) + guid_tail)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack(
        "<I", 4) + b"\x10\x00\x20\x00"
    (tmp_path / "e.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert read_pcm16_wav(tmp_path / "e.wav") == b"\x10\x00\x20\x00"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate": 16000}, "sample rate is 16000 Hz"),
    ({"rate": 22050}, "sample rate is 22050 Hz"),
    ({"channels": 2, "frames": b"\x00" * 8}, "2 channels"),
    ({"width": 1, "frames": b"\x80\x80"}, "16-bit PCM"),
])
def test_read_pcm16_rejects_other_formats(tmp_path: Path, kwargs: dict[str, object],
                                          message: str) -> None:
    write_pcm_wav(tmp_path / "bad.wav", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(WavError, match=message):
        read_pcm16_wav(tmp_path / "bad.wav")


def test_read_g711_rejects_pcm(tmp_path: Path) -> None:
    write_pcm_wav(tmp_path / "p.wav")
    with pytest.raises(WavError, match="not μ-law"):
        read_g711_wav(tmp_path / "p.wav")


def test_unknown_chunks_are_skipped() -> None:
    fmt = struct.pack("<HHIIHHH", 7, 1, 8000, 8000, 1, 8, 0)
    body = (b"WAVE" + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
            + b"fmt " + struct.pack("<I", 18) + fmt + b"data" + struct.pack("<I", 2) + b"\x01\x02")
    audio = parse_wav(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert (audio.format_tag, audio.data) == (7, b"\x01\x02")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not a RIFF WAVE"),
    (b"RIFF\x00\x00\x00\x00AVI ", "not a RIFF WAVE"),
    (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    (g711_wav_header(Codec.PCMU, 0)[:50], "no data chunk"),
    (g711_wav_header(Codec.PCMU, 100) + b"\xff" * 10, "truncated"),
    (b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk before fmt"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt \x04\x00\x00\x00\x07\x00\x01\x00", "fmt chunk too short"),
])
def test_malformed_files(data: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message):
        parse_wav(data)
