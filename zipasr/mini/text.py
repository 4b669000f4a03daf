"""Text sources of the mini recipe: word lists of real languages and random sentences from them.

The words come from the `wordfreq` package (frequency-ranked word lists of ~40 languages; no
network). Each language keeps its `vocab_words` most frequent words that are written entirely in
that language's script (Japanese: kana only, because espeak-ng reads kanji as "Chinese letter").
Sentences are random word sequences; word i of the list is drawn with weight (i + 1) ** -0.5, a
flattened Zipf law, so frequent words recur while the tail still appears.

Japanese is written without spaces between words (as Japanese is), unless the corpus asks for
word-segmented transcripts (`segmented=True`: words separated by spaces, like the morpheme-segmented
transcripts of Japanese corpora); every other language joins words with a space. CER scoring removes
all whitespace (zipasr.scoring), so segmentation does not change a Japanese score.
"""
from __future__ import annotations

import functools
import unicodedata

import numpy as np

from zipasr.languages import NO_SPACE

# Unicode script of each language's letters (prefix of unicodedata.name); LATIN unless listed.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "ru": ("CYRILLIC",),
    "uk": ("CYRILLIC",),
    "el": ("GREEK",),
    "fa": ("ARABIC",),
    "ar": ("ARABIC",),
    "hi": ("DEVANAGARI",),
    "ko": ("HANGUL",),
    "ja": ("HIRAGANA", "KATAKANA"),
}



def script_of(lang: str) -> tuple[str, ...]:
    return SCRIPTS.get(lang, ("LATIN",))


def _in_script(word: str, script: tuple[str, ...]) -> bool:
    return all(ch.isalpha() and unicodedata.name(ch, "").startswith(script) for ch in word)


def _pinyin(word: str) -> str | None:
    """A Chinese word in pinyin with tone marks ("中国" -> "zhōngguó"), the only Chinese espeak-ng reads
    (its voice cmn-latn-pinyin speaks the tones the marks give); None for a word whose later syllable
    starts with a vowel, which pinyin writes with an apostrophe ("xī'ān") and espeak-ng cannot split."""
    from pypinyin import Style, pinyin

    syllables = [s[0] for s in pinyin(word, style=Style.TONE, errors="ignore")]
    if len(syllables) != len(word) or any(
            unicodedata.normalize("NFD", s)[0] in "aoe" for s in syllables[1:]):
        return None
    return "".join(syllables)


def _fix_greek_sigma(word: str) -> str:
    # wordfreq case-folds the final sigma to "σ"; written Greek uses "ς" at the end of a word.
    return word[:-1] + "ς" if word.endswith("σ") else word


@functools.lru_cache(maxsize=None)
def word_list(lang: str, vocab_words: int) -> tuple[str, ...]:
    """The `vocab_words` most frequent words of `lang` written only in its script.

    Single letters are dropped (mostly elision fragments like French "l"), except in Japanese,
    where one-kana words are particles. Chinese words are written in pinyin with tone marks (`_pinyin`).
    """
    import wordfreq

    if lang not in wordfreq.available_languages():
        raise ValueError(f"wordfreq has no word list for language {lang!r}")
    script = script_of(lang)
    min_chars = 1 if lang == "ja" else 2
    words: list[str] = []
    seen: set[str] = set()
    for raw in wordfreq.top_n_list(lang, 20 * vocab_words + 1000):
        word = unicodedata.normalize("NFC", raw)
        if lang == "el":
            word = _fix_greek_sigma(word)
        if lang == "zh":
            word = unicodedata.normalize("NFC", _pinyin(word) or "")
        if len(word) < min_chars or word in seen or not _in_script(word, script):
            continue
        seen.add(word)
        words.append(word)
        if len(words) == vocab_words:
            break
    if len(words) < vocab_words:
        raise ValueError(f"wordfreq gives only {len(words)} usable {lang!r} words, {vocab_words} requested")
    return tuple(words)


def join_words(lang: str, words: list[str], segmented: bool = False) -> str:
    """`words` as one sentence: no separator for NO_SPACE languages unless `segmented`."""
    return ("" if lang in NO_SPACE and not segmented else " ").join(words)


class SentenceSampler:
    """Random sentences of one language, never repeating a sentence it has already produced.

    `exclude` holds sentences that must never be produced (e.g. the test sets' sentences when
    sampling LLM pretraining text). `segmented`: separate words by spaces even in a NO_SPACE language.
    """

    def __init__(self, lang: str, vocab_words: int, min_words: int, max_words: int,
                 rng: np.random.Generator, exclude: set[str] | frozenset[str] = frozenset(),
                 segmented: bool = False):
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        self.lang = lang
        self.words = word_list(lang, vocab_words)
        weights = (np.arange(len(self.words)) + 1.0) ** -0.5
        self.probs = weights / weights.sum()
        self.min_words, self.max_words = min_words, max_words
        self.rng = rng
        self.segmented = segmented
        self.seen: set[str] = set(exclude)

    def sample(self) -> str:
        for _ in range(1000):
            n = int(self.rng.integers(self.min_words, self.max_words + 1))
            idx = self.rng.choice(len(self.words), size=n, p=self.probs)
            sentence = join_words(self.lang, [self.words[i] for i in idx], self.segmented)
            if sentence not in self.seen:
                self.seen.add(sentence)
                return sentence
        raise RuntimeError(f"cannot find a new {self.lang!r} sentence: vocabulary or lengths too small")

    def sample_many(self, n: int) -> list[str]:
        return [self.sample() for _ in range(n)]
