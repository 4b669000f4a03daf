"""Projector warm start: teach the fresh projector to write what the mini LLM already reads.

The mini recipe's Stage 1 from a random projector never aligned to the audio in its budget: the LLM
learnt the text alone. But its parts already know the two halves of the job: the CTC-pretrained
encoder (`zipasr.mini.pretrain_encoder`) says which character each 50 Hz frame holds, and the LLM
(`zipasr.mini.pretrain_llm`, `frame_copy_ratio`) copies text given as a *frame sequence*: one piece per
projector frame, `<blank>` where there is no character. So before Stage 1 the projector alone (encoder
and LLM frozen) regresses its output frames onto the LLM input embedding of that frame sequence:

    window t of the projector (frames t*s .. t*s+s-1 of the encoder, s = projector stride):
        label(t)  = the first frame's CTC argmax in the window that is not blank, else blank
        target(t) = E_llm[piece(label(t))]        (E_llm: the LLM's input embeddings)
    loss = mean squared error over the valid windows, (B, S', d_llm)
           (+ ce_weight * cross-entropy of the dot products with E_llm against the target piece)

With the `ctc_compress` projector (not the paper's) the outputs are a begin vector, one vector per CTC
segment and an end vector: target = E_llm[piece(segment label)], E_llm["▁"] for the begin and
E_llm[separator] for the end vector, i.e. the `▁ characters <sep>` source of the LLM's token-copy
pretraining; with `label_embeddings` (default) the projector starts from exactly those embeddings (the
MLP adds a residual, trained here).

The result is a SpeechLLM checkpoint dir holding the projector only (speech_llm.json, parts
["projector"]), which Stage 1 loads with `model.init_from`. Stage 1 then trains as in the paper.
This is a mini-recipe aid, not part of the paper (its Whisper and Qwen3 need none). The mini recipe
runs it in its stage 6 before Stage 1: with it (and an LLM pretrained with frame copies) Stage 1
aligned to the audio, without it the Speech-LLM learnt the text alone (egs/mini_multilingual/asr1/NOTES.md, "Stage 1 alignment").
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zipasr.mini.pretrain_encoder import CharVocab, collect_utts, load_batch, make_batches
from zipasr.model.ctc import CTC_VOCAB_FILE
from zipasr.model.encoder import WhisperSpeechEncoder, lengths_to_mask
from zipasr.model.llm import load_llm
from zipasr.model.projector import CTCCompressProjector, build_projector
from zipasr.model.speech_llm import META_FILE, PROJECTOR_FILE, ModelConfig
from zipasr.train.precision import autocast_context, use_bf16
from zipasr.train.schedule import build_scheduler

logger = logging.getLogger(__name__)


@dataclass
class WarmProjectorConfig:
    steps: int = 300
    batch_frames: int = 16000  # mel frames per batch (~64 utterances of 2.5 s)
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    blank: str = "<blank>"  # the LLM's no-character piece (LLMPretrainConfig.blank)
    separator: str = "<sep>"  # the piece that ends a copy source (LLMPretrainConfig.separator; ctc_compress)
    word_boundary: str = "▁"  # the piece a sentencepiece text starts with (ctc_compress's begin vector)
    # ctc_compress: start from the LLM's exact embedding of each CTC label's character (and of the word
    # boundary and the separator for the begin and end vectors), the MLP adding a residual
    # (CTCCompressProjector.set_label_embeddings)
    label_embeddings: bool = True
    # weight of a cross-entropy term on the dot products with the LLM embeddings (the tied LM head's
    # scores): it trains the nearest-piece choice itself (0: MSE alone; measured on the mini recipe: 63 %
    # of the windows nearest to their piece with MSE alone, 96 % with this term, and a lower Stage-1 loss)
    ce_weight: float = 1.0
    bf16: bool = True
    seed: int = 0
    threads: int = 2
    log_interval: int = 25


def piece_table(vocab: CharVocab, tokenizer, blank: str) -> torch.Tensor:
    """(V_ctc,) LLM piece id of each CTC label: 0 (blank) -> `blank`, a character -> its piece
    (the space -> "▁"). Raises if the LLM lacks the blank or a character."""
    blank_id = tokenizer.convert_tokens_to_ids(blank)
    if blank_id == tokenizer.unk_token_id:
        raise ValueError(f"the LLM has no {blank!r} piece: pretrain it with frame_copy_ratio > 0 "
                         "(zipasr.mini.pretrain_llm)")
    ids = [blank_id]
    for ch in vocab.chars:
        piece = tokenizer.convert_tokens_to_ids("▁" if ch == " " else ch)
        if piece == tokenizer.unk_token_id:
            raise ValueError(f"the encoder's CTC character {ch!r} has no piece in the LLM's tokenizer")
        ids.append(piece)
    return torch.tensor(ids)


def window_labels(labels: torch.Tensor, stride: int) -> torch.Tensor:
    """Frame labels (B, S) (0 = blank) -> (B, ceil(S/stride)): per window of `stride` frames, the first
    non-blank label, else 0."""
    B, S = labels.shape
    x = nn.functional.pad(labels, (0, (-S) % stride)).view(B, -1, stride)  # (B, S', stride)
    first = (x != 0).int().argmax(-1, keepdim=True)  # index of the first non-blank (0 if none)
    return x.gather(-1, first).squeeze(-1)


def warm_projector(cfg: WarmProjectorConfig, model_cfg: ModelConfig, train_dirs: list[str | Path],
                   out_dir: str | Path) -> dict[str, float]:
    """Train the projector of `model_cfg` (encoder and LLM frozen, from its encoder_dir/llm_dir) on
    `train_dirs`; write the projector-only SpeechLLM checkpoint to `out_dir`. Returns the final loss and
    the share of windows whose output is nearest (dot product, as the tied LM head scores) to its target
    piece's embedding."""
    torch.manual_seed(cfg.seed)
    cfg = replace(cfg, bf16=use_bf16(cfg.bf16, "cpu"))  # fp32 where bf16 is emulated
    torch.set_num_threads(cfg.threads)
    encoder_dir = Path(model_cfg.encoder_dir)
    for name in ("ctc_head.safetensors", "ctc_vocab.json"):
        if not (encoder_dir / name).is_file():
            raise FileNotFoundError(f"{encoder_dir / name} not found: the warm start needs the CTC head of "
                                    "zipasr.mini.pretrain_encoder")
    encoder = WhisperSpeechEncoder.from_pretrained(encoder_dir, attn_implementation=model_cfg.attn_implementation).eval()
    vocab = CharVocab.load(encoder_dir / CTC_VOCAB_FILE)
    head = nn.Linear(encoder.output_dim, len(vocab))
    head.load_state_dict(load_file(str(encoder_dir / "ctc_head.safetensors")))
    llm, tokenizer = load_llm(model_cfg.llm_dir, attn_implementation=model_cfg.attn_implementation)
    table = llm.get_input_embeddings().weight.detach().float()  # (V_llm, d_llm)
    pieces = piece_table(vocab, tokenizer, cfg.blank)
    del llm
    projector = build_projector(model_cfg.projector, encoder.output_dim, table.shape[1],
                                model_cfg.projector_hidden, model_cfg.projector_stride, encoder_dir=encoder_dir)
    stride = model_cfg.projector_stride
    compress = isinstance(projector, CTCCompressProjector)
    if compress:
        sep_id, begin_id = (tokenizer.convert_tokens_to_ids(p) for p in (cfg.separator, cfg.word_boundary))
        for piece, piece_id in ((cfg.separator, sep_id), (cfg.word_boundary, begin_id)):
            if piece_id == tokenizer.unk_token_id:
                raise ValueError(f"the LLM has no {piece!r} piece (LLMPretrainConfig.separator; sentencepiece's word boundary)")
        if cfg.label_embeddings:
            projector.set_label_embeddings(table[pieces], table[begin_id], table[sep_id])

    utts = collect_utts(train_dirs)
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=cfg.lr, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, cfg.steps, cfg.warmup_ratio)
    logger.info("projector warm start: %d utterances, %s, %d steps", len(utts),
                "one output per CTC segment" if compress else f"stride {stride}", cfg.steps)
    batches: list = []
    loss_sum = hit_sum = count = 0.0
    start, result = time.time(), {}
    for step in range(1, cfg.steps + 1):
        if not batches:
            batches = make_batches(utts, cfg.batch_frames, rng)
        feats, lens = load_batch(batches.pop(), encoder.n_mels)
        with torch.no_grad(), autocast_context("cpu", cfg.bf16):
            hidden, hid_lens = encoder(feats, lens)  # (B, S, d_enc) at 50 Hz
            labels = None if compress else head(hidden).argmax(-1)  # (B, S) frame labels (gated only)
        if compress:  # one target per CTC segment; the word boundary and the separator around them
            seg_labels, _ = projector.output_labels(hidden.float(), hid_lens)  # (B, N+2)
            target_ids = torch.where(seg_labels == projector.BEGIN, begin_id,
                                     torch.where(seg_labels == projector.END, sep_id, pieces[seg_labels.clamp(min=0)]))
        else:
            target_ids = pieces[window_labels(labels, stride)]  # (B, S')
        with autocast_context("cpu", cfg.bf16):
            out, out_lens = projector(hidden.float(), hid_lens)  # (B, S', d_llm)
        mask = lengths_to_mask(out_lens, out.shape[1])  # (B, S')
        out = out.float()[mask]
        targets = target_ids[mask]
        scores = out @ table.T  # (N, V_llm): what the tied LM head would score
        loss = nn.functional.mse_loss(out, table[targets])
        if cfg.ce_weight > 0:
            loss = loss + cfg.ce_weight * nn.functional.cross_entropy(scores, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            hits = (scores.argmax(-1) == targets).float().mean().item()
        loss_sum, hit_sum, count = loss_sum + loss.item(), hit_sum + hits, count + 1
        if step % cfg.log_interval == 0 or step == cfg.steps:
            result = {"loss": loss_sum / count, "nearest_piece_accuracy": hit_sum / count}
            logger.info("step %d/%d  loss %.4f  nearest piece = target %.3f  lr %.2e  %.0f s", step, cfg.steps,
                        result["loss"], result["nearest_piece_accuracy"], scheduler.get_last_lr()[0],
                        time.time() - start)
            loss_sum = hit_sum = count = 0.0

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")  # written whole, then renamed: never half a checkpoint
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a run killed while saving
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in projector.state_dict().items()}, str(tmp / PROJECTOR_FILE))
    meta = {"languages": list(model_cfg.languages), "parts": ["projector"], "projector": type(projector).__name__,
            "warm_start": result}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    logger.info("warm-started projector saved in %s", out_dir)
    return result
