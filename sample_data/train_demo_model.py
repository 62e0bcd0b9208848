"""Train the shipped demo model (napari_glnet/data/demo.glnet.pt) from scratch on a CPU.

    python sample_data/train_demo_model.py [--workdir .cache/demo_training] [--out napari_glnet/data/demo.glnet.pt]

The recipe is the paper's, reduced so that two CPU cores finish it in well
under half an hour: a ResNet-18 trunk with a 24-channel stem (a quarter of
torchvision's widths) and a 32-channel FPN, size_g = size_p = 256, on 48
synthetic 1024 x 1024 land-cover scenes (``glnet.data.synthetic``, seeds 100-147;
42 train, 6 validation: 12 scenes over-fitted at validation mIoU 0.75), two
stages:

1. global: 50 epochs, Adam lr 1e-3, batch 4;
2. global2local from (1): 10 epochs, lr 5e-4 (the local branch starts from
   random weights: no ImageNet download is possible here, so the authors'
   2e-5 is too small).

``--local2global N`` also trains the third stage for N epochs from (1) and
(2) (not shipped: it is there to compare the stages, docs/benchmarks.md).

The best global2local checkpoint is stored in fp16 at ``--out`` with its
validation mIoU and the sample scene's mIoU in ``extra``; then the model is
scored on the plugin's sample scene (a scene it never saw).  Every step is
skipped when its output exists, so an interrupted run continues (the stages
themselves resume with ``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_SEEDS = range(100, 148)
SCENE_SIZE = 1024
# the plugin's sample scene (napari_glnet/_sample_data.py): never trained on
SAMPLE_SEED, SAMPLE_SIZE = 0, 1024
TRAINED_ON = (
    f"synthetic land-cover scenes only (glnet.data.synthetic, {len(TRAIN_SEEDS) - 6} scenes of {SCENE_SIZE} px), "
    "never on real imagery"
)
COMMON = dict(val_fraction=0.125, size_g=256, size_p=256, batch_size=4, device="cpu", seed=0)


def make_data(folder: Path) -> None:
    from glnet.data.synthetic_files import write_scene

    folder.mkdir(parents=True, exist_ok=True)
    for seed in TRAIN_SEEDS:
        image = folder / f"synthetic_{seed}_sat.png"
        if not image.exists():
            write_scene(image, SCENE_SIZE, SCENE_SIZE, seed=seed, mask_path=folder / f"synthetic_{seed}_mask.png")


def train_stage(config, resume: bool) -> float:
    """Run the stage unless its checkpoint exists; its training seconds, from its log."""
    import csv

    from glnet.train import train
    from glnet.train.loop import sibling

    if config.output.exists() and not resume:
        logging.info("%s exists: stage skipped", config.output)
    else:
        train(config)
    with sibling(config.output, "log").open(newline="") as f:
        return sum(float(row["seconds"]) for row in csv.DictReader(f))


def sample_scene_miou(weights: Path) -> float:
    """mIoU (classes 1-6, the DeepGlobe protocol) on the plugin's sample scene."""
    from glnet.checkpoint import load_checkpoint
    from glnet.data.synthetic import SyntheticScene
    from glnet.inference.engine import Segmenter
    from glnet.metrics import ConfusionMatrix

    image, truth = SyntheticScene(SAMPLE_SIZE, SAMPLE_SIZE, SAMPLE_SEED).render(0, 0, SAMPLE_SIZE, SAMPLE_SIZE)
    ckpt = load_checkpoint(weights)
    cm = ConfusionMatrix(len(ckpt.classes))
    cm.update(truth, Segmenter(ckpt, device="cpu").segment(image).labels)
    return cm.scores(exclude=[0]).mean_iou


def main(argv: list[str] | None = None) -> int:
    from glnet.checkpoint import load_checkpoint, save_checkpoint
    from glnet.errors import GLNetError
    from glnet.train import TrainConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=REPO / ".cache" / "demo_training")
    p.add_argument("--out", type=Path, default=REPO / "napari_glnet" / "data" / "demo.glnet.pt")
    p.add_argument("--global-epochs", type=int, default=50)
    p.add_argument("--local-epochs", type=int, default=10)
    p.add_argument("--local2global", type=int, default=0, metavar="N", help="also train local2global for N epochs")
    p.add_argument("--resume", action="store_true", help="continue interrupted stages from their .last.pt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.workdir
    try:
        make_data(work / "data")
        data = work / "data"
        g = TrainConfig(
            data=data,
            mode="global",
            output=work / "global.pt",
            epochs=args.global_epochs,
            lr=1e-3,
            backbone="resnet18",
            backbone_width=24,
            fpn_width=32,
            resume=args.resume,
            **COMMON,
        )
        seconds = train_stage(g, args.resume)
        gl = TrainConfig(
            data=data,
            mode="global2local",
            output=work / "global2local.pt",
            init_from=g.output,
            epochs=args.local_epochs,
            lr=5e-4,
            sub_batch_size=8,
            resume=args.resume,
            **COMMON,
        )
        seconds += train_stage(gl, args.resume)
        if args.local2global:
            lg = TrainConfig(
                data=data,
                mode="local2global",
                output=work / "local2global.pt",
                init_from=gl.output,
                global_from=g.output,
                epochs=args.local2global,
                lr=5e-4,
                sub_batch_size=8,
                resume=args.resume,
                **COMMON,
            )
            train_stage(lg, args.resume)
        ckpt = load_checkpoint(gl.output)
        val = ckpt.extra.get("val_miou")
        sample = sample_scene_miou(gl.output)
        ckpt.extra = {
            "demo": True,
            "val_miou": val,
            "sample_scene_miou": sample,
            "train_seconds": round(seconds),
            "recipe": "sample_data/train_demo_model.py",
            "trained_on": TRAINED_ON,
        }
        save_checkpoint(ckpt, args.out, half=True)
    except GLNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): validation mIoU {val:.3f}, "
        f"sample scene mIoU {sample:.3f}, training {seconds / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
