"""The extractive summariser: within the word limit, drawn from the source, repeatable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miners.work.summarize import split_sentences, summarize

ARTICLE = (
    "Bittensor is a decentralized network where machine learning models compete to "
    "provide useful work. Miners run models and answer requests from validators. "
    "Validators score the answers of miners and set weights on the blockchain. "
    "The weights decide how the network's token emissions are shared among miners. "
    "A subnet is a market for one kind of work, such as transcription. "
    "The weather in the mountains was pleasant last week. "
    "Good incentive mechanisms reward honest work by miners and punish copying. "
    "Validators that agree with other validators earn dividends."
)

VOCABULARY = (
    "miners validators score weights network model audio the a of and to speech text "
    "summary consensus subnet token reward honest work"
)
WORDS = st.sampled_from(VOCABULARY.split())
SENTENCE = st.builds(
    lambda words, end: " ".join(words).capitalize() + end,
    st.lists(WORDS, min_size=1, max_size=25),
    st.sampled_from([".", "!", "?", ""]),
)
TEXT = st.builds(
    lambda sentences, gap: gap.join(sentences),
    st.lists(SENTENCE, min_size=1, max_size=30),
    st.sampled_from([" ", "  ", "\n", "\n\n", " \t "]),
)


def is_ordered_selection(summary: str, sources: list[str]) -> bool:
    """``summary`` is some of ``sources``, in their order, joined by single spaces."""
    if not summary:
        return True
    for index, sentence in enumerate(sources):
        if summary == sentence:
            return True
        if summary.startswith(sentence + " ") and is_ordered_selection(
            summary[len(sentence) + 1 :], sources[index + 1 :]
        ):
            return True
    return False


def assert_drawn_from(summary: str, text: str) -> None:
    sources = split_sentences(text)
    summary_words = summary.split()
    cut_from_one = any(s.split()[: len(summary_words)] == summary_words for s in sources)
    assert cut_from_one or is_ordered_selection(summary, sources), summary


def test_keeps_the_sentences_about_the_main_topic_and_drops_the_aside():
    summary = summarize(ARTICLE, 40)

    assert "Validators score the answers of miners" in summary
    assert "weather" not in summary


def test_sentences_come_out_in_source_order():
    summary = summarize(ARTICLE, 60)

    assert len(split_sentences(summary)) >= 2
    assert is_ordered_selection(summary, split_sentences(ARTICLE))


def test_without_a_limit_keeps_about_a_quarter_of_the_sentences():
    pieces = split_sentences(summarize(ARTICLE, None))

    assert len(pieces) == 2
    assert all(piece in split_sentences(ARTICLE) for piece in pieces)


def test_a_limit_below_the_shortest_sentence_cuts_the_best_one():
    summary = summarize(ARTICLE, 4)

    assert len(summary.split()) == 4
    assert_drawn_from(summary, ARTICLE)


@pytest.mark.parametrize("text", ["", "   \n\n  ", "\t"])
def test_nothing_to_summarise_gives_an_empty_summary(text):
    assert summarize(text, 50) == ""


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="max_words"):
        summarize(ARTICLE, 0)


def test_splits_on_terminators_and_blank_lines_but_not_after_abbreviations():
    text = 'One here. Two there!  "Three?" Four, e.g. like this\n\nFive'

    assert split_sentences(text) == [
        "One here.",
        "Two there!",
        '"Three?"',
        "Four, e.g. like this",
        "Five",
    ]


@settings(max_examples=200, deadline=None)
@given(text=TEXT, max_words=st.integers(min_value=1, max_value=120))
def test_never_exceeds_max_words_and_only_uses_source_sentences(text, max_words):
    summary = summarize(text, max_words)

    assert 1 <= len(summary.split()) <= max_words
    assert_drawn_from(summary, text)


@settings(max_examples=100, deadline=None)
@given(text=TEXT, max_words=st.one_of(st.none(), st.integers(min_value=1, max_value=120)))
def test_is_deterministic(text, max_words):
    assert summarize(text, max_words) == summarize(text, max_words)
