#!/usr/bin/env python3
"""The CER that espeak-ng's homophones leave to a perfect recogniser of this corpus.

espeak-ng says some different spellings the same way (French "vers" / "vert", Vietnamese "xác" / "sác",
Greek "η" / "ι"). A recogniser that heard every phoneme right but knew only how often the training
transcripts write each word would still write, for every word of a homophone group, the group's most
frequent spelling in `--train_dir`. This script writes those oracle transcripts for `--data_dir` and
scores them like RESULTS.md does (`make_results.cer_per_lang`): the per-language floor under the
recipe's CER. Only the words of each language's lexicon (data/lang/lexicon/LANG.txt, from stage 1) are
looked up; a word without phonemes is kept as it is, so languages without a lexicon score 0.

Usage: local/homophone_floor.py [--data_dir data/dev_target] [--train_dir data/train_target]
                                [--lexicon_dir data/lang/lexicon]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_results import cer_per_lang  # noqa: E402

from zipasr.data.datadir import read_kaldi_map  # noqa: E402
from zipasr.languages import get_language  # noqa: E402


def phonemes(words: list[str], voice: str) -> list[str]:
    """espeak-ng's phoneme string (-x, stress marks included) of each word, one process per language."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (tools/setup.sh installs it)")
    out = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice], input="\n".join(words) + "\n",
                         capture_output=True, text=True, check=True).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if len(lines) != len(words):
        raise RuntimeError(f"espeak-ng ({voice}) gave {len(lines)} phoneme lines for {len(words)} words")
    return lines


def oracle_spellings(words: list[str], voice: str, counts: Counter) -> tuple[dict[str, str], int]:
    """word -> the most frequent spelling (in `counts`; ties: the first in `words`) among the words that
    espeak-ng says alike; and how many words share their phonemes with another word."""
    said = dict(zip(words, phonemes(words, voice)))
    best: dict[str, str] = {}
    for w in words:
        p = said[w]
        if p not in best or counts[w] > counts[best[p]]:
            best[p] = w
    size = Counter(said.values())
    return {w: best[said[w]] for w in words}, sum(size[said[w]] > 1 for w in words)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path("data/dev_target"), help="the set to score")
    parser.add_argument("--train_dir", type=Path, default=Path("data/train_target"),
                        help="the transcripts whose word counts pick the spelling of a homophone group")
    parser.add_argument("--lexicon_dir", type=Path, default=Path("data/lang/lexicon"), help="LANG.txt word lists")
    args = parser.parse_args(argv)
    for d in (args.data_dir, args.train_dir):
        if not (d / "text").is_file():
            parser.error(f"{d / 'text'} not found (run ./run.sh --stop_stage 1 first)")
    counts = Counter(w for t in read_kaldi_map(args.train_dir / "text").values() for w in t.split())
    refs, langs = read_kaldi_map(args.data_dir / "text"), read_kaldi_map(args.data_dir / "utt2lang")
    spelling, shared = {}, {}
    for lang in sorted(set(langs.values())):
        lexicon = args.lexicon_dir / f"{lang}.txt"
        if lexicon.is_file():
            words = [w for w in lexicon.read_text(encoding="utf-8").split() if w]
            spelling[lang], shared[lang] = oracle_spellings(words, get_language(lang).espeak_voice, counts)
    with tempfile.TemporaryDirectory() as tmp:
        hyp = Path(tmp) / "text"
        hyp.write_text("".join(f"{utt} {' '.join(spelling.get(langs[utt], {}).get(w, w) for w in ref.split())}\n"
                               for utt, ref in refs.items()), encoding="utf-8")
        cer = cer_per_lang(args.data_dir, hyp)
    print("| lang | lexicon words said like another | CER floor (%) |")
    print("|---|---|---|")
    for lang, value in sorted(cer.items()):
        n = f"{shared[lang]} / {len(spelling[lang])}" if lang in spelling else "no lexicon"
        print(f"| {lang} | {n} | {value:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
