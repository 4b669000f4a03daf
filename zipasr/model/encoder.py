"""Whisper speech encoder E for any input length, full-context or segment-wise (paper Sec. IV-F, V-B).

HF's `WhisperEncoder.forward` insists on exactly 3000 mel frames (30 s) and ignores the attention
mask. `WhisperSpeechEncoder` reuses its modules in its own forward instead: conv1 -> GELU -> conv2
(stride 2) -> GELU, + the first T' rows of the positional table, the layers with a padding mask,
the final LayerNorm. At 3000 frames this is HF's own computation; shorter inputs are not padded to
30 s, and a padded batch gives the same result as each utterance alone.

Segment-wise ("chunked") regime: the mel frames of each utterance are cut into fixed-length segments
(no overlap), all segments of the batch are encoded as one batch of independent sequences (the last
segment of an utterance is shorter, handled by the padding mask), and each utterance's segment outputs
are concatenated in time. Adapter layers see a batch of segments, so the language ids bound to the
shared `LangState` are repeated per segment while the layers run.

Length grouping (`length_grouping=True`, what SpeechLLM asks for): a padded batch spends the encoder's work on
every padded frame, and the Speech-LLM's batches, packed by LLM tokens, mix utterances of 1 to 4 s (about
half of the frames were padding in the mini recipe's Stage 2). Such a batch is encoded in groups of
similar length, each padded to its own longest only (`length_groups()`); the result is the padded batch's
up to float rounding (BENCHMARKS.md, section 8, "Encoder length grouping").
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from zipasr.adapters.base import LangState

logger = logging.getLogger(__name__)

MEL_FRAMES_PER_SECOND = 100  # Whisper's 10 ms hop
ENCODER_DOWNSAMPLING = 2  # conv2 has stride 2
# What one more encoder call costs beyond its frames, in mel frames of work: the mini recipe's encoder
# (d=192, 4 layers, forward + backward, 1 thread) took ~30 ms + ~0.125 ms per padded frame.
GROUP_COST_FRAMES = 256


def check_checkpoint_dir(path: str | Path, what: str) -> Path:
    """A local checkpoint directory that exists and holds a config.json (clear error otherwise)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} checkpoint directory not found: {path}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what} checkpoint directory {path} has no config.json (not a transformers checkpoint)")
    return path


def lengths_to_mask(lens: Tensor, max_len: int) -> Tensor:
    """lens (B,) -> bool mask (B, max_len), True at valid positions."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def length_groups(lengths: list[int], cost: float = GROUP_COST_FRAMES) -> list[list[int]]:
    """Batch indices in groups of similar length, to encode each group padded to its own longest.

    lengths: B frame counts -> groups of indices into `lengths` (longest group first, each group's indices
    by descending length). The groups are the contiguous runs of the length-sorted batch that minimise
    sum over groups of (size x longest) + cost x (number of groups): the padded frames encoded plus a
    fixed price per call. Equal lengths, or a cost above the padding saved, give one group.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep batch order
    longest = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cheapest split of the first j sorted items
    start = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):  # the last group is sorted items i..j-1, padded to longest[i]
            total = best[i] + (j - i) * longest[i] + cost
            if total < best[j]:
                best[j], start[j] = total, i
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[start[j]:j])
        j = start[j]
    return groups[::-1]


def masked_mean(hidden: Tensor, lens: Tensor) -> Tensor:
    """Mean over the valid frames: hidden (B, T, d), lens (B,) -> (B, d) float32."""
    lens = lens.to(hidden.device)
    summed = (hidden.float() * lengths_to_mask(lens, hidden.shape[1])[..., None]).sum(1)
    return summed / lens.clamp(min=1)[:, None].float()


class WhisperSpeechEncoder(nn.Module):
    """Variable-length Whisper encoder.

    Args:
        whisper_encoder: a `transformers` WhisperEncoder whose weights are loaded (use `from_pretrained`).
        lang_state: the model's shared LangState (set by SpeechLLM); only needed in the segment-wise regime
            when language-aware adapters are inside the encoder.
        gradient_checkpointing: recompute each layer in backward (memory for Stage-1 training of the
            full encoder); the bound language ids are re-bound during the recomputation.
        length_grouping: encode a batch of mixed lengths in groups of similar length (module docstring);
            off: one batch padded to its longest utterance.
    """

    def __init__(self, whisper_encoder: nn.Module, lang_state: LangState | None = None,
                 gradient_checkpointing: bool = False, length_grouping: bool = False):
        super().__init__()
        self.whisper = whisper_encoder
        self.lang_state = lang_state
        self.gradient_checkpointing = gradient_checkpointing
        self.length_grouping = length_grouping

    @classmethod
    def from_pretrained(cls, whisper_dir: str | Path, dtype: torch.dtype | None = None,
                        attn_implementation: str | None = None, **kwargs) -> "WhisperSpeechEncoder":
        """Load the encoder of a local Whisper checkpoint (e.g. whisper-large-v3), no network.

        Loads the whole WhisperModel and keeps its encoder: `WhisperEncoder.from_pretrained` would not strip
        the `encoder.` prefix of the checkpoint keys and silently leave every weight random.
        """
        from transformers import WhisperModel

        whisper_dir = check_checkpoint_dir(whisper_dir, "Whisper")
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = WhisperModel.from_pretrained(str(whisper_dir), dtype=dtype, local_files_only=True, **extra)
        encoder = model.get_encoder()
        logger.info("Whisper encoder from %s: %d layers, d=%d, %d mel bins", whisper_dir,
                    len(encoder.layers), encoder.config.d_model, encoder.config.num_mel_bins)
        return cls(encoder, **kwargs)

    # ----------------------------------------------------------------- shapes
    @property
    def output_dim(self) -> int:
        return self.whisper.config.d_model

    @property
    def n_mels(self) -> int:
        return self.whisper.config.num_mel_bins

    @property
    def max_frames(self) -> int:
        """Longest input (mel frames) one sequence may have: the positional table holds 1500 rows = 30 s."""
        return self.whisper.embed_positions.num_embeddings * ENCODER_DOWNSAMPLING

    @staticmethod
    def output_lengths(feat_lens: Tensor) -> Tensor:
        """Encoder output frames for `feat_lens` mel frames: conv2 (k=3, s=2, p=1) gives ceil(T/2)."""
        return (feat_lens + 1) // 2

    # ----------------------------------------------------------------- forward
    def forward(self, feats: Tensor, feat_lens: Tensor, segment_frames: int | None = None) -> tuple[Tensor, Tensor]:
        """feats (B, n_mels, T), feat_lens (B,) -> hidden (B, ceil(T/2), d), lens (B,) = ceil(feat_lens/2).

        segment_frames: None or 0 = full context (each utterance at most 3000 frames); otherwise the
        segment length in mel frames (even, at most 3000) of the segment-wise regime.
        Positions beyond an utterance's length are zero in `hidden`.
        """
        if feats.dim() != 3 or feats.shape[1] != self.n_mels:
            raise ValueError(f"feats must be (B, {self.n_mels}, T), got {tuple(feats.shape)}")
        feat_lens = feat_lens.to(feats.device)
        if segment_frames:
            return self._forward_segments(feats, feat_lens, int(segment_frames))
        longest = int(feat_lens.max()) if feat_lens.numel() else 0
        if longest > self.max_frames:
            raise ValueError(
                f"an utterance of {longest} mel frames exceeds the encoder's {self.max_frames}-frame window; "
                "use the segment-wise regime (segment_frames) for long inputs"
            )
        return self._encode_grouped(feats[:, :, :longest], feat_lens)

    def _encode_grouped(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """`_encode` of the whole batch, or (length_grouping) of each length group, scattered back into
        (B, ceil(T/2), d) zero-padded; each group runs with its own utterances' bound language ids."""
        groups = length_groups(feat_lens.tolist()) if self.length_grouping and feats.shape[0] > 1 else []
        if len(groups) <= 1:
            return self._encode(feats, feat_lens)
        ids = self._bound_ids()
        out_lens = self.output_lengths(feat_lens)
        T_out = int(out_lens.max())
        pieces = []
        for group in groups:
            index = torch.tensor(group, device=feats.device)
            lens = feat_lens[index]
            with self.lang_state.bound(ids[index.to(ids.device)]) if ids is not None else nullcontext():
                h, _ = self._encode(feats[index, :, :int(lens.max())], lens)
            pieces.append(nn.functional.pad(h, (0, 0, 0, T_out - h.shape[1])))
        # the groups' rows are in sorted order: put each utterance back at its place in the batch
        order = torch.tensor([i for group in groups for i in group], device=feats.device)
        return torch.cat(pieces)[order.argsort()], out_lens

    def _encode(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Full-context encoding of a padded batch: (B, n_mels, T) -> (B, ceil(T/2), d), lens."""
        enc = self.whisper
        dtype = enc.conv1.weight.dtype
        T = feats.shape[-1]
        in_mask = lengths_to_mask(feat_lens, T)  # (B, T)
        # Zero the padding so that conv windows at an utterance's end see what a single run sees (zeros).
        x = feats.to(dtype) * in_mask[:, None, :].to(dtype)
        x = nn.functional.gelu(enc.conv1(x))
        x = x * in_mask[:, None, :].to(dtype)  # conv1 output past the end must read as conv2's zero padding
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # (B, T', d)
        T_out = x.shape[1]
        out_lens = self.output_lengths(feat_lens)
        out_mask = lengths_to_mask(out_lens, T_out)  # (B, T')
        h = x + enc.embed_positions.weight[:T_out].to(dtype)
        h = nn.functional.dropout(h, p=enc.dropout, training=self.training)

        attn_mask = None
        if not bool(out_mask.all()):
            # additive mask over keys, (B, 1, T', T'): works for eager and sdpa attention
            attn_mask = torch.zeros(out_mask.shape, dtype=dtype, device=h.device)
            attn_mask.masked_fill_(~out_mask, torch.finfo(dtype).min)
            attn_mask = attn_mask[:, None, None, :].expand(-1, 1, T_out, -1)

        for layer in enc.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(self._run_layer, layer, h, attn_mask, self._bound_ids(), use_reentrant=False)
            else:
                h = layer(h, attn_mask)
        h = enc.layer_norm(h)
        return h * out_mask[..., None].to(h.dtype), out_lens

    def _bound_ids(self) -> Tensor | None:
        return self.lang_state.lang_ids if self.lang_state is not None else None

    def _run_layer(self, layer: nn.Module, h: Tensor, attn_mask: Tensor | None, lang_ids: Tensor | None) -> Tensor:
        # Under non-reentrant checkpointing this also runs in backward, outside the caller's `bound()`.
        ctx = self.lang_state.bound(lang_ids) if lang_ids is not None else nullcontext()
        with ctx:
            return layer(h, attn_mask)

    def _forward_segments(self, feats: Tensor, feat_lens: Tensor, segment_frames: int) -> tuple[Tensor, Tensor]:
        if segment_frames % ENCODER_DOWNSAMPLING or segment_frames <= 0 or segment_frames > self.max_frames:
            raise ValueError(
                f"segment_frames must be even and in (0, {self.max_frames}], got {segment_frames}"
            )
        seg_feats, seg_lens, counts = split_segments(feats, feat_lens, segment_frames)
        ids = self._bound_ids()
        if ids is not None:
            if ids.shape[0] != feats.shape[0]:
                raise RuntimeError(f"{ids.shape[0]} lang_ids are bound for a batch of {feats.shape[0]} utterances")
            # every segment keeps the language of its utterance
            ctx = self.lang_state.bound(ids.repeat_interleave(counts.to(ids.device)))
        else:
            ctx = nullcontext()
        with ctx:
            seg_hidden, seg_out_lens = self._encode_grouped(seg_feats, seg_lens)
        return merge_segments(seg_hidden, seg_out_lens, counts)

    @torch.no_grad()
    def utterance_embeddings(self, feats: Tensor, feat_lens: Tensor, segment_frames: int | None = None) -> Tensor:
        """Utterance-level mean of the encoder outputs over valid frames: (B, n_mels, T) -> (B, d).

        Used for the `acoustic` LID embeddings and the t-SNE of encoder outputs (paper Fig. 8).
        """
        return masked_mean(*self(feats, feat_lens, segment_frames))


def split_segments(feats: Tensor, feat_lens: Tensor, segment_frames: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cut each utterance into consecutive non-overlapping segments of `segment_frames` mel frames.

    feats (B, n_mels, T), feat_lens (B,) -> segments (N, n_mels, segment_frames), segment lengths (N,),
    counts (B,) segments per utterance (at least 1; utterance order, then time order).
    """
    counts = ((feat_lens + segment_frames - 1) // segment_frames).clamp(min=1)
    segments, lens = [], []
    for b in range(feats.shape[0]):
        length = int(feat_lens[b])
        for start in range(0, max(length, 1), segment_frames):
            stop = min(start + segment_frames, length)
            piece = feats[b, :, start:stop]
            segments.append(nn.functional.pad(piece, (0, segment_frames - piece.shape[-1])))
            lens.append(stop - start)
    return torch.stack(segments), torch.tensor(lens, device=feats.device), counts


def merge_segments(seg_hidden: Tensor, seg_lens: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate each utterance's segment outputs in time: (N, S', d) -> (B, T', d) zero-padded, lens (B,)."""
    pieces = [seg_hidden[i, : int(seg_lens[i])] for i in range(seg_hidden.shape[0])]
    utterances, start = [], 0
    for count in counts.tolist():
        utterances.append(torch.cat(pieces[start:start + count], dim=0))
        start += count
    lens = torch.tensor([u.shape[0] for u in utterances], device=seg_hidden.device)
    return nn.utils.rnn.pad_sequence(utterances, batch_first=True), lens
