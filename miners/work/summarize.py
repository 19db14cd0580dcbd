"""Extractive summarisation: the source's most representative sentences, in order.

Pure Python and deterministic: the same text and limit give the same summary
on every miner, which is what lets validators compare miners at all.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from miners.work.words import content_words, count_words

# A summary keeps about a quarter of the sentences; without a word limit, no
# more than this many, so a book does not come back as a pamphlet.
_SHARE = 0.25
_DEFAULT_MAX_SENTENCES = 10

# A sentence ends at . ! ? or … (maybe followed by a closing quote or bracket)
# and whitespace, unless the next word starts in lowercase, as after "e.g.";
# a blank line always ends one.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'\u201d\u2019)\]]))\s+(?![a-z])|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, whitespace collapsed, empty ones dropped."""
    pieces = (" ".join(piece.split()) for piece in _SENTENCE_END.split(text))
    return [piece for piece in pieces if piece]


def _rank(sentences: list[str]) -> list[int]:
    """Sentence indexes, most representative first; ties go to the earlier one."""
    per_sentence = [content_words(sentence) for sentence in sentences]
    frequency = Counter(word for found in per_sentence for word in found)
    top = max(frequency.values(), default=1)

    def score(index: int) -> float:
        found = per_sentence[index]
        if not found:
            return 0.0
        # Dividing by the square root rewards sentences dense in frequent
        # words without letting long ones win on length alone.
        return sum(frequency[word] / top for word in found) / math.sqrt(len(found))

    return sorted(range(len(sentences)), key=lambda index: (-score(index), index))


def summarize(text: str, max_words: int | None = None) -> str:
    """Pick the highest-scoring sentences of ``text`` and join them in source order.

    About a quarter of the sentences are kept. With ``max_words`` the summary
    never has more whitespace-separated words: whole sentences are taken best
    first wherever they still fit, and only when none fits is the best one cut
    short. Without it, at most ten sentences.
    """
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be at least 1, not {max_words}")
    sentences = split_sentences(text)
    if not sentences:
        return ""
    ranked = _rank(sentences)
    wanted = math.ceil(len(sentences) * _SHARE)
    chosen: dict[int, str] = {}
    if max_words is None:
        for index in ranked[: min(wanted, _DEFAULT_MAX_SENTENCES)]:
            chosen[index] = sentences[index]
    else:
        left = max_words
        for index in ranked:
            size = count_words(sentences[index])
            if size <= left:
                chosen[index] = sentences[index]
                left -= size
                if len(chosen) == wanted:
                    break
        if not chosen:
            # Even the shortest sentence is too long: cut the best one instead
            # of answering with nothing.
            best = ranked[0]
            chosen[best] = " ".join(sentences[best].split()[:max_words])
    return " ".join(chosen[index] for index in sorted(chosen))
