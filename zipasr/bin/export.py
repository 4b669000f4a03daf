"""Export one language of a trained model as plain transformers checkpoints (no adapter code at run time).

    python -m zipasr.bin.export --exp_dir exp/zipper_soft --lang de --out exp/zipper_soft/export_de

The encoder adapter of language --lang and the LLM LoRA are folded into the weights (W0 + ΔW(lang)):
OUT/encoder is a WhisperModel dir, OUT/llm a causal-LM dir with its tokenizer, OUT/projector.safetensors
the projector, OUT/export.json the rest (languages, regime, segment lengths, source experiment).
`python -m zipasr.bin.decode --exp_dir OUT ...` decodes with it and gives the hypotheses of the adapter
model for that language. FlyLoRA cannot be folded (its update depends on each token): an error says so.
"""
from __future__ import annotations

import argparse
import sys

from zipasr.bin._cli import cli_main, cli_parser


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("export", __doc__)
    p.add_argument("--exp_dir", required=True, help="experiment dir (config.yaml + final/)")
    p.add_argument("--lang", required=True, help="ISO 639-1 code of the language to export")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--checkpoint", default=None, help="a checkpoint of EXP/checkpoints instead of EXP/final")
    return p


@cli_main("export")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from zipasr.train.inference import export_model

    export_model(args.exp_dir, args.lang, args.out, args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
