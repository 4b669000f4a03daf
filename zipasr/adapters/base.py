"""The one interface of every adapter: `LangState` and `AdapterLayer`.

An adapter layer wraps a frozen `nn.Linear` W0 (kept as `base_layer`, like peft) and adds a low-rank
update ΔW(l) = α/r · B_merged(l) A (paper Eq. (10)); the methods differ only in how A and B_merged(l)
are built. Adapter layers sit deep inside HF modules whose `forward(x)` only receives `x`, so the
language of each sample comes from a `LangState` that all layers of a model share and that the model
binds for the duration of one forward:

    with lang_state.bound(lang_ids):   # LongTensor (B,), indices into the layers' `languages`
        hidden = encoder(feats, feat_lens)

Each sample of a batch uses its own language (mixed-language batches are routed per sample).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import ClassVar, Iterator, Sequence

import torch
from torch import Tensor, nn

from zipasr.languages import check_languages


class LangState:
    """The language of each sample of the batch that is being run, shared by all adapter layers.

    `languages` (optional) is the model's ordered language list; when given, `bound()` checks that the
    ids index into it and layers check that their own `languages` list is the same.
    """

    def __init__(self, languages: Sequence[str] | None = None):
        self.languages = check_languages(languages) if languages is not None else None
        self.lang_ids: Tensor | None = None

    def ids(self, codes: Sequence[str], device: torch.device | str | None = None) -> Tensor:
        """ISO 639-1 codes -> LongTensor (B,) of indices into `languages`."""
        if self.languages is None:
            raise ValueError("this LangState has no language list; construct it as LangState(languages)")
        index = {code: i for i, code in enumerate(self.languages)}
        unknown = [c for c in codes if c not in index]
        if unknown:
            raise ValueError(f"languages {unknown} are not among the model's languages {self.languages}")
        return torch.tensor([index[c] for c in codes], dtype=torch.long, device=device)

    @contextmanager
    def bound(self, lang_ids: Tensor) -> Iterator[LangState]:
        """Bind `lang_ids` (LongTensor (B,)) for the enclosed forward; the previous binding is restored."""
        if not isinstance(lang_ids, Tensor) or lang_ids.dtype != torch.long or lang_ids.dim() != 1:
            raise TypeError(f"lang_ids must be a 1-D LongTensor (B,), got {_describe(lang_ids)}")
        if self.languages is not None and lang_ids.numel() > 0:
            low, high = int(lang_ids.min()), int(lang_ids.max())
            if low < 0 or high >= len(self.languages):
                raise ValueError(
                    f"lang_ids out of range [0, {len(self.languages)}) for languages {self.languages}: "
                    f"min {low}, max {high}"
                )
        previous, self.lang_ids = self.lang_ids, lang_ids
        try:
            yield self
        finally:
            self.lang_ids = previous


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"Tensor(dtype={value.dtype}, shape={tuple(value.shape)})"
    return type(value).__name__


def kaiming_uniform_(weight: Tensor) -> Tensor:
    """peft's (and nn.Linear's) default init of the down projection A: kaiming-uniform, a=sqrt(5).

    Works on a stack of matrices (..., r, d_in) too: every matrix gets fan_in = d_in.
    """
    bound = 1.0 / math.sqrt(weight.shape[-1])  # kaiming_uniform with a=sqrt(5) reduces to this bound
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class AdapterLayer(nn.Module, ABC):
    """A frozen `nn.Linear` W0 plus a low-rank update: y = W0 x + b + ΔW(l) x.

    Subclasses set `method`, `mergeable`, `needs_language`, create their parameters in `__init__`,
    and implement `adapter_forward` (the update for a batch) and `delta_weight` (the update of one
    language as a matrix). Everything else (language lookup, merge, adapter-only state) lives here.

    Args:
        base_layer: the frozen linear layer W0 (d_out, d_in); its parameters get requires_grad False.
        languages: ordered ISO 639-1 codes; `lang_ids` index into this list. May be empty for methods that
            ignore the language (Vanilla-LoRA on the LLM side).
        lang_state: the model's shared LangState (None allowed for methods that ignore the language).
        rank: r. alpha: α; the update is scaled by α/r. dropout: dropout on the adapter's input.
    """

    method: ClassVar[str]
    mergeable: ClassVar[bool] = True
    needs_language: ClassVar[bool] = True

    def __init__(
        self,
        base_layer: nn.Linear,
        languages: Sequence[str],
        lang_state: LangState | None,
        rank: int = 32,
        alpha: float = 64.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps an nn.Linear, got {type(base_layer).__name__}")
        if rank <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        self.languages = check_languages(languages)
        if self.needs_language:
            if not self.languages:
                raise ValueError(f"{self.method} needs at least one language")
            if lang_state is None:
                raise ValueError(f"{self.method} needs a LangState to know the language of each sample")
        if lang_state is not None and lang_state.languages is not None and self.languages:
            if list(lang_state.languages) != self.languages:
                raise ValueError(
                    f"adapter languages {self.languages} differ from the LangState's {lang_state.languages}"
                )
        self.base_layer = base_layer
        base_layer.requires_grad_(False)
        self.lang_state = lang_state
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        self.dropout_p = float(dropout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged_lang: str | None = None
        self.merged = False
        self.target_modules: list[str] | None = None  # set by inject_adapters; saved in the config

    # ----------------------------------------------------------------- configuration
    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def new_weight(self, *shape: int) -> Tensor:
        """An uninitialised adapter tensor on W0's device; float32 unless W0 is float64 (peft keeps
        adapters in full precision when the base runs in bf16/fp16)."""
        weight = self.base_layer.weight
        dtype = weight.dtype if weight.dtype == torch.float64 else torch.float32
        return torch.empty(*shape, dtype=dtype, device=weight.device)

    def method_kwargs(self) -> dict:
        """The method-specific constructor arguments (JSON values), saved in adapter_config.json."""
        return {}

    def extra_repr(self) -> str:
        return f"method={self.method}, rank={self.rank}, alpha={self.alpha}, languages={self.languages}"

    # ----------------------------------------------------------------- languages
    def lang_index(self, lang: str) -> int:
        """Index of the ISO 639-1 code `lang` in this layer's language list (error lists the known ones)."""
        try:
            return self.languages.index(lang)
        except ValueError:
            raise ValueError(
                f"language {lang!r} is not among this adapter's languages {self.languages}"
            ) from None

    def current_lang_ids(self, batch_size: int, device: torch.device) -> Tensor:
        """The bound `lang_ids` (B,) on `device`; an error when none is bound or B does not match."""
        ids = self.lang_state.lang_ids if self.lang_state is not None else None
        if ids is None:
            raise RuntimeError(
                f"{self.method} adapter needs the language of each sample, but no lang_ids are bound; "
                "run the model inside `with lang_state.bound(lang_ids):`"
            )
        if ids.shape[0] != batch_size:
            raise RuntimeError(
                f"{ids.shape[0]} lang_ids are bound but the adapter layer got a batch of {batch_size} "
                "(segment-wise encoding must repeat lang_ids per segment)"
            )
        return ids.to(device, non_blocking=True)

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_in) or (B, d_in) (any leading dims, batch first) -> same leading dims, d_out."""
        out = self.base_layer(x)
        if self.merged:
            self._check_merged_language(x.shape[0])
            return out
        x_a = self.dropout(x).to(self.lora_A.dtype)  # every method has a down projection lora_A
        flat = x_a.reshape(x_a.shape[0], -1, x_a.shape[-1])  # (B, N, d_in)
        delta = self.adapter_forward(flat)  # (B, N, d_out), already scaled by α/r
        # In place: W0's output is not needed by its own backward, so this saves a (B, T, d_out) tensor.
        return out.add_(delta.reshape(out.shape).to(out.dtype))

    @abstractmethod
    def adapter_forward(self, x: Tensor) -> Tensor:
        """ΔW(l_b) x for every sample b: x (B, N, d_in) -> (B, N, d_out), scaled by α/r."""

    @abstractmethod
    def delta_weight(self, lang: str | None = None) -> Tensor:
        """(d_out, d_in) = α/r · B_merged(lang) @ A, the update of one language as a matrix."""

    # ----------------------------------------------------------------- merge
    def merge(self, lang: str | None = None) -> None:
        """W0 += delta_weight(lang); forward then runs W0 alone (a single-language layer)."""
        if not self.mergeable:
            raise RuntimeError(
                f"{self.method} adapters cannot be merged into the base weight: their update depends "
                "on each input token, so no single matrix represents it"
            )
        if self.merged:
            raise RuntimeError(f"adapter already merged for language {self.merged_lang!r}; call unmerge() first")
        if self.needs_language and lang is None:
            raise ValueError(f"{self.method} needs a language to merge; choose one of {self.languages}")
        delta = self.delta_weight(lang).detach()
        if not torch.isfinite(delta).all():
            raise ValueError(f"not merging: the {self.method} delta weight for {lang!r} has NaN/inf entries")
        weight = self.base_layer.weight
        with torch.no_grad():
            weight.add_(delta.to(weight.dtype))
        self.merged, self.merged_lang = True, lang

    def unmerge(self) -> None:
        """Undo `merge` (W0 -= the same delta weight)."""
        if not self.merged:
            raise RuntimeError("adapter is not merged")
        delta = self.delta_weight(self.merged_lang).detach()
        weight = self.base_layer.weight
        with torch.no_grad():
            weight.sub_(delta.to(weight.dtype))
        self.merged, self.merged_lang = False, None

    def _check_merged_language(self, batch_size: int) -> None:
        # A merged layer holds one language; running other languages through it would be silently wrong.
        if not self.needs_language or self.lang_state is None or self.lang_state.lang_ids is None:
            return
        ids = self.lang_state.lang_ids
        if ids.shape[0] == batch_size and bool((ids != self.lang_index(self.merged_lang)).any()):
            raise RuntimeError(
                f"adapter is merged for {self.merged_lang!r} but the batch holds other languages"
            )

    # ----------------------------------------------------------------- adapter-only state
    def adapter_state_dict(self) -> dict[str, Tensor]:
        """The tensors a checkpoint must hold: adapter (+ router) parameters and persistent buffers."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base_layer.")}

    def load_adapter_state_dict(self, state: dict[str, Tensor], where: str = "") -> None:
        """Copy `state` (keys as `adapter_state_dict()`) into this layer; errors name the missing key."""
        own = self.adapter_state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"adapter state of {where or self.method}: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for key, target in own.items():
                if target.shape != state[key].shape:
                    raise ValueError(
                        f"{where}.{key}: checkpoint shape {tuple(state[key].shape)} != layer's {tuple(target.shape)}"
                    )
                target.copy_(state[key])
