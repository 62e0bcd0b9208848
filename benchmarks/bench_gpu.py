"""GLNet on a CUDA GPU: images per second and peak GPU memory at 2448 x 2448.

    python benchmarks/bench_gpu.py                      # seeded weights, local2global and global2local
    python benchmarks/bench_gpu.py --weights W.pth --global-weights G.pth --modes local2global

For each mode and precision (fp32, bf16, fp16) it runs ``Segmenter.segment``
once to warm up (cuDNN plans, the CUDA context), then ``--images`` times,
synchronising the device around the timed loop, and reports:

* images/s of the whole call (global pass, patch batches, the result
  composed on the CPU: what a user waits for);
* ``torch.cuda.max_memory_allocated`` over the timed images;
* the share of pixels whose label equals fp32's.

Beside them the published figures it is measured against: ISDNet (CVPR
2022) 27.7 images/s on DeepGlobe, and GLNet's (CVPR 2019) reported GPU
memory under 2 GB (1865 MB on a 1080Ti) at inference; the authors' code
itself runs at about 0.2 images/s.  Timings do not depend on the
weights' values, so without ``--weights`` deterministic untrained weights in
the authors' layout are written to a temporary folder (as bench_engine.py).

Without a CUDA device it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # helpers: the seeded weights in the authors' layout
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "deepglobe_unlabeled" / "118757_sat.jpg"
ISDNET_IMAGES_PER_S = 27.7  # ISDNet (CVPR 2022) on DeepGlobe test, 2448 x 2448
GLNET_MEMORY_MB = 1865  # full GLNet (CVPR 2019), DeepGlobe test, inference GPU memory on a 1080Ti


def seeded_files(folder: Path) -> tuple[Path, Path]:
    from glnet.model import GLNet, GLNetConfig

    from helpers import save_authors_layout
    from helpers.reference import seeded_weights

    g = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 10), folder / "global.pth")
    m = save_authors_layout(seeded_weights(GLNet(GLNetConfig(7)), 11), folder / "model.pth")
    return m, g


def measure(args, mode: str, precision: str, image: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(images/s, peak MB, labels) of one configuration."""
    import torch

    from glnet.inference.spec import ModelSpec

    weights = args.global_weights if mode == "global" else args.weights
    spec = ModelSpec(
        weights=str(weights),
        mode=mode,
        global_weights=str(args.global_weights),
        device="cuda",
        precision=precision,
        batch_size=args.batch_size,
    )
    seg = spec.load()  # a fresh checkpoint per configuration: a Segmenter converts the one it takes
    labels = seg.segment(image).labels  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.images):
        seg.segment(image)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak_mb = torch.cuda.max_memory_allocated() / 2**20
    del seg
    torch.cuda.empty_cache()
    return args.images / seconds, peak_mb, labels


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(DEFAULT_IMAGE), help="a 2448 x 2448 DeepGlobe image (default: ../shared)")
    p.add_argument("--modes", nargs="+", default=["local2global", "global2local"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=4, help="patches per batch (default 4, the CPU default)")
    p.add_argument("--images", type=int, default=10, help="timed images per configuration (default 10)")
    p.add_argument("--weights", help="a checkpoint (default: seeded untrained weights in the authors' layout)")
    p.add_argument("--global-weights", help="local2global: the fixed global checkpoint")
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA device here (torch.cuda.is_available() is False); "
            "run it on a machine with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    from glnet.io.imageio import read_image

    if args.weights is None:
        args.weights, args.global_weights = seeded_files(Path(tempfile.mkdtemp(prefix="bench_gpu_")))
    image = read_image(args.image)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, image {Path(args.image).name} {image.shape[:2]}")
    print(f"batch {args.batch_size}, {args.images} timed images per row after one warm-up")
    print("| mode | precision | images/s | vs ISDNet 27.7 img/s | max_memory_allocated MB | labels = fp32 |")
    print("|---|---|---|---|---|---|")
    for mode in args.modes:
        reference = None
        for precision in args.precisions:
            rate, peak, labels = measure(args, mode, precision, image)
            if precision == "fp32":
                reference = labels
            agree = f"{100 * (labels == reference).mean():.2f}%" if reference is not None else "-"
            print(
                f"| {mode} | {precision} | {rate:.2f} | {rate / ISDNET_IMAGES_PER_S:.2f}x | {peak:.0f} | {agree} |",
                flush=True,
            )
    print(f"published: ISDNet {ISDNET_IMAGES_PER_S} images/s; GLNet {GLNET_MEMORY_MB} MB (< 2 GB) GPU memory")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
