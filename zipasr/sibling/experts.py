"""LoRA language experts (Li et al., Interspeech 2025, seed 004): fusion and knowledge distillation.

One LoRA expert per language is exactly an Independent-LoRA adapter: expert k has A_k (r, d_in) and
B_k (d_out, r), ΔW_k = α/r · B_k A_k. Two ways to use the experts:

(a) Expert fusion (method "experts_fusion", language-aware). Each language l runs a weighted
    combination of all experts,

        ΔW_fused(l) = Σ_k F[l, k] ΔW_k,        F (L, L) learnable, initialised to the identity,

    so that at initialisation (and for a one-hot row) it is the language's own expert, and training
    F (experts frozen) lets a language borrow from related experts. Language-agnostic decoding uses
    the row of the predicted language (zipasr.sibling.lid_classifier.predict_languages).

(b) Knowledge distillation (method "experts_kd", language-agnostic). A Vanilla-LoRA student on the
    same layers learns to reproduce the experts (the teacher, each sample through its own language's
    expert): either on the LLM's token distributions (KL, `token_kl`) or on each adapter layer's
    output (MSE, the adapter-level version). The student needs no language at inference.

The paper publishes no code; the choices (identity-initialised per-layer fusion matrix, hard
language decision, shared projector/LLM-LoRA frozen during KD, SVD-of-the-mean student init) are
listed in docs/sibling_methods.md.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zipasr.adapters.base import AdapterLayer, LangState
from zipasr.adapters.independent import IndependentLoRA
from zipasr.adapters.lora import VanillaLoRA
from zipasr.sibling.common import replace_modules, train_parameters

log = logging.getLogger(__name__)


def fused_delta(deltas: Tensor | Mapping[str, Tensor] | Sequence[Tensor], weights: Tensor) -> Tensor:
    """Σ_k w_k ΔW_k. deltas: (L, d_out, d_in) (or L tensors (d_out, d_in)), weights (L,) -> (d_out, d_in)."""
    if isinstance(deltas, Mapping):
        deltas = list(deltas.values())
    if not isinstance(deltas, Tensor):
        deltas = torch.stack(list(deltas))
    if weights.shape != (deltas.shape[0],):
        raise ValueError(f"weights must be ({deltas.shape[0]},) for {deltas.shape[0]} experts, "
                         f"got {tuple(weights.shape)}")
    return torch.einsum("l,lod->od", weights.to(deltas.dtype), deltas)


class ExpertFusionLoRA(AdapterLayer):
    """Frozen per-language LoRA experts fused per language by a learnable (L, L) matrix.

    Tensors: lora_A (L, r, d_in) and lora_B (L, d_out, r) are the experts (the same names and shapes
    as IndependentLoRA, frozen); fusion (L, L), row l = the expert weights of language l, identity
    at initialisation. Sample b of language l_b gets Σ_k fusion[l_b, k] α/r B_k A_k x_b.
    """

    method = "experts_fusion"

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str],
        lang_state: LangState,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
        train_experts: bool = False,
    ):
        super().__init__(base_layer, languages, lang_state, rank, alpha, dropout)
        n_lang = len(self.languages)
        self.train_experts = bool(train_experts)
        # Experts start at zero like IndependentLoRA's B; they are meant to be loaded from an
        # Independent-LoRA checkpoint (load_experts / fusion_from_independent).
        self.lora_A = nn.Parameter(self.new_weight(n_lang, rank, self.in_features).zero_(),
                                   requires_grad=self.train_experts)
        self.lora_B = nn.Parameter(self.new_weight(n_lang, self.out_features, rank).zero_(),
                                   requires_grad=self.train_experts)
        self.fusion = nn.Parameter(torch.eye(n_lang, dtype=self.lora_A.dtype, device=self.lora_A.device))

    def method_kwargs(self) -> dict:
        return {"train_experts": self.train_experts}

    def expert_weights(self, lang_ids: Tensor) -> Tensor:
        """lang_ids (B,) -> (B, L): the fusion row of each sample's language."""
        return self.fusion[lang_ids]

    def adapter_forward(self, x: Tensor) -> Tensor:
        """x (B, N, d_in) -> (B, N, d_out) = Σ_k w_bk α/r x A_kᵀ B_kᵀ."""
        w = self.expert_weights(self.current_lang_ids(x.shape[0], x.device))  # (B, L)
        z = torch.einsum("bnd,lrd->bnlr", x, self.lora_A) * self.scaling  # rank-r codes of every expert
        z = z * w[:, None, :, None]
        return torch.einsum("bnlr,lor->bno", z, self.lora_B)

    def expert_deltas(self) -> Tensor:
        """(L, d_out, d_in): ΔW_k = α/r B_k A_k of every expert."""
        return torch.bmm(self.lora_B, self.lora_A) * self.scaling

    def delta_weight(self, lang: str | None = None) -> Tensor:
        """(d_out, d_in) = Σ_k fusion[lang, k] ΔW_k."""
        return fused_delta(self.expert_deltas(), self.fusion[self.lang_index(lang)])


def fusion_from_independent(layer: IndependentLoRA) -> ExpertFusionLoRA:
    """An ExpertFusionLoRA over the experts of an Independent-LoRA layer (same base layer, identity fusion)."""
    if not isinstance(layer, IndependentLoRA):
        raise TypeError(f"experts come from an IndependentLoRA layer, got {type(layer).__name__}")
    fused = ExpertFusionLoRA(layer.base_layer, layer.languages, layer.lang_state, layer.rank, layer.alpha,
                             layer.dropout_p)
    with torch.no_grad():
        fused.lora_A.copy_(layer.lora_A)
        fused.lora_B.copy_(layer.lora_B)
    fused.target_modules = layer.target_modules
    return fused


def independent_to_fusion(model: nn.Module) -> list[str]:
    """Turn every IndependentLoRA layer of `model` into an ExpertFusionLoRA (identity fusion)."""
    names = replace_modules(model, IndependentLoRA, fusion_from_independent)
    if not names:
        raise ValueError(f"{type(model).__name__} has no IndependentLoRA layers: no experts to fuse")
    log.info("expert fusion over %d layers", len(names))
    return names


def load_experts(model: nn.Module, independent_dir: str | Path) -> list[str]:
    """Copy the experts of an Independent-LoRA adapter checkpoint into the ExpertFusionLoRA layers of
    `model` (injected beforehand, e.g. by the Stage-2 config "experts_fusion"); languages matched by code.
    """
    from zipasr.adapters.inject import load_adapter_config, load_adapter_weights

    cfg = load_adapter_config(independent_dir)
    if cfg["method"] != "independent":
        raise ValueError(f"experts come from an independent checkpoint; {independent_dir} holds {cfg['method']!r}")
    tensors = load_adapter_weights(independent_dir)
    names = []
    with torch.no_grad():
        for name, layer in model.named_modules():
            if not isinstance(layer, ExpertFusionLoRA):
                continue
            missing = [lang for lang in layer.languages if lang not in cfg["languages"]]
            if missing:
                raise ValueError(f"{independent_dir} has no expert for languages {missing} (it has {cfg['languages']})")
            if cfg["rank"] != layer.rank or cfg["alpha"] != layer.alpha:
                raise ValueError(
                    f"{independent_dir}: experts of rank {cfg['rank']}, alpha {cfg['alpha']}; the fusion layers "
                    f"have rank {layer.rank}, alpha {layer.alpha}"
                )
            order = [cfg["languages"].index(lang) for lang in layer.languages]
            for key in ("lora_A", "lora_B"):
                full = f"{name}.{key}"
                if full not in tensors:
                    raise KeyError(f"{independent_dir} has no tensor {full!r}")
                getattr(layer, key).copy_(tensors[full][order])
            names.append(name)
    if not names:
        raise ValueError(f"{type(model).__name__} has no ExpertFusionLoRA layers to load experts into")
    log.info("loaded %d layers of experts from %s", len(names), independent_dir)
    return names


# --------------------------------------------------------------------------- distillation
class TeacherStudent(nn.Module):
    """One encoder linear layer during distillation: the experts (teacher) and a Vanilla-LoRA student
    over the same frozen base layer.

    mode "teacher": the experts' output (each sample through its language's expert / fusion row);
    mode "student": the student's output; mode "both": returns the teacher's output (so deeper layers
    see the teacher's activations) and stores the student's squared error in `last_mse`, the
    adapter-level distillation loss.
    """

    def __init__(self, teacher: AdapterLayer, student: VanillaLoRA):
        super().__init__()
        if student.base_layer is not teacher.base_layer:
            raise ValueError("teacher and student must wrap the same base layer")
        self.teacher = teacher
        self.student = student
        self.mode = "both"
        self.last_mse: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "student":
            return self.student(x)
        with torch.no_grad():
            y_teacher = self.teacher(x)
        if self.mode == "teacher":
            return y_teacher
        # Both outputs contain W0 x; the difference is the adapters' difference, computed in fp32.
        y_student = self.student(x)
        self.last_mse = F.mse_loss(y_student.float(), y_teacher.float(), reduction="mean")
        return y_teacher


def student_init(teacher: AdapterLayer, rank: int, alpha: float) -> tuple[Tensor, Tensor] | None:
    """Student LoRA factors (A (r, d_in), B (d_out, r)) from the truncated SVD of the experts' mean
    update, mean_l ΔW_l: the best rank-r start before any data is seen (None when every expert is zero)."""
    from zipasr.sibling.lors import delta_to_lora

    with torch.no_grad():
        mean = torch.stack([teacher.delta_weight(lang) for lang in teacher.languages]).mean(0)
    if not torch.any(mean):
        return None
    a, b, _ = delta_to_lora(mean, rank, alpha)
    if a.shape[0] < rank:  # a tiny layer: pad with zero ranks
        a = torch.cat([a, a.new_zeros(rank - a.shape[0], a.shape[1])])
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - b.shape[1])], dim=1)
    return a, b


def attach_students(model: nn.Module, rank: int = 32, alpha: float = 64.0, init: str = "svd_mean") -> list[str]:
    """Wrap every expert layer (IndependentLoRA or ExpertFusionLoRA) in a TeacherStudent with a new
    Vanilla-LoRA student; the teachers are frozen. init: "svd_mean" (student_init) or "lora" (A
    kaiming-uniform, B zero, as peft). Returns the wrapped layer names.
    """
    if init not in ("svd_mean", "lora"):
        raise ValueError(f"student init must be 'svd_mean' or 'lora', got {init!r}")

    def build(teacher: AdapterLayer) -> TeacherStudent:
        teacher.requires_grad_(False)
        # Vanilla ignores the language; it carries the model's list so that its checkpoint matches the
        # "vanilla" layers an experiment config rebuilds.
        student = VanillaLoRA(teacher.base_layer, teacher.languages, teacher.lang_state, rank=rank, alpha=alpha)
        student.target_modules = teacher.target_modules
        factors = student_init(teacher, rank, alpha) if init == "svd_mean" else None
        if factors is not None:
            with torch.no_grad():
                student.lora_A.copy_(factors[0])
                student.lora_B.copy_(factors[1])
        return TeacherStudent(teacher, student)

    names = replace_modules(model, (IndependentLoRA, ExpertFusionLoRA), build)
    if not names:
        raise ValueError(f"{type(model).__name__} has no expert layers (IndependentLoRA / ExpertFusionLoRA)")
    log.info("attached %d Vanilla-LoRA students (rank %d, init %s)", len(names), rank, init)
    return names


def teacher_student_layers(model: nn.Module) -> list[TeacherStudent]:
    return [m for m in model.modules() if isinstance(m, TeacherStudent)]


@contextmanager
def distill_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run every TeacherStudent layer of `model` as "teacher", "student" or "both" in the block."""
    if mode not in ("teacher", "student", "both"):
        raise ValueError(f"unknown distillation mode {mode!r}")
    layers = teacher_student_layers(model)
    previous = [layer.mode for layer in layers]
    for layer in layers:
        layer.mode = mode
    try:
        yield
    finally:
        for layer, m in zip(layers, previous):
            layer.mode = m


def layer_mse(model: nn.Module) -> Tensor:
    """Mean over layers of the students' output MSE of the last "both" forward (adapter-level KD loss)."""
    losses = [layer.last_mse for layer in teacher_student_layers(model) if layer.last_mse is not None]
    if not losses:
        raise RuntimeError("no layer losses: run a forward in distill_mode(model, 'both') first")
    return torch.stack(losses).mean()


def detach_students(model: nn.Module) -> list[str]:
    """Replace every TeacherStudent by its student: the model becomes a plain Vanilla-LoRA model."""
    return replace_modules(model, TeacherStudent, lambda ts: ts.student)


def student_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for layer in teacher_student_layers(model) for p in (layer.student.lora_A, layer.student.lora_B)]


def token_kl(teacher_logits: Tensor, student_logits: Tensor, mask: Tensor | None = None,
             temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) of next-token distributions, averaged over positions.

    logits (..., V); mask (...) bool selects the positions (None: all). Scaled by T² so that the
    gradients keep their size across temperatures.
    """
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} != "
                         f"student logits {tuple(student_logits.shape)}")
    if mask is not None:
        if mask.shape != teacher_logits.shape[:-1]:
            raise ValueError(f"mask {tuple(mask.shape)} does not fit logits {tuple(teacher_logits.shape)}")
        teacher_logits, student_logits = teacher_logits[mask], student_logits[mask]
    t = F.log_softmax(teacher_logits.reshape(-1, teacher_logits.shape[-1]).float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.reshape(-1, student_logits.shape[-1]).float() / temperature, dim=-1)
    if t.shape[0] == 0:
        raise ValueError("no position to compute the KL on")
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


@contextmanager
def captured_logits(model: nn.Module) -> Iterator[list[Tensor]]:
    """Collect the output of the LLM's head at every SpeechLLM forward in the block.

    SpeechLLM.forward runs the head once, on the target positions only (transcript + EOS), so each
    captured tensor is (n_tokens, V), in the same order for the same batch.
    """
    captured: list[Tensor] = []
    head = model.llm.get_output_embeddings()
    handle = head.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        yield captured
    finally:
        handle.remove()


def speech_kd_loss(model: nn.Module, batch, temperature: float = 1.0, ce_weight: float = 0.0,
                   segment_frames: int | None = None) -> Tensor:
    """LLM-level distillation loss of a SpeechLLM whose encoder layers are TeacherStudent:
    KL(teacher || student) over the transcript + EOS positions (+ ce_weight x the student's CE).

    Both passes use the same prompt (the batch's languages) and the same encoder segment length.
    """
    seg = model.segment_frames(segment_frames) or 0  # one draw for both passes (0 = full context)
    with captured_logits(model) as logits:
        with torch.no_grad(), distill_mode(model, "teacher"):
            model(batch, segment_frames=seg)
        with distill_mode(model, "student"):
            out = model(batch, segment_frames=seg)
    loss = token_kl(logits[0], logits[1], temperature=temperature)
    return loss + ce_weight * out.loss if ce_weight else loss


def layer_kd_loss(model: nn.Module, batch, segment_frames: int | None = None) -> Tensor:
    """Adapter-level distillation loss: the students' mean output MSE along the teacher's encoder pass."""
    seg = model.segment_frames(segment_frames) or None
    with model.lang_state.bound(batch.lang_ids), distill_mode(model, "both"):
        model.encoder(batch.feats, batch.feat_lens, seg)
    return layer_mse(model)


def fusion_to_independent(layer: ExpertFusionLoRA) -> IndependentLoRA:
    """The fused experts as one exact Independent-LoRA of rank L·r (a standard checkpoint format):

        A'(l) = [A_1; ...; A_L] (L·r, d_in),  B'(l) = [F[l,1] B_1, ..., F[l,L] B_L] (d_out, L·r),
        α' = L·α, so α'/(L·r) · B'(l) A'(l) = α/r Σ_k F[l,k] B_k A_k = ΔW_fused(l).
    """
    n, r = len(layer.languages), layer.rank
    out = IndependentLoRA(layer.base_layer, layer.languages, layer.lang_state, rank=n * r, alpha=n * layer.alpha,
                          dropout=layer.dropout_p)
    with torch.no_grad():
        stacked_a = layer.lora_A.reshape(n * r, -1)  # (L·r, d_in)
        out.lora_A.copy_(stacked_a.expand(n, -1, -1))
        for lang in range(n):
            weighted = layer.lora_B * layer.fusion[lang][:, None, None]  # (L, d_out, r)
            out.lora_B[lang].copy_(weighted.permute(1, 0, 2).reshape(-1, n * r))
    out.target_modules = layer.target_modules
    return out


def distill(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, object], Tensor],
    lr: float = 1e-3,
    steps: int | None = None,
    progress: bool = True,
) -> list[float]:
    """Train the students of `model` (attach_students first) on `loss_fn(model, batch)`; returns the
    loss of every step. Only the students' A and B are optimised (projector, LLM LoRA and teachers
    stay as they are)."""
    params = student_parameters(model)
    if not params:
        raise RuntimeError("the model has no students: call attach_students(model) first")
    return train_parameters(params, batches, lambda batch: loss_fn(model, batch), lr=lr, steps=steps,
                            desc="distill", progress=progress)
