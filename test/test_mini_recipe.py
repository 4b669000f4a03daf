"""CI's end-to-end run of the mini recipe in its micro configuration: every stage, three Stage-2 methods,
the sibling method lors (LoRS-Merging of the Independent-LoRA adapters) and one language-agnostic decode.

The recipe runs in a temporary copy of egs/mini_multilingual/asr1 (its files symlinked), so a user's
own runs in the recipe dir are never touched. Checks that the tables, the figures and RESULTS.md are
produced, that every score line parses (the LID accuracy line too), that a rerun skips every finished
stage, and that a second run, killed in the middle of a Stage-2 training and resumed, ends with the same
hypotheses and tables as the first (the same seed gives the same data, models and table); and that
`--projector ctc_compress` runs stages 6-10 on the first run's corpus and pretrained models.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from zipasr.scoring import parse_summary_line

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "mini_multilingual" / "asr1"
# the first line of a language-agnostic decode's lid_accuracy.txt (zipasr.sibling.lid_classifier.lid_report)
LID_LINE = re.compile(r"^%LID (?P<rate>\d+\.\d+) \[ (?P<correct>\d+) / (?P<total>\d+) \]$")
RECIPE_FILES = ["run.sh", "asr.sh", "path.sh", "cmd.sh", "db.sh", "conf", "local", "utils"]


MICRO = ["./run.sh", "--micro", "true", "--threads", "1", "--jobs", "2"]  # 2 jobs: the pool of stages 7-8


def recipe_copy(work: Path) -> Path:
    """A recipe dir whose files are symlinks to egs/mini_multilingual/asr1 (the user's runs stay untouched)."""
    for name in RECIPE_FILES:
        (work / name).symlink_to((RECIPE / name).resolve())
    return work


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (tools/setup.sh installs it); the mini recipe needs it")
    work = recipe_copy(tmp_path_factory.mktemp("mini_micro"))
    env = dict(os.environ, PYTHONHASHSEED="0")
    start = time.time()
    proc = subprocess.run(MICRO, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
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
    # Stage 1 starts from the projector's warm start, at the recipe's projector stride
    assert json.loads((exp / "pretrained/projector_warm/speech_llm.json").read_text())["parts"] == ["projector"]
    stage1 = yaml.safe_load((exp / "full/stage1/config.yaml").read_text())["model"]
    assert stage1["init_from"].endswith("pretrained/projector_warm") and stage1["projector_stride"] == 2
    # ... with the encoder frozen (the recipe's setting): its checkpoint holds no encoder weights
    assert "encoder" not in json.loads((exp / "full/stage1/final/speech_llm.json").read_text())["parts"]
    # stages 7-8 ran as a pool of 2 jobs (--jobs 2), each job with its own log
    for m in ("vanilla", "zipper_soft", "independent"):
        assert "zipasr.bin.train" in (exp / f"full/stage2_{m}/run.log").read_text()
        assert (exp / f"full/stage2_{m}/decode_test_all_full.log").is_file()
    assert (exp / "full/stage2_zipper_soft/decode_test_all_agnostic_full.log").is_file()
    # scores parse: Stage 1 on the source test sets, every Stage-2 method on the target test sets
    decodes = [exp / "full/stage1/source_decode_test_src_all_full", exp / "full/stage1/decode_test_all_full"] + \
        [exp / f"full/stage2_{m}/decode_test_all_full" for m in ("vanilla", "zipper_soft", "independent", "lors")] + \
        [exp / "full/stage2_zipper_soft/decode_test_all_agnostic_full"]
    for d in decodes:
        result = json.loads((d / "score/result.json").read_text())
        assert result["per_lang"], d
        for line in (d / "score/result.txt").read_text().splitlines():
            if line.startswith("%"):
                parsed = parse_summary_line(line)
                assert 0.0 <= parsed["rate"] and parsed["ref_count"] > 0
    test_langs = {"de", "es", "fr", "ru", "vi", "it", "en", "el", "pt", "ja", "ko", "fa"}
    for d in decodes[2:]:
        assert set(json.loads((d / "score/result.json").read_text())["per_lang"]) == test_langs, d
    # the sibling method is an ordinary experiment dir; the agnostic decode reports its LID accuracy
    assert json.loads((exp / "full/stage2_lors/sibling.json").read_text())
    assert (exp / "full/stage1/lid/lid_classifier.json").is_file()
    agnostic = decodes[-1]
    m = LID_LINE.match((agnostic / "lid_accuracy.txt").read_text().splitlines()[0])
    assert m, (agnostic / "lid_accuracy.txt").read_text()
    correct, total = int(m["correct"]), int(m["total"])
    n_test = len((work / "data/test_all/text").read_text().splitlines())
    assert total == n_test and 0 <= correct <= total
    assert abs(float(m["rate"]) - 100 * correct / total) < 0.01
    predicted = dict(line.split() for line in (agnostic / "utt2lang.pred").read_text().splitlines())
    assert len(predicted) == n_test and set(predicted.values()) <= test_langs | {"zh"}
    # tables and figures
    table = (exp / "full/RESULTS.md").read_text()
    assert "Vanilla" in table and "Zipper" in table
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("|")}
    assert {"Independent-LoRA", "lors"} <= rows, rows
    assert "test_all_agnostic" in table  # the language-agnostic columns beside the language-aware ones
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
    # the projector of a directory's models is fixed too; an unknown one is an error
    other = subprocess.run(MICRO + ["--projector", "ctc_compress"], cwd=work, capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "models use the 'gated_conv' projector" in other.stderr
    other = subprocess.run(MICRO + ["--projector", "mlp"], cwd=work, capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "--projector must be gated_conv or ctc_compress" in other.stderr


def test_ctc_compress_projector_runs_stages_6_to_10(micro_run, tmp_path):
    """--projector ctc_compress (not the paper's) from the micro run's corpus and pretrained models on."""
    first, _, _ = micro_run
    work = recipe_copy(tmp_path)
    for name in ("corpus", "data", "dump"):
        (work / name).symlink_to(first / name)
    exp = work / "exp"
    (exp / "pretrained").mkdir(parents=True)
    for name in ("pretrained/qwen3_tiny", "pretrained/whisper_tiny", "lid"):
        (exp / name).symlink_to(first / "exp" / name)
    for stage in range(1, 6):
        (exp / f".stage{stage}.done").touch()
    (exp / ".size").write_text("micro\n")
    proc = subprocess.run(MICRO + ["--projector", "ctc_compress", "--stage", "6"], cwd=work,
                          env=dict(os.environ, PYTHONHASHSEED="0"), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-6000:]
    meta = json.loads((exp / "pretrained/projector_warm/speech_llm.json").read_text())
    assert meta["projector"] == "CTCCompressProjector"
    for run in ("stage1", "stage2_vanilla"):
        assert yaml.safe_load((exp / "full" / run / "config.yaml").read_text())["model"]["projector"] == "ctc_compress"
    # its Stage 1 keeps the encoder frozen too: the checkpoint holds no encoder weights
    assert yaml.safe_load((exp / "full/stage1/config.yaml").read_text())["train"]["stage1_train_encoder"] is False
    assert "encoder" not in json.loads((exp / "full/stage1/final/speech_llm.json").read_text())["parts"]
    assert "NOT the paper's projector" in (work / "RESULTS.md").read_text()
    assert (exp / "full/RESULTS.md").is_file() and (exp / "figures/radar_full.png").is_file()


def outputs(work: Path) -> dict[str, str]:
    """What a run must reproduce: the test transcripts, every decode's hypotheses and the result table."""
    files = [work / "data/test_all/text", work / "exp/full/RESULTS.md"] + sorted((work / "exp/full").glob("*/*decode*/text"))
    return {str(f.relative_to(work)): f.read_text() for f in files}


def test_killed_micro_run_resumes_to_the_same_results(micro_run, tmp_path):
    first, _, _ = micro_run
    work = recipe_copy(tmp_path)
    env = dict(os.environ, PYTHONHASHSEED="0")
    # kill the whole run (its process group) once the Stage-2 Vanilla run has written its first checkpoint
    ckpts = work / "exp/full/stage2_vanilla/checkpoints"
    log = work / "killed_run.log"  # beside data/ and exp/, not among the outputs compared below
    with log.open("w") as out:
        proc = subprocess.Popen(MICRO, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.time() + 1200
        while not any(p.name.startswith("step") for p in ckpts.glob("*")) and proc.poll() is None:
            assert time.time() < deadline, "no Stage-2 checkpoint within 20 min"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, \
        f"the run ended (rc {proc.returncode}) before it could be killed:\n{log.read_text()[-6000:]}"
    assert not (work / "exp/.stage7.done").exists()
    resumed = subprocess.run(MICRO, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-6000:]
    assert "Stage 6 is done, skipped" in resumed.stderr
    log = (work / "exp/full/stage2_vanilla/train.log").read_text()
    assert "resumed from" in log, log[-3000:]
    want, got = outputs(first), outputs(work)
    assert len(want) >= 8 and sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs between the uninterrupted and the resumed run"


# What run.sh reads from a size file after sourcing it (under `set -u`: a size file without one of these
# would stop the run with "unbound variable" in the middle of a stage).
SIZE_VARIABLES = ["corpus_config", "llm_opts", "encoder_opts", "warm_opts", "stage1_steps", "stage2_steps",
                  "methods", "regimes", "decode_opts", "sibling_methods", "sibling_steps", "lid_opts",
                  "agnostic_methods", "stage1_target_decode"]


@pytest.mark.parametrize("size", ["micro", "quick", "default", "full"])
def test_size_files_set_every_variable_run_sh_reads(size):
    """Each conf/size_<size>.sh sets every variable run.sh reads, stage1_target_decode as true or false
    (run.sh runs it as a command), and its agnostic methods are among its methods."""
    script = f"set -eu; . conf/size_{size}.sh; " + "; ".join(f'printf "%s\\0" "${{{v}}}"' for v in SIZE_VARIABLES)
    out = subprocess.run(["bash", "-c", script], cwd=RECIPE, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    values = dict(zip(SIZE_VARIABLES, out.stdout.split("\0")))
    assert values["stage1_target_decode"] in ("true", "false")
    assert set(values["agnostic_methods"].split()) <= set(values["methods"].split())


def test_help_lists_the_stages_and_the_options_with_their_defaults():
    out = subprocess.run(["./run.sh", "--help"], cwd=RECIPE, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for stage in range(1, 11):
        assert re.search(rf"^ {{1,2}}{stage}  \S", text, flags=re.M), f"stage {stage} missing from --help"
    for option in ("stage=1", "stop_stage=10", "quick=false", "full=false", "micro=false", "threads=2",
                   "projector=gated_conv"):
        assert re.search(rf"^{re.escape(option)}\b", text, flags=re.M), f"{option} missing from --help"
    assert "help_message" not in text and "set -euo" not in text
