"""The Speech-LLM: Whisper encoder E, projector P, causal LM M (paper Sec. III-A), and LID embeddings.

    encoder.py     WhisperSpeechEncoder: variable-length full-context and segment-wise regimes
    projector.py   GatedConvProjector and the PROJECTORS registry
    llm.py         load_llm(): causal LM + tokenizer from a local dir; default LLM LoRA targets
    speech_llm.py  SpeechLLM, SpeechBatch, ModelConfig (+ EncoderAdapterConfig, LLMLoRAConfig)
    lid.py         LID embeddings e(l): whisper / acoustic / file
    tokenizer.py   build_sentencepiece_tokenizer(): a transformers tokenizer dir for a new LLM
"""
from zipasr.model.encoder import WhisperSpeechEncoder
from zipasr.model.llm import llm_lora_targets, load_llm
from zipasr.model.projector import PROJECTORS, GatedConvProjector, build_projector
from zipasr.model.speech_llm import (
    EncoderAdapterConfig,
    LLMLoRAConfig,
    ModelConfig,
    SpeechBatch,
    SpeechLLM,
    SpeechLLMOutput,
)
from zipasr.model.tokenizer import build_sentencepiece_tokenizer

__all__ = [
    "WhisperSpeechEncoder", "GatedConvProjector", "PROJECTORS", "build_projector", "load_llm",
    "llm_lora_targets", "SpeechLLM", "SpeechBatch", "SpeechLLMOutput", "ModelConfig", "EncoderAdapterConfig",
    "LLMLoRAConfig", "build_sentencepiece_tokenizer",
]
