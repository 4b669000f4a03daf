"""LoRS-Merging as a Stage-2 method "lors": merge the per-language encoder adapters of a trained
experiment (e.g. Independent-LoRA) into one language-independent Vanilla-LoRA.

    python -m zipasr.bin.lors_merge --src_exp exp/independent --exp_dir exp/lors [--config conf/lors.yaml] \\
        [--set rank_ratio=0.5 sparsity=0.9 scale=0.5]

Each language's task vector ΔW_l (its delta weight) is pruned to a truncated-SVD part (rank_ratio of
its rank) plus a magnitude-pruned residual (sparsity), and W = W0 + λ Σ_l prune(ΔW_l). The projector
and LLM-side LoRA of the source experiment are kept. The result is an ordinary experiment dir
(config.yaml + final/, encoder adapter "vanilla"): decode, export and show_results read it as they
read any other, and it needs no language for the encoder. The config keys are those of
zipasr.sibling.lors.LorsConfig (see docs/sibling_methods.md); --src_exp overrides `source_exp`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from zipasr.bin._cli import cli_main, cli_parser

logger = logging.getLogger("zipasr.lors_merge")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("lors_merge", __doc__)
    p.add_argument("--exp_dir", required=True, help="output experiment dir (config.yaml + final/)")
    p.add_argument("--src_exp", default=None, help="experiment with per-language encoder adapters (independent)")
    p.add_argument("--config", default=None, help="YAML with LorsConfig keys (rank_ratio, sparsity, scale, ...)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set rank_ratio=0.5 sparsity=0.8")
    p.add_argument("--checkpoint", default=None, help="a checkpoint of SRC/checkpoints instead of SRC/final")
    return p


def run(args: argparse.Namespace) -> dict:
    from dataclasses import asdict

    from zipasr.config import ConfigError, load_config
    from zipasr.sibling.common import write_experiment
    from zipasr.sibling.lors import LorsConfig, lors_merge_encoder
    from zipasr.train.inference import load_model

    cfg = load_config(LorsConfig, args.config, args.overrides)
    if args.src_exp:
        cfg.source_exp = args.src_exp
    if not cfg.source_exp:
        raise ConfigError("no source experiment: give --src_exp or source_exp in the config")
    model, info = load_model(cfg.source_exp, args.checkpoint)
    if info["kind"] != "experiment":
        raise ValueError(f"{cfg.source_exp} is an export dir; LoRS merges the adapters of an experiment dir")
    method = info["config"].model.encoder_adapter.method
    if not method:
        raise ValueError(f"{cfg.source_exp} has no encoder adapter (a Stage-1 experiment): nothing to merge")
    result = lors_merge_encoder(model, cfg)
    write_experiment(
        model, info["config"], args.exp_dir,
        encoder_adapter={"method": "vanilla", "rank": result["rank"], "alpha": result["alpha"], "method_kwargs": {},
                         "init_b_from": None, "init_b_router": False},
        info={"method": "lors", "source_exp": str(cfg.source_exp), "source_method": method, "config": asdict(cfg),
              "rank": result["rank"], "layers": result["layers"]},
    )
    logger.info("LoRS merge of %s (%s) written to %s", cfg.source_exp, method, args.exp_dir)
    return result


@cli_main("lors_merge")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
