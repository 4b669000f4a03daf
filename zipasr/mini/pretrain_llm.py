"""The mini recipe's "pretrained" LLM: a sentencepiece tokenizer and a tiny Qwen3 trained on text.

No pretrained Qwen3 can be downloaded here, so the mini recipe makes one: a sentencepiece tokenizer
(`zipasr.model.tokenizer.build_sentencepiece_tokenizer`) over the LLM text of every language plus
the recognition prompts, then a `Qwen3ForCausalLM` of tiny size trained on two kinds of sequences:

- language modelling:  text ⊕ EOS                          (loss on every token)
- copying:             prompt(l) ⊕ source ⊕ <sep> ⊕ text ⊕ EOS     (loss on text ⊕ EOS only)

The copy sequences have the Speech-LLM's layout, `prompt(l) ⊕ P(E(X)) ⊕ transcript ⊕ EOS`, with the
speech replaced by the text itself and a separator piece (`separator`, "" for none) marking where
the copy starts: the source's pieces are the copy's own, so without it the end of the source is
unknowable. The source is either the text's own tokens or, for a share
`char_copy_ratio`, the text spelled one character piece at a time: a character-rate sequence like
the speech frames of a CTC-trained encoder. A prototype on this CPU found that an LLM which can
already copy makes the Speech-LLM align to the audio, where a plain LM made it ignore the audio.

For a share `frame_copy_ratio` the source is a *frame sequence* (`SequenceMaker.frame_spell`): the
characters at the rate of the projector's output frames, with `<blank>` pieces where the encoder's CTC
head predicts no character, as `zipasr.mini.warm_projector` teaches the projector to produce. These
sequences have no separator (the Speech-LLM's layout: the trailing blanks end the source). The LLM
then reads frame-rate input, which the paper's fixed-stride projector gives, where a character-rate
source (one piece per character, as CTC compression would give) does not match it. The mini recipe
uses it after its copy-only steps; the copy skill forms on token sources first (a 2-layer LLM never
learnt frame copies in the measured runs, a 4-layer one did: egs/mini_multilingual/asr1/NOTES.md, "The LLM's copy skill").

The steps can follow a curriculum: first `lm_only_ratio` of them language modelling only (of
`lm_only_languages`), then `copy_only_ratio` of them copying only (of `copy_only_languages`, token and
character sources), then the mix above.

Output: a checkpoint dir that `zipasr.model.llm.load_llm` (AutoModelForCausalLM + AutoTokenizer)
loads like Qwen3-1.7B, plus `train_log.tsv` (step, loss per kind), `copy_loss_by_language.tsv` (step,
mean copy loss of each language's copy sequences of every kind) and `pretrain_config.yaml`.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zipasr.config import save_config
from zipasr.data.datadir import read_kaldi_map
from zipasr.languages import get_language
from zipasr.model.tokenizer import build_sentencepiece_tokenizer
from zipasr.train.precision import autocast_context, use_bf16
from zipasr.train.schedule import build_scheduler

logger = logging.getLogger(__name__)

IGNORE = -100  # label of tokens without loss (transformers' convention)


@dataclass
class LLMPretrainConfig:
    # sentencepiece target size (unigram); 0: one piece per character of the text (character level:
    # the tiny LLM's teacher-forced copy accuracy reached 35 % in 1500 steps, 8-22 % with 1000-6000 pieces)
    vocab_size: int = 0
    # architecture (Qwen3-1.7B: hidden 2048, 28 layers, 16 heads, 8 KV heads)
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    intermediate_size: int = 768
    max_positions: int = 2048
    # transformers attention kernel (not saved with the checkpoint). eager runs the short copy-only batches
    # 1.1-1.3x faster than sdpa on CPU, the longer mixed ones no faster (bench_speech_llm.py attention); the
    # recipe's measured runs used sdpa (README.md: the eager trial)
    attn_implementation: str = "sdpa"
    # data
    copy_ratio: float = 0.75  # share of copy sequences (the rest: language modelling)
    # the first share of the steps: language modelling only, of these languages ([] = all). The LLM learns
    # the words of the languages Stage 1 hears before it learns to copy (NOTES.md, "Where the errors come from")
    lm_only_ratio: float = 0.0
    lm_only_languages: list[str] = field(default_factory=list)
    copy_only_ratio: float = 0.0  # the next share of the steps trains on copy sequences only (curriculum)
    # languages of those copy-only steps ([] = all). A small alphabet makes the copy skill form: at
    # character level it formed in ~400 steps on en/fr/el/nl and not within 600 on all 13 languages.
    copy_only_languages: list[str] = field(default_factory=list)
    separator: str = "<sep>"  # piece between the source and its copy ("" = none, the Speech-LLM's layout)
    char_copy_ratio: float = 0.5  # share of copy sequences whose source is spelled by characters
    frame_copy_ratio: float = 0.0  # share of copy sequences whose source is a frame sequence (frame_spell)
    blank: str = "<blank>"  # the frame sequences' no-character piece (added to the tokenizer if used)
    # Frame sequences mimic the CTC head's output at 25 Hz (stride-2 projector; measured on the default
    # corpus: 1.63 frames per character, 44 % blank frames, 8 % of the characters merged away).
    frame_drop: float = 0.08  # a character lost (two in one frame)
    frame_gap: float = 0.35  # after each character: a blank with this probability, again and again
    frame_edge: int = 5  # at most this many blanks before and after (silence; at least one)
    # optimisation
    steps: int = 500
    batch_tokens: int = 2048  # padded tokens per batch
    lr: float = 3e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    bf16: bool = True
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # "cuda" on a GPU machine (bf16 autocast on that device)
    log_interval: int = 50
    eval_sentences_per_lang: int = 5  # held out; exact-copy accuracy is measured on them


def read_lm_text(text_dir: str | Path) -> list[tuple[str, str]]:
    """(lang, sentence) pairs from a dir with `text` and `utt2lang` (ids in both must match)."""
    text_dir = Path(text_dir)
    text = read_kaldi_map(text_dir / "text")
    langs = read_kaldi_map(text_dir / "utt2lang")
    missing = sorted(set(text) - set(langs))
    if missing:
        raise KeyError(f"{text_dir}/utt2lang: no language for {len(missing)} sentence(s), e.g. {missing[0]!r}")
    if not text:
        raise ValueError(f"{text_dir}/text is empty")
    return [(langs[k], text[k]) for k in sorted(text)]


class SequenceMaker:
    """Token ids and labels of the LM and copy sequences."""

    def __init__(self, tokenizer, cfg: LLMPretrainConfig):
        self.tok = tokenizer
        self.cfg = cfg
        self.eos = tokenizer.eos_token_id
        self.unk = tokenizer.unk_token_id
        self._prompts: dict[str, list[int]] = {}
        self._chars: dict[str, int] = {}
        # without a marker the model cannot tell where the source ends and the copy starts
        self.sep = [tokenizer.convert_tokens_to_ids(cfg.separator)] if cfg.separator else []
        if self.sep and self.sep[0] == self.unk:
            raise ValueError(f"separator {cfg.separator!r} is not a piece of the tokenizer")
        self.blank = tokenizer.convert_tokens_to_ids(cfg.blank) if cfg.frame_copy_ratio > 0 else None
        if self.blank == self.unk:
            raise ValueError(f"blank {cfg.blank!r} is not a piece of the tokenizer")

    def prompt(self, lang: str) -> list[int]:
        if lang not in self._prompts:
            self._prompts[lang] = self.encode(get_language(lang).prompt)
        return self._prompts[lang]

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def spell(self, text: str) -> list[int]:
        """One piece per character; the space is the word-boundary piece "▁"."""
        ids = []
        for ch in text:
            if ch not in self._chars:
                piece = "▁" if ch == " " else ch
                self._chars[ch] = self.tok.convert_tokens_to_ids(piece)
            ids.append(self._chars[ch])
        return ids

    def frame_spell(self, text: str, rng: np.random.Generator) -> list[int]:
        """The text as a frame sequence: blanks (silence), then each character's piece on one frame
        (dropped with probability frame_drop) followed by blanks (each with probability frame_gap),
        then blanks. A repeated character is always split by a blank, as CTC requires."""
        cfg = self.cfg
        out = [self.blank] * int(rng.integers(1, cfg.frame_edge + 1))
        for piece in self.spell(text):
            if rng.random() < cfg.frame_drop:
                continue
            if out[-1] == piece:
                out.append(self.blank)
            out.append(piece)
            while rng.random() < cfg.frame_gap:
                out.append(self.blank)
        return out + [self.blank] * int(rng.integers(1, cfg.frame_edge + 1))

    def context(self, lang: str, text: str, source: str, rng: np.random.Generator | None = None) -> list[int]:
        """prompt(l) ⊕ source ⊕ separator: what precedes the copy. source: "token" (the text's pieces),
        "char" (spelled) or "frame" (frame_spell, drawn with `rng`; no separator)."""
        if source == "frame":
            return self.prompt(lang) + self.frame_spell(text, rng or np.random.default_rng(0))
        return self.prompt(lang) + (self.spell(text) if source == "char" else self.encode(text)) + self.sep

    def make(self, lang: str, text: str, rng: np.random.Generator, copy_ratio: float | None = None,
             frame_copy_ratio: float | None = None) -> tuple[list[int], list[int], str]:
        """(input ids, labels, kind) of one sequence; kind is "lm", "copy", "char_copy" or "frame_copy".
        copy_ratio, frame_copy_ratio: override the config's."""
        ids = self.encode(text)
        if rng.random() >= (self.cfg.copy_ratio if copy_ratio is None else copy_ratio):
            return ids + [self.eos], ids + [self.eos], "lm"
        u = rng.random()
        frame = self.cfg.frame_copy_ratio if frame_copy_ratio is None else frame_copy_ratio
        source = "frame" if u < frame else "char" if u < frame + self.cfg.char_copy_ratio else "token"
        context = self.context(lang, text, source, rng)
        kind = {"token": "copy", "char": "char_copy", "frame": "frame_copy"}[source]
        return context + ids + [self.eos], [IGNORE] * len(context) + ids + [self.eos], kind


def qwen3_config(cfg: LLMPretrainConfig, tokenizer):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        attn_implementation=cfg.attn_implementation,
    )


def pad_batch(seqs: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids (B, L), attention_mask (B, L), labels (B, L)), right-padded."""
    L = max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), L), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, (ids, lab) in enumerate(seqs):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return input_ids, mask, labels


def per_kind_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row: logits (B, L, V), labels (B, L) -> (B,)."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    nll = nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE,
                                      reduction="none")  # (B, L-1)
    counts = (shift_labels != IGNORE).sum(1).clamp(min=1)
    return nll.sum(1) / counts


def character_vocab_size(texts: list[str], symbols: list[str]) -> int:
    """Vocabulary size that makes a unigram sentencepiece model character level: one piece per
    character, plus "▁" (the space), <pad>, <unk>, </s> and the user symbols (separator, blank)."""
    chars = set("".join(texts)) - {" "}
    return len(chars) + 4 + len(symbols)


def pretrain_llm(cfg: LLMPretrainConfig, text_dir: str | Path, out_dir: str | Path,
                 languages: list[str] | None = None) -> dict[str, float]:
    """Build the tokenizer and train the tiny Qwen3 on the sentences of `text_dir`; save to `out_dir`.

    languages: the languages whose prompts the tokenizer must cover (default: those of the text).
    Returns the final mean loss per sequence kind and the held-out exact-copy accuracies.
    """
    from transformers import Qwen3ForCausalLM

    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    cfg = replace(cfg, bf16=use_bf16(cfg.bf16, cfg.device))  # fp32 where bf16 is emulated
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)

    pairs = read_lm_text(text_dir)
    langs = languages or sorted({lang for lang, _ in pairs})
    # a few sentences per language are held out to measure the copy skill at the end
    held_out, seen = [], {}
    for pair in pairs:
        seen[pair[0]] = seen.get(pair[0], 0) + 1
        if seen[pair[0]] <= cfg.eval_sentences_per_lang:
            held_out.append(pair)
    held = set(held_out)
    pairs = [p for p in pairs if p not in held]
    prompts = [get_language(lang).prompt for lang in langs]
    texts = [s for _, s in pairs] + prompts
    if cfg.frame_copy_ratio + cfg.char_copy_ratio > 1:
        raise ValueError("frame_copy_ratio + char_copy_ratio must be at most 1")
    if cfg.lm_only_ratio + cfg.copy_only_ratio > 1:
        raise ValueError("lm_only_ratio + copy_only_ratio must be at most 1")
    symbols = ([cfg.separator] if cfg.separator else []) + ([cfg.blank] if cfg.frame_copy_ratio > 0 else [])
    vocab_size = cfg.vocab_size or character_vocab_size(texts, symbols)
    tokenizer = build_sentencepiece_tokenizer(texts, out_dir, vocab_size, user_symbols=symbols)
    maker = SequenceMaker(tokenizer, cfg)
    chars = set().union(*(set(s) for _, s in pairs))
    unk_chars = sorted(ch for ch in chars if maker.spell(ch)[0] == maker.unk)
    if unk_chars:
        raise ValueError(f"characters without a tokenizer piece: {''.join(unk_chars[:20])!r}")

    model = Qwen3ForCausalLM(qwen3_config(cfg, tokenizer)).to(cfg.device)
    logger.info("tiny Qwen3: %.2fM parameters, vocabulary %d, %d sentences of %s", 
                sum(p.numel() for p in model.parameters()) / 1e6, len(tokenizer), len(pairs), " ".join(langs))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg.steps, cfg.warmup_ratio)

    kinds = ["lm", "copy", "char_copy", "frame_copy"]
    log_rows = ["step\t" + "\t".join(f"loss_{k}" for k in kinds) + "\tlr\telapsed_s"]
    sums = {k: [0.0, 0] for k in kinds}
    # Per language too: after the copy-only steps the copy loss rises; this tells whether it is the
    # languages that the copy-only steps did not train or a loss of the skill on those they did.
    log_langs = list(dict.fromkeys([*langs, *sorted({lang for lang, _ in pairs})]))
    lang_rows = ["step\t" + "\t".join(log_langs)]
    lang_sums = {lang: [0.0, 0] for lang in log_langs}
    last: dict[str, float] = {}
    start = time.time()
    model.train()
    lm_only_steps = round(cfg.lm_only_ratio * cfg.steps)
    copy_only_steps = lm_only_steps + round(cfg.copy_only_ratio * cfg.steps)
    lm_only_pairs = [p for p in pairs if p[0] in cfg.lm_only_languages] if cfg.lm_only_languages else pairs
    if not lm_only_pairs:
        raise ValueError(f"lm_only_languages {cfg.lm_only_languages}: no sentence of these languages in {text_dir}")
    copy_only_pairs = [p for p in pairs if p[0] in cfg.copy_only_languages] if cfg.copy_only_languages else pairs
    if not copy_only_pairs:
        raise ValueError(f"copy_only_languages {cfg.copy_only_languages}: no sentence of these languages in {text_dir}")
    for step in range(1, cfg.steps + 1):
        seqs, kinds_of, langs_of, n_tokens, longest = [], [], [], 0, 0
        # the copy-only steps copy plain sources (the copy skill forms there; frame sources slowed it)
        copy_only = lm_only_steps < step <= copy_only_steps
        copy_ratio, pool = (1.0, copy_only_pairs) if copy_only else (cfg.copy_ratio, pairs)
        if step <= lm_only_steps:
            copy_ratio, pool = 0.0, lm_only_pairs
        while True:
            lang, text = pool[int(rng.integers(len(pool)))]
            ids, labels, kind = maker.make(lang, text, rng, copy_ratio, 0.0 if copy_only else None)
            longest = max(longest, len(ids))
            if seqs and longest * (len(seqs) + 1) > cfg.batch_tokens:
                break
            seqs.append((ids, labels))
            kinds_of.append(kind)
            langs_of.append(lang)
        input_ids, mask, labels = (t.to(cfg.device) for t in pad_batch(seqs, tokenizer.pad_token_id))
        with autocast_context(cfg.device, cfg.bf16):
            logits = model(input_ids=input_ids, attention_mask=mask).logits
        row_loss = per_kind_loss(logits, labels)
        loss = row_loss.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        for kind, lang, value in zip(kinds_of, langs_of, row_loss.detach().tolist()):
            sums[kind][0] += value
            sums[kind][1] += 1
            if kind != "lm":
                lang_sums[lang][0] += value
                lang_sums[lang][1] += 1
        if step % cfg.log_interval == 0 or step == cfg.steps:
            last = {k: s / n for k, (s, n) in sums.items() if n}
            elapsed = time.time() - start
            logger.info("step %d/%d  %s  lr %.2e  %.0f s", step, cfg.steps,
                        "  ".join(f"{k} {v:.3f}" for k, v in last.items()), scheduler.get_last_lr()[0], elapsed)
            log_rows.append(f"{step}\t" + "\t".join(f"{last.get(k, float('nan')):.4f}" for k in kinds)
                            + f"\t{scheduler.get_last_lr()[0]:.3e}\t{elapsed:.1f}")
            sums = {k: [0.0, 0] for k in kinds}
            lang_rows.append(f"{step}\t" + "\t".join(f"{s / n:.4f}" if n else "nan" for s, n in lang_sums.values()))
            lang_sums = {lang: [0.0, 0] for lang in log_langs}

    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.cpu().save_pretrained(out_dir)
    model.to(cfg.device)
    accuracy = {}
    sources = {"copy": "token", "char_copy": "char"}
    if cfg.frame_copy_ratio > 0:
        sources["frame_copy"] = "frame"
    for kind, source in sources.items():
        accuracy[kind] = copy_accuracy(model, tokenizer, held_out, cfg, source)
        accuracy[f"{kind}_tokens"] = copy_token_accuracy(model, tokenizer, held_out, cfg, source)
        logger.info("held-out copy from %s sources (%d sentences): exact %.2f, token accuracy %.3f",
                    source, len(held_out), accuracy[kind], accuracy[f"{kind}_tokens"])
    (out_dir / "copy_accuracy.json").write_text(json.dumps(accuracy, indent=1))
    (out_dir / "train_log.tsv").write_text("\n".join(log_rows) + "\n")
    (out_dir / "copy_loss_by_language.tsv").write_text("\n".join(lang_rows) + "\n")
    save_config(cfg, out_dir / "pretrain_config.yaml")
    return {**{f"loss_{k}": v for k, v in last.items()}, **{f"accuracy_{k}": v for k, v in accuracy.items()}}


@torch.no_grad()
def copy_accuracy(model, tokenizer, pairs: list[tuple[str, str]], cfg: LLMPretrainConfig, source: str) -> float:
    """Share of sentences the LLM copies exactly with greedy decoding (a check of the copy skill)."""
    maker = SequenceMaker(tokenizer, cfg)
    model.eval()
    hits = 0
    rng = np.random.default_rng(0)
    for lang, text in pairs:
        context = torch.tensor([maker.context(lang, text, source, rng)], device=model.device)
        out = model.generate(input_ids=context, attention_mask=torch.ones_like(context), do_sample=False,
                             max_new_tokens=len(maker.encode(text)) + 4)
        hits += tokenizer.decode(out[0, context.shape[1]:], skip_special_tokens=True).strip() == text
    return hits / max(1, len(pairs))


@torch.no_grad()
def copy_token_accuracy(model, tokenizer, pairs: list[tuple[str, str]], cfg: LLMPretrainConfig,
                        source: str, batch_size: int = 32) -> float:
    """Share of copy tokens (text ⊕ EOS) the LLM predicts right given the true prefix (teacher forcing)."""
    maker = SequenceMaker(tokenizer, cfg)
    model.eval()
    right = total = 0
    rng = np.random.default_rng(0)
    for i in range(0, len(pairs), batch_size):
        seqs = []
        for lang, text in pairs[i:i + batch_size]:
            context, ids = maker.context(lang, text, source, rng), maker.encode(text) + [maker.eos]
            seqs.append((context + ids, [IGNORE] * len(context) + ids))
        input_ids, mask, labels = (t.to(model.device) for t in pad_batch(seqs, tokenizer.pad_token_id))
        pred = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].argmax(-1)  # (B, L-1)
        target = labels[:, 1:]
        right += ((pred == target) & (target != IGNORE)).sum().item()
        total += (target != IGNORE).sum().item()
    return right / max(1, total)
