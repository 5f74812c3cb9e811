"""WAV files: G.711 recordings (voicemail) written safely, and PCM prompts read.

A G.711 WAV is what Windows and every audio tool expect for μ-law/A-law: WAVE_FORMAT_MULAW (7)
or WAVE_FORMAT_ALAW (6), 8000 Hz, mono, 8 bits per sample, a WAVEFORMATEX `fmt ` chunk of 18
octets (cbSize 0), and the `fact` chunk (sample count) that RIFF requires for every format
other than PCM. The audio is the G.711 payload as received, so recording costs no transcoding.

This module does blocking file I/O of small frames; protocol code stays sans-IO elsewhere.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .g711 import Codec

SAMPLE_RATE = 8000
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

FORMAT_TAGS = {Codec.PCMU: WAVE_FORMAT_MULAW, Codec.PCMA: WAVE_FORMAT_ALAW}
_CODECS = {tag: codec for codec, tag in FORMAT_TAGS.items()}

# RIFF header, fmt (WAVEFORMATEX), fact and the data chunk header: 58 octets
_G711_HEADER = struct.Struct("<4sI4s 4sIHHIIHHH 4sII 4sI")
G711_HEADER_SIZE = _G711_HEADER.size
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")


class WavError(ValueError):
    """The file is not a WAV of the kind asked for; the message says what is wrong."""


def g711_wav_header(codec: Codec, samples: int) -> bytes:
    """The 58-octet header of a G.711 WAV holding `samples` samples (one octet each)."""
    pad = samples % 2  # chunks are word aligned: an odd data chunk is followed by a pad octet
    riff_size = G711_HEADER_SIZE - 8 + samples + pad
    return _G711_HEADER.pack(
        b"RIFF", riff_size, b"WAVE",
        b"fmt ", 18, FORMAT_TAGS[codec], 1, SAMPLE_RATE, SAMPLE_RATE, 1, 8, 0,
        b"fact", 4, samples,
        b"data", samples,
    )


def g711_wav(codec: Codec, audio: bytes) -> bytes:
    """A complete G.711 WAV file holding `audio`."""
    return g711_wav_header(codec, len(audio)) + audio + b"\x00" * (len(audio) % 2)


@dataclass(slots=True, frozen=True)
class WavAudio:
    format_tag: int  # WAVE_FORMAT_EXTENSIBLE is resolved to its sub-format
    channels: int
    sample_rate: int
    bits_per_sample: int
    data: bytes


def parse_wav(data: bytes) -> WavAudio:
    """The format and audio of a RIFF WAVE file; unknown chunks are skipped."""
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + _CHUNK.size <= len(data):
        chunk_id, size = _CHUNK.unpack_from(data, offset)
        body = data[offset + 8:offset + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < _FMT.size:
                raise WavError("fmt chunk too short")
            tag, channels, rate, _byte_rate, _block_align, bits = _FMT.unpack_from(body)
            if tag == WAVE_FORMAT_EXTENSIBLE:
                if len(body) < 26:
                    raise WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
                tag = struct.unpack_from("<H", body, 24)[0]  # first field of the sub-format GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            if len(body) < size:
                raise WavError(f"data chunk truncated: {len(body)} of {size} octets")
            return WavAudio(*fmt, body)
        offset += 8 + size + size % 2
    raise WavError("no data chunk" if fmt is not None else "no fmt chunk")


def read_g711_wav(path: str | os.PathLike[str]) -> tuple[Codec, bytes]:
    """The codec and G.711 audio of an 8 kHz mono μ-law or A-law WAV file."""
    audio = parse_wav(Path(path).read_bytes())
    codec = _CODECS.get(audio.format_tag)
    if codec is None:
        raise WavError(f"{path}: format {audio.format_tag} is not μ-law (7) or A-law (6)")
    if audio.channels != 1 or audio.sample_rate != SAMPLE_RATE or audio.bits_per_sample != 8:
        raise WavError(f"{path}: must be 8000 Hz mono 8-bit, is {audio.sample_rate} Hz "
                       f"{audio.channels}-channel {audio.bits_per_sample}-bit")
    return codec, audio.data


def read_pcm16_wav(path: str | os.PathLike[str]) -> bytes:
    """The samples of an 8000 Hz mono 16-bit PCM WAV file (a prompt), little-endian."""
    audio = parse_wav(Path(path).read_bytes())
    if audio.format_tag != WAVE_FORMAT_PCM or audio.bits_per_sample != 16:
        raise WavError(f"{path}: must be 16-bit PCM, is format {audio.format_tag} "
                       f"with {audio.bits_per_sample} bits per sample")
    if audio.sample_rate != SAMPLE_RATE:
        raise WavError(f"{path}: sample rate is {audio.sample_rate} Hz; prompts must be "
                       f"{SAMPLE_RATE} Hz (resample when rendering them)")
    if audio.channels != 1:
        raise WavError(f"{path}: has {audio.channels} channels; prompts must be mono")
    return audio.data[:len(audio.data) // 2 * 2]


class WavRecorder:
    """Records G.711 frames into `final_path`, which appears only when complete.

    Frames go to `final_path + ".part"`. `finish()` completes the header, fsyncs, and renames
    the file into place (a voicemail is never seen half-written); `abort()` deletes it. Used as
    a context manager, leaving the block without `finish()` (hang-up, cancellation, error)
    aborts. Audio past `max_seconds` is dropped and `full` turns true.
    """

    __slots__ = ("final_path", "temp_path", "codec", "max_samples", "samples", "_file")

    def __init__(self, final_path: str | os.PathLike[str], codec: Codec,
                 max_seconds: float) -> None:
        self.final_path = Path(final_path)
        self.temp_path = Path(f"{self.final_path}.part")
        self.codec = codec
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.samples = 0
        self._file: BinaryIO | None = open(self.temp_path, "wb")  # noqa: SIM115
        self._file.write(g711_wav_header(codec, 0))

    @property
    def full(self) -> bool:
        return self.samples >= self.max_samples

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def write(self, frame: bytes) -> None:
        """Append G.711 audio in this recorder's codec (as many octets as samples)."""
        if self._file is None:
            raise ValueError("recording already finished or aborted")
        frame = frame[:self.max_samples - self.samples]
        self._file.write(frame)
        self.samples += len(frame)

    def finish(self) -> Path:
        """Complete the file and move it to `final_path`, which is returned."""
        if self._file is None:
            raise ValueError("recording already finished or aborted")
        file, self._file = self._file, None
        try:
            if self.samples % 2:
                file.write(b"\x00")
            file.seek(0)
            file.write(g711_wav_header(self.codec, self.samples))
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            file.close()
            self.temp_path.unlink(missing_ok=True)
            raise
        file.close()
        os.replace(self.temp_path, self.final_path)
        _fsync_directory(self.final_path.parent)
        return self.final_path

    def abort(self) -> None:
        """Discard the recording. Harmless after finish() or a previous abort()."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> WavRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.abort()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); platforms that cannot open a directory skip."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
