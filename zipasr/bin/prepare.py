"""Prepare a Kaldi-style data dir from a corpus in its released layout.

    python -m zipasr.bin.prepare librispeech --root /data/LibriSpeech --split test-clean --out data/test_clean
    python -m zipasr.bin.prepare mls --root /data/mls_german --split dev --out data/dev_de
    python -m zipasr.bin.prepare commonvoice --root /data/cv-corpus-18.0/ko --split test --out data/test_ko
    python -m zipasr.bin.prepare wenetspeech --root /data/WenetSpeech --split TEST_NET --out data/test_net
    python -m zipasr.bin.prepare msr86k --root /data/MSR-86K --split dev --lang ru --out data/dev_ru

Each corpus module's docstring (zipasr/data/corpora/) states the layout it reads.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.corpora import CORPORA
from zipasr.data.datadir import write_kaldi_map

log = logging.getLogger("zipasr.prepare")


@cli_main("prepare")
def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("prepare", __doc__)
    parser.add_argument("corpus", choices=sorted(CORPORA), help="corpus layout to read")
    parser.add_argument("--root", required=True, help="corpus folder (see the corpus module for which one)")
    parser.add_argument("--split", required=True, help="corpus split / subset name")
    parser.add_argument("--out", required=True, help="data dir to write (replaced atomically)")
    parser.add_argument("--lang", default=None, help="ISO 639-1 code (needed where the layout does not say it)")
    parser.add_argument("--skip_bad", action="store_true",
                        help="skip bad entries (missing audio, empty transcript, duplicate id) and list them in "
                             "<out>/prepare_skipped instead of failing")
    args = parser.parse_args(argv)
    skipped: dict[str, str] = {}
    dd = CORPORA[args.corpus](args.root, args.split, lang=args.lang, skip_bad=args.skip_bad, report=skipped)
    dd.write(args.out)
    Path(args.out, "prepare_skipped").unlink(missing_ok=True)
    if skipped:
        write_kaldi_map(f"{args.out}/prepare_skipped", skipped)
        log.warning("skipped %d bad utterance(s), listed in %s/prepare_skipped", len(skipped), args.out)
    log.info("wrote %s: %d utterances, %d speakers, %.2f h, languages %s", args.out, len(dd), len(dd.spk2utt),
             dd.total_hours(), " ".join(sorted(set(dd.utt2lang.values()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
