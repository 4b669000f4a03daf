"""Decode a data dir with a trained Speech-LLM (batched greedy or beam search, KV cache).

    python -m zipasr.bin.decode --exp_dir exp/zipper_soft --data_dir data/test_de --out_dir exp/zipper_soft/decode_test_de_chunked
    python -m zipasr.bin.decode --exp_dir exp/export_de --data_dir data/test_de --out_dir OUT --regime full --beam 4

--exp_dir is an experiment dir (its config.yaml + final/ or --checkpoint) or an export dir written by
zipasr.bin.export. The language of each utterance comes from the data dir's utt2lang (its prompt and its
adapter route). Writes OUT/text (Kaldi style `utt hypothesis`, sorted by utterance id), OUT/decode.log
with the speed (utterances/s, real-time factor) and, with --dump_embeddings, OUT/embeddings.npz:
utterance-level mean-pooled encoder outputs `embeddings` (N, d), `langs` (N,), `utts` (N,) for the t-SNE
plot (paper Fig. 8).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("zipasr.decode")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help="YAML whose keys are option names (e.g. conf/decode.yaml: beam, batch_size, ...); "
                        "options given on the command line win")
    p.add_argument("--exp_dir", required=True, help="experiment dir (config.yaml + final/) or export dir")
    p.add_argument("--data_dir", required=True, help="Kaldi data dir with utt2lang (feats.scp or wav.scp)")
    p.add_argument("--out_dir", required=True, help="output directory for text (and embeddings.npz)")
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint of EXP/checkpoints (name or path) instead of EXP/final")
    p.add_argument("--regime", choices=["chunked", "full"], default=None,
                   help="encoder regime (default: the model's): chunked = fixed-length segments, full = whole utterance")
    p.add_argument("--segment_seconds", type=float, default=None,
                   help="segment length of the chunked regime (default: the model's, 8 s)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--batch_size", type=int, default=16, help="utterances per batch (sorted by length)")
    p.add_argument("--max_new_tokens", type=int, default=200, help="longest transcript in tokens")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on CPUs with bf16, and on GPUs)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--dump_embeddings", action="store_true",
                   help="also write OUT/embeddings.npz (utterance-level encoder outputs, their languages)")
    return p


def decode(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm

    from zipasr.data.datadir import write_kaldi_map
    from zipasr.data.features import FRAME_RATE, FeatureExtractor
    from zipasr.model.speech_llm import seconds_to_frames
    from zipasr.train.dataset import SpeechDataset
    from zipasr.train.inference import load_model
    from zipasr.train.trainer import autocast_context, bf16_available

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, info = load_model(args.exp_dir, args.checkpoint, device)
    regime = args.regime or model.regime
    if regime == "full":
        segment_frames = 0
    else:
        segment_frames = (seconds_to_frames(args.segment_seconds) if args.segment_seconds
                          else model.decode_segment_frames)
    extractor = FeatureExtractor.from_encoder_dir(info["encoder_dir"])
    data = SpeechDataset(args.data_dir, model.languages, None, extractor=extractor, cache=False)
    indices = list(range(len(data)))
    if info["lang"] is not None:
        # An export holds one language's adapter folded into its weights.
        other = [i for i in indices if data.utterances[i].lang != info["lang"]]
        if other:
            logger.warning("%s is an export for %r: skipping %d utterances of other languages (e.g. %s)",
                           args.exp_dir, info["lang"], len(other), data.utterances[other[0]].utt)
            indices = [i for i in indices if data.utterances[i].lang == info["lang"]]
    # Longest first: similar lengths share a batch (little padding), and memory peaks at once.
    indices.sort(key=lambda i: -data.utterances[i].n_frames)
    bf16 = args.bf16 and bf16_available(device)

    hyps: dict[str, str] = {}
    embeddings, emb_langs, emb_utts = [], [], []
    n_frames = 0
    start = time.perf_counter()
    bar = tqdm(total=len(indices), desc="decode", unit="utt", dynamic_ncols=True)
    for k in range(0, len(indices), args.batch_size):
        chunk = indices[k:k + args.batch_size]
        batch = data.collate([[i] for i in chunk]).to(device)
        with torch.no_grad(), autocast_context(device, bf16):
            texts = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=args.max_new_tokens,
                                   num_beams=args.beam, segment_frames=segment_frames)
            if args.dump_embeddings:
                with model.lang_state.bound(batch.lang_ids):
                    pooled = model.encoder.utterance_embeddings(batch.feats, batch.feat_lens, segment_frames or None)
                embeddings.append(pooled.float().cpu().numpy())
                emb_langs += [data.utterances[i].lang for i in chunk]
                emb_utts += [data.utterances[i].utt for i in chunk]
        for i, text in zip(chunk, texts):
            hyps[data.utterances[i].utt] = text
        n_frames += int(batch.feat_lens.sum())
        bar.update(len(chunk))
        bar.set_postfix(utt_s=f"{bar.n / (time.perf_counter() - start):.1f}")
    bar.close()
    elapsed = time.perf_counter() - start

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_kaldi_map(out_dir / "text", hyps)
    if args.dump_embeddings:
        order = np.argsort(emb_utts)
        np.savez(out_dir / "embeddings.npz", embeddings=np.concatenate(embeddings)[order],
                 langs=np.array(emb_langs)[order], utts=np.array(emb_utts)[order])
    audio_s = n_frames / FRAME_RATE
    stats = {"utterances": len(hyps), "seconds": elapsed, "utt_per_s": len(hyps) / max(elapsed, 1e-9),
             "rtf": elapsed / max(audio_s, 1e-9)}
    summary = (f"decoded {stats['utterances']} utterances of {args.data_dir} in {elapsed:.1f} s: "
               f"{stats['utt_per_s']:.2f} utt/s, RTF {stats['rtf']:.3f} (regime {regime}, beam {args.beam}, "
               f"batch {args.batch_size})")
    logger.info("%s", summary)
    (out_dir / "decode.log").write_text(summary + "\n", encoding="utf-8")
    return stats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line, with defaults from --config (unknown keys there are an error)."""
    import yaml

    parser = get_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        data = yaml.safe_load(Path(pre.config).read_text(encoding="utf-8")) or {}
        known = {a.dest for a in parser._actions} - {"help", "config"}
        unknown = sorted(set(data) - known)
        if unknown:
            parser.error(f"{pre.config}: unknown option(s) {unknown}; known: {sorted(known)}")
        parser.set_defaults(**data)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        decode(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"decode: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
