"""``glnet train``: one GLNet training stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from glnet.classes import ClassTable, read_class_table
from glnet.cli.common import DEVICE_HELP, add_coarse_to_fine_args, coarse_to_fine
from glnet.constants import Mode, Precision
from glnet.model.resnet import BACKBONES

EXAMPLES = """examples:
  # the three stages of the paper, on a DeepGlobe-layout folder or a glnet export
  glnet train --data deepglobe/train --val deepglobe/val --mode global -o g.pt --epochs 120
  glnet train --data deepglobe/train --val deepglobe/val --mode global2local --from g.pt -o g2l.pt --epochs 50
  glnet train --data deepglobe/train --val deepglobe/val --mode local2global --from g2l.pt --global-from g.pt \\
      -o l2g.pt --epochs 120
  # continue an interrupted run (reads l2g.last.pt)
  glnet train ... -o l2g.pt --resume
  # another class set (buildings vs background): only the classifier layers start afresh
  glnet train --data buildings/ --mode global --from g.pt --classes buildings.csv -o bg.pt --epochs 40
"""

CLASSES_HELP = (
    "class table of the data: JSON list of {name, color} or CSV lines name,#rrggbb "
    "(default: the export's, else --from's)"
)


def add_training_args(p: argparse.ArgumentParser) -> None:
    """Options ``glnet train`` and ``glnet finetune`` share."""
    p.add_argument("--classes", metavar="FILE", help=CLASSES_HELP)
    add_coarse_to_fine_args(
        p, "global2local/local2global: train the local branch only on patches near foreground (class != 0)"
    )
    p.add_argument("--precision", choices=Precision.choices(), default=Precision.FP32.value)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=0)


def class_table(args: argparse.Namespace) -> ClassTable | None:
    return read_class_table(args.classes) if args.classes else None


def batch_progress(bar, epochs: int):
    """An ``on_batch`` callback that draws epochs and loss on a tqdm bar."""

    def on_batch(epoch: int, done: int, total: int, loss: float) -> None:
        if done == 1:
            bar.reset(total=total)
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    return on_batch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one GLNet stage",
        description="Train GLNet (global, global2local or local2global stage).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, metavar="DIR", help="DeepGlobe-layout folder or glnet export")
    p.add_argument("--mode", required=True, choices=Mode.choices())
    p.add_argument(
        "-o", "--output", required=True, metavar="CKPT", help="best checkpoint (also writes .last.pt, .log.csv)"
    )
    p.add_argument(
        "--from",
        dest="init_from",
        metavar="CKPT",
        help="global2local: global ckpt; local2global: global2local ckpt; global: a global ckpt to continue (optional)",
    )
    p.add_argument(
        "--global-from",
        metavar="CKPT",
        help="local2global: the global checkpoint (fixed first pass; default: --from's global branch)",
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=6, help="images per optimiser step (default 6)")
    p.add_argument("--sub-batch-size", type=int, default=6, help="patches per forward/backward pass (default 6)")
    p.add_argument("--lr", type=float, help="default: 5e-5 (global, local2global), 2e-5 (global2local)")
    p.add_argument("--size-g", type=int, default=508)
    p.add_argument("--size-p", type=int, default=508)
    p.add_argument(
        "--backbone", choices=list(BACKBONES), help="global stage (default resnet50); later stages: --from's"
    )
    p.add_argument("--fpn-width", type=int, help="global stage (default 256); later stages: --from's")
    p.add_argument(
        "--backbone-width",
        type=int,
        help="ResNet stem channels: 64 (torchvision's, default) or narrower, e.g. 32 for CPU-sized models",
    )
    v = p.add_mutually_exclusive_group()
    v.add_argument("--val", metavar="DIR", help="validation folder")
    v.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of --data for validation when it has no split"
    )
    p.add_argument("--resume", action="store_true", help="continue from the .last.pt of -o")
    add_training_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glnet.train.config import TrainConfig
    from glnet.train.loop import train

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    config = TrainConfig(
        data=Path(args.data),
        mode=args.mode,
        output=Path(args.output),
        init_from=path(args.init_from),
        global_from=path(args.global_from),
        epochs=args.epochs,
        batch_size=args.batch_size,
        sub_batch_size=args.sub_batch_size,
        lr=args.lr,
        size_g=args.size_g,
        size_p=args.size_p,
        backbone=args.backbone,
        fpn_width=args.fpn_width,
        backbone_width=args.backbone_width,
        val=path(args.val),
        val_fraction=args.val_fraction,
        precision=args.precision,
        device=args.device,
        resume=args.resume,
        seed=args.seed,
        classes=class_table(args),
        coarse_to_fine=coarse_to_fine(args),
    )
    with tqdm(desc="train", unit="batch", disable=None, leave=False) as bar:
        best = train(config, batch_progress(bar, config.epochs))
    print(f"wrote {best}")
    return 0
