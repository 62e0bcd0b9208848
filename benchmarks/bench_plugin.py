"""The napari plugin in use: how soon labels appear, and whether the GUI stalls.

    python benchmarks/bench_plugin.py IMAGE.jpg [--huge] [--weights CKPT] [--threads 1 2] [--view fit|screen]

Needs a screen (run under ``xvfb-run -a -s "-screen 0 1280x1024x24"``).  For
each image and torch thread count it opens a real napari viewer with the
image (through our reader, as File > Open does), docks the GLNet widget,
presses "Segment view" and measures, on the GUI thread:

* **model loaded s**: from the first press to the checkpoint loaded and the
  label store open (once per session);
* **overview s**: from the press to the global-branch overview on screen
  (includes the loading above);
* **refined s**: from the press to the last refined tile in the store;
* **stall ms (run)**: the longest gap between ticks of a 10 ms QTimer while
  the worker runs (what a user feels as a frozen window);
* **stall ms (pan)**: the same while the camera pans every 30 ms for 5 s
  during a second segmentation (napari also reads image tiles then); **pan
  moves**: how many of the 30 ms pan steps ran in those 5 s (166 at best);
* **GUI CPU ms**: the most CPU time the GUI thread itself used between two
  ticks: the part of a stall that is work on the GUI thread, not waiting for
  a CPU on a busy machine (or for the GIL).

``--huge`` adds the 20000 px pyramidal TIFF of ``benchmarks/bench_huge.py``
(generated once into --workdir, reused), viewed at zoom 1 (one screen:
about one scene).  Without --weights the untrained demo-size checkpoint
(ResNet-18, FPN 64, global2local) is used: timings do not depend on weight
values.  Every run writes into a fresh label store in a temporary folder.
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
sys.path.insert(0, str(REPO / "benchmarks"))


class TickRecorder:
    """A 10 ms QTimer whose tick times show how long the event loop was blocked."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[tuple[float, float]] = []  # (wall, GUI thread CPU) seconds
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append((time.perf_counter(), time.thread_time())))
        self.timer.start()

    def longest_gap_ms(self, start: float, stop: float, cpu: bool = False) -> float:
        """Longest wall gap between ticks in [start, stop]; with ``cpu``, the
        most GUI-thread CPU time spent between two ticks (work the GUI thread
        did itself, as opposed to waiting for a CPU on a busy machine)."""
        inside = np.array([t for t in self.ticks if start <= t[0] <= stop])
        if len(inside) < 2:
            return float("nan")
        return float(np.diff(inside[:, 1 if cpu else 0]).max() * 1000)


def run_until(condition, timeout: float = 3600) -> None:
    """Run the Qt event loop (no busy waiting) until ``condition()`` or timeout."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(5)
    deadline = time.perf_counter() + timeout
    poll.timeout.connect(lambda: (condition() or time.perf_counter() > deadline) and loop.quit())
    poll.start()
    loop.exec()
    poll.stop()


def measure(image: Path, ckpt: str, threads: int, view: str, store_dir: Path) -> dict:
    import napari

    from napari_glnet._widget import SegmentWidget
    from napari_glnet.session import Overview

    viewer = napari.Viewer(title="bench_plugin")
    viewer.window.resize(1280, 1000)
    (layer,) = viewer.open(str(image), plugin="napari-glnet")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GLNet", area="right")
    widget.set_checkpoint(ckpt)
    widget.device.value = "cpu"
    widget.store.value = store_dir / f"{image.stem}-{threads}.zarr"
    ctl = widget.controller
    ctl.threads = threads
    run_until(lambda: widget._classes_worker is None, 120)
    h, w = ctl._image_shape(layer)
    viewer.reset_view()
    if view == "screen":  # one screenful at full resolution, in the middle
        viewer.scene.camera.zoom = 1.0
        viewer.scene.camera.center = (h / 2, w / 2)
    run_until(lambda: False, 1.0)  # let the first frames draw
    region = ctl.visible_region()
    ticks = TickRecorder()

    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    widget.start()
    worker = ctl.worker

    def mark(item):
        name = "overview" if isinstance(item, Overview) else "ready" if type(item).__name__ == "_Ready" else None
        if name:
            marks.setdefault(name, time.perf_counter())

    worker.yielded.connect(mark)
    run_until(lambda: not ctl.running)
    t1 = time.perf_counter()
    result = {
        "image": f"{image.name} ({h}x{w})",
        "threads": threads,
        "view": f"{region[2] - region[0]}x{region[3] - region[1]} px",
        "batches": ctl.session.batches,
        "load_s": marks.get("ready", float("nan")) - t0,
        "overview_s": marks.get("overview", float("nan")) - t0,
        "refined_s": t1 - t0,
        "stall_run_ms": ticks.longest_gap_ms(t0, t1),
        "busy_run_ms": ticks.longest_gap_ms(t0, t1, cpu=True),
    }

    # pan while a second view is being segmented
    viewer.scene.camera.zoom = max(viewer.scene.camera.zoom, 1.0)
    cy, cx = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    step = 0.25 * (region[3] - region[1])
    viewer.scene.camera.center = (cy, min(w, cx + 4 * step))
    widget.start()
    t2 = time.perf_counter()
    from qtpy.QtCore import QTimer

    pan = QTimer()
    pan.setInterval(30)
    moves = {"n": 0}

    def move():
        moves["n"] += 1
        y, x = viewer.scene.camera.center[-2:]
        viewer.scene.camera.center = (y, x - step / 10)

    pan.timeout.connect(move)
    pan.start()
    run_until(lambda: time.perf_counter() - t2 > 5 or not ctl.running, 60)
    pan.stop()
    t3 = time.perf_counter()
    result["stall_pan_ms"] = ticks.longest_gap_ms(t2, t3)
    result["busy_pan_ms"] = ticks.longest_gap_ms(t2, t3, cpu=True)
    result["pan_moves"] = moves["n"]
    ctl.cancel()
    run_until(lambda: not ctl.running, 600)
    ticks.timer.stop()
    viewer.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path, help="a 2448 px DeepGlobe image (../shared/data/deepglobe_unlabeled/*.jpg)")
    ap.add_argument("--huge", action="store_true", help="also the 20000 px pyramidal TIFF (one screen of it)")
    ap.add_argument("--weights", help="checkpoint (default: the untrained ResNet-18/64 global2local)")
    ap.add_argument(
        "--workdir", type=Path, default=REPO / ".cache" / "bench_huge", help="where bench_huge keeps its inputs"
    )
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch threads in the worker (default: the controller's choice)",
    )
    ap.add_argument(
        "--view",
        choices=["fit", "screen"],
        default="fit",
        help="the 2448 px image: whole (fit) or one screen at zoom 1",
    )
    args = ap.parse_args()

    from bench_huge import ensure_inputs

    from glnet.runtime import available_cpus

    images, ckpt = ensure_inputs(args.workdir, [20000] if args.huge else [], args.weights)
    runs = [(args.image, args.view)] + ([(images[20000], "screen")] if args.huge else [])
    cpus = available_cpus()
    default_threads = max(1, cpus - 1) if cpus > 2 else cpus
    rows = []
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        os.environ["GLNET_CACHE_DIR"] = cache  # the JPEG's pyramid cache too: nothing left behind
        for image, view in runs:
            for threads in args.threads or [default_threads]:
                r = measure(image, ckpt, threads, view, Path(tmp))
                rows.append(r)
                print(r, flush=True)
    print(f"\n{cpus} CPUs, load average {os.getloadavg()[0]:.1f} at the end\n")
    columns = [
        ("image", "image", "{}"),
        ("view", "view", "{}"),
        ("torch threads", "threads", "{}"),
        ("patch batches", "batches", "{}"),
        ("model loaded s", "load_s", "{:.2f}"),
        ("overview s", "overview_s", "{:.2f}"),
        ("refined s", "refined_s", "{:.1f}"),
        ("stall ms (run)", "stall_run_ms", "{:.0f}"),
        ("GUI CPU ms (run)", "busy_run_ms", "{:.0f}"),
        ("stall ms (pan)", "stall_pan_ms", "{:.0f}"),
        ("GUI CPU ms (pan)", "busy_pan_ms", "{:.0f}"),
        ("pan moves", "pan_moves", "{}"),
    ]
    print("| " + " | ".join(title for title, _, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt.format(r[key]) for _, key, fmt in columns) + " |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
