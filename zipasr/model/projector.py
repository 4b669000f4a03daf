"""Modality projector P: encoder frames -> LLM embeddings (paper Sec. V-B).

The paper's gated projection: two Conv1d (kernel 4, stride 4) give a gate and an up branch, fused as
SiLU(gate) * up; then a linear layer with a residual connection and LayerNorm; then a final linear
projection to the LLM width. Stride 4 on top of Whisper's own 2x gives 8x: 100 Hz mel frames become
12.5 Hz LLM inputs.

Projectors are chosen by name from `PROJECTORS`; each takes (d_enc, d_llm, hidden) and maps
(B, S, d_enc), lens (B,) -> (B, S_out, d_llm), lens_out (B,).
"""
from __future__ import annotations

from torch import Tensor, nn

from zipasr.model.encoder import lengths_to_mask


class GatedConvProjector(nn.Module):
    """(B, S, d_enc), lens (B,) -> (B, ceil(S/4), d_llm), ceil(lens/4).

    hidden: width of the gated branches and the residual block (default: d_llm).
    """

    def __init__(self, d_enc: int, d_llm: int, hidden: int | None = None, stride: int = 4):
        super().__init__()
        hidden = hidden or d_llm
        self.stride = stride
        self.gate = nn.Conv1d(d_enc, hidden, kernel_size=stride, stride=stride)
        self.up = nn.Conv1d(d_enc, hidden, kernel_size=stride, stride=stride)
        self.linear = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, d_llm)

    def output_lengths(self, lens: Tensor) -> Tensor:
        return (lens + self.stride - 1) // self.stride

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        dtype = self.gate.weight.dtype
        S = x.shape[1]
        # Zero the padding (so a window at an utterance's end sees what a single run sees) and pad S to a
        # multiple of the stride, so the last partial window is kept: ceil(S/4) outputs.
        x = x.to(dtype) * lengths_to_mask(lens, S)[..., None].to(dtype)
        x = nn.functional.pad(x.transpose(1, 2), (0, (-S) % self.stride))  # (B, d_enc, S_pad)
        h = nn.functional.silu(self.gate(x)) * self.up(x)  # (B, hidden, S_out)
        h = h.transpose(1, 2)
        h = self.norm(h + self.linear(h))
        out_lens = self.output_lengths(lens)
        out = self.out(h)
        return out * lengths_to_mask(out_lens, out.shape[1])[..., None].to(out.dtype), out_lens


PROJECTORS: dict[str, type[nn.Module]] = {"gated_conv": GatedConvProjector}


def build_projector(name: str, d_enc: int, d_llm: int, hidden: int | None = None, stride: int = 4) -> nn.Module:
    """The projector registered as `name` (error lists the known names). stride 4 is the paper's (12.5 Hz)."""
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector {name!r}; known: {', '.join(sorted(PROJECTORS))}")
    return PROJECTORS[name](d_enc, d_llm, hidden, stride=stride)
