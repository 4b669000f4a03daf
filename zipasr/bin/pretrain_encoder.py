"""Pretrain the mini recipe's tiny Whisper-architecture encoder with a character CTC loss.

Writes a WhisperModel checkpoint dir (config.json, model.safetensors, preprocessor_config.json) that
Stage 1 loads like any Whisper checkpoint, plus the CTC head, the training curve and the dev CER.

Example:
    python -m zipasr.bin.pretrain_encoder --config conf/pretrain_encoder.yaml \
        --train_data dump/train_source --dev_data dump/dev_source --out_dir exp/pretrained/whisper_tiny
"""
from __future__ import annotations

import argparse
import logging

from zipasr.config import load_config
from zipasr.mini.pretrain_encoder import EncoderPretrainConfig, pretrain_encoder


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML of zipasr.mini.pretrain_encoder.EncoderPretrainConfig")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set steps=100 (repeatable)")
    parser.add_argument("--train_data", nargs="+", required=True, help="data dirs with feats.scp to train on")
    parser.add_argument("--dev_data", nargs="+", required=True, help="data dirs with feats.scp for the dev CER")
    parser.add_argument("--out_dir", required=True, help="the Whisper checkpoint dir to write")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(EncoderPretrainConfig, args.config, args.overrides)
    pretrain_encoder(cfg, args.train_data, args.dev_data, args.out_dir)


if __name__ == "__main__":
    main()
