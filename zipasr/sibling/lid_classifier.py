"""Language-agnostic inference: predict each utterance's language from its audio.

When `utt2lang` is absent (or ignored on purpose), a predicted language drives both the prompt and
the adapter routing of every method. Two detectors, one interface (`LanguageDetector.posteriors`):

- `LIDClassifier`: zipasr's own small head, mean-pooled encoder output -> linear -> language logits.
  It reads the Stage-1 encoder (every encoder adapter bypassed: the language is not known yet), so
  it is trained on the Stage-1 encoder, either as an auxiliary head during Stage 1 (`lid_loss`) or
  afterwards on the frozen encoder (`train_lid_classifier`, `python -m zipasr.bin.train_lid`).
- `WhisperLanguageDetector`: Whisper's own language head, for encoders that come with a Whisper
  decoder: the original checkpoint encodes the (30 s padded) log-mel, the decoder reads
  <|startoftranscript|>, and the argmax over the language tokens of the model's languages (ids from
  the checkpoint's generation_config.lang_to_id) is the prediction.

`predict_languages(model, feats, feat_lens)` returns lang_ids (B,) indexing `model.languages`;
`lid_report` / `write_lid_report` give the LID accuracy line a decode reports.
"""
from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zipasr.languages import check_languages
from zipasr.model.encoder import masked_mean

log = logging.getLogger(__name__)

CLASSIFIER_WEIGHTS = "lid_classifier.safetensors"
CLASSIFIER_CONFIG = "lid_classifier.json"


class LanguageDetector(nn.Module, ABC):
    """Interface: posteriors(model, feats, feat_lens, segment_frames) -> (B, L) over `languages`."""

    languages: list[str]

    @abstractmethod
    def posteriors(self, model: nn.Module, feats: Tensor, feat_lens: Tensor,
                   segment_frames: int | None = None) -> Tensor:
        """feats (B, n_mels, T), feat_lens (B,) -> language posteriors (B, L), rows summing to 1."""


@contextmanager
def adapters_bypassed(module: nn.Module) -> Iterator[nn.Module]:
    """Run `module` with every adapter layer reduced to its frozen base layer W0 (the Stage-1 weights).

    The language of an utterance must be known before a language-aware adapter can run, so the
    LID classifier reads the encoder without them.
    """
    from zipasr.adapters import adapter_layers

    layers = list(adapter_layers(module).values())
    merged = [layer for layer in layers if layer.merged]
    if merged:
        raise RuntimeError("cannot bypass adapters that are merged into the base weights; unmerge them first")
    for layer in layers:
        layer.forward = layer.base_layer.forward  # instance attribute: nn.Module.__call__ finds it first
    try:
        yield module
    finally:
        for layer in layers:
            del layer.forward


class LIDClassifier(LanguageDetector):
    """logits = W · mean_t(h_t) + b over the Stage-1 encoder output h (B, T, d_enc)."""

    def __init__(self, d_enc: int, languages: Sequence[str]):
        super().__init__()
        self.languages = check_languages(languages)
        if len(self.languages) < 2:
            raise ValueError(f"a LID classifier needs at least two languages, got {self.languages}")
        self.d_enc = d_enc
        self.proj = nn.Linear(d_enc, len(self.languages))

    def forward(self, hidden: Tensor, lens: Tensor) -> Tensor:
        """hidden (B, T, d_enc), lens (B,) -> logits (B, L)."""
        return self.logits_from_pooled(masked_mean(hidden, lens))

    def logits_from_pooled(self, pooled: Tensor) -> Tensor:
        """pooled (B, d_enc) -> logits (B, L)."""
        return self.proj(pooled.to(self.proj.weight.dtype))

    @torch.no_grad()
    def posteriors(self, model: nn.Module, feats: Tensor, feat_lens: Tensor,
                   segment_frames: int | None = None) -> Tensor:
        pooled = encoder_embeddings(model.encoder, feats, feat_lens, segment_frames)
        return self.logits_from_pooled(pooled).float().softmax(-1)

    def save(self, out_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(out_dir / CLASSIFIER_WEIGHTS))
        cfg = {"d_enc": self.d_enc, "languages": self.languages}
        (out_dir / CLASSIFIER_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return out_dir

    @classmethod
    def load(cls, ckpt_dir: str | Path) -> "LIDClassifier":
        from zipasr.adapters.inject import read_safetensors

        ckpt_dir = Path(ckpt_dir)
        cfg_file = ckpt_dir / CLASSIFIER_CONFIG
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{ckpt_dir} has no {CLASSIFIER_CONFIG} (not a LID classifier directory)")
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            clf = cls(cfg["d_enc"], cfg["languages"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{cfg_file}: not a LID classifier config (want d_enc and languages): {err!r}") from None
        state = read_safetensors(ckpt_dir / CLASSIFIER_WEIGHTS)[0]
        clf.load_state_dict(state)
        return clf


@torch.no_grad()
def encoder_embeddings(encoder: nn.Module, feats: Tensor, feat_lens: Tensor,
                       segment_frames: int | None = None) -> Tensor:
    """Mean-pooled output of the encoder with its adapters bypassed: (B, n_mels, T) -> (B, d_enc)."""
    with adapters_bypassed(encoder):
        hidden, lens = encoder(feats, feat_lens, segment_frames)
    return masked_mean(hidden, lens)


def lid_loss(classifier: LIDClassifier, hidden: Tensor, lens: Tensor, lang_ids: Tensor) -> Tensor:
    """Auxiliary Stage-1 loss: cross-entropy of the LID head on the encoder output.

    hidden (B, T, d_enc), lens (B,), lang_ids (B,) indexing classifier.languages -> scalar.
    """
    return F.cross_entropy(classifier(hidden, lens).float(), lang_ids.to(hidden.device))


def train_lid_classifier(
    encoder: nn.Module,
    items: Iterable[tuple[Tensor, str]],
    languages: Sequence[str],
    segment_frames: int | None = None,
    c: float = 1.0,
    max_iter: int = 1000,
    batch_size: int = 8,
    total: int | None = None,
    seed: int = 0,
) -> tuple[LIDClassifier, float]:
    """Train a LIDClassifier on a frozen encoder; returns (classifier, training accuracy).

    items: (feats (n_mels, T), language code) pairs. The encoder runs once per utterance (adapters
    bypassed); the head is then a logistic regression on the pooled vectors (inverse L2 strength
    `c`). Utterances of other languages are skipped.
    """
    from tqdm import tqdm

    languages = check_languages(languages)
    index = {code: i for i, code in enumerate(languages)}
    device = next(encoder.parameters()).device
    encoder.eval()
    pooled, labels, batch = [], [], []

    def flush():
        lens = torch.tensor([f.shape[-1] for f, _ in batch])
        feats = nn.utils.rnn.pad_sequence([f.T for f, _ in batch], batch_first=True).transpose(1, 2)
        pooled.append(encoder_embeddings(encoder, feats.to(device), lens.to(device), segment_frames).cpu())
        labels.extend(index[lang] for _, lang in batch)
        batch.clear()

    for feats, lang in tqdm(items, total=total, desc="LID features", unit="utt"):
        if lang in index:
            batch.append((torch.as_tensor(feats, dtype=torch.float32), lang))
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    if not pooled:
        raise ValueError(f"no utterance of languages {languages} to train the LID classifier on")
    x, y = torch.cat(pooled), torch.tensor(labels)
    absent = [code for i, code in enumerate(languages) if not bool((y == i).any())]
    if absent:
        raise ValueError(f"no training utterances for languages {absent}")
    # A multinomial logistic regression on standardised vectors (scikit-learn's lbfgs: exact and
    # fast), folded back into one linear layer over the raw pooled vectors.
    from sklearn.linear_model import LogisticRegression

    mu, sigma = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = ((x - mu) / sigma).double().numpy()
    fit = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(xs, y.numpy())
    weight = torch.as_tensor(fit.coef_, dtype=torch.float32)
    bias = torch.as_tensor(fit.intercept_, dtype=torch.float32)
    if len(languages) == 2:  # scikit-learn returns one row for two classes: logit(1) - logit(0)
        weight, bias = torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias), bias])
    clf = LIDClassifier(x.shape[1], languages)
    with torch.no_grad():
        clf.proj.weight.copy_(weight / sigma[None, :])
        clf.proj.bias.copy_(bias - clf.proj.weight @ mu)
        accuracy = float((clf.logits_from_pooled(x).argmax(-1) == y).float().mean())
    clf.to(device)
    log.info("LID classifier: %d utterances, %d languages, training accuracy %.2f%%", len(y), len(languages),
             100 * accuracy)
    return clf, accuracy


class WhisperLanguageDetector(LanguageDetector):
    """Whisper's language identification: decoder step 0 after <|startoftranscript|>, restricted to
    the language tokens of `languages` (ids from the checkpoint's generation_config.lang_to_id)."""

    def __init__(self, whisper: nn.Module, token_ids: Sequence[int], start_id: int, languages: Sequence[str]):
        super().__init__()
        self.whisper = whisper.eval()
        self.languages = check_languages(languages)
        self.register_buffer("token_ids", torch.tensor(list(token_ids), dtype=torch.long), persistent=False)
        self.start_id = int(start_id)

    @classmethod
    def from_pretrained(cls, whisper_dir: str | Path, languages: Sequence[str]) -> "WhisperLanguageDetector":
        from transformers import GenerationConfig, WhisperForConditionalGeneration

        from zipasr.model.lid import whisper_language_token_ids

        ids = whisper_language_token_ids(whisper_dir, languages)  # also checks the directory
        whisper = WhisperForConditionalGeneration.from_pretrained(str(whisper_dir), local_files_only=True)
        gen = GenerationConfig.from_pretrained(str(whisper_dir), local_files_only=True)
        start = gen.decoder_start_token_id
        if start is None:
            start = whisper.config.decoder_start_token_id
        if start is None:
            raise ValueError(f"{whisper_dir}: no decoder_start_token_id (<|startoftranscript|>) in its configs")
        return cls(whisper, ids, start, languages)

    @property
    def window_frames(self) -> int:
        """Whisper encodes exactly 30 s: 2 x its positional table."""
        return 2 * self.whisper.config.max_source_positions

    def pad_to_window(self, feats: Tensor, feat_lens: Tensor) -> Tensor:
        """(B, n_mels, T) -> (B, n_mels, window): cut at 30 s, pad with each utterance's minimum value.

        Whisper pads the waveform with silence before its log-mel, and silence maps to the log-mel
        floor, which is the utterance's minimum value; padding with it imitates that.
        """
        window = self.window_frames
        out = []
        for b in range(feats.shape[0]):
            n = min(int(feat_lens[b]), window)
            x = feats[b, :, :n]
            floor = x.min() if n > 0 else feats.new_tensor(0.0)
            out.append(F.pad(x, (0, window - n), value=float(floor)))
        return torch.stack(out)

    @torch.no_grad()
    def posteriors(self, model: nn.Module | None, feats: Tensor, feat_lens: Tensor,
                   segment_frames: int | None = None) -> Tensor:
        """(B, L) posteriors; `model` and `segment_frames` are unused (Whisper brings its own encoder)."""
        dtype = next(self.whisper.parameters()).dtype
        device = next(self.whisper.parameters()).device
        inputs = self.pad_to_window(feats.float(), feat_lens).to(device, dtype)
        start = torch.full((feats.shape[0], 1), self.start_id, dtype=torch.long, device=device)
        logits = self.whisper(input_features=inputs, decoder_input_ids=start).logits[:, -1]  # (B, vocab)
        return logits[:, self.token_ids].float().softmax(-1)


def load_language_detector(path: str | Path, languages: Sequence[str]) -> LanguageDetector:
    """A LID classifier directory (lid_classifier.json) or a Whisper checkpoint directory with a decoder."""
    path = Path(path)
    if (path / CLASSIFIER_CONFIG).is_file():
        clf = LIDClassifier.load(path)
        if clf.languages != list(languages):
            raise ValueError(f"{path}: LID classifier for languages {clf.languages}, the model has {list(languages)}")
        return clf
    if (path / "config.json").is_file():
        return WhisperLanguageDetector.from_pretrained(path, languages)
    raise FileNotFoundError(f"{path} is neither a LID classifier directory ({CLASSIFIER_CONFIG}) "
                            "nor a Whisper checkpoint")


@torch.no_grad()
def predict_languages(model: nn.Module, feats: Tensor, feat_lens: Tensor,
                      detector: LanguageDetector | None = None, segment_frames: int | None = None) -> Tensor:
    """lang_ids (B,) long, indexing `model.languages`, predicted from the audio.

    feats (B, n_mels, T), feat_lens (B,). detector: default `model.language_detector` (attach one with
    `model.language_detector = load_language_detector(...)`). segment_frames: the encoder regime of
    the LID classifier's pass, as SpeechLLM.generate takes it (None = the model's decoding regime,
    0 = full context, n = n-frame segments).
    """
    detector = detector if detector is not None else getattr(model, "language_detector", None)
    if detector is None:
        raise ValueError(
            "no language detector: utt2lang is absent, so the language must be predicted; give a LID "
            "classifier directory or a Whisper checkpoint (load_language_detector)"
        )
    if list(detector.languages) != list(model.languages):
        raise ValueError(f"detector languages {detector.languages} differ from the model's {model.languages}")
    if segment_frames is None and hasattr(model, "regime"):
        segment_frames = 0 if model.regime == "full" else model.decode_segment_frames
    return detector.posteriors(model, feats, feat_lens, segment_frames or None).argmax(-1).to(feats.device)


def lid_report(predicted: Mapping[str, str], reference: Mapping[str, str]) -> tuple[str, dict]:
    """LID accuracy of `predicted` (utt -> lang) against `reference` (utt -> lang).

    Returns (text, numbers): the first line of text is `%LID 97.50 [ 39 / 40 ]`, then one line per
    reference language. Utterances missing from `predicted` count as errors.
    """
    if not reference:
        raise ValueError("no reference languages (utt2lang) to score LID against")
    per_lang: dict[str, list[int]] = {}
    for utt, lang in reference.items():
        hit = per_lang.setdefault(lang, [0, 0])
        hit[0] += int(predicted.get(utt) == lang)
        hit[1] += 1
    correct = sum(c for c, _ in per_lang.values())
    total = len(reference)
    lines = [f"%LID {100.0 * correct / total:.2f} [ {correct} / {total} ]"]
    lines += [f"{lang} {100.0 * c / n:.2f} [ {c} / {n} ]" for lang, (c, n) in sorted(per_lang.items())]
    numbers = {"accuracy": correct / total, "correct": correct, "total": total,
               "per_language": {lang: c / n for lang, (c, n) in per_lang.items()}}
    return "\n".join(lines) + "\n", numbers


def write_lid_report(out_dir: str | Path, predicted: Mapping[str, str],
                     reference: Mapping[str, str] | None = None) -> str | None:
    """Write `utt2lang.pred` (Kaldi map) and, with a reference, `lid_accuracy.txt`; returns its text."""
    from zipasr.data.datadir import write_kaldi_map

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_kaldi_map(out_dir / "utt2lang.pred", dict(predicted))
    if not reference:
        return None
    text, _ = lid_report(predicted, reference)
    (out_dir / "lid_accuracy.txt").write_text(text, encoding="utf-8")
    log.info("LID accuracy: %s", text.splitlines()[0])
    return text
