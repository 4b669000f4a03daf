"""Combine data dirs into one (union of utterances). Duplicate utterance ids are an error naming both inputs;
dirs without `segments` get whole-recording segments when others have them.

    python -m zipasr.bin.combine_data data/train_all data/train_de data/train_fr data/train_ko
"""
from __future__ import annotations

import argparse
import logging
import sys

from zipasr.data.datadir import DataDir, DataDirError, combine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zipasr.bin.combine_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="data dir to write")
    parser.add_argument("inputs", nargs="+", help="data dirs to combine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [combine] %(message)s")
    log = logging.getLogger("combine")
    try:
        dirs = [DataDir.load(d) for d in args.inputs]
        for d in dirs:
            d.validate()
        out = combine(dirs, names=args.inputs)
        out.write(args.out)
    except DataDirError as err:
        log.error("%s", err)
        return 1
    langs = {}
    for utt, lang in out.utt2lang.items():
        langs[lang] = langs.get(lang, 0.0) + out.utt2dur[utt] / 3600
    log.info("wrote %s: %d utterances, %.2f h (%s)", args.out, len(out), out.total_hours(),
             ", ".join(f"{k} {v:.2f} h" for k, v in sorted(langs.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
