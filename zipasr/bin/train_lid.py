"""Train zipasr's LID classifier (mean-pooled encoder output -> linear) on a trained model's encoder.

    python -m zipasr.bin.train_lid --exp_dir exp/stage1 --data_dir data/train [--out_dir exp/stage1/lid]

The classifier reads the Stage-1 encoder (encoder adapters of a Stage-2 experiment are bypassed, since
the language is what is being predicted), so one classifier serves every Stage-2 method built on that
Stage-1 model. It is a logistic regression on the utterance-level mean of the encoder output, in the
model's encoder regime (chunked: its decoding segment length). Writes OUT/lid_classifier.safetensors +
OUT/lid_classifier.json; a decode given it (`--lid_model OUT`) predicts the language of each utterance
when utt2lang is absent and reports the LID accuracy when it is present.
"""
from __future__ import annotations

import argparse
import logging
import sys

from zipasr.bin._cli import cli_main, cli_parser

logger = logging.getLogger("zipasr.train_lid")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("train_lid", __doc__)
    p.add_argument("--exp_dir", required=True, help="a trained experiment (Stage 1, or Stage 2 of any method)")
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with utt2lang (feats.scp or wav.scp)")
    p.add_argument("--out_dir", default=None, help="where to write the classifier (default: EXP/lid)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint of EXP/checkpoints instead of EXP/final")
    p.add_argument("--max_per_language", type=int, default=None, help="use at most this many utterances per language")
    p.add_argument("--c", type=float, default=1.0, help="inverse L2 regularisation strength of the logistic regression")
    p.add_argument("--batch_size", type=int, default=8, help="utterances per encoder batch")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def run(args: argparse.Namespace):
    from pathlib import Path

    import torch

    from zipasr.data.features import FeatureExtractor
    from zipasr.data.subset import first_per_language
    from zipasr.sibling.lid_classifier import train_lid_classifier
    from zipasr.train.dataset import SpeechDataset
    from zipasr.train.inference import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = load_model(args.exp_dir, args.checkpoint)
    data = SpeechDataset(args.data_dir, model.languages, None,
                         extractor=FeatureExtractor.from_encoder_dir(info["encoder_dir"]), cache=False)
    chosen = first_per_language([utt.lang for utt in data.utterances], args.max_per_language)
    items = ((torch.from_numpy(data.features(i)), data.utterances[i].lang) for i in chosen)
    clf, accuracy = train_lid_classifier(model.encoder, items, model.languages,
                                         segment_frames=model.segment_frames(None), c=args.c,
                                         batch_size=args.batch_size, total=len(chosen))
    out_dir = Path(args.out_dir or Path(args.exp_dir) / "lid")
    clf.save(out_dir)
    logger.info("LID classifier (%d languages, %d utterances, training accuracy %.2f%%) written to %s",
                len(model.languages), len(chosen), 100 * accuracy, out_dir)
    return out_dir, accuracy


@cli_main("train_lid")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
