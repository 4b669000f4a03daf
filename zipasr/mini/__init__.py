"""The mini recipe's makers (egs/mini_multilingual/asr1): what a real setup downloads, made on the CPU.

text.py              word lists of real languages (wordfreq) and random sentences over them
synth.py             the espeak-ng corpus: CorpusConfig, synthesize_corpus() -> wav files + Kaldi data dirs
pretrain_llm.py      sentencepiece tokenizer + tiny Qwen3 trained on text (LM + copy task) -> LLM dir
pretrain_encoder.py  tiny Whisper encoder trained with a character CTC loss -> WhisperModel dir
"""
