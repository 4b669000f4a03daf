"""Train a SentencePiece tokenizer and save it as a transformers tokenizer directory.

The mini recipe and the tests need a tokenizer for a Qwen3-architecture LLM built from scratch.
`build_sentencepiece_tokenizer` trains a SentencePiece model (character coverage 1.0, so every
character of every language in the training text gets a piece) and converts it with transformers'
own SentencePiece converter into a `tokenizers` backend, saved so that
`AutoTokenizer.from_pretrained(out_dir)` loads it offline. The raw SentencePiece model is kept
beside it as `spm.model` for reference.

Special pieces: `<pad>` (id 0), `<unk>` (id 1), `</s>` (id 2, the EOS that ends every transcript).
There is no BOS: like Qwen3, the LLM input starts directly with the prompt.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter

logger = logging.getLogger(__name__)

PAD, UNK, EOS = "<pad>", "<unk>", "</s>"


def _read_texts(texts_or_file: str | Path | Iterable[str]) -> list[str]:
    if isinstance(texts_or_file, (str, Path)):
        path = Path(texts_or_file)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer training text file not found: {path}")
        texts = path.read_text(encoding="utf-8").splitlines()
    else:
        texts = list(texts_or_file)
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"no training text for the tokenizer (got {texts_or_file!r})")
    return texts


def build_sentencepiece_tokenizer(
    texts_or_file: str | Path | Iterable[str],
    out_dir: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    byte_fallback: bool = False,
    user_symbols: Iterable[str] = (),
    hard_vocab_limit: bool = False,
) -> PreTrainedTokenizerFast:
    """Train SentencePiece on `texts_or_file` and save a transformers tokenizer in `out_dir`.

    texts_or_file: a list of sentences, or a UTF-8 text file with one sentence per line.
    vocab_size: the target number of pieces (special pieces included). With
        `hard_vocab_limit=False` SentencePiece may return fewer when the text is small; the
        LLM's vocabulary must then be `len(tokenizer)`.
    model_type: "unigram" or "bpe".
    byte_fallback: unknown characters become UTF-8 byte pieces instead of `<unk>` (adds 256 pieces).
    user_symbols: pieces that are never split (e.g. language tags).
    Returns the tokenizer as loaded back from `out_dir` (pad/eos/unk set, no BOS).
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    texts = _read_texts(texts_or_file)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=byte_fallback,
        user_defined_symbols=list(user_symbols),
        hard_vocab_limit=hard_vocab_limit,
        pad_id=0, unk_id=1, eos_id=2, bos_id=-1,
        pad_piece=PAD, unk_piece=UNK, eos_piece=EOS,
        num_threads=1,
        minloglevel=2,
    )
    spm_path = out_dir / "spm.model"
    spm_path.write_bytes(model.getvalue())

    proto = SentencePieceExtractor(str(spm_path)).proto
    if model_type == "unigram":
        vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    else:
        vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto=proto, vocab=vocab, legacy=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, unk_token=UNK, eos_token=EOS)
    tokenizer.save_pretrained(out_dir)
    logger.info("tokenizer with %d pieces (%s) saved in %s", len(tokenizer), model_type, out_dir)
    return tokenizer
