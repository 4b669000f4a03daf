"""Small pieces the sibling methods share: swapping modules in place, and a plain training loop over a
chosen set of parameters (for the few tensors these methods train: fusion weights, a student LoRA,
a new language's banks). Full Stage-1/2 training lives in zipasr.train."""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def replace_modules(model: nn.Module, kind: type | tuple[type, ...],
                    build: Callable[[nn.Module], nn.Module]) -> list[str]:
    """Replace every submodule of type `kind` by build(module), in place; returns their qualified names."""
    names = [n for n, m in model.named_modules() if isinstance(m, kind) and n]
    names = [n for n in names if not any(n.startswith(o + ".") for o in names)]  # outermost matches only
    for name in names:
        model.set_submodule(name, build(model.get_submodule(name)))
    return names


def train_parameters(
    params: Sequence[nn.Parameter],
    batches: Iterable,
    loss_fn: Callable[[object], Tensor],
    lr: float = 1e-3,
    steps: int | None = None,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """AdamW on `params` only, one step per batch (at most `steps`); returns every step's loss.

    loss_fn(batch) -> scalar. Non-finite losses are skipped with a warning (their gradients would
    corrupt the few trained tensors). Gradient norm clipped to `grad_clip` (0: none).
    """
    from tqdm import tqdm

    params = list(params)
    if not params:
        raise ValueError("nothing to train: the parameter list is empty")
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    bar = tqdm(batches, total=steps, desc=desc, disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        if steps is not None and step >= steps:
            break
        loss = loss_fn(batch)
        if not torch.isfinite(loss):
            log.warning("%s step %d: non-finite loss %s skipped", desc, step, float(loss.detach()))
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
    bar.close()
    return losses


def utterance_batches(dataset, batch_size: int, steps: int, seed: int = 0, languages: Sequence[str] | None = None,
                      device: str | torch.device = "cpu"):
    """`steps` SpeechBatches of `batch_size` utterances (one per LLM row) drawn from a zipasr.train
    SpeechDataset in shuffled epochs, on `device`; `languages` restricts the utterances to those languages."""
    import random

    pool = [i for i, u in enumerate(dataset.utterances) if languages is None or u.lang in languages]
    if not pool:
        raise ValueError(f"{dataset.data_dir}: no utterances of languages {list(languages or [])}")
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(pool)
            rng.shuffle(fresh)
            order += fresh
        chunk, order = order[:batch_size], order[batch_size:]
        yield dataset.collate([[i] for i in chunk]).to(device)


def load_train_data(model, cfg, data_dir: str):
    """A SpeechDataset of `data_dir` for `model` (its languages, tokenizer and feature settings)."""
    from zipasr.train.trainer import load_dataset

    return load_dataset(cfg, model, data_dir)


def write_experiment(model, cfg, exp_dir, encoder_adapter: dict, info: dict, languages: list[str] | None = None):
    """Save `model` as an experiment dir that zipasr.train.inference.load_model (and so decode, export)
    reads: EXP/config.yaml (a copy of `cfg` with `encoder_adapter` fields replaced, and `languages`)
    + EXP/final (SpeechLLM.save_trainable) + EXP/sibling.json (`info`: how it was made)."""
    import copy
    import json
    from pathlib import Path

    from zipasr.config import save_config

    exp_dir = Path(exp_dir)
    cfg = copy.deepcopy(cfg)
    for key, value in encoder_adapter.items():
        if not hasattr(cfg.model.encoder_adapter, key):
            raise KeyError(f"model.encoder_adapter has no field {key!r}")
        setattr(cfg.model.encoder_adapter, key, value)
    if languages is not None:
        cfg.model.languages = list(languages)
    cfg.train.stage = 2
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, exp_dir / "config.yaml")
    model.set_stage(2)
    model.save_trainable(exp_dir / "final")
    (exp_dir / "sibling.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote experiment %s", exp_dir)
    return exp_dir
