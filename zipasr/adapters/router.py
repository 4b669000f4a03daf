"""The language-aware router of Zipper-Hard/Soft (paper Sec. IV-E, Eqs. (16)-(18))."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class LanguageRouter(nn.Module):
    """p(l) = sigmoid(W_r · LayerNorm(e(l)) + b_r) ∈ [0, 1]^r for every language l.

    `lid_embeddings` (L, d_lid) is the fixed LID embedding table e(l), one row per language in the
    adapter's language order. It is a non-persistent buffer: the same tensor may be shared by all
    routers of a model, and `save_adapters` stores it once per checkpoint, not once per layer.
    """

    def __init__(self, lid_embeddings: Tensor, rank: int):
        super().__init__()
        if lid_embeddings.dim() != 2:
            raise ValueError(f"lid_embeddings must be (L, d_lid), got shape {tuple(lid_embeddings.shape)}")
        self.register_buffer("lid_embeddings", lid_embeddings.detach(), persistent=False)
        d_lid = lid_embeddings.shape[1]
        self.norm = nn.LayerNorm(d_lid)  # Eq. (16)
        self.proj = nn.Linear(d_lid, rank)  # W_r (r, d_lid), b_r (r,): Eq. (17)

    @property
    def lid_dim(self) -> int:
        return self.lid_embeddings.shape[1]

    def forward(self) -> Tensor:
        """(L, r): p(l) for all languages at once (tiny: L rows), gathered per sample by the caller."""
        e = self.lid_embeddings.to(self.proj.weight.dtype)
        return torch.sigmoid(self.proj(self.norm(e)))  # Eq. (18)
