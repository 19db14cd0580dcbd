"""Text-to-speech with espeak-ng, through the library that ``espeakng-loader`` ships.

libespeak-ng keeps global state and is not re-entrant, so every call into it
holds one process-wide lock, and it is initialised once per process, on first
use. Its wave generator also carries a little state from one utterance to the
next, so the same text can come out a few samples different on a later call.
"""

from __future__ import annotations

import array
import asyncio
import ctypes
import io
import sys
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path

import espeakng_loader

# Of the US English voices, the Klatt-synthesiser variant is the one a speech
# recogniser (PocketSphinx, measured) understands best: intelligibility is
# what a listener, and a validator, want from this job.
DEFAULT_VOICE = "en-us+klatt4"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0


class SpeechError(RuntimeError):
    """espeak-ng could not be loaded or failed while synthesising."""


class _EspeakVoice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        # A run of (priority byte, NUL-terminated language) pairs ending in a NUL byte.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass
class _Engine:
    lib: ctypes.CDLL
    sample_rate: int
    # The callback object must outlive every synthesis: libespeak-ng keeps the pointer.
    callback: object
    samples: array.array[int] = field(default_factory=lambda: array.array("h"))
    voices: dict[str, str] = field(default_factory=dict)
    language_codes: set[str] = field(default_factory=set)


_lock = threading.Lock()
_engine: _Engine | None = None


def _load() -> _Engine:
    global _engine
    if _engine is not None:
        return _engine
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as exc:
        raise SpeechError(f"cannot load libespeak-ng: {exc}") from exc

    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]

    sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
    if sample_rate <= 0:
        raise SpeechError(f"espeak_Initialize failed (returned {sample_rate})")

    samples: array.array[int] = array.array("h")

    def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None) -> int:
        if wav and count > 0:
            samples.frombytes(ctypes.string_at(wav, count * 2))
        return 0

    callback = _SynthCallback(collect)
    lib.espeak_SetSynthCallback(callback)
    _engine = _Engine(lib=lib, sample_rate=sample_rate, callback=callback, samples=samples)
    return _engine


def _voice_table(engine: _Engine) -> dict[str, str]:
    """Map every accepted spelling (lowercased) to the identifier espeak-ng loads.

    espeak_SetVoiceByName itself only knows voice names and file identifiers
    ("gmw/en", "en"), not the language codes clients expect ("en-gb").
    """
    if engine.voices:
        return engine.voices
    best_priority: dict[str, int] = {}
    table: dict[str, str] = {}
    listed = engine.lib.espeak_ListVoices(None)
    index = 0
    while listed[index]:
        voice = listed[index].contents
        index += 1
        if not voice.identifier:
            continue
        identifier = voice.identifier.decode("utf-8", "replace")
        table[identifier.lower()] = identifier
        table.setdefault(identifier.rsplit("/", 1)[-1].lower(), identifier)
        if voice.name:
            table.setdefault(voice.name.decode("utf-8", "replace").lower(), identifier)
        offset = 0
        while voice.languages:
            priority = ctypes.string_at(voice.languages + offset, 1)[0]
            if priority == 0:
                break
            language = ctypes.string_at(voice.languages + offset + 1)
            offset += len(language) + 2
            code = language.decode("utf-8", "replace").lower()
            if priority < best_priority.get(code, 256):
                best_priority[code] = priority
                engine.language_codes.add(code)
                table[code] = identifier
    engine.voices = table
    return table


def _variants() -> frozenset[str]:
    variants_dir = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return frozenset(entry.name.lower() for entry in variants_dir.iterdir())


def _resolve_voice(engine: _Engine, voice: str) -> str:
    base, plus, variant = voice.strip().partition("+")
    identifier = _voice_table(engine).get(base.lower())
    if identifier is None:
        raise ValueError(
            f"unknown voice {voice!r}: use a language code such as 'en-us', 'en-gb', 'de' "
            "or 'fr', optionally with a variant ('en-us+f3'); see available_voices()"
        )
    if not plus:
        return identifier
    # espeak-ng silently ignores a variant it cannot find; refuse it instead.
    if variant.lower() not in _variants():
        raise ValueError(f"unknown voice variant {variant!r} in {voice!r}")
    return f"{identifier}+{variant}"


def available_voices() -> list[str]:
    """Language codes accepted as ``voice`` (voice names and identifiers work too)."""
    with _lock:
        engine = _load()
        _voice_table(engine)
        return sorted(engine.language_codes)


def _to_wav(samples: array.array[int], sample_rate: int) -> bytes:
    if sys.byteorder != "little":
        samples = array.array("h", samples)
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def synthesize(text: str, voice: str | None = None) -> bytes:
    """Speak ``text`` and return a RIFF WAV, PCM 16-bit mono at espeak-ng's rate.

    Raises ValueError for empty text or a voice espeak-ng does not know.
    """
    if not text.strip():
        raise ValueError("text to synthesise is empty")
    name = voice or DEFAULT_VOICE
    encoded = text.encode("utf-8") + b"\0"
    with _lock:
        engine = _load()
        identifier = _resolve_voice(engine, name)
        result = engine.lib.espeak_SetVoiceByName(identifier.encode("utf-8"))
        if result != _EE_OK:
            raise SpeechError(f"espeak_SetVoiceByName({name!r}) failed with {result}")
        buffer = ctypes.create_string_buffer(encoded, len(encoded))
        try:
            result = engine.lib.espeak_Synth(
                buffer, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            if result != _EE_OK:
                raise SpeechError(f"espeak_Synth failed with {result}")
            engine.lib.espeak_Synchronize()
            samples = array.array("h", engine.samples)
        finally:
            del engine.samples[:]
    return _to_wav(samples, engine.sample_rate)


async def synthesize_async(text: str, voice: str | None = None) -> bytes:
    """`synthesize` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(synthesize, text, voice)
