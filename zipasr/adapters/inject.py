"""Putting adapters into a model and taking them out again.

- `inject_adapters`: wrap every `nn.Linear` whose qualified name matches a pattern;
- `save_adapters` / `load_adapters` / `inject_from_checkpoint`: adapter-only checkpoints, a directory with
  `adapter.safetensors` (adapter tensors; the routers' LID embedding table once, as `lid_embeddings`)
  and `adapter_config.json` (method, rank, alpha, languages, target modules, method kwargs, layer names);
- `init_b_from_checkpoint`: the paper's Initial-B warm start from a Zipper-Soft checkpoint;
- `merge_adapters` / `unmerge_adapters` / `merged_adapters`: single-language export;
- `trainable_parameter_table`: trainable parameters per method (the paper's efficiency argument).

Target patterns: a plain string matches a module whose qualified name is the string or ends with
"." + string (so "q_proj" matches "layers.0.self_attn.q_proj"); "re:<regex>" must match the whole name.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from zipasr.adapters import ADAPTERS
from zipasr.adapters.base import AdapterLayer, LangState
from zipasr.languages import check_languages

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"
LID_KEY = "lid_embeddings"
FORMAT_VERSION = 1
ROUTED_METHODS = ("zipper_hard", "zipper_soft")


# --------------------------------------------------------------------------- injection
def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """Qualified name -> adapter layer, for every adapter layer inside `model` (in module order)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLayer)}


def inject_adapters(
    model: nn.Module,
    method: str,
    target_modules: str | Sequence[str],
    languages: Sequence[str],
    lang_state: LangState | None,
    **kwargs,
) -> list[str]:
    """Wrap every `nn.Linear` of `model` whose qualified name matches a pattern; returns their names.

    kwargs go to the adapter class (rank, alpha, dropout and the method's own: r_s/r_p, tau,
    lid_embeddings, k, bias_update_rate, seed). A `seed` is offset by the layer's index so that each
    layer draws its own random pattern. Layers already wrapped are left alone (never wrapped twice);
    a pattern that matches nothing is an error.
    """
    if method not in ADAPTERS:
        raise ValueError(f"unknown adapter method {method!r}; known methods: {', '.join(ADAPTERS)}")
    cls = ADAPTERS[method]
    _check_kwargs(cls, kwargs)
    patterns = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not patterns:
        raise ValueError("target_modules is empty: name at least one module pattern")
    languages = check_languages(languages)

    hits = {p: 0 for p in patterns}
    targets, already, adapters = [], [], []
    for name, module in model.named_modules():
        if any(name.startswith(a + ".") for a in adapters):
            continue  # the base_layer (and router) inside an adapter are not targets themselves
        if isinstance(module, AdapterLayer):
            adapters.append(name)
        elif not isinstance(module, nn.Linear):
            continue
        matched = [p for p in patterns if _matches(p, name)]
        for p in matched:
            hits[p] += 1
        if matched:
            (already if isinstance(module, AdapterLayer) else targets).append(name)
    missing = [p for p, n in hits.items() if n == 0]
    if missing:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"target module pattern(s) {missing} match no nn.Linear of {type(model).__name__}; "
            f"its linear layers are e.g. {linear[:8]}"
        )
    if already:
        logger.warning("%d matching layers already carry an adapter; not wrapping them again", len(already))

    for index, name in enumerate(targets):
        layer_kwargs = dict(kwargs)
        if layer_kwargs.get("seed") is not None:
            layer_kwargs["seed"] = layer_kwargs["seed"] + index
        layer = cls(model.get_submodule(name), languages, lang_state, **layer_kwargs)
        layer.target_modules = patterns
        model.set_submodule(name, layer)
    logger.info("wrapped %d linear layers of %s with %s adapters (patterns %s)",
                len(targets), type(model).__name__, method, patterns)
    return targets


def _check_kwargs(cls: type[AdapterLayer], kwargs: dict) -> None:
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "base_layer", "languages", "lang_state")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"adapter method {cls.method!r} takes no argument(s) {unknown}; it takes {allowed}")


# --------------------------------------------------------------------------- merging
def merge_adapters(model: nn.Module, lang: str | None = None) -> int:
    """Merge every adapter layer of `model` for language `lang` into its base weight; returns the count."""
    layers = adapter_layers(model)
    for layer in layers.values():
        layer.merge(lang)
    return len(layers)


def merge_language_free_adapters(model: nn.Module) -> int:
    """Merge the adapters of `model` when all are the same for every language and mergeable (e.g. the
    LLM's Vanilla-LoRA), for inference; returns how many layers were merged (0: none, or not all such)."""
    layers = [layer for layer in adapter_layers(model).values() if not layer.merged]
    if not layers or not all(layer.mergeable and not layer.needs_language for layer in layers):
        return 0
    for layer in layers:
        layer.merge()
    return len(layers)


def unmerge_adapters(model: nn.Module) -> int:
    """Undo `merge_adapters`; returns how many layers were unmerged."""
    merged = [layer for layer in adapter_layers(model).values() if layer.merged]
    for layer in merged:
        layer.unmerge()
    return len(merged)


@contextmanager
def merged_adapters(model: nn.Module, lang: str | None = None) -> Iterator[nn.Module]:
    """`with merged_adapters(model, "de"):` runs the model as a plain single-language model."""
    merge_adapters(model, lang)
    try:
        yield model
    finally:
        unmerge_adapters(model)


# --------------------------------------------------------------------------- checkpoints
def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Every adapter tensor of `model` under its qualified name, plus the LID table once (`lid_embeddings`)."""
    layers = adapter_layers(model)
    state = {f"{name}.{key}": t for name, layer in layers.items() for key, t in layer.adapter_state_dict().items()}
    lid = _shared_lid_embeddings(layers)
    if lid is not None:
        state[LID_KEY] = lid
    return state


def _shared_lid_embeddings(layers: dict[str, AdapterLayer]) -> Tensor | None:
    tables = [(n, layer.router.lid_embeddings) for n, layer in layers.items() if hasattr(layer, "router")]
    if not tables:
        return None
    first_name, first = tables[0]
    for name, table in tables[1:]:
        if table.shape != first.shape or not torch.equal(table.to(first.device), first):
            raise ValueError(f"layers {first_name} and {name} route with different LID embedding tables")
    return first


def _layers_config(layers: dict[str, AdapterLayer], where: str) -> dict:
    """The one configuration all `layers` share (an error when they differ, e.g. encoder + LLM)."""
    if not layers:
        raise ValueError(f"{where} has no adapter layers (inject them first)")
    described = {}
    for name, layer in layers.items():
        cfg = {
            "method": layer.method,
            "rank": layer.rank,
            "alpha": layer.alpha,
            "dropout": layer.dropout_p,
            "languages": layer.languages,
            "method_kwargs": layer.method_kwargs(),
        }
        key = json.dumps(cfg, sort_keys=True)
        described.setdefault(key, (name, cfg))
    if len(described) > 1:
        examples = "; ".join(f"{n}: {c}" for n, c in described.values())
        raise ValueError(
            f"{where} holds adapters of different configurations ({examples}); save/load each part "
            "separately, e.g. save_adapters(model.encoder, ...) and save_adapters(model.llm, ...)"
        )
    cfg = next(iter(described.values()))[1]
    targets: list[str] = []
    for layer in layers.values():
        targets += [p for p in (layer.target_modules or []) if p not in targets]
    routers = [layer for layer in layers.values() if hasattr(layer, "router")]
    cfg.update(
        target_modules=targets,
        lid_dim=routers[0].router.lid_dim if routers else None,
        layers=list(layers),
    )
    return cfg


def save_adapters(model: nn.Module, out_dir: str | Path, extra_config: dict | None = None) -> Path:
    """Write `out_dir/adapter.safetensors` + `out_dir/adapter_config.json`; returns `out_dir`.

    `extra_config` (JSON values) is stored under the config's "extra" key (e.g. the LID source).
    """
    out_dir = Path(out_dir)
    layers = adapter_layers(model)
    cfg = {"format_version": FORMAT_VERSION, **_layers_config(layers, type(model).__name__)}
    cfg["extra"] = dict(extra_config or {})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in adapter_state_dict(model).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    (out_dir / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("saved %d adapter layers (%s) to %s", len(layers), cfg["method"], out_dir)
    return out_dir


def _checkpoint_files(ckpt_dir: str | Path) -> tuple[Path, Path]:
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"adapter checkpoint directory {ckpt_dir} does not exist")
    files = ckpt_dir / CONFIG_NAME, ckpt_dir / WEIGHTS_NAME
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"adapter checkpoint {ckpt_dir} has no {f.name}")
    return files


def load_adapter_config(ckpt_dir: str | Path) -> dict:
    """adapter_config.json of a checkpoint, without a model (to rebuild the adapters before loading)."""
    config_file, _ = _checkpoint_files(ckpt_dir)
    try:
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    required = ("method", "rank", "alpha", "languages", "target_modules", "method_kwargs", "layers")
    absent = [k for k in required if k not in cfg]
    if absent:
        raise ValueError(f"{config_file}: missing keys {absent}")
    return cfg


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(every tensor, the metadata) of a safetensors file; a missing or unreadable file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, f.metadata() or {}
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None


def load_adapter_weights(ckpt_dir: str | Path) -> dict[str, Tensor]:
    """The tensors of an adapter checkpoint (adapter.safetensors), by qualified name."""
    return read_safetensors(Path(ckpt_dir) / WEIGHTS_NAME)[0]


def load_adapter_kwargs(ckpt_dir: str | Path) -> dict:
    """The kwargs that rebuild a checkpoint's adapters with `inject_adapters` (including its
    lid_embeddings tensor for Zipper-Hard/Soft)."""
    cfg = load_adapter_config(ckpt_dir)
    kwargs = {"rank": cfg["rank"], "alpha": cfg["alpha"], "dropout": cfg.get("dropout", 0.0), **cfg["method_kwargs"]}
    if cfg["method"] in ROUTED_METHODS:
        tensors = load_adapter_weights(ckpt_dir)
        if LID_KEY not in tensors:
            raise ValueError(f"{ckpt_dir}: {cfg['method']} checkpoint has no {LID_KEY!r} tensor")
        kwargs["lid_embeddings"] = tensors[LID_KEY]
    return kwargs


def inject_from_checkpoint(model: nn.Module, ckpt_dir: str | Path, lang_state: LangState | None) -> list[str]:
    """Inject the adapters a checkpoint describes into a clean `model`, then load their weights."""
    cfg = load_adapter_config(ckpt_dir)
    names = inject_adapters(model, cfg["method"], cfg["target_modules"], cfg["languages"], lang_state,
                            **load_adapter_kwargs(ckpt_dir))
    load_adapters(model, ckpt_dir)
    return names


def load_adapters(model: nn.Module, ckpt_dir: str | Path) -> None:
    """Load an adapter checkpoint into the adapters already injected into `model`.

    Errors name every mismatch between checkpoint and model: method, rank, alpha, languages (the order
    matters: lang_ids index it), target modules, method kwargs, layer names, tensor shapes.
    """
    cfg = load_adapter_config(ckpt_dir)
    layers = adapter_layers(model)
    ours = _layers_config(layers, type(model).__name__)
    mismatches = [
        f"{key}: checkpoint {cfg.get(key)!r} vs model {ours[key]!r}"
        for key in ("method", "rank", "alpha", "languages", "target_modules", "method_kwargs", "lid_dim")
        if cfg.get(key) != ours[key]
    ]
    if not mismatches and cfg["layers"] != ours["layers"]:
        only_ckpt = sorted(set(cfg["layers"]) - set(ours["layers"]))
        only_model = sorted(set(ours["layers"]) - set(cfg["layers"]))
        mismatches.append(f"layers: only in checkpoint {only_ckpt[:5]}, only in model {only_model[:5]}")
    if mismatches:
        raise ValueError(f"adapter checkpoint {ckpt_dir} does not fit the model: " + "; ".join(mismatches))
    tensors = load_adapter_weights(ckpt_dir)
    for name, layer in layers.items():
        prefix = name + "."
        layer.load_adapter_state_dict(
            {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, where=f"{ckpt_dir}:{name}"
        )
        if hasattr(layer, "router"):
            lid = layer.router.lid_embeddings
            if LID_KEY not in tensors or tensors[LID_KEY].shape != lid.shape:
                raise ValueError(f"{ckpt_dir}: {LID_KEY} missing or of another shape than the model's {tuple(lid.shape)}")
            lid.copy_(tensors[LID_KEY])
    logger.info("loaded %d %s adapter layers from %s", len(layers), cfg["method"], ckpt_dir)


# --------------------------------------------------------------------------- Initial-B
def init_b_from_checkpoint(model: nn.Module, zipper_soft_dir: str | Path, router: bool = False) -> list[str]:
    """Initial-B warm start (paper Sec. IV-F): copy B_shared and every B_spec(l) (and, with `router`,
    the router's parameters) of a converged Zipper-Soft checkpoint into the model's Zipper-Hard/Soft
    layers. A keeps its fresh initialisation, as in the paper. Languages are matched by code.
    Returns the names of the copied tensors.
    """
    cfg = load_adapter_config(zipper_soft_dir)
    if cfg["method"] != "zipper_soft":
        raise ValueError(f"Initial-B needs a zipper_soft checkpoint; {zipper_soft_dir} holds {cfg['method']!r}")
    layers = adapter_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no adapter layers to warm-start")
    wrong = sorted({layer.method for layer in layers.values()} - set(ROUTED_METHODS))
    if wrong:
        raise ValueError(f"Initial-B fills zipper_hard/zipper_soft layers; the model has {wrong}")
    absent = sorted(set(layers) - set(cfg["layers"]))
    if absent:
        raise ValueError(f"{zipper_soft_dir} has no adapter for layers {absent[:5]}")
    tensors = load_adapter_weights(zipper_soft_dir)
    copied = []
    with torch.no_grad():
        for name, layer in layers.items():
            unknown = [lang for lang in layer.languages if lang not in cfg["languages"]]
            if unknown:
                raise ValueError(f"{zipper_soft_dir} has no B_spec for languages {unknown} (it has {cfg['languages']})")
            order = [cfg["languages"].index(lang) for lang in layer.languages]
            sources = {"B_shared": tensors[f"{name}.B_shared"], "B_spec": tensors[f"{name}.B_spec"][order]}
            if router:
                sources.update({k: v for k, v in tensors.items() if k.startswith(f"{name}.router.")})
                sources = {k.removeprefix(f"{name}."): v for k, v in sources.items()}
            for key, value in sources.items():
                target = layer.get_parameter(key)
                if target.shape != value.shape:
                    raise ValueError(
                        f"Initial-B {name}.{key}: checkpoint shape {tuple(value.shape)} != model's {tuple(target.shape)}"
                    )
                target.copy_(value)
                copied.append(f"{name}.{key}")
    logger.info("Initial-B: copied %d tensors from %s", len(copied), zipper_soft_dir)
    return copied


# --------------------------------------------------------------------------- parameter table
def trainable_parameter_table(
    encoder: nn.Module,
    target_modules: str | Sequence[str],
    languages: Sequence[str],
    methods: Sequence[str] | None = None,
    lid_embeddings: Tensor | None = None,
    lid_dim: int = 1280,
    rank: int = 32,
    alpha: float = 64.0,
    method_kwargs: dict[str, dict] | None = None,
) -> list[dict]:
    """Trainable adapter (+ router) parameters of each method on a copy of `encoder`.

    Returns rows {"method", "trainable", "percent_of_encoder"}; percent is relative to all parameters
    of `encoder`. Zipper-Hard/Soft use `lid_embeddings`, else a table of width `lid_dim` (1280: the
    Whisper-large-v3 decoder embedding). `method_kwargs` maps a method to extra constructor kwargs.
    """
    languages = check_languages(languages)
    encoder_params = sum(p.numel() for p in encoder.parameters())
    if lid_embeddings is None:
        lid_embeddings = torch.zeros(len(languages), lid_dim)
    rows = []
    for method in methods or list(ADAPTERS):
        kwargs = dict((method_kwargs or {}).get(method, {}), rank=rank, alpha=alpha)
        if method in ROUTED_METHODS:
            kwargs["lid_embeddings"] = lid_embeddings
        clone = copy.deepcopy(encoder)
        inject_adapters(clone, method, target_modules, languages, LangState(languages), **kwargs)
        trainable = sum(
            p.numel()
            for layer in adapter_layers(clone).values()
            for key, p in layer.named_parameters()
            if p.requires_grad and not key.startswith("base_layer.")
        )
        rows.append({"method": method, "trainable": trainable, "percent_of_encoder": 100.0 * trainable / encoder_params})
        del clone
    return rows


def format_parameter_table(rows: list[dict]) -> str:
    """The rows of `trainable_parameter_table` as an aligned text table."""
    lines = [f"{'method':<15} {'trainable params':>17} {'% of encoder':>13}"]
    lines += [f"{r['method']:<15} {r['trainable']:>17,} {r['percent_of_encoder']:>12.3f}%" for r in rows]
    return "\n".join(lines)
