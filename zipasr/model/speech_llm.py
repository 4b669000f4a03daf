"""The Speech-LLM: SpeechLLM(encoder, projector, llm) (paper Sec. III-A, IV-F, V-B).

Input of the LLM for an utterance of language l:  Emb(prompt_l) ⊕ P(E(X)) ⊕ Emb(transcript) ⊕ Emb(EOS);
the loss is cross-entropy on the transcript tokens and EOS only. Utterances packed into one LLM row sit
side by side under a block-diagonal causal mask (packed samples never attend to each other), each with
its own position ids starting at 0.

Languages are passed explicitly: `lang_ids` (B,) index `SpeechLLM.languages` and are bound to the shared
`LangState` while the encoder runs, so every encoder adapter layer routes each sample to its language.

Training stages (paper Sec. IV-F):
- Stage 1: encoder + projector + LLM-side LoRA trainable, no encoder adapter;
- Stage 2: encoder frozen (its Stage-1 weights), encoder-side adapter + projector + LLM-side LoRA trainable.

Optionally (`ModelConfig.aux_ctc`, not the paper's) a character CTC head on the encoder output adds
weight x its CTC loss to either stage's objective; its gradient reaches whatever the stage trains in the
encoder (Stage 2: the encoder adapter). The head also serves N-best rescoring in decoding.
"""
from __future__ import annotations

import json
import logging
import math
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import LogitsProcessorList
from transformers.cache_utils import DynamicLayer

from zipasr.adapters import LangState, adapter_layers, init_b_from_checkpoint, inject_adapters, load_adapters, save_adapters
from zipasr.adapters.inject import ROUTED_METHODS, read_safetensors
from zipasr.languages import check_languages, get_language
from zipasr.model.ctc import (CTC_HEAD_FILE, CTC_VOCAB_FILE, UNICODE_FORMS, CharVocab, CTCPrefixScorer, CTCScorer,
                              rescore)
from zipasr.model.encoder import MEL_FRAMES_PER_SECOND, WhisperSpeechEncoder
from zipasr.model.lid import LID_SOURCES, lid_embeddings_for_model
from zipasr.model.llm import llm_lora_targets, load_llm
from zipasr.model.projector import PROJECTORS, build_projector

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Every linear layer of a Whisper encoder layer: attention projections and FFN (paper Sec. V-B).
WHISPER_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REGIMES = ("chunked", "full")
ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa", "flash_attention_2")  # None: transformers' default

# Files of a trainable-parts checkpoint directory (see SpeechLLM.save_trainable).
PROJECTOR_FILE = "projector.safetensors"
ENCODER_FILE = "encoder.safetensors"
ENCODER_CONVS_FILE = "encoder_convs.safetensors"  # Stage 2 with set_stage(stage2_convs=True)
ENCODER_CONV_PREFIXES = ("whisper.conv1.", "whisper.conv2.")  # the encoder's input convolutions
ENCODER_ADAPTER_DIR = "encoder_adapter"
LLM_LORA_DIR = "llm_lora"
META_FILE = "speech_llm.json"


# --------------------------------------------------------------------------- configs
@dataclass
class EncoderAdapterConfig:
    """The encoder-side adapter of Stage 2 (method None: no encoder adapter, i.e. Stage 1)."""

    method: str | None = None  # vanilla | independent | flylora | zipper_static | zipper_hard | zipper_soft
    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(WHISPER_ENCODER_TARGETS))
    method_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {k: 8}, {r_s: 16, r_p: 16}, {tau: 0.5}
    lid_source: str = "whisper"  # router input e(l): whisper | acoustic | file
    lid_file: str | None = None  # safetensors from `zipasr.bin.lid_embed` (acoustic / file sources)
    lid_whisper_dir: str | None = None  # Whisper checkpoint for the `whisper` source (default: encoder_dir)
    init_b_from: str | None = None  # Initial-B: a Zipper-Soft encoder_adapter checkpoint directory
    init_b_router: bool = False  # Initial-B also copies the router


@dataclass
class LLMLoRAConfig:
    """Plain LoRA on the LLM side (both stages)."""

    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: the default of the LLM's model_type (llm.LLM_LORA_TARGETS)


@dataclass
class AuxCTCConfig:
    """An auxiliary character CTC loss on the encoder output (not the paper's; off by default).

    The head's characters are those of the training transcripts plus the warm-start head's; the warm start
    (`init_from`, default: the encoder dir when it holds a CTC head, as the mini recipe's does) gives the
    rows of the characters it knows."""

    weight: float = 0.0  # objective = CE + weight x CTC (per target character); 0: no head
    init_from: str | None = None  # a dir with ctc_head.safetensors + ctc_vocab.json
    # Unicode form of the head's characters (ctc.CharVocab): NFC, one label per composed letter; NFD, accents,
    # tone marks and Hangul jamo as labels of their own (rows of the warm start's base letters reused)
    form: str = "NFC"


@dataclass
class ModelConfig:
    """Everything that builds a SpeechLLM; YAML keys equal these fields."""

    encoder_dir: str = ""  # local Whisper checkpoint (e.g. whisper-large-v3)
    llm_dir: str = ""  # local causal-LM checkpoint with its tokenizer (e.g. Qwen3-1.7B)
    languages: list[str] = field(default_factory=list)  # ISO 639-1; lang_ids index this list
    # gated_conv: the paper's; ctc_compress: one input per character predicted by the encoder's CTC head
    # (not the paper's; needs encoder_dir/ctc_head.safetensors, i.e. the mini recipe's encoder)
    projector: str = "gated_conv"
    projector_hidden: int | None = None  # None: the LLM width
    # Frames of the encoder (50 Hz) per LLM input: 4 is the paper's 12.5 Hz. The mini recipe's LLM is
    # character-level (~17 characters/s), so it uses 2 (25 Hz) to keep more inputs than output tokens.
    # ctc_compress has no stride (its rate is the audio's characters'): packing assumes this one.
    projector_stride: int = 4
    regime: str = "chunked"  # chunked: segment-wise encoder; full: whole utterance
    train_segment_seconds: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    decode_segment_seconds: float = 8.0
    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights of encoder and LLM)
    gradient_checkpointing: bool = False
    # encode each batch in groups of similar length, each padded to its own longest (zipasr.model.encoder;
    # the same outputs up to float rounding, less work on padding); false: one batch padded to its longest
    encoder_length_grouping: bool = True
    # transformers attention kernel of the encoder and the LLM: None (transformers' default, sdpa), "eager",
    # "sdpa" or "flash_attention_2" (GPU). On CPU, eager trains tiny models faster and sdpa decodes faster
    # (BENCHMARKS.md, attention kernels).
    attn_implementation: str | None = None
    init_from: str | None = None  # a Stage-1 checkpoint dir, loaded before the encoder adapter is inserted
    encoder_adapter: EncoderAdapterConfig = field(default_factory=EncoderAdapterConfig)
    llm_lora: LLMLoRAConfig = field(default_factory=LLMLoRAConfig)
    aux_ctc: AuxCTCConfig = field(default_factory=AuxCTCConfig)

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"model.regime must be one of {REGIMES}, got {self.regime!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.projector not in PROJECTORS:
            raise ValueError(f"unknown model.projector {self.projector!r}; known: {', '.join(PROJECTORS)}")
        if self.projector_stride < 1:
            raise ValueError(f"model.projector_stride must be >= 1, got {self.projector_stride}")
        if self.encoder_adapter.lid_source not in LID_SOURCES:
            raise ValueError(f"encoder_adapter.lid_source must be one of {LID_SOURCES}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"model.attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                             f"got {self.attn_implementation!r}")
        if self.aux_ctc.weight < 0:
            raise ValueError(f"model.aux_ctc.weight must be >= 0, got {self.aux_ctc.weight}")
        if self.aux_ctc.form not in UNICODE_FORMS:
            raise ValueError(f"model.aux_ctc.form must be one of {UNICODE_FORMS}, got {self.aux_ctc.form!r}")
        check_languages(self.languages)


def seconds_to_frames(seconds: float) -> int:
    """Segment length in mel frames (even, so segments align with the encoder's 2x downsampling)."""
    frames = int(round(seconds * MEL_FRAMES_PER_SECOND))
    if frames <= 0 or frames % 2:
        raise ValueError(f"a segment of {seconds} s gives {frames} mel frames; it must be a positive even number")
    return frames


# --------------------------------------------------------------------------- batch / output
@dataclass
class SpeechBatch:
    """One training batch.

    feats (N, n_mels, T) float; feat_lens (N,) long; lang_ids (N,) long (indices into SpeechLLM.languages);
    text_ids: N transcripts as token ids, without EOS; rows: which utterances share one LLM row
    (packing, same language by the data side's choice); default one utterance per row; texts: the N
    transcripts as text (the auxiliary CTC loss's targets; needed only when the model has one).
    """

    feats: Tensor
    feat_lens: Tensor
    lang_ids: Tensor
    text_ids: list[list[int]]
    rows: list[list[int]] | None = None
    texts: list[str] | None = None

    def to(self, device) -> "SpeechBatch":
        return SpeechBatch(self.feats.to(device), self.feat_lens.to(device), self.lang_ids.to(device),
                           self.text_ids, self.rows, self.texts)


@dataclass
class SpeechLLMOutput:
    loss: Tensor  # mean cross-entropy over target tokens (transcripts + EOS) [+ aux_ctc weight x ctc_loss]
    n_tokens: int  # number of target tokens
    ctc_loss: Tensor | None = None  # auxiliary CTC loss per target character (models with a CTC head)


# --------------------------------------------------------------------------- the model
class SpeechLLM(nn.Module):
    """Whisper encoder E -> projector P -> causal LM M, with language-specific prompts.

    Args:
        encoder: WhisperSpeechEncoder; projector: (B, S, d_enc), lens -> (B, S', d_llm), lens;
        llm: a transformers causal LM; tokenizer: its tokenizer (needs an EOS token);
        languages: ISO 639-1 codes; `lang_ids` index this list.
        regime: "chunked" (segment-wise encoder) or "full"; train_segment_frames: the set drawn from per batch
        in training; decode_segment_frames: the segment length for decoding (chunked regime).
    """

    def __init__(self, encoder: WhisperSpeechEncoder, projector: nn.Module, llm: nn.Module, tokenizer,
                 languages: list[str], regime: str = "chunked",
                 train_segment_frames: list[int] = (100, 200, 400, 800), decode_segment_frames: int = 800):
        super().__init__()
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
        self.languages = check_languages(languages)
        if not self.languages:
            raise ValueError("a SpeechLLM needs at least one language")
        self.lang_state = LangState(self.languages)
        self.encoder = encoder
        self.encoder.lang_state = self.lang_state
        self.projector = projector
        self.llm = llm
        self.tokenizer = tokenizer
        self.regime = regime
        self.train_segment_frames = list(train_segment_frames)
        self.decode_segment_frames = decode_segment_frames
        if tokenizer.eos_token_id is None:
            raise ValueError("the LLM tokenizer has no EOS token")
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        # The prompt of each language, tokenised once.
        self.prompt_ids = [self.tokenize_prompt(code) for code in self.languages]
        self.encoder_adapter_config: EncoderAdapterConfig | None = None
        self.llm_lora_config: LLMLoRAConfig | None = None
        self.ctc_head: CTCScorer | None = None  # auxiliary CTC head (attach_ctc_head)
        self.ctc_weight = 0.0

    def tokenize_prompt(self, code: str) -> list[int]:
        """Token ids of the language table's prompt for `code` (no special tokens)."""
        return self.tokenizer(get_language(code).prompt, add_special_tokens=False)["input_ids"]

    # ----------------------------------------------------------------- building
    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "SpeechLLM":
        """Build from local checkpoints: encoder + projector + LLM (+ LLM LoRA), then `init_from`'s
        trainable parts (Stage-1 result), then the encoder adapter if `encoder_adapter.method` is set."""
        dtype = DTYPES[cfg.dtype]
        encoder = WhisperSpeechEncoder.from_pretrained(cfg.encoder_dir, dtype=dtype,
                                                       attn_implementation=cfg.attn_implementation,
                                                       gradient_checkpointing=cfg.gradient_checkpointing,
                                                       length_grouping=cfg.encoder_length_grouping)
        llm, tokenizer = load_llm(cfg.llm_dir, dtype=dtype, attn_implementation=cfg.attn_implementation)
        if cfg.gradient_checkpointing:
            # non-reentrant: the frozen LLM's inputs need no requires_grad for the LoRA gradients to flow
            llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        projector = build_projector(cfg.projector, encoder.output_dim, llm.get_input_embeddings().embedding_dim,
                                    cfg.projector_hidden, cfg.projector_stride, encoder_dir=cfg.encoder_dir)
        model = cls(encoder, projector, llm, tokenizer, cfg.languages, regime=cfg.regime,
                    train_segment_frames=[seconds_to_frames(s) for s in cfg.train_segment_seconds],
                    decode_segment_frames=seconds_to_frames(cfg.decode_segment_seconds))
        model.insert_llm_lora(cfg.llm_lora)
        model.ctc_weight = cfg.aux_ctc.weight
        if cfg.init_from:
            model.load_trainable(cfg.init_from)
        if cfg.encoder_adapter.method:
            whisper_dir = cfg.encoder_adapter.lid_whisper_dir or cfg.encoder_dir
            model.insert_encoder_adapters(cfg.encoder_adapter, whisper_dir=whisper_dir)
        return model

    def insert_llm_lora(self, cfg: LLMLoRAConfig) -> list[str]:
        """Plain LoRA into the LLM's linear layers (both stages); returns the wrapped layer names."""
        targets = cfg.target_modules or llm_lora_targets(self.llm)
        names = inject_adapters(self.llm, "vanilla", targets, [], None,
                                rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout)
        self.llm_lora_config = cfg
        return names

    def insert_encoder_adapters(self, cfg: EncoderAdapterConfig, whisper_dir: str | Path | None = None) -> list[str]:
        """The Stage-2 encoder adapter of `cfg.method` into every matching encoder linear layer.

        Zipper-Hard/Soft get the LID table e(l) of `cfg.lid_source` (`whisper` reads `whisper_dir`);
        `cfg.init_b_from` applies the Initial-B warm start.
        """
        if not cfg.method:
            raise ValueError("encoder_adapter.method is not set")
        kwargs = dict(cfg.method_kwargs, rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout)
        if cfg.method in ROUTED_METHODS:
            kwargs["lid_embeddings"] = lid_embeddings_for_model(
                cfg.lid_source, self.languages, whisper_dir=whisper_dir, file=cfg.lid_file)
        names = inject_adapters(self.encoder, cfg.method, cfg.target_modules, self.languages, self.lang_state,
                                **kwargs)
        # new adapter tensors follow the encoder if it was moved to a device before the insertion
        self.encoder.to(next(self.encoder.parameters()).device)
        if cfg.init_b_from:
            init_b_from_checkpoint(self.encoder, cfg.init_b_from, router=cfg.init_b_router)
        self.encoder_adapter_config = cfg
        return names

    def attach_ctc_head(self, head: CTCScorer) -> None:
        """Give the model an auxiliary CTC head (trained in both stages while it is attached)."""
        self.ctc_head = head.to(next(self.encoder.parameters()).device)

    def build_ctc_head(self, texts, init_dir: str | Path | None = None, form: str = "NFC") -> CTCScorer:
        """A CTC head over the characters of `texts` (the training transcripts) and of the warm start, in
        Unicode form `form` (a warm start in another form gives its characters converted: an NFC head's
        "é" gives an NFD head "e" and U+0301). The warm start: the head the model already has (from a
        checkpoint with one), else `init_dir`'s when it holds one."""
        init, source = self.ctc_head, "the model's own head"
        if init is None and init_dir and (Path(init_dir) / CTC_HEAD_FILE).is_file():
            init, source = CTCScorer.from_dir(init_dir), str(init_dir)
        chars = set(CharVocab.from_texts(texts, form).chars)
        if init is not None:
            # one character at a time (normalize_chars would drop the space)
            chars |= {c for ch in init.vocab.chars for c in unicodedata.normalize(form, ch)}
        logger.info("CTC head over %d characters (%s), warm start from %s", len(chars), form,
                    source if init is not None else "nothing (no head found)")
        return CTCScorer.warm_start(CharVocab(sorted(chars), form), self.encoder.output_dim, init)

    # ----------------------------------------------------------------- trainable parts
    def _adapter_param_ids(self, module: nn.Module) -> set[int]:
        return {id(p) for layer in adapter_layers(module).values()
                for key, p in layer.named_parameters() if not key.startswith("base_layer.")}

    def set_attn_implementation(self, name: str) -> None:
        """Switch the attention kernel of the encoder and the LLM ("eager", "sdpa", ...; weights unchanged)."""
        if name not in ATTN_IMPLEMENTATIONS or name is None:
            raise ValueError(f"attention implementation must be one of {ATTN_IMPLEMENTATIONS[1:]}, got {name!r}")
        self.encoder.whisper.set_attn_implementation(name)
        self.llm.set_attn_implementation(name)

    def set_stage(self, stage: int, train_encoder: bool = True, stage2_convs: bool = False) -> None:
        """requires_grad per stage. Stage 1: encoder + projector + LLM LoRA; Stage 2: encoder adapter +
        projector + LLM LoRA. Adapter parameters keep their own flags (FlyLoRA's A stays frozen).
        train_encoder=False: Stage 1 leaves the encoder frozen (not the paper's).
        stage2_convs=True: Stage 2 also trains the encoder's two input convolutions, shared by all languages
        (not the paper's, whose Stage 2 freezes the encoder: a front end pretrained on other languages may
        have learnt to discard cues, such as pitch, that the target languages need)."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        enc_adapter, llm_adapter = self._adapter_param_ids(self.encoder), self._adapter_param_ids(self.llm)
        if stage == 1 and enc_adapter:
            raise RuntimeError("Stage 1 has no encoder adapter, but the encoder carries adapter layers")
        if stage == 2 and not enc_adapter:
            raise RuntimeError("Stage 2 trains an encoder adapter; insert it first (insert_encoder_adapters)")
        if not llm_adapter:
            raise RuntimeError("both stages train the LLM-side LoRA; insert it first (insert_llm_lora)")
        for name, p in self.encoder.named_parameters():
            if id(p) not in enc_adapter:
                # Whisper's positional table is fixed (HF freezes it too)
                p.requires_grad_(stage == 1 and train_encoder and "embed_positions" not in name
                                 or stage == 2 and stage2_convs and name.startswith(ENCODER_CONV_PREFIXES))
        for p in self.llm.parameters():
            if id(p) not in llm_adapter:
                p.requires_grad_(False)
        self.projector.requires_grad_(True)
        if self.ctc_head is not None:
            self.ctc_head.requires_grad_(True)

    def trainable_parameter_count(self) -> dict[str, int]:
        counts = {"encoder": count_trainable(self.encoder), "projector": count_trainable(self.projector),
                  "llm": count_trainable(self.llm)}
        if self.ctc_head is not None:
            counts["ctc_head"] = count_trainable(self.ctc_head)
        return counts

    def save_trainable(self, out_dir: str | Path) -> Path:
        """Write the parts that training changes (never the frozen LLM):
        projector.safetensors; encoder.safetensors when the encoder itself is trainable (Stage 1);
        encoder_adapter/ and llm_lora/ adapter checkpoints; the auxiliary CTC head (ctc_head.safetensors,
        ctc_vocab.json: a dir `CTCScorer.from_dir` reads); speech_llm.json (languages, parts)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        parts = ["projector"]
        save_file(_cpu_state(self.projector.state_dict()), str(out_dir / PROJECTOR_FILE))
        enc_adapter = self._adapter_param_ids(self.encoder)
        base = {n for n, p in self.encoder.named_parameters() if p.requires_grad and id(p) not in enc_adapter}
        if base and enc_adapter:
            if not all(n.startswith(ENCODER_CONV_PREFIXES) for n in base):
                raise RuntimeError("the encoder carries adapters and has trainable base weights; use set_stage()")
            convs = {k: v for k, v in self.encoder.state_dict().items() if k.startswith(ENCODER_CONV_PREFIXES)}
            save_file(_cpu_state(convs), str(out_dir / ENCODER_CONVS_FILE))
            parts.append("encoder_convs")
        elif base:
            save_file(_cpu_state(self.encoder.whisper.state_dict()), str(out_dir / ENCODER_FILE))
            parts.append("encoder")
        if enc_adapter:
            save_adapters(self.encoder, out_dir / ENCODER_ADAPTER_DIR,
                          extra_config=_as_json(self.encoder_adapter_config))
            parts.append("encoder_adapter")
        if self._adapter_param_ids(self.llm):
            save_adapters(self.llm, out_dir / LLM_LORA_DIR, extra_config=_as_json(self.llm_lora_config))
            parts.append("llm_lora")
        if self.ctc_head is not None:
            self.ctc_head.save(out_dir)
            parts.append("ctc_head")
        meta = {"languages": self.languages, "parts": parts, "projector": type(self.projector).__name__}
        (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        logger.info("saved %s to %s", ", ".join(parts), out_dir)
        return out_dir

    def load_trainable(self, ckpt_dir: str | Path) -> list[str]:
        """Load what `save_trainable` wrote (each part strictly checked); returns the parts loaded."""
        ckpt_dir = Path(ckpt_dir)
        meta_file = ckpt_dir / META_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{ckpt_dir} is not a SpeechLLM checkpoint (no {META_FILE})")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        # Only the encoder adapter is language-specific: a Stage-1 checkpoint (source languages) must load
        # into a Stage-2 model of other (target) languages, as in the paper's two-stage setting.
        if "encoder_adapter" in meta["parts"] and meta["languages"] != self.languages:
            raise ValueError(f"{ckpt_dir} was trained for languages {meta['languages']}, the model has {self.languages}")
        load_module_weights(self.projector, ckpt_dir / PROJECTOR_FILE)
        if "encoder" in meta["parts"]:
            if adapter_layers(self.encoder):
                raise RuntimeError(
                    f"{ckpt_dir} holds full encoder weights (Stage 1); load them before inserting encoder adapters "
                    "(ModelConfig.init_from)")
            load_module_weights(self.encoder.whisper, ckpt_dir / ENCODER_FILE)
        if "encoder_adapter" in meta["parts"]:
            load_adapters(self.encoder, ckpt_dir / ENCODER_ADAPTER_DIR)
        if "encoder_convs" in meta["parts"]:
            convs_file = ckpt_dir / ENCODER_CONVS_FILE
            if not convs_file.is_file():
                raise FileNotFoundError(f"checkpoint file not found: {convs_file}")
            state = read_safetensors(convs_file)[0]
            own = {k: v for k, v in self.encoder.state_dict().items() if k.startswith(ENCODER_CONV_PREFIXES)}
            if set(state) != set(own) or any(own[k].shape != v.shape for k, v in state.items()):
                raise KeyError(f"{convs_file} does not fit the encoder's convolutions {sorted(own)}")
            self.encoder.load_state_dict(state, strict=False)
        if "llm_lora" in meta["parts"]:
            load_adapters(self.llm, ckpt_dir / LLM_LORA_DIR)
        if "ctc_head" in meta["parts"]:
            head = CTCScorer.from_dir(ckpt_dir)
            if self.ctc_head is not None and self.ctc_head.vocab != head.vocab:
                raise ValueError(f"{ckpt_dir / CTC_VOCAB_FILE}: the CTC head's characters differ from the model's")
            self.attach_ctc_head(head)
        logger.info("loaded %s from %s", ", ".join(meta["parts"]), ckpt_dir)
        return meta["parts"]

    # ----------------------------------------------------------------- forward
    def segment_frames(self, segment_frames: int | None = None) -> int | None:
        """The encoder segment length for this call: an explicit value wins (0 = full context);
        otherwise by regime: full -> None; chunked -> drawn from the training set per call in training
        mode, the decoding length in eval mode."""
        if segment_frames is not None:
            return segment_frames or None
        if self.regime == "full":
            return None
        return random.choice(self.train_segment_frames) if self.training else self.decode_segment_frames

    def encode(self, feats: Tensor, feat_lens: Tensor, lang_ids: Tensor,
               segment_frames: int | None = None) -> tuple[Tensor, Tensor]:
        """feats (N, n_mels, T), feat_lens (N,), lang_ids (N,) -> speech embeddings (N, S', d_llm), lens (N,);
        S' = ceil(T/8) with the paper's projector (stride 4)."""
        return self._encode(feats, feat_lens, lang_ids, segment_frames)[:2]

    def _encode(self, feats: Tensor, feat_lens: Tensor, lang_ids: Tensor,
                segment_frames: int | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """encode()'s (speech, lens) and the encoder's own output (N, ceil(T/2), d_enc) with its lens."""
        with self.lang_state.bound(lang_ids):
            hidden, lens = self.encoder(feats, feat_lens, self.segment_frames(segment_frames))
        return *self.projector(hidden, lens), hidden, lens

    @torch.no_grad()
    def utterance_embeddings(self, feats: Tensor, feat_lens: Tensor, lang_ids: Tensor,
                             segment_frames: int | None = None) -> Tensor:
        """Mean-pooled encoder outputs (N, d_enc), encoder adapters routed by `lang_ids` (t-SNE, Fig. 8)."""
        with self.lang_state.bound(lang_ids):
            return self.encoder.utterance_embeddings(feats, feat_lens, self.segment_frames(segment_frames))

    def forward(self, batch: SpeechBatch, segment_frames: int | None = None) -> SpeechLLMOutput:
        """Teacher-forced loss over transcript + EOS tokens (mean over those tokens)."""
        n = batch.feats.shape[0]
        if len(batch.text_ids) != n or batch.lang_ids.shape[0] != n:
            raise ValueError(f"batch of {n} utterances has {len(batch.text_ids)} transcripts and "
                             f"{batch.lang_ids.shape[0]} lang_ids")
        rows = batch.rows if batch.rows is not None else [[i] for i in range(n)]
        if sorted(i for row in rows for i in row) != list(range(n)):
            raise ValueError(f"batch.rows must use every utterance 0..{n - 1} exactly once, got {rows}")
        speech, speech_lens, enc_out, enc_lens = self._encode(batch.feats, batch.feat_lens, batch.lang_ids,
                                                              segment_frames)
        lang_ids = batch.lang_ids.tolist()
        speech_lens = speech_lens.tolist()

        # Token ids of each row with a placeholder at speech positions, the speech mask, the target of
        # each position (IGNORE_INDEX except transcript + EOS), per-sample positions and sample ids.
        row_ids, row_speech, row_targets, row_pos, row_sample = [], [], [], [], []
        for row in rows:
            ids, is_speech, targets, pos, sample = [], [], [], [], []
            for k, i in enumerate(row):
                prompt, text = self.prompt_ids[lang_ids[i]], list(batch.text_ids[i]) + [self.eos_id]
                length = len(prompt) + speech_lens[i] + len(text)
                ids += prompt + [self.pad_id] * speech_lens[i] + text
                is_speech += [False] * len(prompt) + [True] * speech_lens[i] + [False] * len(text)
                targets += [IGNORE_INDEX] * (len(prompt) + speech_lens[i]) + text
                pos += list(range(length))
                sample += [k] * length
            row_ids.append(ids), row_speech.append(is_speech), row_targets.append(targets)
            row_pos.append(pos), row_sample.append(sample)
        device = speech.device
        input_ids = _pad(row_ids, self.pad_id, device)
        speech_mask = _pad(row_speech, False, device, torch.bool)
        targets = _pad(row_targets, IGNORE_INDEX, device)
        position_ids = _pad(row_pos, 0, device)
        sample_ids = _pad(row_sample, -1, device)

        embed = self.llm.get_input_embeddings()
        inputs = embed(input_ids)
        speech_flat = torch.cat([speech[i, :speech_lens[i]] for row in rows for i in row]).to(inputs.dtype)
        inputs = inputs.masked_scatter(speech_mask[..., None], speech_flat)

        mask = packed_causal_mask(sample_ids, inputs.dtype)
        hidden = self.llm.get_decoder()(inputs_embeds=inputs, attention_mask=mask, position_ids=position_ids,
                                        use_cache=False).last_hidden_state
        # Position t predicts token t+1; the LM head runs only where there is a target (saves the
        # (rows, length, vocab) logits tensor).
        shifted = targets[:, 1:]
        selected = shifted != IGNORE_INDEX
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][selected]).float()
        n_tokens = int(selected.sum())
        loss = nn.functional.cross_entropy(logits, shifted[selected], reduction="sum") / max(n_tokens, 1)
        if self.ctc_head is None or self.ctc_weight <= 0:
            return SpeechLLMOutput(loss=loss, n_tokens=n_tokens)
        if batch.texts is None or len(batch.texts) != n:
            raise ValueError("the auxiliary CTC loss needs the batch's transcripts as text (SpeechBatch.texts)")
        ctc_sum, n_chars = self.ctc_head.loss(enc_out, enc_lens, batch.texts)
        ctc = ctc_sum / max(n_chars, 1)
        return SpeechLLMOutput(loss=loss + self.ctc_weight * ctc, n_tokens=n_tokens, ctc_loss=ctc.detach())

    # ----------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, feats: Tensor, feat_lens: Tensor, lang_ids: Tensor, max_new_tokens: int = 200,
                 num_beams: int = 1, segment_frames: int | None = None, max_len_ratio: float = 0.0,
                 ctc_scorer: CTCScorer | None = None, ctc_weight: float = 0.0, ctc_mode: str = "rescore",
                 **generate_kwargs) -> list[str]:
        """Transcribe a batch: feats (N, n_mels, T), feat_lens (N,), lang_ids (N,) -> N transcripts.

        Greedy (num_beams=1) or beam search through `llm.generate` with a KV cache, on left-padded
        prompt ⊕ speech embeddings. Only the generated transcript is returned (no prompt, no EOS).
        segment_frames: None = the model's decoding regime; 0 = full context; n = n-frame segments.
        max_len_ratio > 0 also bounds the new tokens by ratio x the batch's longest speech-embedding
        sequence (ESPnet's maxlenratio): a model caught in a repetition loop stops there, not at
        max_new_tokens.
        ctc_scorer with ctc_weight > 0: a CTC head on the encoder output (zipasr.model.ctc; e.g. the model's
        own `ctc_head`) rescores the num_beams-best of each utterance (ctc_mode "rescore", beam search only)
        or scores every prefix inside the search (ctc_mode "joint": joint CTC/attention decoding).
        """
        if ctc_mode not in ("rescore", "joint"):
            raise ValueError(f"ctc_mode must be 'rescore' or 'joint', got {ctc_mode!r}")
        speech, speech_lens, hidden, enc_lens = self._encode(feats, feat_lens, lang_ids, segment_frames)
        if max_len_ratio > 0:
            max_new_tokens = min(max_new_tokens, math.ceil(max_len_ratio * int(speech_lens.max())))
        embed = self.llm.get_input_embeddings()
        prefixes = []
        for i, lang in enumerate(lang_ids.tolist()):
            prompt = embed(torch.tensor(self.prompt_ids[lang], device=speech.device))
            prefixes.append(torch.cat([prompt, speech[i, : int(speech_lens[i])].to(prompt.dtype)]))
        length = max(p.shape[0] for p in prefixes)
        inputs = prefixes[0].new_zeros(len(prefixes), length, prefixes[0].shape[-1])
        attention_mask = torch.zeros(len(prefixes), length, dtype=torch.long, device=speech.device)
        for i, p in enumerate(prefixes):  # left padding: generation continues right after each prefix
            inputs[i, length - p.shape[0]:] = p
            attention_mask[i, length - p.shape[0]:] = 1
        options = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                       eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        options.update(generate_kwargs)
        rescoring = ctc_scorer is not None and ctc_weight > 0
        if rescoring and ctc_mode == "joint":
            joint = CTCPrefixScorer(ctc_scorer, hidden, enc_lens, num_beams, ctc_weight, self.tokenizer, self.eos_id)
            # Last of the processors: it prunes to the pre-beam of what the others (the lexicon) allow.
            options["logits_processor"] = LogitsProcessorList([*options.get("logits_processor", []), joint])
            rescoring = False
        if num_beams > 1 and length > 1 and "cache" not in options:
            options["cache"] = self._prefill(inputs[:, :-1], attention_mask[:, :-1], num_beams, max_new_tokens + 1)
        if not rescoring:
            out = self.llm.generate(inputs_embeds=inputs, attention_mask=attention_mask, **options)
            return [self.tokenizer.decode(seq, skip_special_tokens=True).strip() for seq in out]
        if num_beams < 2:
            raise ValueError("CTC rescoring needs an N-best: use beam search (num_beams > 1)")
        out = self.llm.generate(inputs_embeds=inputs, attention_mask=attention_mask, num_return_sequences=num_beams,
                                output_scores=True, return_dict_in_generate=True, **options)
        seqs = out.sequences.view(len(prefixes), num_beams, -1)
        scores = out.sequences_scores.view(len(prefixes), num_beams).float().cpu()
        log_probs = ctc_scorer.log_probs(hidden).cpu()
        texts = []
        for i in range(len(prefixes)):
            nbest = [self.tokenizer.decode(seq, skip_special_tokens=True).strip() for seq in seqs[i]]
            if not all(ctc_scorer.vocab.covers(t) for t in nbest):
                texts.append(nbest[0])
                continue
            n_tokens = ((seqs[i] != self.pad_id) & (seqs[i] != self.eos_id)).sum(-1).cpu() + 1  # + EOS
            ctc = ctc_scorer.log_likelihood(log_probs[i], int(enc_lens[i]), nbest)
            best = rescore(scores[i], ctc, n_tokens, ctc_weight, options.get("length_penalty", 1.0))
            texts.append(nbest[best])
        return texts

    def _prefill(self, inputs: Tensor, attention_mask: Tensor, num_beams: int, room: int):
        """The LLM's KV cache of left-padded inputs (N, L, d) with attention_mask (N, L), each row repeated
        num_beams times (rows of an utterance contiguous) -> a transformers DynamicCache whose layers are
        `BeamSearchCacheLayer`s with room for `room` more positions.

        transformers' beam search repeats its inputs num_beams times before its own prefill, which would
        run the prompt and speech of every utterance num_beams times (~30 % of the mini recipe's decode time);
        `generate(cache=...)` then runs only the positions past the cache. Positions as generate numbers
        them (cumulative sum of the mask)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.llm.config)
        position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        self.llm.get_decoder()(inputs_embeds=inputs, attention_mask=attention_mask, position_ids=position_ids,
                               cache=cache, use_cache=True)
        cache.batch_repeat_interleave(num_beams)
        cache.layers = [BeamSearchCacheLayer(layer, room) if type(layer) is DynamicLayer else layer
                        for layer in cache.layers]  # (a sliding-window layer stays as it is)
        return cache


# --------------------------------------------------------------------------- helpers
class BeamSearchCacheLayer(DynamicLayer):
    """A transformers DynamicLayer for beam search after `SpeechLLM._prefill`: keys and values
    (B, H, L, D) live in a buffer with room for the new positions, so a step writes its own position in
    place instead of copying the whole cache (torch.cat), and the beam reordering of every step copies
    the generated positions only: the prefilled prompt and speech are the same in every beam of an
    utterance (copies of one row), and beams are only ever reordered within their utterance. The two
    copies of the whole cache per layer and step this saves were ~25 % of the mini recipe's decode time."""

    def __init__(self, layer: DynamicLayer, room: int):
        super().__init__()
        batch, heads, length, dim = layer.keys.shape
        self.fixed = self.length = length  # positions never reordered / positions held
        self.device, self.dtype, self.is_initialized = layer.keys.device, layer.keys.dtype, True
        self._k = layer.keys.new_empty(batch, heads, length + room, dim)
        self._v = layer.values.new_empty(batch, heads, length + room, dim)
        self._k[:, :, :length], self._v[:, :, :length] = layer.keys, layer.values
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """key_states, value_states (B, H, n, D) of n new positions -> all keys, values (B, H, L + n, D)."""
        end = self.length + key_states.shape[-2]
        if end > self._k.shape[2]:  # out of room (more steps than the prefill planned for): grow
            grown = [b.new_empty(*b.shape[:2], 2 * end, b.shape[3]) for b in (self._k, self._v)]
            for new, old in zip(grown, (self._k, self._v)):
                new[:, :, :self.length] = old[:, :, :self.length]
            self._k, self._v = grown
        self._k[:, :, self.length:end], self._v[:, :, self.length:end] = key_states, value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search's reordering, beam_idx (B,) (within each utterance): the generated positions only."""
        if self.length > self.fixed:
            new = slice(self.fixed, self.length)
            idx = beam_idx.to(self._k.device)
            self._k[:, :, new] = self._k[:, :, new].index_select(0, idx)
            self._v[:, :, new] = self._v[:, :, new].index_select(0, idx)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("BeamSearchCacheLayer is for beam search only (no cropping)")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("BeamSearchCacheLayer is for beam search only (its beams are already repeated)")

    def batch_select_indices(self, indices: Tensor) -> None:
        raise NotImplementedError("BeamSearchCacheLayer is for beam search only")


def packed_causal_mask(sample_ids: Tensor, dtype: torch.dtype) -> Tensor:
    """sample_ids (R, L), -1 at padding -> additive mask (R, 1, L, L): position q attends to k <= q of the
    same sample only (block-diagonal causal). Padding positions attend to themselves, so that no softmax
    row is empty."""
    L = sample_ids.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=sample_ids.device).tril()
    same = (sample_ids[:, :, None] == sample_ids[:, None, :]) & (sample_ids[:, :, None] >= 0)
    allowed = (same & causal) | torch.eye(L, dtype=torch.bool, device=sample_ids.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=sample_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def count_trainable(module: nn.Module) -> int:
    """Number of parameters of `module` with requires_grad."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _pad(rows: list[list], value, device, dtype=torch.long) -> Tensor:
    length = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (length - len(r)) for r in rows], dtype=dtype, device=device)


def _cpu_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def load_module_weights(module: nn.Module, path: str | Path) -> None:
    """Load a safetensors state dict into `module`; every missing/unexpected key or shape is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    state = read_safetensors(path)[0]
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(f"{path} does not fit {type(module).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}")
    module.load_state_dict(state)


def _as_json(cfg) -> dict:
    from zipasr.config import to_dict

    return to_dict(cfg) if cfg is not None else {}
