"""The demo: one DeepGlobe image, segmented in napari (or headless without a screen).

    python -m napari_glnet.demo [--image PATH] [--weights CKPT]

With a screen (DISPLAY or WAYLAND_DISPLAY set, or macOS/Windows) it opens
napari with the image and the GLNet widget docked, the checkpoint chosen:
press "Segment".  Without one it runs the same segmentation with the library,
writes ``out/<image stem>_glnet.png`` (DeepGlobe colours; ``out/`` is in the
current folder) and prints the per-class pixel fractions.

Defaults: the first ``*_sat.jpg`` in ``../shared/data/deepglobe_unlabeled/``
beside the repository, and ``.cache/untrained_demo.pt`` in the repository,
made by ``sample_data/make_untrained_checkpoint.py`` when missing.  That
checkpoint is UNTRAINED: it exercises the pipeline, and its classes are
meaningless until the trained demo model ships.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "deepglobe_unlabeled"
DEFAULT_WEIGHTS = REPO / ".cache" / "untrained_demo.pt"
MAKE_UNTRAINED = REPO / "sample_data" / "make_untrained_checkpoint.py"


def has_screen() -> bool:
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def default_image() -> Path:
    from glnet.errors import GLNetError

    images = sorted(DEFAULT_IMAGES.glob("*_sat.jpg")) if DEFAULT_IMAGES.is_dir() else []
    if not images:
        raise GLNetError(f"no default image: no *_sat.jpg in {DEFAULT_IMAGES}; pass --image PATH")
    return images[0]


def ensure_untrained_checkpoint(path: Path) -> Path:
    """Make the untrained demo checkpoint with sample_data/make_untrained_checkpoint.py if missing."""
    from glnet.errors import GLNetError

    if path.exists():
        return path
    if not MAKE_UNTRAINED.is_file():
        raise GLNetError(f"{path} is missing and so is {MAKE_UNTRAINED} to make it; pass --weights CKPT")
    print(f"making the untrained demo checkpoint {path} (random weights: classes are meaningless)", flush=True)
    spec = importlib.util.spec_from_file_location("make_untrained_checkpoint", MAKE_UNTRAINED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_untrained_checkpoint(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m napari_glnet.demo",
        description="Segment a DeepGlobe image with GLNet in napari (headless without a screen).",
    )
    p.add_argument("--image", help=f"RGB image (default: the first *_sat.jpg in {DEFAULT_IMAGES})")
    p.add_argument("--weights", help=f"checkpoint (default: {DEFAULT_WEIGHTS.relative_to(REPO)}, made if missing)")
    p.add_argument("--mode", choices=["global", "global2local", "local2global"], help="only for the authors' files")
    p.add_argument("--global-weights", help="the authors' global checkpoint (their local2global needs it)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=4, help="patches per batch (default 4)")
    p.add_argument("--out-dir", default="out", help="headless output folder (default: ./out)")
    return p


def run_gui(image_path: Path, image, weights: Path, args) -> int:
    import napari

    from napari_glnet._widget import SegmentWidget

    viewer = napari.Viewer(title="GLNet demo")
    viewer.add_image(image, name=image_path.stem, rgb=True)
    widget = SegmentWidget(viewer)
    widget.set_checkpoint(weights)
    if args.mode:
        widget.mode.value = args.mode
    if args.global_weights:
        widget.global_weights.value = Path(args.global_weights)
    widget.device.value = args.device if args.device in ("auto", "cpu", "cuda") else "auto"
    widget.batch_size.value = args.batch_size
    viewer.window.add_dock_widget(widget, name="GLNet segmentation", area="right")
    napari.run()
    return 0


def run_headless(image_path: Path, image, weights: Path, args) -> int:
    import numpy as np
    from tqdm import tqdm

    from glnet.checkpoint import load_checkpoint
    from glnet.engine import Segmenter
    from glnet.errors import GLNetError
    from glnet.labels import write_label
    from glnet.runtime import set_threads

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{image_path.stem}_glnet.png"
    if out.resolve() == image_path.resolve():
        raise GLNetError(f"output {out} is the input image: refusing to overwrite it")

    set_threads(None)
    ckpt = load_checkpoint(weights, mode=args.mode, global_path=args.global_weights)
    if ckpt.extra.get("untrained"):
        print("note: this checkpoint is UNTRAINED (it exercises the pipeline; its classes are meaningless)")
    seg = Segmenter(ckpt, device=args.device, batch_size=args.batch_size)
    if seg.device.type == "cpu":
        print("running on the CPU (no CUDA GPU in use): big images take a while")
    session = seg.open(image)
    with tqdm(total=None, desc=f"GLNet {image_path.name}", unit="patch", leave=False) as bar:
        for p in session.run():
            bar.total = p.total
            bar.n = p.done
            bar.set_postfix_str(p.stage, refresh=False)
            bar.refresh()
    labels = session.result().labels
    table = ckpt.classes
    write_label(out, labels, table, color=True)
    print(f"wrote {out.resolve()} ({labels.shape[1]}x{labels.shape[0]}, {seg.mode}, {seg.device.type})")
    counts = np.bincount(labels.ravel(), minlength=len(table))
    width = max(len(n) for n in table.names)
    print("class fractions:")
    for name, count in zip(table.names, counts):
        print(f"  {name:<{width}}  {count / labels.size:7.2%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from glnet.errors import GLNetError
    from glnet.imageio import read_image

    try:
        if args.batch_size < 1:
            raise GLNetError(f"--batch-size must be at least 1, got {args.batch_size}")
        image_path = Path(args.image) if args.image else default_image()
        weights = Path(args.weights) if args.weights else ensure_untrained_checkpoint(DEFAULT_WEIGHTS)
        if not weights.is_file():
            raise GLNetError(f"checkpoint not found: {weights}")
        image = read_image(image_path)
        if has_screen():
            try:
                import napari  # noqa: F401
            except ImportError:
                print("napari is not installed (pip install -e '.[napari]'): running the headless equivalent")
            else:
                return run_gui(image_path, image, weights, args)
        else:
            print("no screen (DISPLAY/WAYLAND_DISPLAY unset): running the headless equivalent of the napari demo")
        return run_headless(image_path, image, weights, args)
    except GLNetError as e:
        print(f"napari-glnet demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-glnet demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
