"""Coarse-to-fine on a binary, imbalanced task: patches skipped, time, IoU.

    python benchmarks/bench_coarse_to_fine.py [--weights CKPT] [--save-model CKPT] [--threads 2] [--json OUT]

The task is water vs land made from the synthetic land-cover generator
(water is its sparsest class, about 3% of the pixels, absent from many
images).  Without ``--weights`` a small global2local model (ResNet-18 with
16 stem channels, FPN width 32, size_g = size_p = 128) is trained first with
``glnet.train`` (global stage, then global2local) on 512 px images; that
takes a few minutes on 2 CPU cores.  Held-out images are then segmented
normally and with coarse-to-fine at several margins, with the same model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from glnet.classes import ClassInfo, ClassTable

REPO = Path(__file__).resolve().parents[1]

WATER_VS_LAND = ClassTable((ClassInfo("land", (0, 0, 0)), ClassInfo("water", (0, 0, 255))))
SIZE = 512
TRAIN_SEEDS, TEST_SEEDS = range(100, 124), range(200, 212)


def write_data(folder: Path, seeds) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images and water masks in the DeepGlobe layout; returns them too."""
    from PIL import Image

    from glnet.data.synthetic import WATER, SyntheticScene
    from glnet.io.labels import index_to_colors

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        rgb, labels = SyntheticScene(SIZE, SIZE, seed=seed).render(0, 0, SIZE, SIZE)
        mask = (labels == WATER).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{seed}_sat.png")
        Image.fromarray(index_to_colors(mask, WATER_VS_LAND)).save(folder / f"{seed}_mask.png")
        out.append((rgb, mask))
    return out


def train_model(data: Path, work: Path, epochs_global: int, epochs_local: int, g: Path | None) -> tuple[Path, float]:
    from glnet.train import TrainConfig, train

    common = dict(
        data=data,
        size_g=128,
        size_p=128,
        batch_size=4,
        sub_batch_size=12,
        device="auto",
        classes=WATER_VS_LAND,
        exclude=(),
        val_fraction=0.15,
    )
    t0 = time.perf_counter()
    if g is None:
        g = train(
            TrainConfig(
                mode="global",
                output=work / "g.pt",
                epochs=epochs_global,
                lr=1e-3,
                backbone="resnet18",
                fpn_width=32,
                backbone_width=16,
                **common,
            )
        )
    g2l = train(
        TrainConfig(mode="global2local", output=work / "g2l.pt", init_from=g, epochs=epochs_local, lr=5e-4, **common)
    )
    return g2l, time.perf_counter() - t0


def evaluate(ckpt_path: Path, images, ctf) -> dict:
    from glnet.checkpoint import load_checkpoint
    from glnet.inference.engine import Segmenter
    from glnet.metrics import ConfusionMatrix

    seg = Segmenter(load_checkpoint(ckpt_path), device="auto", batch_size=12, coarse_to_fine=ctf)
    cm = ConfusionMatrix(2)
    skipped = total = 0
    seg.segment(images[0][0])  # warm-up, untimed
    t0 = time.perf_counter()
    for rgb, mask in images:
        session = seg.open(rgb)
        for _ in session.run():
            pass
        cm.update(mask, session.result().labels)
        skipped += session.patches_skipped
        total += len(session.origins)
    seconds = time.perf_counter() - t0
    scores = cm.scores()
    return {
        "setting": "normal" if ctf is None else f"coarse-to-fine, margin {ctf.margin}",
        "patches": total,
        "skipped": skipped,
        "seconds": round(seconds, 2),
        "water_iou": round(float(scores.iou[1]), 4),
        "miou": round(float(scores.mean_iou), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a water-vs-land global2local checkpoint (default: train one)")
    parser.add_argument("--save-model", type=Path, help="keep the trained model here")
    parser.add_argument(
        "--global", dest="global_ckpt", type=Path, help="skip the global stage: start global2local from this"
    )
    parser.add_argument("--epochs-global", type=int, default=30)
    parser.add_argument("--epochs-local", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=len(TRAIN_SEEDS))
    parser.add_argument("--test-images", type=int, default=len(TEST_SEEDS))
    parser.add_argument("--margins", default="0,32,64", help="coarse-to-fine margins in px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    from glnet.inference.coarse import CoarseToFine
    from glnet.runtime import set_threads

    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        test = write_data(work / "test", TEST_SEEDS[: args.test_images])
        weights, train_seconds = args.weights, None
        if weights is None:
            write_data(work / "train", TRAIN_SEEDS[: args.train_images])
            weights, train_seconds = train_model(
                work / "train", work, args.epochs_global, args.epochs_local, args.global_ckpt
            )
            if args.save_model:
                args.save_model.write_bytes(weights.read_bytes())
        water = sum(int(m.sum()) for _, m in test) / (len(test) * SIZE * SIZE)
        rows = [evaluate(weights, test, None)]
        rows += [evaluate(weights, test, CoarseToFine(margin=int(m))) for m in args.margins.split(",")]
    print(
        f"{len(test)} held-out {SIZE} px images, water {water:.1%} of the pixels"
        + (f"; model trained in {train_seconds:.0f} s" if train_seconds else "")
    )
    print("| setting | patches skipped | time (s) | water IoU | mIoU |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['skipped']} / {r['patches']} | {r['seconds']} | {r['water_iou']} | {r['miou']} |")
    if args.json:
        args.json.write_text(
            json.dumps({"water_fraction": water, "train_seconds": train_seconds, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
