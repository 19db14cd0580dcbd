"""Audio bytes in, 16 kHz mono 16-bit PCM out: what the recogniser eats.

PCM WAV is read with the standard library, so the common case needs nothing
else. FLAC, Ogg (Vorbis, Opus), MP3 and the WAV encodings ``wave`` cannot read
(float, WAVE_FORMAT_EXTENSIBLE) go through ``soundfile``, whose wheel carries
libsndfile with those codecs; without it they are UnsupportedAudio.
"""

from __future__ import annotations

import array
import io
import sys
import wave
from dataclasses import dataclass

from blobs.sniff import SNIFF_BYTES, WAV, sniff_audio

TARGET_RATE = 16_000


class AudioError(ValueError):
    """The audio cannot be used."""


class UnsupportedAudio(AudioError):
    """The bytes are not in a format this module can decode."""


class InvalidAudio(AudioError):
    """The bytes claim a known format but are damaged or empty."""


@dataclass(frozen=True)
class _Pcm:
    channels: int
    sample_width: int
    rate: int
    frames: bytes


def _is_wav(data: bytes) -> bool:
    return sniff_audio(data[:SNIFF_BYTES]) == WAV


def _read_wav(data: bytes) -> _Pcm:
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels = reader.getnchannels()
            sample_width = reader.getsampwidth()
            rate = reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidAudio(f"not a readable PCM WAV file: {exc}") from exc
    if channels < 1 or rate <= 0 or sample_width not in (1, 2, 3, 4):
        raise InvalidAudio(
            f"unsupported WAV layout: {channels} channels, {sample_width}-byte samples, {rate} Hz"
        )
    # A truncated file (or a streaming writer's placeholder size) declares more
    # frames than it holds; keep the whole frames that are really there.
    frame_size = channels * sample_width
    frames = frames[: len(frames) - len(frames) % frame_size]
    return _Pcm(channels=channels, sample_width=sample_width, rate=rate, frames=frames)


def is_valid_wav(data: bytes) -> bool:
    """True for a RIFF/WAVE PCM file holding at least one whole frame."""
    if not _is_wav(data):
        return False
    try:
        return len(_read_wav(data).frames) > 0
    except InvalidAudio:
        return False


def wav_duration_seconds(data: bytes) -> float:
    """Length of a PCM WAV file in seconds, counting the frames it really holds."""
    if not _is_wav(data):
        raise InvalidAudio("not a RIFF/WAVE file")
    pcm = _read_wav(data)
    return len(pcm.frames) / (pcm.channels * pcm.sample_width) / pcm.rate


_FLIP_SIGN = bytes((value + 128) % 256 for value in range(256))


def _to_int16(frames: bytes, sample_width: int) -> array.array[int]:
    """Little-endian PCM of any width to native int16, keeping the top 16 bits."""
    if sample_width == 2:
        wide = bytearray(frames)
    else:
        count = len(frames) // sample_width
        wide = bytearray(2 * count)
        if sample_width == 1:
            # 8-bit WAV is unsigned; flipping the sign bit makes it signed.
            wide[1::2] = frames.translate(_FLIP_SIGN)
        else:
            wide[0::2] = frames[sample_width - 2 :: sample_width]
            wide[1::2] = frames[sample_width - 1 :: sample_width]
    samples = array.array("h", bytes(wide))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def wav_peak_level(data: bytes) -> float:
    """Loudest sample of a PCM WAV file as a share of full scale: 0 is silence."""
    if not _is_wav(data):
        raise InvalidAudio("not a RIFF/WAVE file")
    pcm = _read_wav(data)
    samples = _to_int16(pcm.frames, pcm.sample_width)
    if not samples:
        return 0.0
    return max(max(samples), -min(samples)) / 32768


def _to_mono(samples: array.array[int], channels: int) -> array.array[int]:
    if channels == 1:
        return samples
    columns = [samples[channel::channels] for channel in range(channels)]
    return array.array("h", (sum(frame) // channels for frame in zip(*columns, strict=True)))


def _smooth(samples: array.array[int], width: int) -> array.array[int]:
    """Moving average over ``width`` samples: a crude low-pass against aliasing."""
    total = 0
    out = array.array("h", bytes(2 * len(samples)))
    for index, value in enumerate(samples):
        total += value
        if index >= width:
            total -= samples[index - width]
        out[index] = total // min(index + 1, width)
    return out


def resample_linear(samples: array.array[int], src_rate: int, dst_rate: int) -> array.array[int]:
    """Resample int16 samples by linear interpolation.

    Good enough for speech recognition, which only looks below 8 kHz; when
    shrinking by two or more, a moving average first takes off most of what
    would otherwise fold back into that band.
    """
    if src_rate == dst_rate or not samples:
        return array.array("h", samples)
    step = src_rate / dst_rate
    source = _smooth(samples, round(step)) if step >= 2 else samples
    last = len(source) - 1
    count = max(1, int(len(source) / step))
    out = array.array("h", bytes(2 * count))
    for index in range(count):
        position = index * step
        left = int(position)
        if left >= last:
            out[index] = source[last]
            continue
        fraction = position - left
        out[index] = int(source[left] + (source[left + 1] - source[left]) * fraction)
    return out


def _decode_with_soundfile(data: bytes, media_type: str) -> bytes:
    try:
        import soundfile
    except ImportError as exc:
        raise UnsupportedAudio(
            f"decoding {media_type} needs the 'soundfile' package; send 16-bit PCM WAV instead"
        ) from exc
    try:
        decoded, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as exc:
        # error_string is libsndfile's own message, without the file object's repr.
        reason = getattr(exc, "error_string", None) or str(exc)
        raise InvalidAudio(
            f"cannot decode {media_type} (damaged, or a codec we lack): {reason}"
        ) from exc
    channels = decoded.shape[1]
    # A C-ordered (frames, channels) array is interleaved native-endian int16.
    samples = array.array("h", decoded.tobytes())
    return _pcm16_mono_16k(samples, channels, rate)


def _pcm16_mono_16k(samples: array.array[int], channels: int, rate: int) -> bytes:
    resampled = resample_linear(_to_mono(samples, channels), rate, TARGET_RATE)
    if sys.byteorder != "little":
        resampled.byteswap()
    return resampled.tobytes()


def decode_to_pcm16_mono_16k(data: bytes, content_type: str = "") -> bytes:
    """Decode WAV, FLAC, Ogg Vorbis/Opus or MP3 bytes to raw little-endian s16 mono 16 kHz.

    The format is recognised from the bytes; ``content_type`` (as declared by
    the sender) only makes error messages clearer.
    """
    media_type = sniff_audio(data[:SNIFF_BYTES])
    if media_type is None:
        declared = f" (declared {content_type!r})" if content_type else ""
        raise UnsupportedAudio(f"unrecognised audio format{declared}: expected WAV, FLAC, OGG, MP3")
    if media_type != WAV:
        return _decode_with_soundfile(data, media_type)
    try:
        pcm = _read_wav(data)
    except InvalidAudio:
        # The stdlib reads plain integer PCM only; float and
        # WAVE_FORMAT_EXTENSIBLE files are still worth a try with libsndfile.
        return _decode_with_soundfile(data, media_type)
    return _pcm16_mono_16k(_to_int16(pcm.frames, pcm.sample_width), pcm.channels, pcm.rate)
