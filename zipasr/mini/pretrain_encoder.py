"""A tiny Whisper-architecture encoder "pretrained" with a character CTC loss (the mini recipe's Whisper).

No pretrained Whisper can be downloaded here, and a Speech-LLM trained jointly from a random
encoder ignores the audio (the LLM learns the text alone). So the mini recipe first trains the
encoder by itself with CTC over characters, which aligns fast, and saves it as a real
`WhisperModel` checkpoint dir, loaded by Stage 1 exactly like whisper-large-v3 would be:

    out_dir/config.json, model.safetensors    WhisperModel: the trained encoder + a minimal 1-layer
                                              decoder (random; only there so that
                                              WhisperModel.from_pretrained works)
    out_dir/preprocessor_config.json          WhisperFeatureExtractor with the same mel bins
    out_dir/ctc_head.safetensors, ctc_vocab.json   the CTC head (characters; index 0 = blank)
    out_dir/train_log.tsv, dev_cer.json       training curve and greedy-CTC CER per dev language

The encoder forward is `zipasr.model.encoder.WhisperSpeechEncoder` (variable length, padding mask),
the same module the Speech-LLM uses.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zipasr.config import save_config
from zipasr.data.datadir import DataDir
from zipasr.data.features import load_features
from zipasr.model.encoder import WhisperSpeechEncoder
from zipasr.model.ctc import CTC_VOCAB_FILE, CharVocab, normalize_chars  # noqa: F401  (CharVocab: re-exported)
from zipasr.model.projector import CTC_HEAD_FILE
from zipasr.train.precision import autocast_context, use_bf16
from zipasr.train.schedule import build_scheduler

logger = logging.getLogger(__name__)


@dataclass
class EncoderPretrainConfig:
    # architecture (Whisper modules; whisper-large-v3: 128 mels, d=1280, 32 layers, 20 heads)
    n_mels: int = 80
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.0
    # transformers attention kernel of training only (not saved with the checkpoint). eager trains these small
    # layers 1.2-1.5x faster than sdpa on CPU (bench_speech_llm.py attention); the mini recipe uses it
    attn_implementation: str = "sdpa"
    # optimisation
    steps: int = 1000
    batch_frames: int = 8000  # mel frames per batch, padding included (small: more updates per CPU-second)
    lr: float = 2e-3
    warmup_ratio: float = 0.08
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    bf16: bool = True  # bf16 autocast: ~2x faster than fp32 on AVX-512 CPUs (fp32 where bf16 is emulated)
    # SpecAugment-style masks on the log-mel input (many masks per batch, fixed widths)
    time_masks: int = 2
    time_mask_width: int = 15
    freq_masks: int = 2
    freq_mask_width: int = 8
    seed: int = 0
    threads: int = 2
    log_interval: int = 50
    eval_interval: int = 0  # dev CER every N steps (0: only at the end)
    eval_max_utts_per_lang: int = 100


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class FeatUtt:
    utt: str
    lang: str
    text: str
    frames: int
    datadir: DataDir


def collect_utts(data_dirs: list[str | Path]) -> list[FeatUtt]:
    """Every utterance of the data dirs (each must have feats.scp, i.e. dumped features)."""
    utts = []
    for path in data_dirs:
        dd = DataDir.load(path)
        if dd.feats_scp is None:
            raise FileNotFoundError(f"{path}: no feats.scp (dump the features first)")
        for utt in dd.utt_ids:
            if utt not in dd.utt2lang:
                raise KeyError(f"{path}/utt2lang: no language for utterance {utt!r}")
            frames = (dd.utt2num_frames or {}).get(utt) or int(dd.utt2dur[utt] * 100)
            utts.append(FeatUtt(utt, dd.utt2lang[utt], dd.text[utt], frames, dd))
    return utts


def make_batches(utts: list[FeatUtt], batch_frames: int, rng: np.random.Generator) -> list[list[FeatUtt]]:
    """Shuffled batches of similar length whose padded size stays under `batch_frames`."""
    order = rng.permutation(len(utts))
    # sort within windows of 50 batches' worth: little padding, yet a fresh mix every epoch
    window = 2000
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted((utts[i] for i in order[start:start + window]), key=lambda u: u.frames)
        batch: list[FeatUtt] = []
        for u in chunk:
            if batch and (len(batch) + 1) * max(u.frames, batch[-1].frames) > batch_frames:
                batches.append(batch)
                batch = []
            batch.append(u)
        if batch:
            batches.append(batch)
    return [batches[i] for i in rng.permutation(len(batches))]


def load_batch(batch: list[FeatUtt], n_mels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """feats (B, n_mels, T) zero-padded, feat_lens (B,)."""
    mats = [load_features(u.datadir, u.utt) for u in batch]
    for u, m in zip(batch, mats):
        if m.shape[0] != n_mels:
            raise ValueError(f"utterance {u.utt}: {m.shape[0]} mel bins, the encoder expects {n_mels}")
    lens = torch.tensor([m.shape[1] for m in mats])
    feats = torch.zeros(len(mats), n_mels, int(lens.max()))
    for i, m in enumerate(mats):
        feats[i, :, : m.shape[1]] = torch.from_numpy(m)
    return feats, lens


def spec_augment(feats: torch.Tensor, lens: torch.Tensor, cfg: EncoderPretrainConfig,
                 gen: torch.Generator) -> torch.Tensor:
    """Zero random time and frequency bands of each utterance (in place on a copy)."""
    feats = feats.clone()
    B, F, _ = feats.shape
    for b in range(B):
        T = int(lens[b])
        for _ in range(cfg.freq_masks):
            w = int(torch.randint(0, cfg.freq_mask_width + 1, (1,), generator=gen))
            f0 = int(torch.randint(0, max(1, F - w), (1,), generator=gen))
            feats[b, f0:f0 + w, :T] = 0.0
        for _ in range(cfg.time_masks):
            w = int(torch.randint(0, min(cfg.time_mask_width, T // 10) + 1, (1,), generator=gen))
            t0 = int(torch.randint(0, max(1, T - w), (1,), generator=gen))
            feats[b, :, t0:t0 + w] = 0.0
    return feats


# ---------------------------------------------------------------------------------------------
# model


def whisper_config(cfg: EncoderPretrainConfig):
    """A WhisperConfig with the encoder of `cfg` and a minimal decoder (1 layer, 8 tokens)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=8, num_mel_bins=cfg.n_mels, d_model=cfg.d_model,
        encoder_layers=cfg.layers, encoder_attention_heads=cfg.heads, encoder_ffn_dim=cfg.ffn_dim,
        decoder_layers=1, decoder_attention_heads=cfg.heads, decoder_ffn_dim=cfg.d_model,
        max_source_positions=1500, max_target_positions=16, dropout=cfg.dropout,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        suppress_tokens=[], begin_suppress_tokens=[], attn_implementation=cfg.attn_implementation,
    )


class CTCModel(nn.Module):
    """WhisperSpeechEncoder + linear CTC head over characters."""

    def __init__(self, encoder: WhisperSpeechEncoder, vocab_size: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_dim, vocab_size)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, n_mels, T) -> log-probs (B, T', V) float32, lens (B,)."""
        hidden, lens = self.encoder(feats, feat_lens)
        return self.head(hidden).float().log_softmax(-1), lens


def ctc_loss(model: CTCModel, feats, feat_lens, targets: list[list[int]]) -> torch.Tensor:
    log_probs, lens = model(feats, feat_lens)
    flat = torch.tensor([t for seq in targets for t in seq], dtype=torch.long)
    target_lens = torch.tensor([len(seq) for seq in targets])
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, lens, target_lens, blank=0,
                                  reduction="sum", zero_infinity=True) / max(1, int(target_lens.sum()))


@torch.no_grad()
def evaluate_cer(model: CTCModel, vocab: CharVocab, utts: list[FeatUtt], cfg: EncoderPretrainConfig,
                 batch_frames: int) -> dict[str, float]:
    """Greedy-CTC character error rate (%) per language (raw characters, spaces included)."""
    import jiwer

    model.eval()
    refs: dict[str, list[str]] = {}
    hyps: dict[str, list[str]] = {}
    batches = make_batches(utts, batch_frames, np.random.default_rng(0))
    for batch in batches:
        feats, lens = load_batch(batch, cfg.n_mels)
        with autocast_context("cpu", cfg.bf16):
            log_probs, out_lens = model(feats, lens)
        best = log_probs.argmax(-1)
        for u, ids, n in zip(batch, best, out_lens):
            refs.setdefault(u.lang, []).append(normalize_chars(u.text))
            hyps.setdefault(u.lang, []).append(vocab.decode_greedy(ids[: int(n)].tolist()))
    model.train()
    return {lang: round(100 * jiwer.cer(refs[lang], hyps[lang]), 2) for lang in sorted(refs)}


# ---------------------------------------------------------------------------------------------
# training


def pretrain_encoder(cfg: EncoderPretrainConfig, train_dirs: list[str | Path], dev_dirs: list[str | Path],
                     out_dir: str | Path) -> dict[str, float]:
    """Train the CTC encoder on `train_dirs`, save the Whisper checkpoint dir; returns dev CER per language."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    cfg = replace(cfg, bf16=use_bf16(cfg.bf16, "cpu"))  # fp32 where bf16 is emulated
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    train = collect_utts(train_dirs)
    dev = collect_utts(dev_dirs)
    per_lang: dict[str, list[FeatUtt]] = {}
    for u in dev:
        per_lang.setdefault(u.lang, []).append(u)
    dev = [u for lang in sorted(per_lang) for u in per_lang[lang][: cfg.eval_max_utts_per_lang]]
    vocab = CharVocab.from_texts(u.text for u in train)
    logger.info("CTC pretraining on %d utterances (%s), %d characters", len(train),
                " ".join(sorted({u.lang for u in train})), len(vocab) - 1)

    whisper = WhisperModel(whisper_config(cfg))
    model = CTCModel(WhisperSpeechEncoder(whisper.get_encoder()), len(vocab))
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg.steps, cfg.warmup_ratio)
    logger.info("encoder %.2fM parameters", sum(p.numel() for p in model.encoder.parameters()) / 1e6)

    log_rows = ["step\tloss\tlr\telapsed_s"]
    batches: list[list[FeatUtt]] = []
    start, running, n_running = time.time(), 0.0, 0
    model.train()
    for step in range(1, cfg.steps + 1):
        if not batches:
            batches = make_batches(train, cfg.batch_frames, rng)
        batch = batches.pop()
        feats, lens = load_batch(batch, cfg.n_mels)
        feats = spec_augment(feats, lens, cfg, gen)
        targets = [vocab.encode(u.text) for u in batch]
        with autocast_context("cpu", cfg.bf16):
            loss = ctc_loss(model, feats, lens, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: CTC loss is {loss.item()} (batch starts with {batch[0].utt})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        running += loss.item()
        n_running += 1
        if step % cfg.log_interval == 0 or step == cfg.steps:
            elapsed = time.time() - start
            lr = scheduler.get_last_lr()[0]
            logger.info("step %d/%d  ctc loss %.3f  lr %.2e  %.0f s", step, cfg.steps, running / n_running, lr, elapsed)
            log_rows.append(f"{step}\t{running / n_running:.4f}\t{lr:.3e}\t{elapsed:.1f}")
            running, n_running = 0.0, 0
        if cfg.eval_interval and step % cfg.eval_interval == 0 and step < cfg.steps:
            cer = evaluate_cer(model, vocab, dev, cfg, cfg.batch_frames)
            logger.info("step %d dev greedy-CTC CER (%%): %s", step, "  ".join(f"{k} {v:.1f}" for k, v in cer.items()))

    cer = evaluate_cer(model, vocab, dev, cfg, cfg.batch_frames)
    logger.info("dev greedy-CTC CER (%%): %s", "  ".join(f"{k} {v:.1f}" for k, v in cer.items()))

    # Save a real WhisperModel dir: the trained encoder inside the model object it came from.
    whisper.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=cfg.n_mels).save_pretrained(out_dir)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, out_dir / CTC_HEAD_FILE)
    vocab.save(out_dir / CTC_VOCAB_FILE)
    (out_dir / "train_log.tsv").write_text("\n".join(log_rows) + "\n")
    (out_dir / "dev_cer.json").write_text(json.dumps(cer, indent=1))
    save_config(cfg, out_dir / "pretrain_config.yaml")
    return cer
