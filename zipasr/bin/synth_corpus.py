"""Synthesise the mini recipe's multilingual corpus with espeak-ng (audio files + Kaldi data dirs).

Example:
    python -m zipasr.bin.synth_corpus --config conf/corpus.yaml --audio_dir corpus --data_dir data --nj 2
"""
from __future__ import annotations

import argparse
import logging
import time

from zipasr.config import load_config, save_config
from zipasr.mini.synth import CorpusConfig, synthesize_corpus


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="corpus YAML (zipasr.mini.synth.CorpusConfig)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set seed=3 (repeatable)")
    parser.add_argument("--audio_dir", required=True, help="where the wav files go (<audio_dir>/<set>/*.wav)")
    parser.add_argument("--data_dir", required=True, help="where the Kaldi data dirs go")
    parser.add_argument("--nj", type=int, default=2, help="synthesis processes")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(CorpusConfig, args.config, args.overrides)
    start = time.time()
    counts = synthesize_corpus(cfg, args.audio_dir, args.data_dir, nj=args.nj)
    save_config(cfg, f"{args.data_dir}/local/corpus_config.yaml")
    logging.info("%d utterances in %d data dirs, %.1f s", sum(counts.values()), len(counts), time.time() - start)


if __name__ == "__main__":
    main()
