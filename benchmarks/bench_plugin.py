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
* **software paint CPU s**: CPU time of Mesa's llvmpipe threads from the
  press to the end (software OpenGL: drawing the window takes the model's cores);
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
import itertools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DEMO = REPO / "napari_glnet" / "data" / "demo.glnet.pt"


class StackSampler:
    """Samples the GUI thread's Python stack every ``every`` s from a thread
    of its own, so a stall can be attributed: the frames seen during it."""

    def __init__(self, every: float = 0.01) -> None:
        import threading

        self.main = threading.main_thread().ident
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.others: list[tuple[float, tuple[str, ...]]] = []  # the other threads' (the worker's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        import threading

        me = threading.get_ident()
        while not self._stop.wait(every):
            now = time.perf_counter()
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                names = []
                while frame is not None and len(names) < 40:  # code names only: no source read
                    names.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}")
                    frame = frame.f_back
                names = tuple(reversed(names))
                (self.samples if ident == self.main else self.others).append((now, names))

    def profile(self, start: float, stop: float, top: int = 12) -> list[str]:
        """The other threads' functions seen most often in [start, stop]
        (each counted once per sample, idle pool threads left out)."""
        from collections import Counter

        seen: Counter = Counter()
        n = 0
        for t, names in self.others:
            idle = (
                names[-1].endswith("thread.py:_worker")
                or any(  # a pool thread waiting in C for work
                    x.endswith((":wait", ":_wait_for_tstate_lock", ":get", ":select")) for x in names[-2:]
                )
            )
            if start <= t <= stop and not idle:
                n += 1
                seen.update(set(names))
        return [f"{c / max(n, 1):.0%} {name}" for name, c in seen.most_common(top)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def why(self, start: float, stop: float, depth: int = 6) -> str:
        """The most frequent stack tail (``depth`` frames below our or napari's
        outermost handler) among the samples in [start, stop]."""
        from collections import Counter

        tails = Counter()
        for t, names in self.samples:
            if start <= t <= stop:
                ours = [i for i, n in enumerate(names) if n.split(":")[0] in _OURS]
                cut = names[ours[0] :] if ours else names
                tails[" > ".join(cut[: depth + 4])] += 1
        if not tails:
            return "?"
        (tail, n), *_ = tails.most_common(1)
        return f"{n}/{sum(tails.values())} samples: {tail}"


_OURS = {"controller.py", "view_worker.py", "drawing.py", "session.py", "_widget.py", "_review_widget.py", "review.py"}


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

    def gaps(self, start: float, stop: float) -> list[tuple[float, float]]:
        """(gap ms, gap start) of every tick interval in [start, stop]."""
        inside = [t[0] for t in self.ticks if start <= t[0] <= stop]
        return [((b - a) * 1000, a) for a, b in itertools.pairwise(inside)]


def software_paint_cpu() -> float:
    """CPU seconds used so far by this process's llvmpipe threads (Mesa's
    software OpenGL drawing the window: 0 on a GPU-drawn desktop)."""
    total = 0.0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if not f.read().startswith("llvmpipe"):
                    continue
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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


def _scene_canvas(viewer):
    """vispy's SceneCanvas of the viewer (its draw event: a frame on screen)."""
    return viewer.window._qt_viewer.canvas._scene_canvas


def measure(image: Path, ckpt: str, threads: int, view: str, store_dir: Path, sampler: StackSampler) -> dict:
    import napari

    from napari_glnet._widget import SegmentWidget
    from napari_glnet.session import Overview
    from napari_glnet.view_worker import Done, layer_pixels

    viewer = napari.Viewer(title="bench_plugin")
    viewer.window.resize(1280, 1000)
    (layer,) = viewer.open(str(image), plugin="napari-glnet")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GLNet", area="right")
    ctl = widget.controller
    ctl.threads = threads
    h, w = ctl._image_shape(layer)
    viewer.reset_view()
    if view == "screen":  # one screenful at full resolution, in the middle
        viewer.scene.camera.zoom = 1.0
        viewer.scene.camera.center = (h / 2, w / 2)
    run_until(lambda: False, 1.0)  # let the first frames draw
    ticks = TickRecorder()
    # the model loads in the background as soon as a checkpoint is chosen
    tl = time.perf_counter()
    widget.set_checkpoint(ckpt)
    widget.device.value = "cpu"
    widget.store.value = store_dir / f"{image.stem}-{threads}.zarr"
    run_until(
        lambda: (
            ctl._runner.segmenter is not None
            and not ctl.running
            and not widget._preload_timer.isActive()
            and widget._classes_worker is None
        ),
        300,
    )
    load_end = time.perf_counter()
    region = ctl.visible_region()
    spec = widget.model_spec().replace(threads=threads)

    marks: dict[str, float] = {}
    done: dict[str, tuple] = {}
    drawn = _scene_canvas(viewer).events.draw

    def on_draw(_event=None):
        if "overview" in marks:
            marks.setdefault("overview_drawn", time.perf_counter())

    drawn.connect(on_draw)
    paint0 = software_paint_cpu()
    t0 = time.perf_counter()
    widget.start()
    worker = ctl.worker

    def mark(item):
        if isinstance(item, Overview):
            marks.setdefault("overview", time.perf_counter())

    worker.yielded.connect(mark)
    worker.returned.connect(lambda out: isinstance(out, Done) and done.setdefault("region", out.region))
    run_until(lambda: not ctl.running)
    t1 = time.perf_counter()
    paint = software_paint_cpu() - paint0
    run_until(lambda: False, 0.5)  # the last tile drawn
    gaps = ticks.gaps(t0, t1 + 0.5)
    worst = sorted(gaps, reverse=True)[:3]
    result = {
        "image": f"{image.name} ({h}x{w})",
        "threads": threads,
        "view": f"{region[2] - region[0]}x{region[3] - region[1]} px",
        "batches": ctl.session.batches,
        "load_s": load_end - tl,
        "stall_load_ms": ticks.longest_gap_ms(tl, load_end),
        "overview_s": marks.get("overview", float("nan")) - t0,
        "overview_drawn_s": marks.get("overview_drawn", float("nan")) - t0,
        "refined_s": t1 - t0,
        "paint_cpu_s": paint,
        "stall_run_ms": max((g for g, _ in gaps), default=float("nan")),
        "busy_run_ms": ticks.longest_gap_ms(t0, t1 + 0.5, cpu=True),
        "over_50": sum(g > 50 for g, _ in gaps),
        "over_100": sum(g > 100 for g, _ in gaps),
        "p99_ms": float(np.percentile([g for g, _ in gaps], 99)) if gaps else float("nan"),
        "why": [f"{g:.0f} ms: {sampler.why(a, a + g / 1000)}" for g, a in worst if g > 50],
        "worker": sampler.profile(t0, t1, 25),
    }
    drawn.disconnect(on_draw)
    pixels = layer_pixels(layer)

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
    pan_gaps = sorted(ticks.gaps(t2, t3), reverse=True)[:2]
    result["why"] += [f"pan {g:.0f} ms: {sampler.why(a, a + g / 1000)}" for g, a in pan_gaps if g > 50]
    ctl.cancel()
    run_until(lambda: not ctl.running, 600)
    ticks.timer.stop()
    viewer.close()
    result["engine_s"] = engine_seconds(spec, pixels, done.get("region", region))
    result["ratio"] = result["refined_s"] / result["engine_s"]
    return result


def engine_seconds(spec, pixels, region) -> float:
    """The library alone on the same patches: the scenes covering ``region``,
    their patches run and blended (what the plugin's refinement computes,
    without a viewer, a label store or tiles)."""
    from glnet.inference.scenes import SceneSession

    scenes = SceneSession(spec.load(), pixels)
    t = time.perf_counter()
    for _ in scenes.run(region):
        pass
    scenes.result(region)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path, help="a 2448 px DeepGlobe image (../shared/data/deepglobe_unlabeled/*.jpg)")
    ap.add_argument("--huge", action="store_true", help="also the 20000 px pyramidal TIFF (one screen of it)")
    ap.add_argument("--weights", default=str(DEMO), help="checkpoint (default: the demo model)")
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
        default="screen",
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
    sampler = StackSampler()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        os.environ["GLNET_CACHE_DIR"] = cache  # the JPEG's pyramid cache too: nothing left behind
        for image, view in runs:
            for threads in args.threads or [default_threads]:
                r = measure(image, ckpt, threads, view, Path(tmp), sampler)
                rows.append(r)
                print(r, flush=True)
    sampler.stop()
    end = os.getloadavg()
    print(
        f"\n{cpus} CPUs ({platform.processor() or platform.machine()}), load average (1 min) {load[0]:.1f} at the start, {end[0]:.1f} at the end\n"
    )
    columns = [
        ("image", "image", "{}"),
        ("view", "view", "{}"),
        ("torch threads", "threads", "{}"),
        ("patch batches", "batches", "{}"),
        ("model loaded s (stall ms)", "load", "{}"),
        ("overview on screen s", "overview_drawn_s", "{:.2f}"),
        ("refined s", "refined_s", "{:.1f}"),
        ("engine s", "engine_s", "{:.1f}"),
        ("refined / engine", "ratio", "{:.2f}"),
        ("software paint CPU s", "paint_cpu_s", "{:.1f}"),
        ("stall ms (run)", "stall_run_ms", "{:.0f}"),
        ("GUI CPU ms (run)", "busy_run_ms", "{:.0f}"),
        ("gaps > 50 / > 100 ms", "gaps", "{}"),
        ("p99 gap ms", "p99_ms", "{:.0f}"),
        ("stall ms (pan)", "stall_pan_ms", "{:.0f}"),
        ("GUI CPU ms (pan)", "busy_pan_ms", "{:.0f}"),
        ("pan moves", "pan_moves", "{}"),
    ]
    print("| " + " | ".join(title for title, _, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        r["load"] = f"{r['load_s']:.2f} ({r['stall_load_ms']:.0f})"
        r["gaps"] = f"{r['over_50']} / {r['over_100']}"
        print("| " + " | ".join(fmt.format(r[key]) for _, key, fmt in columns) + " |")
    print("\nlongest gaps, with the GUI thread's most frequent stack during each:")
    for r in rows:
        for line in r["why"]:
            print(f"  {r['image']}: {line}")
    print("\nthe worker thread's functions while refining (share of samples):")
    for r in rows:
        print(f"  {r['image']}:\n    " + "\n    ".join(r["worker"]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
