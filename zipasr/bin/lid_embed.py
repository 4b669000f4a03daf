"""Language-ID embeddings e(l) for the Zipper router, saved as safetensors + a cosine heatmap (paper Fig. 7).

    # decoder token embeddings of the language tokens of a Whisper checkpoint (ids from lang_to_id)
    python -m zipasr.bin.lid_embed --source whisper --whisper_dir whisper-large-v3 \\
        --languages en de fr --out exp/lid/whisper.safetensors

    # mean-pooled encoder outputs per language over a data dir (utt2lang; feats.scp or audio)
    python -m zipasr.bin.lid_embed --source acoustic --encoder_dir exp/mini/encoder \\
        --data_dir data/train --languages en de fr --out exp/lid/acoustic.safetensors

    # rows of an existing file, selected and ordered for --languages
    python -m zipasr.bin.lid_embed --source file --file exp/lid/acoustic.safetensors --languages de en --out x.safetensors
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from zipasr.bin._cli import cli_main, cli_parser
from zipasr.languages import check_languages
from zipasr.model.lid import (
    LID_SOURCES,
    acoustic_lid_embeddings,
    cosine_similarity_matrix,
    datadir_items,
    load_lid_embeddings,
    save_lid_embeddings,
    whisper_lid_embeddings,
)

logger = logging.getLogger("zipasr.bin.lid_embed")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("lid_embed", __doc__)
    p.add_argument("--source", required=True, choices=LID_SOURCES, help="where e(l) comes from")
    p.add_argument("--languages", required=True, nargs="+", help="ISO 639-1 codes, in the model's order")
    p.add_argument("--out", required=True, type=Path, help="output .safetensors (tensor lid_embeddings (L, d))")
    p.add_argument("--heatmap", type=Path, default=None, help="cosine-similarity PNG (default: --out with .png)")
    p.add_argument("--whisper_dir", type=Path, help="[whisper] Whisper checkpoint with generation_config.json")
    p.add_argument("--encoder_dir", type=Path, help="[acoustic] Whisper-architecture checkpoint of the encoder")
    p.add_argument("--encoder_weights", type=Path, default=None,
                   help="[acoustic] encoder.safetensors of a Stage-1 SpeechLLM checkpoint, loaded over --encoder_dir")
    p.add_argument("--data_dir", type=Path, help="[acoustic] data dir with utt2lang (and feats.scp or wav.scp)")
    p.add_argument("--max_per_language", type=int, default=200, help="[acoustic] utterances per language")
    p.add_argument("--segment_seconds", type=float, default=None,
                   help="[acoustic] encode in segments of this length (default: full context, <= 30 s)")
    p.add_argument("--batch_size", type=int, default=8, help="[acoustic] utterances per encoder batch")
    p.add_argument("--device", default="cpu", help="[acoustic] torch device")
    p.add_argument("--file", type=Path, help="[file] an existing LID embedding safetensors file")
    return p


# The arguments each source needs (argparse cannot express "required when --source is X").
NEEDS = {"whisper": ("whisper_dir",), "file": ("file",), "acoustic": ("encoder_dir", "data_dir")}


def compute(args) -> torch.Tensor:
    languages = check_languages(args.languages)
    if args.source == "whisper":
        return whisper_lid_embeddings(args.whisper_dir, languages)
    if args.source == "file":
        return load_lid_embeddings(args.file, languages)[0]
    from zipasr.data.features import FeatureExtractor, load_features
    from zipasr.model.encoder import WhisperSpeechEncoder
    from zipasr.model.speech_llm import load_module_weights, seconds_to_frames

    encoder = WhisperSpeechEncoder.from_pretrained(args.encoder_dir)
    if args.encoder_weights is not None:
        load_module_weights(encoder.whisper, args.encoder_weights)
    encoder.to(args.device).eval()
    extractor = FeatureExtractor.from_encoder_dir(args.encoder_dir)
    pairs, dd = datadir_items(args.data_dir, languages, args.max_per_language)
    items = ((torch.from_numpy(load_features(dd, utt, extractor)), lang) for utt, lang in pairs)
    segment = seconds_to_frames(args.segment_seconds) if args.segment_seconds else None
    return acoustic_lid_embeddings(encoder, items, languages, segment_frames=segment,
                                   batch_size=args.batch_size, total=len(pairs))


@cli_main("lid_embed")
def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    missing = [f"--{n}" for n in NEEDS[args.source] if getattr(args, n) is None]
    if missing:
        parser.error(f"--source {args.source} needs {' '.join(missing)}")
    emb = compute(args)
    save_lid_embeddings(emb, args.languages, args.out, source=args.source)
    heatmap = args.heatmap or args.out.with_suffix(".png")
    from zipasr.plots import plot_cosine_heatmap

    plot_cosine_heatmap(emb.numpy(), list(args.languages), heatmap,
                        title=f"Cosine similarity of LID embeddings ({args.source})")
    sim = cosine_similarity_matrix(emb)
    logger.info("LID embeddings %s (%s) -> %s, heatmap %s", tuple(emb.shape), args.source, args.out, heatmap)
    print("cosine similarity:\n      " + " ".join(f"{c:>6}" for c in args.languages))
    for code, row in zip(args.languages, sim.tolist()):
        print(f"{code:>6} " + " ".join(f"{v:6.3f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
