"""LoRS-Merging: low-rank and sparse model merging (Zhao, Sun & Zhang 2025, seed 003).

Per-language task vectors tau_l = W_l - W_0 (a language's fine-tuned weight minus the shared base)
are each pruned to a low-rank part plus a sparse residual, then merged by task arithmetic into one
language-independent update:

    tau_l       = L_l + R_l               L_l = truncated SVD of tau_l (k_l = ceil(rank_ratio * rank(tau_l)))
    prune(tau_l) = L_l + S_l              S_l = R_l with all but the (1 - sparsity) largest-|.| entries zeroed
    W           = W_0 + lambda * sum_l prune(tau_l)

The merged model needs no language at inference. The paper gives no code; the choices made here
(rank relative to each task vector's own numerical rank, one-shot "low-rank + sparse residual"
split, lambda = 1/L by default, 1-D tensors merged unpruned) are listed in docs/sibling_methods.md.

The math works on plain tensors (`prune_task_vector`, `lors_merge`) and on whole state dicts
(`lors_merge_state_dicts`: per-language full fine-tunes). `adapter_task_vectors` reads the
per-language delta weights of a model's encoder adapter layers (e.g. Independent-LoRA), and
`delta_to_lora` turns a merged update into the A, B factors of a Vanilla-style LoRA.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class LorsConfig:
    """Settings of one LoRS merge (a Stage-2 method "lors"). YAML keys equal these fields."""

    # Independent-LoRA (or any per-language adapter) Stage-2 experiment whose per-language delta
    # weights are the task vectors; its projector and LLM-side LoRA are carried over unchanged.
    source_exp: str = ""
    # Share of each task vector's own rank kept by truncated SVD, in (0, 1]. 1 = no low-rank pruning.
    rank_ratio: float = 0.25
    # Share of the residual tau - L zeroed by magnitude pruning, in [0, 1]. 0 = keep the whole
    # residual (then prune(tau) = tau), 1 = keep only the low-rank part.
    sparsity: float = 0.9
    # lambda of task arithmetic; None = 1 / number of languages (the merge is then an average).
    scale: float | None = None
    # Rank of the Vanilla-LoRA that stores the merged update per layer; None = exact (the rank of
    # the merged update). A smaller rank truncates the merged update by SVD (documented loss).
    out_rank: int | None = None
    # Vanilla-LoRA alpha of the stored adapter; None = the source adapter's alpha.
    out_alpha: float | None = None

    def __post_init__(self):
        check_lors_settings(self.rank_ratio, self.sparsity)
        if self.out_rank is not None and self.out_rank < 1:
            raise ValueError(f"lors out_rank must be >= 1 or null, got {self.out_rank}")


def check_lors_settings(rank_ratio: float, sparsity: float) -> None:
    if not 0.0 < rank_ratio <= 1.0:
        raise ValueError(f"lors rank_ratio must be in (0, 1], got {rank_ratio}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"lors sparsity must be in [0, 1], got {sparsity}")


def numerical_rank(singular_values: torch.Tensor, shape: tuple[int, int]) -> int:
    """Rank from descending singular values with numpy's default tolerance (max(m, n) * eps * s_max)."""
    if singular_values.numel() == 0 or singular_values[0] == 0:
        return 0
    tol = singular_values[0] * max(shape) * torch.finfo(singular_values.dtype).eps
    return int((singular_values > tol).sum())


def low_rank_part(tau: torch.Tensor, rank_ratio: float) -> torch.Tensor:
    """Truncated SVD of a task vector, keeping ceil(rank_ratio * rank(tau)) singular values.

    tau: (d_out, d_in). Returns (d_out, d_in), float32. When the kept rank is tau's whole rank,
    tau itself is returned (exact, no SVD round-off).
    """
    tau = tau.float()
    u, s, vh = torch.linalg.svd(tau, full_matrices=False)
    rank = numerical_rank(s, tuple(tau.shape))
    if rank == 0:
        return torch.zeros_like(tau)
    k = max(1, math.ceil(rank_ratio * rank))
    if k >= rank:
        return tau.clone()
    return (u[:, :k] * s[:k]) @ vh[:k]


def magnitude_prune(x: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the `sparsity` share of entries with the smallest |x| (exact count; ties broken by topk).

    x: any shape. Keeps round((1 - sparsity) * numel) entries.
    """
    n_keep = round((1.0 - sparsity) * x.numel())
    if n_keep >= x.numel():
        return x.clone()
    flat = x.reshape(-1)
    out = torch.zeros_like(flat)
    if n_keep > 0:
        idx = flat.abs().topk(n_keep, sorted=False).indices
        out[idx] = flat[idx]
    return out.reshape(x.shape)


def prune_task_vector(tau: torch.Tensor, rank_ratio: float, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRS pruning of one task vector: (low-rank part L, sparse residual S), each (d_out, d_in) float32.

    prune(tau) = L + S. Tensors with more than two dims (e.g. conv kernels (out, in, k)) are
    flattened to (out, in * k) for the SVD and reshaped back. A 1-D tensor (bias, LayerNorm) has
    no low-rank structure: it is returned whole as L, with S = 0.
    """
    check_lors_settings(rank_ratio, sparsity)
    if tau.dim() < 2:
        return tau.float().clone(), torch.zeros_like(tau, dtype=torch.float32)
    shape = tau.shape
    matrix = tau.reshape(shape[0], -1).float()
    low = low_rank_part(matrix, rank_ratio)
    sparse = magnitude_prune(matrix - low, sparsity)
    return low.reshape(shape), sparse.reshape(shape)


def lors_merge(
    task_vectors: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    rank_ratio: float,
    sparsity: float,
    scale: float | None = None,
) -> torch.Tensor:
    """Merged update lambda * sum_l (L_l + S_l) of one weight; float32, shape of the task vectors.

    task_vectors: one (d_out, d_in) tensor per language (a list, or a dict lang -> tensor).
    scale: lambda; None = 1 / len(task_vectors).
    """
    tvs = list(task_vectors.values()) if isinstance(task_vectors, Mapping) else list(task_vectors)
    if not tvs:
        raise ValueError("lors_merge needs at least one task vector")
    shape = tvs[0].shape
    for i, tv in enumerate(tvs):
        if tv.shape != shape:
            raise ValueError(f"task vector {i} has shape {tuple(tv.shape)}, expected {tuple(shape)}")
    lam = 1.0 / len(tvs) if scale is None else scale
    merged = torch.zeros(shape, dtype=torch.float32, device=tvs[0].device)
    for tv in tvs:
        low, sparse = prune_task_vector(tv, rank_ratio, sparsity)
        merged += low + sparse
    return lam * merged


def lors_merge_state_dicts(
    base: Mapping[str, torch.Tensor],
    finetuned: Mapping[str, Mapping[str, torch.Tensor]],
    rank_ratio: float,
    sparsity: float,
    scale: float | None = None,
) -> dict[str, torch.Tensor]:
    """Merge per-language full fine-tunes of one base model: W = W_0 + lambda * sum_l prune(W_l - W_0).

    base: name -> tensor. finetuned: lang -> (name -> tensor), each with exactly base's keys and
    shapes. Floating tensors are merged (in float32, returned in the base dtype); other tensors
    (integer buffers) must be equal in every model and are copied.
    """
    if not finetuned:
        raise ValueError("lors_merge_state_dicts needs at least one fine-tuned model")
    for lang, sd in finetuned.items():
        missing = sorted(set(base) - set(sd))
        extra = sorted(set(sd) - set(base))
        if missing or extra:
            raise KeyError(
                f"fine-tuned model of language {lang!r} does not match the base: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
            )
    merged = {}
    for name, w0 in base.items():
        if not torch.is_floating_point(w0):
            for lang, sd in finetuned.items():
                if not torch.equal(sd[name], w0):
                    raise ValueError(f"non-float tensor {name!r} differs in the model of language {lang!r}")
            merged[name] = w0.clone()
            continue
        taus = {}
        for lang, sd in finetuned.items():
            if sd[name].shape != w0.shape:
                raise ValueError(
                    f"{name!r}: shape {tuple(sd[name].shape)} in the model of language {lang!r}, "
                    f"base has {tuple(w0.shape)}"
                )
            taus[lang] = sd[name].float() - w0.float()
        merged[name] = (w0.float() + lors_merge(taus, rank_ratio, sparsity, scale)).to(w0.dtype)
    return merged


def adapter_task_vectors(model: nn.Module,
                         languages: Sequence[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Per-language task vectors of every adapter layer of `model`.

    Returns layer qualified name -> (lang -> delta_weight(lang), (d_out, d_in)). For per-language
    adapters (Independent-LoRA, Zipper) the delta weight is exactly the language's task vector
    relative to the frozen W_0. `languages` defaults to each layer's own language list.
    """
    from zipasr.adapters import AdapterLayer

    out = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, AdapterLayer):
                if not module.mergeable:
                    raise ValueError(
                        f"adapter layer {name!r} ({module.method}) has no per-language delta weight "
                        "(its update depends on the input), so it has no task vector"
                    )
                langs = list(module.languages) if languages is None else list(languages)
                out[name] = {lang: module.delta_weight(lang).detach().float() for lang in langs}
    if not out:
        raise ValueError("the model has no adapter layers: nothing to take task vectors from")
    return out


def delta_to_lora(delta: torch.Tensor, rank: int | None, alpha: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Factor an update into LoRA form: delta ~= alpha / r * B @ A.

    delta: (d_out, d_in). rank None = the numerical rank of delta (exact factorisation, at least 1).
    Returns (A (r, d_in), B (d_out, r), r). The singular values are split evenly (sqrt on each
    side) so that A and B have comparable norms, which keeps further training well conditioned.
    """
    delta = delta.float()
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    r = rank if rank is not None else max(1, numerical_rank(s, tuple(delta.shape)))
    r = min(r, s.numel())
    root = (s[:r] * (r / alpha)).sqrt()
    a = root[:, None] * vh[:r]
    b = u[:, :r] * root[None, :]
    return a, b, r


def lors_merge_encoder(model: nn.Module, cfg: LorsConfig) -> dict:
    """Replace the per-language encoder adapters of a SpeechLLM by one Vanilla-LoRA holding the LoRS
    merge of their task vectors, in place. Returns {"rank", "alpha", "layers": {name: stats}}.

    Every layer gets the same rank (a checkpoint has one): cfg.out_rank, or the largest numerical
    rank of the merged updates (exact; layers of lower rank get zero columns).
    """
    from zipasr.adapters import inject_adapters
    from zipasr.adapters.base import AdapterLayer
    from zipasr.sibling.common import replace_modules

    taus = adapter_task_vectors(model.encoder)
    first = next(m for m in model.encoder.modules() if isinstance(m, AdapterLayer))
    alpha = cfg.out_alpha if cfg.out_alpha is not None else first.alpha
    targets = first.target_modules
    merged, stats = {}, {}
    for name, per_lang in taus.items():
        delta = lors_merge(per_lang, cfg.rank_ratio, cfg.sparsity, cfg.scale)
        merged[name] = delta
        s = torch.linalg.svdvals(delta)
        stats[name] = {"rank": numerical_rank(s, tuple(delta.shape)),
                       "norm_ratio": float(delta.norm() / max(float(sum(t.norm() for t in per_lang.values())), 1e-30))}
    rank = cfg.out_rank or max(1, max(st["rank"] for st in stats.values()))
    replace_modules(model.encoder, AdapterLayer, lambda layer: layer.base_layer)
    names = inject_adapters(model.encoder, "vanilla", targets, model.languages, model.lang_state,
                            rank=rank, alpha=alpha)
    missing = sorted(set(merged) - set(names))
    if missing:
        raise RuntimeError(f"target modules {targets} did not re-wrap the merged layers {missing[:5]}")
    with torch.no_grad():
        for name in names:
            layer = model.encoder.get_submodule(name)
            a, b, r = delta_to_lora(merged[name], rank, alpha)
            layer.lora_A.zero_()
            layer.lora_B.zero_()
            layer.lora_A[:r].copy_(a)
            layer.lora_B[:, :r].copy_(b)
            stats[name]["max_error"] = float((layer.delta_weight() - merged[name]).abs().max())
    worst = max(st["max_error"] for st in stats.values())
    log.info("LoRS merge of %d layers (%d languages): Vanilla-LoRA rank %d, alpha %g; largest factorisation "
             "error %.3g", len(names), len(model.languages), rank, alpha, worst)
    return {"rank": rank, "alpha": alpha, "layers": stats}
