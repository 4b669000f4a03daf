"""Add a language to a trained Zipper-LoRA experiment without retraining the others.

    python -m zipasr.bin.add_language --src_exp exp/zipper_soft --lang es --train_dir data/train_es \\
        --exp_dir exp/zipper_soft_plus_es [--init shared|nearest] [--lid_source whisper|acoustic|file] \\
        [--lid_file lid.safetensors] [--steps 200 --lr 1e-3 --batch_size 8]

Each Zipper layer gets a new bank B_spec(es), initialised from B_shared (shared) or from the bank of
the trained language whose LID embedding is closest by cosine (nearest); Hard/Soft routers read the
new language's LID embedding e(es) (default source: the experiment's own: whisper = the Whisper
checkpoint's <|es|> token embedding, acoustic = mean encoder output of the new language's training
utterances, file = a zipasr.bin.lid_embed file). Only the new banks are trained, on the utterances of
--lang in --train_dir; every other tensor is frozen, so the other languages keep their outputs.

The output is an ordinary experiment dir with the extended language list (config.yaml + final/), its
LID table in EXP/lid_embeddings.safetensors, and EXP/init/: the source's Stage-1 checkpoint (linked)
relabelled with the extended language list.
"""
from __future__ import annotations

import argparse
import logging
import sys

from zipasr.bin._cli import add_device_arguments, cli_main, cli_parser, torch_device
from zipasr.config import ConfigError

logger = logging.getLogger("zipasr.add_language")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("add_language", __doc__)
    p.add_argument("--src_exp", required=True, help="trained Zipper-LoRA experiment (static, hard or soft)")
    p.add_argument("--lang", required=True, help="ISO 639-1 code of the language to add")
    p.add_argument("--exp_dir", required=True, help="output experiment dir")
    p.add_argument("--train_dir", required=True, help="Kaldi data dir holding utterances of --lang (utt2lang)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint of SRC/checkpoints instead of SRC/final")
    p.add_argument("--init", choices=["shared", "nearest"], default="shared",
                   help="new bank from B_shared, or from the nearest trained language by LID-embedding cosine")
    p.add_argument("--lid_source", choices=["whisper", "acoustic", "file"], default=None,
                   help="where e(lang) comes from (default: the experiment's model.encoder_adapter.lid_source)")
    p.add_argument("--lid_file", default=None, help="LID embedding file holding --lang (lid_source file), and the "
                                                     "trained languages (for --init nearest on Zipper-Static)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps on the new language")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--batch_size", type=int, default=8, help="utterances per step")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch order and the torch RNG")
    add_device_arguments(p)
    return p


def new_lid_embedding(model, cfg, args, data):
    """e(args.lang) (d_lid,) from the chosen source."""
    import torch

    from zipasr.model.lid import load_lid_embeddings, whisper_lid_embeddings
    from zipasr.sibling.lid_classifier import encoder_embeddings

    source = args.lid_source or cfg.model.encoder_adapter.lid_source
    if source == "whisper":
        whisper_dir = cfg.model.encoder_adapter.lid_whisper_dir or cfg.model.encoder_dir
        return whisper_lid_embeddings(whisper_dir, [args.lang])[0]
    if source == "file":
        if not args.lid_file:
            raise ConfigError("--lid_source file needs --lid_file")
        return load_lid_embeddings(args.lid_file, [args.lang])[0][0]
    # acoustic: the mean of the new language's utterance-level encoder outputs, as zipasr.bin.lid_embed
    # computes them for the trained languages (the Stage-1 encoder: adapters bypassed)
    mine = [i for i, u in enumerate(data.utterances) if u.lang == args.lang]
    if not mine:
        raise ValueError(f"{args.train_dir} has no utterance of {args.lang!r} (utt2lang)")
    pooled = []
    for k in range(0, len(mine), args.batch_size):
        batch = data.collate([[i] for i in mine[k:k + args.batch_size]]).to(next(model.parameters()).device)
        pooled.append(encoder_embeddings(model.encoder, batch.feats, batch.feat_lens, model.segment_frames(None)))
    return torch.cat(pooled).mean(0)


def relabelled_init(init_from: str, languages: list[str], out_dir) -> str:
    """A view of the Stage-1 checkpoint `init_from` under `out_dir`: its files linked, its speech_llm.json
    rewritten with the extended language list (the Stage-1 parts do not depend on the languages)."""
    import json
    from pathlib import Path

    from zipasr.model.speech_llm import META_FILE

    src, out_dir = Path(init_from).resolve(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = out_dir / item.name
        if item.name == META_FILE or target.exists() or target.is_symlink():
            continue
        target.symlink_to(item)
    meta = json.loads((src / META_FILE).read_text(encoding="utf-8"))
    meta["languages"] = list(languages)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(out_dir)


def run(args: argparse.Namespace) -> dict:
    from pathlib import Path

    import torch

    from zipasr.data.features import FeatureExtractor
    from zipasr.model.lid import save_lid_embeddings
    from zipasr.sibling.add_language import add_language, added_parameters, bake_added_languages, zipper_layers
    from zipasr.sibling.common import train_parameters, utterance_batches, write_experiment
    from zipasr.train.config import resolve_checkpoint_paths
    from zipasr.train.dataset import SpeechDataset
    from zipasr.train.inference import load_model
    from zipasr.train.trainer import tokenizer_fn

    torch.manual_seed(args.seed)
    device = torch_device(args)
    model, info = load_model(args.src_exp, args.checkpoint, device)
    if info["kind"] != "experiment":
        raise ValueError(f"{args.src_exp} is an export dir; adding a language needs the experiment dir")
    cfg = resolve_checkpoint_paths(info["config"])
    layers = zipper_layers(model)
    old_languages = list(model.languages)

    # The data in the extended language order (so utt2lang entries of --lang are accepted).
    data = SpeechDataset(args.train_dir, old_languages + [args.lang], tokenizer_fn(model),
                         extractor=FeatureExtractor.from_encoder_dir(cfg.model.encoder_dir),
                         cache=cfg.data.cache_features)
    routed = [layer for layer in layers.values() if hasattr(layer, "router")]
    # e(lang): the router input of Hard/Soft, and the query of --init nearest
    e_new = new_lid_embedding(model, cfg, args, data) if routed or args.init == "nearest" else None
    if routed:
        table = routed[0].router.lid_embeddings.detach().cpu()
    elif args.lid_file:
        from zipasr.model.lid import load_lid_embeddings

        table = load_lid_embeddings(args.lid_file, old_languages)[0]
    else:
        table = None
    summary = add_language(model, args.lang, lid_embedding=e_new, init=args.init, reference_embeddings=table)
    logger.info("added %s: %d layers, %d new trainable parameters (init %s%s)", args.lang, summary["layers"],
                summary["trainable"], args.init, f", from {summary['nearest']}" if summary["nearest"] else "")

    model.train()
    losses = train_parameters(added_parameters(model), utterance_batches(data, args.batch_size, args.steps,
                                                                         seed=args.seed, languages=[args.lang],
                                                                         device=device),
                              lambda b: model(b).loss, lr=args.lr, steps=args.steps, desc=f"add {args.lang}")
    model.eval()
    bake_added_languages(model)

    exp_dir = Path(args.exp_dir)
    new_table = torch.cat([table, e_new.detach().cpu()[None]]) if table is not None and e_new is not None else None
    adapter = {"init_b_from": None, "init_b_router": False}
    if new_table is not None:
        lid_file = save_lid_embeddings(new_table, model.languages, exp_dir / "lid_embeddings.safetensors",
                                       source=f"add_language:{args.lid_source or cfg.model.encoder_adapter.lid_source}")
        adapter.update(lid_source="file", lid_file=str(lid_file))
    if cfg.model.init_from:
        cfg.model.init_from = relabelled_init(cfg.model.init_from, model.languages, exp_dir / "init")
    write_experiment(model, cfg, exp_dir, encoder_adapter=adapter, languages=model.languages,
                     info={"method": "add_language", "source_exp": str(args.src_exp), "language": args.lang,
                           "base_languages": old_languages, "init": args.init, "nearest": summary["nearest"],
                           "trainable_parameters": summary["trainable"], "steps": len(losses),
                           "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None})
    return {"losses": losses, **summary}


@cli_main("add_language")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
