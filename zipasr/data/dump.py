"""Feature dumping in resumable splits: the data dir is cut into `nj` splits, each split is one job that writes
`feats.J.ark/.scp` and `utt2num_frames.J` and then a `.done.J` marker; a rerun skips every split whose marker
matches its utterance list and feature settings. The merged result is a data dir with feats.scp.

Layout of the work dir (`feat_dir`, default `<out_dir's parent>/feats/<out_dir's name>`):
    split<nj>/J.list     utterances of split J
    feats.J.ark/.scp     features (T, n_mels) float32, kaldiio
    utt2num_frames.J     T per utterance
    bad.J                utterances skipped with --skip_bad, with the reason
    .done.J              marker: a hash of the split's utterance list and the extractor settings
    log/                 one log per job (from the job runner)
"""
from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from zipasr.data.audio import SAMPLE_RATE, AudioError, load_audio
from zipasr.data.datadir import DataDir, read_kaldi_map, write_atomic, write_kaldi_map
from zipasr.data.features import FeatureExtractor

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_feat_dir(out_dir) -> Path:
    """<out_dir's parent>/feats/<out_dir's name>: where arks, splits, logs and markers go by default."""
    out_dir = Path(out_dir)
    return out_dir.parent / "feats" / out_dir.name


def split_utts(utts: list[str], nj: int) -> list[list[str]]:
    """Contiguous, near-equal splits of the sorted utterance list (no split is empty)."""
    utts = sorted(utts)
    nj = max(1, min(nj, len(utts)))
    bounds = [round(i * len(utts) / nj) for i in range(nj + 1)]
    return [utts[bounds[i]: bounds[i + 1]] for i in range(nj)]


def _signature(utts: list[str], extractor: FeatureExtractor) -> str:
    h = hashlib.sha1()
    h.update(repr(sorted(extractor.settings().items())).encode())
    h.update("\n".join(utts).encode())
    return h.hexdigest()


def prepare_splits(dd: DataDir, feat_dir: Path, nj: int) -> int:
    """Write split<nj>/J.list for every split (unchanged lists are left as they are). Returns the number of splits."""
    splits = split_utts(dd.utt_ids, nj)
    sdir = feat_dir / f"split{len(splits)}"
    sdir.mkdir(parents=True, exist_ok=True)
    for j, utts in enumerate(splits, 1):
        text = "".join(u + "\n" for u in utts)
        lst = sdir / f"{j}.list"
        if not lst.is_file() or lst.read_text(encoding="utf-8") != text:
            write_atomic(lst, text)
    return len(splits)


def is_done(feat_dir: Path, nj: int, job: int, extractor: FeatureExtractor) -> bool:
    marker = feat_dir / f".done.{job}"
    lst = feat_dir / f"split{nj}" / f"{job}.list"
    if not marker.is_file() or not lst.is_file():
        return False
    utts = lst.read_text(encoding="utf-8").split()
    return marker.read_text().strip() == _signature(utts, extractor)


def run_job(data_dir, feat_dir, nj: int, job: int, extractor: FeatureExtractor, skip_bad: bool = False,
            progress: bool = True) -> None:
    """Compute and write the features of split `job` (1-based) unless its marker says it is done."""
    import kaldiio

    feat_dir = Path(feat_dir).resolve()
    if is_done(feat_dir, nj, job, extractor):
        log.info("split %d/%d already done, skipped", job, nj)
        return
    (feat_dir / f".done.{job}").unlink(missing_ok=True)
    utts = (feat_dir / f"split{nj}" / f"{job}.list").read_text(encoding="utf-8").split()
    dd = DataDir.load(data_dir)
    ark = feat_dir / f"feats.{job}.ark"
    scp_tmp = feat_dir / f".feats.{job}.scp.tmp"
    frames: dict[str, int] = {}
    bad: dict[str, str] = {}
    start, seconds = time.time(), 0.0
    # The scp must name the final ark, so the ark is written in place; the marker (written last) is what
    # tells a finished split from an interrupted one.
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp_tmp}") as writer:
        for utt in tqdm(utts, desc=f"dump split {job}/{nj}", unit="utt", disable=not progress, mininterval=5):
            try:
                audio = load_audio(dd, utt)
                feats = extractor.compute(audio)
            except (AudioError, ValueError) as err:
                if not skip_bad:
                    raise AudioError(f"utterance {utt!r} ({dd.recording(utt)[1]}): {err}") from None
                bad[utt] = str(err).replace("\n", " ")
                log.warning("skipped %s: %s", utt, err)
                continue
            writer(utt, feats.T)  # Kaldi layout (T, n_mels)
            frames[utt] = feats.shape[1]
            seconds += len(audio) / SAMPLE_RATE
    os.replace(scp_tmp, feat_dir / f"feats.{job}.scp")
    write_kaldi_map(feat_dir / f"utt2num_frames.{job}", frames)
    write_kaldi_map(feat_dir / f"bad.{job}", bad)
    elapsed = max(time.time() - start, 1e-9)
    log.info("split %d/%d: %d utterances, %.1f s of audio in %.1f s (%.0fx real time), %d skipped",
             job, nj, len(frames), seconds, elapsed, seconds / elapsed, len(bad))
    write_atomic(feat_dir / f".done.{job}", _signature(utts, extractor) + "\n")


def _extractor_args(extractor_spec: dict) -> list[str]:
    if extractor_spec.get("encoder_dir"):
        return ["--encoder_dir", str(extractor_spec["encoder_dir"])]
    return ["--n_mels", str(extractor_spec["n_mels"])]


def dump_features(data_dir, out_dir, extractor: FeatureExtractor, extractor_spec: dict, nj: int = 1,
                  cmd: str = "", feat_dir=None, skip_bad: bool = False) -> DataDir:
    """Dump features of `data_dir` in `nj` resumable splits and write `out_dir` (a copy of the data dir with
    feats.scp and utt2num_frames). `cmd` is a job runner (`utils/run.pl`, `utils/slurm.pl ...`); empty: jobs
    run one after another in this process. `extractor_spec` ({"n_mels": n} or {"encoder_dir": d}) is passed
    to the jobs so they build the same extractor."""
    dd = DataDir.load(data_dir)
    dd.validate()
    feat_dir = Path(feat_dir or default_feat_dir(out_dir)).resolve()
    feat_dir.mkdir(parents=True, exist_ok=True)
    nj = prepare_splits(dd, feat_dir, nj)
    pending = [j for j in range(1, nj + 1) if not is_done(feat_dir, nj, j, extractor)]
    log.info("%s: %d utterances in %d splits, %d to do (%s)", data_dir, len(dd), nj, len(pending), feat_dir)
    if pending and not cmd:
        for j in pending:
            run_job(data_dir, feat_dir, nj, j, extractor, skip_bad=skip_bad)
    elif pending:
        _run_with_runner(cmd, data_dir, feat_dir, nj, extractor, extractor_spec, skip_bad)
    return merge(dd, feat_dir, nj, out_dir)


def _run_with_runner(cmd, data_dir, feat_dir: Path, nj: int, extractor, extractor_spec, skip_bad) -> None:
    """Launch all splits through the job runner (finished splits exit at once) and show progress."""
    job_cmd = [sys.executable, "-m", "zipasr.bin.dump_feats", "--data_dir", str(Path(data_dir).resolve()),
               "--feat_dir", str(feat_dir), "--nj", str(nj), "--job", "JOB", *_extractor_args(extractor_spec)]
    if skip_bad:
        job_cmd.append("--skip_bad")
    full = [*shlex.split(cmd), f"JOB=1:{nj}", str(feat_dir / "log" / "dump_feats.JOB.log"), *job_cmd]
    log.info("running: %s", shlex.join(full))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p))
    proc = subprocess.Popen(full, env=env)
    with tqdm(total=nj, desc="dump_feats splits", unit="split") as bar:
        while True:
            rc = proc.poll()
            done = sum(is_done(feat_dir, nj, j, extractor) for j in range(1, nj + 1))
            bar.update(done - bar.n)
            if rc is not None:
                break
            time.sleep(0.5)
    if rc != 0:
        raise RuntimeError(f"job runner {cmd!r} failed (exit {rc}); see {feat_dir}/log/dump_feats.*.log")


def merge(dd: DataDir, feat_dir: Path, nj: int, out_dir) -> DataDir:
    """Write `out_dir`: the utterances of `dd` that have features, with the splits' feats.scp and
    utt2num_frames merged (utterances skipped as unreadable are left out and logged)."""
    feats: dict[str, str] = {}
    frames: dict[str, int] = {}
    bad: dict[str, str] = {}
    for j in range(1, nj + 1):
        feats.update(read_kaldi_map(feat_dir / f"feats.{j}.scp"))
        frames.update({u: int(n) for u, n in read_kaldi_map(feat_dir / f"utt2num_frames.{j}").items()})
        bad.update(read_kaldi_map(feat_dir / f"bad.{j}"))
    if bad:
        log.warning("%d utterance(s) skipped as unreadable (listed in %s/bad.*): %s", len(bad), feat_dir,
                    ", ".join(sorted(bad)[:5]) + (" ..." if len(bad) > 5 else ""))
    out = dd.select(set(feats))
    out.feats_scp = feats
    out.utt2num_frames = frames
    out.write(out_dir)
    log.info("wrote %s: %d utterances with features (%.2f h)", out_dir, len(out), out.total_hours())
    return out
