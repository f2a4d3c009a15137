"""Words as search terms: lowercased, stemmed (Snowball, through PyStemmer), stop words out.

One analyser for the knowledge side and the question side, so "charging" in a question meets
"charges" in a passage, and "how do I" never counts as evidence.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)

# Function words, and words every support question has (they say nothing about which
# passage answers it).
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each few for from further had hadn't has hasn't have
    haven't having he he'd he'll he's her here here's hers herself him himself his how how's
    i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my
    myself no nor not of off on once only or other ought our ours ourselves out over own same
    shan't she she'd she'll she's should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this
    those through to too under until up very was wasn't we we'd we'll we're we've were weren't
    what what's when when's where where's which while who who's whom why why's with won't
    would wouldn't you you'd you'll you're you've your yours yourself yourselves
    im ive dont doesnt didnt cant wont isnt arent u ur pls plz please thanks thank hi hello hey
    ok okay yes yeah just really still get got go going want wanted need needs know tell
    anyone someone something anything thing things way ways help guys one ones
    will shall may might must even ever much many lot lots bit kind sort like
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lowercased words of `text`, apostrophes normalised."""
    return [w.replace("\u2019", "'") for w in _WORD.findall(text.lower())]


def terms(text: str) -> list[str]:
    """Stemmed content words of `text`, in order, repeats kept."""
    kept = [w for w in words(text) if w not in STOP_WORDS and w.replace("'", "") not in STOP_WORDS]
    return _stemmer().stemWords([w.replace("'", "") for w in kept])


def stem(word: str) -> str:
    return str(_stemmer().stemWord(word.lower()))
