"""Vanilla-LoRA: one A and one B shared by all languages (paper Eq. (7)); also the LLM-side LoRA."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from zipasr.adapters.base import AdapterLayer, LangState, kaiming_uniform_


class VanillaLoRA(AdapterLayer):
    """ΔW = α/r · B A with A (r, d_in) kaiming-uniform and B (d_out, r) zeros, as peft initialises them.

    It ignores the language, so `languages` may be empty and `lang_state` None (the LLM side).
    """

    method = "vanilla"
    needs_language = False

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str] = (),
        lang_state: LangState | None = None,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        self.lora_A = nn.Parameter(kaiming_uniform_(self.new_weight(rank, self.in_features)))  # (r, d_in)
        self.lora_B = nn.Parameter(self.new_weight(self.out_features, rank).zero_())  # (d_out, r)

    def adapter_forward(self, x: Tensor) -> Tensor:
        """x (B, N, d_in) -> α/r · x Aᵀ Bᵀ (B, N, d_out)."""
        z = F.linear(x, self.lora_A) * self.scaling  # (B, N, r); scale the rank-r code, the cheapest place
        return F.linear(z, self.lora_B)

    def delta_weight(self, lang: str | None = None) -> Tensor:
        """(d_out, d_in); the same for every language."""
        if lang is not None and self.languages:
            self.lang_index(lang)  # an unknown code is still an error
        return (self.lora_B @ self.lora_A) * self.scaling
