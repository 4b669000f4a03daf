"""Lexicon-constrained decoding: the trie constraint, lexicon dirs, make_lexicon."""
from __future__ import annotations

import pytest
import torch

from zipasr.model.lexicon import LexiconConstraint, read_lexicon, write_lexicon

VOCAB = ["<pad>", "</s>", "<blank>", " ", "a", "b", "c", " ab", " c", "ab", "ba"]  # token texts (piece_texts)
EOS = 1


def _constraint(lexicon=None):
    return LexiconConstraint(lexicon or {"xx": {"ab", "c", "abc"}}, VOCAB, EOS, {0, 1, 2})


def _pieces(ids):
    return [VOCAB[i] for i in ids]


def test_first_token_starts_a_word_and_nothing_special():
    allowed = _pieces(_constraint().allowed("xx", "", False))
    # a leading boundary, or the start of a word; no EOS before any word, no special piece
    assert sorted(allowed) == sorted([" ", "a", "c", " ab", " c", "ab"])


def test_boundary_and_eos_only_after_a_whole_word():
    c = _constraint()
    after_a = _pieces(c.allowed("xx", "a", True))
    assert sorted(after_a) == ["b"]  # "a" is no word: no boundary, no EOS; "ab", "ba" would not be prefixes
    after_ab = _pieces(c.allowed("xx", "ab", True))
    assert sorted(after_ab) == sorted(["</s>", " ", "c", " ab", " c"])
    assert " " not in _pieces(c.allowed("xx", "", True))  # no two boundaries in a row


def test_state_follows_the_generated_pieces():
    c = _constraint()
    ids = [VOCAB.index(p) for p in [" ab", " c", " ", "a"]]
    assert c.state("xx", ids) == ("a", True)
    assert c.state("xx", [0, 0]) == ("", False)  # padding of finished beams is ignored


def test_processor_masks_forbidden_tokens_and_leaves_languages_without_lexicon_free():
    c = _constraint()
    proc = c.processor(["xx", "yy"], num_beams=2)
    ab = VOCAB.index(" ab")
    ids = torch.tensor([[ab], [ab], [ab], [ab]])
    scores = torch.randn(4, len(VOCAB) + 2)  # an LLM's output may be wider than its vocabulary
    out = proc(ids, scores)
    allowed = set(c.allowed("xx", "ab", True))
    for r in (0, 1):  # xx after " ab": the allowed tokens keep their scores, every other is -inf
        assert all((out[r, i] == scores[r, i]) if i in allowed else out[r, i] == float("-inf")
                   for i in range(scores.shape[1]))
    assert torch.equal(out[2:, :len(VOCAB)], scores[2:, :len(VOCAB)])  # yy: no lexicon
    assert out[2:, len(VOCAB):].isneginf().all()  # ... but no id past the vocabulary
    # An utterance whose allowed tokens all score -inf is forced onto them (score 0), as transformers'
    # PrefixConstrainedLogitsProcessor does: the constraint holds.
    stuck = scores.clone()
    stuck[:2, sorted(allowed)] = float("-inf")
    out = proc(ids, stuck)
    assert all(out[r, i] == (0.0 if i in allowed else float("-inf")) for r in (0, 1) for i in range(len(VOCAB)))


def test_allowed_equals_trying_every_token():
    lexicon = {"xx": {"ab", "c", "abc", "ba", "b"}}
    c = _constraint(lexicon)
    for word in ["", "a", "ab", "abc", "b", "ba", "c"]:
        for started in (False, True):
            brute = [i for i in range(len(VOCAB)) if i not in c.special_ids
                     and c._advance("xx", word, started, VOCAB[i]) is not None]
            brute += [EOS] if word in lexicon["xx"] else []
            assert c.allowed("xx", word, started) == (brute or [EOS]), (word, started)


def test_lexicon_dir_round_trip_and_errors(tmp_path):
    write_lexicon({"en": {"b", "a"}, "de": {"ja"}}, tmp_path / "lex")
    assert (tmp_path / "lex" / "en.txt").read_text() == "a\nb\n"
    assert read_lexicon(tmp_path / "lex") == {"en": {"a", "b"}, "de": {"ja"}}
    with pytest.raises(FileNotFoundError):
        read_lexicon(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <lang>.txt"):
        read_lexicon(tmp_path / "empty")
    (tmp_path / "lex" / "fr.txt").write_text("le chat\n")
    with pytest.raises(ValueError, match="fr.txt"):
        read_lexicon(tmp_path / "lex")


def test_make_lexicon_cli(tmp_path, capsys):
    from zipasr.bin.make_lexicon import main

    d = tmp_path / "text"
    d.mkdir()
    (d / "text").write_text("u1 the cat\nu2 the dog\nu3 ねこがいる\nu4 das haus\n", encoding="utf-8")
    (d / "utt2lang").write_text("u1 en\nu2 en\nu3 ja\nu4 de\n")
    assert main([str(d), "--out_dir", str(tmp_path / "lex")]) == 0
    assert read_lexicon(tmp_path / "lex") == {"en": {"the", "cat", "dog"}, "de": {"das", "haus"}}  # no ja
    assert main([str(d), "--out_dir", str(tmp_path / "lex2"), "--languages", "en", "--min_count", "2"]) == 0
    assert read_lexicon(tmp_path / "lex2") == {"en": {"the"}}
    assert main([str(d), "--out_dir", str(tmp_path / "lex3"), "--languages", "fr"]) == 1
    assert "fr" in capsys.readouterr().err
    (d / "utt2lang").write_text("u1 en\n")
    assert main([str(d), "--out_dir", str(tmp_path / "lex4")]) == 1
    assert "u2: no utt2lang entry" in capsys.readouterr().err


def test_piece_texts_of_sentencepiece_and_byte_level_tokenizers(tiny_llm_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from zipasr.model.lexicon import piece_texts

    sp = AutoTokenizer.from_pretrained(tiny_llm_dir)
    texts = piece_texts(sp)
    ids = sp("die katze", add_special_tokens=False)["input_ids"]
    assert "".join(texts[i] for i in ids).strip() == "die katze"
    assert any(t.startswith(" ") for t in texts) and not any("\u2581" in t for t in texts)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["the cat sat", "le chat", "привет мир"] * 20,
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    texts = piece_texts(fast)
    ids = fast("the cat привет", add_special_tokens=False)["input_ids"]
    assert "".join(texts[i] for i in ids) == "the cat привет"
    assert any(t.startswith(" ") for t in texts) and not any("\u0120" in t for t in texts)  # Ġ decoded
    constraint = LexiconConstraint.from_tokenizer({"en": {"the", "cat"}}, fast)
    allowed = [texts[i] for i in constraint.allowed("en", "", False)]
    assert allowed and all("the".startswith(t.strip()) or "cat".startswith(t.strip()) for t in allowed)
