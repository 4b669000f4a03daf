"""Recipes: the shared template's stages 1-2 through a corpus run.sh (option parsing, .done markers, the
command log), the multilingual12 set builder, utils/make_recipe.sh and utils/parse_options.sh."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from test_data_helpers import make_commonvoice, make_librispeech, make_mls
from zipasr.data import DataDir, load_features

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs" / "TEMPLATE" / "asr1"


def _recipe_copy(tmp_path: Path, name: str) -> Path:
    """The repository recipe `name` with its symlinks made absolute, so it runs outside the repository."""
    src = REPO / "egs" / name / "asr1"
    dst = tmp_path / "egs" / name / "asr1"
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name in ("data", "dump", "exp"):
            continue
        if entry.is_symlink():
            (dst / entry.name).symlink_to(entry.resolve())
        elif entry.is_dir():
            shutil.copytree(entry, dst / entry.name, symlinks=False)
        else:
            shutil.copy2(entry, dst / entry.name)
    return dst


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the python running the tests
    return env


def test_librispeech_recipe_stages_1_2(tmp_path):
    make_librispeech(tmp_path / "LibriSpeech", "test-clean")
    recipe = _recipe_copy(tmp_path, "librispeech")
    (recipe / "local" / "data.sh").unlink()  # the 960 h union needs the training splits
    args = ["./run.sh", "--stop_stage", "2", "--prepare_splits", "test-clean:test_clean", "--train_set", "test_clean",
            "--valid_set", "test_clean", "--test_sets", "test_clean", "--whisper_dir", "", "--n_mels", "80",
            "--nj", "2", "--feats_cmd", ""]
    env = _env(LIBRISPEECH=str(tmp_path / "LibriSpeech"), WHISPER_DIR="/ckpt/whisper", LLM_DIR="/ckpt/llm")
    r = subprocess.run(args, cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Stage 1: data preparation" in r.stderr and "Stage 2: Whisper log-mel features" in r.stderr
    data = DataDir.load(recipe / "data" / "test_clean")
    data.validate()
    assert len(data) == 5 and set(data.lang.values()) == {"en"}
    dumped = DataDir.load(recipe / "dump" / "test_clean")
    assert dumped.utt_ids == data.utt_ids and load_features(dumped, data.utt_ids[0]).shape[0] == 80
    commands = (recipe / "exp" / "run_commands.sh").read_text()
    assert "python -m zipasr.bin.prepare librispeech" in commands and "zipasr.bin.dump_feats" in commands
    # a rerun skips finished steps
    r = subprocess.run(args, cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "data/test_clean is done, skipped" in r.stderr
    assert "dump/test_clean is done, skipped" in r.stderr
    # stages 3-4: the training commands (a launcher that only prints them)
    stage34 = ["./run.sh", "--stage", "3", "--stop_stage", "4", "--launcher", "echo", "--prepare_splits", "",
               "--train_set", "test_clean", "--valid_set", ""]
    r = subprocess.run(stage34 + ["--methods", "zipper_soft zipper_soft_initb"], cwd=recipe, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    printed = r.stdout.splitlines()
    # --resume: a killed training continues from its last checkpoint when the stage is run again
    assert printed[0] == ("-m zipasr.bin.train --config conf/train_stage1.yaml --exp_dir exp/stage1 --resume "
                          "--set data.train_dir=dump/test_clean --set data.valid_dir=null --set model.languages=[en] "
                          "--set model.encoder_dir=/ckpt/whisper --set model.llm_dir=/ckpt/llm")
    assert printed[2].startswith("-m zipasr.bin.train --config conf/train_stage2_zipper_soft_initb.yaml "
                                 "--exp_dir exp/stage2_zipper_soft_initb --resume --set model.init_from=exp/stage1 ")
    assert "--set model.encoder_adapter.init_b_from=exp/stage2_zipper_soft" in printed[2]
    # a .done marker counts only with its run's dir: the echo launcher made none, so the runs are redone ...
    r = subprocess.run(stage34 + ["--methods", "zipper_soft"], cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exp/.stage1.done exists but exp/stage1 does not: running it again" in r.stderr
    assert len(r.stdout.splitlines()) == 2
    # ... and skipped once the dirs exist
    (recipe / "exp" / "stage1").mkdir()
    (recipe / "exp" / "stage2_zipper_soft").mkdir()
    r = subprocess.run(stage34 + ["--methods", "zipper_soft"], cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "", r.stderr[-2000:]
    assert "exp/stage1 is done, skipped" in r.stderr and "exp/stage2_zipper_soft is done, skipped" in r.stderr
    (recipe / "exp" / ".stage2_zipper_soft.done").unlink()
    (recipe / "exp" / ".stage2_zipper_soft_initb.done").unlink()
    r = subprocess.run(stage34 + ["--methods", "zipper_soft_initb"], cwd=recipe, env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "zipper_soft_initb needs the zipper_soft run first" in r.stderr
    # unknown options are errors
    r = subprocess.run(["./run.sh", "--no_such_option", "1"], cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown option --no_such_option" in r.stderr


def test_multilingual12_set_builder(tmp_path):
    """local/data.sh: prepare each corpus split once, select (all / ids / repeat), combine per set."""
    make_librispeech(tmp_path / "LibriSpeech", "test-clean")
    cv = make_commonvoice(tmp_path / "cv", "ko")
    make_mls(tmp_path / "mls", "mls_italian")
    recipe = _recipe_copy(tmp_path, "multilingual12")
    ko_ids = sorted(cv["train"])[:2]
    (tmp_path / "ko_ids.txt").write_text("\n".join(ko_ids) + "\n")
    (recipe / "conf" / "tiny.conf").write_text(
        "# set corpus root split lang select\n"
        "test_ls   librispeech ${LIBRISPEECH}        test-clean en all\n"
        "train     commonvoice ${COMMONVOICE}/ko     train      ko ids:${ZIPPER_LORA_LISTS}/ko_ids.txt\n"
        "train     mls         ${MLS}/mls_italian    dev        it repeat:2\n")
    env = _env(LIBRISPEECH=str(tmp_path / "LibriSpeech"), COMMONVOICE=str(tmp_path / "cv"),
               MLS=str(tmp_path / "mls"), ZIPPER_LORA_LISTS=str(tmp_path), sets_conf="conf/tiny.conf")
    r = subprocess.run(["local/data.sh"], cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    train = DataDir.load(recipe / "data" / "train")
    train.validate()
    assert train.utt_ids == sorted(ko_ids + ["1844_931_000007", "1844_931_000007-rep2"])
    assert set(train.lang.values()) == {"ko", "it"}
    assert len(DataDir.load(recipe / "data" / "test_ls")) == 5
    # the real confs name only existing columns and known select forms
    for conf in (recipe / "conf").glob("sets*.conf"):
        for line in conf.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                fields = line.split()
                assert len(fields) == 6, line
                assert fields[5] == "all" or fields[5].split(":")[0] in ("hours", "ids", "repeat"), line


def test_make_recipe(tmp_path):
    r = subprocess.run([str(REPO / "utils" / "make_recipe.sh"), "--corpus", "commonvoice", "--lang", "sw",
                        "--egs_dir", str(tmp_path), "cv_sw"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "cv_sw" / "asr1"
    for name in ("asr.sh", "path.sh", "cmd.sh", "db.sh", "conf", "utils"):
        assert (d / name).exists(), name
    run_sh = (d / "run.sh").read_text()
    assert "--corpus commonvoice" in run_sh and "--langs \"sw\"" in run_sh
    assert subprocess.run(["bash", "-n", str(d / "run.sh")]).returncode == 0
    again = subprocess.run([str(REPO / "utils" / "make_recipe.sh"), "--egs_dir", str(tmp_path), "cv_sw"],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "exists already" in again.stderr


def test_parse_options(tmp_path):
    script = tmp_path / "s.sh"
    script.write_text("stage=1\nflag=false\nmy_opt=x\nhelp_message='usage: s.sh'\n"
                      f". {REPO / 'utils' / 'parse_options.sh'}\n"
                      'echo "$stage|$flag|$my_opt|$*"\n')
    run = lambda *a: subprocess.run(["bash", str(script), *a], capture_output=True, text=True)
    assert run("--stage", "3", "--my-opt", "a b", "--flag=true", "rest").stdout == "3|true|a b|rest\n"
    r = run("--flag", "yes")
    assert r.returncode != 0 and "takes true or false" in r.stderr
    r = run("--nope", "1")
    assert r.returncode != 0 and "unknown option --nope" in r.stderr
    assert "usage: s.sh" in run("--help").stderr
    (tmp_path / "c.conf").write_text("stage=7\n")
    assert run("--config", str(tmp_path / "c.conf")).stdout.startswith("7|")
