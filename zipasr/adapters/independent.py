"""Independent-LoRA: a separate A(l), B(l) for every language (paper Eq. (8)); no sharing."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from zipasr.adapters.base import AdapterLayer, LangState, kaiming_uniform_


class IndependentLoRA(AdapterLayer):
    """ΔW(l) = α/r · B(l) A(l); A (L, r, d_in) kaiming-uniform per language, B (L, d_out, r) zeros."""

    method = "independent"

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str],
        lang_state: LangState,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        n_lang = len(self.languages)
        self.lora_A = nn.Parameter(kaiming_uniform_(self.new_weight(n_lang, rank, self.in_features)))
        self.lora_B = nn.Parameter(self.new_weight(n_lang, self.out_features, rank).zero_())

    def adapter_forward(self, x: Tensor) -> Tensor:
        """x (B, N, d_in) -> (B, N, d_out); sample b uses A(l_b), B(l_b)."""
        ids = self.current_lang_ids(x.shape[0], x.device)
        z = torch.bmm(x, self.lora_A[ids].transpose(1, 2)) * self.scaling  # (B, N, r)
        return torch.bmm(z, self.lora_B[ids].transpose(1, 2))

    def delta_weight(self, lang: str | None = None) -> Tensor:
        i = self.lang_index(lang)
        return (self.lora_B[i] @ self.lora_A[i]) * self.scaling
