"""``glnet finetune``: a model retrained on exported corrections, with the
held-out mIoU before and after."""

from __future__ import annotations

import argparse
from pathlib import Path

from glnet.cli.common import coarse_to_fine
from glnet.cli.train import add_training_args, batch_progress, class_table
from glnet.constants import Mode
from glnet.train.finetune import FINETUNE_EPOCHS, FINETUNE_LR

EXAMPLES = """examples:
  # retrain on the regions corrected in napari (glnet export), same stage as the model
  glnet finetune --from demo.glnet.pt --data retrain/ -o demo-tuned.pt
  # the authors' global2local file, 10 epochs, only patches near buildings
  glnet finetune --from fpn_deepglobe_global2local.pth --mode global2local --data retrain/ \\
      --classes buildings.csv --coarse-to-fine -o buildings.pt --epochs 10
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on exported corrections",
        description="Fine-tune a GLNet checkpoint on an export of corrected/reviewed regions (glnet export) and "
        "report validation mIoU before and after on the export's held-out tiles.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from", dest="source", required=True, metavar="CKPT", help="the model to start from (never overwritten)"
    )
    p.add_argument("--data", required=True, metavar="EXPORT_DIR", help="glnet export folder (or DeepGlobe layout)")
    p.add_argument("-o", "--output", required=True, metavar="NEW.pt", help="the fine-tuned checkpoint")
    p.add_argument("--stage", choices=Mode.choices(), help="the stage to train (default: the checkpoint's mode)")
    p.add_argument("--epochs", type=int, default=FINETUNE_EPOCHS, help=f"default {FINETUNE_EPOCHS}")
    p.add_argument("--lr", type=float, help=f"default {FINETUNE_LR:g}")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share held out when the export has no validation tiles (default 0.2)",
    )
    p.add_argument("--mode", choices=Mode.choices(), help="the mode of an authors' --from file")
    p.add_argument(
        "--global-from",
        metavar="CKPT_G",
        help="the authors' global file (their local2global needs it), or the fixed global model for local2global",
    )
    p.add_argument("--batch-size", type=int, default=2, help="images per optimiser step (default 2)")
    p.add_argument("--sub-batch-size", type=int, default=6, help="patches per forward/backward pass (default 6)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never --from)")
    add_training_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from glnet.train.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        source=Path(args.source),
        data=Path(args.data),
        output=Path(args.output),
        stage=args.stage,
        epochs=args.epochs,
        lr=args.lr,
        val_fraction=args.val_fraction,
        classes=class_table(args),
        mode=args.mode,
        global_from=Path(args.global_from) if args.global_from else None,
        batch_size=args.batch_size,
        sub_batch_size=args.sub_batch_size,
        precision=args.precision,
        device=args.device,
        seed=args.seed,
        overwrite=args.overwrite,
        coarse_to_fine=coarse_to_fine(args),
    )
    with tqdm(desc="finetune", unit="batch", disable=None, leave=False) as bar:
        result = finetune(config, batch_progress(bar, config.epochs))
    print(
        f"validation mIoU on {result.val_tiles} held-out tile(s): before {result.miou_before:.4f}, "
        f"after {result.miou_after:.4f} ({result.epochs} epochs on {result.train_tiles} tiles)"
    )
    print(f"wrote {result.output}")
    return 0
