"""Figures of the paper from scored decodes and encoder outputs, as PNG.

    python -m zipasr.bin.plot --results exp/mini --out exp/mini/figures --baseline vanilla \\
        --tsne exp/mini/stage2_vanilla/encoder_outputs.npz exp/mini/stage2_zipper_soft/encoder_outputs.npz

Per encoder regime found under --results (same layout as zipasr.bin.show_results), for the
Stage-2 methods (the Stage-1 row is in the tables only):
  radar_<regime>.png     (100 - WER/CER) per test-set language, one polygon per method (Fig. 5);
                         methods lacking a column are left out of the radar;
  relative_<regime>.png  relative change against --baseline per column of the radar (Fig. 6); a
                         missing result leaves a gap.
Per --tsne file: tsne_<tag>.png, t-SNE of utterance-level encoder outputs coloured by language
(Fig. 8); <tag> is the file name without .npz, with as many parent directories as it takes to
tell the files apart. The .npz holds `embeddings` (N, d) float and `langs` (N,) str, as
`zipasr.bin.decode --dump_embeddings` writes (other keys are ignored).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.plots import load_embeddings_npz, plot_radar, plot_relative_change, plot_tsne
from zipasr.results import REGIMES, build_tables, collect_results, relative_change

AGNOSTIC_SUFFIX = "_agnostic"  # decode_<testset>_agnostic_<regime>: language-agnostic decodes
logger = logging.getLogger("zipasr.plot")

DEFAULT_BASELINE = "vanilla"


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("plot", __doc__)
    p.add_argument("--results", nargs="+", default=[], metavar="DIR",
                   help="experiment directories with scored decodes")
    p.add_argument("--out", required=True, help="output directory for the PNG files")
    p.add_argument("--baseline", default=None,
                   help=f"method key of the relative-change baseline (default: {DEFAULT_BASELINE}, "
                        "skipped with a warning when absent)")
    p.add_argument("--tsne", nargs="+", default=[], metavar="FEATS.npz",
                   help="utterance-level encoder outputs: npz with embeddings (N, d) and langs (N,)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE random seed")
    return p


def plot_results(exp_dirs: list[str], out_dir: Path, baseline: str | None) -> list[Path]:
    """Radar and relative-change figures of every regime; returns the files written."""
    tables = build_tables(collect_results(exp_dirs))
    if not tables:
        raise ValueError(f"no scored decodes under {', '.join(exp_dirs)}")
    written = []
    base = baseline or DEFAULT_BASELINE
    if not any(r.method == base for t in tables for r in t.rows):
        if baseline is not None:
            methods = sorted({r.method for t in tables for r in t.rows})
            raise ValueError(f"baseline method {baseline!r} not found; methods: {', '.join(methods)}")
        logger.warning("no %s results: no relative-change figures", base)
    for table in tables:
        regime = REGIMES[table.regime]
        # The figures compare Stage-2 methods (as the paper's do) on the language-aware test sets that
        # Stage 2 was decoded on; Stage-1-only and language-agnostic columns stay in the tables.
        stage2 = [r for r in table.rows if r.method != "stage1"]
        columns = [c for c in table.columns if not c.testset.endswith(AGNOSTIC_SUFFIX)
                   and any((r, c) in table.values for r in stage2)]
        complete = [r for r in stage2 if all(table.values.get((r, c)) is not None for c in columns)]
        for row in table.rows:
            if row not in complete:
                logger.info("radar %s: leaving out %s (not every column scored)", regime, row.label)
        if len(columns) < 3:
            logger.warning("radar %s: only %d column(s), a radar needs 3: skipped", regime, len(columns))
        elif complete:
            scores = {r.display(standalone=True): {c.label: table.values[(r, c)] for c in columns}
                      for r in complete}
            written.append(plot_radar(scores, out_dir / f"radar_{table.regime}.png",
                                      f"(1 - WER/CER) %, {regime}"))
        rel = relative_change(table, base)
        rel_rows = [] if rel is None else [r for r in rel.rows if r.method != "stage1"]
        # the radar's columns (language-aware decodes, as the paper's figure) where some method has a
        # change: the language-agnostic decode of Zipper-Soft alone has no baseline and drew an empty panel
        rel_cols = [c for c in columns if any((r, c) in rel.values for r in rel_rows)]
        if rel_rows and not rel_cols:
            logger.warning("relative %s: no column has both %s and another method: skipped", regime, base)
        elif rel_rows:
            changes = {r.display(standalone=True):
                       {c.label: rel.values.get((r, c), math.nan) for c in rel_cols}
                       for r in rel_rows}
            written.append(plot_relative_change(changes, out_dir / f"relative_{table.regime}.png",
                                                rel.title))
    return written


def unique_tags(paths: list[str]) -> list[str]:
    """Shortest path tails (without suffix, joined by "_") that tell the files apart:
    [a/stage2_vanilla/d/embeddings.npz, a/stage2_zipper_soft/d/embeddings.npz] ->
    [stage2_vanilla_d_embeddings, stage2_zipper_soft_d_embeddings]."""
    if not paths:
        return []
    parts = [Path(p).with_suffix("").parts for p in paths]
    for k in range(1, max(len(x) for x in parts) + 1):
        tags = ["_".join(x[-k:]) for x in parts]
        if len(set(tags)) == len(tags):
            return tags
    raise ValueError(f"the same --tsne file is given twice: {paths}")


@cli_main("plot")
def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not args.results and not args.tsne:
        parser.error("nothing to plot: give --results and/or --tsne")
    out_dir = Path(args.out)
    if args.results:
        plot_results(args.results, out_dir, args.baseline)
    for npz, tag in zip(args.tsne, unique_tags(args.tsne)):
        emb, langs = load_embeddings_npz(npz)
        plot_tsne(emb, langs, out_dir / f"tsne_{tag}.png",
                  f"t-SNE of encoder outputs: {'/'.join(Path(npz).parts[-3:])}", seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
