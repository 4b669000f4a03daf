"""Combine data dirs into one (union of utterances). Duplicate utterance ids are an error naming both inputs;
dirs without `segments` get whole-recording segments when others have them.

    python -m zipasr.bin.combine_data data/train_all data/train_de data/train_fr data/train_ko
"""
from __future__ import annotations

import logging
import sys

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.datadir import DataDir, combine

log = logging.getLogger("zipasr.combine_data")


@cli_main("combine_data")
def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("combine_data", __doc__)
    parser.add_argument("out", help="data dir to write")
    parser.add_argument("inputs", nargs="+", help="data dirs to combine")
    args = parser.parse_args(argv)
    dirs = [DataDir.load(d) for d in args.inputs]
    for d in dirs:
        d.validate()
    out = combine(dirs, names=args.inputs)
    out.write(args.out)
    langs = {}
    for utt, lang in out.utt2lang.items():
        langs[lang] = langs.get(lang, 0.0) + out.utt2dur[utt] / 3600
    log.info("wrote %s: %d utterances, %.2f h (%s)", args.out, len(out), out.total_hours(),
             ", ".join(f"{k} {v:.2f} h" for k, v in sorted(langs.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
