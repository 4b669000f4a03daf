"""Speed of the adapter family at the paper's encoder layer shapes, as ratios measured side by side.

For each Whisper-large-v3 encoder linear shape (attention 1280->1280, FFN 1280->5120 and 5120->1280)
on an 8 s segment (400 frames after Whisper's 2x, batch 4, mixed languages) it times forward+backward of

  - every adapter method, as a ratio to Vanilla-LoRA;
  - Vanilla-LoRA as a ratio to peft's LoRA on the same nn.Linear;
  - a merged single-language Zipper-Soft layer, forward only, as a ratio to the bare nn.Linear.

The methods run interleaved (round robin) and the fastest round of each is reported (`--stat min`,
the least disturbed by other processes on a shared machine; `--stat median` is available).
Goals (issue 2): Zipper <= 1.10x Vanilla, Vanilla <= 1.05x peft, merged <= 1.02x bare.

    python benchmarks/bench_adapters.py --threads 2
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from zipasr.adapters import ADAPTERS, LangState
from zipasr.languages import LANGUAGES

GOALS = {"zipper": 1.10, "vanilla_vs_peft": 1.05, "merged_vs_bare": 1.02}


class PeftHost(nn.Module):
    """A one-layer module for peft to wrap: peft adapts named submodules of a model."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return self.linear(x)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--iters", type=int, default=5, help="timed rounds per method and shape")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--batch", type=int, default=4, help="segments per batch")
    p.add_argument("--frames", type=int, default=400, help="encoder frames per segment (8 s = 400)")
    p.add_argument("--d_model", type=int, default=1280)
    p.add_argument("--d_ffn", type=int, default=5120)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--alpha", type=float, default=64.0)
    p.add_argument("--languages", type=int, default=13, help="number of languages of the adapters")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: perf_counter; cpu: this process's CPU time (steadier when other jobs share the CPU)")
    p.add_argument("--stat", choices=["min", "median"], default="min", help="statistic over the rounds")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no_peft", action="store_true", help="skip the peft reference")
    return p.parse_args()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_layers(d_in: int, d_out: int, args, languages: list[str], state: LangState) -> dict[str, nn.Module]:
    """name -> module with forward(x); every one wraps its own copy of the same nn.Linear."""
    torch.manual_seed(0)
    bare = nn.Linear(d_in, d_out).to(args.device).requires_grad_(False)
    lid = torch.randn(len(languages), args.d_model)
    layers: dict[str, nn.Module] = {"bare": bare}
    for method, cls in ADAPTERS.items():
        kwargs = {"rank": args.rank, "alpha": args.alpha}
        if method in ("zipper_hard", "zipper_soft"):
            kwargs["lid_embeddings"] = lid
        layer = cls(copy.deepcopy(bare), languages, state, **kwargs).to(args.device)
        with torch.no_grad():  # non-zero B: timing must not depend on it, but make every path real
            for name, p in layer.named_parameters():
                if name.startswith(("lora_B", "B_")):
                    p.normal_(0, 0.01)
        layers[method] = layer
    merged = copy.deepcopy(layers["zipper_soft"])
    merged.merge(languages[0])
    layers["merged"] = merged
    if not args.no_peft:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=["linear"], lora_dropout=0.0)
        layers["peft"] = get_peft_model(PeftHost(copy.deepcopy(bare)), config).to(args.device)
    return layers


def time_shape(d_in: int, d_out: int, args, languages, state) -> dict[str, float]:
    layers = build_layers(d_in, d_out, args, languages, state)
    x = torch.randn(args.batch, args.frames, d_in, device=args.device)
    grad = torch.randn(args.batch, args.frames, d_out, device=args.device)
    lang_ids = torch.arange(args.batch, device=args.device) % len(languages)  # a mixed-language batch
    inference = {"bare", "merged"}

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def step(name: str) -> float:
        layer = layers[name]
        sync(args.device)
        start = clock()
        with state.bound(lang_ids if name != "merged" else torch.zeros_like(lang_ids)):
            if name in inference:
                with torch.no_grad():
                    layer(x)
            else:  # training: the input needs its gradient too, as inside an encoder stack
                xg = x.detach().requires_grad_(True)
                layer(xg).backward(grad)
        sync(args.device)
        return clock() - start

    times = {name: [] for name in layers}
    for round_ in range(args.warmup + args.iters):
        for name in layers:
            t = step(name)
            if round_ >= args.warmup:
                times[name].append(t)
    stat = min if args.stat == "min" else statistics.median
    return {name: stat(ts) for name, ts in times.items()}


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    languages = list(LANGUAGES)[: args.languages]
    state = LangState(languages)
    shapes = {
        "attn d->d": (args.d_model, args.d_model),
        "fc1 d->ffn": (args.d_model, args.d_ffn),
        "fc2 ffn->d": (args.d_ffn, args.d_model),
    }
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"x ({args.batch}, {args.frames}, d_in), r={args.rank}, {len(languages)} languages, "
          f"{args.stat} {args.clock} time of {args.iters} rounds after {args.warmup} warm-up")
    results = {name: time_shape(d_in, d_out, args, languages, state) for name, (d_in, d_out) in shapes.items()}
    total = {m: sum(r[m] for r in results.values()) for m in next(iter(results.values()))}

    cols = list(shapes) + ["all shapes"]
    table = {**results, "all shapes": total}
    rows = [("fwd+bwd ms, vanilla", lambda t: f"{1e3 * t['vanilla']:.1f}")]
    rows += [(f"{m} / vanilla", lambda t, m=m: f"{t[m] / t['vanilla']:.3f}x") for m in ADAPTERS if m != "vanilla"]
    if not args.no_peft:
        rows.append(("vanilla / peft", lambda t: f"{t['vanilla'] / t['peft']:.3f}x"))
    rows.append(("fwd ms, bare linear", lambda t: f"{1e3 * t['bare']:.1f}"))
    rows.append(("merged / bare (fwd)", lambda t: f"{t['merged'] / t['bare']:.3f}x"))
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}} " + " ".join(f"{c:>12}" for c in cols))
    for label, cell in rows:
        print(f"{label:<{width}} " + " ".join(f"{cell(table[c]):>12}" for c in cols))

    checks = [(f"{m} <= {GOALS['zipper']}x vanilla", total[m] / total["vanilla"], GOALS["zipper"])
              for m in ADAPTERS if m.startswith("zipper")]
    if not args.no_peft:
        checks.append((f"vanilla <= {GOALS['vanilla_vs_peft']}x peft", total["vanilla"] / total["peft"],
                       GOALS["vanilla_vs_peft"]))
    checks.append((f"merged <= {GOALS['merged_vs_bare']}x bare", total["merged"] / total["bare"],
                   GOALS["merged_vs_bare"]))
    print("goals (all shapes):")
    for label, ratio, goal in checks:
        print(f"  {label:<30} {ratio:.3f}x  {'met' if ratio <= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
