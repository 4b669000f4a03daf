"""Print the trainable parameters of every encoder-adapter method for a model config (the paper's
parameter-efficiency argument), plus the parts every Stage-2 run also trains (projector, LLM LoRA).

    python -m zipasr.bin.param_table --config conf/train_stage2.yaml
    python -m zipasr.bin.param_table --config conf/train_stage2.yaml --set encoder_adapter.rank=16 \\
        --methods vanilla zipper_soft

The config is an experiment YAML (its `model:` section is used) or a bare model config; `--set` keys are
relative to the model config. Counts need only shapes: the LLM is built on the meta device from its
config.json (no weights are read); the encoder is loaded from its checkpoint directory.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import yaml

from zipasr.adapters import ADAPTERS, adapter_layers, format_parameter_table, inject_adapters, trainable_parameter_table
from zipasr.bin._cli import cli_main, cli_parser
from zipasr.config import ConfigError, apply_overrides, from_dict
from zipasr.model.encoder import WhisperSpeechEncoder, check_checkpoint_dir
from zipasr.model.lid import lid_embeddings_for_model
from zipasr.model.llm import llm_lora_targets
from zipasr.model.projector import build_projector
from zipasr.model.speech_llm import ModelConfig, count_trainable

logger = logging.getLogger("zipasr.bin.param_table")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("param_table", __doc__)
    p.add_argument("--config", required=True, type=Path, help="experiment YAML (model: section) or model YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model-config key, e.g. encoder_adapter.rank=16 (repeatable)")
    p.add_argument("--methods", nargs="+", default=None, choices=list(ADAPTERS),
                   help="methods to count (default: all)")
    p.add_argument("--method_kwargs", type=yaml.safe_load, default={}, metavar="YAML",
                   help="per-method constructor kwargs, e.g. '{flylora: {k: 2}}' (the config's "
                        "encoder_adapter.method_kwargs apply to its own method)")
    return p


def load_model_config(path: Path, overrides: list[str]) -> ModelConfig:
    """The `model:` section of an experiment YAML (or a bare model YAML) with `overrides` applied."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML: {where}{getattr(err, 'problem', None) or err}") from None
    section = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: expected a mapping (a model config or an experiment config with model:)")
    apply_overrides(section, overrides)
    try:
        return from_dict(ModelConfig, section)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from None


def llm_side_counts(cfg: ModelConfig) -> tuple[int, int, int]:
    """(LLM parameters, LLM-LoRA trainable parameters, LLM width), from config.json on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    llm_dir = check_checkpoint_dir(cfg.llm_dir, "LLM")
    config = AutoConfig.from_pretrained(str(llm_dir), local_files_only=True)
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in llm.parameters())
    targets = cfg.llm_lora.target_modules or llm_lora_targets(llm)
    inject_adapters(llm, "vanilla", targets, [], None, rank=cfg.llm_lora.rank, alpha=cfg.llm_lora.alpha)
    lora = sum(count_trainable(layer) for layer in adapter_layers(llm).values())
    return total, lora, llm.get_input_embeddings().embedding_dim


@cli_main("param_table")
def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not isinstance(args.method_kwargs, dict):
        parser.error(f"--method_kwargs must be a mapping of method -> kwargs, got {args.method_kwargs!r}")
    cfg = load_model_config(args.config, args.overrides)
    adapter = cfg.encoder_adapter
    encoder = WhisperSpeechEncoder.from_pretrained(cfg.encoder_dir).whisper
    try:
        lid = lid_embeddings_for_model(adapter.lid_source, cfg.languages,
                                       whisper_dir=adapter.lid_whisper_dir or cfg.encoder_dir, file=adapter.lid_file)
    except (OSError, KeyError, ValueError) as err:
        # Counts depend only on the table's width; the encoder width is what every source gives.
        logger.warning("LID embeddings unavailable (%s); router sized for width %d", err, encoder.config.d_model)
        lid = None
    method_kwargs = {adapter.method: dict(adapter.method_kwargs)} if adapter.method else {}
    for method, kwargs in args.method_kwargs.items():
        method_kwargs.setdefault(method, {}).update(kwargs)
    rows = trainable_parameter_table(
        encoder, adapter.target_modules, cfg.languages, methods=args.methods, lid_embeddings=lid,
        lid_dim=encoder.config.d_model, rank=adapter.rank, alpha=adapter.alpha,
        method_kwargs=method_kwargs,
    )
    llm_total, llm_lora, d_llm = llm_side_counts(cfg)
    projector = count_trainable(build_projector(cfg.projector, encoder.config.d_model, d_llm,
                                                cfg.projector_hidden, cfg.projector_stride,
                                                encoder_dir=cfg.encoder_dir))
    encoder_total = sum(p.numel() for p in encoder.parameters())
    print(f"encoder {cfg.encoder_dir}: {encoder_total:,} parameters; LLM {cfg.llm_dir}: {llm_total:,} parameters")
    print(f"languages: {' '.join(cfg.languages)}; encoder adapter rank {adapter.rank}, alpha {adapter.alpha}, "
          f"targets {', '.join(adapter.target_modules)}")
    print(format_parameter_table(rows))
    print(f"also trained in both stages: projector {projector:,}, LLM LoRA {llm_lora:,} "
          f"(rank {cfg.llm_lora.rank}); Stage 1 also trains the whole encoder ({encoder_total:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
