"""Write a lexicon dir (one `<lang>.txt` word list per language) from the transcripts of Kaldi data dirs.

    python -m zipasr.bin.make_lexicon --out_dir data/lang/lexicon data/local/lm_text data/train_target
    python -m zipasr.bin.decode ... --lexicon data/lang/lexicon     # every written word is a lexicon word

Each input dir needs `text` and `utt2lang`; the words of every utterance (split at white space) join its
language's list. Languages written without spaces between words (ja, zh, th: zipasr.languages.NO_SPACE)
get no list unless named in --segmented (their "words" would be whole sentences), so they are decoded
unconstrained. --min_count drops words seen fewer times. Never build a lexicon from a test set.
"""
from __future__ import annotations

import logging
import sys
from collections import Counter, defaultdict

from zipasr.bin._cli import cli_main, cli_parser

log = logging.getLogger("zipasr.make_lexicon")


def get_parser():
    p = cli_parser("make_lexicon", __doc__)
    p.add_argument("inputs", nargs="+", help="Kaldi data dirs with text and utt2lang")
    p.add_argument("--out_dir", required=True, help="lexicon dir to write (<lang>.txt per language)")
    p.add_argument("--languages", default=None,
                   help="comma-separated languages to write (default: every language of the inputs)")
    p.add_argument("--segmented", default="",
                   help="comma-separated no-space languages whose transcripts are word-segmented anyway")
    p.add_argument("--min_count", type=int, default=1, help="keep words seen at least this many times")
    return p


@cli_main("make_lexicon")
def main(argv: list[str] | None = None) -> int:
    from zipasr.data.datadir import DataDirError, read_kaldi_map
    from zipasr.languages import NO_SPACE, get_language
    from zipasr.model.lexicon import write_lexicon

    args = get_parser().parse_args(argv)
    wanted = set(args.languages.split(",")) if args.languages else None
    segmented = {x for x in args.segmented.split(",") if x}
    for lang in (wanted or set()) | segmented:
        get_language(lang)  # an unknown code is an error naming it
    counts: dict[str, Counter] = defaultdict(Counter)
    for d in args.inputs:
        text, utt2lang = read_kaldi_map(f"{d}/text"), read_kaldi_map(f"{d}/utt2lang")
        missing = sorted(set(text) - set(utt2lang))
        if missing:
            raise DataDirError(d, [f"text: {utt}: no utt2lang entry" for utt in missing])
        for utt, line in text.items():
            counts[utt2lang[utt]].update(line.split())
    lexicon = {}
    for lang, counter in sorted(counts.items()):
        if wanted is not None and lang not in wanted:
            continue
        if lang in NO_SPACE and lang not in segmented:
            log.info("%s: written without spaces, no lexicon (decoded unconstrained)", lang)
            continue
        words = {w for w, n in counter.items() if n >= args.min_count}
        if words:
            lexicon[lang] = words
    if wanted is not None and wanted - set(lexicon):
        raise ValueError(f"no words for language(s) {sorted(wanted - set(lexicon))} in {args.inputs}")
    if not lexicon:
        raise ValueError(f"no lexicon could be made from {args.inputs}")
    write_lexicon(lexicon, args.out_dir)
    log.info("wrote %s: %s", args.out_dir, ", ".join(f"{k} {len(v)} words" for k, v in sorted(lexicon.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
