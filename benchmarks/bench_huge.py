"""Streaming a huge image to OME-Zarr: time and peak memory against a
DeepGlobe-size (2448 px) image with the same model, in the same run.

    python benchmarks/bench_huge.py [--sizes 2448 20000] [--weights CKPT] [--workdir DIR] [--threads 2]

Each size runs `glnet segment IMAGE -o OUT.zarr` in its own process, so
peak RSS (ru_maxrss of that child) is that run's alone.  Inputs are
pyramidal tiled TIFFs from the synthetic land-cover generator, written once
into --workdir and reused.  Without --weights the untrained demo-size
checkpoint (ResNet-18, FPN width 64, global2local) is used: memory and
speed do not depend on the weights' values.  With --kill-at F the large
run is killed (SIGKILL) after a fraction F of its scenes, resumed with
--resume, and its level-0 labels compared with an uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure_inputs(workdir: Path, sizes: list[int], weights: str | None) -> tuple[dict[int, Path], str]:
    sys.path.insert(0, str(REPO / "sample_data"))
    from make_untrained_checkpoint import make_untrained_checkpoint

    from glnet.data.synthetic_files import write_scene

    workdir.mkdir(parents=True, exist_ok=True)
    images = {}
    for n in sizes:
        path = workdir / f"synthetic_{n}.tif"
        if not path.exists():
            t = time.perf_counter()
            write_scene(path, n, n, seed=0)
            print(f"wrote {path.name} in {time.perf_counter() - t:.0f} s", flush=True)
        images[n] = path
    ckpt = weights or str(make_untrained_checkpoint(workdir / "untrained_demo.glnet.pt"))
    return images, ckpt


def segment(image: Path, out: Path, ckpt: str, threads: int, extra: list[str], kill_after: float | None = None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "glnet",
        "segment",
        str(image),
        "-o",
        str(out),
        "--weights",
        ckpt,
        "--device",
        "cpu",
        "--threads",
        str(threads),
        *extra,
    ]
    t0 = time.perf_counter()
    log = out.with_suffix(".log")
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    if kill_after is not None:
        return {"killed_after_s": kill_after}
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: see {log}")
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2448, 20000])
    ap.add_argument("--weights", help="checkpoint (default: an untrained ResNet-18/64 global2local)")
    ap.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench_huge")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="also pass --workers N")
    ap.add_argument("--kill-at", type=float, help="kill the largest run after this fraction of its time, then resume")
    args = ap.parse_args()

    import numpy as np
    import zarr

    from glnet.inference.scenes import SceneGrid

    images, ckpt = ensure_inputs(args.workdir, sorted(args.sizes), args.weights)
    extra = ["--workers", str(args.workers)] if args.workers else []
    rows = []
    for n, image in images.items():
        out = args.workdir / f"labels_{n}.zarr"
        r = segment(image, out, ckpt, args.threads, [*extra, "--overwrite"])
        scenes = len(SceneGrid(n, n, 2448, 306))
        r.update(size=n, scenes=scenes, scenes_per_hour=3600 * scenes / r["seconds"])
        rows.append(r)
        print(
            f"{n:>6} px  {scenes:>4} scenes  {r['seconds']:8.1f} s  {r['scenes_per_hour']:7.0f} scenes/h  "
            f"peak RSS {r['peak_rss_mb']:6.0f} MB",
            flush=True,
        )
    base = rows[0]
    print("\n| image | scenes | s | scenes / hour | peak RSS MB | RSS vs first |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']}^2 | {r['scenes']} | {r['seconds']:.0f} | {r['scenes_per_hour']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x |"
        )

    if args.kill_at:
        n = max(images)
        whole = rows[-1]
        out = args.workdir / f"labels_{n}_resumed.zarr"
        segment(images[n], out, ckpt, args.threads, [*extra, "--overwrite"], kill_after=args.kill_at * whole["seconds"])
        r = segment(images[n], out, ckpt, args.threads, [*extra, "--resume"])
        a = zarr.open_array(str(args.workdir / f"labels_{n}.zarr" / "labels" / "glnet" / "s0"), mode="r")
        b = zarr.open_array(str(out / "labels" / "glnet" / "s0"), mode="r")
        same = all(np.array_equal(a[t : t + 4096], b[t : t + 4096]) for t in range(0, n, 4096))
        print(
            f"killed after {args.kill_at:.0%} of the run, resumed in {r['seconds']:.0f} s: "
            f"level 0 {'identical' if same else 'DIFFERENT'} to the uninterrupted run"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
