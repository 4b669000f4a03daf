"""Shared fixtures: tiny but real checkpoint directories, built and saved once per test session.

- `tiny_whisper_dir`: a WhisperModel (80 mel bins, d=32, 2 encoder layers, 1 decoder layer) saved with
  `save_pretrained`, with a generation config whose `lang_to_id` names TINY_LANGUAGES (ids deliberately
  not in table order, so code that hard-codes ids fails).
- `tiny_llm_dir`: a Qwen3ForCausalLM (d=32, 2 layers) with a SentencePiece tokenizer trained by
  `build_sentencepiece_tokenizer` on the prompts and a few sentences of TINY_LANGUAGES.

They are loaded like real checkpoints (from_pretrained on a local directory, HF_HUB_OFFLINE=1).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from zipasr.languages import get_language

# The test models are tiny: one thread runs them several times faster than two competing ones.
torch.set_num_threads(1)

TINY_LANGUAGES = ["en", "de", "fr", "zh"]
# Whisper-style language token ids of the tiny checkpoint; real ones come from lang_to_id too.
TINY_LANG_TO_ID = {"<|en|>": 90, "<|zh|>": 91, "<|de|>": 92, "<|fr|>": 95, "<|es|>": 93}

TINY_SENTENCES = {
    "en": ["the cat sat on the mat", "hello world how are you", "speech recognition with large models"],
    "de": ["der hund schläft im garten", "guten morgen wie geht es dir", "spracherkennung mit großen modellen"],
    "fr": ["le chat dort sur le tapis", "bonjour tout le monde", "la reconnaissance de la parole"],
    "zh": ["今天天气很好", "你好世界", "语音识别模型"],
}


@pytest.fixture(scope="session")
def tiny_languages() -> list[str]:
    return list(TINY_LANGUAGES)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """Directory of a tiny WhisperModel checkpoint (config, safetensors, generation_config.json)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        max_source_positions=1500,  # the real 30 s window: 3000 mel frames
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    model = WhisperModel(config).eval()
    path = tmp_path_factory.mktemp("tiny_whisper")
    model.save_pretrained(path)
    GenerationConfig(
        decoder_start_token_id=1, eos_token_id=2, pad_token_id=0, lang_to_id=dict(TINY_LANG_TO_ID)
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_texts() -> list[str]:
    texts = [get_language(code).prompt for code in TINY_LANGUAGES]
    for code in TINY_LANGUAGES:
        texts += TINY_SENTENCES[code]
    return texts * 3


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, tiny_tokenizer_texts):
    """Directory of a tiny Qwen3ForCausalLM checkpoint with its SentencePiece tokenizer."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from zipasr.model.tokenizer import build_sentencepiece_tokenizer

    path = tmp_path_factory.mktemp("tiny_qwen3")
    tokenizer = build_sentencepiece_tokenizer(tiny_tokenizer_texts, path, vocab_size=200)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        # A pretrained LM has logits of a useful range; with the default 0.02 init a tiny random one
        # gives near-uniform logits that the LoRA cannot sharpen (the embedding is tied and frozen).
        model.get_input_embeddings().weight.normal_(0.0, 0.3)
    model.save_pretrained(path)
    return path
