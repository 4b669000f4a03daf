"""Helpers shared by the training, decoding and export tests (no tests here).

`make_data_dir` writes a tiny Kaldi data dir with random features (feats.scp) and short noise wavs;
`trained_experiments` trains a tiny Stage 1 and Stage 2 once per test session (memoised here, so the
decode and export tests reuse the runs of the training tests).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import TINY_LANGUAGES, TINY_SENTENCES

REPO = Path(__file__).resolve().parents[1]


def make_data_dir(path: Path, per_lang: int = 6, seed: int = 0, langs=TINY_LANGUAGES) -> Path:
    """A data dir of `per_lang` utterances per language: 0.5-2.5 s, random 80-bin features."""
    from zipasr.data.datadir import write_kaldi_map

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    (path / "wav").mkdir(exist_ok=True)
    maps = {name: {} for name in ("wav.scp", "text", "utt2spk", "utt2lang", "utt2dur", "utt2num_frames")}
    feats = {}
    for lang in langs:
        for i in range(per_lang):
            utt = f"{lang}_spk{i % 2}_{i:03d}"
            frames = int(rng.integers(50, 250))
            wav = path / "wav" / f"{utt}.wav"
            sf.write(wav, (0.01 * rng.standard_normal(frames * 160)).astype(np.float32), 16000)
            maps["wav.scp"][utt] = str(wav)
            maps["text"][utt] = TINY_SENTENCES[lang][i % len(TINY_SENTENCES[lang])]
            maps["utt2spk"][utt] = f"{lang}_spk{i % 2}"
            maps["utt2lang"][utt] = lang
            maps["utt2dur"][utt] = frames / 100
            maps["utt2num_frames"][utt] = frames
            feats[utt] = rng.standard_normal((frames, 80)).astype(np.float32)  # Kaldi layout (T, n_mels)
    for name, mapping in maps.items():
        write_kaldi_map(path / name, mapping)
    spk2utt = {}
    for utt, spk in sorted(maps["utt2spk"].items()):
        spk2utt.setdefault(spk, []).append(utt)
    write_kaldi_map(path / "spk2utt", {k: " ".join(v) for k, v in spk2utt.items()})
    with kaldiio.WriteHelper(f"ark,scp:{path / 'feats.ark'},{path / 'feats.scp'}") as writer:
        for utt in sorted(feats):
            writer(utt, feats[utt])
    return path


def stage1_config(whisper_dir, llm_dir, train_dir, **train) -> dict:
    return {
        "model": {
            "encoder_dir": str(whisper_dir), "llm_dir": str(llm_dir), "languages": list(TINY_LANGUAGES),
            "regime": "chunked", "train_segment_seconds": [0.5, 1.0], "decode_segment_seconds": 1.0,
            "llm_lora": {"rank": 4, "alpha": 8.0},
        },
        "data": {"train_dir": str(train_dir), "valid_dir": str(train_dir), "max_tokens": 96, "batch_size": 2},
        "optim": {"lr": 3e-3, "warmup_ratio": 0.2, "grad_clip": 1.0},
        "train": {"stage": 1, "max_steps": 6, "save_every": 2, "keep_last": 2, "avg_last": 2, "log_every": 1,
                  "seed": 0, "threads": 1, "bf16": False, **train},
    }


def stage2_config(stage1: dict, init_from, method: str, **train) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(stage1))
    cfg["model"]["init_from"] = str(init_from)
    cfg["model"]["encoder_adapter"] = {"method": method, "rank": 4, "alpha": 8.0}
    if method in ("zipper_hard", "zipper_soft"):
        cfg["model"]["encoder_adapter"]["method_kwargs"] = {}
    cfg["train"].update(stage=2, max_steps=4, **train)
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_env() -> dict:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def train_command(config: Path, exp_dir: Path, nproc: int = 1, resume: bool = False) -> list[str]:
    launcher = [sys.executable]
    if nproc > 1:
        # --standalone: the rendezvous store binds a free port itself (no port picked first, which can race)
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = launcher + ["-m", "zipasr.bin.train", "--config", str(config), "--exp_dir", str(exp_dir)]
    return cmd + (["--resume"] if resume else [])


def run_training(config: Path, exp_dir: Path, nproc: int = 1, resume: bool = False, timeout: int = 300) -> None:
    """Run zipasr.bin.train in a new process group (killed as a whole on timeout); error shows its output."""
    proc = subprocess.Popen(train_command(config, exp_dir, nproc, resume), env=run_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"training timed out after {timeout} s:\n{stdout[-3000:]}\n{stderr[-6000:]}") from None
    if proc.returncode != 0:
        raise AssertionError(f"training failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")


def logged_losses(exp_dir: Path) -> dict[int, float]:
    """step -> loss from EXP/train.log."""
    pattern = re.compile(r"step (\d+)/\d+ loss ([0-9.eE+-]+|nan|inf)")
    return {int(m.group(1)): float(m.group(2))
            for m in pattern.finditer((exp_dir / "train.log").read_text())}


_CACHE: dict[str, dict] = {}


def trained_experiments(root: Path, whisper_dir, llm_dir) -> dict:
    """Tiny Stage-1 and Stage-2 (Zipper-Soft) experiments, trained once per session.

    Returns {"data": train dir, "stage1": exp dir, "stage1_config": dict, "stage2": exp dir}.
    """
    if "runs" not in _CACHE:
        data = make_data_dir(root / "data" / "train")
        cfg1 = stage1_config(whisper_dir, llm_dir, data)
        run_training(write_config(cfg1, root / "stage1.yaml"), root / "exp" / "stage1")
        cfg2 = stage2_config(cfg1, root / "exp" / "stage1", "zipper_soft")
        cfg2["model"]["encoder_adapter"]["lid_source"] = "whisper"
        run_training(write_config(cfg2, root / "stage2.yaml"), root / "exp" / "stage2")
        _CACHE["runs"] = {"data": data, "stage1": root / "exp" / "stage1", "stage1_config": cfg1,
                          "stage2": root / "exp" / "stage2", "root": root}
    return _CACHE["runs"]


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread while a module's tests run: on a shared 2-core machine two threads of tiny
    ops mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
