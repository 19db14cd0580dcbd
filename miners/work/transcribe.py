"""Speech to text with PocketSphinx and the US English model its wheel ships.

Building a Decoder reads ~40 MB of model and takes about half a second, so
each process keeps one; a Decoder holds the state of the utterance in flight,
so one lock serialises every use of it.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator

from pocketsphinx import Decoder, Segmenter

from miners.work.audio import TARGET_RATE, decode_to_pcm16_mono_16k

SUPPORTED_LANGUAGES = frozenset({"en"})

# Up to this length the whole clip is one utterance, which recognises short
# clips best; longer audio is cut at the pauses the voice activity detector
# finds, so the search never has to hold minutes of lattice.
_WHOLE_UTTERANCE_SECONDS = 30.0
_BYTES_PER_SECOND = 2 * TARGET_RATE


class UnsupportedLanguage(ValueError):
    """Only English can be transcribed with the bundled model."""


_lock = threading.Lock()
_decoder: Decoder | None = None


def _get_decoder() -> Decoder:
    global _decoder
    if _decoder is None:
        _decoder = Decoder(loglevel="FATAL")
    return _decoder


def load_model() -> None:
    """Load the model now rather than on the first request (e.g. at miner start-up)."""
    with _lock:
        _get_decoder()


def _check_language(language: str) -> None:
    primary = language.strip().lower().replace("_", "-").split("-", 1)[0]
    if primary not in SUPPORTED_LANGUAGES:
        raise UnsupportedLanguage(
            f"cannot transcribe language {language!r}: only English ('en') is supported"
        )


def _speech_segments(pcm: bytes) -> Iterator[bytes]:
    for segment in Segmenter(sample_rate=TARGET_RATE).segment(io.BytesIO(pcm)):
        yield segment.pcm


def _decode(decoder: Decoder, pcm: bytes) -> str:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""


def transcribe_pcm(pcm: bytes) -> str:
    """Recognise raw little-endian 16-bit mono 16 kHz PCM; lowercase words, or ''."""
    segments = list(_speech_segments(pcm))
    # No speech found at all: silence and steady noise would otherwise come
    # back as a stray word or two of language-model guesswork.
    if not segments:
        return ""
    pieces = [pcm] if len(pcm) <= _WHOLE_UTTERANCE_SECONDS * _BYTES_PER_SECOND else segments
    with _lock:
        decoder = _get_decoder()
        texts = [_decode(decoder, piece) for piece in pieces]
    return " ".join(text for text in texts if text).lower()


def transcribe(data: bytes, content_type: str = "", language: str = "en") -> str:
    """Transcribe WAV/FLAC/OGG/MP3 bytes to lowercase text ('' when nothing is heard).

    Raises UnsupportedLanguage for anything but English, and
    miners.work.audio.AudioError (UnsupportedAudio / InvalidAudio) for audio
    that cannot be decoded.
    """
    _check_language(language)
    return transcribe_pcm(decode_to_pcm16_mono_16k(data, content_type))


async def transcribe_async(data: bytes, content_type: str = "", language: str = "en") -> str:
    """`transcribe` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(transcribe, data, content_type, language)
