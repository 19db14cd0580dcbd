"""espeak-ng speaks, PocketSphinx listens: the real engines, end to end, no HTTP.

The thresholds were measured, not guessed: PocketSphinx hears the default
voice's "hello world this is a test" as "so will this is a test" (4 of 6
words, WER 0.33) on every call; plain espeak-ng voices fare far worse, which
is why the default voice is the Klatt variant.
"""

from __future__ import annotations

import array
import asyncio
import io
import math
import random
import wave

import pytest
import soundfile

from miners.scoring import score_speech, word_error_rate
from miners.work import audio, speech, transcribe
from miners.work.words import words

SENTENCE = "hello world this is a test"


def wav_16k(samples: list[int]) -> bytes:
    return wav_file(array.array("h", samples).tobytes(), rate=16000)


def wav_file(frames: bytes, rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(sample_width)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def tone(frequency: float, rate: int, seconds: float, amplitude: int) -> list[int]:
    return [
        int(amplitude * math.sin(2 * math.pi * frequency * i / rate))
        for i in range(int(rate * seconds))
    ]


def peak(pcm: bytes) -> int:
    return max(abs(sample) for sample in array.array("h", pcm))


def reencode(wav: bytes, file_format: str, subtype: str | None) -> bytes:
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def spoken() -> bytes:
    return speech.synthesize(SENTENCE)


def test_synthesis_is_a_mono_16_bit_wav_of_plausible_length(spoken):
    with wave.open(io.BytesIO(spoken), "rb") as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 22050
    assert audio.is_valid_wav(spoken)
    # Six short words: about one and a half seconds at espeak-ng's pace.
    assert 0.8 < audio.wav_duration_seconds(spoken) < 4.0
    assert audio.wav_peak_level(spoken) > 0.1
    assert score_speech(SENTENCE, spoken) == 1.0


def test_longer_text_gives_longer_audio(spoken):
    longer = speech.synthesize(f"{SENTENCE} and then another test of the same kind")

    assert audio.wav_duration_seconds(longer) > 1.5 * audio.wav_duration_seconds(spoken)


def test_what_espeak_says_pocketsphinx_mostly_hears(spoken):
    heard = transcribe.transcribe(spoken, "audio/wav")

    assert heard == heard.lower()
    assert len(set(words(heard)) & set(SENTENCE.split())) >= 3, heard
    assert word_error_rate(SENTENCE, heard) <= 0.5, heard


def test_flac_of_the_same_speech_is_heard_identically(spoken):
    flac = reencode(spoken, "FLAC", None)

    assert transcribe.transcribe(flac, "audio/flac") == transcribe.transcribe(spoken, "audio/wav")


@pytest.mark.parametrize(
    ("file_format", "subtype"),
    [("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")],
)
def test_compressed_uploads_decode_to_16k_pcm_of_the_same_length(spoken, file_format, subtype):
    pcm = audio.decode_to_pcm16_mono_16k(reencode(spoken, file_format, subtype), "")

    assert len(pcm) / 32000 == pytest.approx(audio.wav_duration_seconds(spoken), abs=0.1)
    assert max(abs(sample) for sample in array.array("h", pcm)) > 3000


@pytest.mark.parametrize(
    "samples",
    [
        pytest.param([0] * 48000, id="silence"),
        pytest.param(
            [int(random.Random(7).gauss(0, 3000)) for _ in range(48000)], id="white-noise"
        ),
        pytest.param([int(3000 * math.sin(i * 0.1)) for i in range(48000)], id="hum"),
    ],
)
def test_nothing_spoken_is_transcribed_as_nothing(samples):
    assert transcribe.transcribe(wav_16k(samples), "audio/wav") == ""


def test_resampling_48k_keeps_speech_band_and_damps_what_would_alias():
    speech_band = audio.decode_to_pcm16_mono_16k(
        wav_file(array.array("h", tone(1000, 48000, 0.5, 10000)).tobytes(), rate=48000)
    )
    # 12 kHz is above what 16 kHz audio can hold; unfiltered it would fold to 4 kHz.
    too_high = audio.decode_to_pcm16_mono_16k(
        wav_file(array.array("h", tone(12000, 48000, 0.5, 10000)).tobytes(), rate=48000)
    )

    assert len(speech_band) == 0.5 * 32000
    assert peak(speech_band) > 9000
    assert peak(too_high) < 5000


@pytest.mark.parametrize(
    ("sample_width", "encode"),
    [
        pytest.param(1, lambda v: bytes([(v >> 8) + 128]), id="8-bit-unsigned"),
        pytest.param(2, lambda v: v.to_bytes(2, "little", signed=True), id="16-bit"),
        pytest.param(3, lambda v: (v << 8).to_bytes(3, "little", signed=True), id="24-bit"),
        pytest.param(4, lambda v: (v << 16).to_bytes(4, "little", signed=True), id="32-bit"),
    ],
)
def test_wav_sample_widths_and_stereo_come_out_as_the_same_16k_mono(sample_width, encode):
    left = tone(440, 16000, 0.25, 12000)
    # A silent right channel: the mono mix is the left one at half level.
    frames = b"".join(encode(value) + encode(0) for value in left)
    stereo = wav_file(frames, rate=16000, channels=2, sample_width=sample_width)

    pcm = array.array("h", audio.decode_to_pcm16_mono_16k(stereo, "audio/wav"))

    assert audio.wav_duration_seconds(stereo) == pytest.approx(0.25)
    assert len(pcm) == len(left)
    tolerance = 256 if sample_width == 1 else 1
    assert all(abs(got - want / 2) <= tolerance for got, want in zip(pcm, left, strict=True))


def test_a_truncated_wav_counts_only_the_frames_it_holds(spoken):
    cut = spoken[: 44 + 2 * 11025 + 1]

    assert audio.is_valid_wav(cut)
    assert audio.wav_duration_seconds(cut) == pytest.approx(0.5)
    assert not audio.is_valid_wav(spoken[:44])


def test_other_languages_are_refused_clearly(spoken):
    with pytest.raises(transcribe.UnsupportedLanguage, match="only English"):
        transcribe.transcribe(spoken, "audio/wav", language="de")


@pytest.mark.parametrize("language", ["en", "EN", "en-US", "en_GB"])
def test_english_in_any_spelling_is_accepted(spoken, language):
    assert transcribe.transcribe(spoken, "audio/wav", language=language)


def test_audio_that_is_not_audio_is_refused():
    with pytest.raises(audio.UnsupportedAudio, match="text/plain"):
        transcribe.transcribe(b"just some text", "text/plain")


def test_an_unknown_voice_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="xx-nowhere"):
        speech.synthesize("hello", "xx-nowhere")
    with pytest.raises(ValueError, match="nosuchvariant"):
        speech.synthesize("hello", "en-us+nosuchvariant")


def test_language_codes_choose_voices():
    assert {"en", "en-us", "en-gb", "de", "fr"} <= set(speech.available_voices())
    british = speech.synthesize(SENTENCE, "en-gb")
    german = speech.synthesize(SENTENCE, "de")

    assert audio.is_valid_wav(british)
    assert audio.is_valid_wav(german)
    assert british != german


def test_empty_text_is_refused():
    with pytest.raises(ValueError, match="empty"):
        speech.synthesize("   ")


async def test_concurrent_synthesis_and_transcription_do_not_interfere(spoken):
    texts = [SENTENCE, "one two three", "a much longer sentence than the others are", "yes"]

    wavs = await asyncio.gather(*(speech.synthesize_async(text) for text in texts))
    heard = await asyncio.gather(*(transcribe.transcribe_async(spoken, "audio/wav") for _ in texts))

    durations = [audio.wav_duration_seconds(wav) for wav in wavs]
    alone = [audio.wav_duration_seconds(speech.synthesize(text)) for text in texts]
    assert durations == pytest.approx(alone, abs=0.05)
    assert len(set(heard)) == 1
    assert heard[0] == transcribe.transcribe(spoken, "audio/wav")
