"""Training checkpoints: save every N steps, keep the last N, average the last N, resume exactly.

Layout of an experiment dir:

    EXP/checkpoints/step_00000200/
        trainable.safetensors      every trainable tensor (+ adapter buffers such as FlyLoRA's bias and the
                                   routers' LID table) under its name in SpeechLLM: what decoding needs
        trainer_state.json         step, batch-order position, counters
        rng_rank{R}.safetensors    torch RNG state of process R
        mp_rank_00_model_states.pt, *optim_states.pt
                                   DeepSpeed's own files (trainable parameters, ZeRO-2 optimizer partitions,
                                   lr scheduler), written by `engine.save_checkpoint`; resume only
    EXP/final/trainable.safetensors   the average of the last `avg_last` checkpoints (decode/export load it)

A checkpoint is written into `.tmp-step_N` and renamed to `step_N` only when every file is complete, so a
kill during saving leaves the previous checkpoint as the newest loadable one. Multi-node training needs the
exp dir on a shared filesystem (every process writes its own optimizer partition there).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from zipasr.adapters import adapter_layers, adapter_state_dict

logger = logging.getLogger(__name__)

WEIGHTS = "trainable.safetensors"
STATE = "trainer_state.json"
STEP_DIR = re.compile(r"^step_(\d{8})$")
LID_KEY = "lid_embeddings"


# --------------------------------------------------------------------------- model tensors
def trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """Every trainable parameter and every adapter tensor of `model`, by qualified name, on the CPU.

    Frozen pretrained weights are left out: the model is rebuilt from its config and the pretrained
    checkpoints, then this state is loaded on top (`load_trainable_state`).
    """
    state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    state.update(adapter_state_dict(model))
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def load_trainable_state(model: nn.Module, state: dict[str, Tensor], where: str) -> None:
    """Copy `state` (from `trainable_state`) into `model`. Every trainable parameter of the model must be in
    `state` and every key of `state` must exist in the model (errors name the key and `where`)."""
    own = dict(model.named_parameters())
    own.update(model.named_buffers())
    missing = sorted(n for n, p in model.named_parameters() if p.requires_grad and n not in state)
    unknown = sorted(k for k in state if k not in own and k != LID_KEY)
    if missing or unknown:
        raise ValueError(
            f"checkpoint {where} does not fit the model (another model, stage or adapter method?): "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        )
    with torch.no_grad():
        for key, value in state.items():
            if key == LID_KEY:
                _load_lid_table(model, value, where)
                continue
            target = own[key]
            if target.shape != value.shape:
                raise ValueError(f"checkpoint {where}: {key} has shape {tuple(value.shape)}, "
                                 f"the model's is {tuple(target.shape)}")
            target.copy_(value)


def _load_lid_table(model: nn.Module, value: Tensor, where: str) -> None:
    # The LID table is one tensor shared by every router (a non-persistent buffer), stored once.
    routers = [layer.router for layer in adapter_layers(model).values() if hasattr(layer, "router")]
    if not routers:
        raise ValueError(f"checkpoint {where} holds LID embeddings but the model has no routed adapters")
    for router in routers:
        if router.lid_embeddings.shape != value.shape:
            raise ValueError(f"checkpoint {where}: LID table {tuple(value.shape)} vs the model's "
                             f"{tuple(router.lid_embeddings.shape)}")
        router.lid_embeddings.copy_(value)


def save_weights(state: dict[str, Tensor], path: Path, metadata: dict | None = None) -> None:
    save_file(state, str(path), metadata={"format": "pt", **{k: str(v) for k, v in (metadata or {}).items()}})


def load_weights(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path}")
    return load_file(str(path))


# --------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --------------------------------------------------------------------------- checkpoint dirs
def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(ckpt_root: str | Path) -> list[Path]:
    """Complete checkpoints under `ckpt_root`, oldest first (half-written `.tmp-*` dirs are ignored)."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def save_checkpoint(engine, model: nn.Module, ckpt_root: str | Path, step: int, trainer_state: dict,
                    rank: int, barrier) -> Path:
    """Write checkpoint `step` (every process calls this; `barrier()` synchronises them)."""
    root = Path(ckpt_root)
    name = step_dir_name(step)
    tmp, final = root / f".tmp-{name}", root / name
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a run killed while saving
        root.mkdir(parents=True, exist_ok=True)
    barrier()
    engine.save_checkpoint(str(root), tag=tmp.name, save_latest=False, exclude_frozen_parameters=True)
    save_file(rng_state(), str(tmp / f"rng_rank{rank}.safetensors"))
    barrier()
    if rank == 0:
        save_weights(trainable_state(model), tmp / WEIGHTS, {"step": step})
        # trainer_state.json is written last: its presence marks the files before it as complete.
        (tmp / STATE).write_text(json.dumps(trainer_state, indent=1) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    barrier()
    return final


def prune_checkpoints(ckpt_root: str | Path, keep_last: int, keep_weights_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints; of older ones still among the newest
    `keep_weights_last`, keep only trainable.safetensors (what averaging needs)."""
    ckpts = list_checkpoints(ckpt_root)
    for index, ckpt in enumerate(ckpts):
        age = len(ckpts) - index  # 1 = newest
        if age <= keep_last:
            continue
        if age <= keep_weights_last:
            for f in ckpt.iterdir():
                if f.name not in (WEIGHTS, STATE):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        else:
            shutil.rmtree(ckpt)


def load_checkpoint(engine, model: nn.Module, ckpt: Path, rank: int) -> dict:
    """Restore parameters, optimizer, lr scheduler and this process's RNG from `ckpt`; returns trainer_state."""
    if not (ckpt / f"rng_rank{rank}.safetensors").is_file():
        raise FileNotFoundError(
            f"{ckpt} has no rng_rank{rank}.safetensors: it was written by fewer processes (or pruned to weights "
            "only); resume with the same number of processes from a full checkpoint"
        )
    load_path, _ = engine.load_checkpoint(str(ckpt.parent), tag=ckpt.name, load_module_strict=False,
                                          load_optimizer_states=True, load_lr_scheduler_states=True)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint {ckpt}")
    # Buffers DeepSpeed does not track (the routers' LID table) come from our own file.
    load_trainable_state(model, load_weights(ckpt / WEIGHTS), str(ckpt))
    set_rng_state(load_file(str(ckpt / f"rng_rank{rank}.safetensors")))
    return json.loads((ckpt / STATE).read_text())


def average_checkpoints(ckpts: list[Path]) -> dict[str, Tensor]:
    """Element-wise mean of the trainable tensors of `ckpts` (float tensors); other tensors (counters,
    non-float buffers) are taken from the newest checkpoint."""
    if not ckpts:
        raise ValueError("no checkpoints to average")
    states = [load_weights(c / WEIGHTS) for c in ckpts]
    keys = set(states[-1])
    for ckpt, state in zip(ckpts, states):
        if set(state) != keys:
            raise ValueError(f"cannot average {ckpt}: its tensors differ from those of {ckpts[-1]}")
    averaged = {}
    for key, newest in states[-1].items():
        if newest.is_floating_point():
            total = sum(s[key].to(torch.float64) for s in states)
            averaged[key] = (total / len(states)).to(newest.dtype)
        else:
            averaged[key] = newest
    logger.info("averaged %d checkpoints: %s", len(ckpts), ", ".join(c.name for c in ckpts))
    return averaged
