"""Train Stage 1 or Stage 2 of the Speech-LLM from one YAML config (DeepSpeed ZeRO-2).

    python -m zipasr.bin.train --config conf/train_stage1.yaml --exp_dir exp/stage1
    python -m zipasr.bin.train --config conf/train_stage2_zipper_soft.yaml --exp_dir exp/zipper_soft \\
        --set optim.lr=1e-4 --set model.init_from=exp/stage1
    python -m zipasr.bin.train ... --resume          # continue after a crash, exactly where it stopped

Several processes, one machine:   torchrun --nproc_per_node=4 -m zipasr.bin.train --config ... --exp_dir ...
DeepSpeed's launcher:             deepspeed --num_gpus 4 zipasr/bin/train.py --config ... --exp_dir ...
Several machines:                 deepspeed --hostfile hostfile zipasr/bin/train.py ...   (hostfile lines:
                                  "host slots=N"; the exp dir must be on a filesystem all machines share)
Without launcher variables, a plain `python -m zipasr.bin.train` is a world of one process.
Without CUDA it runs on the CPU (DS_ACCELERATOR=cpu, gloo).

Writes EXP/config.yaml (the resolved config), EXP/train.log, EXP/tensorboard/, EXP/checkpoints/step_N/
and finally EXP/final/ (the average of the last `train.avg_last` checkpoints), which decode and export read.
"""
from __future__ import annotations

import argparse
import logging
import sys

from zipasr.bin._cli import LOG_FORMAT, cli_main, cli_parser


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("train", __doc__)
    p.add_argument("--config", required=True, help="experiment YAML (sections model, data, optim, train)")
    p.add_argument("--exp_dir", required=True, help="output directory of this experiment")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 (value parsed as YAML; repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in EXP/checkpoints (same config required)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    return p


@cli_main("train")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from zipasr.train.config import load_experiment_config
    from zipasr.train.trainer import train

    cfg = load_experiment_config(args.config, args.overrides)
    # The trainer installs its own console handler (tagged with the rank); cli_main's plain one would
    # print every line twice.
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and getattr(handler.formatter, "_fmt", None) == LOG_FORMAT:
            root.removeHandler(handler)
    train(cfg, args.exp_dir, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
