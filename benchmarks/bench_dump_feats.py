"""Feature dump speed (issue 3): seconds of audio per second per core, and scaling from 1 to 2 jobs.

It writes a synthetic data dir (16 kHz wav files of 4-16 s), then times
  - one split in this process (audio read + Whisper log-mel + ark write; torch on 1 thread): the speed per core;
  - the same work as 2 splits in 2 forked processes at once: the compute speed-up of 2 jobs over 1;
  - the whole dump_feats through utils/run.pl with --nj 1 and --nj 2 (wall time, process start-up included).
Goal: at least 200x real time per core at 80 mel bins.

    python benchmarks/bench_dump_feats.py --hours 0.5 --n_mels 80
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from zipasr.data.datadir import DataDir
from zipasr.data.dump import REPO_ROOT, dump_features, prepare_splits, run_job
from zipasr.data.features import FeatureExtractor

GOAL = 200.0


def make_corpus(root: Path, hours: float, seed: int = 0) -> DataDir:
    rng = np.random.default_rng(seed)
    dd = DataDir()
    total, i = 0.0, 0
    while total < hours * 3600:
        seconds = float(rng.uniform(4, 16))
        audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        utt = f"spk{i % 20:02d}-utt{i:05d}"
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, 16000, subtype="PCM_16")
        dd.wav_scp[utt], dd.text[utt], dd.utt2spk[utt] = str(path), "x", utt.split("-")[0]
        dd.utt2lang[utt], dd.utt2dur[utt] = "en", seconds
        total += seconds
        i += 1
    dd.write(root / "data")
    return DataDir.load(root / "data")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=0.5, help="synthetic audio to dump")
    p.add_argument("--n_mels", type=int, default=80, choices=(80, 128))
    p.add_argument("--workdir", default=None, help="where to write the corpus (default: a temp dir, removed)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dump_"))
    try:
        dd = make_corpus(root, args.hours)
        seconds = sum(dd.utt2dur.values())
        extractor = FeatureExtractor(args.n_mels)
        spec = {"n_mels": args.n_mels}

        feat_dir = root / "inproc"
        prepare_splits(dd, feat_dir, 1)
        start = time.perf_counter()
        run_job(root / "data", feat_dir, 1, 1, extractor, progress=False)
        per_core = seconds / (time.perf_counter() - start)

        feat_dir = root / "forked"
        prepare_splits(dd, feat_dir, 2)
        ctx = multiprocessing.get_context("fork")  # the workers inherit the imported modules: no start-up cost
        start = time.perf_counter()
        procs = [ctx.Process(target=run_job, args=(root / "data", feat_dir, 2, j, extractor),
                             kwargs={"progress": False}) for j in (1, 2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        two_jobs = seconds / (time.perf_counter() - start)

        walls = {}
        for nj in (1, 2):
            start = time.perf_counter()
            dump_features(root / "data", root / f"dump{nj}", extractor, spec, nj=nj,
                          cmd=str(REPO_ROOT / "utils" / "run.pl"), feat_dir=root / f"feats{nj}")
            walls[nj] = time.perf_counter() - start
        print(f"audio: {seconds / 3600:.2f} h in {len(dd)} utterances, {args.n_mels} mel bins")
        print(f"one job in-process (1 thread): {per_core:8.0f}x real time per core "
              f"(goal >= {GOAL:.0f}x: {'met' if per_core >= GOAL else 'NOT met'})")
        print(f"two forked jobs at once:       {two_jobs:8.0f}x real time in total, "
              f"speed-up {two_jobs / per_core:.2f}x over one job")
        for nj, wall in walls.items():
            print(f"dump_feats --nj {nj} via run.pl:  {wall:6.1f} s wall, {seconds / wall:8.0f}x real time")
        print(f"run.pl speed-up 2 jobs / 1 job: {walls[1] / walls[2]:.2f}x (process start-up included; "
              "it dominates for short dumps)")
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
