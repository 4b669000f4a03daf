"""Check a data dir: files sorted, no duplicate ids, the same utterances in every file, non-empty transcripts,
a known language for every utterance, positive durations, valid segments; --check_audio also reads every
utterance's audio. Exit status 0 if it is clean, 1 with every problem listed (file: utterance: what) if not.

    python -m zipasr.bin.validate_data_dir data/train [--check_audio]
"""
from __future__ import annotations

import logging
import sys

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.datadir import DataDir

log = logging.getLogger("zipasr.validate_data_dir")


@cli_main("validate_data_dir")
def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("validate_data_dir", __doc__)
    parser.add_argument("data_dir", help="data dir to check")
    parser.add_argument("--check_audio", "--check-audio", action="store_true", help="read every utterance's audio")
    args = parser.parse_args(argv)
    dd = DataDir.load(args.data_dir, strict=False)
    dd.validate(check_audio=args.check_audio, progress=True)  # DataDirError (exit 1) lists every problem
    log.info("%s is valid: %d utterances, %d speakers, %.2f h, languages %s%s", args.data_dir, len(dd),
             len(dd.spk2utt), dd.total_hours(), " ".join(sorted(set(dd.utt2lang.values()))),
             ", audio checked" if args.check_audio else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
