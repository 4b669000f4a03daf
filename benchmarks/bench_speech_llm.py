"""Speed of the Speech-LLM at the mini recipe's model size: training step, throughput, decoding, packing.

Sub-commands (each prints its numbers side by side in one run):

  step        Stage-2 step time (forward + backward + AdamW step, bf16 autocast as the trainer runs it) of
              every encoder-adapter method as a ratio to Vanilla-LoRA, on the same model and batch. Methods
              run interleaved (round robin) and the median of the rounds is taken. Goal: Zipper <= 1.05x.
  throughput  Stage-2 training throughput (LLM tokens/s, target tokens/s, audio s/s) over the batches of
              an epoch, and model-FLOPs utilisation (MFU) against an assumed peak of this CPU.
  decode      greedy decoding of 16 utterances as one batch vs one at a time (goal >= 4x), and the
              real-time factor (decode time / audio seconds).
  beam        lexicon-constrained beam search (beam 8, 32 utterances, as conf/decode.yaml without the CTC head)
              by zipasr's path (SpeechLLM's BeamSearchCacheLayer, LexiconConstraint.processor) against
              transformers' own (its DynamicLayer cache, PrefixConstrainedLogitsProcessor with the same
              trie); interleaved rounds, median, ratio transformers / zipasr; the hypotheses must be equal.
  attention   transformers' sdpa vs eager attention kernel on the mini recipe's four CPU workloads: the
              encoder's CTC pretraining step, the LLM's text pretraining step, a Stage-2 step and batched
              greedy decoding; interleaved rounds, median, ratio sdpa / eager (> 1: eager is faster).
  jobs        one process with 2 threads against two processes with 1 thread each, side by side, on a
              Stage-2 training step and on batched greedy decoding: the work done per second by the pair
              as a ratio to the single process (> 1: the recipe's `--jobs 2` pays; interleaved rounds).
  grouping    the encoder's length grouping (zipasr.model.encoder) off vs on, on the same model: Stage-2 steps
              over distinct batches of the trainer's order, and batched greedy decoding; interleaved rounds,
              median, ratio off / on (> 1: grouping is faster), and the mel frames each encodes.
  packing     share of real (non-pad) LLM tokens in a Stage-2 epoch, with pack_rows + BatchOrder exactly
              as the trainer batches (goal >= 95 %), on the mini recipe's length distribution or a
              Kaldi data dir.

The models are built here, with random weights, at the mini recipe's size (zipasr.mini's
EncoderPretrainConfig / LLMPretrainConfig defaults = conf/pretrain_{encoder,llm}.yaml: Whisper encoder
80 mels d=256 4 layers, Qwen3 hidden 256 4 layers), with a SentencePiece tokenizer trained on sentences of
the corpus languages. Adapters, LLM LoRA, batch size and row budget come from the recipe's
conf/train_stage2_<method>.yaml; the utterance mix (12 target languages, 2000 vs 60 utterances) from its
conf/corpus.yaml. Speech features are random; their lengths follow the synthetic corpus (see
`synthetic_frames`).

    python benchmarks/bench_speech_llm.py step --threads 1 --clock cpu
    python benchmarks/bench_speech_llm.py throughput --threads 1
    python benchmarks/bench_speech_llm.py decode --threads 1
    python benchmarks/bench_speech_llm.py beam --threads 1 --clock cpu
    python benchmarks/bench_speech_llm.py attention --threads 2
    python benchmarks/bench_speech_llm.py jobs
    python benchmarks/bench_speech_llm.py grouping --threads 1 --clock cpu
    python benchmarks/bench_speech_llm.py packing [--data_dir DIR --tokenizer_dir DIR]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from zipasr.adapters import ADAPTERS
from zipasr.config import load_config
from zipasr.languages import get_language
from zipasr.mini.pretrain_encoder import EncoderPretrainConfig, whisper_config
from zipasr.mini.pretrain_llm import LLMPretrainConfig, qwen3_config
from zipasr.mini.synth import CorpusConfig
from zipasr.mini.text import SentenceSampler
from zipasr.model.speech_llm import SpeechBatch, SpeechLLM
from zipasr.train.config import load_experiment_config
from zipasr.train.dataset import speech_tokens
from zipasr.train.packing import BatchOrder
from zipasr.train.precision import autocast_context, bf16_available
from zipasr.train.trainer import param_groups

RECIPE = Path(__file__).resolve().parent.parent / "egs" / "mini_multilingual" / "asr1"
METHODS = list(ADAPTERS)
GOALS = {"zipper_step": 1.05, "decode_speedup": 4.0, "packing": 0.95}
# Measured on this CPU class (docs environment.md): a small transformer's fwd+bwd reaches ~180 GFLOP/s fp32
# and ~430 GFLOP/s with bf16 autocast on 2 threads. Used as the "peak" of MFU, per thread.
PEAK_GFLOPS_PER_THREAD = {"bf16": 215.0, "fp32": 90.0}
# Model sizes: "mini" is the recipe's (conf/pretrain_{encoder,llm}.yaml = these configs' defaults); "test" is a
# toy size for the smoke test only. Value: (encoder, LLM, tokenizer sentences per language).
SIZES = {
    "mini": (EncoderPretrainConfig(), LLMPretrainConfig(), 400),
    "test": (EncoderPretrainConfig(d_model=64, layers=1, heads=2, ffn_dim=128),
             LLMPretrainConfig(vocab_size=1000, hidden_size=64, layers=1, heads=2, kv_heads=1, head_dim=32,
                               intermediate_size=128), 40),
}


# --------------------------------------------------------------------------- workload
@dataclass
class Utt:
    lang: str
    text_ids: list[int]
    n_frames: int


def synthetic_frames(text: str, rng: np.random.Generator) -> int:
    """Mel frames (100/s) of an espeak-ng rendering of `text`: ~5 frames per character at a random speaking
    rate (the default-size synthesised corpus has 4.9 +- 1.4 frames per byte of text, median 179 frames,
    p10/p90 98/287, max 517) plus leading/trailing silence."""
    return int(10 + len(text) * rng.uniform(3.5, 6.5))


def corpus_mix(scale: float) -> dict[str, int]:
    """Utterances per language of the recipe's Stage-2 training set (conf/corpus.yaml), times `scale`."""
    corpus = load_config(CorpusConfig, RECIPE / "conf" / "corpus.yaml")
    (target,) = [s for s in corpus.sets if s.name == "train_target"]
    return {lang: max(1, round(n * scale)) for lang, n in target.utts_per_lang.items()}


def synthetic_utterances(tokenizer, mix: dict[str, int], seed: int = 0) -> list[Utt]:
    """Random sentences of the corpus's word lists (3-8 words), tokenised, with synthetic lengths."""
    rng = np.random.default_rng(seed)
    utts = []
    for lang, n in mix.items():
        sampler = SentenceSampler(lang, 1500, 3, 8, rng)
        texts = sampler.sample_many(n)
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        utts += [Utt(lang, t, synthetic_frames(text, rng)) for text, t in zip(texts, ids)]
    return utts


def build_tokenizer(languages: list[str], out_dir: Path, vocab_size: int, sentences: int = 400):
    """A SentencePiece tokenizer (as the mini recipe's pretrain_llm builds one) on sentences of `languages`."""
    from zipasr.mini.pretrain_llm import character_vocab_size
    from zipasr.model.tokenizer import build_sentencepiece_tokenizer

    rng = np.random.default_rng(1)
    texts = [get_language(code).prompt for code in languages]
    for code in languages:
        texts += SentenceSampler(code, 1500, 3, 8, rng).sample_many(sentences)
    # vocab_size 0: character level, as the mini recipe's default (zipasr.mini.pretrain_llm)
    return build_sentencepiece_tokenizer(texts, out_dir, vocab_size=vocab_size or character_vocab_size(texts, []))


def stage2_config(method: str):
    """The recipe's Stage-2 experiment config of `method`."""
    return load_experiment_config(RECIPE / "conf" / f"train_stage2_{method}.yaml")


def build_model(method: str, tokenizer, languages: list[str], lid_file: Path, size: str = "mini") -> SpeechLLM:
    """A Stage-2 SpeechLLM of SIZES[size] with random weights (same seed: same base weights for every
    method) and the encoder adapter of the recipe's conf/train_stage2_<method>.yaml."""
    from transformers import Qwen3ForCausalLM, WhisperModel

    from zipasr.model.encoder import WhisperSpeechEncoder
    from zipasr.model.projector import build_projector

    cfg = stage2_config(method).model
    torch.manual_seed(0)
    enc_cfg, llm_cfg, _ = SIZES[size]
    encoder = WhisperSpeechEncoder(WhisperModel(whisper_config(enc_cfg)).get_encoder(),
                                   length_grouping=cfg.encoder_length_grouping)
    llm = Qwen3ForCausalLM(qwen3_config(llm_cfg, tokenizer))
    projector = build_projector(cfg.projector, encoder.output_dim, llm.config.hidden_size, cfg.projector_hidden)
    model = SpeechLLM(encoder, projector, llm, tokenizer, languages, regime=cfg.regime)
    model.insert_llm_lora(cfg.llm_lora)
    adapter = cfg.encoder_adapter
    adapter.lid_source, adapter.lid_file = "file", str(lid_file)
    model.insert_encoder_adapters(adapter)
    model.set_stage(2)
    return model


def write_lid_file(languages: list[str], d: int, path: Path) -> Path:
    """Random LID table e(l) (L, d) for the routers (the recipe computes acoustic ones)."""
    from zipasr.model.lid import save_lid_embeddings

    return save_lid_embeddings(torch.randn(len(languages), d, generator=torch.Generator().manual_seed(2)),
                               languages, path, source="file")


def make_batch(utts: list[Utt], rows: list[list[int]], languages: list[str], n_mels: int,
               seed: int = 0) -> SpeechBatch:
    """Rows of utterance indices -> SpeechBatch with random features (as SpeechDataset.collate lays it out)."""
    order = [i for row in rows for i in row]
    lens = torch.tensor([utts[i].n_frames for i in order])
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(order), n_mels, int(lens.max()), generator=gen)
    feats *= (torch.arange(feats.shape[-1]) < lens[:, None])[:, None, :]
    flat, start = [], 0
    for row in rows:
        flat.append(list(range(start, start + len(row))))
        start += len(row)
    lang_ids = torch.tensor([languages.index(utts[i].lang) for i in order])
    return SpeechBatch(feats, lens, lang_ids, [list(utts[i].text_ids) for i in order], flat)


def packed_lengths(utts: list[Utt], prompt_tokens: int) -> list[int]:
    """As SpeechDataset.packed_lengths: speech tokens + transcript + EOS + reserved prompt tokens."""
    return [speech_tokens(u.n_frames) + len(u.text_ids) + 1 + prompt_tokens for u in utts]


class Setup:
    """Tokenizer, LID table, utterances and the trainer's batch order, shared by the sub-commands."""

    def __init__(self, args, scale: float, work: Path):
        self.size = args.size
        self.enc_cfg, llm_cfg, sentences = SIZES[args.size]
        self.languages = list(corpus_mix(1.0))
        self.tokenizer = build_tokenizer(self.languages, work / "tokenizer", llm_cfg.vocab_size, sentences)
        self.lid_file = write_lid_file(self.languages, self.enc_cfg.d_model, work / "lid.safetensors")
        self.utts = synthetic_utterances(self.tokenizer, corpus_mix(scale))
        cfg = stage2_config("vanilla")
        self.max_tokens, self.batch_size = cfg.data.max_tokens, cfg.batch_size
        self.bf16 = cfg.train.bf16 and not args.fp32 and bf16_available(torch.device("cpu"))
        prompt = max(len(self.tokenizer(get_language(c).prompt, add_special_tokens=False)["input_ids"])
                     for c in self.languages)
        self.order = BatchOrder(packed_lengths(self.utts, prompt), [u.lang for u in self.utts],
                                self.max_tokens, self.batch_size)

    def model(self, method: str) -> SpeechLLM:
        return build_model(method, self.tokenizer, self.languages, self.lid_file, self.size)

    def batch(self, rows, seed=0) -> SpeechBatch:
        return make_batch(self.utts, rows, self.languages, self.enc_cfg.n_mels, seed)


# --------------------------------------------------------------------------- training step
class Stepper:
    """One Stage-2 optimizer step of a model: forward under bf16 autocast, token-mean loss, backward,
    gradient clipping and AdamW (torch's, as the trainer configures DeepSpeed: `torch_adam`)."""

    def __init__(self, model: SpeechLLM, bf16: bool, clock=time.perf_counter):
        cfg = stage2_config("vanilla").optim
        self.clock = clock
        self.phases = (0.0, 0.0)  # (forward + backward, clipping + optimizer) time of the last call
        self.model = model.train()
        self.bf16 = bf16
        self.optim = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=1e-5, betas=tuple(cfg.betas),
                                       eps=cfg.eps)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.grad_clip = cfg.grad_clip

    def __call__(self, batch: SpeechBatch) -> int:
        start = self.clock()
        self.optim.zero_grad(set_to_none=True)
        with autocast_context(torch.device("cpu"), self.bf16):
            out = self.model(batch)
        (out.loss.float() * out.n_tokens).backward()
        middle = self.clock()
        torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optim.step()
        self.phases = (middle - start, self.clock() - middle)
        return out.n_tokens


def cmd_step(args, setup: Setup) -> None:
    batch = setup.batch(setup.order.next())
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    methods = ["vanilla"] + [m for m in args.methods if m != "vanilla"]
    steppers = {m: Stepper(setup.model(m), setup.bf16, clock) for m in methods}
    print(f"Stage-2 step, batch: {len(batch.rows)} rows of <= {setup.max_tokens} tokens, {len(batch.text_ids)} "
          f"utterances, {int(batch.feat_lens.sum())} mel frames (longest {int(batch.feat_lens.max())}); "
          f"{'bf16 autocast' if setup.bf16 else 'fp32'}; median {args.clock} time of {args.iters} interleaved rounds "
          f"after {args.warmup} warm-up")
    times = {m: [] for m in methods}
    phases = {m: [] for m in methods}
    for round_ in range(args.warmup + args.iters):
        for m, step in steppers.items():
            start = clock()
            step(batch)
            if round_ >= args.warmup:
                times[m].append(clock() - start)
                phases[m].append(step.phases)
    base = statistics.median(times["vanilla"])
    base_fb = statistics.median(p[0] for p in phases["vanilla"])
    trainable = {m: sum(p.numel() for p in s.params) for m, s in steppers.items()}
    print(f"{'method':<16}{'step ms':>10}{'/ vanilla':>11}{'fwd+bwd ms':>12}{'/ vanilla':>11}{'optim ms':>10}"
          f"{'trainable':>12}")
    for m in methods:
        t = statistics.median(times[m])
        fb, opt = (statistics.median(p[k] for p in phases[m]) for k in (0, 1))
        print(f"{m:<16}{1000 * t:>10.1f}{t / base:>10.3f}x{1000 * fb:>12.1f}{fb / base_fb:>10.3f}x"
              f"{1000 * opt:>10.1f}{trainable[m]:>12,}")
    print("goals:")
    for m in methods:
        if m.startswith("zipper"):
            ratio = statistics.median(times[m]) / base
            verdict = "met" if ratio <= GOALS["zipper_step"] else "NOT met"
            print(f"  {m} <= {GOALS['zipper_step']}x vanilla  {ratio:.3f}x  {verdict}")


# --------------------------------------------------------------------------- throughput and MFU
def model_flops(model: SpeechLLM, batch: SpeechBatch, speech_lens: list[int]) -> float:
    """Model FLOPs of one training step (forward + backward = 3x forward, the 6N convention), counted from the
    shapes: 2 x parameters x positions for every linear/conv layer (encoder, projector, LLM; the LM head only
    on target positions, as the model runs it) plus attention 4 x len^2 x d_attn per layer (scores and
    values; within each packed sample, which is all the block-diagonal mask lets count)."""
    enc = model.encoder.whisper
    ecfg, lcfg = enc.config, model.llm.config
    d, mels = ecfg.d_model, ecfg.num_mel_bins
    enc_layer = sum(p.numel() for n, p in enc.layers[0].named_parameters() if p.dim() == 2)
    llm_layer = sum(p.numel() for n, p in model.llm.model.layers[0].named_parameters() if p.dim() == 2)
    proj = sum(p.numel() for p in model.projector.parameters() if p.dim() >= 2)
    d_attn = lcfg.num_attention_heads * lcfg.head_dim
    flops = 0.0
    for k, frames in enumerate(batch.feat_lens.tolist()):
        t2 = (frames + 1) // 2
        flops += 2 * 3 * mels * d * frames + 2 * 3 * d * d * t2  # conv1, conv2 (kernel 3)
        flops += ecfg.encoder_layers * (2 * enc_layer * t2 + 4 * t2 * t2 * d)
        flops += 2 * proj * speech_lens[k]
        prompt = len(model.prompt_ids[int(batch.lang_ids[k])])
        n = prompt + speech_lens[k] + len(batch.text_ids[k]) + 1
        flops += lcfg.num_hidden_layers * (2 * llm_layer * n + 4 * n * n * d_attn)
        flops += 2 * lcfg.vocab_size * lcfg.hidden_size * (len(batch.text_ids[k]) + 1)
    return 3 * flops


def counted_flops(step: Stepper, batch: SpeechBatch) -> float:
    """FLOPs torch actually executes in one step (matmuls, convolutions, attention), by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(batch)
    return float(counter.get_total_flops())


def cmd_throughput(args, setup: Setup) -> None:
    step = Stepper(setup.model(args.method), setup.bf16)
    batches = [setup.batch(setup.order.local_rows(b), seed=k) for k, b in enumerate(setup.order.peek(args.steps + 1))]
    step(batches[0])  # warm-up
    llm_tokens = target = frames = 0
    flops = 0.0
    start = time.perf_counter()
    cpu_start = time.process_time()
    for batch in batches[1:]:
        target += step(batch)
        speech = [speech_tokens(n) for n in batch.feat_lens.tolist()]
        llm_tokens += sum(len(step.model.prompt_ids[int(l)]) + s + len(t) + 1
                          for l, s, t in zip(batch.lang_ids, speech, batch.text_ids))
        frames += int(batch.feat_lens.sum())
        flops += model_flops(step.model, batch, speech)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    executed = counted_flops(step, batches[1]) / model_flops(step.model, batches[1],
                                                             [speech_tokens(n) for n in batches[1].feat_lens.tolist()])
    kind = "bf16" if setup.bf16 else "fp32"
    peak = args.peak_gflops or PEAK_GFLOPS_PER_THREAD[kind] * torch.get_num_threads()
    n_params = sum(p.numel() for p in step.model.parameters())
    print(f"Stage-2 training ({args.method}), {args.steps} steps of {setup.batch_size} rows <= {setup.max_tokens} "
          f"tokens, {kind}, {torch.get_num_threads()} thread(s); model {n_params / 1e6:.2f}M parameters, "
          f"{sum(p.numel() for p in step.params) / 1e6:.2f}M trainable")
    print(f"{'':<34}{'wall':>12}{'cpu':>12}")
    print(f"{'step time s':<34}{wall / args.steps:>12.3f}{cpu / args.steps:>12.3f}")
    for name, value in (("LLM tokens/s (real, no pad)", llm_tokens), ("target tokens/s", target),
                        ("audio seconds/s", frames / 100.0)):
        print(f"{name:<34}{value / wall:>12.1f}{value / cpu:>12.1f}")
    print(f"{'model GFLOP/s (6N + attention)':<34}{flops / wall / 1e9:>12.1f}{flops / cpu / 1e9:>12.1f}")
    print(f"{'MFU vs ' + f'{peak:.0f} GFLOP/s ' + kind:<34}{flops / wall / 1e9 / peak:>11.1%}"
          f"{flops / cpu / 1e9 / peak:>12.1%}")
    print(f"executed / model FLOPs (FlopCounterMode, one step): {executed:.2f}")


# --------------------------------------------------------------------------- decoding
def cmd_decode(args, setup: Setup) -> None:
    model = setup.model(args.method).eval()
    rng = np.random.default_rng(3)
    pick = rng.choice(len(setup.utts), size=args.batch, replace=False).tolist()
    batch = setup.batch([[i] for i in pick], seed=4)
    audio = float(batch.feat_lens.sum()) / 100.0
    device = torch.device("cpu")
    # Every hypothesis gets exactly `new_tokens` tokens: a random model rarely emits EOS, a trained one stops
    # after its transcript (mean transcript + EOS of this workload, by default).
    new = args.new_tokens or round(statistics.mean(len(u.text_ids) + 1 for u in setup.utts))
    options = dict(max_new_tokens=new, min_new_tokens=new)

    def run(indices: list[int]) -> None:
        idx = torch.tensor(indices)
        feats = batch.feats[idx][:, :, :int(batch.feat_lens[idx].max())]
        with torch.no_grad(), autocast_context(device, setup.bf16):
            model.generate(feats, batch.feat_lens[idx], batch.lang_ids[idx], **options)

    def batched() -> None:
        run(list(range(args.batch)))

    def single() -> None:
        for k in range(args.batch):
            run([k])

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = {"batched": [], "one at a time": []}
    for round_ in range(args.warmup + args.iters):
        for name, fn in (("batched", batched), ("one at a time", single)):
            start = clock()
            fn()
            if round_ >= args.warmup:
                times[name].append(clock() - start)
    print(f"greedy decoding ({args.method}) of {args.batch} utterances, {audio:.1f} s of audio, {new} new tokens "
          f"each, {'bf16' if setup.bf16 else 'fp32'}, {torch.get_num_threads()} thread(s); median {args.clock} "
          f"time of {args.iters} interleaved rounds after {args.warmup} warm-up")
    print(f"{'':<16}{'time s':>10}{'RTF':>10}{'utt/s':>10}")
    for name, values in times.items():
        t = statistics.median(values)
        print(f"{name:<16}{t:>10.3f}{t / audio:>10.4f}{args.batch / t:>10.1f}")
    speedup = statistics.median(times["one at a time"]) / statistics.median(times["batched"])
    verdict = "met" if speedup >= GOALS["decode_speedup"] else "NOT met"
    print(f"goals:\n  batched >= {GOALS['decode_speedup']}x one at a time  {speedup:.2f}x  {verdict}")


# --------------------------------------------------------------------------- beam search
def cmd_beam(args, setup: Setup) -> None:
    """Beam search with a lexicon, as conf/decode.yaml (beam 8, batch 32; without the CTC head): zipasr's
    decoding path (BeamSearchCacheLayer, LexiconLogitsProcessor) against transformers' own (its
    DynamicLayer cache, PrefixConstrainedLogitsProcessor with the same trie), interleaved rounds; the
    hypotheses must be the same."""
    from transformers import LogitsProcessorList

    import zipasr.model.speech_llm as speech_llm
    from zipasr.mini.text import word_list
    from zipasr.model.lexicon import LexiconConstraint

    model = setup.model(args.method).eval()
    rng = np.random.default_rng(3)
    pick = rng.choice(len(setup.utts), size=args.batch, replace=False).tolist()
    batch = setup.batch([[i] for i in pick], seed=4)
    langs = [setup.languages[int(i)] for i in batch.lang_ids]
    lexicon = {lang: set(word_list(lang, 1500)) for lang in setup.languages}
    constraint = LexiconConstraint.from_tokenizer(lexicon, setup.tokenizer)
    device = torch.device("cpu")
    # A random model rarely emits EOS: every hypothesis gets exactly new_tokens tokens.
    options = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, num_beams=args.beam,
                   length_penalty=0.5)
    cache_layer = speech_llm.BeamSearchCacheLayer

    def ours() -> list[str]:
        speech_llm.BeamSearchCacheLayer = cache_layer
        processor = LogitsProcessorList([constraint.processor(langs, args.beam)])
        with torch.no_grad(), autocast_context(device, setup.bf16):
            return model.generate(batch.feats, batch.feat_lens, batch.lang_ids, logits_processor=processor, **options)

    def theirs() -> list[str]:
        speech_llm.BeamSearchCacheLayer = lambda layer, room: layer  # the prefill's DynamicLayers as they are
        constraint.processor(langs)  # a new batch: forget the previous hypotheses' trie states

        def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:  # as the lexicon did before 2936883
            return constraint.allowed(langs[batch_id], *constraint.state(langs[batch_id], ids.tolist()))

        try:
            with torch.no_grad(), autocast_context(device, setup.bf16):
                return model.generate(batch.feats, batch.feat_lens, batch.lang_ids, prefix_allowed_tokens_fn=allowed,
                                      **options)
        finally:
            speech_llm.BeamSearchCacheLayer = cache_layer

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = {"transformers": [], "zipasr": []}
    hyps = {}
    for round_ in range(args.warmup + args.iters):
        for name, fn in (("transformers", theirs), ("zipasr", ours)):
            start = clock()
            hyps[name] = fn()
            if round_ >= args.warmup:
                times[name].append(clock() - start)
    same = hyps["transformers"] == hyps["zipasr"]
    print(f"beam search ({args.method}) of {args.batch} utterances, beam {args.beam}, lexicon, {args.new_tokens} new "
          f"tokens each, {'bf16' if setup.bf16 else 'fp32'}, {torch.get_num_threads()} thread(s); median "
          f"{args.clock} time of {args.iters} interleaved rounds after {args.warmup} warm-up")
    print("transformers: DynamicLayer cache + PrefixConstrainedLogitsProcessor; "
          "zipasr: BeamSearchCacheLayer + LexiconLogitsProcessor")
    theirs_t, ours_t = (statistics.median(times[n]) for n in ("transformers", "zipasr"))
    print(f"{'transformers s':>16}{'zipasr s':>10}{'ratio':>9}  hypotheses")
    print(f"{theirs_t:>16.3f}{ours_t:>10.3f}{theirs_t / ours_t:>8.3f}x  {'the same' if same else 'DIFFERENT'}")
    if not same:
        raise SystemExit("the two decoding paths gave different hypotheses")


# --------------------------------------------------------------------------- encoder length grouping
def encoded_frames(lens: list[int], grouping: bool) -> int:
    """Mel frames the encoder runs on for a batch of `lens`: padded to the longest, or per length group."""
    from zipasr.model.encoder import length_groups

    groups = length_groups(lens) if grouping and len(lens) > 1 else [list(range(len(lens)))]
    return sum(len(g) * max(lens[i] for i in g) for g in groups)


def cmd_grouping(args, setup: Setup) -> None:
    model = setup.model(args.method)
    step = Stepper(model, setup.bf16, time.process_time if args.clock == "cpu" else time.perf_counter)
    batches = [setup.batch(setup.order.local_rows(b), seed=k) for k, b in enumerate(setup.order.peek(args.batches))]
    rng = np.random.default_rng(3)
    pick = rng.choice(len(setup.utts), size=args.batch, replace=False).tolist()
    decode_batch = setup.batch([[i] for i in pick], seed=4)
    device = torch.device("cpu")

    def train() -> None:
        for batch in batches:
            step(batch)

    def decode() -> None:
        model.eval()
        with torch.no_grad(), autocast_context(device, setup.bf16):
            model.generate(decode_batch.feats, decode_batch.feat_lens, decode_batch.lang_ids, max_new_tokens=4,
                           min_new_tokens=4)
        model.train()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    workloads = {f"Stage-2 step ({args.batches} batches)": train, f"greedy decode ({args.batch} utts)": decode}
    times = {(w, g): [] for w in workloads for g in (False, True)}
    for round_ in range(args.warmup + args.iters):
        for name, fn in workloads.items():
            for grouping in (False, True):
                model.encoder.length_grouping = grouping
                start = clock()
                fn()
                if round_ >= args.warmup:
                    times[name, grouping].append(clock() - start)
    lens = {name: [b.feat_lens.tolist() for b in batches] for name in workloads}
    lens[f"greedy decode ({args.batch} utts)"] = [decode_batch.feat_lens.tolist()]
    print(f"encoder length grouping ({args.method}), {'bf16' if setup.bf16 else 'fp32'}, {torch.get_num_threads()} "
          f"thread(s); median {args.clock} time of {args.iters} interleaved rounds after {args.warmup} warm-up")
    print(f"{'workload':<30}{'real frames':>12}{'padded':>10}{'grouped':>10}{'off s':>9}{'on s':>9}{'off/on':>9}")
    for name in workloads:
        real = sum(sum(b) for b in lens[name])
        padded, grouped = (sum(encoded_frames(b, g) for b in lens[name]) for g in (False, True))
        off, on = (statistics.median(times[name, g]) for g in (False, True))
        print(f"{name:<30}{real:>12}{padded:>10}{grouped:>10}{off:>9.3f}{on:>9.3f}{off / on:>8.3f}x")


# --------------------------------------------------------------------------- job pool
def _jobs_worker(args, threads: int, work: str, commands, results) -> None:
    """A benchmark process: builds the workloads once, then runs `iters` of the one it is sent, until None."""
    torch.set_num_threads(threads)
    setup = Setup(args, args.scale, Path(work))
    model = setup.model(args.method)
    step, batch = Stepper(model, setup.bf16), setup.batch(setup.order.next())
    rng = np.random.default_rng(3)
    pick = rng.choice(len(setup.utts), size=args.batch, replace=False).tolist()
    dec = setup.batch([[i] for i in pick], seed=4)
    new = round(statistics.mean(len(u.text_ids) + 1 for u in setup.utts))

    def decode() -> None:
        model.eval()
        with torch.no_grad(), autocast_context(torch.device("cpu"), setup.bf16):
            model.generate(dec.feats, dec.feat_lens, dec.lang_ids, max_new_tokens=new, min_new_tokens=new)
        model.train()

    workloads = {"Stage-2 step": lambda: step(batch), "decoding": decode}
    for fn in workloads.values():
        fn()  # warm-up (oneDNN kernels, allocator)
    results.put("ready")
    while (name := commands.get()) is not None:
        for _ in range(args.iters):
            workloads[name]()
        results.put(name)


def cmd_jobs(args, work: Path) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = {}
    for name, threads in (("single", args.threads_single), ("pair0", 1), ("pair1", 1)):
        commands, results = ctx.Queue(), ctx.Queue()
        (work / name).mkdir()
        proc = ctx.Process(target=_jobs_worker, args=(args, threads, str(work / name), commands, results), daemon=True)
        proc.start()
        procs[name] = (proc, commands, results)
    for _, _, results in procs.values():
        results.get()

    def timed(names: list[str], workload: str) -> float:
        start = time.perf_counter()
        for n in names:
            procs[n][1].put(workload)
        for n in names:
            procs[n][2].get()
        return time.perf_counter() - start

    print(f"{args.method}: {args.iters} Stage-2 steps / batched greedy decodes of {args.batch} utterances per "
          f"process and round; one process with {args.threads_single} threads vs two processes with 1 thread "
          f"each, side by side; median wall time of {args.rounds} interleaved rounds")
    print(f"{'workload':<14}{'single s':>10}{'pair s':>10}{'pair work / single work per s':>32}")
    for workload in ("Stage-2 step", "decoding"):
        single, pair = [], []
        for _ in range(args.rounds):
            single.append(timed(["single"], workload))
            pair.append(timed(["pair0", "pair1"], workload))
        t1, t2 = statistics.median(single), statistics.median(pair)
        print(f"{workload:<14}{t1:>10.3f}{t2:>10.3f}{2 * t1 / t2:>31.2f}x")
    for proc, commands, _ in procs.values():
        commands.put(None)
        proc.join()


# --------------------------------------------------------------------------- attention kernels
KERNELS = ("sdpa", "eager")


def cmd_attention(args, setup: Setup) -> None:
    from transformers import Qwen3ForCausalLM, WhisperModel

    from zipasr.mini.pretrain_encoder import CTCModel, ctc_loss
    from zipasr.mini.pretrain_llm import pad_batch
    from zipasr.model.encoder import WhisperSpeechEncoder

    enc_cfg, llm_cfg, _ = SIZES[setup.size]
    # batch sizes of the recipe's pretraining configs
    batch_frames = load_config(EncoderPretrainConfig, RECIPE / "conf" / "pretrain_encoder.yaml").batch_frames
    batch_tokens = load_config(LLMPretrainConfig, RECIPE / "conf" / "pretrain_llm.yaml").batch_tokens
    device = torch.device("cpu")
    rng = np.random.default_rng(5)
    order = rng.permutation(len(setup.utts)).tolist()

    # encoder CTC pretraining: utterances up to batch_frames mel frames, random character targets
    torch.manual_seed(0)
    ctc = CTCModel(WhisperSpeechEncoder(WhisperModel(whisper_config(enc_cfg)).get_encoder()), 64).train()
    ctc_opt = torch.optim.AdamW(ctc.parameters(), lr=1e-4)
    picked, frames = [], 0
    for i in order:
        if frames + setup.utts[i].n_frames > batch_frames and picked:
            break
        picked.append(i)
        frames += setup.utts[i].n_frames
    enc_batch = setup.batch([picked], seed=6)
    targets = [[int(t) for t in rng.integers(1, 64, size=max(1, len(setup.utts[i].text_ids)))] for i in picked]

    def encoder_step() -> None:
        ctc_opt.zero_grad(set_to_none=True)
        with autocast_context(device, setup.bf16):
            loss = ctc_loss(ctc, enc_batch.feats, enc_batch.feat_lens, targets)
        loss.backward()
        ctc_opt.step()

    # LLM text pretraining: copy-shaped sequences (text EOS text EOS), padded, up to batch_tokens
    torch.manual_seed(0)
    llm = Qwen3ForCausalLM(qwen3_config(llm_cfg, setup.tokenizer)).train()
    llm_opt = torch.optim.AdamW(llm.parameters(), lr=1e-4)
    eos = setup.tokenizer.eos_token_id
    seqs, longest = [], 0
    for i in order:
        ids = list(setup.utts[i].text_ids)
        seq = ids + [eos] + ids + [eos]
        longest = max(longest, len(seq))
        if seqs and longest * (len(seqs) + 1) > batch_tokens:
            break
        seqs.append((seq, seq))
    input_ids, mask, labels = pad_batch(seqs, setup.tokenizer.pad_token_id)

    def llm_step() -> None:
        llm_opt.zero_grad(set_to_none=True)
        with autocast_context(device, setup.bf16):
            loss = llm(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        llm_opt.step()

    # Stage-2 step and batched greedy decoding of the Speech-LLM (the adapter of --method)
    stepper = Stepper(setup.model(args.method), setup.bf16)
    stage2_batch = setup.batch(setup.order.next())
    decoder = setup.model(args.method).eval()
    dec_batch = setup.batch([[i] for i in order[:16]], seed=7)
    new = round(statistics.mean(len(u.text_ids) + 1 for u in setup.utts))

    def decode() -> None:
        with torch.no_grad(), autocast_context(device, setup.bf16):
            decoder.generate(dec_batch.feats, dec_batch.feat_lens, dec_batch.lang_ids, max_new_tokens=new,
                             min_new_tokens=new)

    def use(kernel: str) -> None:
        ctc.encoder.whisper.set_attn_implementation(kernel)
        llm.set_attn_implementation(kernel)
        stepper.model.set_attn_implementation(kernel)
        decoder.set_attn_implementation(kernel)

    workloads = {
        f"encoder CTC step ({len(picked)} utts, {frames} frames)": encoder_step,
        f"LLM text step ({len(seqs)} x {input_ids.shape[1]} tokens)": llm_step,
        f"Stage-2 step ({args.method})": lambda: stepper(stage2_batch),
        f"greedy decode (16 utts, {new} tokens)": decode,
    }
    times = {(w, k): [] for w in workloads for k in KERNELS}
    for round_ in range(args.warmup + args.iters):
        for name, fn in workloads.items():
            for kernel in KERNELS:
                use(kernel)
                start = time.perf_counter()
                fn()
                if round_ >= args.warmup:
                    times[name, kernel].append(time.perf_counter() - start)
    print(f"attention kernels, {'bf16' if setup.bf16 else 'fp32'}, {torch.get_num_threads()} thread(s); median wall "
          f"time of {args.iters} interleaved rounds after {args.warmup} warm-up")
    print(f"{'':<46}{'sdpa s':>10}{'eager s':>10}{'sdpa/eager':>12}")
    for name in workloads:
        sdpa, eager = (statistics.median(times[name, k]) for k in KERNELS)
        print(f"{name:<46}{sdpa:>10.3f}{eager:>10.3f}{sdpa / eager:>11.2f}x")


# --------------------------------------------------------------------------- packing
def padding_stats(order: BatchOrder, lengths: list[int], frames: list[int]) -> dict[str, float]:
    """Real vs padded tokens of epoch 0's batches: the model pads every row of a batch to the longest row
    (LLM side) and every utterance of a batch to the longest utterance (encoder, full-context regime).
    `lengths` are the tokens each utterance really takes in a row (its own prompt, not the reserved one)."""
    rows, batches = order.global_batches(0)
    used = [i for b in batches for row in b for i in row]
    real = sum(lengths[i] for i in used)
    padded = sum(len(b) * max(sum(lengths[i] for i in row) for row in b) for b in batches)
    n_utts = [sum(len(row) for row in b) for b in batches]
    enc_real = sum(frames[i] for i in used)
    enc_padded = sum(n * max(frames[i] for row in b for i in row) for n, b in zip(n_utts, batches))
    return {"utts": len(lengths), "rows": len(rows), "llm": real / padded, "batches": len(batches), "dropped": len(lengths) - len(used),
            "real": real, "padded": padded, "fill": real / (sum(len(b) for b in batches) * order.max_tokens),
            "enc": enc_real / enc_padded, "utts_per_batch": statistics.mean(n_utts)}


def longtail_utterances(n: int, seed: int = 0) -> tuple[list[int], list[str], list[int]]:
    """A long-tailed corpus like the paper's real data: log-normal durations (median 5 s, sigma 0.7, clipped
    to 0.5-30 s), ~3 transcript tokens per second, the mini corpus's language mix."""
    rng = np.random.default_rng(seed)
    mix = corpus_mix(1.0)
    langs = rng.choice(list(mix), size=n, p=np.array(list(mix.values())) / sum(mix.values())).tolist()
    secs = np.clip(rng.lognormal(math.log(5.0), 0.7, size=n), 0.5, 30.0)
    frames = (secs * 100).astype(int).tolist()
    text = np.maximum(1, rng.poisson(3.0 * secs)).tolist()
    return frames, langs, text


def cmd_packing(args, work: Path) -> None:
    cfg = stage2_config("vanilla")
    max_tokens = args.max_tokens or cfg.data.max_tokens
    batch_size = args.batch_size or cfg.batch_size
    prompt = args.prompt_tokens
    if args.dist == "longtail":
        frames, langs, text = longtail_utterances(args.utts)
        source = f"long-tailed synthetic ({args.utts} utterances, log-normal durations, median 5 s)"
    else:
        if args.data_dir:
            from transformers import AutoTokenizer

            from zipasr.train.dataset import SpeechDataset

            tok = AutoTokenizer.from_pretrained(args.tokenizer_dir, local_files_only=True)
            languages = sorted(set(Path(args.data_dir, "utt2lang").read_text(encoding="utf-8").split()[1::2]))
            data = SpeechDataset(args.data_dir, languages, lambda t: tok(t, add_special_tokens=False)["input_ids"],
                                 cache=False)
            utts = [Utt(u.lang, u.text_ids, u.n_frames) for u in data.utterances]
            source = f"data dir {args.data_dir} ({len(utts)} utterances)"
        else:
            languages = list(corpus_mix(1.0))
            _, llm_cfg, sentences = SIZES[args.size]
            tok = build_tokenizer(languages, work / "tokenizer", llm_cfg.vocab_size, sentences)
            utts = synthetic_utterances(tok, corpus_mix(args.scale))
            source = f"mini corpus, synthetic lengths ({len(utts)} utterances, conf/corpus.yaml train_target)"
        prompts = {c: len(tok(get_language(c).prompt, add_special_tokens=False)["input_ids"]) for c in languages}
        prompt = max(prompts.values())
        frames, langs, text = [u.n_frames for u in utts], [u.lang for u in utts], [len(u.text_ids) for u in utts]
    lengths = [speech_tokens(f) + t + 1 + prompt for f, t in zip(frames, text)]
    real = lengths if args.dist == "longtail" else [n - prompt + prompts[l] for n, l in zip(lengths, langs)]
    q = np.percentile(lengths, [10, 50, 90, 100])
    print(f"packing of one Stage-2 epoch: {source}")
    print(f"packed utterance tokens p10/p50/p90/max {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}/{q[3]:.0f}, "
          f"mel frames p50 {np.median(frames):.0f}, reserved prompt {prompt}; rows <= {max_tokens} tokens, "
          f"{batch_size} rows per batch, epoch 0")
    # As the trainer packs now (every utterance reserves the longest prompt), and packed by each utterance's
    # own prompt length (what the model really puts into the row).
    packings = {"reserved prompt": lengths, "own prompt": real}
    stats = {name: padding_stats(BatchOrder(packed, langs, max_tokens, batch_size), real, frames)
             for name, packed in packings.items()}
    print(f"{'packed by':<44}" + "".join(f"{name:>17}" for name in packings))
    for key, label, fmt in (("rows", "rows", "{:d}"), ("batches", "batches", "{:d}"),
                            ("utts_per_batch", "utterances per batch", "{:.1f}"),
                            ("dropped", "utterances in the dropped last batch", "{:d}"),
                            ("fill", "row fill (real tokens / max_tokens)", "{:.1%}"),
                            ("llm", "LLM real tokens / padded batch tokens", "{:.1%}"),
                            ("enc", "encoder real frames / padded (full context)", "{:.1%}")):
        print(f"{label:<44}" + "".join(f"{fmt.format(st[key]):>17}" for st in stats.values()))
    print("goals:")
    for name, st in stats.items():
        verdict = "met" if st["llm"] >= GOALS["packing"] else "NOT met"
        print(f"  LLM real-token share >= {GOALS['packing']:.0%} ({name})  {st['llm']:.1%}  {verdict}")


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, timed=True):
        sp.add_argument("--threads", type=int, default=1, help="torch CPU threads")
        sp.add_argument("--size", choices=list(SIZES), default="mini",
                        help="mini: the recipe's model and tokenizer size; test: a toy size for smoke tests")
        sp.add_argument("--scale", type=float, default=0.05 if timed else 1.0,
                        help="fraction of the corpus's utterances to synthesise")
        if timed:
            sp.add_argument("--fp32", action="store_true", help="no bf16 autocast (default: as the recipe, bf16)")
        if timed and sp.prog.split()[-1] != "step":
            sp.add_argument("--method", choices=METHODS, default="zipper_soft", help="encoder adapter")

    sp = sub.add_parser("step", help="Stage-2 step time of every method / Vanilla-LoRA")
    common(sp)
    sp.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS,
                    help="encoder adapters to time (vanilla, the reference, always runs)")
    sp.add_argument("--iters", type=int, default=5, help="timed rounds")
    sp.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    sp.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: perf_counter; cpu: this process's CPU time (steadier on a shared machine, 1 thread)")
    sp = sub.add_parser("throughput", help="Stage-2 training tokens/s and MFU")
    common(sp)
    sp.add_argument("--steps", type=int, default=10, help="timed steps (distinct batches of the epoch)")
    sp.add_argument("--peak_gflops", type=float, default=None,
                    help="peak for MFU (default: 215 bf16 / 90 fp32 GFLOP/s per thread, measured, environment.md)")
    sp = sub.add_parser("decode", help="batched vs one-at-a-time greedy decoding, real-time factor")
    common(sp)
    sp.add_argument("--batch", type=int, default=16, help="utterances")
    sp.add_argument("--new_tokens", type=int, default=0, help="tokens per hypothesis (0: mean transcript + EOS)")
    sp.add_argument("--iters", type=int, default=3)
    sp.add_argument("--warmup", type=int, default=1)
    sp.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    sp = sub.add_parser("beam", help="beam search with a lexicon: zipasr's cache and processor vs transformers' own")
    common(sp)
    sp.add_argument("--batch", type=int, default=32, help="utterances (conf/decode.yaml's batch_size)")
    sp.add_argument("--beam", type=int, default=8, help="beam size (conf/decode.yaml's)")
    sp.add_argument("--new_tokens", type=int, default=40, help="tokens per hypothesis")
    sp.add_argument("--iters", type=int, default=3)
    sp.add_argument("--warmup", type=int, default=1)
    sp.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    sp = sub.add_parser("attention", help="sdpa vs eager attention on the pretraining, Stage-2 and decoding workloads")
    common(sp)
    sp.add_argument("--iters", type=int, default=5, help="timed rounds")
    sp.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    sp = sub.add_parser("jobs", help="two 1-thread processes vs one 2-thread process (the recipe's --jobs)")
    common(sp)
    sp.add_argument("--threads_single", type=int, default=2, help="threads of the single process")
    sp.add_argument("--iters", type=int, default=4, help="steps / decodes per process and round")
    sp.add_argument("--batch", type=int, default=32, help="utterances per decode (conf/decode.yaml's batch_size)")
    sp.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    sp = sub.add_parser("grouping", help="the encoder's length grouping off vs on: Stage-2 steps and decoding")
    common(sp)
    sp.add_argument("--batches", type=int, default=8, help="distinct Stage-2 batches per round")
    sp.add_argument("--batch", type=int, default=32, help="utterances of the decode (conf/decode.yaml's batch_size)")
    sp.add_argument("--iters", type=int, default=3, help="timed rounds")
    sp.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    sp.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: perf_counter; cpu: this process's CPU time (steadier on a shared machine, 1 thread)")
    sp = sub.add_parser("packing", help="real-token share of a Stage-2 epoch")
    common(sp, timed=False)
    sp.add_argument("--dist", choices=["mini", "longtail"], default="mini",
                    help="mini: the mini corpus (or --data_dir); longtail: log-normal durations")
    sp.add_argument("--data_dir", default=None, help="a Kaldi data dir (utt2num_frames or utt2dur, text, utt2lang)")
    sp.add_argument("--tokenizer_dir", default=None, help="tokenizer for --data_dir (the recipe's LLM dir)")
    sp.add_argument("--utts", type=int, default=20000, help="utterances of --dist longtail")
    sp.add_argument("--max_tokens", type=int, default=None, help="row budget (default: the recipe's data.max_tokens)")
    sp.add_argument("--batch_size", type=int, default=None, help="rows per batch (default: the recipe's)")
    sp.add_argument("--prompt_tokens", type=int, default=12, help="reserved prompt tokens of --dist longtail")
    args = p.parse_args(argv)
    if args.command == "packing" and bool(args.data_dir) != bool(args.tokenizer_dir):
        p.error("--data_dir and --tokenizer_dir go together")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench_speech_llm_") as tmp:
        work = Path(tmp)
        if args.command == "packing":
            cmd_packing(args, work)
            return
        if args.command == "jobs":
            cmd_jobs(args, work)
            return
        setup = Setup(args, args.scale, work)
        {"step": cmd_step, "throughput": cmd_throughput, "decode": cmd_decode, "beam": cmd_beam,
         "attention": cmd_attention, "grouping": cmd_grouping}[args.command](args, setup)


if __name__ == "__main__":
    main()
