"""Lexicon-constrained decoding: every word the Speech-LLM writes must be a word of its language's lexicon.

A lexicon dir holds one UTF-8 file per language, `<lang>.txt`, one word per line (Kaldi's words.txt
without the ids). Languages without a file are decoded unconstrained. `zipasr.bin.make_lexicon` writes one
from a Kaldi text + utt2lang (e.g. the LLM's pretraining text of the mini recipe).

The constraint is a prefix trie over each lexicon's words applied at every step of `llm.generate`
(transformers' `prefix_allowed_tokens_fn`, greedy or beam search): a token may extend the current word
only along the trie, a word boundary (a space: sentencepiece's `▁`, byte-level BPE's `Ġ`) or the end of
the transcript may only follow a whole word. With a byte-level BPE (Qwen3's), a token holding part of
a character's UTF-8 bytes is never allowed: words must be spelt with whole-character tokens. It plays the part of a WFST lexicon (Kaldi's L, icefall's HLG) for a model whose
LLM knows too few words of its own (the mini recipe's tiny LLM; README of egs/mini_multilingual).
"""
from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor

logger = logging.getLogger(__name__)

SPACE = "\u2581"  # sentencepiece's word-boundary mark


def read_lexicon(lexicon_dir: str | Path) -> dict[str, set[str]]:
    """{lang: set of words} from lexicon_dir/<lang>.txt (one word per line)."""
    lexicon_dir = Path(lexicon_dir)
    if not lexicon_dir.is_dir():
        raise FileNotFoundError(f"lexicon dir not found: {lexicon_dir}")
    lexicon = {}
    for path in sorted(lexicon_dir.glob("*.txt")):
        words = {w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()}
        bad = sorted(w for w in words if any(c.isspace() for c in w))
        if bad:
            raise ValueError(f"{path}: words may not contain white space, e.g. {bad[0]!r}")
        if not words:
            raise ValueError(f"{path}: empty lexicon")
        lexicon[path.stem] = words
    if not lexicon:
        raise ValueError(f"{lexicon_dir} has no <lang>.txt lexicon files")
    return lexicon


def write_lexicon(lexicon: dict[str, set[str]], lexicon_dir: str | Path) -> None:
    """Write {lang: words} as lexicon_dir/<lang>.txt, words sorted."""
    lexicon_dir = Path(lexicon_dir)
    lexicon_dir.mkdir(parents=True, exist_ok=True)
    for lang, words in sorted(lexicon.items()):
        (lexicon_dir / f"{lang}.txt").write_text("".join(w + "\n" for w in sorted(words)), encoding="utf-8")


def piece_texts(tokenizer) -> list[str]:
    """The text of every token id with a space where it starts a word: sentencepiece's `▁` becomes a
    space; a byte-level BPE's tokens are decoded one by one (`Ġ` -> space, a partial UTF-8 character ->
    U+FFFD, which no word contains)."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if any(SPACE in p for p in pieces if p):
        return [(p or "").replace(SPACE, " ") for p in pieces]
    return [tokenizer.convert_tokens_to_string([p]) if p else "" for p in pieces]


def _prefixes(words: set[str]) -> set[str]:
    return {w[:i] for w in words for i in range(len(w) + 1)}


class LexiconConstraint:
    """prefix_allowed_tokens_fn for a batch: allowed next token ids given the tokens generated so far.

    vocab: the text of each token id, a space marking a word boundary (`piece_texts(tokenizer)`);
    special_ids: ids never allowed inside a transcript (pad, unk, <blank>, ...); eos_id: allowed after
    a whole word.
    """

    def __init__(self, lexicon: dict[str, set[str]], vocab: list[str], eos_id: int, special_ids: set[int]):
        self.words = lexicon
        self.prefixes = {lang: _prefixes(words) for lang, words in lexicon.items()}
        self.vocab = vocab
        self.eos_id = eos_id
        self.special_ids = set(special_ids) | {eos_id}
        self.all_ids = list(range(len(vocab)))
        self._cache: dict[tuple[str, str, bool], list[int]] = {}
        self._states: dict[tuple[str, tuple[int, ...]], tuple[str, bool]] = {}

    @classmethod
    def from_tokenizer(cls, lexicon: dict[str, set[str]], tokenizer) -> "LexiconConstraint":
        return cls(lexicon, piece_texts(tokenizer), tokenizer.eos_token_id, set(tokenizer.all_special_ids))

    def _advance(self, lang: str, word: str, started: bool, piece: str) -> tuple[str, bool] | None:
        """The state after `piece`, or None if it leaves the lexicon. word: the current partial word."""
        prefixes, words = self.prefixes[lang], self.words[lang]
        for ch in piece:
            if ch == " ":
                if word and word not in words:
                    return None
                if not word and started:  # two boundaries in a row
                    return None
                word, started = "", True
            else:
                word += ch
                if word not in prefixes:
                    return None
        return word, started or bool(word)

    def allowed(self, lang: str, word: str, started: bool) -> list[int]:
        """Token ids allowed in state (partial word, whether any text was written)."""
        key = (lang, word, started)
        if key not in self._cache:
            ids = [i for i in self.all_ids if i not in self.special_ids
                   and self._advance(lang, word, started, self.vocab[i]) is not None]
            if word in self.words[lang]:
                ids.append(self.eos_id)
            if not ids:  # cannot happen for a prefix of a word; never leave the search without a choice
                ids = [self.eos_id]
            self._cache[key] = ids
        return self._cache[key]

    def state(self, lang: str, token_ids: list[int]) -> tuple[str, bool]:
        """(partial word, started) after the generated tokens; off-lexicon text (unconstrained) resets.
        Each hypothesis grows by one token per step, so the state of its prefix is looked up (cached per
        decoding batch by `for_batch`) and advanced by the last token only."""
        key = (lang, tuple(token_ids))
        if key in self._states:
            return self._states[key]
        if not token_ids:
            return "", False
        word, started = self.state(lang, token_ids[:-1])
        i = token_ids[-1]
        if i not in self.special_ids:
            nxt = self._advance(lang, word, started, self.vocab[i])
            word, started = nxt if nxt is not None else ("", True)
        self._states[key] = (word, started)
        return word, started

    def for_batch(self, langs: list[str]):
        """prefix_allowed_tokens_fn(batch_id, generated ids (L,)) for a batch of these languages."""
        self._states.clear()  # the hypotheses of the previous batch are finished
        def allowed_tokens(batch_id: int, input_ids: Tensor) -> list[int]:
            lang = langs[batch_id]
            if lang not in self.words:
                return self.all_ids
            return self.allowed(lang, *self.state(lang, input_ids.tolist()))
        return allowed_tokens
