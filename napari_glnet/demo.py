"""The demo: the sample scene (or any image), segmented in napari, or headless without a screen.

    python -m napari_glnet.demo [--image PATH] [--weights CKPT]

With a screen (DISPLAY or WAYLAND_DISPLAY set, or macOS/Windows) it opens
napari with the image (and, for the sample scene, its ground truth) and the
GLNet widget docked with the checkpoint chosen, and segments the view.
Without one it runs the same segmentation with the library, writes
``out/<image stem>_glnet.png`` (DeepGlobe colours; ``out/`` is in the current
folder), prints the per-class pixel fractions and, for the sample scene,
the per-class IoU against its ground truth.

Defaults: the plugin's sample scene (``napari_glnet._sample_data``, a
synthetic 1024 px land-cover scene with exact ground truth) and the trained
demo model shipped in the package, ``napari_glnet/data/demo.glnet.pt``
(``sample_data/train_demo_model.py`` made it on a CPU, from synthetic scenes
only).  Where that file is missing (a checkout without it), an UNTRAINED
checkpoint made by ``sample_data/make_untrained_checkpoint.py`` stands in
(it exercises the pipeline; its classes are meaningless).

Each run of the demo starts clean: when the sample scene's label store holds
corrections, reviewed regions or unaccepted strokes from an earlier run, the
demo asks whether to continue with them or to start fresh (the old store is
renamed beside itself, never deleted).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # a source checkout (not there in a wheel install)
DEFAULT_WEIGHTS = REPO / ".cache" / "untrained_demo.pt"
MAKE_UNTRAINED = REPO / "sample_data" / "make_untrained_checkpoint.py"


def demo_weights() -> Path | None:
    from napari_glnet._sample_data import demo_checkpoint

    found = demo_checkpoint()
    return Path(found) if found else None


def has_screen() -> bool:
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
    from glnet.constants import Mode

    p = argparse.ArgumentParser(
        prog="python -m napari_glnet.demo",
        description="Segment a DeepGlobe image with GLNet in napari (headless without a screen).",
    )
    p.add_argument("--image", help="RGB image (default: the plugin's synthetic sample scene, with ground truth)")
    p.add_argument("--weights", help="checkpoint (default: the demo model shipped in the package)")
    p.add_argument("--mode", choices=Mode.choices(), help="only for the authors' files")
    p.add_argument("--global-weights", help="the authors' global checkpoint (their local2global needs it)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=4, help="patches per batch (default 4)")
    p.add_argument("--out-dir", default="out", help="headless output folder (default: ./out)")
    return p


def open_demo(viewer, image_path: Path, image, weights: Path, args, truth=None, start: bool = True):
    """The demo's viewer set up: the image (and ground truth), the widget
    docked with the checkpoint, an earlier run's work asked about, the view
    segmented (``start``).  Returns the widget."""
    from napari_glnet._widget import SegmentWidget

    viewer.add_image(image, name=image_path.stem, rgb=True)
    if truth is not None:
        from glnet.classes import DEEPGLOBE
        from napari_glnet._reader import label_colormap

        viewer.add_labels(truth, name="ground truth", colormap=label_colormap(DEEPGLOBE), opacity=0.4, visible=False)
    widget = SegmentWidget(viewer)
    widget.set_checkpoint(weights)
    if args.mode:
        widget.mode.value = args.mode
    if args.global_weights:
        widget.global_weights.value = Path(args.global_weights)
    widget.device.value = args.device if args.device in ("auto", "cpu", "cuda") else "auto"
    widget.batch_size.value = args.batch_size
    viewer.window.add_dock_widget(widget, name="GLNet segmentation", area="right")
    widget.image.value = viewer.layers[image_path.stem]
    if truth is not None:
        widget.review.iou.set_ground_truth(viewer.layers["ground truth"])  # scored once the labels exist
    viewer.reset_view()
    if args.image is None:
        _offer_a_fresh_store(widget, image_path.stem, image)
    if start:
        widget.start()  # the overview, then the view refined patch by patch
    return widget


def _offer_a_fresh_store(widget, name: str, image) -> None:
    """The sample scene's store from an earlier run holds a user's work: continue with it, or start fresh?"""
    from glnet.errors import GLNetError
    from glnet.store.labelstore import LabelStore
    from glnet.store.reset import set_aside, work_in
    from napari_glnet.session import default_store_path, image_identity

    path = default_store_path(image_identity(None, image, name), name)
    if not path.exists():
        return
    try:
        work = work_in(LabelStore.open(path, mode="r"))
    except GLNetError:
        return
    if not work:
        return
    choice = widget.review.ask(
        f"An earlier run of the demo left {work} in its label store ({path}).\n\n"
        "Continue with them, or start fresh (the old store is renamed beside itself, not deleted)?",
        ("Start fresh", "Continue"),
    )
    if choice == "Start fresh":
        kept = set_aside(path)
        widget.review.report.setText(f"Started fresh: the earlier demo's store is kept as {kept}")


def run_gui(image_path: Path, image, weights: Path, args, truth=None) -> int:
    import napari

    viewer = napari.Viewer(title="GLNet demo")
    open_demo(viewer, image_path, image, weights, args, truth)
    napari.run()
    return 0


def run_headless(image_path: Path, image, weights: Path, args, truth=None) -> int:
    import numpy as np
    from tqdm import tqdm

    from glnet.errors import GLNetError
    from glnet.inference.spec import ModelSpec
    from glnet.io.labels import write_label

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{image_path.stem}_glnet.png"
    if out.resolve() == image_path.resolve():
        raise GLNetError(f"output {out} is the input image: refusing to overwrite it")

    spec = ModelSpec(
        weights=weights,
        mode=args.mode,
        global_weights=args.global_weights,
        device=args.device,
        batch_size=args.batch_size,
    )
    seg = spec.load()
    ckpt = seg.checkpoint
    if ckpt.extra.get("untrained"):
        print("note: this checkpoint is UNTRAINED (it exercises the pipeline; its classes are meaningless)")
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
    if truth is not None:
        from glnet.metrics import ConfusionMatrix

        cm = ConfusionMatrix(len(table))
        cm.update(truth, labels)
        scores = cm.scores(exclude=[0])
        print("IoU against the sample scene's ground truth:")
        for i, name in enumerate(table.names[1:], start=1):
            print(f"  {name:<{width}}  {scores.iou[i]:.3f}")
        print(f"mIoU (classes 1-{len(table) - 1}): {scores.mean_iou:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from glnet.errors import GLNetError
    from glnet.io.imageio import read_image

    try:
        if args.batch_size < 1:
            raise GLNetError(f"--batch-size must be at least 1, got {args.batch_size}")
        truth = None
        if args.image:
            image_path = Path(args.image)
            image = read_image(image_path)
        else:
            from napari_glnet._sample_data import SEED, SIZE, synthetic_scene

            (image, _, _), (truth, _, _) = synthetic_scene()
            image_path = Path(f"synthetic_scene_{SEED}_{SIZE}")
        if args.weights:
            weights = Path(args.weights)
        elif (shipped := demo_weights()) is not None:
            weights = shipped
        else:
            print("the demo model is missing from the package: using an UNTRAINED checkpoint (classes are meaningless)")
            weights = ensure_untrained_checkpoint(DEFAULT_WEIGHTS)
        if not weights.exists():
            raise GLNetError(f"checkpoint not found: {weights}")
        if has_screen():
            if importlib.util.find_spec("napari") is not None:
                return run_gui(image_path, image, weights, args, truth)
            print("napari is not installed (pip install -e '.[napari]'): running the headless equivalent")
        else:
            print("no screen (DISPLAY/WAYLAND_DISPLAY unset): running the headless equivalent of the napari demo")
        return run_headless(image_path, image, weights, args, truth)
    except GLNetError as e:
        print(f"napari-glnet demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-glnet demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
