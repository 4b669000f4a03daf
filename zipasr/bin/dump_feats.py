"""Dump Whisper log-mel features of a data dir into kaldiio ark/scp, in N resumable splits run by a job runner.

    python -m zipasr.bin.dump_feats --data_dir data/train --out_dir dump/train --nj 8 --cmd utils/run.pl \\
        --encoder_dir /models/whisper-large-v3        # n_mels from the checkpoint (128), or --n_mels 80

Writes `out_dir` = the data dir plus feats.scp and utt2num_frames (features (T, n_mels) float32, 100 frames/s);
the ark files, split lists, per-job logs and `.done.J` markers go to --feat_dir (default
<out_dir's parent>/feats/<out_dir's name>). Rerunning skips every finished split. --cmd is a Kaldi-style runner
(`utils/run.pl`, `utils/slurm.pl --mem 4G`); without it the splits run in this process. --job J runs one split
(this is what the runner calls).
"""
from __future__ import annotations

import sys

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.dump import default_feat_dir, dump_features, run_job
from zipasr.data.features import FeatureExtractor


@cli_main("dump_feats", also=(RuntimeError,))  # RuntimeError: the job runner failed
def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("dump_feats", __doc__)
    parser.add_argument("--data_dir", required=True, help="input data dir (wav.scp, text, ...)")
    parser.add_argument("--out_dir", help="output data dir with feats.scp (required unless --job)")
    parser.add_argument("--feat_dir", help="where arks, splits, logs and markers go")
    mel = parser.add_mutually_exclusive_group()
    mel.add_argument("--encoder_dir", help="Whisper checkpoint dir: n_mels and settings from its configs")
    mel.add_argument("--n_mels", type=int, default=80, choices=(80, 128),
                     help="mel bins without --encoder_dir (Whisper large-v3: 128, earlier: 80)")
    parser.add_argument("--nj", type=int, default=1, help="number of splits (parallel jobs)")
    parser.add_argument("--cmd", default="", help="job runner, e.g. 'utils/run.pl' or 'utils/slurm.pl --mem 4G'")
    parser.add_argument("--job", type=int, help="run only split JOB (1-based); used by the job runner")
    parser.add_argument("--skip_bad", action="store_true",
                        help="skip utterances whose audio cannot be read (listed in <feat_dir>/bad.*) "
                             "instead of failing")
    args = parser.parse_args(argv)
    if args.job is not None and not args.feat_dir:
        parser.error("--job needs --feat_dir")
    if args.job is None and not args.out_dir:
        parser.error("--out_dir is required")
    import torch

    torch.set_num_threads(1)  # one core per job; parallelism comes from --nj
    if args.encoder_dir:
        extractor = FeatureExtractor.from_encoder_dir(args.encoder_dir)
    else:
        extractor = FeatureExtractor(args.n_mels)
    spec = {"encoder_dir": args.encoder_dir} if args.encoder_dir else {"n_mels": args.n_mels}
    if args.job is not None:
        run_job(args.data_dir, args.feat_dir, args.nj, args.job, extractor, skip_bad=args.skip_bad)
    else:
        dump_features(args.data_dir, args.out_dir, extractor, spec, nj=args.nj, cmd=args.cmd,
                      feat_dir=args.feat_dir or default_feat_dir(args.out_dir), skip_bad=args.skip_bad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
