"""The auxiliary CTC head (model.aux_ctc, not the paper's): warm start, loss, training, checkpoints, decoding."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from test_train_helpers import (one_thread, run_training, stage2_config,  # noqa: F401 (one_thread: fixture)
                                trained_experiments, write_config)
from zipasr.data.datadir import read_kaldi_map
from zipasr.model.ctc import CTC_HEAD_FILE, CTC_VOCAB_FILE, CharVocab, CTCScorer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    return trained_experiments(tmp_path_factory.mktemp("runs"), tiny_whisper_dir, tiny_llm_dir)


@pytest.fixture(scope="module")
def aux_run(runs, tmp_path_factory):
    """A tiny Stage 2 (vanilla) with the auxiliary CTC loss, warm-started from a saved head of 3 characters."""
    root = tmp_path_factory.mktemp("aux")
    torch.manual_seed(0)
    init = CTCScorer.warm_start(CharVocab(["a", "e", "q"]), 32)  # "q" is in no transcript
    init.save(root)
    cfg = stage2_config(runs["stage1_config"], runs["stage1"], "vanilla", save_every=2, keep_last=2)
    cfg["model"]["aux_ctc"] = {"weight": 0.5, "init_from": str(root)}
    run_training(write_config(cfg, root / "aux.yaml"), root / "exp")
    return {"exp": root / "exp", "init": init, "config": cfg, "root": root}


def test_warm_start_copies_the_rows_of_shared_characters():
    torch.manual_seed(0)
    init = CTCScorer.warm_start(CharVocab(["a", "b", "c"]), 8)
    head = CTCScorer.warm_start(CharVocab(["b", "c", "d"]), 8, init)
    for new, old in ((0, 0), (1, 2), (2, 3)):  # blank, b, c
        assert torch.equal(head.head.weight[new], init.head.weight[old])
        assert head.head.bias[new] == init.head.bias[old]
    assert not torch.equal(head.head.weight[3], init.head.weight[1])  # "d" is new
    with pytest.raises(ValueError, match="width 8"):
        CTCScorer.warm_start(CharVocab(["b"]), 16, init)


def test_nfd_vocabulary_splits_accents_tone_marks_and_hangul_and_round_trips(tmp_path):
    texts = ["m\u00ecnh  t\u00f4i", "\ud55c"]  # Vietnamese "mình tôi", Korean "한"
    nfc, nfd = CharVocab.from_texts(texts), CharVocab.from_texts(texts, "NFD")
    assert nfc.chars == sorted(set("m\u00ecnh t\u00f4i\ud55c"))
    # ì = i + grave, ô = o + circumflex, 한 = the jamo ᄒ ᅡ ᆫ
    assert nfd.chars == sorted(set("mnht i\u0300o\u0302\u1112\u1161\u11ab"))
    assert len(nfc.encode("m\u00ecnh")) == 4 and len(nfd.encode("m\u00ecnh")) == 5
    assert nfd.encode("mi\u0300nh") == nfd.encode("m\u00ecnh") and nfd.covers("\u00f4 \ud55c")
    for vocab in (nfc, nfd):
        vocab.save(tmp_path / CTC_VOCAB_FILE)
        assert CharVocab.load(tmp_path / CTC_VOCAB_FILE) == vocab
        assert CharVocab.load(tmp_path / CTC_VOCAB_FILE) != CharVocab(vocab.chars, "NFD" if vocab is nfc else "NFC")
    # an NFC vocabulary keeps the plain-list file heads were written in before NFD existed
    nfc.save(tmp_path / CTC_VOCAB_FILE)
    assert json.loads((tmp_path / CTC_VOCAB_FILE).read_text(encoding="utf-8")) == nfc.chars
    with pytest.raises(ValueError, match="NFKC"):
        CharVocab(["a"], "NFKC")


def test_nfd_head_converts_an_nfc_warm_start(runs, tmp_path):
    from zipasr.train.inference import load_model

    torch.manual_seed(0)
    CTCScorer.warm_start(CharVocab(["a", "\u00e9"]), 32).save(tmp_path)  # an NFC head: a, é
    model, _ = load_model(runs["stage1"])
    head = model.build_ctc_head(["ba"], tmp_path, "NFD")
    assert head.vocab == CharVocab(["a", "b", "e", "\u0301"], "NFD")  # é as e + U+0301
    init = CTCScorer.from_dir(tmp_path)
    assert torch.equal(head.head.weight[head.vocab.index["a"]], init.head.weight[init.vocab.index["a"]])
    assert model.build_ctc_head(["ba"], tmp_path).vocab == CharVocab(["a", "b", "\u00e9"])
    with pytest.raises(ValueError, match="model.aux_ctc.form"):
        from zipasr.model.speech_llm import AuxCTCConfig, ModelConfig
        ModelConfig(aux_ctc=AuxCTCConfig(weight=1.0, form="nfd"))


def test_ctc_loss_is_the_summed_negative_log_likelihood():
    torch.manual_seed(0)
    scorer = CTCScorer.warm_start(CharVocab(list("ab ")), 4)
    hidden, lens = torch.randn(2, 7, 4), torch.tensor([7, 5])
    texts = ["ab a", "ba"]
    total, n_chars = scorer.loss(hidden, lens, texts)
    log_probs = scorer.log_probs(hidden)
    expected = -sum(float(scorer.log_likelihood(log_probs[i], int(lens[i]), [texts[i]])[0]) for i in range(2))
    assert n_chars == 6 and float(total) == pytest.approx(expected, rel=1e-5)


def test_training_with_the_aux_ctc_loss_saves_and_decodes_with_its_head(aux_run, runs, tmp_path):
    from zipasr.bin.decode import main
    from zipasr.train.checkpoint import WEIGHTS, list_checkpoints, load_weights
    from zipasr.train.inference import load_model

    exp = aux_run["exp"]
    log = (exp / "train.log").read_text()
    assert "auxiliary CTC loss (weight 0.5)" in log and " (ctc " in log
    chars = json.loads((exp / CTC_VOCAB_FILE).read_text(encoding="utf-8"))
    texts = read_kaldi_map(runs["data"] / "text").values()
    assert set(chars) == set(CharVocab.from_texts(texts).chars) | {"q"}
    meta = yaml.safe_load((exp / "final" / "speech_llm.json").read_text())
    assert "ctc_head" in meta["parts"] and (exp / "final" / CTC_HEAD_FILE).is_file()
    # the head is trained: it moved away from its warm start, and the checkpoints hold it
    ckpts = list_checkpoints(exp / "checkpoints")
    first, last = (load_weights(c / WEIGHTS)["ctc_head.head.weight"] for c in (ckpts[0], ckpts[-1]))
    assert not torch.equal(first, last)
    model, _ = load_model(exp)
    assert model.ctc_head.vocab.chars == chars  # final/ = the average of the last 2 checkpoints
    assert torch.allclose(model.ctc_head.head.weight, (first + last) / 2, atol=1e-6)
    assert model.ctc_head.head.weight.shape == (len(chars) + 1, 32)
    from_step, _ = load_model(exp, ckpts[0].name)  # a step checkpoint: the head from EXP/ctc_vocab.json
    assert torch.equal(from_step.ctc_head.head.weight, first)
    # decoding rescored by the model's own head, by default
    out = tmp_path / "decode"
    args = ["--exp_dir", str(exp), "--data_dir", str(runs["data"]), "--out_dir", str(out), "--max_new_tokens", "6",
            "--threads", "1", "--batch_size", "8", "--beam", "2", "--ctc_weight", "0.5"]
    assert main(args) == 0
    assert "its auxiliary CTC head" in (out / "decode.log").read_text()
    assert len(read_kaldi_map(out / "text")) == len(list(texts))


def test_the_objective_adds_weight_times_the_ctc_loss(aux_run):
    from zipasr.train.config import load_experiment_config
    from zipasr.train.dataset import SpeechDataset
    from zipasr.train.trainer import build_model, tokenizer_fn

    cfg = load_experiment_config(aux_run["exp"] / "config.yaml", [])
    model = build_model(cfg)
    data = SpeechDataset(cfg.data.train_dir, model.languages, tokenizer_fn(model), cache=True)
    model.attach_ctc_head(model.build_ctc_head(data.texts(), aux_run["root"]))
    model.set_stage(2)
    batch = data.collate([[0, 1], [2]])
    out = model(batch, segment_frames=0)
    model.ctc_weight = 0.0
    plain = model(batch, segment_frames=0)
    assert plain.ctc_loss is None and out.ctc_loss > 0
    assert float(out.loss) == pytest.approx(float(plain.loss) + 0.5 * float(out.ctc_loss), rel=1e-5)
    # the CTC loss alone reaches the encoder adapter (Stage 2's trainable encoder part) and the head
    model.zero_grad()
    hidden, lens = model._encode(batch.feats, batch.feat_lens, batch.lang_ids, 0)[2:]
    model.ctc_head.loss(hidden, lens, batch.texts)[0].backward()
    adapter_grads = [p.grad for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert adapter_grads and any(g is not None and g.abs().sum() > 0 for g in adapter_grads)
    assert model.ctc_head.head.weight.grad.abs().sum() > 0
    batch.texts = None
    model.ctc_weight = 0.5
    with pytest.raises(ValueError, match="SpeechBatch.texts"):
        model(batch, segment_frames=0)


def test_resume_with_other_ctc_characters_is_an_error(aux_run, runs, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / CTC_VOCAB_FILE).write_text(json.dumps(["x"]), encoding="utf-8")
    cfg = dict(aux_run["config"])
    with pytest.raises(AssertionError, match="CTC characters of this run differ"):
        run_training(write_config(cfg, tmp_path / "aux.yaml"), exp)


def test_negative_aux_ctc_weight_is_a_config_error(aux_run, tmp_path):
    from zipasr.config import ConfigError
    from zipasr.train.config import load_experiment_config

    cfg = yaml.safe_load(yaml.safe_dump(aux_run["config"]))
    cfg["model"]["aux_ctc"]["weight"] = -1
    with pytest.raises(ConfigError, match="aux_ctc.weight"):
        load_experiment_config(write_config(cfg, tmp_path / "bad.yaml"), [])
