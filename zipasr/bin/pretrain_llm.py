"""Build the mini recipe's tokenizer and pretrain its tiny Qwen3 LLM on text (LM + copy task).

Writes a checkpoint dir that `zipasr.model.llm.load_llm` loads like Qwen3-1.7B (config.json,
model.safetensors, tokenizer files), plus the training curve and the held-out copy accuracy.

Example:
    python -m zipasr.bin.pretrain_llm --config conf/pretrain_llm.yaml \
        --text_dir data/local/lm_text --out_dir exp/pretrained/qwen3_tiny
"""
from __future__ import annotations

import argparse
import logging

from zipasr.config import load_config
from zipasr.languages import check_languages
from zipasr.mini.pretrain_llm import LLMPretrainConfig, pretrain_llm


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML of zipasr.mini.pretrain_llm.LLMPretrainConfig")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set steps=100 (repeatable)")
    parser.add_argument("--text_dir", required=True, help="dir with `text` and `utt2lang` of the LLM sentences")
    parser.add_argument("--out_dir", required=True, help="the LLM checkpoint dir to write")
    parser.add_argument("--languages", nargs="*", default=None,
                        help="languages whose prompts the tokenizer must cover (default: those of the text)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(LLMPretrainConfig, args.config, args.overrides)
    langs = check_languages(args.languages) if args.languages else None
    pretrain_llm(cfg, args.text_dir, args.out_dir, langs)


if __name__ == "__main__":
    main()
