"""Language-agnostic decoding (decode --lid_model): predicted languages drive the prompt and the adapter
route; a perfect LID gives the language-aware hypotheses; the LID report; the result-table columns."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from test_train_helpers import one_thread, trained_experiments  # noqa: F401  (one_thread: fixture)
from zipasr.data.datadir import read_kaldi_map, write_kaldi_map

pytestmark = pytest.mark.usefixtures("one_thread")

LID_LINE = re.compile(r"^%LID (\d+\.\d\d) \[ (\d+) / (\d+) \]$")
COMMON = ["--max_new_tokens", "6", "--batch_size", "5", "--threads", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    return trained_experiments(tmp_path_factory.mktemp("runs"), tiny_whisper_dir, tiny_llm_dir)


@pytest.fixture(scope="module")
def lid_dirs(runs, tmp_path_factory):
    """A LID classifier that is perfect on the test data, and the same one shifted by one language.

    The features are random, so the classifier can only memorise them: with weak regularisation and
    fewer utterances (24) than dimensions (32) it is perfect on the data it was trained on.
    """
    from zipasr.sibling.lid_classifier import train_lid_classifier
    from zipasr.train.dataset import SpeechDataset
    from zipasr.train.inference import load_model

    model, _ = load_model(runs["stage2"])
    data = SpeechDataset(runs["data"], model.languages, None, cache=True)
    items = ((torch.from_numpy(data.features(i)), u.lang) for i, u in enumerate(data.utterances))
    clf, accuracy = train_lid_classifier(model.encoder, items, model.languages,
                                         segment_frames=model.segment_frames(None), c=1e4, total=len(data))
    assert accuracy == 1.0
    root = tmp_path_factory.mktemp("lid")
    perfect = clf.save(root / "perfect")
    with torch.no_grad():  # row j takes row j-1: language i is predicted as language i+1
        clf.proj.weight.copy_(clf.proj.weight.roll(1, dims=0))
        clf.proj.bias.copy_(clf.proj.bias.roll(1, dims=0))
    shifted = clf.save(root / "shifted")
    return {"perfect": perfect, "shifted": shifted, "languages": model.languages}


@pytest.fixture(scope="module")
def aware_text(runs, tmp_path_factory):
    """The language-aware hypotheses (utt2lang)."""
    from zipasr.bin.decode import main

    out = tmp_path_factory.mktemp("aware")
    assert main(["--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]), "--out_dir", str(out),
                 *COMMON]) == 0
    return (out / "text").read_text(encoding="utf-8")


def copy_data_dir(src, dst, utt2lang: dict | None):
    """A copy of data dir `src` with another utt2lang (None: without one)."""
    shutil.copytree(src, dst)
    (dst / "utt2lang").unlink()
    if utt2lang is not None:
        write_kaldi_map(dst / "utt2lang", utt2lang)
    return dst


def parse_lid(path):
    match = LID_LINE.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert match, path.read_text(encoding="utf-8")
    return float(match[1]), int(match[2]), int(match[3])


def test_perfect_lid_equals_language_aware_decoding(runs, lid_dirs, aware_text, tmp_path):
    from zipasr.bin.decode import main

    out = tmp_path / "decode_train_agnostic_chunked"
    assert main(["--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]), "--out_dir", str(out),
                 "--lid_model", str(lid_dirs["perfect"]), *COMMON]) == 0
    assert (out / "text").read_text(encoding="utf-8") == aware_text
    utt2lang = read_kaldi_map(runs["data"] / "utt2lang")
    assert read_kaldi_map(out / "utt2lang.pred") == utt2lang
    assert parse_lid(out / "lid_accuracy.txt") == (100.0, len(utt2lang), len(utt2lang))
    assert "%LID 100.00" in (out / "decode.log").read_text(encoding="utf-8")


def test_predicted_languages_drive_prompt_and_routing(runs, lid_dirs, tmp_path, monkeypatch):
    """A LID that is always wrong (i -> i+1): generate gets its languages (they choose the prompt and
    the adapter route), and the hypotheses are those of the language-aware decode given them."""
    from zipasr.bin.decode import main
    from zipasr.model.speech_llm import SpeechLLM
    from zipasr.train.dataset import SpeechDataset

    langs = lid_dirs["languages"]
    utt2lang = read_kaldi_map(runs["data"] / "utt2lang")
    shifted = {u: langs[(langs.index(lang) + 1) % len(langs)] for u, lang in utt2lang.items()}
    relabelled = copy_data_dir(runs["data"], tmp_path / "relabelled", shifted)
    assert main(["--exp_dir", str(runs["stage2"]), "--data_dir", str(relabelled), "--out_dir",
                 str(tmp_path / "aware"), *COMMON]) == 0

    batch_utts, batch_langs = [], []  # per batch: its utterances (collate), the languages generate got
    collate, generate = SpeechDataset.collate, SpeechLLM.generate

    def collate_spy(self, rows):
        batch_utts.append([self.utterances[i].utt for row in rows for i in row])
        return collate(self, rows)

    def generate_spy(self, feats, feat_lens, lang_ids, *args, **kwargs):
        batch_langs.append([langs[i] for i in lang_ids.tolist()])
        return generate(self, feats, feat_lens, lang_ids, *args, **kwargs)

    monkeypatch.setattr(SpeechDataset, "collate", collate_spy)
    monkeypatch.setattr(SpeechLLM, "generate", generate_spy)
    out = tmp_path / "agnostic"
    assert main(["--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]), "--out_dir", str(out),
                 "--lid_model", str(lid_dirs["shifted"]), *COMMON]) == 0
    assert read_kaldi_map(out / "utt2lang.pred") == shifted
    assert len(batch_utts) == len(batch_langs) > 1
    assert {u: lang for us, ls in zip(batch_utts, batch_langs) for u, lang in zip(us, ls)} == shifted
    assert (out / "text").read_text(encoding="utf-8") == (tmp_path / "aware" / "text").read_text(encoding="utf-8")
    assert parse_lid(out / "lid_accuracy.txt") == (0.0, 0, len(utt2lang))


def test_data_dir_without_utt2lang(runs, lid_dirs, aware_text, tmp_path, capsys):
    from zipasr.bin.decode import main

    data = copy_data_dir(runs["data"], tmp_path / "no_utt2lang", None)
    args = ["--exp_dir", str(runs["stage2"]), "--data_dir", str(data), *COMMON]
    assert main([*args, "--out_dir", str(tmp_path / "aware")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("decode: error: ") and "no utt2lang" in err and "--lid_model" in err
    assert "Traceback" not in err and not (tmp_path / "aware").exists()
    (data / "utt2lang").write_text("")  # an empty one: the same error, after loading the model
    assert main([*args, "--out_dir", str(tmp_path / "aware")]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("decode: error: ") and "no utt2lang" in err and "--lid_model" in err
    (data / "utt2lang").unlink()

    out = tmp_path / "agnostic"
    assert main([*args, "--out_dir", str(out), "--lid_model", str(lid_dirs["perfect"])]) == 0
    assert (out / "text").read_text(encoding="utf-8") == aware_text
    assert read_kaldi_map(out / "utt2lang.pred") == read_kaldi_map(runs["data"] / "utt2lang")
    assert not (out / "lid_accuracy.txt").exists()  # nothing to score against


def test_bad_lid_model_is_a_clean_error(runs, tmp_path, capsys):
    from zipasr.bin.decode import main

    assert main(["--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]), "--out_dir", str(tmp_path / "o"),
                 "--lid_model", str(tmp_path), *COMMON]) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # after the progress bars of the model loading
    assert last.startswith("decode: error: ") and str(tmp_path) in last and "LID classifier" in last
    assert "Traceback" not in err


def test_result_tables_show_agnostic_beside_language_aware(tmp_path):
    """decode_<testset>_agnostic_<regime> gives the column <testset>_agnostic next to <testset>."""
    from zipasr.results import build_tables, collect_results, format_markdown

    def result(stage, decode_dir, wer):
        score = tmp_path / "exp" / stage / decode_dir / "score"
        score.mkdir(parents=True)
        (score / "result.json").write_text(json.dumps({"per_lang": {"de": {"error_rate": wer, "n_missing": 0}}}))

    result("stage2_zipper_soft", "decode_test_de_chunked", 10.0)
    result("stage2_zipper_soft", "decode_test_de_agnostic_chunked", 12.5)
    result("stage2_lors", "decode_test_de_agnostic_chunked", 11.0)
    table = format_markdown(build_tables(collect_results([tmp_path / "exp"])))
    assert "| Method | test_de (de) | test_de_agnostic (de) | Avg |" in table
    assert "| Zipper-LoRA-Soft | 10.00 | 12.50 | 11.25 |" in table
    assert "| lors | - | 11.00 | - |" in table


def test_dataset_without_utt2lang_is_for_decoding_only(tmp_path):
    from test_train_helpers import make_data_dir
    from zipasr.train.dataset import UNKNOWN_LANG, SpeechDataset

    data = make_data_dir(tmp_path / "data", per_lang=1)
    (data / "utt2lang").unlink()
    with pytest.raises(ValueError, match="has no utt2lang: training needs"):
        SpeechDataset(data, ["en", "de", "fr", "zh"], lambda text: [1, 2])
    dataset = SpeechDataset(data, ["en", "de", "fr", "zh"], None)
    assert not dataset.has_languages and all(u.lang is None for u in dataset.utterances)
    assert dataset.collate([[0, 1], [2]]).lang_ids.tolist() == [UNKNOWN_LANG] * 3
