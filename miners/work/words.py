"""How the summariser and the scorer see text: lowercase words, minus the filler.

One definition for both, so a summary is judged by the same notion of "word"
that produced it.
"""

from __future__ import annotations

import re

# Letters and digits (any script), with inner apostrophes kept: "don't", "o'clock".
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

_STOPWORD_LIST = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just let me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t don't it's i'm we're they're
"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())


def words(text: str) -> list[str]:
    """The words of ``text``, lowercased, punctuation dropped."""
    return [word.replace("\u2019", "'") for word in _WORD.findall(text.lower())]


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry meaning: no stopwords, no single characters."""
    return [word for word in words(text) if word not in STOPWORDS and len(word) > 1]


def count_words(text: str) -> int:
    """Words as a reader (and ``max_words``) counts them: whitespace-separated tokens."""
    return len(text.split())
