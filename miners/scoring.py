"""The reference validator's honest scoring: pure functions, every score in [0, 1].

Transcriptions have no ground truth at validation time, so miners are scored
by agreement with each other; summaries by how much of the source's main
vocabulary they carry; speech by whether it is real audio of a plausible
length for its text. None of this resists a determined cheat; it rewards
honest work over lazy or broken work.
"""

from __future__ import annotations

from collections import Counter

from miners.work.audio import is_valid_wav, wav_duration_seconds, wav_peak_level
from miners.work.words import content_words, count_words, words

# How many of the source's most frequent content words a summary is checked for.
SUMMARY_KEYWORDS = 10
# Below this share of its words found in the source, a "summary" is about
# something else and scores 0.
SUMMARY_MIN_GROUNDING = 0.5

# Speaking rate assumed for the expected duration: 150 words a minute...
SPEECH_WORDS_PER_SECOND = 2.5
# ...or, for long words, 15 letters a second, whichever expects more time.
SPEECH_LETTERS_PER_SECOND = 15.0
# Durations from SPEECH_BAND_LOW x to SPEECH_BAND_HIGH x the expected one,
# plus slack for leading and trailing silence, score 1.
SPEECH_BAND_LOW = 0.4
SPEECH_BAND_HIGH = 2.5
SPEECH_SLACK_SECONDS = 1.0
# Audio whose loudest sample stays under this share of full scale is silence.
SPEECH_MIN_PEAK = 0.01


def _edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for row, ref_word in enumerate(reference, start=1):
        current = [row]
        for column, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[column] + 1,
                    current[column - 1] + 1,
                    previous[column - 1] + (ref_word != hyp_word),
                )
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length, capped at 1.

    Case and punctuation are ignored. An empty reference gives 0 against an
    empty hypothesis and 1 against anything else.
    """
    ref_words = words(reference)
    hyp_words = words(hypothesis)
    if not ref_words:
        return 0.0 if not hyp_words else 1.0
    return min(1.0, _edit_distance(ref_words, hyp_words) / len(ref_words))


def score_transcriptions(transcripts: dict[str, str]) -> dict[str, float]:
    """Score each miner's transcript by its mean agreement with every other one.

    Agreement with another transcript is 1 - WER taking the other as the
    reference. An empty transcript scores 0 whatever the others say, so
    miners cannot agree on saying nothing; a lone transcript cannot be
    compared and scores 1 if it says anything.
    """
    if len(transcripts) == 1:
        return {miner: 1.0 if words(text) else 0.0 for miner, text in transcripts.items()}
    scores: dict[str, float] = {}
    for miner, text in transcripts.items():
        if not words(text):
            scores[miner] = 0.0
            continue
        agreements = [
            max(0.0, 1.0 - word_error_rate(other_text, text))
            for other, other_text in transcripts.items()
            if other != miner
        ]
        scores[miner] = sum(agreements) / len(agreements)
    return scores


def score_summary(source: str, summary: str, max_words: int | None) -> float:
    """Share of the source's top content words that the summary contains.

    0 for an empty summary, one longer than ``max_words``, or one whose words
    are mostly not from the source; otherwise the coverage, scaled by the
    share of the summary's content words that appear in the source.
    """
    if not words(summary):
        return 0.0
    if max_words is not None and count_words(summary) > max_words:
        return 0.0
    source_counts = Counter(content_words(source))
    summary_words = content_words(summary)
    if not source_counts or not summary_words:
        return 0.0
    grounding = sum(word in source_counts for word in summary_words) / len(summary_words)
    if grounding < SUMMARY_MIN_GROUNDING:
        return 0.0
    # Ties in frequency go alphabetically so the keyword set is deterministic.
    ranked = sorted(source_counts, key=lambda word: (-source_counts[word], word))
    keywords = ranked[:SUMMARY_KEYWORDS]
    present = set(summary_words)
    coverage = sum(word in present for word in keywords) / len(keywords)
    return coverage * grounding


def expected_speech_seconds(text: str) -> float:
    """Roughly how long ``text`` takes to say; digits count as a word each."""
    spoken = words(text)
    units = sum(sum(char.isdigit() for char in word) or 1 for word in spoken)
    letters = sum(char.isalpha() for char in text)
    return max(units / SPEECH_WORDS_PER_SECOND, letters / SPEECH_LETTERS_PER_SECOND)


def score_speech(text: str, wav: bytes) -> float:
    """1 for audible PCM WAV of a plausible length for ``text``, less the further off.

    0 when the bytes are not a WAV file or hold only silence. Inside a wide
    band around the expected duration the score is 1; outside it falls off in
    proportion to how far the duration is from the band.
    """
    if not is_valid_wav(wav) or wav_peak_level(wav) < SPEECH_MIN_PEAK:
        return 0.0
    duration = wav_duration_seconds(wav)
    expected = expected_speech_seconds(text)
    low = SPEECH_BAND_LOW * expected
    high = SPEECH_BAND_HIGH * expected + SPEECH_SLACK_SECONDS
    if duration < low:
        return duration / low
    if duration > high:
        return high / duration
    return 1.0
