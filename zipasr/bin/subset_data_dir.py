"""Take a subset of a data dir: by utterance-id list(s) (e.g. the paper authors' released lists), by hours or
by number of utterances with a fixed seed (same seed, same subset), optionally restricted to languages first.

    python -m zipasr.bin.subset_data_dir data/train_ko data/train_ko_1h --hours 1 --seed 0
    python -m zipasr.bin.subset_data_dir data/train_de data/train_de_list --ids lists/train_mls_de_ids.txt
    python -m zipasr.bin.subset_data_dir data/train data/train_2k --num_utts 2000

Id lists are matched after stripping leading zeros of numeric id fields (MLS speakers are zero-padded by some
toolkits, not in the released lists); --exact turns that off. An id listed twice yields a copy `<id>-rep2`
(the authors upsample Italian 2x this way) unless --no_repeats.
"""
from __future__ import annotations

import logging
import sys

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.datadir import DataDir, DataDirError
from zipasr.data.subset import read_id_lists, subset_by_count, subset_by_hours, subset_by_ids, subset_by_lang

log = logging.getLogger("zipasr.subset_data_dir")


@cli_main("subset_data_dir")
def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("subset_data_dir", __doc__)
    parser.add_argument("data_dir", help="input data dir")
    parser.add_argument("out", help="data dir to write")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--ids", nargs="+", help="utterance-id list file(s), one id per line")
    how.add_argument("--hours", type=float, help="random subset of this many hours")
    how.add_argument("--num_utts", type=int, help="random subset of this many utterances")
    how.add_argument("--all", action="store_true", help="no selection beyond --lang")
    parser.add_argument("--lang", nargs="+", default=None, help="keep only these languages first")
    parser.add_argument("--seed", type=int, default=0, help="random seed of --hours / --num_utts")
    parser.add_argument("--exact", action="store_true", help="match listed ids exactly (no zero stripping)")
    parser.add_argument("--require_all", action="store_true", help="fail if a listed id is not in the dir")
    parser.add_argument("--no_repeats", action="store_true", help="keep an id listed several times only once")
    args = parser.parse_args(argv)
    dd = DataDir.load(args.data_dir)
    dd.validate()
    if args.lang:
        dd = subset_by_lang(dd, args.lang)
        dd.path = args.data_dir
    if args.ids:
        out, _ = subset_by_ids(dd, read_id_lists(args.ids), normalize=not args.exact,
                               require_all=args.require_all, repeats=not args.no_repeats)
    elif args.hours is not None:
        out = subset_by_hours(dd, args.hours, seed=args.seed)
    elif args.num_utts is not None:
        out = subset_by_count(dd, args.num_utts, seed=args.seed)
    else:
        out = dd
    if not out.text:
        raise DataDirError(args.data_dir, ["the subset is empty"])
    out.write(args.out)
    log.info("wrote %s: %d of %d utterances, %.3f h", args.out, len(out), len(dd), out.total_hours())
    return 0


if __name__ == "__main__":
    sys.exit(main())
