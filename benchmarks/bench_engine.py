"""Time GLNet on a DeepGlobe-size image: our engine vs a naive loop of the same model.

    python benchmarks/bench_engine.py [--image IMG] [--modes ...] [--precisions fp32 bf16] [--threads 2]

Each configuration runs in its own process so peak RSS is that run's alone.
Baseline ("naive"): glnet.reference, the authors' evaluation restated
literally (one patch at a time, materialised concatenations, every ps3 kept,
float64 score canvases) on the same weights.  Weights are deterministic and
untrained: timings do not depend on them, agreement figures are strict.
On a CUDA machine it also reports images/s and torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test oracle: the authors' evaluation restated (tests/helpers)
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "deepglobe_unlabeled" / "118757_sat.jpg"


def run_one(args) -> dict:
    """One configuration, in this (child) process."""
    import torch

    from glnet.checkpoint import GLNetCheckpoint
    from glnet.classes import DEEPGLOBE
    from glnet.inference.engine import Segmenter
    from glnet.io.imageio import read_image
    from glnet.model import GLNet, GLNetConfig
    from glnet.runtime import set_threads

    from helpers.reference import evaluate, seeded_weights

    set_threads(args.threads)
    image = read_image(args.image)
    mode = args.mode
    model = seeded_weights(GLNet(GLNetConfig(7), global_only=mode == "global"), 11)
    fixed = seeded_weights(GLNet(GLNetConfig(7), global_only=True), 10) if mode == "local2global" else None
    n_patches = 1 if mode == "global" else 36
    cuda = args.device == "cuda"
    if args.impl == "naive":
        model, fixed = model.to(args.device).eval(), fixed.to(args.device).eval() if fixed is not None else None
        t0 = time.perf_counter()
        with torch.inference_mode():
            scores = evaluate(model, image, mode, global_model=fixed, sub_batch=1)
        if cuda:
            torch.cuda.synchronize()
        labels = scores.argmax(0) if mode != "global" else None
    else:
        # preparing the model (BatchNorm folding, channels-last) happens once per run, not per image
        seg = Segmenter(
            GLNetCheckpoint(mode, model, DEEPGLOBE, fixed),
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
        t0 = time.perf_counter()
        if cuda:  # warm-up outside the timing (cuDNN autotuning, allocator)
            seg.segment(image)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
        out = seg.segment(image)
        if cuda:
            torch.cuda.synchronize()
        labels = out.labels
    seconds = time.perf_counter() - t0
    result = {
        "mode": mode,
        "impl": args.impl,
        "precision": args.precision,
        "seconds": seconds,
        "patches_per_s": n_patches / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if cuda:
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["images_per_s"] = 1 / seconds
    if labels is not None and args.save_labels:
        np.save(args.save_labels, labels.astype(np.uint8))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--modes", nargs="+", default=["global", "global2local", "local2global"])
    p.add_argument("--precisions", nargs="+", default=["fp32"])
    p.add_argument("--no-baseline", action="store_true", help="skip the slow naive baseline")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the rows to this file")
    # internal: run one configuration
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--save-labels", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    import tempfile

    rows = []
    tmp = Path(tempfile.mkdtemp())
    for mode in args.modes:
        configs = [] if args.no_baseline else [("naive", "fp32")]
        configs += [("glnet", prec) for prec in args.precisions]
        for impl, prec in configs:
            labels = tmp / f"{mode}-{impl}-{prec}.npy"
            cmd = [
                sys.executable,
                __file__,
                "--one",
                "--mode",
                mode,
                "--impl",
                impl,
                "--precision",
                prec,
                "--image",
                args.image,
                "--threads",
                str(args.threads),
                "--batch-size",
                str(args.batch_size),
                "--device",
                args.device,
                "--save-labels",
                str(labels),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{mode} {impl} {prec} failed:\n{out.stderr}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {mode:13s} {impl:6s} {prec:5s} {row['seconds']:8.2f} s", file=sys.stderr, flush=True)
    # ratios against the naive baseline and agreement with our fp32, per mode
    for row in rows:
        base = next((r for r in rows if r["mode"] == row["mode"] and r["impl"] == "naive"), None)
        row["speedup_vs_naive"] = base["seconds"] / row["seconds"] if base else None
        ref = tmp / f"{row['mode']}-glnet-fp32.npy"
        mine = tmp / f"{row['mode']}-{row['impl']}-{row['precision']}.npy"
        row["agreement_vs_fp32"] = (
            float((np.load(ref) == np.load(mine)).mean()) if ref.exists() and mine.exists() else None
        )
    header = "| mode | implementation | precision | s/image | patches/s | peak RSS MB | speed-up vs naive | pixels = our fp32 |"
    print(header)
    print("|" + "---|" * 8)
    for r in rows:
        sp = f"{r['speedup_vs_naive']:.2f}x" if r["speedup_vs_naive"] else "-"
        ag = f"{100 * r['agreement_vs_fp32']:.3f}%" if r["agreement_vs_fp32"] is not None else "-"
        print(
            f"| {r['mode']} | {r['impl']} | {r['precision']} | {r['seconds']:.2f} | {r['patches_per_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {sp} | {ag} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
