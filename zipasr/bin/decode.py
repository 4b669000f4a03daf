"""Decode a data dir with a trained Speech-LLM (batched greedy or beam search, KV cache).

    python -m zipasr.bin.decode --exp_dir exp/stage2_zipper_soft --data_dir data/test_de --out_dir exp/stage2_zipper_soft/decode_test_de_chunked
    python -m zipasr.bin.decode --exp_dir exp/export_de --data_dir data/test_de --out_dir OUT --regime full --beam 4
    python -m zipasr.bin.decode --exp_dir exp/stage2_zipper_soft --data_dir data/test_de --out_dir OUT --beam 8 \\
        --ctc_mode joint --ctc_weight 0.5   # joint CTC/attention decoding with the model's auxiliary CTC head
    python -m zipasr.bin.decode --exp_dir exp/stage2_zipper_soft --data_dir data/test_de --lid_model exp/stage1/lid \\
        --out_dir exp/stage2_zipper_soft/decode_test_de_agnostic_chunked

--exp_dir is an experiment dir (its config.yaml + final/ or --checkpoint) or an export dir written by
zipasr.bin.export. The language of each utterance comes from the data dir's utt2lang (its prompt and its
adapter route). Writes OUT/text (Kaldi style `utt hypothesis`, sorted by utterance id), OUT/decode.log
with the speed (utterances/s, real-time factor) and, with --dump_embeddings, OUT/embeddings.npz:
utterance-level mean-pooled encoder outputs `embeddings` (N, d), `langs` (N,), `utts` (N,) for the t-SNE
plot (paper Fig. 8).

Language-agnostic inference: with --lid_model (a LID classifier dir written by zipasr.bin.train_lid, or
a Whisper checkpoint dir with its decoder) the language of every utterance is predicted from its audio
and drives the prompt and the adapter routing; utt2lang is then only the reference (it may be absent).
Also writes OUT/utt2lang.pred and, when utt2lang is present, OUT/lid_accuracy.txt (first line
`%LID 97.50 [ 39 / 40 ]`, then one line per language). Name such decodes
`decode_<testset>_agnostic_<regime>`: zipasr.results then shows the column `<testset>_agnostic` beside
the language-aware `<testset>` one.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from zipasr.bin._cli import add_device_arguments, cli_main, cli_parser, torch_device

logger = logging.getLogger("zipasr.decode")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("decode", __doc__)
    p.add_argument("--config", default=None,
                   help="YAML whose keys are option names (e.g. conf/decode.yaml: beam, batch_size, ...); "
                        "options given on the command line win")
    p.add_argument("--exp_dir", required=True, help="experiment dir (config.yaml + final/) or export dir")
    p.add_argument("--data_dir", required=True,
                   help="Kaldi data dir (feats.scp or wav.scp) with utt2lang (optional with --lid_model)")
    p.add_argument("--out_dir", required=True, help="output directory for text (and embeddings.npz)")
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint of EXP/checkpoints (name or path) instead of EXP/final")
    p.add_argument("--regime", choices=["chunked", "full"], default=None,
                   help="encoder regime (default: the model's): chunked = fixed-length segments, full = whole utterance")
    p.add_argument("--segment_seconds", type=float, default=None,
                   help="segment length of the chunked regime (default: the model's, 8 s)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--length_penalty", type=float, default=1.0,
                   help="beam search only: hypotheses are ranked by log-probability / length**length_penalty "
                        "(transformers' length_penalty; 1 = per-token average, 0 = total log-probability, "
                        "which favours shorter hypotheses)")
    p.add_argument("--no_repeat_ngram_size", type=int, default=0,
                   help="never generate an n-gram of this many tokens twice in one hypothesis (transformers' "
                        "no_repeat_ngram_size; cuts repetition loops; 0 = off)")
    p.add_argument("--batch_size", type=int, default=16, help="utterances per batch (sorted by length)")
    p.add_argument("--max_new_tokens", type=int, default=200, help="longest transcript in tokens")
    p.add_argument("--max_len_ratio", type=float, default=0.0,
                   help="also stop after this many tokens per speech embedding of the batch's longest utterance "
                        "(ESPnet's maxlenratio; 0 = no bound but --max_new_tokens)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on CPUs with bf16, and on GPUs)")
    p.add_argument("--attn_implementation", choices=["eager", "sdpa", "flash_attention_2"], default=None,
                   help="attention kernel of the encoder and the LLM (default: the model's model.attn_implementation); "
                        "e.g. a model trained with eager decodes faster with sdpa on CPU")
    p.add_argument("--lid_model", default=None,
                   help="language-agnostic decoding: predict each utterance's language with this LID classifier "
                        "dir (zipasr.bin.train_lid) or Whisper checkpoint dir, instead of reading utt2lang")
    p.add_argument("--lexicon", default=None,
                   help="lexicon dir (<lang>.txt, one word per line; zipasr.bin.make_lexicon): every word of a "
                        "transcript must be a lexicon word of its language (zipasr.model.lexicon); languages "
                        "without a file are decoded unconstrained")
    p.add_argument("--ctc_weight", type=float, default=0.0,
                   help="weight w of the encoder's CTC head in the search (zipasr.model.ctc; 0 = off), as --ctc_mode "
                        "says")
    p.add_argument("--ctc_mode", choices=["rescore", "joint"], default="rescore",
                   help="rescore: each utterance's --beam best (beam search only) by (1 - w) x LLM score + w x CTC "
                        "log-likelihood / length**length_penalty; joint: joint CTC/attention decoding, the CTC "
                        "prefix score of every hypothesis in the search (ESPnet's), (1 - w) x LLM + w x CTC")
    p.add_argument("--ctc_dir", default=None,
                   help="dir with ctc_head.safetensors and ctc_vocab.json (default: the model's own head when it was "
                        "trained with one (model.aux_ctc), else its encoder dir)")
    add_device_arguments(p)
    p.add_argument("--dump_embeddings", action="store_true",
                   help="also write OUT/embeddings.npz (utterance-level encoder outputs, their languages)")
    return p


def decode(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm
    from transformers import LogitsProcessorList

    from zipasr.adapters.inject import merge_language_free_adapters
    from zipasr.data.datadir import write_kaldi_map
    from zipasr.data.features import FRAME_RATE, FeatureExtractor
    from zipasr.model.ctc import CTCScorer
    from zipasr.model.lexicon import LexiconConstraint, read_lexicon
    from zipasr.model.speech_llm import seconds_to_frames
    from zipasr.sibling.lid_classifier import load_language_detector, predict_languages, write_lid_report
    from zipasr.train.dataset import SpeechDataset
    from zipasr.train.inference import load_model
    from zipasr.train.precision import autocast_context, use_bf16

    no_languages = ValueError(f"{args.data_dir} has no utt2lang: pass --lid_model (a LID classifier dir from "
                              "zipasr.bin.train_lid, or a Whisper checkpoint dir) to predict the languages")
    if args.lid_model is None and not (Path(args.data_dir) / "utt2lang").is_file():
        raise no_languages  # before the (slow) model loading
    if not 0 <= args.ctc_weight <= 1:
        raise ValueError(f"--ctc_weight must be in [0, 1], got {args.ctc_weight}")
    if args.ctc_weight > 0 and args.ctc_mode == "rescore" and args.beam < 2:
        raise ValueError("--ctc_mode rescore rescores the N-best of beam search: pass --beam 2 or more "
                         "(or --ctc_mode joint)")
    device = torch_device(args)
    model, info = load_model(args.exp_dir, args.checkpoint, device)
    if args.attn_implementation:
        model.set_attn_implementation(args.attn_implementation)
    # The LLM's LoRA is the same for every language: folded into its weights for decoding (peft's
    # merge_and_unload), each layer runs one matmul per step instead of three (~15 % of the decode time).
    merged = merge_language_free_adapters(model.llm)
    if merged:
        logger.info("merged the LLM's %d adapter layers into its weights for decoding", merged)
    if args.lid_model is not None and info["lang"] is not None:
        raise ValueError(f"{args.exp_dir} is an export of language {info['lang']!r} only; language-agnostic "
                         "decoding (--lid_model) needs an experiment dir")
    regime = args.regime or model.regime
    if regime == "full":
        segment_frames = 0
    else:
        segment_frames = (seconds_to_frames(args.segment_seconds) if args.segment_seconds
                          else model.decode_segment_frames)
    extractor = FeatureExtractor.from_encoder_dir(info["encoder_dir"])
    data = SpeechDataset(args.data_dir, model.languages, None, extractor=extractor, cache=False)
    detector = None
    if args.lid_model is not None:
        detector = load_language_detector(args.lid_model, model.languages).to(device).eval()
    elif not data.has_languages:  # an empty utt2lang
        raise no_languages
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
    bf16 = use_bf16(args.bf16, device)
    ctc_scorer = None
    if args.ctc_weight > 0:
        if args.ctc_dir is None and model.ctc_head is not None:
            ctc_scorer, source = model.ctc_head, f"{args.exp_dir} (its auxiliary CTC head)"
        else:
            source = args.ctc_dir or info["encoder_dir"]
            ctc_scorer = CTCScorer.from_dir(source).to(device)
        what = "rescoring" if args.ctc_mode == "rescore" else "joint decoding"
        logger.info("CTC %s (beam %d, weight %g, head of %s)", what, args.beam, args.ctc_weight, source)
        # Joint decoding prunes every token whose characters the head does not know: say which
        # languages' reference transcripts hold such characters (e.g. a head of other languages' letters).
        unknown: dict[str, set[str]] = {}
        for u in data.utterances:
            missing = set(ctc_scorer.vocab.normalize(data.dd.text.get(u.utt, ""))) - set(ctc_scorer.vocab.index) - {" "}
            if missing:
                unknown.setdefault(u.lang or "?", set()).update(missing)
        if unknown and args.ctc_mode == "joint":
            logger.warning("the CTC head of %s cannot spell every reference character, and joint decoding never "
                           "writes a token it cannot spell: %s", source, "; ".join(
                               f"{lang}: {len(chars)} characters (e.g. {''.join(sorted(chars)[:5])})"
                               for lang, chars in sorted(unknown.items())))
    constraint = None
    if args.lexicon:
        lexicon = read_lexicon(args.lexicon)
        unknown = sorted(set(lexicon) - set(model.languages))
        if unknown:
            logger.warning("%s: lexicons of languages the model does not know are ignored: %s", args.lexicon, unknown)
        constraint = LexiconConstraint.from_tokenizer(lexicon, model.tokenizer)
        logger.info("lexicon-constrained decoding (%s): %s", args.lexicon,
                    ", ".join(f"{lang} {len(words)} words" for lang, words in sorted(lexicon.items())))

    hyps: dict[str, str] = {}
    predicted: dict[str, str] = {}  # utt -> language from the LID (language-agnostic decoding only)
    embeddings, emb_langs, emb_utts = [], [], []
    n_frames = 0
    start = time.perf_counter()
    bar = tqdm(total=len(indices), desc="decode", unit="utt", dynamic_ncols=True)
    # Optional search settings, passed only when they apply (transformers warns about unused ones).
    search_options = {}
    if args.beam > 1:
        search_options["length_penalty"] = args.length_penalty
    if args.no_repeat_ngram_size > 0:
        search_options["no_repeat_ngram_size"] = args.no_repeat_ngram_size
    for k in range(0, len(indices), args.batch_size):
        chunk = indices[k:k + args.batch_size]
        batch = data.collate([[i] for i in chunk]).to(device)
        with torch.no_grad(), autocast_context(device, bf16):
            lang_ids = batch.lang_ids
            if detector is not None:
                # The predicted language replaces utt2lang's for both the prompt and the adapter route.
                lang_ids = predict_languages(model, batch.feats, batch.feat_lens, detector, segment_frames)
                predicted.update((data.utterances[i].utt, model.languages[int(lang)])
                                 for i, lang in zip(chunk, lang_ids.tolist()))
            if constraint is not None:
                search_options["logits_processor"] = LogitsProcessorList([constraint.processor(
                    [model.languages[int(lang)] for lang in lang_ids.tolist()], args.beam)])
            texts = model.generate(batch.feats, batch.feat_lens, lang_ids, max_new_tokens=args.max_new_tokens,
                                   num_beams=args.beam, segment_frames=segment_frames,
                                   max_len_ratio=args.max_len_ratio, ctc_scorer=ctc_scorer,
                                   ctc_weight=args.ctc_weight, ctc_mode=args.ctc_mode, **search_options)
            if args.dump_embeddings:
                with model.lang_state.bound(lang_ids):
                    pooled = model.encoder.utterance_embeddings(batch.feats, batch.feat_lens, segment_frames or None)
                embeddings.append(pooled.float().cpu().numpy())
                # The true language colours the t-SNE plot; the predicted one where none is given.
                emb_langs += [data.utterances[i].lang or predicted[data.utterances[i].utt] for i in chunk]
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
               f"{stats['utt_per_s']:.2f} utt/s, RTF {stats['rtf']:.3f} (regime {regime}, beam {args.beam}"
               f"{f' (length penalty {args.length_penalty:g})' if args.beam > 1 else ''}"
               f"{f', no repeated {args.no_repeat_ngram_size}-grams' if args.no_repeat_ngram_size > 0 else ''}, "
               f"{f'lexicon {args.lexicon}, ' if constraint is not None else ''}"
               f"{f'CTC {what} weight {args.ctc_weight:g} (head of {source}), ' if ctc_scorer is not None else ''}"
               f"batch {args.batch_size}, attention {model.llm.config._attn_implementation})")
    if detector is not None:
        reference = {data.utterances[i].utt: data.utterances[i].lang for i in indices if data.utterances[i].lang}
        report = write_lid_report(out_dir, predicted, reference or None)
        stats["lid"] = report.splitlines()[0] if report else None  # "%LID 97.50 [ 39 / 40 ]"
        summary += (f"\nlanguage-agnostic (LID {args.lid_model}): "
                    + (report.splitlines()[0] if report else "no utt2lang, LID accuracy not scored"))
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


@cli_main("decode")
def main(argv: list[str] | None = None) -> int:
    decode(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
