"""The sibling commands end to end on tiny experiments: lors_merge, experts fuse/distill, add_language,
train_lid. The source experiments are built directly (random "trained" adapters), not trained."""
from pathlib import Path

import pytest
import torch

from zipasr.adapters import adapter_layers
from zipasr.config import save_config
from zipasr.data.datadir import read_kaldi_map, write_kaldi_map
from zipasr.model.speech_llm import SpeechBatch
from zipasr.train.config import load_experiment_config
from zipasr.train.inference import load_model
from zipasr.train.trainer import build_model

LANGS = ["en", "de", "fr", "zh"]


def _experiment(path: Path, whisper_dir, llm_dir, train_dir, method: str) -> Path:
    cfg = load_experiment_config(None, [
        f"model.encoder_dir={whisper_dir}", f"model.llm_dir={llm_dir}", f"model.languages={LANGS}",
        "model.regime=full", "train.stage=2", f"model.encoder_adapter.method={method}",
        "model.encoder_adapter.rank=4", "model.encoder_adapter.alpha=8.0", "model.llm_lora.rank=4",
        "model.llm_lora.alpha=8.0", f"data.train_dir={train_dir}", "data.batch_size=2",
    ])
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for layer in adapter_layers(model.encoder).values():
            for name, p in layer.named_parameters():
                if not name.startswith("base_layer."):
                    p.normal_(0, 0.3)
    save_config(cfg, path / "config.yaml")
    model.save_trainable(path / "final")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from test_train_helpers import make_data_dir

    return make_data_dir(tmp_path_factory.mktemp("data") / "train", per_lang=3)


@pytest.fixture(scope="module")
def independent_exp(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir, data_dir):
    return _experiment(tmp_path_factory.mktemp("independent"), tiny_whisper_dir, tiny_llm_dir, data_dir, "independent")


def _batch(model, langs=LANGS, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([model.languages.index(lang) for lang in langs])
    return SpeechBatch(torch.randn(len(langs), 80, 40, generator=g), torch.tensor([40, 36, 30, 24][:len(langs)]), ids,
                       [[5, 6, 7]] * len(langs))


def _speech(model, batch):
    with torch.no_grad():
        return model.encode(batch.feats, batch.feat_lens, batch.lang_ids)[0]


def test_lors_merge_command(independent_exp, tmp_path):
    from zipasr.bin.lors_merge import main
    from zipasr.sibling.lors import adapter_task_vectors, lors_merge

    src, _ = load_model(independent_exp)
    taus = adapter_task_vectors(src.encoder)
    out = tmp_path / "lors"
    assert main(["--src_exp", str(independent_exp), "--exp_dir", str(out),
                 "--set", "rank_ratio=0.5", "sparsity=0.5", "scale=0.5"]) == 0
    model, info = load_model(out)
    assert info["config"].model.encoder_adapter.method == "vanilla"
    for name, layer in adapter_layers(model.encoder).items():
        expected = lors_merge(taus[name], 0.5, 0.5, 0.5)
        assert torch.allclose(layer.delta_weight(), expected, atol=1e-5), name
    # language-independent encoder: the bound language does not matter
    batch = _batch(model)
    a = _speech(model, batch)
    batch.lang_ids = torch.zeros(4, dtype=torch.long)
    assert torch.equal(_speech(model, batch), a)
    assert (out / "sibling.json").is_file()
    assert main(["--exp_dir", str(tmp_path / "x")]) == 2  # no source: a clear error, not a traceback


def test_experts_fuse_identity_equals_experts(independent_exp, data_dir, tmp_path):
    from zipasr.bin.experts import main

    out = tmp_path / "fusion"
    assert main(["fuse", "--src_exp", str(independent_exp), "--exp_dir", str(out)]) == 0
    src, _ = load_model(independent_exp)
    model, info = load_model(out)
    assert info["config"].model.encoder_adapter.rank == 16  # L * r
    batch = _batch(model)
    assert torch.allclose(_speech(model, batch), _speech(src, batch), atol=1e-5)
    trained = tmp_path / "fusion_trained"
    assert main(["fuse", "--src_exp", str(independent_exp), "--exp_dir", str(trained), "--train_dir", str(data_dir),
                 "--steps", "2", "--batch_size", "2", "--lr", "0.05"]) == 0
    model, _ = load_model(trained)
    assert not torch.allclose(_speech(model, batch), _speech(src, batch), atol=1e-5)


@pytest.mark.parametrize("level", ["llm", "layer"])
def test_experts_distill_command(independent_exp, data_dir, tmp_path, level):
    from zipasr.bin.experts import main

    out = tmp_path / f"kd_{level}"
    assert main(["distill", "--src_exp", str(independent_exp), "--exp_dir", str(out), "--train_dir", str(data_dir),
                 "--steps", "2", "--batch_size", "2", "--level", level]) == 0
    model, info = load_model(out)
    assert info["config"].model.encoder_adapter.method == "vanilla"
    batch = _batch(model)
    a = _speech(model, batch)
    batch.lang_ids = torch.ones(4, dtype=torch.long)
    assert torch.equal(_speech(model, batch), a)


def test_add_language_command(tmp_path, tiny_whisper_dir, tiny_llm_dir, data_dir):
    from test_train_helpers import make_data_dir

    from zipasr.bin.add_language import main

    src_exp = _experiment(tmp_path / "zs", tiny_whisper_dir, tiny_llm_dir, data_dir, "zipper_soft")
    es_dir = make_data_dir(tmp_path / "train_es", per_lang=2, langs=["fr"])
    write_kaldi_map(es_dir / "utt2lang", {u: "es" for u in read_kaldi_map(es_dir / "utt2lang")})
    out = tmp_path / "zs_plus_es"
    assert main(["--src_exp", str(src_exp), "--lang", "es", "--train_dir", str(es_dir), "--exp_dir", str(out),
                 "--steps", "2", "--batch_size", "2", "--init", "nearest"]) == 0
    src, _ = load_model(src_exp)
    model, _ = load_model(out)
    assert model.languages == LANGS + ["es"]
    batch = _batch(src)
    assert torch.allclose(_speech(model, batch), _speech(src, batch), atol=1e-5)
    _speech(model, _batch(model, ["es", "de"]))


def test_train_lid_command(independent_exp, data_dir, tmp_path):
    from zipasr.bin.train_lid import main
    from zipasr.sibling.lid_classifier import LIDClassifier

    out = tmp_path / "lid"
    assert main(["--exp_dir", str(independent_exp), "--data_dir", str(data_dir), "--out_dir", str(out)]) == 0
    assert LIDClassifier.load(out).languages == LANGS
