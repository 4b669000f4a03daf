"""The training loop of Stage 1 and Stage 2 on a DeepSpeed ZeRO engine (paper Sec. IV-F, V-B).

`train(cfg, exp_dir, resume)` reads like its steps: distributed setup -> model for the stage -> data
(packed rows, resumable order) -> DeepSpeed engine (AdamW, warmup + cosine) -> resume -> loop
(forward under bf16 autocast, token-weighted loss, backward, step, log, checkpoint, validate) ->
average of the last checkpoints saved as EXP/final.

Launching (the same code everywhere):
    python -m zipasr.bin.train ...                       one process; sets the env of a world of one
    torchrun --nproc_per_node=N -m zipasr.bin.train ...  N processes on one machine
    deepspeed --num_gpus N zipasr/bin/train.py ...       DeepSpeed's launcher; multi-node: --hostfile H
On a machine without CUDA it runs on the CPU: DS_ACCELERATOR=cpu and the gloo backend are set here.

The loss of a step is the mean over all its target tokens (all processes, all micro-batches): each
micro-batch's summed cross-entropy is divided by the step's global token count (known in advance from the
packing), so N processes with batch B give the same gradients as one process with batch N*B.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml

from zipasr.config import ConfigError, save_config, to_dict
from zipasr.train.checkpoint import (STATE, WEIGHTS, average_checkpoints, list_checkpoints, load_checkpoint,
                                     load_trainable_state, prune_checkpoints, save_checkpoint, save_weights)
from zipasr.train.config import ExperimentConfig, resolve_checkpoint_paths
from zipasr.train.dataset import SpeechDataset
from zipasr.train.packing import BatchOrder, pack_rows
from zipasr.train.precision import autocast_context, use_bf16
from zipasr.train.schedule import build_scheduler

logger = logging.getLogger("zipasr.train")

FULL_CONTEXT_MAX_FRAMES = 3000  # Whisper's 30 s window


# --------------------------------------------------------------------------- distributed setup
def _writable_cache() -> str:
    """A writable build cache for DeepSpeed's JIT ops, one per (deepspeed install, torch version, compiler
    flags): builds of different installs in one directory replace each other, a rebuild of minutes each time."""
    spec = importlib.util.find_spec("deepspeed")
    # ninja on PATH too: the venv's and the system's write incompatible build logs (seen: one rebuilds
    # after every run of the other, e.g. a recipe with the venv activated and tests without).
    install = "|".join([spec.origin if spec else "", torch.__version__, shutil.which("ninja") or ""] +
                       [os.environ.get(k, "") for k in ("CXX", "CFLAGS", "LDFLAGS")])
    tag = hashlib.sha1(install.encode()).hexdigest()[:12]
    for base in (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")), Path(tempfile.gettempdir())):
        path = base / "zipasr" / f"torch_extensions_{tag}"
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return str(path)
        except OSError:
            continue
    raise OSError("no writable directory for TORCH_EXTENSIONS_DIR; set it to one")


@contextlib.contextmanager
def jit_build_guard(ext_dir: Path):
    """Hold while a JIT op is built or loaded in `ext_dir`, zipasr's own TORCH_EXTENSIONS_DIR.

    torch's build lock is a plain file, `<op>/lock`; a build killed half-way leaves it behind and every later
    build of that op waits for it forever (a killed test suite did, 2026-12-04). This guard is an flock, which
    the kernel drops when its process dies: while it is held no other zipasr process builds in `ext_dir`,
    so a `lock` found there is stale and is removed.
    """
    ext_dir.mkdir(parents=True, exist_ok=True)
    with open(ext_dir / "zipasr_build.flock", "a") as guard:  # closing it releases the flock
        fcntl.flock(guard, fcntl.LOCK_EX)
        for stale in sorted(ext_dir.glob("*/lock")):
            logger.warning("removing %s: the build lock of a killed build", stale)
            stale.unlink(missing_ok=True)
        yield


def _load_comm_op(ext_dir: Path) -> None:
    """Build (once, cached) and load the shared-memory comm op that deepspeed.init_distributed would build,
    inside jit_build_guard; DeepSpeed's own load then takes it from its in-process cache of loaded ops.
    Before the rendezvous: a guard held across it would deadlock the ranks of one machine."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return  # DeepSpeed skips this op too (deepspeed.comm.torch.build_shm_op)
    with jit_build_guard(ext_dir):
        builder.load()


def init_distributed() -> tuple[int, int, torch.device]:
    """Start (or join) the process group; returns (rank, world_size, device).

    Without launcher variables (plain `python -m zipasr.bin.train`) this process declares itself a world of
    one, so the DeepSpeed path is the only path. Its rendezvous store binds port 0, so the kernel picks a free
    port as it binds (picking a free port first and binding it later raced: two trainings started together by a
    recipe's job pool could pick the same port, and one failed with EADDRINUSE). Without CUDA: DeepSpeed's CPU
    accelerator, gloo, and a writable TORCH_EXTENSIONS_DIR for the small op DeepSpeed compiles once (cached
    there; see jit_build_guard).
    """
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT="0")
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", _writable_cache())
    import deepspeed

    for name in ("DeepSpeed", "deepspeed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ext_dir = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    if ext_dir.parent.name == "zipasr" and ext_dir.name.startswith("torch_extensions_"):
        _load_comm_op(ext_dir)  # only in our own cache: another program's builds there would not take the guard
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return rank, world, torch.device("cuda", local_rank)
    return rank, world, torch.device("cpu")


def barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- setup pieces
def setup_logging(exp_dir: Path, rank: int) -> None:
    """Rank 0 logs INFO to the console and to EXP/train.log; other ranks only warnings."""
    root = logging.getLogger()
    fmt = logging.Formatter(f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s")
    for handler in list(root.handlers):
        if getattr(handler, "_zipasr", False):
            root.removeHandler(handler)
    handlers = [logging.StreamHandler()]
    if rank == 0:
        handlers.append(logging.FileHandler(exp_dir / "train.log", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._zipasr = True
        root.addHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def check_exp_dir(cfg: ExperimentConfig, exp_dir: Path, resume: bool) -> None:
    """A new run needs a fresh exp dir; --resume needs the same config as the interrupted run."""
    saved = exp_dir / "config.yaml"
    if list_checkpoints(exp_dir / "checkpoints") and not resume:
        raise ConfigError(f"{exp_dir} already holds checkpoints; pass --resume to continue, or use a new --exp_dir")
    if resume and saved.is_file():
        old, new = yaml.safe_load(saved.read_text(encoding="utf-8")), to_dict(cfg)
        diffs = _diff(old, new)
        if diffs:
            raise ConfigError(f"--resume with a config that differs from {saved}: " + "; ".join(diffs[:10]))


def _diff(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def build_model(cfg: ExperimentConfig):
    """SpeechLLM of the config (Stage-1 weights from model.init_from, adapters injected), stage flags set."""
    from zipasr.model.speech_llm import SpeechLLM

    model = SpeechLLM.from_config(cfg.model)
    model.set_stage(cfg.train.stage, train_encoder=cfg.train.stage1_train_encoder,
                    stage2_convs=cfg.train.stage2_train_encoder_convs)
    # DeepSpeed keeps fp32 master copies only of what it is given in fp32; train in fp32 under autocast.
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def tokenizer_fn(model):
    tok = model.tokenizer
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


def load_dataset(cfg: ExperimentConfig, model, data_dir: str) -> SpeechDataset:
    from zipasr.data.features import FeatureExtractor

    max_frames = cfg.data.max_frames
    if max_frames is None and cfg.model.regime == "full":
        max_frames = FULL_CONTEXT_MAX_FRAMES
    return SpeechDataset(data_dir, model.languages, tokenizer_fn(model),
                         extractor=FeatureExtractor.from_encoder_dir(cfg.model.encoder_dir),
                         cache=cfg.data.cache_features, max_frames=max_frames)


def attach_aux_ctc(model, cfg: ExperimentConfig, dataset: SpeechDataset, exp_dir: Path, rank: int) -> None:
    """The auxiliary CTC head (model.aux_ctc): over the training transcripts' characters, warm-started; its
    character list is written to EXP/ctc_vocab.json (a resumed run must find the same)."""
    from zipasr.model.ctc import CTC_VOCAB_FILE, CharVocab

    head = model.build_ctc_head(dataset.texts(), cfg.model.aux_ctc.init_from or cfg.model.encoder_dir,
                                cfg.model.aux_ctc.form)
    vocab_file = exp_dir / CTC_VOCAB_FILE
    if vocab_file.is_file() and CharVocab.load(vocab_file) != head.vocab:
        raise ConfigError(f"{vocab_file}: the CTC characters of this run differ from those of the run that wrote it "
                          "(other training data?); use a new experiment dir")
    model.attach_ctc_head(head)
    if rank == 0:
        head.vocab.save(vocab_file)
    logger.info("auxiliary CTC loss (weight %g)", cfg.model.aux_ctc.weight)


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on biases, norms and 1-D tensors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() < 2 or name.endswith(".bias") else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def deepspeed_config(cfg: ExperimentConfig, world: int, bf16: bool) -> dict:
    """The engine's config. torch's AdamW (`torch_adam`) needs no compiled op, on the CPU and on GPUs."""
    o = cfg.optim
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": o.grad_accum,
        "train_batch_size": cfg.batch_size * o.grad_accum * world,
        "zero_optimization": {"stage": cfg.train.zero_stage},
        "optimizer": {"type": "AdamW", "params": {"lr": o.lr, "betas": list(o.betas), "eps": o.eps,
                                                  "weight_decay": o.weight_decay, "torch_adam": True}},
        "gradient_clipping": o.grad_clip,
        # Autocast does the bf16 compute; parameters, gradients and optimizer state stay fp32.
        "bf16": {"enabled": False},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


class Prefetcher:
    """Builds the next step's batches in a background thread while the current step computes (features read
    from disk when they are not cached in memory); a no-op wrapper around `collate` when disabled."""

    def __init__(self, collate, enabled: bool):
        self.collate = collate
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") if enabled else None
        self.pending: dict[tuple, Future] = {}

    @staticmethod
    def _key(rows) -> tuple:
        return tuple(tuple(row) for row in rows)

    def prefetch(self, rows_list) -> None:
        if self.pool is None:
            return
        for rows in rows_list:
            key = self._key(rows)
            if key not in self.pending:
                self.pending[key] = self.pool.submit(self.collate, rows)

    def get(self, rows):
        future = self.pending.pop(self._key(rows), None)
        return future.result() if future is not None else self.collate(rows)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()


# --------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model, dataset: SpeechDataset, cfg: ExperimentConfig, rank: int, world: int,
             device: torch.device, bf16: bool, prompt_tokens: int | list[int]) -> float:
    """Token-weighted mean loss over the valid set (rows split across processes), in the decoding regime."""
    was_training = model.training
    model.eval()
    rows = pack_rows(dataset.packed_lengths(prompt_tokens, cfg.model.projector_stride), [u.lang for u in dataset.utterances],
                     cfg.data.max_tokens, np.random.default_rng(0))
    mine = rows[rank::world]
    loss_sum, n_tokens = 0.0, 0
    for k in range(0, len(mine), cfg.batch_size):
        batch = dataset.collate(mine[k:k + cfg.batch_size]).to(device)
        with autocast_context(device, bf16):
            out = model(batch)
        loss_sum += float(out.loss) * out.n_tokens
        n_tokens += out.n_tokens
    loss_sum, n_tokens = all_reduce_sum([loss_sum, float(n_tokens)], device)
    model.train(was_training)
    return loss_sum / max(n_tokens, 1.0)


# --------------------------------------------------------------------------- the loop
def train(cfg: ExperimentConfig, exp_dir: str | Path, resume: bool = False) -> Path:
    """Train one stage; returns EXP/final (the averaged model, as SpeechLLM.save_trainable writes it)."""
    exp_dir = Path(exp_dir)
    rank, world, device = init_distributed()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if rank == 0:
        exp_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    setup_logging(exp_dir, rank)
    cfg = resolve_checkpoint_paths(cfg)
    check_exp_dir(cfg, exp_dir, resume)
    barrier()  # every process has read the old config.yaml before rank 0 rewrites it
    if rank == 0:
        save_config(cfg, exp_dir / "config.yaml")
    final_dir = exp_dir / "final"
    if resume and (final_dir / WEIGHTS).is_file():
        logger.info("%s is finished (%s exists); nothing to resume", exp_dir, final_dir)
        return final_dir

    # --- model
    if cfg.train.stage == 2 and not cfg.model.init_from:
        logger.warning("Stage 2 without model.init_from: the encoder, projector and LLM LoRA start from the "
                       "pretrained checkpoints, not from a Stage-1 model")
    torch.manual_seed(cfg.train.seed)  # adapter init: identical on every process
    model = build_model(cfg).to(device)
    counts = model.trainable_parameter_count()
    logger.info("Stage %d: trainable parameters %s (total %.2fM)", cfg.train.stage, counts,
                sum(counts.values()) / 1e6)
    bf16 = use_bf16(cfg.train.bf16, device)

    # --- data
    dataset = load_dataset(cfg, model, cfg.data.train_dir)
    if cfg.model.aux_ctc.weight > 0:
        attach_aux_ctc(model, cfg, dataset, exp_dir, rank)
    # Reserve each language's own prompt length unless a fixed count is configured.
    prompt_tokens = cfg.data.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = [len(ids) for ids in model.prompt_ids]
    lengths = dataset.packed_lengths(prompt_tokens, cfg.model.projector_stride)
    over = sum(n > cfg.data.max_tokens for n in lengths)
    if over:
        logger.warning("%d utterances are longer than data.max_tokens=%d; each gets a row of its own",
                       over, cfg.data.max_tokens)
    unknown = sorted(set(cfg.data.lang_weights) - {u.lang for u in dataset.utterances})
    if unknown:
        raise ConfigError(f"config key 'data.lang_weights' names languages without training data in "
                          f"{cfg.data.train_dir}: {unknown}")
    order = BatchOrder(lengths, [u.lang for u in dataset.utterances], cfg.data.max_tokens, cfg.batch_size,
                       world, rank, seed=cfg.train.seed, lang_alpha=cfg.data.lang_alpha,
                       lang_weights=cfg.data.lang_weights)
    gas = cfg.optim.grad_accum
    steps_per_epoch = order.batches_per_epoch() // gas
    total_steps = cfg.train.max_steps or max(1, steps_per_epoch * cfg.train.epochs)
    epoch_rows = order.global_batches(0)[0]
    rows_per_epoch = len(epoch_rows)
    real = sum(lengths[i] for row in epoch_rows for i in row)
    logger.info("%s: %d utterances -> %d packed rows (%.1f%% of %d-token rows filled), %d steps/epoch, "
                "%d steps of %d rows x %d micro-batches x %d processes",
                cfg.data.train_dir, len(dataset), rows_per_epoch, 100.0 * real / (rows_per_epoch * cfg.data.max_tokens),
                cfg.data.max_tokens, steps_per_epoch, total_steps, cfg.batch_size, gas, world)
    if cfg.data.lang_alpha != 1.0 or cfg.data.lang_weights:
        drawn = Counter(dataset.utterances[i].lang for row in epoch_rows for i in row)
        logger.info("language sampling (data.lang_alpha=%g, data.lang_weights=%s), utterances per epoch: %s",
                    cfg.data.lang_alpha, cfg.data.lang_weights or "none",
                    ", ".join(f"{lang} {drawn[lang]}/{n}" for lang, n in
                              sorted(Counter(u.lang for u in dataset.utterances).items())))
    valid = load_dataset(cfg, model, cfg.data.valid_dir) if cfg.data.valid_dir else None

    # --- engine
    import deepspeed

    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=param_groups(model, cfg.optim.weight_decay),
        config=deepspeed_config(cfg, world, bf16),
        lr_scheduler=lambda opt: build_scheduler(opt, total_steps, cfg.optim.warmup_ratio, cfg.optim.min_lr_ratio))
    ckpt_root = exp_dir / "checkpoints"
    step, micro_count, bad_total = 0, 0, 0
    if resume:
        ckpts = list_checkpoints(ckpt_root)
        if ckpts:
            saved_world = json.loads((ckpts[-1] / STATE).read_text())["world_size"]
            if saved_world != world:
                raise ConfigError(f"{ckpts[-1]} was written by {saved_world} processes; resume with the same number "
                                  f"(this run has {world}): the batch order and optimizer partitions depend on it")
            state = load_checkpoint(engine, model, ckpts[-1], rank)
            step, micro_count, bad_total = state["step"], state["micro_count"], state["bad_total"]
            order.load_state_dict(state["order"])
            logger.info("resumed from %s (step %d)", ckpts[-1], step)
        else:
            logger.info("--resume: no checkpoint in %s yet; starting from the beginning", ckpt_root)

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(exp_dir / "tensorboard"))

    def checkpoint(at_step: int) -> None:
        trainer_state = {"step": at_step, "micro_count": micro_count, "bad_total": bad_total,
                         "order": order.state_dict(), "world_size": world, "total_steps": total_steps}
        path = save_checkpoint(engine, model, ckpt_root, at_step, trainer_state, rank, barrier)
        if rank == 0:
            prune_checkpoints(ckpt_root, cfg.train.keep_last, max(cfg.train.keep_last, cfg.train.avg_last))
            logger.info("saved checkpoint %s", path)
        if valid is not None:
            valid_loss = validate(model, valid, cfg, rank, world, device, bf16, prompt_tokens)
            logger.info("step %d: valid loss %.4f", at_step, valid_loss)
            if writer is not None:
                writer.add_scalar("valid/loss", valid_loss, at_step)

    # --- loop
    from tqdm import tqdm

    engine.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    loader = Prefetcher(dataset.collate, enabled=not cfg.data.cache_features)
    bar = tqdm(total=total_steps, initial=step, desc=f"stage {cfg.train.stage}", unit="step",
               disable=rank != 0, dynamic_ncols=True)
    window = {"loss": 0.0, "tokens": 0.0, "utts": 0.0, "ctc": 0.0, "micro": 0.0, "time": time.perf_counter()}
    bad_in_row = 0
    saved_at = step if list_checkpoints(ckpt_root) else -1
    while step < total_steps:
        micro_batches = [order.next() for _ in range(gas)]
        loader.prefetch([order.local_rows(b) for b in order.peek(gas)])  # the next step's, while this one runs
        global_tokens = sum(dataset.target_tokens(b) for b in micro_batches)
        # The segment length of the chunked regime, drawn per step (the global batch) from a seeded
        # stream: the same on every process, for every micro-batch of the step, and after a resume.
        segment = 0
        if model.regime == "chunked":
            rng = np.random.default_rng([cfg.train.seed, step])
            segment = int(model.train_segment_frames[rng.integers(len(model.train_segment_frames))])
        for global_batch in micro_batches:
            rows = order.local_rows(global_batch)
            micro_count += 1
            batch = loader.get(rows).to(device)
            with autocast_context(device, bf16):
                out = engine(batch, segment_frames=segment)
            expected = dataset.target_tokens(rows)
            if out.n_tokens != expected:
                raise RuntimeError(f"the model counted {out.n_tokens} target tokens, the data {expected}: "
                                   "tokenisation of the dataset and the model disagree")
            loss_sum = out.loss.float() * out.n_tokens
            finite = bool(torch.isfinite(loss_sum))
            any_bad = all_reduce_sum([0.0 if finite else 1.0], device)[0] > 0
            if any_bad:
                # Skip this micro-batch on every process: a zero loss that still reaches every trainable
                # parameter keeps DeepSpeed's gradient hooks and accumulation boundary in step.
                bad_in_row += 1
                bad_total += 1
                logger.warning("step %d: non-finite loss on %s; micro-batch skipped (%d in a row, %d in all)",
                               step + 1, "this process" if not finite else "a process", bad_in_row, bad_total)
                if bad_in_row >= cfg.train.max_bad_steps:
                    raise RuntimeError(f"{bad_in_row} non-finite losses in a row (train.max_bad_steps); stopping")
                engine.backward(sum(p.sum() for p in trainable) * 0.0, scale_wrt_gas=False)
            else:
                bad_in_row = 0
                engine.backward(loss_sum * world / global_tokens, scale_wrt_gas=False)
                window["loss"] += float(loss_sum.detach())
                window["tokens"] += out.n_tokens
                window["utts"] += len(batch.text_ids)
                window["micro"] += 1
                if out.ctc_loss is not None:
                    window["ctc"] += float(out.ctc_loss)
            engine.step()
        step += 1
        lr = engine.get_lr()[0]
        if step % cfg.train.log_every == 0 or step == total_steps:
            loss_sum, tokens, utts, ctc_sum, micro = all_reduce_sum(
                [window["loss"], window["tokens"], window["utts"], window["ctc"], window["micro"]], device)
            elapsed = time.perf_counter() - window["time"]
            loss = loss_sum / max(tokens, 1.0)
            ctc = ctc_sum / max(micro, 1.0) if model.ctc_head is not None and model.ctc_weight > 0 else None
            grad_norm = engine.get_global_grad_norm()
            if rank == 0:
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", utt_s=f"{utts / elapsed:.1f}")
                logger.info("step %d/%d loss %.4f%s lr %.3e grad_norm %s %.1f utt/s %.0f tok/s", step, total_steps,
                            loss, f" (ctc {ctc:.4f})" if ctc is not None else "", lr,
                            f"{grad_norm:.3f}" if grad_norm is not None else "-", utts / elapsed, tokens / elapsed)
                for key, value in (("loss", loss), ("lr", lr), ("utt_per_s", utts / elapsed),
                                   ("target_tokens_per_s", tokens / elapsed), ("ctc_loss", ctc)):
                    if value is not None:
                        writer.add_scalar(f"train/{key}", value, step)
                if grad_norm is not None:
                    writer.add_scalar("train/grad_norm", float(grad_norm), step)
            window = {"loss": 0.0, "tokens": 0.0, "utts": 0.0, "ctc": 0.0, "micro": 0.0, "time": time.perf_counter()}
        bar.update(1)
        if step % cfg.train.save_every == 0 or step == total_steps:
            checkpoint(step)
            saved_at = step
    bar.close()
    loader.close()
    if saved_at != step:
        checkpoint(step)

    # --- final model: the average of the last checkpoints
    if rank == 0:
        ckpts = list_checkpoints(ckpt_root)[-cfg.train.avg_last:]
        averaged = average_checkpoints(ckpts)
        load_trainable_state(model, averaged, f"average of {[c.name for c in ckpts]}")
        tmp = exp_dir / ".tmp-final"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing it
        model.save_trainable(tmp)
        save_weights(averaged, tmp / WEIGHTS, {"averaged": ",".join(c.name for c in ckpts)})
        shutil.rmtree(final_dir, ignore_errors=True)
        tmp.rename(final_dir)
        logger.info("final model (average of %d checkpoints) in %s", len(ckpts), final_dir)
        if writer is not None:
            writer.close()
    barrier()
    return final_dir
