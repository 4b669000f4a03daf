"""Export: one language folded into plain transformers checkpoints decodes like the adapter model."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from test_train_helpers import one_thread, trained_experiments  # noqa: F401  (one_thread: fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    return trained_experiments(tmp_path_factory.mktemp("runs"), tiny_whisper_dir, tiny_llm_dir)


def test_export_decodes_like_the_adapter_model(runs, tmp_path):
    from transformers import AutoModelForCausalLM, WhisperModel

    from zipasr.bin.decode import main as decode
    from zipasr.bin.export import main as export

    out = tmp_path / "export_de"
    assert export(["--exp_dir", str(runs["stage2"]), "--lang", "de", "--out", str(out)]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["lang"] == "de" and meta["encoder_adapter"] == "zipper_soft"
    # plain checkpoints: no adapter tensors left, loadable by transformers alone
    for f in list((out / "encoder").glob("*.safetensors")) + list((out / "llm").glob("*.safetensors")):
        assert not [k for k in load_file(str(f)) if "lora" in k or "B_s" in k or "router" in k]
    WhisperModel.from_pretrained(str(out / "encoder"), local_files_only=True)
    AutoModelForCausalLM.from_pretrained(str(out / "llm"), local_files_only=True)

    common = ["--data_dir", str(runs["data"]), "--max_new_tokens", "8", "--batch_size", "4"]
    assert decode(["--exp_dir", str(runs["stage2"]), "--out_dir", str(tmp_path / "adapter"), *common]) == 0
    assert decode(["--exp_dir", str(out), "--out_dir", str(tmp_path / "merged"), *common]) == 0
    adapter = dict(line.split(" ", 1) if " " in line else (line, "")
                   for line in (tmp_path / "adapter" / "text").read_text(encoding="utf-8").splitlines())
    merged = dict(line.split(" ", 1) if " " in line else (line, "")
                  for line in (tmp_path / "merged" / "text").read_text(encoding="utf-8").splitlines())
    de = {u: t for u, t in adapter.items() if u.startswith("de_")}
    assert merged == de  # the export decodes its own language only


def test_export_of_unknown_language_is_an_error(runs, tmp_path, capsys):
    from zipasr.bin.export import main as export

    assert export(["--exp_dir", str(runs["stage2"]), "--lang", "ja", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # after the progress bars of the model loading
    assert last.startswith("export: error: ") and "ja" in last and "Traceback" not in err
