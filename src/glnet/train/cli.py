"""``glnet train``: one GLNet training stage from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..model.resnet import BACKBONES

TRAIN_EXAMPLES = """examples:
  # the three stages of the paper, on a DeepGlobe-layout folder or a glnet export
  glnet train --data deepglobe/train --val deepglobe/val --mode global -o g.pt --epochs 120
  glnet train --data deepglobe/train --val deepglobe/val --mode global2local --from g.pt -o g2l.pt --epochs 50
  glnet train --data deepglobe/train --val deepglobe/val --mode local2global --from g2l.pt --global-from g.pt -o l2g.pt --epochs 120
  # continue an interrupted run (reads l2g.last.pt)
  glnet train ... -o l2g.pt --resume
"""


def add_parser(sub) -> None:
    """Add ``glnet train`` to the CLI's subparsers."""
    p = sub.add_parser(
        "train", help="train one GLNet stage", description="Train GLNet (global, global2local or local2global stage).",
        epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="DeepGlobe-layout folder or glnet export",
    )
    p.add_argument(
        "--mode", required=True, choices=["global", "global2local", "local2global"]
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="CKPT",
        help="best checkpoint (also writes .last.pt, .log.csv)",
    )
    p.add_argument(
        "--from",
        dest="init_from",
        metavar="CKPT",
        help="global2local: global ckpt; local2global: global2local ckpt",
    )
    p.add_argument(
        "--global-from",
        metavar="CKPT",
        help="local2global: the global checkpoint (fixed first pass)",
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--batch-size",
        type=int,
        default=6,
        help="images per optimiser step (default 6)",
    )
    p.add_argument(
        "--sub-batch-size",
        type=int,
        default=6,
        help="patches per forward/backward pass (default 6)",
    )
    p.add_argument(
        "--lr",
        type=float,
        help="default: 5e-5 (global, local2global), 2e-5 (global2local)",
    )
    p.add_argument("--size-g", type=int, default=508)
    p.add_argument("--size-p", type=int, default=508)
    p.add_argument(
        "--backbone",
        choices=list(BACKBONES),
        help="global stage (default resnet50); later stages: --from's",
    )
    p.add_argument(
        "--fpn-width",
        type=int,
        help="global stage (default 256); later stages: --from's",
    )
    p.add_argument(
        "--backbone-width",
        type=int,
        help="ResNet stem channels: 64 (torchvision's, default) or narrower, e.g. 32 for CPU-sized models",
    )
    v = p.add_mutually_exclusive_group()
    v.add_argument("--val", metavar="DIR", help="validation folder")
    v.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of --data for validation when it has no split",
    )
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the .last.pt of -o"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    """Run ``glnet train``."""
    from tqdm import tqdm

    from .loop import TrainConfig, train

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    config = TrainConfig(
        data=Path(args.data), mode=args.mode, output=Path(args.output), init_from=path(args.init_from),
        global_from=path(args.global_from), epochs=args.epochs, batch_size=args.batch_size,
        sub_batch_size=args.sub_batch_size, lr=args.lr, size_g=args.size_g, size_p=args.size_p,
        backbone=args.backbone, fpn_width=args.fpn_width, backbone_width=args.backbone_width, val=path(args.val), val_fraction=args.val_fraction,
        precision=args.precision, device=args.device, resume=args.resume, seed=args.seed,
    )  # fmt: skip
    with tqdm(desc="train", unit="batch", disable=None, leave=False) as bar:

        def on_batch(epoch: int, done: int, total: int, loss: float) -> None:
            if done == 1:
                bar.reset(total=total)
                bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)

        best = train(config, on_batch)
    print(f"wrote {best}")
    return 0
