"""Learning-rate schedule: linear warmup, then cosine decay (paper Sec. V-B: warmup ratio 10 %, cosine)."""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based: the lr used by the step after `step` updates).

    0 -> warmup_steps: linear from 1/warmup_steps to 1; then cosine from 1 down to `min_lr_ratio` at
    `total_steps`; constant `min_lr_ratio` beyond.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                    min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over `warmup_cosine`; warmup steps = ceil(warmup_ratio * total_steps).

    The multiplier is a closure, so the scheduler's state_dict holds only counters (DeepSpeed saves it
    in every checkpoint and restores it on resume).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    warmup_steps = math.ceil(warmup_ratio * total_steps)

    def multiplier(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps, min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
