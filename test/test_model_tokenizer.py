"""build_sentencepiece_tokenizer: a transformers tokenizer dir that AutoTokenizer loads offline."""
import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from zipasr.model.tokenizer import build_sentencepiece_tokenizer

TEXTS = ["the cat sat on the mat", "der hund schläft", "le chat dort", "今天天气很好", "привет мир",
         "xin chào thế giới"] * 5


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_autotokenizer_roundtrip(tmp_path, model_type):
    build_sentencepiece_tokenizer(TEXTS, tmp_path, vocab_size=80, model_type=model_type)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id) == (0, 1, 2) and tok.bos_token is None
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    for text in ["the cat dort", "今天 мир", "xin chào"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == sp.encode(text)  # same segmentation as SentencePiece itself
        assert 1 not in ids  # character coverage 1.0: every training character is known
        assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text


def test_from_file_byte_fallback_and_errors(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    tok = build_sentencepiece_tokenizer(corpus, tmp_path / "tok", vocab_size=300, byte_fallback=True,
                                        user_symbols=["<|en|>"])
    ids = tok("Ωμέγα <|en|>", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == "Ωμέγα <|en|>"
    assert tok.convert_tokens_to_ids("<|en|>") in ids
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_sentencepiece_tokenizer(tmp_path / "missing.txt", tmp_path / "x", vocab_size=50)
    with pytest.raises(ValueError, match="no training text"):
        build_sentencepiece_tokenizer(["", "  "], tmp_path / "x", vocab_size=50)
    with pytest.raises(ValueError, match="model_type"):
        build_sentencepiece_tokenizer(TEXTS, tmp_path / "x", vocab_size=50, model_type="wordpiece")
