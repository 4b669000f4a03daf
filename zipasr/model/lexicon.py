"""Lexicon-constrained decoding: every word the Speech-LLM writes must be a word of its language's lexicon.

A lexicon dir holds one UTF-8 file per language, `<lang>.txt`, one word per line (Kaldi's words.txt
without the ids). Languages without a file are decoded unconstrained. `zipasr.bin.make_lexicon` writes one
from a Kaldi text + utt2lang (e.g. the LLM's pretraining text of the mini recipe).

The constraint is a prefix trie over each lexicon's words applied at every step of `llm.generate`
(`LexiconConstraint.processor`, a transformers logits processor, greedy or beam search): a token may extend the current word
only along the trie, a word boundary (a space: sentencepiece's `▁`, byte-level BPE's `Ġ`) or the end of
the transcript may only follow a whole word. With a byte-level BPE (Qwen3's), a token holding part of
a character's UTF-8 bytes is never allowed: words must be spelt with whole-character tokens. It plays the part of a WFST lexicon (Kaldi's L, icefall's HLG) for a model whose
LLM knows too few words of its own (the mini recipe's tiny LLM; README of egs/mini_multilingual).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor
from transformers import LogitsProcessor

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
        # The characters that may follow each prefix of a word (the trie's edges)
        self.next_chars: dict[str, dict[str, set[str]]] = {}
        for lang, prefixes in self.prefixes.items():
            edges = self.next_chars[lang] = {}
            for prefix in prefixes:
                if prefix:
                    edges.setdefault(prefix[:-1], set()).add(prefix[-1])
        self.vocab = vocab
        self.eos_id = eos_id
        self.special_ids = set(special_ids) | {eos_id}
        self.all_ids = list(range(len(vocab)))
        # Token ids by the first character of their text ("" for an empty text): `allowed` tries only the
        # tokens whose first character can follow the current partial word (a few of a whole vocabulary).
        self._by_first: dict[str, list[int]] = {}
        for i, piece in enumerate(vocab):
            if i not in self.special_ids:
                self._by_first.setdefault(piece[:1], []).append(i)
        self._cache: dict[tuple[str, str, bool], list[int]] = {}
        self._masks: dict[tuple, Tensor] = {}
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
            firsts = {"", " "} | self.next_chars[lang].get(word, set())
            tried = sorted(i for first in firsts for i in self._by_first.get(first, ()))
            ids = [i for i in tried if self._advance(lang, word, started, self.vocab[i]) is not None]
            if word in self.words[lang]:
                ids.append(self.eos_id)
            if not ids:  # cannot happen for a prefix of a word; never leave the search without a choice
                ids = [self.eos_id]
            self._cache[key] = ids
        return self._cache[key]

    def state(self, lang: str, token_ids: list[int]) -> tuple[str, bool]:
        """(partial word, started) after the generated tokens; off-lexicon text (unconstrained) resets.
        Each hypothesis grows by one token per step, so the state of its prefix is looked up (cached per
        decoding batch by `processor`) and advanced by the last token only."""
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

    def mask(self, lang: str, state: tuple[str, bool] | None, size: int, device) -> Tensor:
        """`allowed` in state (partial word, started) as a boolean mask (size,) (size: the LLM's output
        size), cached per state; state None (a language without lexicon): every token of the vocabulary."""
        key = (lang, state, size)
        if key not in self._masks:
            mask = torch.zeros(size, dtype=torch.bool)
            mask[self.all_ids if state is None else self.allowed(lang, *state)] = True
            self._masks[key] = mask
        return self._masks[key].to(device)

    def processor(self, langs: list[str], num_beams: int = 1) -> "LexiconLogitsProcessor":
        """The logits processor of a decoding batch of these languages (rows of an utterance contiguous)."""
        self._states.clear()  # the hypotheses of the previous batch are finished
        return LexiconLogitsProcessor(self, langs, num_beams)


class LexiconLogitsProcessor(LogitsProcessor):
    """transformers' `PrefixConstrainedLogitsProcessor` with a `LexiconConstraint`, its per-row allowed-token
    lists replaced by cached masks: the same scores (every token the lexicon forbids at -inf; an
    utterance none of whose beams has an allowed token of finite score gets 0 on its allowed tokens,
    so that the constraint holds), without a Python loop over each row's allowed ids at every step."""

    def __init__(self, constraint: LexiconConstraint, langs: list[str], num_beams: int):
        self.constraint, self.langs, self.num_beams = constraint, langs, num_beams

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        """input_ids (N x num_beams, L) generated so far, scores (N x num_beams, V) -> (N x num_beams, V)."""
        c, size = self.constraint, scores.shape[-1]
        masks = []
        for r, ids in enumerate(input_ids.tolist()):
            lang = self.langs[r // self.num_beams]
            state = c.state(lang, ids) if lang in c.words else None  # None: no lexicon, any token
            masks.append(c.mask(lang, state, size, scores.device))
        allowed = torch.stack(masks)
        out = scores.masked_fill(~allowed, float("-inf"))
        stuck = out.amax(-1).isneginf().view(-1, self.num_beams).all(-1).repeat_interleave(self.num_beams)
        if stuck.any():
            out = torch.where(stuck[:, None] & allowed, 0.0, out).to(scores.dtype)
        return out
