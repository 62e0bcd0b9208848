"""``glnet train``: one GLNet training stage from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..classes import ClassTable, read_class_table
from ..coarse import CoarseToFine
from ..model.resnet import BACKBONES

TRAIN_EXAMPLES = """examples:
  # the three stages of the paper, on a DeepGlobe-layout folder or a glnet export
  glnet train --data deepglobe/train --val deepglobe/val --mode global -o g.pt --epochs 120
  glnet train --data deepglobe/train --val deepglobe/val --mode global2local --from g.pt -o g2l.pt --epochs 50
  glnet train --data deepglobe/train --val deepglobe/val --mode local2global --from g2l.pt --global-from g.pt -o l2g.pt --epochs 120
  # continue an interrupted run (reads l2g.last.pt)
  glnet train ... -o l2g.pt --resume
  # another class set (buildings vs background): only the classifier layers start afresh
  glnet train --data buildings/ --mode global --from g.pt --classes buildings.csv -o bg.pt --epochs 40
"""

FINETUNE_EXAMPLES = """examples:
  # retrain on the regions corrected in napari (glnet export), same stage as the model
  glnet finetune --from demo.glnet.pt --data retrain/ -o demo-tuned.pt
  # the authors' global2local file, 10 epochs, only patches near buildings
  glnet finetune --from fpn_deepglobe_global2local.pth --mode global2local --data retrain/ \\
      --classes buildings.csv --coarse-to-fine -o buildings.pt --epochs 10
"""

CLASSES_HELP = "class table of the data: JSON list of {name, color} or CSV lines name,#rrggbb (default: the export's, else --from's)"


def _add_common(p: argparse.ArgumentParser) -> None:
    """Options ``glnet train`` and ``glnet finetune`` share."""
    p.add_argument("--classes", metavar="FILE", help=CLASSES_HELP)
    p.add_argument(
        "--coarse-to-fine", action="store_true",
        help="global2local/local2global: train the local branch only on patches near foreground (class != 0)",
    )  # fmt: skip
    p.add_argument("--ctf-margin", type=int, default=CoarseToFine.margin, metavar="PX",
                   help=f"coarse-to-fine: patches within PX of foreground count (default {CoarseToFine.margin})")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N"
    )
    p.add_argument("--seed", type=int, default=0)


def _classes(args) -> ClassTable | None:
    return read_class_table(args.classes) if args.classes else None


def _coarse_to_fine(args) -> CoarseToFine | None:
    return CoarseToFine(margin=args.ctf_margin) if args.coarse_to_fine else None


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
        help="global2local: global ckpt; local2global: global2local ckpt; global: a global ckpt to continue (optional)",
    )
    p.add_argument(
        "--global-from",
        metavar="CKPT",
        help="local2global: the global checkpoint (fixed first pass; default: --from's global branch)",
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
    p.add_argument(
        "--resume", action="store_true", help="continue from the .last.pt of -o"
    )
    _add_common(p)
    p.set_defaults(func=cmd_train)
    _add_finetune_parser(sub)


def _add_finetune_parser(sub) -> None:
    from .finetune import FINETUNE_EPOCHS, FINETUNE_LR

    p = sub.add_parser(
        "finetune", help="fine-tune a model on exported corrections",
        description="Fine-tune a GLNet checkpoint on an export of corrected/reviewed regions (glnet export) and "
        "report validation mIoU before and after on the export's held-out tiles.",
        epilog=FINETUNE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--from", dest="source", required=True, metavar="CKPT", help="the model to start from (never overwritten)")
    p.add_argument("--data", required=True, metavar="EXPORT_DIR", help="glnet export folder (or DeepGlobe layout)")
    p.add_argument("-o", "--output", required=True, metavar="NEW.pt", help="the fine-tuned checkpoint")
    p.add_argument("--stage", choices=["global", "global2local", "local2global"],
                   help="the stage to train (default: the checkpoint's mode)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=FINETUNE_EPOCHS, help=f"default {FINETUNE_EPOCHS}")
    p.add_argument("--lr", type=float, help=f"default {FINETUNE_LR:g}")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share held out when the export has no validation tiles (default 0.2)")  # fmt: skip
    p.add_argument("--mode", choices=["global", "global2local", "local2global"], help="the mode of an authors' --from file")
    p.add_argument("--global-from", metavar="CKPT_G",
                   help="the authors' global file (their local2global needs it), or the fixed global model for local2global")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=2, help="images per optimiser step (default 2)")
    p.add_argument("--sub-batch-size", type=int, default=6, help="patches per forward/backward pass (default 6)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never --from)")
    _add_common(p)
    p.set_defaults(func=cmd_finetune)


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
        classes=_classes(args), coarse_to_fine=_coarse_to_fine(args),
    )  # fmt: skip
    with tqdm(desc="train", unit="batch", disable=None, leave=False) as bar:
        best = train(config, _progress(bar, config.epochs))
    print(f"wrote {best}")
    return 0


def _progress(bar, epochs: int):
    def on_batch(epoch: int, done: int, total: int, loss: float) -> None:
        if done == 1:
            bar.reset(total=total)
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    return on_batch


def cmd_finetune(args) -> int:
    """Run ``glnet finetune``."""
    from tqdm import tqdm

    from .finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        source=Path(args.source), data=Path(args.data), output=Path(args.output), stage=args.stage,
        epochs=args.epochs, lr=args.lr, val_fraction=args.val_fraction, classes=_classes(args), mode=args.mode,
        global_from=Path(args.global_from) if args.global_from else None, batch_size=args.batch_size,
        sub_batch_size=args.sub_batch_size, precision=args.precision, device=args.device, seed=args.seed,
        overwrite=args.overwrite, coarse_to_fine=_coarse_to_fine(args),
    )  # fmt: skip
    with tqdm(desc="finetune", unit="batch", disable=None, leave=False) as bar:
        result = finetune(config, _progress(bar, config.epochs))
    print(f"validation mIoU on {result.val_tiles} held-out tile(s): before {result.miou_before:.4f}, "
          f"after {result.miou_after:.4f} ({result.epochs} epochs on {result.train_tiles} tiles)")  # fmt: skip
    print(f"wrote {result.output}")
    return 0
