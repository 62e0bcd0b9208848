"""Time the review side on a huge label store: whole-image IoU and its update after an edit.

    python benchmarks/bench_review.py [--size 20000] [--workdir /tmp/bench_review]

Builds a SIZE x SIZE label store (blocky labels, written strip by strip) and a
ground truth as an on-disk zarr array of the same size, then measures what the
napari IoU panel does: the first whole-image count (block by block, never the
whole image in memory), an accepted 1024 x 1024 edit (store.write, edit=True),
the recount after it (only the touched blocks), and peak RSS.  No Qt.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import zarr

from glnet.classes import DEEPGLOBE
from glnet.store.labelstore import LabelStore
from napari_glnet.region_metrics import StoreConfusion


def blocky(rows: int, cols: int, top: int, seed: int) -> np.ndarray:
    """Deterministic 64-px blocks of classes with some noise, for rows [top, top+rows)."""
    r = (np.arange(top, top + rows) // 64)[:, None]
    c = (np.arange(cols) // 64)[None, :]
    base = ((r * 7919 + c * 104729 + seed) % 7).astype(np.uint8)
    noise = (np.arange(top, top + rows)[:, None] * 31 + np.arange(cols)[None, :] * 17 + seed) % 11 == 0
    return np.where(noise, (base + 1) % 7, base).astype(np.uint8)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_review"))
    args = p.parse_args()
    n = args.size
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    t0 = time.perf_counter()
    store = LabelStore.create(args.workdir / "pred.zarr", (n, n), DEEPGLOBE, chunk=512, min_size=256)
    truth = zarr.open_array(args.workdir / "truth.zarr", mode="w", shape=(n, n), chunks=(512, 512), dtype=np.uint8)
    for top in range(0, n, 512):
        rows = min(512, n - top)
        store.write((top, 0, top + rows, n), blocky(rows, n, top, 0), edit=False)
        truth[top : top + rows] = blocky(rows, n, top, 3)
    build_s = time.perf_counter() - t0
    rss_before = rss_mb()

    conf = StoreConfusion(store, truth)
    t0 = time.perf_counter()
    first = conf.matrix()
    first_s = time.perf_counter() - t0
    cached_t0 = time.perf_counter()
    conf.matrix()
    cached_s = time.perf_counter() - cached_t0

    region = (n // 2, n // 2, n // 2 + 1024, n // 2 + 1024)
    t0 = time.perf_counter()
    store.write(region, np.full((1024, 1024), 5, np.uint8), edit=True)
    accept_s = time.perf_counter() - t0
    conf.invalidate(region)
    pending = conf.pending_pixels((0, 0, n, n))
    t0 = time.perf_counter()
    after = conf.matrix()
    update_s = time.perf_counter() - t0
    assert first.matrix.sum() == after.matrix.sum() == n * n
    print(
        json.dumps(
            {
                "size": n,
                "block": conf.block,
                "build_s": round(build_s, 1),
                "first_whole_image_iou_s": round(first_s, 2),
                "cached_recount_s": round(cached_s, 4),
                "accept_1024px_edit_s": round(accept_s, 3),
                "recount_after_edit_s": round(update_s, 3),
                "recounted_px": pending,
                "peak_rss_mb_before_count": round(rss_before),
                "peak_rss_mb": round(rss_mb()),
                "mIoU": round(after.scores(exclude=(0,)).mean_iou, 4),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
