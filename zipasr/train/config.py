"""The experiment config: one YAML per experiment, loaded strictly into these dataclasses.

    model:   ModelConfig (zipasr.model.speech_llm): checkpoints, languages, regime, init_from,
             model.encoder_adapter (the Stage-2 method: the only section Stage-2 configs differ in),
             model.llm_lora
    data:    DataConfig     train/valid data dirs, packing budget, rows per batch
    optim:   OptimConfig    AdamW, warmup + cosine, clipping, gradient accumulation
    train:   TrainConfig    stage, length, precision, checkpoints, logging, DeepSpeed ZeRO stage

`load_experiment_config(path, overrides)` raises ConfigError naming an unknown key or a wrongly typed
value; `--set model.encoder_adapter.rank=16` style overrides follow the same rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zipasr.config import ConfigError, load_config
from zipasr.model.speech_llm import ModelConfig


@dataclass
class DataConfig:
    train_dir: str = ""  # Kaldi data dir with text, utt2lang, wav.scp (+ feats.scp from the dump stage)
    valid_dir: str | None = None  # validation loss at every checkpoint (None: no validation)
    max_tokens: int = 2048  # packed row budget: speech tokens (8x reduced) + text + EOS + prompt, per utterance
    prompt_tokens: int | None = None  # reserved prompt tokens per utterance (None: its language prompt's own length)
    batch_size: int | None = None  # packed rows per micro-batch per process (None: 16 chunked, 10 full context)
    cache_features: bool = True  # read every feature matrix into memory once (no disk I/O in the loop)
    max_frames: int | None = None  # drop longer utterances (None: 3000 in the full regime, no limit chunked)
    # Language sampling, not the paper's: each epoch draws language l with a share proportional to
    # (n_l / N)^alpha (zipasr.train.packing). 1: every utterance once (the paper); 0.5 as in XLS-R
    lang_alpha: float = 1.0
    # Not the paper's: factors on chosen languages' sampled shares, e.g. {vi: 2.0} (other languages 1; applied
    # with any lang_alpha, zipasr.train.packing.language_sample)
    lang_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 2.0e-5  # peak learning rate (paper Sec. V-B)
    warmup_ratio: float = 0.1  # share of the steps with linear warmup
    min_lr_ratio: float = 0.0  # the cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases and norms)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8
    grad_clip: float = 1.0  # global gradient norm clipping (0: none)
    grad_accum: int = 1  # micro-batches per optimizer step


@dataclass
class TrainConfig:
    stage: int = 1  # 1: encoder + projector + LLM LoRA; 2: encoder adapter + projector + LLM LoRA
    # false: Stage 1 keeps the encoder frozen (not the paper's; e.g. for the ctc_compress projector, whose
    # cut is made by the encoder's fixed CTC head and drifts when the encoder trains)
    stage1_train_encoder: bool = True
    # true: Stage 2 also trains the encoder's two input convolutions, shared by all languages (not the paper's;
    # SpeechLLM.set_stage). Saved as the checkpoint part encoder_convs.
    stage2_train_encoder_convs: bool = False
    max_steps: int = 0  # optimizer steps; 0: `epochs` passes over the packed data
    epochs: int = 1
    bf16: bool = True  # bf16 autocast where the hardware has it (fp32 master weights)
    save_every: int = 500  # checkpoint every N optimizer steps (and at the end)
    keep_last: int = 3  # full checkpoints (with optimizer state) kept for --resume
    avg_last: int = 3  # the final model is the average of the last N checkpoints
    log_every: int = 10  # TensorBoard / log-file interval in steps
    seed: int = 0
    zero_stage: int = 2  # DeepSpeed ZeRO stage
    max_bad_steps: int = 10  # stop after this many non-finite losses in a row (each is skipped and counted)
    threads: int = 0  # torch intra-op threads per process (0: leave torch's default)


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        method = self.model.encoder_adapter.method
        if self.train.stage not in (1, 2):
            raise ConfigError(f"config key 'train.stage' must be 1 or 2, got {self.train.stage}")
        if self.train.stage == 1 and method:
            raise ConfigError(f"Stage 1 has no encoder adapter, but model.encoder_adapter.method is {method!r}")
        if self.train.stage == 2 and not method:
            raise ConfigError("Stage 2 trains an encoder adapter: set model.encoder_adapter.method")
        if self.train.max_steps < 0 or (self.train.max_steps == 0 and self.train.epochs <= 0):
            raise ConfigError("set train.max_steps > 0 or train.epochs > 0")
        for key in ("save_every", "keep_last", "avg_last", "log_every", "max_bad_steps"):
            if getattr(self.train, key) <= 0:
                raise ConfigError(f"config key 'train.{key}' must be positive")
        if not 0.0 <= self.data.lang_alpha <= 1.0:
            raise ConfigError(f"config key 'data.lang_alpha' must be in [0, 1], got {self.data.lang_alpha}")
        bad = {lang: w for lang, w in self.data.lang_weights.items() if not w > 0}
        if bad:
            raise ConfigError(f"config key 'data.lang_weights' must map languages to positive factors, got {bad}")
        if self.optim.grad_accum <= 0:
            raise ConfigError("config key 'optim.grad_accum' must be positive")
        if len(self.optim.betas) != 2:
            raise ConfigError("config key 'optim.betas' must hold two numbers")

    @property
    def batch_size(self) -> int:
        if self.data.batch_size is not None:
            return self.data.batch_size
        return 16 if self.model.regime == "chunked" else 10


def load_experiment_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """YAML (+ `key=value` overrides) -> ExperimentConfig; errors name the offending key."""
    try:
        return load_config(ExperimentConfig, path, overrides)
    except ValueError as err:  # a __post_init__ check of ModelConfig is a config error too
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{path}: {err}") from None


def resolve_checkpoint_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Let `model.init_from` and `model.encoder_adapter.init_b_from` name an experiment dir: they are
    replaced by the checkpoint inside it (EXP/final, EXP/final/encoder_adapter)."""
    from zipasr.model.speech_llm import ENCODER_ADAPTER_DIR, META_FILE

    init_from = cfg.model.init_from
    if init_from and not (Path(init_from) / META_FILE).is_file() and (Path(init_from) / "final" / META_FILE).is_file():
        cfg.model.init_from = str(Path(init_from) / "final")
    init_b = cfg.model.encoder_adapter.init_b_from
    if init_b and not (Path(init_b) / "adapter_config.json").is_file():
        candidate = Path(init_b) / "final" / ENCODER_ADAPTER_DIR
        if (candidate / "adapter_config.json").is_file():
            cfg.model.encoder_adapter.init_b_from = str(candidate)
    return cfg
