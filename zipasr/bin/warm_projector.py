"""Warm-start the projector of a mini-recipe Speech-LLM before Stage 1 (zipasr.mini.warm_projector).

The encoder (with the CTC head of zipasr.bin.pretrain_encoder) and the LLM (pretrained with frame
copies, zipasr.bin.pretrain_llm) are read from the Stage-1 experiment config's model section; the
projector alone learns to write the LLM embedding of the frame sequence the CTC head predicts.
Stage 1 then starts from it with `--set model.init_from=OUT_DIR`.

Example:
    python -m zipasr.bin.warm_projector --stage1_config conf/train_stage1.yaml \
        --train_data dump/train_source --out_dir exp/pretrained/projector_warm --set steps=300
"""
from __future__ import annotations

import argparse
import logging

from zipasr.config import load_config
from zipasr.mini.warm_projector import WarmProjectorConfig, warm_projector
from zipasr.train.config import load_experiment_config


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML of zipasr.mini.warm_projector.WarmProjectorConfig")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a warm-start config key, e.g. --set steps=100 (repeatable)")
    parser.add_argument("--stage1_config", required=True,
                        help="the Stage-1 experiment YAML: its model section gives encoder, LLM and projector")
    parser.add_argument("--stage1_set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Stage-1 config key, e.g. --stage1_set model.projector_stride=2")
    parser.add_argument("--train_data", nargs="+", required=True, help="data dirs with feats.scp")
    parser.add_argument("--out_dir", required=True, help="the projector-only SpeechLLM checkpoint dir to write")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(WarmProjectorConfig, args.config, args.overrides)
    stage1 = load_experiment_config(args.stage1_config, args.stage1_set)
    warm_projector(cfg, stage1.model, args.train_data, args.out_dir)


if __name__ == "__main__":
    main()
