"""CI's end-to-end run of the mini recipe in its micro configuration: every stage, two Stage-2 methods.

The recipe runs in a temporary copy of egs/mini_multilingual/asr1 (its files symlinked), so a user's
own runs in the recipe dir are never touched. Checks that the tables, the figures and RESULTS.md are
produced, that every score line parses, and that a rerun skips every finished stage.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from zipasr.scoring import parse_summary_line

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "mini_multilingual" / "asr1"
RECIPE_FILES = ["run.sh", "asr.sh", "path.sh", "cmd.sh", "db.sh", "conf", "local", "utils"]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (tools/setup.sh installs it); the mini recipe needs it")
    work = tmp_path_factory.mktemp("mini_micro")
    for name in RECIPE_FILES:
        (work / name).symlink_to((RECIPE / name).resolve())
    env = dict(os.environ, PYTHONHASHSEED="0")
    start = time.time()
    proc = subprocess.run(["./run.sh", "--micro", "true", "--threads", "1"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=1800)
    elapsed = time.time() - start
    assert proc.returncode == 0, f"run.sh --micro true failed:\n{proc.stderr[-6000:]}"
    return work, proc, elapsed


def test_micro_run_produces_tables_and_figures(micro_run):
    work, _, _ = micro_run
    exp = work / "exp"
    for marker in range(1, 11):
        assert (exp / f".stage{marker}.done").is_file(), f"stage {marker} did not finish"
    # pretrained models are real transformers checkpoint dirs
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "ctc_head.safetensors"):
        assert (exp / "pretrained/whisper_tiny" / name).is_file()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "copy_accuracy.json"):
        assert (exp / "pretrained/qwen3_tiny" / name).is_file()
    assert (exp / "lid/acoustic.safetensors").is_file() and (exp / "lid/acoustic_cosine.png").is_file()
    # scores parse: Stage 1 on the source test sets, every Stage-2 method on the target test sets
    decodes = [exp / "full/stage1/source_decode_test_src_all_full", exp / "full/stage1/decode_test_all_full"] + \
        [exp / f"full/stage2_{m}/decode_test_all_full" for m in ("vanilla", "zipper_soft")]
    for d in decodes:
        result = json.loads((d / "score/result.json").read_text())
        assert result["per_lang"], d
        for line in (d / "score/result.txt").read_text().splitlines():
            if line.startswith("%"):
                parsed = parse_summary_line(line)
                assert 0.0 <= parsed["rate"] and parsed["ref_count"] > 0
    test_langs = set(json.loads((decodes[2] / "score/result.json").read_text())["per_lang"])
    assert test_langs == {"de", "es", "fr", "ru", "vi", "it", "en", "el", "pt", "ja", "ko", "fa"}
    # tables and figures
    table = (exp / "full/RESULTS.md").read_text()
    assert "Vanilla" in table and "Zipper" in table
    figures = {p.name for p in (exp / "figures").glob("*.png")}
    assert {"radar_full.png", "relative_full.png"} <= figures
    assert any(name.startswith("tsne") for name in figures)
    results = (work / "RESULTS.md").read_text()
    for section in ("Wall time per stage", "WER/CER tables", "targets", "Figures", "Training curves"):
        assert section in results


def test_micro_run_is_fast_and_reruns_skip(micro_run):
    work, _, elapsed = micro_run
    # budget: 5 min on an idle 2-core machine; the bound only catches a pathological slowdown
    assert elapsed < 900, f"the micro run took {elapsed:.0f} s"
    proc = subprocess.run(["./run.sh", "--micro", "true"], cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("is done, skipped") == 10
    other = subprocess.run(["./run.sh", "--quick", "true"], cwd=work, capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "holds a 'micro' run" in other.stderr
