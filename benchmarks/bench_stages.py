"""Compare GLNet stages (global, global2local, local2global) on held-out synthetic scenes.

    python benchmarks/bench_stages.py global.pt global2local.pt local2global.pt [--seeds 0 200 201 202 203]

Each checkpoint segments the same unseen synthetic scenes (``glnet.data.synthetic``;
the defaults are the plugin's sample scene, seed 0, and four more), and the
table gives mIoU over classes 1-6 (DeepGlobe's protocol) and per-class IoU.
Water (thin rivers) and urban (roads of 4-10 px, buildings) are the fine
structures that a 4x-downsampled global view blurs.  The demo recipe
(``sample_data/train_demo_model.py --local2global N``) writes the three
checkpoints.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import torch

    from glnet.checkpoint import load_checkpoint
    from glnet.data.synthetic import SyntheticScene
    from glnet.inference.engine import Segmenter
    from glnet.metrics import ConfusionMatrix

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 200, 201, 202, 203])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scenes = [SyntheticScene(args.size, args.size, s).render(0, 0, args.size, args.size) for s in args.seeds]
    rows = []
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        seg = Segmenter(ckpt, device="cpu")
        cm = ConfusionMatrix(len(ckpt.classes))
        t0 = time.perf_counter()
        for image, truth in scenes:
            cm.update(truth, seg.segment(image).labels)
        scores = cm.scores(exclude=[0])
        rows.append((path, ckpt.mode, scores, (time.perf_counter() - t0) / len(scenes), ckpt.classes.names))
    names = rows[0][4]
    print(f"held-out scenes: seeds {args.seeds}, {args.size} px")
    print("| checkpoint | mode | mIoU | " + " | ".join(names[1:]) + " | s/scene |")
    print("|---" * (len(names) + 3) + "|")
    for path, mode, scores, seconds, _ in rows:
        ious = " | ".join(f"{x:.3f}" for x in np.asarray(scores.iou)[1:])
        print(f"| {path} | {mode} | {scores.mean_iou:.3f} | {ious} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
