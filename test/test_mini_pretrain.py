"""The mini recipe's "pretrained" model makers: real checkpoint dirs, loadable by the normal path, deterministic."""
from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from zipasr.config import from_dict
from zipasr.mini.pretrain_encoder import CharVocab, EncoderPretrainConfig, pretrain_encoder
from zipasr.mini.pretrain_llm import IGNORE, LLMPretrainConfig, SequenceMaker, pretrain_llm
from zipasr.mini.text import SentenceSampler

TINY_LLM = {"vocab_size": 400, "hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1, "head_dim": 16,
            "intermediate_size": 64, "steps": 3, "batch_tokens": 256, "threads": 1, "log_interval": 1,
            "eval_sentences_per_lang": 1}
TINY_ENC = {"d_model": 32, "layers": 1, "heads": 2, "ffn_dim": 64, "steps": 3, "batch_frames": 2000,
            "threads": 1, "log_interval": 1, "eval_max_utts_per_lang": 2}


def _lm_text_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    lines, langs = [], []
    for lang in ("en", "ja", "ru"):
        sampler = SentenceSampler(lang, 100, 2, 4, np.random.default_rng(0))
        for i, s in enumerate(sampler.sample_many(40)):
            lines.append(f"lm_{lang}_{i:03d} {s}")
            langs.append(f"lm_{lang}_{i:03d} {lang}")
    (path / "text").write_text("\n".join(lines) + "\n")
    (path / "utt2lang").write_text("\n".join(langs) + "\n")
    return path


def _feats_data_dir(path: Path, n_utts: int = 8) -> Path:
    """A data dir with random 80-bin features (the encoder's input) and transcripts in two languages."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    texts = {f"utt{i:02d}": ("hello world" if i % 2 else "привет мир") for i in range(n_utts)}
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as writer:
        for utt in texts:
            writer(utt, rng.standard_normal((120, 80)).astype(np.float32))  # (T, n_mels), Kaldi layout
    (path / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
    (path / "utt2lang").write_text("".join(f"{u} {'en' if i % 2 else 'ru'}\n" for i, u in enumerate(texts)))
    (path / "utt2spk").write_text("".join(f"{u} {u}\n" for u in texts))
    (path / "wav.scp").write_text("".join(f"{u} /nonexistent/{u}.wav\n" for u in texts))
    (path / "utt2dur").write_text("".join(f"{u} 1.2\n" for u in texts))
    (path / "utt2num_frames").write_text("".join(f"{u} 120\n" for u in texts))
    return path


def test_copy_sequences_have_the_speech_llm_layout(tmp_path):
    from transformers import AutoTokenizer

    from zipasr.model.tokenizer import build_sentencepiece_tokenizer

    text_dir = _lm_text_dir(tmp_path / "lm")
    sentences = [line.split(" ", 1)[1] for line in (text_dir / "text").read_text().splitlines()]
    build_sentencepiece_tokenizer(sentences + ["Please transcribe the audio content into text."], tmp_path / "tok", 300,
                                  user_symbols=["<sep>"])
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    cfg = from_dict(LLMPretrainConfig, {"copy_ratio": 1.0, "char_copy_ratio": 1.0})
    maker = SequenceMaker(tok, cfg)
    ids, labels, kind = maker.make("en", "hello world", np.random.default_rng(0))
    text = maker.encode("hello world")
    sep = tok.convert_tokens_to_ids("<sep>")
    context = maker.prompt("en") + maker.spell("hello world") + [sep]
    assert kind == "char_copy" and len(maker.spell("hello world")) == len("hello world")
    assert ids == context + text + [tok.eos_token_id]
    assert labels == [IGNORE] * len(context) + text + [tok.eos_token_id]
    assert tok.unk_token_id not in maker.spell("hello world")
    # token copy: the source is exactly the copy's tokens, and the separator marks where the copy starts
    maker = SequenceMaker(tok, from_dict(LLMPretrainConfig, {"copy_ratio": 1.0, "char_copy_ratio": 0.0}))
    ids, labels, kind = maker.make("en", "hello world", np.random.default_rng(0))
    n = len(maker.prompt("en"))
    assert kind == "copy" and ids[n:n + len(text)] == text and ids[n + len(text)] == sep
    assert labels[n + len(text) + 1:] == text + [tok.eos_token_id]
    # the Speech-LLM's layout, without a separator, stays available
    no_sep = SequenceMaker(tok, from_dict(LLMPretrainConfig, {"copy_ratio": 1.0, "separator": ""}))
    assert sep not in no_sep.make("en", "hello world", np.random.default_rng(0))[0]
    with pytest.raises(ValueError, match="separator"):
        SequenceMaker(tok, from_dict(LLMPretrainConfig, {"separator": "<nope>"}))


def test_pretrain_llm_writes_a_loadable_deterministic_checkpoint(tmp_path):
    from zipasr.model.llm import load_llm

    text_dir = _lm_text_dir(tmp_path / "lm")
    cfg = from_dict(LLMPretrainConfig, TINY_LLM)
    result = pretrain_llm(cfg, text_dir, tmp_path / "a", languages=["en", "ja", "ru"])
    assert {"loss_lm", "accuracy_copy", "accuracy_char_copy", "accuracy_copy_tokens"} <= set(result)
    assert 0.0 <= result["accuracy_copy_tokens"] <= 1.0
    llm, tok = load_llm(tmp_path / "a")
    assert tok.convert_tokens_to_ids("<sep>") != tok.unk_token_id  # the separator is one piece
    assert llm.config.model_type == "qwen3" and llm.config.hidden_size == 32
    assert tok.decode(tok("こんにちは", add_special_tokens=False)["input_ids"]) == "こんにちは"
    assert (tmp_path / "a" / "train_log.tsv").read_text().count("\n") == 4  # header + 3 steps
    by_lang = [row.split("\t") for row in (tmp_path / "a" / "copy_loss_by_language.tsv").read_text().splitlines()]
    assert by_lang[0] == ["step", "en", "ja", "ru"] and len(by_lang) == 4
    copy_losses = [float(v) for row in by_lang[1:] for v in row[1:] if v != "nan"]
    assert copy_losses and all(0 < v < 20 for v in copy_losses)  # copy sequences were logged per language
    pretrain_llm(cfg, text_dir, tmp_path / "b", languages=["en", "ja", "ru"])
    again, _ = load_llm(tmp_path / "b")
    for (name, p), q in zip(llm.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name


def test_character_level_tokenizer_has_one_piece_per_character(tmp_path):
    from transformers import AutoTokenizer

    text_dir = _lm_text_dir(tmp_path / "lm")
    cfg = from_dict(LLMPretrainConfig, {**TINY_LLM, "vocab_size": 0, "steps": 1})
    pretrain_llm(cfg, text_dir, tmp_path / "llm", languages=["en", "ja", "ru"])
    tok = AutoTokenizer.from_pretrained(tmp_path / "llm")
    sentences = [line.split(" ", 1)[1] for line in (text_dir / "text").read_text().splitlines()]
    for sentence in sentences[::7]:
        ids = tok(sentence, add_special_tokens=False)["input_ids"]
        # one piece per character; every space (and the start) is the word-boundary piece
        assert len(ids) == len(sentence) + (0 if sentence.startswith(" ") else 1), sentence
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == sentence


def test_pretrain_encoder_writes_a_whisper_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from zipasr.data.features import FeatureExtractor
    from zipasr.model.encoder import WhisperSpeechEncoder

    data = _feats_data_dir(tmp_path / "data")
    cfg = from_dict(EncoderPretrainConfig, TINY_ENC)
    cer = pretrain_encoder(cfg, [data], [data], tmp_path / "whisper")
    assert set(cer) == {"en", "ru"} and all(0 <= v for v in cer.values())
    encoder = WhisperSpeechEncoder.from_pretrained(tmp_path / "whisper")
    saved = load_file(tmp_path / "whisper" / "model.safetensors")
    # the trained weights are what the normal Stage-1 path loads (not a random re-initialisation)
    assert torch.equal(encoder.whisper.layers[0].fc1.weight, saved["encoder.layers.0.fc1.weight"])
    assert FeatureExtractor.from_encoder_dir(tmp_path / "whisper").n_mels == 80
    head = load_file(tmp_path / "whisper" / "ctc_head.safetensors")
    vocab = (tmp_path / "whisper" / "ctc_vocab.json").read_text()
    assert head["weight"].shape == (len(set("hello worldпривет мир")) + 1, 32) and "п" in vocab
    pretrain_encoder(cfg, [data], [data], tmp_path / "again")
    assert load_file(tmp_path / "again" / "model.safetensors").keys() == saved.keys()
    for key, value in load_file(tmp_path / "again" / "model.safetensors").items():
        assert torch.equal(value, saved[key]), key


def test_char_vocab_greedy_decoding():
    vocab = CharVocab.from_texts(["ab", "b a"])
    ids = vocab.encode("a b")
    assert vocab.decode_greedy([0, ids[0], ids[0], 0, ids[1], ids[2], ids[2], 0]) == "a b"
    assert vocab.encode("a?b") == [vocab.index["a"], vocab.index["b"]]


def test_missing_features_is_a_clear_error(tmp_path):
    data = _feats_data_dir(tmp_path / "data")
    (data / "feats.scp").unlink()
    with pytest.raises(FileNotFoundError, match="no feats.scp"):
        pretrain_encoder(from_dict(EncoderPretrainConfig, TINY_ENC), [data], [data], tmp_path / "out")


def test_copy_only_languages_must_have_text(tmp_path):
    text_dir = _lm_text_dir(tmp_path / "lm")
    cfg = from_dict(LLMPretrainConfig, {**TINY_LLM, "vocab_size": 0, "copy_only_ratio": 0.5,
                                        "copy_only_languages": ["fr"]})
    with pytest.raises(ValueError, match="copy_only_languages"):
        pretrain_llm(cfg, text_dir, tmp_path / "llm", languages=["en", "ja", "ru"])
    # languages that have text: the curriculum runs
    cfg = from_dict(LLMPretrainConfig, {**TINY_LLM, "vocab_size": 0, "copy_only_ratio": 0.5,
                                        "copy_only_languages": ["en", "ru"]})
    result = pretrain_llm(cfg, text_dir, tmp_path / "llm2", languages=["en", "ja", "ru"])
    assert "loss_copy" in result


def test_curriculum_lm_only_then_copy_only_then_mixed(tmp_path, monkeypatch):
    text_dir = _lm_text_dir(tmp_path / "lm")
    calls = []  # (language, copy_ratio) of every sequence made, in order
    make = SequenceMaker.make

    def recording_make(self, lang, text, rng, copy_ratio=None, frame_copy_ratio=None):
        calls.append((lang, copy_ratio))
        return make(self, lang, text, rng, copy_ratio, frame_copy_ratio)

    monkeypatch.setattr(SequenceMaker, "make", recording_make)
    cfg = from_dict(LLMPretrainConfig, {**TINY_LLM, "vocab_size": 0, "steps": 6, "lm_only_ratio": 0.34,
                                        "lm_only_languages": ["ja"], "copy_only_ratio": 0.34,
                                        "copy_only_languages": ["en", "ru"], "copy_ratio": 0.5,
                                        "char_copy_ratio": 0.0})
    pretrain_llm(cfg, text_dir, tmp_path / "llm", languages=["en", "ja", "ru"])
    rows = [row.split("\t") for row in (tmp_path / "llm" / "train_log.tsv").read_text().splitlines()[1:]]
    lm, copy = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
    assert all(v == v for v in lm[:2]) and all(v != v for v in copy[:2])  # steps 1-2: LM only (nan: none)
    assert all(v != v for v in lm[2:4]) and all(v == v for v in copy[2:4])  # steps 3-4: copies only
    training = calls  # only the training steps make sequences (the held-out checks build contexts)
    ratios = [r for _, r in training]
    first_copy = ratios.index(1.0)
    assert set(training[:first_copy]) == {("ja", 0.0)}  # LM only, of the LM-only language
    mixed = ratios.index(0.5)
    assert {lang for lang, _ in training[first_copy:mixed]} <= {"en", "ru"}
    assert set(ratios[mixed:]) == {0.5}
    with pytest.raises(ValueError, match="lm_only_languages"):
        pretrain_llm(from_dict(LLMPretrainConfig, {**TINY_LLM, "lm_only_ratio": 0.5, "lm_only_languages": ["fr"]}),
                     text_dir, tmp_path / "llm2", languages=["en", "ja", "ru"])
    with pytest.raises(ValueError, match="at most 1"):
        pretrain_llm(from_dict(LLMPretrainConfig, {**TINY_LLM, "lm_only_ratio": 0.6, "copy_only_ratio": 0.6}),
                     text_dir, tmp_path / "llm3", languages=["en", "ja", "ru"])


def test_frame_sources_spell_the_text_at_frame_rate_with_blanks(tmp_path):
    from transformers import AutoTokenizer

    from zipasr.model.tokenizer import build_sentencepiece_tokenizer

    texts = ["hello world", "abc def", "Please transcribe the audio content into text."]
    build_sentencepiece_tokenizer(texts, tmp_path / "tok", 40, user_symbols=["<sep>", "<blank>"])
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    blank, sep = tok.convert_tokens_to_ids("<blank>"), tok.convert_tokens_to_ids("<sep>")
    maker = SequenceMaker(tok, from_dict(LLMPretrainConfig, {"copy_ratio": 1.0, "char_copy_ratio": 0.0,
                                                             "frame_copy_ratio": 1.0, "frame_drop": 0.0}))
    rng = np.random.default_rng(0)
    for _ in range(5):
        frames = maker.frame_spell("hello world", rng)
        assert frames[0] == blank and frames[-1] == blank
        assert [p for p in frames if p != blank] == maker.spell("hello world")  # nothing dropped, in order
        i = frames.index(maker.spell("l")[0])
        assert frames[i + 1] != frames[i]  # "ll": a blank splits the repeat, as in CTC
    ids, labels, kind = maker.make("en", "hello world", rng)
    text = maker.encode("hello world")
    assert kind == "frame_copy" and sep not in ids  # the Speech-LLM layout: no separator
    assert labels[-len(text) - 1:] == text + [tok.eos_token_id] and set(labels[:-len(text) - 1]) == {IGNORE}
    # drops lose characters; the rate stays about 1-2 frames per character
    lossy = SequenceMaker(tok, from_dict(LLMPretrainConfig, {"frame_copy_ratio": 1.0, "frame_drop": 0.5}))
    kept = [sum(p != blank for p in lossy.frame_spell("abc def " * 10, rng)) for _ in range(20)]
    assert 20 < np.mean(kept) < 60
    # the copy-only steps' override, and a tokenizer without the blank is a clear error
    assert maker.make("en", "hello world", rng, frame_copy_ratio=0.0)[2] == "copy"
    build_sentencepiece_tokenizer(texts, tmp_path / "tok2", 40, user_symbols=["<sep>"])
    with pytest.raises(ValueError, match="blank"):
        SequenceMaker(AutoTokenizer.from_pretrained(tmp_path / "tok2"),
                      from_dict(LLMPretrainConfig, {"frame_copy_ratio": 0.5}))


def test_projector_warm_start_regresses_onto_the_llm_embeddings_of_the_ctc_frames(tmp_path):
    from safetensors.torch import load_file

    from zipasr.mini.warm_projector import WarmProjectorConfig, piece_table, warm_projector, window_labels
    from zipasr.model.llm import load_llm
    from zipasr.model.speech_llm import ModelConfig, SpeechLLM

    # window labels: the first non-blank frame of each window, else blank
    labels = torch.tensor([[0, 3, 3, 0, 0, 0, 5, 2, 1]])
    assert window_labels(labels, 2).tolist() == [[3, 3, 0, 5, 1]]
    assert window_labels(labels, 4).tolist() == [[3, 5, 1]]

    data = _feats_data_dir(tmp_path / "data")
    pretrain_encoder(from_dict(EncoderPretrainConfig, TINY_ENC), [data], [data], tmp_path / "whisper")
    text_dir = _lm_text_dir(tmp_path / "lm")
    with open(text_dir / "text", "a") as f:  # the encoder's characters must be pieces of the LLM
        f.write("lm_en_900 hello world\nlm_ru_900 привет мир\n")
    with open(text_dir / "utt2lang", "a") as f:
        f.write("lm_en_900 en\nlm_ru_900 ru\n")
    llm_cfg = dict(TINY_LLM, vocab_size=0, frame_copy_ratio=0.5, copy_ratio=1.0)
    pretrain_llm(from_dict(LLMPretrainConfig, llm_cfg), text_dir, tmp_path / "llm", languages=["en", "ru"])
    _, tok = load_llm(tmp_path / "llm")
    vocab = CharVocab.from_texts(["hello world", "привет мир"])
    table = piece_table(vocab, tok, "<blank>")
    assert table[0] == tok.convert_tokens_to_ids("<blank>") and tok.unk_token_id not in table.tolist()

    model_cfg = ModelConfig(encoder_dir=str(tmp_path / "whisper"), llm_dir=str(tmp_path / "llm"),
                            languages=["en", "ru"], regime="full", projector_stride=2)
    cfg = from_dict(WarmProjectorConfig, {"steps": 30, "batch_frames": 1000, "lr": 1e-2, "threads": 1,
                                          "log_interval": 10, "bf16": False, "ce_weight": 0.0})
    out = tmp_path / "warm"
    first = warm_projector(from_dict(WarmProjectorConfig, {**vars(cfg), "steps": 1}), model_cfg, [data], out)
    result = warm_projector(cfg, model_cfg, [data], out)  # rewrites the dir whole
    assert result["loss"] < first["loss"]  # the regression learns
    assert not (tmp_path / ".tmp-warm").exists()
    # the cross-entropy term trains the nearest-piece choice itself
    ce = warm_projector(from_dict(WarmProjectorConfig, {**vars(cfg), "ce_weight": 1.0}), model_cfg, [data],
                        tmp_path / "warm_ce")
    assert ce["nearest_piece_accuracy"] >= result["nearest_piece_accuracy"]
    # Stage 1 loads it through model.init_from, with the stride it was trained for
    model_cfg.init_from = str(out)
    model = SpeechLLM.from_config(model_cfg)
    saved = load_file(str(out / "projector.safetensors"))
    assert all(torch.equal(model.projector.state_dict()[k], v) for k, v in saved.items())
    assert model.projector.stride == 2

    # ctc_compress (not the paper's): one output per CTC segment, regressed onto the LLM embedding of its
    # character, the begin vector onto the word boundary's and the end vector onto the separator's
    from zipasr.model.projector import CTCCompressProjector

    ctc_cfg = ModelConfig(encoder_dir=str(tmp_path / "whisper"), llm_dir=str(tmp_path / "llm"),
                          languages=["en", "ru"], regime="full", projector="ctc_compress")
    learnt = from_dict(WarmProjectorConfig, {**vars(cfg), "label_embeddings": False})
    first = warm_projector(from_dict(WarmProjectorConfig, {**vars(learnt), "steps": 1}), ctc_cfg, [data],
                           tmp_path / "warm_ctc")
    result = warm_projector(learnt, ctc_cfg, [data], tmp_path / "warm_ctc")
    assert result["loss"] < first["loss"]
    # label_embeddings (default): the outputs are the targets' embeddings from the first step on
    exact = warm_projector(from_dict(WarmProjectorConfig, {**vars(cfg), "steps": 2}), ctc_cfg, [data],
                           tmp_path / "warm_ctc")
    assert exact["loss"] < 1e-8 and exact["nearest_piece_accuracy"] >= result["nearest_piece_accuracy"]
    assert json.loads((tmp_path / "warm_ctc/speech_llm.json").read_text())["projector"] == "CTCCompressProjector"
    ctc_cfg.init_from = str(tmp_path / "warm_ctc")
    assert isinstance(SpeechLLM.from_config(ctc_cfg).projector, CTCCompressProjector)
    with pytest.raises(ValueError, match="<nosep>"):
        warm_projector(from_dict(WarmProjectorConfig, {**vars(cfg), "separator": "<nosep>"}), ctc_cfg, [data],
                       tmp_path / "warm_bad")

    # an LLM without the blank piece is a clear error
    with pytest.raises(ValueError, match="frame_copy_ratio"):
        piece_table(vocab, tok, "<nope>")
