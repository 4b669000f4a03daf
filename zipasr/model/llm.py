"""The LLM M: any transformers causal LM and its tokenizer from a local checkpoint directory.

Qwen3-1.7B in the paper; the mini recipe's tiny Qwen3 in CI. Loading never touches the network
(`local_files_only`), so a missing directory is an immediate, clear error.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from zipasr.model.encoder import check_checkpoint_dir

logger = logging.getLogger(__name__)

# Suffixes of the linear layers that get plain LoRA on the LLM side, per model_type (attention + FFN,
# paper Sec. V-B). Other causal LMs: pass target_modules in the config.
_LLAMA_STYLE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LLM_LORA_TARGETS: dict[str, list[str]] = {name: list(_LLAMA_STYLE) for name in ("qwen3", "qwen2", "llama", "mistral")}

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_llm(llm_dir: str | Path, dtype: torch.dtype | None = None,
             attn_implementation: str | None = None) -> tuple[nn.Module, "PreTrainedTokenizerBase"]:
    """(causal LM, tokenizer) from a local checkpoint directory; no network.

    The tokenizer must define an EOS token (it ends every transcript); PAD falls back to EOS.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm_dir = check_checkpoint_dir(llm_dir, "LLM")
    if not any((llm_dir / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"LLM checkpoint directory {llm_dir} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir), local_files_only=True)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer in {llm_dir} has no EOS token; transcripts need one to end")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(str(llm_dir), local_files_only=True, **kwargs)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ValueError(
            f"{llm_dir}: tokenizer has {len(tokenizer)} tokens but the model only "
            f"{model.get_input_embeddings().num_embeddings} embeddings"
        )
    logger.info("LLM %s from %s: %.1fM parameters", model.config.model_type, llm_dir,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model, tokenizer


def llm_lora_targets(llm: nn.Module) -> list[str]:
    """Default LoRA target module suffixes for this LLM's model_type (error if unknown)."""
    model_type = getattr(llm.config, "model_type", None)
    if model_type not in LLM_LORA_TARGETS:
        raise ValueError(
            f"no default LoRA targets for LLM model_type {model_type!r}; set llm_lora.target_modules in the config "
            f"(known defaults: {', '.join(sorted(LLM_LORA_TARGETS))})"
        )
    return list(LLM_LORA_TARGETS[model_type])
