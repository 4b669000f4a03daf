"""Loading a trained model for decoding, and exporting one language as plain transformers checkpoints.

Two kinds of model directory are accepted by `load_model`:
- an experiment dir (EXP/config.yaml + EXP/final or EXP/checkpoints/step_N): the config rebuilds the
  model (pretrained checkpoints, the Stage-1 weights of `model.init_from`, the adapters), then the trained
  tensors are loaded;
- an export dir written by `export_model` (export.json): the encoder adapter and the LLM LoRA of one
  language are already folded into the weights, so it loads as plain WhisperModel / causal-LM
  checkpoints plus the projector, with no adapter code in the forward.

Export layout:
    OUT/encoder/        WhisperModel checkpoint (the original decoder, the merged encoder), feature config
    OUT/llm/            causal-LM checkpoint with the LoRA merged, and its tokenizer
    OUT/projector.safetensors
    OUT/export.json     language, model languages, projector, regime, segment lengths, source experiment
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zipasr.adapters import adapter_layers, merge_adapters
from zipasr.model.ctc import CTC_HEAD_FILE, CTC_VOCAB_FILE

logger = logging.getLogger(__name__)

EXPORT_FILE = "export.json"


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / EXPORT_FILE).is_file()


def load_model(path: str | Path, checkpoint: str | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode, info) for an experiment dir or an export dir.

    checkpoint: for an experiment dir, a checkpoint name under EXP/checkpoints (e.g. step_00000200) or a
    path to one; default EXP/final (the averaged model). info: {"kind": "experiment"|"export",
    "lang": the export's language or None, "config": the ExperimentConfig or the export.json dict,
    "encoder_dir": the Whisper checkpoint whose feature settings the model expects}.
    """
    path = Path(path)
    if is_export_dir(path):
        if checkpoint is not None:
            raise ValueError(f"{path} is an export dir; --checkpoint applies to experiment dirs only")
        model, meta = load_export(path)
        return model.to(device).eval(), {"kind": "export", "lang": meta["lang"], "config": meta,
                                     "encoder_dir": str(path / "encoder")}
    from zipasr.model.speech_llm import SpeechLLM
    from zipasr.train.checkpoint import WEIGHTS, load_trainable_state, load_weights
    from zipasr.train.config import load_experiment_config

    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is neither an experiment dir (no config.yaml) nor an export dir "
                                f"(no {EXPORT_FILE})")
    cfg = load_experiment_config(config_file)
    build = copy.deepcopy(cfg.model)
    build.encoder_adapter.init_b_from = None  # the trained weights replace the warm start anyway
    model = SpeechLLM.from_config(build)
    if checkpoint is None:
        final = path / "final"
        if not final.is_dir():
            raise FileNotFoundError(f"{path} has no final/ model yet (training unfinished?); pass a --checkpoint "
                                    f"from {path / 'checkpoints'}")
        model.load_trainable(final)
    else:
        ckpt = Path(checkpoint)
        if not ckpt.is_dir():
            ckpt = path / "checkpoints" / checkpoint
        if (path / CTC_VOCAB_FILE).is_file():  # trained with an auxiliary CTC head (the trainer wrote its characters)
            from zipasr.model.ctc import CharVocab, CTCScorer

            model.attach_ctc_head(CTCScorer.warm_start(CharVocab.load(path / CTC_VOCAB_FILE), model.encoder.output_dim))
        # the stage's trainable flags say which tensors a step checkpoint must hold
        model.set_stage(cfg.train.stage, train_encoder=cfg.train.stage1_train_encoder,
                    stage2_convs=cfg.train.stage2_train_encoder_convs)
        load_trainable_state(model, load_weights(ckpt / WEIGHTS), str(ckpt))
    return model.to(device).eval(), {"kind": "experiment", "lang": None, "config": cfg,
                                     "encoder_dir": cfg.model.encoder_dir}


def unwrap_adapters(module: nn.Module) -> int:
    """Replace every merged adapter layer of `module` by its base nn.Linear (which holds W0 + ΔW)."""
    layers = adapter_layers(module)
    for name, layer in layers.items():
        if not layer.merged:
            raise RuntimeError(f"adapter {name} is not merged; merge before unwrapping")
        module.set_submodule(name, layer.base_layer)
    return len(layers)


def export_model(exp_dir: str | Path, lang: str, out_dir: str | Path, checkpoint: str | None = None) -> Path:
    """Fold the encoder adapter (for `lang`) and the LLM LoRA into the weights and save plain checkpoints."""
    from transformers import WhisperModel

    model, info = load_model(exp_dir, checkpoint)
    if info["kind"] != "experiment":
        raise ValueError(f"{exp_dir} is already an export")
    cfg = info["config"]
    if lang not in model.languages:
        raise ValueError(f"language {lang!r} is not among the model's languages {model.languages}")
    enc_layers, llm_layers = adapter_layers(model.encoder), adapter_layers(model.llm)
    not_mergeable = sorted({layer.method for layer in enc_layers.values() if not layer.mergeable})
    if not_mergeable:
        raise ValueError(f"{exp_dir}: {not_mergeable} adapters cannot be folded into the weights (their update "
                         "depends on each input token); decode the experiment dir instead")
    if enc_layers:
        merge_adapters(model.encoder, lang)
    if llm_layers:
        merge_adapters(model.llm)
    unwrap_adapters(model.encoder)
    unwrap_adapters(model.llm)

    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".tmp-{out_dir.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # The encoder as a whole WhisperModel (original decoder kept: its language-token embeddings are the
    # `whisper` LID source, and HF tools expect the full model).
    whisper = WhisperModel.from_pretrained(cfg.model.encoder_dir, local_files_only=True)
    whisper.get_encoder().load_state_dict(model.encoder.whisper.state_dict())
    whisper.save_pretrained(tmp / "encoder")
    for extra in ("preprocessor_config.json", "generation_config.json", CTC_HEAD_FILE, CTC_VOCAB_FILE):
        if (Path(cfg.model.encoder_dir) / extra).is_file():
            shutil.copy(Path(cfg.model.encoder_dir) / extra, tmp / "encoder" / extra)
    if model.ctc_head is not None:  # the model's own (auxiliary) CTC head replaces the pretrained encoder's
        model.ctc_head.save(tmp / "encoder")
    model.llm.save_pretrained(tmp / "llm")
    model.tokenizer.save_pretrained(tmp / "llm")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()},
              str(tmp / "projector.safetensors"))
    meta = {
        "lang": lang,
        "languages": model.languages,
        "projector": cfg.model.projector,
        "projector_hidden": cfg.model.projector_hidden,
        "projector_stride": cfg.model.projector_stride,
        "regime": cfg.model.regime,
        "train_segment_seconds": cfg.model.train_segment_seconds,
        "decode_segment_seconds": cfg.model.decode_segment_seconds,
        "encoder_adapter": cfg.model.encoder_adapter.method,
        "source_experiment": str(Path(exp_dir).resolve()),
        "checkpoint": checkpoint or "final",
    }
    (tmp / EXPORT_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    logger.info("exported %s (language %s, %d encoder + %d LLM adapter layers merged) to %s",
                exp_dir, lang, len(enc_layers), len(llm_layers), out_dir)
    return out_dir


def load_export(out_dir: str | Path):
    """(SpeechLLM without adapters, export.json) from an export dir."""
    from zipasr.model.encoder import WhisperSpeechEncoder
    from zipasr.model.llm import load_llm
    from zipasr.model.projector import build_projector
    from zipasr.model.speech_llm import SpeechLLM, seconds_to_frames

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / EXPORT_FILE).read_text(encoding="utf-8"))
    encoder = WhisperSpeechEncoder.from_pretrained(out_dir / "encoder")
    llm, tokenizer = load_llm(out_dir / "llm")
    projector = build_projector(meta["projector"], encoder.output_dim, llm.get_input_embeddings().embedding_dim,
                                meta["projector_hidden"], meta.get("projector_stride", 4), encoder_dir=out_dir / "encoder")
    state = load_file(str(out_dir / "projector.safetensors"))
    projector.load_state_dict(state)
    model = SpeechLLM(encoder, projector, llm, tokenizer, meta["languages"], regime=meta["regime"],
                      train_segment_frames=[seconds_to_frames(s) for s in meta["train_segment_seconds"]],
                      decode_segment_frames=seconds_to_frames(meta["decode_segment_seconds"]))
    return model, meta
