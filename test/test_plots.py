"""Figures: every kind is written as a readable, non-blank PNG; bad inputs are named."""
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from zipasr.bin import plot as plot_cli
from zipasr.plots import (load_embeddings_npz, plot_cosine_heatmap, plot_radar, plot_relative_change,
                          plot_tsne)

TREE = Path(__file__).parent / "fixtures" / "results_tree" / "exp_mini"


def assert_png(path):
    img = mpimg.imread(path)  # (H, W, 4) floats for PNG
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # something was drawn


def clustered(n_per_lang=10, langs=("en", "fr", "zh", "ja"), dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(langs), dim))
    emb = np.concatenate([c + rng.normal(0, 1, (n_per_lang, dim)) for c in centres]).astype(np.float32)
    return emb, np.repeat(np.array(langs), n_per_lang)


def test_radar_and_relative_bars(tmp_path):
    scores = {"Vanilla-LoRA": {"en": 6.0, "fr": 20.0, "zh": 12.0},
              "Zipper-LoRA-Soft": {"en": 5.4, "fr": 18.0, "zh": 12.0}}
    assert_png(plot_radar(scores, tmp_path / "radar.png"))
    assert_png(plot_relative_change({"Zipper-LoRA-Soft": {"en": 10.0, "fr": np.nan, "zh": -3.0}},
                                    tmp_path / "rel.png"))
    with pytest.raises(ValueError, match="at least 3 axes"):
        plot_radar({"a": {"en": 1.0, "fr": 2.0}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'b' has axes"):
        plot_radar({"a": {"en": 1.0, "fr": 2.0, "zh": 3.0}, "b": {"en": 1.0}}, tmp_path / "x.png")


def test_relative_bars_wrap_many_columns_onto_rows(tmp_path):
    # 24 columns x 10 methods (the --full table with language-agnostic columns): two rows of 12
    # groups, a page wide, not one 70-inch strip
    cols = [f"test_all ({i:02d})" for i in range(24)]
    changes = {f"method {m}": {c: float((m * 7 + i) % 11 - 5) for i, c in enumerate(cols)} for m in range(10)}
    wrapped = mpimg.imread(plot_relative_change(changes, tmp_path / "wrapped.png"))
    one_row = mpimg.imread(plot_relative_change(changes, tmp_path / "one_row.png", max_groups_per_row=24))
    assert wrapped.shape[1] < 4000 < one_row.shape[1]  # pixels at 150 dpi
    assert wrapped.shape[0] > 1.6 * one_row.shape[0]
    assert_png(tmp_path / "wrapped.png")
    with pytest.raises(ValueError, match="max_groups_per_row"):
        plot_relative_change(changes, tmp_path / "x.png", max_groups_per_row=0)


def test_cosine_heatmap(tmp_path):
    emb = np.random.default_rng(0).normal(size=(5, 8))
    assert_png(plot_cosine_heatmap(emb, ["en", "fr", "de", "ja", "ko"], tmp_path / "cos.png"))
    with pytest.raises(ValueError, match="zero embedding for \\['fr'\\]"):
        plot_cosine_heatmap(np.array([[1.0, 0.0], [0.0, 0.0]]), ["en", "fr"], tmp_path / "z.png")
    with pytest.raises(ValueError, match="3 labels"):
        plot_cosine_heatmap(emb, ["en", "fr", "de"], tmp_path / "z.png")


def test_tsne(tmp_path):
    emb, langs = clustered()
    assert_png(plot_tsne(emb, list(langs), tmp_path / "tsne.png"))
    with pytest.raises(ValueError, match="40 points but 3"):
        plot_tsne(emb, ["en"] * 3, tmp_path / "t.png")


def test_npz_format(tmp_path):
    emb, langs = clustered(n_per_lang=2)
    np.savez(tmp_path / "ok.npz", embeddings=emb, langs=langs)
    got_emb, got_langs = load_embeddings_npz(tmp_path / "ok.npz")
    assert got_emb.shape == (8, 16) and got_langs[:3] == ["en", "en", "fr"]
    np.savez(tmp_path / "bad.npz", feats=emb)
    with pytest.raises(ValueError, match="bad.npz: missing key"):
        load_embeddings_npz(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(ValueError, match="junk.npz: not a readable .npz"):
        load_embeddings_npz(tmp_path / "junk.npz")


def test_unique_tags():
    assert plot_cli.unique_tags(["x/feats.npz"]) == ["feats"]
    paths = ["e/stage2_vanilla/d/embeddings.npz", "e/stage2_zipper_soft/d/embeddings.npz"]
    assert plot_cli.unique_tags(paths) == ["stage2_vanilla_d_embeddings",
                                           "stage2_zipper_soft_d_embeddings"]
    with pytest.raises(ValueError, match="twice"):
        plot_cli.unique_tags(["a.npz", "a.npz"])


def test_plot_cli_on_fixture_tree(tmp_path, capsys):
    emb, langs = clustered()
    np.savez(tmp_path / "stage2_vanilla.npz", embeddings=emb, langs=langs)
    out = tmp_path / "figs"
    assert plot_cli.main(["--results", str(TREE), "--out", str(out),
                          "--tsne", str(tmp_path / "stage2_vanilla.npz")]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["radar_chunked.png", "radar_full.png", "relative_chunked.png",
                     "relative_full.png", "tsne_stage2_vanilla.png"]
    for name in names:
        assert_png(out / name)
    # --results alone (no --tsne): the tables' figures, and a clean exit
    only = tmp_path / "only_results"
    assert plot_cli.main(["--results", str(TREE), "--out", str(only)]) == 0
    assert sorted(p.name for p in only.iterdir()) == names[:4]
    assert plot_cli.unique_tags([]) == []
    assert plot_cli.main(["--results", str(TREE), "--out", str(out), "--baseline", "nope"]) == 1
    assert "plot: error: baseline method 'nope' not found" in capsys.readouterr().err


def test_relative_figure_leaves_out_columns_without_a_baseline(tmp_path, monkeypatch):
    """A language-agnostic decode of Zipper-Soft alone (the recipe's agnostic_methods) has no
    Vanilla value to compare with: the figure shows the language-aware columns only, not an
    empty panel for the agnostic ones."""
    import json

    def result(stage, decode_dir, per_lang):
        score = tmp_path / "exp" / stage / decode_dir / "score"
        score.mkdir(parents=True)
        (score / "result.json").write_text(json.dumps(
            {"per_lang": {lang: {"error_rate": v, "n_missing": 0} for lang, v in per_lang.items()}}))

    result("stage2_vanilla", "decode_test_all_full", {"de": 20.0, "fr": 30.0, "ru": 40.0})
    result("stage2_zipper_soft", "decode_test_all_full", {"de": 10.0, "fr": 30.0, "ru": 50.0})
    result("stage2_zipper_soft", "decode_test_all_agnostic_full", {"de": 15.0, "fr": 35.0, "ru": 45.0})
    drawn = {}
    monkeypatch.setattr(plot_cli, "plot_relative_change",
                        lambda changes, path, title="": drawn.update(changes) or Path(path))
    plot_cli.plot_results([str(tmp_path / "exp")], tmp_path / "figs", "vanilla")
    assert drawn == {"Zipper-LoRA-Soft": {"test_all (de)": 50.0, "test_all (fr)": 0.0,
                                          "test_all (ru)": -25.0}}
