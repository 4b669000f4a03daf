"""LoRA language experts (seed 004) from a trained Independent-LoRA experiment: one expert per language.

    # (a) expert fusion, language-aware: each language mixes all experts with learned weights
    python -m zipasr.bin.experts fuse --src_exp exp/independent --exp_dir exp/experts_fusion \\
        [--train_dir data/train --steps 200 --lr 1e-3]
    # (b) knowledge distillation into one Vanilla-LoRA, language-agnostic
    python -m zipasr.bin.experts distill --src_exp exp/independent --exp_dir exp/experts_kd \\
        --train_dir data/train [--level llm|layer] [--rank 32 --alpha 64] [--steps 200 --lr 1e-3]

fuse: the fusion matrix F (L x L, per layer) starts at the identity (= the experts themselves) and,
with --train_dir, is trained on the data with the experts, projector and LLM LoRA frozen. The result
is saved as an exact Independent-LoRA of rank L*r (ΔW(l) = Σ_k F[l,k] ΔW_k), so decode reads it as
any experiment. distill: a Vanilla-LoRA student (initialised from the SVD of the experts' mean update)
learns the experts' outputs: KL on the LLM's token distributions (--level llm) or the adapter layers'
outputs (--level layer); the student's experiment needs no language for the encoder.
"""
from __future__ import annotations

import argparse
import logging
import sys

from zipasr.bin._cli import add_device_arguments, cli_main, cli_parser, torch_device

logger = logging.getLogger("zipasr.experts")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("experts", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("fuse", "expert fusion (language-aware)"),
                            ("distill", "distil the experts into one Vanilla-LoRA (language-agnostic)")):
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("--src_exp", required=True, help="Independent-LoRA experiment (the experts)")
        s.add_argument("--exp_dir", required=True, help="output experiment dir")
        s.add_argument("--checkpoint", default=None, help="a checkpoint of SRC/checkpoints instead of SRC/final")
        s.add_argument("--train_dir", default=None, required=(name == "distill"),
                       help="Kaldi data dir (utt2lang, feats.scp or wav.scp) to train on"
                            + ("" if name == "distill" else "; without it, F stays the identity"))
        s.add_argument("--steps", type=int, default=200, help="optimizer steps")
        s.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
        s.add_argument("--batch_size", type=int, default=8, help="utterances per step")
        s.add_argument("--seed", type=int, default=0, help="seed of the batch order and the torch RNG")
        add_device_arguments(s)
        if name == "distill":
            s.add_argument("--level", choices=["llm", "layer"], default="llm",
                           help="llm: KL of the LLM's token distributions; layer: MSE of each adapter layer's output")
            s.add_argument("--rank", type=int, default=None, help="student rank (default: the experts' rank)")
            s.add_argument("--alpha", type=float, default=None, help="student alpha (default: the experts' alpha)")
            s.add_argument("--init", choices=["svd_mean", "lora"], default="svd_mean",
                           help="student init: SVD of the experts' mean update, or peft's (B = 0)")
            s.add_argument("--temperature", type=float, default=1.0, help="KL temperature (--level llm)")
            s.add_argument("--ce_weight", type=float, default=0.0,
                           help="add this x the student's cross-entropy on the transcripts (--level llm)")
    return p


def _load(args):
    import torch

    from zipasr.train.inference import load_model

    torch.manual_seed(args.seed)
    args.device = torch_device(args)
    model, info = load_model(args.src_exp, args.checkpoint, args.device)
    method = info["config"].model.encoder_adapter.method if info["kind"] == "experiment" else None
    if method != "independent":
        raise ValueError(f"{args.src_exp}: the experts come from an Independent-LoRA experiment, it holds {method!r}")
    return model, info["config"]


def _batches(model, cfg, args):
    from zipasr.sibling.common import load_train_data, utterance_batches

    data = load_train_data(model, cfg, args.train_dir)
    return utterance_batches(data, args.batch_size, args.steps, seed=args.seed, device=args.device)


def fuse(args: argparse.Namespace) -> dict:
    from zipasr.adapters.independent import IndependentLoRA
    from zipasr.sibling.common import replace_modules, train_parameters, write_experiment
    from zipasr.sibling.experts import ExpertFusionLoRA, fusion_to_independent, independent_to_fusion

    model, cfg = _load(args)
    independent_to_fusion(model.encoder)
    losses = []
    if args.train_dir:
        model.requires_grad_(False)
        params = [m.fusion for m in model.encoder.modules() if isinstance(m, ExpertFusionLoRA)]
        model.train()
        losses = train_parameters(params, _batches(model, cfg, args), lambda b: model(b).loss, lr=args.lr,
                                  steps=args.steps, desc="fusion")
        model.eval()
    rows = {name: m.fusion.detach().cpu().tolist() for name, m in model.encoder.named_modules()
            if isinstance(m, ExpertFusionLoRA)}
    replace_modules(model.encoder, ExpertFusionLoRA, fusion_to_independent)
    first = next(m for m in model.encoder.modules() if isinstance(m, IndependentLoRA))
    write_experiment(model, cfg, args.exp_dir,
                     encoder_adapter={"method": "independent", "rank": first.rank, "alpha": first.alpha},
                     info={"method": "experts_fusion", "source_exp": str(args.src_exp), "trained": bool(args.train_dir),
                           "steps": len(losses), "final_loss": losses[-1] if losses else None, "fusion": rows})
    return {"losses": losses}


def distill(args: argparse.Namespace) -> dict:
    from zipasr.adapters.independent import IndependentLoRA
    from zipasr.sibling.common import write_experiment
    from zipasr.sibling.experts import (attach_students, detach_students, distill as run_distill, layer_kd_loss,
                                        speech_kd_loss)

    model, cfg = _load(args)
    expert = next(m for m in model.encoder.modules() if isinstance(m, IndependentLoRA))
    rank = args.rank or expert.rank
    alpha = args.alpha if args.alpha is not None else expert.alpha
    model.requires_grad_(False)
    attach_students(model.encoder, rank=rank, alpha=alpha, init=args.init)
    if args.level == "llm":
        def loss_fn(m, b):
            return speech_kd_loss(m, b, temperature=args.temperature, ce_weight=args.ce_weight)
    else:
        loss_fn = layer_kd_loss
    model.train()
    losses = run_distill(model, _batches(model, cfg, args), loss_fn, lr=args.lr, steps=args.steps)
    model.eval()
    detach_students(model.encoder)
    write_experiment(model, cfg, args.exp_dir,
                     encoder_adapter={"method": "vanilla", "rank": rank, "alpha": alpha, "method_kwargs": {},
                                      "init_b_from": None, "init_b_router": False},
                     info={"method": "experts_kd", "source_exp": str(args.src_exp), "level": args.level,
                           "init": args.init, "steps": len(losses), "first_loss": losses[0] if losses else None,
                           "final_loss": losses[-1] if losses else None})
    return {"losses": losses}


@cli_main("experts")
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    (fuse if args.command == "fuse" else distill)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
