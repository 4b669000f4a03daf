"""Zipper-LoRA (paper Sec. IV): a shared A and an up projection B_merged(l) zipped rank-wise from a
shared bank and a language-specific bank.

    ΔW(l) = α/r · B_merged(l) A                                              (10)
    Static: B_merged(l) = [B_shared, B_spec(l)]                              (11)
    Hard:   s(l) = 1[p(l) ≥ τ];  B_merged(l) = Zip(B_shared, B_spec(l), s)   (12), (13)
    Soft:   B_merged(l) = B_shared diag(1 − p(l)) + B_spec(l) diag(p(l))     (14), (15)
    p(l) from the router, Eqs. (16)-(18) (router.py).

Forward never builds a per-token weight: z = α/r · x Aᵀ is the rank-r code (B, N, r), B_merged is
built once per sample (B, d_out, r), and one batched matmul gives z B_merged(l_b)ᵀ.

Resolved paper ambiguity (design.md): Sec. IV-C's text says column i of B_merged comes from B_spec
when s_i = 0, which contradicts Eq. (14), where p is the share of the language-specific bank. zipasr
takes column i from B_spec(l) where s_i = 1 and from B_shared where s_i = 0, so Hard is Soft with p
binarised.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zipasr.adapters.base import AdapterLayer, LangState, kaiming_uniform_
from zipasr.adapters.router import LanguageRouter


class _Zipper(AdapterLayer):
    """Shared A (r, d_in), kaiming-uniform; subclasses define B_merged(l) (`b_merged`)."""

    def __init__(self, base_layer, languages, lang_state, rank, alpha, dropout):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        self.lora_A = nn.Parameter(kaiming_uniform_(self.new_weight(rank, self.in_features)))

    @abstractmethod
    def b_merged(self, lang_ids: Tensor) -> Tensor:
        """lang_ids (B,) -> B_merged(l_b) for each sample, (B, d_out, r)."""

    def adapter_forward(self, x: Tensor) -> Tensor:
        """x (B, N, d_in) -> α/r · x Aᵀ B_merged(l_b)ᵀ, (B, N, d_out)."""
        ids = self.current_lang_ids(x.shape[0], x.device)
        z = F.linear(x, self.lora_A) * self.scaling  # (B, N, r)
        return torch.bmm(z, self.b_merged(ids).transpose(1, 2))

    def delta_weight(self, lang: str | None = None) -> Tensor:
        """Eq. (10): (d_out, d_in) = α/r · B_merged(lang) A."""
        ids = torch.tensor([self.lang_index(lang)], device=self.lora_A.device)
        return (self.b_merged(ids)[0] @ self.lora_A) * self.scaling

    def _spec_bank(self, n_cols: int) -> nn.Parameter:
        """B_spec: one (d_out, n_cols) bank per language, zeros: (L, d_out, n_cols)."""
        return nn.Parameter(self.new_weight(len(self.languages), self.out_features, n_cols).zero_())


class ZipperStatic(_Zipper):
    """Zipper-LoRA-Static: r_s shared columns and r_p language-specific columns, r_s + r_p = r."""

    method = "zipper_static"

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str],
        lang_state: LangState,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
        r_s: int | None = None,
        r_p: int | None = None,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        r_s = rank // 2 if r_s is None else r_s
        r_p = rank - r_s if r_p is None else r_p
        if r_s < 0 or r_p < 0 or r_s + r_p != rank:
            raise ValueError(f"zipper_static needs r_s + r_p = rank, got r_s={r_s}, r_p={r_p}, rank={rank}")
        self.r_s, self.r_p = r_s, r_p
        self.B_shared = nn.Parameter(self.new_weight(self.out_features, r_s).zero_())  # (d_out, r_s)
        self.B_spec = self._spec_bank(r_p)  # (L, d_out, r_p)

    def method_kwargs(self) -> dict:
        return {"r_s": self.r_s, "r_p": self.r_p}

    def b_merged(self, lang_ids: Tensor) -> Tensor:
        shared = self.B_shared.expand(lang_ids.shape[0], -1, -1)
        return torch.cat([shared, self.B_spec[lang_ids]], dim=-1)  # Eq. (11)


class _RoutedZipper(_Zipper):
    """Zipper-Hard/Soft: B_shared (d_out, r), B_spec (L, d_out, r) and a router over e(l)."""

    def __init__(self, base_layer, languages, lang_state, rank, alpha, dropout, lid_embeddings: Tensor):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        if lid_embeddings is None or lid_embeddings.dim() != 2 or lid_embeddings.shape[0] != len(self.languages):
            shape = None if lid_embeddings is None else tuple(lid_embeddings.shape)
            raise ValueError(
                f"{self.method} needs lid_embeddings of shape (L={len(self.languages)}, d_lid), one row per "
                f"language in the order {self.languages}; got {shape}"
            )
        self.B_shared = nn.Parameter(self.new_weight(self.out_features, rank).zero_())  # (d_out, r)
        self.B_spec = self._spec_bank(rank)  # (L, d_out, r)
        self.router = LanguageRouter(lid_embeddings, rank).to(device=self.lora_A.device, dtype=self.lora_A.dtype)

    @abstractmethod
    def gate(self) -> Tensor:
        """(L, r): the rank-wise share of the language-specific bank for every language."""

    def b_merged(self, lang_ids: Tensor) -> Tensor:
        g = self.gate()[lang_ids].unsqueeze(1)  # (B, 1, r), broadcast over d_out: diag(g) on the right
        return self.B_shared * (1 - g) + self.B_spec[lang_ids] * g  # Eq. (14) / Zip of Eq. (13)


class ZipperHard(_RoutedZipper):
    """Zipper-LoRA-Hard: column i from B_spec(l) where s_i = 1[p_i ≥ τ] = 1, else from B_shared.

    Forward uses the binary mask s; backward passes the gradient of s straight through to p (STE).
    """

    method = "zipper_hard"

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str],
        lang_state: LangState,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
        lid_embeddings: Tensor | None = None,
        tau: float = 0.5,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout, lid_embeddings)
        self.tau = float(tau)

    def method_kwargs(self) -> dict:
        return {"tau": self.tau}

    def gate(self) -> Tensor:
        p = self.router()  # (L, r), Eq. (18)
        s = (p >= self.tau).to(p.dtype)  # Eq. (12)
        return s + (p - p.detach())  # value exactly s (the bracket is 0), gradient d/dp = 1: straight-through


class ZipperSoft(_RoutedZipper):
    """Zipper-LoRA-Soft: B_merged(l) = B_shared diag(1 − p(l)) + B_spec(l) diag(p(l))."""

    method = "zipper_soft"

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str],
        lang_state: LangState,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
        lid_embeddings: Tensor | None = None,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout, lid_embeddings)

    def gate(self) -> Tensor:
        return self.router()  # p(l), Eq. (18)
