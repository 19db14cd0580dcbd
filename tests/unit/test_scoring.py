"""The reference validator's honest scores: known cases and the orderings that matter."""

from __future__ import annotations

import array
import io
import math
import wave

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miners.scoring import (
    expected_speech_seconds,
    score_speech,
    score_summary,
    score_transcriptions,
    word_error_rate,
)

SOURCE = (
    "Validators score the answers of miners and set weights on the blockchain. "
    "Miners run models and answer requests from validators. The weights decide how "
    "token emissions are shared among miners. Validators that agree with other "
    "validators earn dividends. Honest miners earn more emissions than lazy miners."
)
GOOD_SUMMARY = (
    "Validators score the answers of miners and set weights on the blockchain. "
    "The weights decide how token emissions are shared among miners."
)


def tone_wav(seconds: float, rate: int = 16000, amplitude: int = 8000) -> bytes:
    frames = array.array(
        "h",
        (
            int(amplitude * math.sin(2 * math.pi * 220 * i / rate))
            for i in range(int(seconds * rate))
        ),
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("hello world", "hello world", 0.0),
        ("Hello, World!", "hello world", 0.0),
        ("the cat sat on the mat", "the cat sat on a mat", 1 / 6),
        ("the cat sat on the mat", "the cat sat on the", 1 / 6),
        ("the cat sat", "the big cat sat", 1 / 3),
        ("a b c d", "d c b a", 1.0),
        ("one two", "", 1.0),
        ("", "", 0.0),
        ("", "noise", 1.0),
        ("short", "a much longer hypothesis than the reference", 1.0),
    ],
)
def test_word_error_rate_known_cases(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


@given(st.text(max_size=60), st.text(max_size=60))
def test_word_error_rate_stays_in_unit_interval(reference, hypothesis):
    assert 0.0 <= word_error_rate(reference, hypothesis) <= 1.0


def test_consensus_ranks_the_garbage_transcript_lowest():
    scores = score_transcriptions(
        {
            "good": "hello world this is a test",
            "close": "hello world this is the test",
            "also_close": "hello word this is a test",
            "garbage": "purple monkey dishwasher banana",
        }
    )

    assert set(scores) == {"good", "close", "also_close", "garbage"}
    assert min(scores, key=scores.__getitem__) == "garbage"
    assert scores["good"] > scores["close"] > scores["garbage"]
    assert all(0.0 <= score <= 1.0 for score in scores.values())


def test_identical_transcripts_all_score_one():
    scores = score_transcriptions({"a": "Same words.", "b": "same words", "c": "SAME, words"})

    assert scores == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_an_empty_transcript_among_real_ones_scores_zero():
    scores = score_transcriptions({"a": "hello there", "b": "hello there", "lazy": ""})

    assert scores["lazy"] == 0.0
    assert scores["a"] > 0.0


@pytest.mark.parametrize(("text", "expected"), [("something heard", 1.0), ("", 0.0), (" .. ", 0.0)])
def test_a_lone_transcript_scores_by_whether_it_says_anything(text, expected):
    assert score_transcriptions({"only": text}) == {"only": expected}


def test_a_good_summary_scores_well():
    assert score_summary(SOURCE, GOOD_SUMMARY, 30) >= 0.5


def test_a_summary_covering_more_of_the_source_scores_higher():
    narrow = "Miners run models and answer requests from validators."

    assert score_summary(SOURCE, GOOD_SUMMARY, 30) > score_summary(SOURCE, narrow, 30)


def test_a_summary_over_the_word_limit_scores_zero():
    assert score_summary(SOURCE, GOOD_SUMMARY, 10) == 0.0


@pytest.mark.parametrize("summary", ["", "   ", "..."])
def test_an_empty_summary_scores_zero(summary):
    assert score_summary(SOURCE, summary, None) == 0.0


def test_an_unrelated_summary_scores_zero():
    unrelated = "The recipe needs flour, butter, sugar and two eggs baked slowly."

    assert score_summary(SOURCE, unrelated, 30) == 0.0


def test_a_summary_mostly_about_something_else_scores_zero_despite_keywords():
    off_topic = (
        "Miners and validators aside, the recipe needs flour, butter, sugar, eggs, milk, "
        "vanilla and salt, baked slowly."
    )

    assert score_summary(SOURCE, off_topic, None) == 0.0


def test_a_summary_of_an_empty_source_scores_zero():
    assert score_summary("", "Anything at all.", None) == 0.0


@pytest.mark.parametrize(
    "data", [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVE", b"ID3\x03"]
)
def test_speech_that_is_not_a_wav_scores_zero(data):
    assert score_speech("hello world", data) == 0.0


def test_silent_wav_scores_zero():
    assert score_speech("hello world this is a test", tone_wav(2.0, amplitude=0)) == 0.0


def test_audio_of_plausible_length_scores_one():
    text = "hello world this is a test"

    assert score_speech(text, tone_wav(expected_speech_seconds(text))) == 1.0


def test_audio_far_too_short_or_long_for_the_text_scores_less():
    text = "a fairly long sentence that would take a few seconds for anyone to say aloud"
    fitting = score_speech(text, tone_wav(expected_speech_seconds(text)))

    too_short = score_speech(text, tone_wav(0.3))
    too_long = score_speech(text, tone_wav(40.0))

    assert fitting == 1.0
    assert 0.0 < too_short < 0.5
    assert 0.0 < too_long < 0.5


def test_numbers_are_expected_to_take_as_long_as_they_are_read():
    assert expected_speech_seconds("1234567") > expected_speech_seconds("seven")


def test_miners_cannot_agree_on_saying_nothing() -> None:
    scores = score_transcriptions({"a": "", "b": "", "c": "hello world"})
    assert scores["a"] == 0.0
    assert scores["b"] == 0.0
