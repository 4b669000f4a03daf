"""Adding a language to a trained Zipper-LoRA model without retraining the others.

A Zipper layer's languages differ only in their own bank B_spec(l) and, for Hard/Soft, in the router
input e(l); A, B_shared and the router's W_r, b_r are shared. A new language l* therefore needs

- a new bank B_spec(l*), initialised from B_shared ("shared"; Hard/Soft, where the columns of both
  banks multiply the same rows of A, so the new language starts as the shared subspace) or from the
  bank of the nearest trained language by cosine similarity of the LID embeddings ("nearest"); a
  Static layer's specific columns multiply other rows of A than its shared ones, so "shared" starts
  its bank at zero (the new language starts from the shared half alone);
- its router input e(l*) (a Whisper language-token embedding or acoustic mean, like the others);

and only B_spec(l*) is trained, on the new language's data. Everything else is frozen: the projector
and LLM LoRA are shared by all languages, so training them would change the others.

The trained languages' outputs stay bit-identical: their banks are the same tensors (`LanguageBanks`
gathers from them unchanged), and their router gates are computed by the same router on the same
table (`ExtendedRouter`), because a matmul over L+1 rows may round differently from one over L.
`bake_added_languages` turns the model back into plain Zipper layers (one bank tensor, one table) for
the standard checkpoint format; after baking, the gates of the trained languages come from an (L+1)-row
matmul and may differ from the original ones in the last bit (~1e-8).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zipasr.adapters import adapter_layers
from zipasr.adapters.router import LanguageRouter
from zipasr.adapters.zipper import ZipperStatic, _RoutedZipper
from zipasr.languages import check_languages, get_language

log = logging.getLogger(__name__)

INITS = ("shared", "nearest")


class LanguageBanks(nn.Module):
    """B_spec of a Zipper layer with added languages: the trained banks (L, d_out, r_p), frozen, then
    the added ones (n_new, d_out, r_p), trainable. Indexed like the (L + n_new, d_out, r_p) tensor."""

    def __init__(self, trained: Tensor, added: Tensor):
        super().__init__()
        self.trained = nn.Parameter(trained.detach(), requires_grad=False)
        self.added = nn.Parameter(added.detach().clone())

    def full(self) -> Tensor:
        """(L + n_new, d_out, r_p)."""
        return torch.cat([self.trained, self.added])

    def __getitem__(self, lang_ids: Tensor) -> Tensor:
        """lang_ids (B,) -> (B, d_out, r_p), gathered (copied exactly) from the trained or added banks."""
        return self.full()[lang_ids]

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.trained.shape[0] + self.added.shape[0], *self.trained.shape[1:]))


class ExtendedRouter(nn.Module):
    """A trained LanguageRouter plus rows for added languages: the trained rows are computed by the
    trained router exactly as before; the added rows by a router sharing its (frozen) LayerNorm and W_r."""

    def __init__(self, trained: LanguageRouter, added_embeddings: Tensor):
        super().__init__()
        self.trained = trained
        self.added = LanguageRouter(added_embeddings.to(trained.proj.weight.device), trained.proj.out_features)
        self.added.norm, self.added.proj = trained.norm, trained.proj  # shared, not copied

    @property
    def lid_embeddings(self) -> Tensor:
        """(L + n_new, d_lid)."""
        return torch.cat([self.trained.lid_embeddings, self.added.lid_embeddings])

    @property
    def lid_dim(self) -> int:
        return self.trained.lid_dim

    def forward(self) -> Tensor:
        """(L + n_new, r): p(l) of every language."""
        return torch.cat([self.trained(), self.added()])


def zipper_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Zipper (Static/Hard/Soft) adapter layers of `model.encoder` (names relative to it); an error if none or
    if the encoder holds other adapters."""
    layers = adapter_layers(model.encoder)
    if not layers:
        raise ValueError("the model's encoder has no adapter layers; adding a language needs a trained Zipper-LoRA")
    others = sorted({layer.method for layer in layers.values() if not isinstance(layer, (ZipperStatic, _RoutedZipper))})
    if others:
        raise ValueError(f"adding a language works on Zipper-LoRA layers (Static/Hard/Soft); the encoder has {others}")
    return layers


def nearest_language(new_embedding: Tensor, embeddings: Tensor, languages: Sequence[str]) -> str:
    """The language whose LID embedding has the highest cosine similarity with `new_embedding`.

    new_embedding (d,), embeddings (L, d) in the order of `languages`.
    """
    sims = F.cosine_similarity(embeddings.float(), new_embedding.float().to(embeddings.device)[None, :], dim=-1)
    return languages[int(sims.argmax())]


def add_language(model: nn.Module, code: str, lid_embedding: Tensor | None = None, init: str = "shared",
                 reference_embeddings: Tensor | None = None) -> dict:
    """Add language `code` to a trained Zipper-LoRA SpeechLLM, in place; returns a summary dict.

    lid_embedding (d_lid,): e(code), the router input (required for Hard/Soft; for "nearest" also
    the query). reference_embeddings (L, d_lid): LID embeddings of the trained languages for
    "nearest" on Static layers (Hard/Soft use their router's table). Afterwards only the new banks
    require grad; the prompt of `code` comes from the language table.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    get_language(code)
    if code in model.languages:
        raise ValueError(f"language {code!r} is already one of the model's languages {model.languages}")
    layers = zipper_layers(model)
    routed = any(isinstance(layer, _RoutedZipper) for layer in layers.values())
    if routed and lid_embedding is None:
        raise ValueError(f"Zipper-Hard/Soft route by LID embedding: give e({code}) (lid_embedding)")
    old_languages = list(model.languages)

    nearest = None
    if init == "nearest":
        if lid_embedding is None:
            raise ValueError("init 'nearest' needs the new language's LID embedding")
        table = reference_embeddings
        if table is None:
            if not routed:
                raise ValueError("init 'nearest' on Zipper-Static needs reference_embeddings for the trained languages")
            table = next(iter(layers.values())).router.lid_embeddings
        if table.shape[0] != len(old_languages):
            raise ValueError(f"reference LID embeddings have {table.shape[0]} rows for {len(old_languages)} languages")
        nearest = nearest_language(lid_embedding, table, old_languages)
        log.info("new language %s: nearest trained language by LID cosine: %s", code, nearest)

    model.requires_grad_(False)
    new_params = []
    for name, layer in layers.items():
        if isinstance(layer.B_spec, LanguageBanks):
            trained, added = layer.B_spec.trained, layer.B_spec.added
        else:
            trained, added = layer.B_spec, layer.B_spec.new_zeros(0, *layer.B_spec.shape[1:])
        if nearest is not None:
            bank = layer.B_spec[torch.tensor([old_languages.index(nearest)], device=trained.device)]
        elif isinstance(layer, _RoutedZipper):
            bank = layer.B_shared[None]
        else:
            bank = trained.new_zeros(1, *trained.shape[1:])
        del layer.B_spec  # the Parameter (or the previous LanguageBanks) is replaced by a module
        layer.B_spec = LanguageBanks(trained, torch.cat([added.detach(), bank.detach()]))
        if isinstance(layer, _RoutedZipper):
            router = layer.router
            e_new = lid_embedding.to(router.lid_embeddings)[None]
            if isinstance(router, ExtendedRouter):
                router.added.lid_embeddings = torch.cat([router.added.lid_embeddings, e_new])
            else:
                layer.router = ExtendedRouter(router, e_new)
        layer.languages = layer.languages + [code]
        new_params.append(f"encoder.{name}.B_spec.added")

    _extend_model_languages(model, code)
    for layer in layers.values():
        layer.B_spec.added.requires_grad_(True)
    return {"language": code, "init": init, "nearest": nearest, "layers": len(layers), "new_parameters": new_params,
            "trainable": sum(layer.B_spec.added.numel() for layer in layers.values())}


def _extend_model_languages(model: nn.Module, code: str) -> None:
    """Append `code` to the SpeechLLM's language list, its LangState and its prompts."""
    model.languages = model.languages + [code]
    model.lang_state.languages = check_languages(model.lang_state.languages + [code])
    model.prompt_ids = model.prompt_ids + [model.tokenize_prompt(code)]


def added_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable tensors of the added languages (one bank per layer)."""
    return [layer.B_spec.added for layer in zipper_layers(model).values() if isinstance(layer.B_spec, LanguageBanks)]


def bake_added_languages(model: nn.Module) -> None:
    """Turn LanguageBanks / ExtendedRouter back into plain Zipper tensors (standard checkpoint format)."""
    for layer in zipper_layers(model).values():
        if isinstance(layer.B_spec, LanguageBanks):
            full = layer.B_spec.full().detach().clone()
            del layer.B_spec
            layer.B_spec = nn.Parameter(full)
        if isinstance(getattr(layer, "router", None), ExtendedRouter):
            old = layer.router
            router = LanguageRouter(old.lid_embeddings.detach().clone(), old.trained.proj.out_features)
            router.load_state_dict(old.trained.state_dict())
            layer.router = router.to(old.trained.proj.weight.device)
