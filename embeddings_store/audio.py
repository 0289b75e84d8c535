"""Audio uploads checked by content: magic bytes, then the decoder's header, then the samples.

Nothing a client declares (file name, content type) is trusted. Each limit is checked on the
header first (cheap) and again on what the decoder actually produces, because headers can lie.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from model.errors import AudioError, AudioFormatError, AudioTooLargeError

# libsndfile's format name for each container we sniff.
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
# Decode in blocks so a header claiming a tiny length cannot make us allocate a huge array.
BLOCK_FRAMES = 1 << 16
# Too little sound to tell what it is: the map would be a confident-looking guess.
MIN_SECONDS = 0.5
SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS


@dataclass(frozen=True)
class AudioLimits:
    """Caps on decoded audio."""

    max_seconds: float = 60.0
    max_channels: int = 2
    max_sample_rate: int = 192_000


@dataclass
class DecodedAudio:
    """Samples (frames, channels) float32 and their rate."""

    samples: np.ndarray
    sample_rate: int
    container: str


def sniff(data: bytes) -> str:
    """Container from magic bytes: wav, flac, ogg or mp3; AudioFormatError otherwise."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0):
        return "mp3"
    raise AudioFormatError(
        "unsupported or unrecognised audio: upload WAV, FLAC, OGG (Vorbis/Opus) or MP3"
    )


def decode_audio(data: bytes, limits: AudioLimits) -> DecodedAudio:
    """Validate and decode an upload; AudioError with a 4xx status for anything unacceptable."""
    if not data:
        raise AudioError("the audio upload is empty")
    container = sniff(data)
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot read the {container} header (corrupt or truncated file)") from exc
    with handle as f:
        if f.format != FORMATS[container]:
            raise AudioFormatError(
                f"the file starts like {container} but decodes as {f.format}: refused"
            )
        _check_header(f.channels, f.samplerate, limits)
        max_frames = int(limits.max_seconds * f.samplerate)
        declared = f.frames if 0 < f.frames < 2**62 else None
        if declared is not None and declared > max_frames:
            raise AudioTooLargeError(
                f"audio is {declared / f.samplerate:.1f} s long; the limit is "
                f"{limits.max_seconds:g} s"
            )
        samples = _read_blocks(f, max_frames)
    if samples.shape[0] == 0:
        raise AudioError("the audio holds no samples")
    if container == "wav" and _wav_truncated(data):
        raise AudioError("truncated wav: the data chunk is shorter than its header says")
    # FLAC and OGG state the exact length, MP3 (Xing/Info header or bitrate) an estimate: far
    # fewer decoded frames than promised means a truncated file.
    need = declared if container == "flac" else int(0.95 * declared) if declared else 0
    if declared is not None and samples.shape[0] < need:
        raise AudioError(
            f"truncated {container}: the header promises {declared} frames, "
            f"only {samples.shape[0]} decode"
        )
    if not np.all(np.isfinite(samples)):
        raise AudioError("the audio holds non-finite samples")
    seconds = samples.shape[0] / f.samplerate
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"the audio is {seconds:.2f} s long: at least {MIN_SECONDS:g} s of sound is needed to "
            "tell what it is"
        )
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AudioError("the audio is silent (its loudest sample is below -60 dBFS)")
    return DecodedAudio(samples, int(f.samplerate), container)


def _wav_truncated(data: bytes) -> bool:
    """Whether the RIFF chunk list runs past the end of the bytes (libsndfile tolerates it)."""
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            return pos + 8 + size > len(data)
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes
    return True  # no data chunk within the bytes


def _check_header(channels: int, sample_rate: int, limits: AudioLimits) -> None:
    if not 1 <= channels <= limits.max_channels:
        raise AudioError(f"{channels} channels; at most {limits.max_channels} are accepted")
    if not 1000 <= sample_rate <= limits.max_sample_rate:
        raise AudioError(
            f"sample rate {sample_rate} Hz is outside 1000..{limits.max_sample_rate} Hz"
        )


def _read_blocks(f: sf.SoundFile, max_frames: int) -> np.ndarray:
    blocks: list[np.ndarray] = []
    total = 0
    try:
        while True:
            block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            total += block.shape[0]
            if total > max_frames:
                raise AudioTooLargeError(
                    f"audio decodes to more than {max_frames / f.samplerate:g} s; the limit is "
                    f"{max_frames / f.samplerate:g} s"
                )
            blocks.append(block)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"the audio data is corrupt ({exc})") from exc
    if not blocks:
        return np.zeros((0, f.channels), dtype=np.float32)
    return np.concatenate(blocks, axis=0)
