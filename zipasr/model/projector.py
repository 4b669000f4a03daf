"""Modality projector P: encoder frames -> LLM embeddings (paper Sec. V-B).

The paper's gated projection: two Conv1d (kernel 4, stride 4) give a gate and an up branch, fused as
SiLU(gate) * up; then a linear layer with a residual connection and LayerNorm; then a final linear
projection to the LLM width. Stride 4 on top of Whisper's own 2x gives 8x: 100 Hz mel frames become
12.5 Hz LLM inputs.

`CTCCompressProjector` ("ctc_compress") is NOT the paper's: an option for encoders that carry a
character CTC head (the mini recipe's), which gives one LLM input per predicted character.

Projectors are chosen by name from `PROJECTORS`; each takes (d_enc, d_llm, hidden, stride, encoder_dir)
and maps (B, S, d_enc), lens (B,) -> (B, S_out, d_llm), lens_out (B,).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from zipasr.model.ctc import CTC_HEAD_FILE
from zipasr.model.encoder import lengths_to_mask



class GatedConvProjector(nn.Module):
    """(B, S, d_enc), lens (B,) -> (B, ceil(S/4), d_llm), ceil(lens/4).

    hidden: width of the gated branches and the residual block (default: d_llm).
    """

    def __init__(self, d_enc: int, d_llm: int, hidden: int | None = None, stride: int = 4,
                 encoder_dir: str | Path | None = None):
        super().__init__()  # encoder_dir: not used (the registry's common signature)
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


class CTCCompressProjector(nn.Module):
    """CTC compression (not the paper's): (B, S, d_enc), lens (B,) -> (B, N_max + 2, d_llm), N + 2.

    The encoder's character CTC head (fixed: its argmax only cuts the frames, no gradient reaches it)
    labels every frame; blank frames are dropped and each run of consecutive frames with the same label
    is averaged into one vector, so an utterance gives N vectors, ~one per spoken character (CTC's own
    collapse: a repeated character is split by a blank). An MLP maps them to the LLM width and adds
    `label_embed[label]`, a fixed table (zeros unless `set_label_embeddings` fills it with the LLM's
    embedding of each label's character: the output then starts as the exact input of the LLM's copy
    task and the MLP adds what the audio says beyond the label). Learnt begin and end vectors frame
    them: the layout `▁ characters <sep>` of the mini LLM's copy pretraining (a sentencepiece text
    starts with the word-boundary piece). An utterance with no non-blank frame gives the mean of all
    its frames (N = 1).

    stride is not used (the output rate is the predicted characters'); encoder_dir must hold the CTC
    head (`CTC_HEAD_FILE`, as `zipasr.bin.pretrain_encoder` writes it; a real Whisper has none).
    """

    def __init__(self, d_enc: int, d_llm: int, hidden: int | None = None, stride: int = 4,
                 encoder_dir: str | Path | None = None):
        super().__init__()
        head_file = Path(encoder_dir) / CTC_HEAD_FILE if encoder_dir else None
        if head_file is None or not head_file.is_file():
            raise FileNotFoundError(
                f"projector ctc_compress needs the encoder's CTC head {head_file or CTC_HEAD_FILE} "
                "(written by zipasr.bin.pretrain_encoder; a Whisper checkpoint has none)")
        head = load_file(str(head_file))
        if head["weight"].shape[1] != d_enc:
            raise ValueError(f"{head_file}: CTC head of width {head['weight'].shape[1]}, the encoder's is {d_enc}")
        # buffers: saved and loaded with the projector, never trained
        self.register_buffer("head_weight", head["weight"].float().clone())  # (V, d_enc)
        self.register_buffer("head_bias", head["bias"].float().clone())  # (V,)
        self.register_buffer("label_embed", torch.zeros(head["weight"].shape[0], d_llm))  # (V, d_llm)
        hidden = hidden or d_llm
        self.mlp = nn.Sequential(nn.Linear(d_enc, hidden), nn.GELU(), nn.Linear(hidden, d_llm))
        self.begin = nn.Parameter(torch.zeros(d_llm))
        self.end = nn.Parameter(torch.zeros(d_llm))

    @torch.no_grad()
    def set_label_embeddings(self, table: Tensor, begin: Tensor | None = None, end: Tensor | None = None) -> None:
        """label_embed := table (V, d_llm); the MLP's last layer is zeroed, so that the output is exactly
        table[label] (and `begin`, `end`, (d_llm,), for the begin and end vectors) until training moves it."""
        if table.shape != self.label_embed.shape:
            raise ValueError(f"label embeddings of shape {tuple(table.shape)}, expected {tuple(self.label_embed.shape)}")
        self.label_embed.copy_(table)
        self.mlp[-1].weight.zero_()
        self.mlp[-1].bias.zero_()
        if begin is not None:
            self.begin.copy_(begin)
        if end is not None:
            self.end.copy_(end)

    def segments(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The cut: x (B, S, d_enc), lens (B,) -> labels (B, S) (0 = blank or padding), keep (B, S) bool
        (frames that enter a segment), seg (B, S) segment index of each kept frame, n (B,) segments."""
        valid = lengths_to_mask(lens, x.shape[1])
        # fp32 even under autocast: the cut must not depend on the compute dtype (training vs decoding)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            labels = nn.functional.linear(x.detach().float(), self.head_weight, self.head_bias).argmax(-1)
        labels = labels.masked_fill(~valid, 0)
        keep = labels != 0
        previous = nn.functional.pad(labels, (1, 0))[:, :-1]
        starts = keep & (labels != previous)
        seg = starts.long().cumsum(1) - 1
        n = starts.sum(1)
        empty = n == 0  # nothing predicted: one segment of all valid frames
        keep = torch.where(empty[:, None], valid, keep)
        seg = torch.where(empty[:, None], torch.zeros_like(seg), seg)
        return labels, keep, seg, torch.where(empty, torch.ones_like(n), n)

    BEGIN, END = -2, -1  # output_labels of the begin and end vectors

    @staticmethod
    def _segment_labels(labels: Tensor, keep: Tensor, seg: Tensor, n: Tensor) -> Tensor:
        """(B, N_max) label of each segment, -1 after the last one."""
        B, n_max = labels.shape[0], int(n.max())
        idx = (torch.arange(B, device=labels.device)[:, None] * n_max + seg)[keep]
        out = torch.full((B * n_max,), -1, dtype=torch.long, device=labels.device)
        out[idx] = labels[keep]
        return out.view(B, n_max)

    def output_labels(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """The CTC label behind each output vector: (B, N_max + 2), BEGIN first, END after the last
        segment and at the padding (label 0 for an utterance with no non-blank frame); lens (B,) = N + 2."""
        labels, keep, seg, n = self.segments(x, lens)
        seg_labels = self._segment_labels(labels, keep, seg, n)
        out = torch.cat([torch.full_like(seg_labels[:, :1], self.BEGIN), seg_labels,
                         torch.full_like(seg_labels[:, :1], self.END)], dim=1)
        return out.masked_fill(out == -1, self.END), n + 2

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        labels, keep, seg, n = self.segments(x, lens)
        B, d = x.shape[0], x.shape[-1]
        n_max = int(n.max())
        seg_labels = self._segment_labels(labels, keep, seg, n)  # (B, N_max)
        idx = (torch.arange(B, device=x.device)[:, None] * n_max + seg)[keep]  # (K,) flat segment of each kept frame
        sums = x.new_zeros(B * n_max, d, dtype=torch.float32).index_add_(0, idx, x[keep].float())
        counts = x.new_zeros(B * n_max, dtype=torch.float32).index_add_(0, idx, x.new_ones(idx.shape[0], dtype=torch.float32))
        means = (sums / counts.clamp(min=1)[:, None]).view(B, n_max, d)
        dtype = self.mlp[0].weight.dtype
        out = self.mlp(means.to(dtype))  # (B, N_max, d_llm)
        out = out + self.label_embed[seg_labels.clamp(min=0)].to(out.dtype)
        out = out * lengths_to_mask(n, n_max)[..., None].to(out.dtype)
        begin = self.begin.to(out.dtype).expand(B, 1, -1)
        out = torch.cat([begin, out, out.new_zeros(B, 1, out.shape[-1])], dim=1)  # room for the end vector
        end_mask = nn.functional.one_hot(n + 1, n_max + 2).to(out.dtype)[..., None]  # (B, N_max + 2, 1) at N + 1
        return out + end_mask * self.end.to(out.dtype), n + 2


PROJECTORS: dict[str, type[nn.Module]] = {"gated_conv": GatedConvProjector, "ctc_compress": CTCCompressProjector}


def build_projector(name: str, d_enc: int, d_llm: int, hidden: int | None = None, stride: int = 4,
                    encoder_dir: str | Path | None = None) -> nn.Module:
    """The projector registered as `name` (error lists the known names). stride 4 is the paper's (12.5 Hz);
    encoder_dir: the encoder checkpoint, for projectors that read its files (ctc_compress: the CTC head)."""
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector {name!r}; known: {', '.join(sorted(PROJECTORS))}")
    return PROJECTORS[name](d_enc, d_llm, hidden, stride=stride, encoder_dir=encoder_dir)
