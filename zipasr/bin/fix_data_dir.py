"""Repair a data dir in place: keep only utterances that are consistent everywhere (present in every file,
non-empty transcript, known language, positive duration, valid segment, no duplicate id or non-UTF-8 line;
with --check_audio, readable audio), sort every file and rebuild spk2utt. Every dropped utterance is listed
with its reasons in <dir>/fix_report (also logged). The dir is replaced atomically.

    python -m zipasr.bin.fix_data_dir data/train [--check_audio] [--compute_durations]
"""
from __future__ import annotations

import logging
import sys
from collections import Counter

from tqdm import tqdm

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.data.audio import AudioError, audio_duration
from zipasr.data.datadir import DataDir, fix, write_kaldi_map

log = logging.getLogger("zipasr.fix_data_dir")


@cli_main("fix_data_dir")
def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("fix_data_dir", __doc__)
    parser.add_argument("data_dir", help="data dir to repair")
    parser.add_argument("--out", default=None, help="write the fixed dir here instead of in place")
    parser.add_argument("--check_audio", "--check-audio", action="store_true",
                        help="also drop utterances whose audio cannot be read")
    parser.add_argument("--compute_durations", action="store_true",
                        help="fill in missing utt2dur entries from the audio (segments: end - start)")
    args = parser.parse_args(argv)
    dd = DataDir.load(args.data_dir, strict=False)
    if args.compute_durations:
        for utt in tqdm(sorted(set(dd.text) - set(dd.utt2dur)), desc="durations", unit="utt"):
            try:
                if dd.segments is not None and utt in dd.segments:
                    dd.utt2dur[utt] = round(dd.segments[utt].end - dd.segments[utt].start, 3)
                elif utt in dd.wav_scp:
                    dd.utt2dur[utt] = round(audio_duration(dd.wav_scp[utt]), 3)
            except AudioError as err:
                log.warning("%s: %s", utt, err)
    fixed, dropped = fix(dd, check_audio=args.check_audio, progress=True)
    out = args.out or args.data_dir
    if not fixed.text:
        first = [r for reasons in list(dropped.values())[:5] for r in reasons]
        raise ValueError(f"no consistent utterance left in {args.data_dir}; nothing written. "
                         f"First problems: {'; '.join(first)}")
    fixed.write(out)
    write_kaldi_map(f"{out}/fix_report", {u: "; ".join(r) for u, r in dropped.items()})
    # Count reasons without the utterance id: "text: u1: empty transcript" -> "text: empty transcript".
    reasons = Counter(": ".join(r.split(": ", 2)[::2]) for rs in dropped.values() for r in rs)
    log.info("kept %d of %d utterances, dropped %d (listed in %s/fix_report)", len(fixed),
             len(set(dd.text) | set(dropped)), len(dropped), out)
    for reason, n in reasons.most_common(10):
        log.info("  %6d  %s", n, reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
