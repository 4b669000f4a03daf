"""Training data: the utterances of a Kaldi data dir, their features and transcript tokens, and batches.

`SpeechDataset` reads a data dir once: per utterance the language (utt2lang), the transcript token ids
(tokenised once, with the model's tokenizer) and the feature length. For decoding (`tokenize=None`) the
data dir may lack utt2lang (language-agnostic inference predicts the languages): every utterance's
`lang` is then None and its lang_id UNKNOWN_LANG. Features come from feats.scp or are
computed from audio (zipasr.data.load_features); with `cache=True` (the default) all of them are read
into memory once, so the training loop never touches the disk (the mini recipe's data is small). The
packed length of an utterance, used by `zipasr.train.packing`, is

    speech tokens after the 8x reduction + transcript tokens + EOS + reserved prompt tokens.

`collate(rows)` turns rows of utterance indices into the model's `SpeechBatch` (utterances flattened in
row order; `rows` tells the model which of them share an LLM row).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from zipasr.data.datadir import DataDir
from zipasr.data.features import FRAME_RATE, FeatureExtractor, load_features

logger = logging.getLogger(__name__)

UNKNOWN_LANG = -1  # lang_id of an utterance without utt2lang entry (decoding only; a LID predicts it)


def speech_tokens(n_frames: int, projector_stride: int = 4) -> int:
    """LLM input positions of an utterance of `n_frames` mel frames: Whisper's 2x, then the projector's
    stride (the paper's 4: 100 Hz mel frames -> 12.5 Hz LLM inputs), ceil(ceil(T/2)/stride)."""
    return math.ceil(math.ceil(n_frames / 2) / projector_stride)


@dataclass
class Utterance:
    utt: str
    lang: str | None  # None: not given (a data dir without utt2lang, decoding only)
    n_frames: int
    text_ids: list[int]


class SpeechDataset:
    """The utterances of one data dir, ready for packing and batching.

    Args:
        data_dir: a Kaldi data dir with text, utt2lang and wav.scp (and feats.scp or utt2dur); without
            `tokenize` (decoding) utt2lang may be absent, then the languages are unknown.
        languages: the model's ordered language list; every utterance's language must be among them.
        tokenize: transcript -> token ids (no special tokens, no EOS), the model's own tokenisation
            (None when the transcripts are not needed, as in decoding).
        extractor: the model's FeatureExtractor (mel bins), used when there is no feats.scp.
        cache: read all features into memory now (else each batch reads its features from disk).
        max_frames: utterances with more mel frames are dropped with a warning (None: keep all).
    """

    def __init__(self, data_dir: str | Path, languages: Sequence[str], tokenize: Callable[[str], list[int]] | None,
                 extractor: FeatureExtractor | None = None, cache: bool = True, max_frames: int | None = None):
        self.data_dir = Path(data_dir)
        self.dd = DataDir.load(self.data_dir)
        self.languages = list(languages)
        self.extractor = extractor
        # Training needs every language; decoding without utt2lang predicts them (language-agnostic).
        self.has_languages = bool(self.dd.utt2lang)
        if not self.has_languages and tokenize is not None:
            raise ValueError(f"{self.data_dir} has no utt2lang: training needs the language of every utterance")
        lang_index = {code: i for i, code in enumerate(self.languages)}
        self.utterances: list[Utterance] = []
        self._feats: list[np.ndarray] | None = [] if cache else None
        dropped = []
        for utt in tqdm(self.dd.utt_ids, desc=f"loading {self.data_dir.name}", unit="utt", leave=False,
                        disable=len(self.dd) < 1000):
            lang = self.dd.utt2lang.get(utt)
            if lang is None and self.has_languages:
                raise ValueError(f"{self.data_dir}/utt2lang has no entry for utterance {utt!r}")
            if lang is not None and lang not in lang_index:
                raise ValueError(f"{self.data_dir}: utterance {utt!r} is in language {lang!r}, which is not among "
                                 f"the model's languages {self.languages} (data.languages)")
            feats = None
            if cache:
                feats = self._load(utt)
                n_frames = feats.shape[1]
            else:
                n_frames = self._length(utt)
            if max_frames is not None and n_frames > max_frames:
                dropped.append(utt)
                continue
            text_ids = list(tokenize(self.dd.text[utt])) if tokenize is not None else []
            if tokenize is not None and not text_ids:
                logger.warning("%s: utterance %s has an empty transcript", self.data_dir, utt)
            self.utterances.append(Utterance(utt, lang, n_frames, text_ids))
            if cache:
                self._feats.append(feats)
        if dropped:
            logger.warning("%s: dropped %d utterances longer than %d mel frames (e.g. %s)",
                           self.data_dir, len(dropped), max_frames, dropped[0])
        if not self.utterances:
            raise ValueError(f"{self.data_dir}: no utterances left to train on")
        self.lang_ids = [lang_index[u.lang] if u.lang is not None else UNKNOWN_LANG for u in self.utterances]

    def _load(self, utt: str) -> np.ndarray:
        feats = load_features(self.dd, utt, self.extractor)
        if self.extractor is not None and feats.shape[0] != self.extractor.n_mels:
            raise ValueError(f"{self.data_dir}: utterance {utt!r} has {feats.shape[0]} mel bins, "
                             f"the encoder expects {self.extractor.n_mels}")
        if not np.isfinite(feats).all():
            raise ValueError(f"{self.data_dir}: the features of utterance {utt!r} hold NaN or inf values")
        return feats

    def _length(self, utt: str) -> int:
        if self.dd.utt2num_frames is not None and utt in self.dd.utt2num_frames:
            return self.dd.utt2num_frames[utt]
        if utt in self.dd.utt2dur:
            return int(self.dd.utt2dur[utt] * FRAME_RATE)
        return self._load(utt).shape[1]

    def texts(self) -> list[str]:
        """The transcripts of the utterances kept, in order."""
        return [self.dd.text[u.utt] for u in self.utterances]

    def __len__(self) -> int:
        return len(self.utterances)

    def features(self, index: int) -> np.ndarray:
        """(n_mels, T) float32 features of utterance `index`."""
        if self._feats is not None:
            return self._feats[index]
        return self._load(self.utterances[index].utt)

    def packed_lengths(self, prompt_tokens: int | Sequence[int], projector_stride: int = 4) -> list[int]:
        """Tokens each utterance occupies in a packed row (speech + transcript + EOS + prompt).

        `prompt_tokens`: one reserved count for all, or the prompt length per language (indexed by lang_id),
        which packs rows tighter when prompts differ in length across languages.
        """
        per_lang = [prompt_tokens] * len(self.languages) if isinstance(prompt_tokens, int) else prompt_tokens
        return [speech_tokens(u.n_frames, projector_stride) + len(u.text_ids) + 1 + per_lang[lang_id]
                for u, lang_id in zip(self.utterances, self.lang_ids)]

    def target_tokens(self, rows: Sequence[Sequence[int]]) -> int:
        """Transcript tokens + one EOS per utterance in `rows`: the tokens the loss is computed on."""
        return sum(len(self.utterances[i].text_ids) + 1 for row in rows for i in row)

    def collate(self, rows: Sequence[Sequence[int]]):
        """Rows of utterance indices -> SpeechBatch with feats (N, n_mels, T_max) zero-padded, feat_lens (N,),
        lang_ids (N,) (UNKNOWN_LANG where utt2lang is absent), text_ids (N lists), rows (indices into the N
        flattened utterances), texts (N transcripts, "" where the data dir has none)."""
        from zipasr.model.speech_llm import SpeechBatch

        order = [i for row in rows for i in row]
        feats = [self.features(i) for i in order]
        lens = torch.tensor([f.shape[1] for f in feats], dtype=torch.long)
        padded = np.zeros((len(feats), feats[0].shape[0], int(lens.max())), dtype=np.float32)
        for k, f in enumerate(feats):
            padded[k, :, :f.shape[1]] = f
        flat_rows, start = [], 0
        for row in rows:
            flat_rows.append(list(range(start, start + len(row))))
            start += len(row)
        return SpeechBatch(
            feats=torch.from_numpy(padded),
            feat_lens=lens,
            lang_ids=torch.tensor([self.lang_ids[i] for i in order], dtype=torch.long),
            text_ids=[list(self.utterances[i].text_ids) for i in order],
            rows=flat_rows,
            texts=[self.dd.text.get(self.utterances[i].utt, "") for i in order],
        )
