"""bf16 autocast where the hardware runs it fast, fp32 elsewhere: the one place that decides.

On a CPU, bf16 autocast is fast only where oneDNN has native bf16 kernels (AVX-512 and newer). On an
AVX2-only CPU it is emulated: a tiny Qwen3 training step measured 10.5 s with bf16 autocast against
0.67 s in fp32 (1 thread; egs/mini_multilingual/asr1/NOTES.md, "Memory and speed note"), so a
`bf16: true` config falls back to fp32 there, with a warning.
"""
from __future__ import annotations

import contextlib
import logging

import torch

logger = logging.getLogger(__name__)


def bf16_available(device: torch.device | str) -> bool:
    """Whether `device` runs bf16 autocast natively (CUDA with bf16, or a CPU with oneDNN bf16 kernels)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def use_bf16(requested: bool, device: torch.device | str) -> bool:
    """`requested` where the device supports it; a warning where a requested bf16 falls back to fp32."""
    if requested and not bf16_available(device):
        logger.warning("bf16 requested but %s has no native bf16 (CPU capability %s): fp32 instead",
                       torch.device(device), torch.backends.cpu.get_cpu_capability())
        return False
    return requested


def autocast_context(device: torch.device | str, enabled: bool):
    """bf16 autocast on `device` when `enabled`, else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
