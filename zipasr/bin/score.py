"""Score a hypothesis text file against a reference, Whisper-normalised WER/CER.

    python -m zipasr.bin.score --ref data/test_en/text --hyp exp/.../decode_test_en_full/text \\
        --lang en --out exp/.../decode_test_en_full/score

Both files are Kaldi-style `utt-id text...`. Prints the Kaldi summary line(s) on stdout; with --out
also writes result.json, result.txt (per-utterance alignments) and missing_utts.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.datadir import read_kaldi_map
from zipasr.languages import LANGUAGES
from zipasr.scoring import MISSING_TXT, score_texts, write_report

logger = logging.getLogger("zipasr.score")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("score", __doc__)
    p.add_argument("--ref", required=True, help="reference text file (utt-id text...)")
    p.add_argument("--hyp", required=True, help="hypothesis text file (utt-id text...)")
    p.add_argument("--lang", default=None,
                   help="language of every utterance (ISO 639-1). Default: per utterance from the "
                        f"utt2lang file beside --ref. Known: {' '.join(sorted(LANGUAGES))}")
    p.add_argument("--out", default=None, help="directory for result.json, result.txt, missing_utts")
    p.add_argument("--preserve_marks", action="store_true",
                   help="keep Unicode combining marks (Thai, Devanagari vowel signs) that Whisper's "
                        "basic normaliser replaces by spaces")
    return p


@cli_main("score")
def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    utt2lang_path = Path(args.ref).parent / "utt2lang"
    if args.lang is None and not utt2lang_path.is_file():
        parser.error(f"no --lang given and no utt2lang beside the reference ({utt2lang_path})")
    refs = read_kaldi_map(args.ref)
    hyps = read_kaldi_map(args.hyp)
    # --lang wins over a utt2lang file.
    utt2lang = args.lang if args.lang is not None else read_kaldi_map(utt2lang_path)
    try:
        report = score_texts(refs, hyps, utt2lang, preserve_marks=args.preserve_marks)
    except ValueError as err:
        raise ValueError(f"{args.hyp} vs {args.ref}: {err}") from None

    if report.missing:
        where = f", listed in {Path(args.out) / MISSING_TXT}" if args.out else ""
        logger.warning("%d reference utterance(s) have no hypothesis (counted as deletions)%s: %s",
                       len(report.missing), where, " ".join(report.missing[:10]))
    if report.empty_refs:
        logger.warning("%d reference utterance(s) are empty after normalisation "
                       "(their hypothesis words count as insertions): %s",
                       len(report.empty_refs), " ".join(report.empty_refs[:10]))
    if args.out:
        write_report(report, args.out, args.ref, args.hyp)
        logger.info("wrote %s", args.out)
    print("\n".join(report.summary_lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
