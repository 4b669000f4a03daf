"""Gather every scored decode under experiment directories into result tables (paper Tables III-VI).

    python -m zipasr.bin.show_results exp/mini [exp/other ...] --baseline vanilla --format md

Reads <expdir>/stage1/decode_<testset>_<regime>/score/result.json and
<expdir>/stage2_<method>/decode_<testset>_<regime>/score/result.json (regime: chunked or full), as
written by `zipasr.bin.score --out`. Prints one block per encoder regime: methods x (test set,
language) WER/CER in percent with the average, then the relative change against --baseline
(positive = fewer errors, paper Fig. 6). See zipasr/results.py for the exact rules.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.results import format_csv, format_markdown, result_tables

logger = logging.getLogger("zipasr.show_results")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("show_results", __doc__)
    p.add_argument("exp_dirs", nargs="+", metavar="DIR", help="experiment directories")
    p.add_argument("--baseline", default=None,
                   help="method key for the relative-change tables, e.g. vanilla (default: none)")
    p.add_argument("--format", choices=["md", "csv"], default="md",
                   help="md: markdown tables; csv: one line per cell (default: md)")
    p.add_argument("--out", default=None, help="also write the output to this file")
    return p


@cli_main("show_results")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    tables = result_tables(args.exp_dirs, args.baseline)
    text = format_markdown(tables) if args.format == "md" else format_csv(tables)
    sys.stdout.write(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
