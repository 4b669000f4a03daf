"""FlyLoRA (paper Sec. III-B, Eq. (9)): an implicit rank-wise mixture of experts.

A is random, sparse and frozen; it both projects the input and routes it: the scores y = A x + d
pick the top-k of the r ranks for each token, and only those ranks' columns of B contribute:

    ΔW x = α/r Σ_{i ∈ topk(A x + d)} b_i a_iᵀ x                            (9)

d is a load-balancing bias, not trained by gradient: in training mode each forward moves it by
d += u · sign(mean(c) − c), with c the number of tokens that selected each rank, so under-used ranks
become more likely to be picked. The update depends on the token, so FlyLoRA cannot be merged.
Under gradient checkpointing the forward runs again in backward; that recomputation routes with the
bias of the original forward and does not update d, so d moves exactly once per real forward.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from zipasr.adapters.base import AdapterLayer, LangState


class FlyLoRA(AdapterLayer):
    """A (r, d_in): each row has round(d_in · k / r) non-zeros drawn from N(0, 1/r) at random positions
    (a frozen buffer, saved in checkpoints); B (d_out, r) zeros, trained; d (r,) balance bias buffer.

    Args (beyond AdapterLayer's): k: active ranks per token; bias_update_rate: u;
        seed: seed of A's random pattern and values (None: the global torch RNG).
    """

    method = "flylora"
    mergeable = False
    needs_language = False

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str] = (),
        lang_state: LangState | None = None,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
        k: int = 8,
        bias_update_rate: float = 1e-3,
        seed: int | None = None,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        if not 0 < k <= rank:
            raise ValueError(f"flylora needs 0 < k <= rank, got k={k}, rank={rank}")
        self.k = k
        self.bias_update_rate = float(bias_update_rate)
        self.seed = seed
        a = self._sparse_random_a(rank, self.in_features, k, seed)
        self.register_buffer("lora_A", self.new_weight(rank, self.in_features).copy_(a))  # frozen: a buffer
        self.lora_B = nn.Parameter(self.new_weight(self.out_features, rank).zero_())
        self.register_buffer("balance_bias", self.new_weight(rank).zero_())
        # d as routed by the last real training forward, (r,), for its recomputation in backward; one
        # snapshot suffices because each layer runs once per forward and backward precedes the next one.
        self._routing_bias: Tensor | None = None

    def _apply(self, fn, recurse=True):
        # Keep d in float32 when the model is cast to bf16/fp16 (DeepSpeed bf16 does that): its
        # u = 1e-3 steps would vanish next to |d| ~ 1 at bf16's 8-bit mantissa.
        super()._apply(fn, recurse)
        if self.balance_bias.is_floating_point() and self.balance_bias.dtype != torch.float32:
            self.balance_bias = self.balance_bias.float()
        return self

    @staticmethod
    def _sparse_random_a(rank: int, d_in: int, k: int, seed: int | None) -> Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        n_nonzero = max(1, round(d_in * k / rank))  # density k/r per row
        cols = torch.rand(rank, d_in, generator=gen).argsort(dim=1)[:, :n_nonzero]
        values = torch.randn(rank, n_nonzero, generator=gen) / math.sqrt(rank)  # N(0, 1/r)
        return torch.zeros(rank, d_in).scatter_(1, cols, values)

    def method_kwargs(self) -> dict:
        # No seed: A itself is saved, and inject_adapters gives every layer its own seed.
        return {"k": self.k, "bias_update_rate": self.bias_update_rate}

    def topk_mask(self, z: Tensor, bias: Tensor | None = None) -> Tensor:
        """z = A x (..., r) -> (..., r) with 1 at the k ranks of highest score A x + d, else 0.

        bias: d (r,) to route with; None: the current balance_bias.
        """
        d = self.balance_bias if bias is None else bias
        top = (z + d).topk(self.k, dim=-1).indices
        return torch.zeros_like(z).scatter_(-1, top, 1.0)

    def adapter_forward(self, x: Tensor) -> Tensor:
        """x (B, N, d_in) -> α/r · (mask ⊙ x Aᵀ) Bᵀ, (B, N, d_out)."""
        z = F.linear(x, self.lora_A)  # (B, N, r): projection and routing scores at once
        if not self.training:
            mask = self.topk_mask(z.detach())
        elif torch._C._current_graph_task_id() != -1 and self._routing_bias is not None:
            # A forward run by the autograd engine is a gradient-checkpointing recomputation
            # (torch.utils.checkpoint itself tells recomputation by this graph-task id; there is no
            # public flag): d was already updated by the real forward, so neither update it again nor
            # route with the new d, which would give gradients of a routing the output never used.
            mask = self.topk_mask(z.detach(), self._routing_bias)
        else:
            self._routing_bias = self.balance_bias.clone()  # _balance changes d in place
            mask = self.topk_mask(z.detach(), self._routing_bias)
            self._balance(mask)
        return F.linear(z * (mask * self.scaling), self.lora_B)

    @torch.no_grad()
    def _balance(self, mask: Tensor) -> None:
        counts = mask.sum(dim=tuple(range(mask.dim() - 1)))  # c: tokens per rank, (r,)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)  # every rank of a data-parallel job keeps the same d
        self.balance_bias += self.bias_update_rate * torch.sign(counts.mean() - counts)

    def delta_weight(self, lang: str | None = None) -> Tensor:
        raise RuntimeError(
            "flylora has no single delta weight: which ranks are active depends on each input token"
        )
